"""A denoiser trained elsewhere: a given noise schedule, max_iter=0, unstandardised features."""

import functools
import importlib.util
import warnings

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from torch import nn

import skdiffusion
from skdiffusion import DiffusionClassifier, MLPDenoiser
from skdiffusion._schedule import make_alphas_cumprod

SMALL_MLP = functools.partial(MLPDenoiser, hidden_size=32, n_blocks=2)
ALPHAS_CUMPROD = make_alphas_cumprod("cosine", 200)
MEANS = np.array([[-2.0, 0.0], [2.0, 0.0]])


class GaussianDenoiser(nn.Module):
    """The exact ``E[eps | x_t, y]`` when class ``y`` is ``N(means[y], I)``: a denoiser with nothing to train.

    ``x_t ~ N(sqrt(a) mu, I)`` for ``a = alphas_cumprod[t]``, so ``E[eps | x_t] =
    sqrt(1 - a) (x_t - sqrt(a) mu)``.
    """

    def __init__(self, means=MEANS, alphas_cumprod=ALPHAS_CUMPROD):
        super().__init__()
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float32))
        self.register_buffer("alphas_cumprod", torch.as_tensor(alphas_cumprod, dtype=torch.float32))

    def forward(self, x_t, t, y):
        a = self.alphas_cumprod[t].unsqueeze(1)
        return (1 - a).sqrt() * (x_t - a.sqrt() * self.means[y])


def _gaussians(n, random_state):
    rng = np.random.default_rng(random_state)
    y = rng.integers(2, size=n)
    return MEANS[y] + rng.standard_normal((n, 2)), y


def _zero_shot(denoiser=None, **params):
    params = {
        "max_iter": 0,
        "noise_schedule": ALPHAS_CUMPROD,
        "n_diffusion_steps": ALPHAS_CUMPROD.size,
        "standardize": False,
        "n_trials": 32,
        "random_state": 0,
        **params,
    }
    return DiffusionClassifier(denoiser or GaussianDenoiser(), **params)


@pytest.fixture(scope="module")
def gaussians():
    X, y = _gaussians(200, 0)
    X_test, y_test = _gaussians(400, 1)
    return X, y, X_test, y_test


def test_an_array_schedule_is_the_named_one_given_as_values():
    X, y = _gaussians(100, 0)
    fits = {}
    for schedule in ["cosine", ALPHAS_CUMPROD, ALPHAS_CUMPROD.tolist()]:
        clf = DiffusionClassifier(
            SMALL_MLP, max_iter=50, n_trials=8, noise_schedule=schedule, n_diffusion_steps=200, random_state=0
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits[type(schedule).__name__] = clf.fit(X, y)
    for clf in fits.values():
        assert clf.alphas_cumprod_.dtype == np.float64
        np.testing.assert_array_equal(clf.alphas_cumprod_, ALPHAS_CUMPROD)
        np.testing.assert_array_equal(clf.predict_proba(X), fits["str"].predict_proba(X))


@pytest.mark.parametrize(
    "schedule, match",
    [
        (ALPHAS_CUMPROD[:-1], r"holds 199 values .* but n_diffusion_steps=200: set n_diffusion_steps=199"),
        (ALPHAS_CUMPROD[::-1], "must decrease strictly"),
        (np.r_[1.0, ALPHAS_CUMPROD[1:]], "must decrease strictly, every value in \\(0, 1\\)"),
        (np.r_[ALPHAS_CUMPROD[:-1], 0.0], "must decrease strictly"),
        (np.r_[ALPHAS_CUMPROD[:-1], np.nan], "must decrease strictly"),
        (ALPHAS_CUMPROD.reshape(2, 100), r"1-D array of alphas_cumprod, got shape \(2, 100\)"),
        (["a"] * 200, "must be a name or an array of numbers"),
    ],
)
def test_bad_schedule_arrays_raise_a_clear_error(schedule, match):
    X, y = _gaussians(40, 0)
    clf = _zero_shot(noise_schedule=schedule)
    with pytest.raises(ValueError, match=match):
        clf.fit(X, y)
    assert not hasattr(clf, "classes_")


def test_max_iter_0_wraps_a_frozen_denoiser_without_training(gaussians):
    X, y, X_test, y_test = gaussians
    clf = _zero_shot()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning, nor any other
        clf.fit(X, y)
    assert clf.n_iter_ == 0 and clf.loss_curve_ == []
    assert clf.denoiser_ is not clf.denoiser  # a copy, as for any instance
    for name, buffer in clf.denoiser.state_dict().items():
        torch.testing.assert_close(clf.denoiser_.state_dict()[name], buffer, rtol=0, atol=0)
    # The exact denoiser, unchanged, classifies about as well as Bayes' rule on the true densities.
    bayes = norm.cdf(2.0)  # 0.977: each class is one standard deviation per unit of mean away
    assert clf.score(X_test, y_test) >= bayes - 0.04


def test_a_denoiser_without_trainable_parameters_needs_max_iter_0(gaussians):
    X, y, _, _ = gaussians
    with pytest.raises(ValueError, match=r"no trainable parameters, so fit cannot train it \(max_iter=0"):
        _zero_shot(max_iter=10).fit(X, y)


def test_max_iter_0_needs_a_trained_denoiser(gaussians):
    X, y, _, _ = gaussians
    with pytest.raises(ValueError, match=r"max_iter=0 trains nothing.*with denoiser=None, fit builds a new network"):
        DiffusionClassifier(max_iter=0).fit(X, y)
    # A fitted network may be fitted on, warm, without training: the trials are chosen anew.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = DiffusionClassifier(max_iter=30, n_trials=8, random_state=0).fit(X, y)
    state = {name: value.clone() for name, value in clf.denoiser_.state_dict().items()}
    clf.set_params(warm_start=True, max_iter=0).fit(X, y)
    for name, value in clf.denoiser_.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0)


