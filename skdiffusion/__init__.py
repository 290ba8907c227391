"""skdiffusion: class-conditional diffusion models as scikit-learn classifiers."""

from ._classifier import DiffusionClassifier
from ._denoisers import MLPDenoiser

__all__ = ["DiffusionClassifier", "MLPDenoiser"]
__version__ = "0.1.0.dev0"
