"""Tests of the held-out choice of the timestep range and of the error scale."""

import numpy as np
import pytest

from skdiffusion._calibration import fit_scale, fit_weights, row_log_losses, select_timestep_range
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
    trials = select_timestep_range(errors, t, y, np.log([0.5, 0.5]), n_steps, prior_scale=1.0)
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
