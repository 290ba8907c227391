"""partial_fit: scikit-learn's out-of-core contract, and what each call trains."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skdiffusion import DiffusionClassifier

CHEAP = {"n_trials": 8, "batch_size": 64, "random_state": 0}
# The tests train a few steps on purpose; the warning about it has its own test.
FEW_STEPS = "ignore:DiffusionClassifier. the network has trained:sklearn.exceptions.ConvergenceWarning"
pytestmark = pytest.mark.filterwarnings(FEW_STEPS)


def blobs(n, seed, distance=6.0):
    """Two Gaussian blobs in 2-D, their means ``distance`` apart (3 standard deviations each side)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(2, size=n)
    X = rng.normal(size=(n, 2)) + distance * (y[:, None] - 0.5)
    return X, y


def batches(X, y, n_batches):
    return zip(np.array_split(X, n_batches), np.array_split(y, n_batches))


def test_first_call_needs_classes():
    X, y = blobs(40, 0)
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        DiffusionClassifier(**CHEAP).partial_fit(X, y)


def test_later_calls_keep_the_classes():
    X, y = blobs(40, 0)
    clf = DiffusionClassifier(**CHEAP).partial_fit(X, y, classes=[0, 1])
    clf.partial_fit(X, y, classes=[1, 0])  # the same classes, in another order
    with pytest.raises(ValueError, match=r"`classes=\[0, 1, 2\]` is not the same as on last call"):
        clf.partial_fit(X, y, classes=[0, 1, 2])


def test_needs_two_classes():
    X, y = blobs(40, 0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        DiffusionClassifier(**CHEAP).partial_fit(X, np.zeros_like(y), classes=[0])


@pytest.mark.parametrize("first_call", [True, False])
def test_labels_outside_classes(first_call):
    X, y = blobs(40, 0)
    clf = DiffusionClassifier(**CHEAP)
    if not first_call:
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match=r"y contains labels \[2, 5\] that are not in classes=\[0, 1\]"):
        clf.partial_fit(X, np.where(np.arange(40) < 2, [2, 5] * 20, y), classes=[0, 1])


def test_n_features_must_not_change():
    X, y = blobs(40, 0)
    clf = DiffusionClassifier(**CHEAP).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="X has 3 features, but DiffusionClassifier is expecting 2 features"):
        clf.partial_fit(np.hstack([X, X[:, :1]]), y)


def test_a_failed_call_leaves_the_model_as_it_was():
    X, y = blobs(40, 0)
    clf = DiffusionClassifier(**CHEAP).partial_fit(X, y, classes=[0, 1])
    proba, n_iter, counts = clf.predict_proba(X), clf.n_iter_, clf.class_count_.copy()
    with pytest.raises(ValueError, match="not in classes"):
        clf.partial_fit(X, y + 1)
    assert (clf.n_iter_, clf.class_count_.tolist()) == (n_iter, counts.tolist())
    np.testing.assert_array_equal(clf.predict_proba(X), proba)


@pytest.mark.filterwarnings("ignore:Too few samples per class:UserWarning")
def test_priors_are_the_accumulated_counts():
    clf = DiffusionClassifier(**CHEAP)
    counts = np.zeros(3, dtype=np.int64)
    for seed, n_per_class in enumerate([(30, 10, 0), (5, 20, 15), (1, 1, 40)]):
        y = np.repeat([0, 1, 2], n_per_class)
        X = np.random.default_rng(seed).normal(size=(y.size, 2))
        clf.partial_fit(X, y, classes=[0, 1, 2])
        counts += n_per_class
        np.testing.assert_array_equal(clf.class_count_, counts)
        np.testing.assert_array_equal(clf.class_prior_, counts / counts.sum())
        if seed == 0:  # no sample of class 2 yet: it has prior 0, and probability 0
            np.testing.assert_array_equal(clf.predict_proba(X)[:, 2], 0.0)


def test_given_priors_are_kept():
    X, y = blobs(60, 0)
    clf = DiffusionClassifier(priors=[0.2, 0.8], **CHEAP)
    for X_batch, y_batch in batches(X, y, 2):
        clf.partial_fit(X_batch, y_batch, classes=[0, 1])
    np.testing.assert_array_equal(clf.class_prior_, [0.2, 0.8])
    np.testing.assert_array_equal(clf.class_count_, np.bincount(y))


def test_one_epoch_of_steps_per_call_with_the_optimizer_carried_over():
    X, y = blobs(300, 0)
    clf = DiffusionClassifier(validation_fraction=None, **CHEAP)  # 300 training rows: ceil(300 / 64) = 5 steps
    for call in range(1, 4):
        clf.partial_fit(X, y, classes=[0, 1])
        assert clf.n_iter_ == len(clf.loss_curve_) == 5 * call
        # Adam's step count: its moments continue from call to call.
        assert all(int(moments["step"]) == 5 * call for moments in clf._training_state.optimizer_state.values())
    # validation_fraction="auto" holds out 0.1 in partial_fit, which never refits: 30 rows
    # are held out to calibrate, ceil(270 / 54) = 5 steps too.
    held_out = DiffusionClassifier(**{**CHEAP, "batch_size": 54}).partial_fit(X, y, classes=[0, 1])
    assert held_out.n_iter_ == 5


