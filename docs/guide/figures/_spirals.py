"""The spirals and the classifier that the user guide's figures show, fitted once per build."""

import functools

from sklearn.model_selection import train_test_split

from skdiffusion import DiffusionClassifier
from skdiffusion.datasets import make_spirals


@functools.cache
def fitted_spirals():
    """Return ``clf, X_train, X_test, y_train, y_test``: 1,000 spirals, 200 held out, a default fit."""
    X, y = make_spirals(n_samples=1000, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=200, random_state=0, stratify=y)
    clf = DiffusionClassifier(random_state=0).fit(X_train, y_train)
    return clf, X_train, X_test, y_train, y_test
