"""skdiffusion: class-conditional diffusion models as scikit-learn classifiers.

The public names are imported on first use (PEP 562), so that ``import skdiffusion``
does not pay for torch and scikit-learn until they are needed.
"""

import importlib as _importlib

# Where each public name lives.
_LOCATIONS = {
    "DiffusionClassifier": "._classifier",
    "MLPDenoiser": "._denoisers",
    "UNetDenoiser": "._unet",
    "load": "._persistence",
    "save": "._persistence",
}

# The types of skdiffusion that skops.io must trust to load a fitted classifier, or a
# Pipeline holding one: skops.io.load(path, trusted=SKOPS_TRUSTED_TYPES). Their state is
# plain data (numpy arrays, numbers, strings); the network is rebuilt from its arguments.
SKOPS_TRUSTED_TYPES = ["skdiffusion._classifier.DiffusionClassifier", "skdiffusion._training.TrainingState"]

__all__ = ["DiffusionClassifier", "MLPDenoiser", "SKOPS_TRUSTED_TYPES", "UNetDenoiser", "load", "save"]
__version__ = "0.1.0.dev0"


def __getattr__(name):
    if name not in _LOCATIONS:
        raise AttributeError(f"module 'skdiffusion' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_LOCATIONS[name], __name__), name)
    globals()[name] = value  # imported once: later lookups skip __getattr__
    return value


def __dir__():
    return sorted({*globals(), *__all__})