def test_the_standardisation_comes_from_the_first_call():
    X, y = blobs(100, 0)
    clf = DiffusionClassifier(**CHEAP).partial_fit(X, y, classes=[0, 1])
    mean, scale = clf.scaler_.mean_.copy(), clf.scaler_.scale_.copy()
    clf.partial_fit(10 * X + 5, y)
    np.testing.assert_array_equal(clf.scaler_.mean_, mean)
    np.testing.assert_array_equal(clf.scaler_.scale_, scale)


def test_same_random_state_same_model():
    X, y = blobs(200, 0)

    def train():
        clf = DiffusionClassifier(**CHEAP)
        for X_batch, y_batch in batches(X, y, 4):
            clf.partial_fit(X_batch, y_batch, classes=[0, 1])
        return clf

    first, second = train(), train()
    np.testing.assert_array_equal(first.loss_curve_, second.loss_curve_)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


def test_the_loss_falls_over_calls():
    X, y = blobs(2000, 0)
    clf = DiffusionClassifier(validation_fraction=None, **CHEAP)
    for X_batch, y_batch in batches(X, y, 20):  # 100 rows, 2 steps per call
        clf.partial_fit(X_batch, y_batch, classes=[0, 1])
    # The untrained network's loss is about 1 (it predicts eps ~ 0 at init); a trained
    # one's on two blobs, about half of it. Means over 10 steps of ~0.1 standard deviation.
    first, last = np.mean(clf.loss_curve_[:10]), np.mean(clf.loss_curve_[-10:])
    assert last < 0.8 * first


def test_partial_fit_alone_classifies_separated_blobs():
    X, y = blobs(2000, 0)
    X_test, y_test = blobs(400, 1)
    clf = DiffusionClassifier(**{**CHEAP, "n_trials": 32})  # 8 trials score 0.73-0.99 over seeds
    for X_batch, y_batch in batches(X, y, 10):  # 30 steps in all
        clf.partial_fit(X_batch, y_batch, classes=[0, 1])
    # Bayes accuracy is Phi(3) = 0.9987; seeds 0-5 score 0.925-1.0. At chance, 400 samples
    # score >= 0.9 with probability below 1e-60.
    assert clf.score(X_test, y_test) >= 0.9


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_partial_fit_after_fit_continues_training():
    X, y = blobs(200, 0)
    clf = DiffusionClassifier(max_iter=50, **CHEAP).fit(X, y)
    curve = list(clf.loss_curve_)
    clf.partial_fit(X[:100], y[:100])
    assert clf.loss_curve_[:50] == curve and clf.n_iter_ > 50
    np.testing.assert_array_equal(clf.class_count_, np.bincount(y) + np.bincount(y[:100]))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_after_partial_fit_starts_over_unless_warm_start():
    X, y = blobs(200, 0)
    clf = DiffusionClassifier(max_iter=50, **CHEAP).partial_fit(X[:100], y[:100], classes=[0, 1])
    assert clf.fit(X, y).n_iter_ == 50
    np.testing.assert_array_equal(clf.class_count_, np.bincount(y))
    clf = DiffusionClassifier(max_iter=50, warm_start=True, **CHEAP).partial_fit(X[:100], y[:100], classes=[0, 1])
    n_iter = clf.n_iter_
    assert clf.fit(X, y).n_iter_ == n_iter + 50


def test_early_stopping_and_max_iter_are_for_fit():
    X, y = blobs(300, 0)
    clf = DiffusionClassifier(early_stopping=True, validation_fraction=None, max_iter=1, **CHEAP)
    assert clf.partial_fit(X, y, classes=[0, 1]).n_iter_ == 5  # ceil(300 / 64) steps, no stop
    assert clf.validation_scores_ == []  # no held-out checks


def test_partial_fit_warns_until_the_network_has_trained_enough_steps():
    X, y = blobs(40, 0)  # 36 rows trained on a call (a tenth held out): 36 steps at batch_size=1
    clf = DiffusionClassifier(n_trials=8, batch_size=1, random_state=0)
    for n_iter in (36, 72):
        with pytest.warns(
            ConvergenceWarning, match=rf"has trained {n_iter} optimizer steps in all, fewer than the 100"
        ) as caught:
            clf.partial_fit(X, y, classes=[0, 1])
        assert caught[0].filename == __file__  # it points at the call
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.partial_fit(X, y)  # 108 steps: no warning
    assert clf.n_iter_ == 108
