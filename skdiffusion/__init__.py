"""skdiffusion: class-conditional diffusion models as scikit-learn classifiers."""

from ._classifier import DiffusionClassifier
from ._denoisers import MLPDenoiser
from ._persistence import load, save
from ._unet import UNetDenoiser

__all__ = ["DiffusionClassifier", "MLPDenoiser", "UNetDenoiser", "load", "save"]
__version__ = "0.1.0.dev0"
