"""Class-conditional generation: exact on known denoisers, on-class for fitted models."""

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from skdiffusion import DiffusionClassifier
from skdiffusion._sampling import ancestral_sample
from skdiffusion._schedule import make_alphas_cumprod
from skdiffusion.datasets import make_spirals


class _GaussianOracle(nn.Module):
    """The exact ``E[eps | x_t, y]`` when ``x_0 | y ~ N(means[y], stds[y]^2 I)``.

    ``x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps`` is Gaussian, and regressing eps on it
    gives ``sqrt(1 - abar) (x_t - sqrt(abar) mean) / (abar std^2 + 1 - abar)``.
    """

    def __init__(self, alphas_cumprod, means, stds):
        super().__init__()
        self.abar = torch.as_tensor(alphas_cumprod, dtype=torch.float32)
        self.means = torch.as_tensor(means, dtype=torch.float32)
        self.stds = torch.as_tensor(stds, dtype=torch.float32)

    def forward(self, x_t, t, y):
        abar = self.abar[t][:, None]
        var = abar * self.stds[y][:, None] ** 2 + 1 - abar
        return (1 - abar).sqrt() * (x_t - abar.sqrt() * self.means[y]) / var


def test_point_masses_are_reproduced_exactly():
    # With std 0 the last reverse step maps any x_1 to the class's point exactly.
    alphas_cumprod = make_alphas_cumprod("linear", 1000)
    means = [[3.0, -1.0], [-2.0, 0.5]]
    oracle = _GaussianOracle(alphas_cumprod, means, [0.0, 0.0])
    y = torch.tensor([0, 1, 1, 0, 1])
    x0 = ancestral_sample(oracle, y, (2,), alphas_cumprod=alphas_cumprod, generator=torch.Generator().manual_seed(0))
    assert x0.shape == (5, 2)
    torch.testing.assert_close(x0, torch.tensor(means)[y], atol=1e-4, rtol=0)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_samples_of_the_exact_denoiser_follow_the_data_distribution(schedule):
    alphas_cumprod = make_alphas_cumprod(schedule, 1000)
    oracle = _GaussianOracle(alphas_cumprod, [[2.0], [-1.0]], [0.5, 1.5])
    n = 4000
    y = torch.arange(2).repeat_interleave(n)
    x0 = ancestral_sample(oracle, y, (1,), alphas_cumprod=alphas_cumprod, generator=torch.Generator().manual_seed(0))
    for c, (mean, std) in enumerate([(2.0, 0.5), (-1.0, 1.5)]):
        samples = x0[y == c, 0].double()
        # 4000 draws: the sample mean is within 4 standard errors, the std within 5%.
        assert abs(samples.mean().item() - mean) < 4 * std / math.sqrt(n)
        assert samples.std().item() == pytest.approx(std, rel=0.05)


def test_sampling_is_seeded():
    alphas_cumprod = make_alphas_cumprod("linear", 100)
    oracle = _GaussianOracle(alphas_cumprod, [[0.0, 0.0]], [1.0])
    y = torch.zeros(3, dtype=torch.long)

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return ancestral_sample(oracle, y, (2,), alphas_cumprod=alphas_cumprod, generator=generator)

    assert torch.equal(draw(0), draw(0))
    assert not torch.equal(draw(0), draw(1))


def _fit(X, y, max_iter):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return DiffusionClassifier(max_iter=max_iter, random_state=0).fit(X, y)


def test_samples_of_well_separated_classes_are_on_class():
    X, y = make_blobs(300, centers=[[-4.0, 0.0], [4.0, 0.0]], cluster_std=1.0, random_state=0)
    clf = _fit(X, y, max_iter=200)
    X_new, y_new = clf.sample(100, y=np.repeat([0, 1], 50), random_state=0)
    assert X_new.shape == (100, 2)
    np.testing.assert_array_equal(y_new, np.repeat([0, 1], 50))
    knn = KNeighborsClassifier(n_neighbors=5).fit(X, y)
    assert (knn.predict(X_new) == y_new).mean() >= 0.95
    # The samples are spread like the data, not collapsed onto the centres.
    for c, centre in enumerate([-4.0, 4.0]):
        assert abs(X_new[y_new == c, 0].mean() - centre) < 0.6
        assert 0.5 < X_new[y_new == c].std(axis=0).min() and X_new[y_new == c].std(axis=0).max() < 1.6


def test_samples_of_spirals_lie_on_their_arm():
    X, y = make_spirals(1000, noise=0.05, random_state=0)
    clf = _fit(X, y, max_iter=500)
    X_new, y_new = clf.sample(200, y=np.repeat([0, 1], 100), random_state=0)
    knn = KNeighborsClassifier(n_neighbors=5).fit(X, y)
    assert (knn.predict(X_new) == y_new).mean() >= 0.9
    nearest = np.linalg.norm(X_new[:, None] - X[None], axis=2).min(axis=1)
    assert np.median(nearest) < 0.1  # arms 0.05 thick, pi / 5 ~ 0.63 apart radially
