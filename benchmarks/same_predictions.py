"""Check that a change to skdiffusion keeps its predictions bit for bit.

Fits the accuracy suite at the default settings, and every path through ``fit`` on one
small set (refit, tuning, an explicit range, early stopping, no held-out rows, a
pretrained denoiser, ``warm_start``, ``partial_fit``, the U-Net), all with
``random_state=0``, and records each model's ``predict_proba`` on its test rows.

    python benchmarks/same_predictions.py save before.npz      # on the old code
    python benchmarks/same_predictions.py compare before.npz   # on the new code

``compare`` prints, per case, whether the probabilities are identical and otherwise
the largest difference, and exits 1 if any case differs. Run both in the same
environment (torch version, machine): float32 results are only reproducible there.
"""

import argparse
import sys
import warnings

import numpy as np
from _suite import DATASETS, split
from sklearn.exceptions import ConvergenceWarning

from skdiffusion import DiffusionClassifier


def _partial_fit(X, y):
    clf = DiffusionClassifier(random_state=0)
    for X_batch, y_batch in zip(np.array_split(X, 3), np.array_split(y, 3)):
        clf.partial_fit(X_batch, y_batch, classes=np.unique(y))
    return clf


def _warm_start(X, y):
    clf = DiffusionClassifier(max_iter=200, warm_start=True, random_state=0).fit(X, y)
    return clf.fit(X, y)


def _pretrained(X, y):
    trained = DiffusionClassifier(max_iter=300, random_state=0).fit(X, y).denoiser_
    return DiffusionClassifier(trained, max_iter=0, random_state=0).fit(X, y)


def _fit_after_partial_fit(X, y):
    clf = DiffusionClassifier(max_iter=200, random_state=0).partial_fit(X, y, classes=np.unique(y))
    return clf.fit(X, y)


# The paths through fit, each on the breast cancer split (398 training rows: a fit refits).
PATHS = {
    "refit": lambda X, y: DiffusionClassifier(random_state=0).fit(X, y),
    "tune": lambda X, y: DiffusionClassifier(refit=False, random_state=0).fit(X, y),
    "explicit-range": lambda X, y: DiffusionClassifier(timestep_range=(0.0, 0.3), random_state=0).fit(X, y),
    "explicit-range-refit": lambda X, y: DiffusionClassifier(timestep_range=(0.1, 0.6), refit=True, random_state=0).fit(
        X, y
    ),
    "early-stopping": lambda X, y: DiffusionClassifier(early_stopping=True, random_state=0).fit(X, y),
    "no-held-out": lambda X, y: DiffusionClassifier(validation_fraction=None, random_state=0).fit(X, y),
    "fraction-0.2": lambda X, y: DiffusionClassifier(validation_fraction=0.2, max_iter=300, random_state=0).fit(X, y),
    "pretrained": _pretrained,
    "warm-start": _warm_start,
    "partial-fit": _partial_fit,
    "fit-after-partial-fit": _fit_after_partial_fit,
    "priors-l1-cosine": lambda X, y: DiffusionClassifier(
        priors=[0.5, 0.5], loss="l1", noise_schedule="cosine", n_diffusion_steps=200, max_iter=300, random_state=0
    ).fit(X, y),
}


def cases():
    """Yield ``(name, probabilities)`` for every case, in a fixed order."""
    for name in DATASETS:
        X_train, X_test, y_train, _ = split(name)
        yield f"suite/{name}", DiffusionClassifier(random_state=0).fit(X_train, y_train).predict_proba(X_test)
    X_train, X_test, y_train, _ = split("breast")
    for name, fit in PATHS.items():
        yield f"path/{name}", fit(X_train, y_train).predict_proba(X_test)
    X_train, X_test, y_train, _ = split("digits")
    unet = DiffusionClassifier(image_shape=(1, 8, 8), max_iter=100, n_trials=16, random_state=0)
    yield "path/unet", unet.fit(X_train[:300], y_train[:300]).predict_proba(X_test[:100])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["save", "compare"])
    parser.add_argument("file")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    if args.mode == "save":
        results = {}
        for name, proba in cases():
            results[name] = proba
            print(f"{name}: {proba.shape}", flush=True)
        np.savez(args.file, **results)
        return 0
    saved = np.load(args.file)
    differ = 0
    for name, proba in cases():
        before = saved[name]
        if before.shape == proba.shape and np.array_equal(before, proba):
            print(f"{name}: identical", flush=True)
        else:
            differ += 1
            gap = np.abs(before - proba).max() if before.shape == proba.shape else "shape"
            print(f"{name}: DIFFERENT (largest difference {gap})", flush=True)
    print(f"{differ} of {len(saved.files)} cases differ")
    return int(differ > 0)


if __name__ == "__main__":
    sys.exit(main())
