"""Tests of the held-out choice of the timestep range and of the error scale."""

import copy
import functools
import tracemalloc

import numpy as np
import pytest
from sklearn.datasets import make_classification

from skdiffusion import DiffusionClassifier, MLPDenoiser, _calibration, _fitting
from skdiffusion._calibration import (
    choosing_sample,
    fit_scale,
    fit_weights,
    inclusion_probabilities,
    range_means,
    row_log_losses,
    select_timestep_range,
)
from skdiffusion._scoring import timestep_grid


def test_fit_scale_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    errors = rng.uniform(0, 1, size=(20_000, 3))
    log_prior = np.log([0.2, 0.3, 0.5])
    scores = log_prior - 4.0 * errors
    proba = np.exp(scores - scores.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    y = (proba.cumsum(axis=1) > rng.uniform(size=(20_000, 1))).argmax(axis=1)
    scale, _ = fit_scale(errors, y, log_prior, prior_scale=1.0)
    assert scale == pytest.approx(4.0, rel=0.05)


def test_fit_scale_stays_finite_when_every_held_out_sample_is_right():
    errors = np.array([[0.1, 0.9], [0.8, 0.2], [0.0, 1.0]])
    scale, objective = fit_scale(errors, np.array([0, 1, 0]), np.log([0.5, 0.5]), prior_scale=2.0)
    # The log loss alone falls for ever as the scale grows; the prior on log(scale) stops it.
    assert 2.0 < scale < 2.0 * np.e**3
    assert np.isfinite(objective)


def test_select_timestep_range_finds_the_timesteps_that_carry_the_signal():
    rng = np.random.default_rng(0)
    n, n_steps = 400, 1000
    t = timestep_grid(0, n_steps, 128)
    y = np.arange(n) % 2
    errors = rng.normal(size=(n, 2, t.size))
    signal = t < 0.1 * n_steps
    errors[np.arange(n), y] -= signal  # the true class denoises better, but only at small t
    trials = select_timestep_range(range_means(errors, t, n_steps), y, np.log([0.5, 0.5]), prior_scale=1.0)
    assert trials.timestep_range == (0.0, 0.1)
    assert trials.scale > 0 and trials.category_weight == 1.0


def test_fit_weights_tempers_categories_that_repeat_one_piece_of_evidence():
    rng = np.random.default_rng(0)
    y = rng.integers(2, size=2000)
    agrees = rng.random(2000) < 0.8
    # One column that agrees with the class 80% of the time, its frequencies known.
    single = np.where((agrees == (y == 0))[:, None], np.log([0.8, 0.2]), np.log([0.2, 0.8]))
    errors, log_prior = np.zeros((2000, 2)), np.log([0.5, 0.5])
    (_, a_single), _ = fit_weights(errors, y, log_prior, 1.0, category_ll=single)
    (_, a_eight), _ = fit_weights(errors, y, log_prior, 1.0, category_ll=8 * single)  # the column 8 times
    assert 0.8 < a_single < 1.25
    assert a_eight * 8 == pytest.approx(a_single, rel=0.05)
    # Without categories, the scale alone, and a weight of 1.
    (scale, weight), objective = fit_weights(errors + y[:, None], y, log_prior, 1.0)
    assert weight == 1.0 and (scale, objective) == fit_scale(errors + y[:, None], y, log_prior, 1.0)


def test_row_log_losses_are_what_fit_scale_minimises():
    rng = np.random.default_rng(0)
    errors, y = rng.random((30, 3)), rng.integers(0, 3, 30)
    log_prior = np.log([0.2, 0.3, 0.5])
    scale, objective = fit_scale(errors, y, log_prior, prior_scale=3.0)
    losses = row_log_losses(errors, y, log_prior, scale)
    # The objective: the mean log loss plus the prior on log(scale), per sample.
    assert objective == pytest.approx(losses.mean() + 0.5 * np.log(scale / 3.0) ** 2 / 30)
    proba = np.exp(log_prior - scale * errors)
    proba /= proba.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(losses, -np.log(proba[np.arange(30), y]))


def test_row_log_losses_stay_finite_at_far_scores_and_skip_a_class_without_prior():
    errors = np.array([[0.0, 1e6, 2e6], [3e6, 1e6, 0.0]])
    # A class that partial_fit has not seen yet has a prior of 0: it takes no probability.
    log_prior = np.array([np.log(0.5), np.log(0.5), -np.inf])
    losses = row_log_losses(errors, np.array([0, 1]), log_prior, 1.0)
    # Row 0: class 0 leads by 1e6, a loss of exp(-1e6) that rounds to 0; row 1: class 1 leads
    # class 0 by 2e6, and class 2, of least error, has no prior.
    np.testing.assert_array_equal(losses, [0.0, 0.0])
    losses = row_log_losses(errors, np.array([1, 0]), log_prior, 1.0)
    np.testing.assert_allclose(losses, [1e6, 2e6])


def test_inclusion_probabilities_sum_to_the_size_in_proportion_to_u_below_one():
    rng = np.random.default_rng(0)
    u = np.concatenate([rng.exponential(size=990), [50.0] * 10, [0.0] * 5])
    pi = inclusion_probabilities(u, 100)
    assert pi.sum() == pytest.approx(100, rel=1e-9)
    assert np.all(pi[-5:] == 0) and np.all(pi[990:1000] == 1)  # weightless rows never, the largest surely
    below = (pi > 0) & (pi < 1)
    np.testing.assert_allclose(pi[below] / u[below], pi[below][0] / u[below][0])
    # With fewer rows that count than the size, every one that counts.
    np.testing.assert_array_equal(inclusion_probabilities(np.array([0.0, 2.0, 1.0]), 2), [0, 1, 1])


def test_choosing_sample_estimates_sums_over_all_rows_and_keeps_the_unsure_rows():
    # A held-out set as a large fit sees it: most rows right and sure, a few wrong or unsure.
    rng = np.random.default_rng(1234)  # apart from the samples' seeds, whose draws it would match
    n, size = 20_000, 1000
    losses = np.where(rng.random(n) < 0.03, rng.exponential(1.0, n), rng.exponential(0.002, n))
    weights = rng.choice([0.0, 1.0, 2.0], size=n, p=[0.1, 0.6, 0.3])
    truth = np.sum(weights * losses), weights.sum()
    sums, uniform = [], []
    for seed in range(300):
        rows, w = choosing_sample(losses, weights, size, seed)
        assert np.all(weights[rows] > 0) and abs(rows.size - size) < 5 * np.sqrt(size)
        sums.append((np.sum(w * losses[rows]), w.sum()))
        kept = np.random.default_rng(seed).choice(n, size, replace=False)
        uniform.append(np.sum(weights[kept] * losses[kept]) * n / size)
    sums, uniform = np.array(sums), np.array(uniform)
    # Unbiased (Horvitz-Thompson): the means over 300 samples within 4 standard errors.
    for estimate, total in zip(sums.T, truth):
        assert abs(estimate.mean() - total) < 4 * estimate.std() / np.sqrt(300)
    # ... and the log loss sum spreads far less than over a uniform sample of the same size.
    assert sums[:, 0].std() < 0.1 * uniform.std()
    # The unsure rows are kept for sure, or nearly.
    rows, _ = choosing_sample(losses, weights, size, 0)
    unsure = np.flatnonzero((losses > 1.0) & (weights > 0))
    assert np.isin(unsure, rows).mean() > 0.95


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("seed", [0, 1])
def test_many_held_out_rows_choose_the_trials_that_all_of_them_would(monkeypatch, seed):
    # 600 held-out rows, with missing cells and a categorical column; the choice on a
    # sample of 150 against that on all of them, for the fitted network and its draws.
    X, y = make_classification(n_samples=6000, n_features=6, n_informative=4, flip_y=0.02, random_state=seed)
    rng = np.random.default_rng(seed)
    X[:, 5] = np.where(rng.random(6000) < 0.7, y, rng.integers(2, size=6000))  # a category that says the class
    X[:, :5][rng.random((6000, 5)) < 0.05] = np.nan
    calls = []

    def recorded(network, **kwargs):
        calls.append((copy.deepcopy(network), kwargs))
        return choose_trials(network, **kwargs)

    choose_trials = _fitting.choose_trials
    monkeypatch.setattr(_fitting, "choose_trials", recorded)
    DiffusionClassifier(categorical_features=[5], max_iter=200, refit=False, random_state=seed).fit(X, y)
    network, kwargs = calls[-1]
    assert kwargs["y"].size == 600 and kwargs["mask"] is not None and kwargs["category_ll"] is not None
    every = choose_trials(network, **kwargs)
    monkeypatch.setattr(_calibration, "CHOOSING_ROWS", 150)
    sampled = choose_trials(network, **kwargs)
    assert sampled != every and sampled == choose_trials(network, **kwargs)  # a sample, the same again
    assert sampled.timestep_range == every.timestep_range
    # Over seeds 0-11 the range was the same, and the ratios 0.95-1.11 (scale), 0.80-1.05
    # (category weight) and 0.90-1.07 (log loss).
    assert sampled.scale == pytest.approx(every.scale, rel=0.2)
    assert sampled.category_weight == pytest.approx(every.category_weight, rel=0.3)
    assert sampled.held_out_loss == pytest.approx(every.held_out_loss, rel=0.2)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_choosing_the_trials_holds_their_means_not_every_trials_errors(monkeypatch):
    # The held-out rows' errors at 256 trials under 20 classes would take 12 MB for 300
    # rows and 49 MB for 1,200; the means the choice needs (five ranges), taken a piece of
    # rows at a time, take 50 times less (numpy's arrays, which tracemalloc sees).
    peaks = {}
    choose_trials = _fitting.choose_trials

    def traced(network, **kwargs):
        tracemalloc.start()
        try:
            return choose_trials(network, **kwargs)
        finally:
            peaks[kwargs["y"].size] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()

    monkeypatch.setattr(_fitting, "choose_trials", traced)
    small = functools.partial(MLPDenoiser, hidden_size=16, n_blocks=1)
    for n_samples in (3000, 12_000):
        X, y = make_classification(
            n_samples, n_features=6, n_informative=6, n_redundant=0, n_classes=20, random_state=0
        )
        DiffusionClassifier(small, max_iter=1, validation_fraction=0.1, refit=False, random_state=0).fit(X, y)
    assert set(peaks) == {300, 1200}
    for rows, peak in peaks.items():
        assert peak < 0.1 * rows * 20 * 256 * 8
