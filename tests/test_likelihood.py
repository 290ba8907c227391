"""score_samples: the log-likelihood estimate mixed over the classes by Bayes' rule."""

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from skdiffusion import DiffusionClassifier

CENTERS = [[-2.0, 0.0], [2.0, 0.0], [0.0, 3.0]]


@pytest.fixture(scope="module")
def data():
    X, y = make_blobs(n_samples=600, centers=CENTERS, cluster_std=0.6, random_state=0)
    return X[:450], y[:450], X[450:], y[450:]


@pytest.fixture(scope="module")
def fitted(data):
    X_train, y_train, _, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 300 steps: enough to rank, not converged
        return DiffusionClassifier(max_iter=300, n_trials=16, random_state=0).fit(X_train, y_train)


def test_score_samples_shape_dtype_and_finite(fitted, data):
    X_test = data[2]
    scores = fitted.score_samples(X_test)
    assert scores.shape == (len(X_test),)
    assert scores.dtype == np.float64
    assert np.isfinite(scores).all()


def test_score_samples_is_the_normaliser_of_predict_log_proba(fitted, data):
    X_test = data[2]
    jll = fitted._joint_log_likelihood(X_test)
    scores = fitted.score_samples(X_test)
    np.testing.assert_allclose(scores, logsumexp(jll, axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(fitted.predict_log_proba(X_test), jll - scores[:, None], rtol=0, atol=1e-12)


def test_score_samples_of_a_row_does_not_depend_on_the_other_rows(fitted, data):
    X_test = data[2]
    scores = fitted.score_samples(X_test)
    np.testing.assert_array_equal(fitted.score_samples(X_test[7:12]), scores[7:12])
    np.testing.assert_array_equal(fitted.score_samples(X_test[::-1]), scores[::-1])


def test_in_distribution_scores_higher_than_far_away_points(fitted, data):
    X_test = data[2]
    rng = np.random.default_rng(0)
    # Points on a circle of radius 10 around the data: far outside every blob.
    angles = rng.uniform(0, 2 * np.pi, size=len(X_test))
    far = 10 * np.column_stack([np.cos(angles), np.sin(angles)])
    inside, outside = fitted.score_samples(X_test), fitted.score_samples(far)
    assert np.median(inside) > np.max(outside)


def test_score_samples_ranks_the_blob_centres_above_the_gaps(fitted):
    centres = np.asarray(CENTERS)
    # Midway between two blobs and beyond the third: low density, though near the data.
    gaps = np.array([[0.0, 0.0], [0.0, -2.5], [-3.5, 3.0]])
    assert fitted.score_samples(centres).min() > fitted.score_samples(gaps).max()


def test_score_samples_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        DiffusionClassifier().score_samples(np.zeros((2, 2)))
