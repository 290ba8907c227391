"""make_spirals: shapes, balance, reproducibility and the geometry of the arms."""

import numpy as np
import pytest

from skdiffusion.datasets import make_spirals


@pytest.mark.parametrize("n_samples, counts", [(100, (50, 50)), (7, (4, 3)), ((30, 10), (30, 10)), (1, (1, 0))])
def test_shapes_and_class_balance(n_samples, counts):
    X, y = make_spirals(n_samples, random_state=0)
    assert X.shape == (sum(counts), 2)
    assert y.shape == (sum(counts),)
    assert X.dtype == np.float64
    assert np.bincount(y, minlength=2).tolist() == list(counts)


def test_reproducible_with_a_seed():
    X1, y1 = make_spirals(50, random_state=3)
    X2, y2 = make_spirals(50, random_state=3)
    X3, _ = make_spirals(50, random_state=4)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    rng = np.random.RandomState(3)
    np.testing.assert_array_equal(make_spirals(50, random_state=rng)[0], X1)


@pytest.mark.parametrize("n_turns", [1.5, 0.75, 3.0])
def test_noiseless_points_lie_on_the_arm(n_turns):
    # Class 0 at angle theta and radius r = theta / 5; class 1 is class 0 turned by pi.
    X, y = make_spirals(400, noise=0.0, n_turns=n_turns, shuffle=False, random_state=0)
    np.testing.assert_array_equal(y, np.repeat([0, 1], 200))
    X = X * np.where(y == 1, -1.0, 1.0)[:, None]  # turn class 1 back onto class 0's arm
    theta = 5 * np.hypot(X[:, 0], X[:, 1])
    assert theta.min() >= 0 and theta.max() <= n_turns * 2 * np.pi + 1e-12
    np.testing.assert_allclose(X, np.column_stack([np.cos(theta), np.sin(theta)]) * theta[:, None] / 5, atol=1e-12)


def test_points_are_spread_evenly_along_the_arm():
    # theta = sqrt(u) * theta_max: arc length grows like theta^2, so theta^2 is uniform.
    X, _ = make_spirals(20000, noise=0.0, shuffle=False, random_state=0)
    theta_max = 1.5 * 2 * np.pi
    u = (5 * np.hypot(X[:, 0], X[:, 1]) / theta_max) ** 2
    assert np.histogram(u, bins=10, range=(0, 1))[0].min() > 0.9 * 2000


def test_noise_has_the_given_standard_deviation():
    X0, _ = make_spirals(5000, noise=0.0, shuffle=False, random_state=0)
    X1, _ = make_spirals(5000, noise=0.3, shuffle=False, random_state=0)
    # Same angles (drawn first), Gaussian noise on top.
    residual = X1 - X0
    assert residual.std() == pytest.approx(0.3, rel=0.03)
    assert abs(residual.mean()) < 0.02


def test_shuffle_mixes_the_classes():
    _, y = make_spirals(100, random_state=0)
    assert np.bincount(y).tolist() == [50, 50]
    assert not np.array_equal(y, np.sort(y))
