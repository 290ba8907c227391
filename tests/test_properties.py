"""Property-based tests: whatever small data set a user passes, fit and predict either work
(finite probabilities that sum to one) or raise a ValueError or TypeError that says why.

The data sets are drawn by hypothesis: 1 to 4 classes, balanced or 1:100, 1 to 3 features
on scales from 1e-6 to 1e6, constant columns, duplicated rows, and labels of every type a
user might hold. The expected outcome is worked out from the data: valid data must fit.
"""

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from skdiffusion import DiffusionClassifier

NAMES = np.array(["cat", "dog", "eel", "fox"])

# How each label type is made from class indices 0..3, and the error it must raise, if any
# ("mixed" only mixes when both odd and even classes are present).
LABELS = {
    "int": (lambda idx: idx, None),
    "negative int": (lambda idx: 7 * idx - 3, None),
    "integral float": (lambda idx: idx.astype(float), None),
    "bool": (lambda idx: idx.astype(bool), None),
    "str": (lambda idx: NAMES[idx], None),
    "object str": (lambda idx: NAMES[idx].astype(object), None),
    "object int": (lambda idx: idx.astype(object), None),
    "fractional float": (lambda idx: idx + 0.5, (ValueError, "Unknown label type: continuous")),
    "mixed": (
        lambda idx: np.array([NAMES[i] if i % 2 else int(i) for i in idx], dtype=object),
        (TypeError, "y mixes labels of types"),
    ),
}


@st.composite
def data_sets(draw):
    """Return ``(X, y, kind)``: a small classification data set and its label type."""
    n_classes = draw(st.sampled_from([2, 3, 4, 1]))
    if draw(st.booleans()):
        counts = [draw(st.integers(1, 6)) for _ in range(n_classes)]
    else:
        counts = [100] + [1] * (n_classes - 1)  # 1:100 imbalance
    idx = np.repeat(np.arange(n_classes), counts)
    n_features = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.normal(size=(idx.size, n_features)) + idx[:, None]
    for j in range(n_features):
        X[:, j] = X[:, j] * draw(st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6])) + draw(st.sampled_from([0.0, 1e6]))
        if draw(st.integers(0, 3)) == 0:
            X[:, j] = draw(st.sampled_from([0.0, -1.5, 1e6]))  # a constant column
    if draw(st.booleans()):  # duplicated rows, with their labels or with others
        n_copies = draw(st.integers(1, idx.size))
        copies = rng.integers(idx.size, size=n_copies)
        X = np.vstack([X, X[copies]])
        idx = np.r_[idx, idx[copies] if draw(st.booleans()) else rng.integers(n_classes, size=n_copies)]
    order = rng.permutation(idx.size)
    kind = draw(st.sampled_from(list(LABELS)))
    return X[order], LABELS[kind][0](idx[order]), kind


@st.composite
def estimators(draw):
    """Return a DiffusionClassifier on one of the cheapest settings that still run every stage."""
    validation_fraction = draw(st.sampled_from([None, 0.1, 0.5, "auto"]))
    return DiffusionClassifier(
        n_trials=draw(st.integers(1, 3)),
        max_iter=draw(st.integers(1, 3)),
        batch_size=draw(st.sampled_from([1, 8, 256])),
        n_diffusion_steps=draw(st.sampled_from([2, 10, 50])),
        noise_schedule=draw(st.sampled_from(["linear", "cosine"])),
        loss=draw(st.sampled_from(["l2", "l1", "huber"])),
        validation_fraction=validation_fraction,
        early_stopping=validation_fraction is not None and draw(st.booleans()),
        pruning=draw(st.sampled_from([None, "t-test", ((1, 1),), ((1, 3), (2, 1))])),
        random_state=draw(st.integers(0, 1000)),
    )


def _expected_error(y, kind):
    """Return ``(error class, message)`` that fit must raise on labels ``y``, or None."""
    if LABELS[kind][1] is not None and (kind != "mixed" or len({type(label) for label in y}) > 1):
        return LABELS[kind][1]
    if np.unique(y).size < 2:  # bool labels merge every class but the first
        return ValueError, "needs samples of at least 2 classes"
    return None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=data_sets(), clf=estimators())
def test_fit_and_predict_work_or_raise_a_clear_error(data, clf):
    X, y, kind = data
    expected = _expected_error(y, kind)
    with warnings.catch_warnings():
        # Short fits do not converge, and tiny classes cannot be held out: both only warn.
        warnings.simplefilter("ignore")
        try:
            clf.fit(X, y)
        except (ValueError, TypeError) as exc:
            assert expected is not None, f"valid data raised {exc!r}"
            assert isinstance(exc, expected[0]) and expected[1] in str(exc), repr(exc)
            return
        assert expected is None, f"fit should have raised {expected}"
        X_new = np.vstack([X, X + np.std(X, axis=0)])
        proba = clf.predict_proba(X_new)
        y_pred = clf.predict(X_new)
    assert proba.shape == (len(X_new), np.unique(y).size)
    assert np.isfinite(proba).all() and (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(y_pred, clf.classes_.take(proba.argmax(axis=1)))
    assert set(np.unique(y_pred).tolist()) <= set(np.unique(y).tolist())
