"""Sample and class weights: a weight counts a row that many times; zero removes it."""

import numpy as np
import pytest
import sklearn
from sklearn.datasets import make_blobs
from sklearn.ensemble import AdaBoostClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from skdiffusion import DiffusionClassifier, load, save

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X, Y = make_blobs(n_samples=120, centers=[[-2, 0], [2, 0], [0, 3]], cluster_std=0.7, random_state=0)
WEIGHTS = np.random.RandomState(0).randint(1, 4, size=Y.size).astype(float)


def _clf(**params):
    return DiffusionClassifier(**{"max_iter": 100, "n_trials": 8, "random_state": 0, **params})


def test_weights_of_one_are_no_weights():
    expected = _clf().fit(X, Y).predict_proba(X)
    np.testing.assert_array_equal(_clf().fit(X, Y, sample_weight=np.ones(Y.size)).predict_proba(X), expected)
    np.testing.assert_array_equal(_clf(class_weight={0: 1, 1: 1, 2: 1}).fit(X, Y).predict_proba(X), expected)


def test_zero_weights_remove_the_rows():
    kept = np.arange(Y.size) % 4 != 0
    weighted = _clf().fit(X, Y, sample_weight=kept.astype(float))
    removed = _clf().fit(X[kept], Y[kept])
    np.testing.assert_array_equal(weighted.predict_proba(X), removed.predict_proba(X))
    np.testing.assert_array_equal(weighted.class_count_, removed.class_count_)


def test_zero_weights_on_every_row_of_a_class_remove_the_class():
    # The message says why: the rows of weight 0 were removed.
    message = r"at least 2 classes.*only one class of positive sample_weight \(rows of weight 0 are removed\): 2\."
    with pytest.raises(ValueError, match=message):
        _clf().fit(X, Y, sample_weight=(Y == 2).astype(float))


def test_integer_weights_count_as_repeated_rows():
    weighted = _clf().fit(X, Y, sample_weight=WEIGHTS)
    repeats = WEIGHTS.astype(int)
    repeated = _clf().fit(np.repeat(X, repeats, axis=0), np.repeat(Y, repeats))
    # Exactly the same counts, priors and standardisation...
    np.testing.assert_allclose(weighted.class_count_, repeated.class_count_, rtol=1e-12)
    np.testing.assert_allclose(weighted.class_prior_, repeated.class_prior_, rtol=1e-12)
    np.testing.assert_allclose(weighted.scaler_.mean_, repeated.scaler_.mean_, rtol=1e-10)
    np.testing.assert_allclose(weighted.scaler_.scale_, repeated.scaler_.scale_, rtol=1e-10)
    # ...and, trained on other random draws of the same distribution, nearly the same model.
    gap = np.abs(weighted.predict_proba(X) - repeated.predict_proba(X))
    assert gap.mean() < 0.05
    assert (weighted.predict(X) == repeated.predict(X)).mean() >= 0.95


def test_weights_are_the_training_distribution():
    # Class 0 weighted 20 times: its rows fill the minibatches, and its prior follows.
    clf = _clf(class_weight={0: 20.0, 1: 1.0, 2: 1.0}).fit(X, Y)
    np.testing.assert_allclose(clf.class_prior_, np.array([20, 1, 1]) / 22)
    assert (clf.predict(X) == 0).sum() > (Y == 0).sum()


def test_balanced_class_weight_makes_the_priors_uniform():
    rows = np.r_[np.flatnonzero(Y == 0), np.flatnonzero(Y == 1)[:10], np.flatnonzero(Y == 2)[:20]]
    clf = _clf(class_weight="balanced").fit(X[rows], Y[rows])
    np.testing.assert_allclose(clf.class_prior_, np.full(3, 1 / 3))
    by_dict = _clf(class_weight=dict(zip([0, 1, 2], 70 / (3 * np.array([40, 10, 20]))))).fit(X[rows], Y[rows])
    np.testing.assert_array_equal(by_dict.predict_proba(X), clf.predict_proba(X))


def test_class_weight_multiplies_sample_weight():
    by_class = _clf(class_weight={0: 2.0, 1: 1.0, 2: 0.5}).fit(X, Y, sample_weight=WEIGHTS)
    by_row = _clf().fit(X, Y, sample_weight=WEIGHTS * np.array([2.0, 1.0, 0.5])[Y])
    np.testing.assert_array_equal(by_class.predict_proba(X), by_row.predict_proba(X))


@pytest.mark.parametrize(
    "sample_weight, match",
    [
        (-WEIGHTS, "Negative values in data passed to"),
        (WEIGHTS[:10], r"sample_weight.shape == \(10,\), expected \(120,\)"),
        (np.zeros(Y.size), "at least one non-zero number"),
    ],
)
def test_bad_sample_weights(sample_weight, match):
    with pytest.raises(ValueError, match=match):
        _clf().fit(X, Y, sample_weight=sample_weight)


def test_class_weight_naming_an_unknown_class():
    with pytest.raises(ValueError, match="not in class_weight"):
        _clf(class_weight={0: 1.0, 1: 2.0, 7: 1.0}).fit(X, Y)


def test_partial_fit_counts_the_weights_of_every_batch():
    clf = _clf()
    for part in np.array_split(np.arange(Y.size), 3):
        clf.partial_fit(X[part], Y[part], classes=[0, 1, 2], sample_weight=WEIGHTS[part])
    np.testing.assert_allclose(clf.class_count_, np.bincount(Y, WEIGHTS))
    with pytest.raises(ValueError, match="class_weight='balanced' is not supported for partial_fit"):
        _clf(class_weight="balanced").partial_fit(X, Y, classes=[0, 1, 2])


def test_early_stopping_with_weights():
    clf = _clf(early_stopping=True, max_iter=200).fit(X, Y, sample_weight=WEIGHTS)
    assert len(clf.validation_scores_) >= 1 and np.isfinite(clf.validation_scores_).all()
    assert clf.score(X, Y) > 0.9


def test_metadata_routing_passes_the_weights_through_a_pipeline():
    with sklearn.config_context(enable_metadata_routing=True):
        clf = _clf().set_fit_request(sample_weight=True)
        pipe = Pipeline([("scale", StandardScaler().set_fit_request(sample_weight=False)), ("clf", clf)])
        pipe.fit(X, Y, sample_weight=WEIGHTS)
    np.testing.assert_allclose(pipe[-1].class_count_, np.bincount(Y, WEIGHTS))


def test_adaboost_boosts_it():
    boosted = AdaBoostClassifier(_clf(max_iter=50), n_estimators=3, random_state=0).fit(X, Y)
    assert boosted.score(X, Y) > 0.9
    # The later rounds train on AdaBoost's uneven weights (they sum to one).
    later = boosted.estimators_[-1]
    assert not np.allclose(later.class_count_ / later.class_count_.sum(), np.bincount(Y) / Y.size)


def test_class_weight_is_saved_and_loaded(tmp_path):
    clf = _clf(class_weight={0: 2.0, 1: 1.0, 2: 1.0}).fit(X, Y)
    save(clf, tmp_path / "model.safetensors")
    loaded = load(tmp_path / "model.safetensors")
    assert loaded.class_weight == {0: 2.0, 1: 1.0, 2: 1.0}
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
