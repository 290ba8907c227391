"""skdiffusion: class-conditional diffusion models as scikit-learn classifiers."""

from ._classifier import DiffusionClassifier
from ._denoisers import MLPDenoiser
from ._persistence import load, save
from ._unet import UNetDenoiser

# The types of skdiffusion that skops.io must trust to load a fitted classifier, or a
# Pipeline holding one: skops.io.load(path, trusted=SKOPS_TRUSTED_TYPES). Their state is
# plain data (numpy arrays, numbers, strings); the network is rebuilt from its arguments.
SKOPS_TRUSTED_TYPES = ["skdiffusion._classifier.DiffusionClassifier", "skdiffusion._training.TrainingState"]

__all__ = ["DiffusionClassifier", "MLPDenoiser", "SKOPS_TRUSTED_TYPES", "UNetDenoiser", "load", "save"]
__version__ = "0.1.0.dev0"