def test_max_iter_0_calibrates_on_every_sample(gaussians):
    X, y, _, _ = gaussians
    clf = _zero_shot().fit(X, y)
    assert clf.scale_ != X.shape[1]  # fitted, not the ELBO's
    # On every sample: a reordering of the rows does not change which rows are used.
    order = np.random.default_rng(0).permutation(len(y))
    reordered = _zero_shot().fit(X[order], y[order])
    assert reordered.timestep_range_ == clf.timestep_range_
    assert reordered.scale_ == pytest.approx(clf.scale_, rel=1e-6)
    # validation_fraction=None skips the calibration: all timesteps, the ELBO's scale.
    skipped = _zero_shot(validation_fraction=None).fit(X, y)
    assert skipped.timestep_range_ == (0.0, 1.0) and skipped.scale_ == X.shape[1]


def test_standardize_false_feeds_and_samples_the_features_as_given(gaussians):
    X, y, _, _ = gaussians
    clf = _zero_shot().fit(X + 10.0, y)  # a shift the denoiser does not know of
    np.testing.assert_array_equal(clf.scaler_.transform(X), X)
    assert clf.score(X, y) < 0.6  # so the shifted features reached it unchanged
    clf = _zero_shot().fit(X, y)
    X_new, _ = clf.sample(400, y=1, random_state=0)
    # The exact denoiser samples its class's N(means[1], I), in the features' own space.
    np.testing.assert_allclose(X_new.mean(axis=0), MEANS[1], atol=0.2)
    np.testing.assert_allclose(X_new.std(axis=0), 1.0, atol=0.15)


def test_save_and_load_keep_a_given_schedule_and_unstandardised_features(gaussians, tmp_path):
    X, y, X_test, _ = gaussians
    clf = _zero_shot().fit(X, y)
    path = tmp_path / "model.safetensors"
    skdiffusion.save(clf, path)
    loaded = skdiffusion.load(path, denoiser=GaussianDenoiser())
    assert loaded.standardize is False
    np.testing.assert_array_equal(loaded.noise_schedule, ALPHAS_CUMPROD)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), clf.predict_proba(X_test))


def test_save_names_a_schedule_it_cannot_store(gaussians, tmp_path):
    X, y, _, _ = gaussians
    clf = _zero_shot(noise_schedule=torch.as_tensor(ALPHAS_CUMPROD)).fit(X, y)
    with pytest.raises(TypeError, match=r"parameter noise_schedule, a Tensor: .* scheduler_alphas_cumprod"):
        skdiffusion.save(clf, tmp_path / "model.safetensors")


def test_the_diffusers_module_names_its_extra_when_diffusers_is_missing(monkeypatch):
    find_spec = importlib.util.find_spec
    spec = find_spec("skdiffusion.diffusers")

    def find_spec_without_diffusers(name, *args):
        return None if name == "diffusers" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec_without_diffusers)
    with pytest.raises(ImportError, match=r'pip install "skdiffusion\[diffusers\]"'):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


class CountingDenoiser(GaussianDenoiser):
    """The exact denoiser, scoring in calls of 7 rows; records the rows of each call."""

    eval_batch_size = 7

    def __init__(self):
        super().__init__()
        self.rows = []

    def forward(self, x_t, t, y):
        self.rows.append(x_t.shape[0])
        return super().forward(x_t, t, y)


def test_a_denoiser_can_set_the_rows_of_its_scoring_calls(gaussians):
    X, y, X_test, _ = gaussians
    clf = _zero_shot(validation_fraction=None).fit(X, y)
    clf_7 = _zero_shot(CountingDenoiser(), validation_fraction=None).fit(X, y)
    clf_7.denoiser_.rows.clear()
    np.testing.assert_allclose(clf_7.predict_proba(X_test[:5]), clf.predict_proba(X_test[:5]), rtol=1e-5)
    assert set(clf_7.denoiser_.rows) == {7}  # padded to 7, instead of the default 1008 rows
