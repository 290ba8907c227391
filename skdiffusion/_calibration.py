"""Choosing, on held-out samples, the trials' timestep range and the error-to-log-likelihood scale."""

import functools
import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from ._compute import run_in_jobs
from ._scoring import chunk_rows, piece_rows, trial_draws, trial_errors
from ._validation import timestep_bounds

# Upper ends of the timestep ranges that fit chooses among, as fractions of T. Which
# timesteps separate the classes depends on the data: fine 2-D structure lives at small t,
# other data use the whole range.
RANGE_CANDIDATES = (0.05, 0.1, 0.2, 0.5, 1.0)
# Trials on which the held-out samples are scored to choose the range: 128 antithetic
# pairs, each at its own timestep, a grid fine enough for the narrowest candidate.
SELECTION_TRIALS = 256
# The selection's noise is seeded this far from predict's (noise_seed_): the scale is fitted
# on draws other than those it will be applied to.
SELECTION_SEED_OFFSET = 1
# Held-out rows beyond which the trials are chosen on a sample of them (see choosing_sample):
# scored every one at SELECTION_TRIALS under every class, a fit on 100,000 rows took 2.4
# times as long, at the same choice (benchmarks/results/choosing_rows.md).
CHOOSING_ROWS = 2000
# Trials of the survey that tells the held-out rows the choice rests on from the others.
SURVEY_TRIALS = 16
# The survey's noise and the sample's draws are seeded this far from predict's (noise_seed_).
SURVEY_SEED_OFFSET = 2
# Bounds of log(scale) searched by fit_scale: scales from 3e-4 to 1.6e5, far beyond any
# seen, so that the prior, not the bounds, keeps the scale finite.
LOG_SCALE_BOUNDS = (-8.0, 12.0)
# Bounds of log(weight) of the categories' log-likelihood: from ignoring them nearly
# (1/400) to trusting them 20 times over; the prior keeps it near 1.
LOG_CATEGORY_WEIGHT_BOUNDS = (-6.0, 3.0)


class Trials(NamedTuple):
    """What fit chooses on held-out rows: the trials' range and the weights of Bayes' rule's terms."""

    timestep_range: tuple  # (lo, hi), fractions of the diffusion steps
    scale: float  # turns a mean error into a log-likelihood
    category_weight: float  # of log p(x_cat | c); 1 without categorical columns
    # The held-out rows' mean log loss with these weights (their weighted mean, without
    # the priors on the weights); NaN without held-out rows.
    held_out_loss: float = float("nan")


def fit_scale(errors, y, log_prior, prior_scale, weights=None):
    """Return ``(s, objective)``: the scale of ``softmax(log_prior - s * errors)`` fitted by log loss.

    ``errors`` has shape (n, n_classes) and ``y`` holds class indices. This is temperature
    scaling (Guo et al., 2017) of the error-to-log-likelihood map, with a Gaussian prior of
    one e-fold on ``log s`` around ``log prior_scale``, so that a few held-out samples that
    are all classified right do not drive ``s`` to infinity. ``weights`` count each sample
    as that many (None: once each).
    """
    weights = np.ones(y.size) if weights is None else weights

    def objective(log_s):
        log_loss = np.sum(weights * row_log_losses(errors, y, log_prior, np.exp(log_s)))
        return float((log_loss + 0.5 * (log_s - np.log(prior_scale)) ** 2) / weights.sum())

    result = minimize_scalar(objective, bounds=LOG_SCALE_BOUNDS, method="bounded")
    return float(np.exp(result.x)), float(result.fun)


def bayes_logits(errors, log_prior, scale, category_ll=None, category_weight=1.0):
    """Return Bayes' rule's logits ``log_prior + category_weight * category_ll - scale * errors``, (n, n_classes).

    ``errors`` are the mean denoising errors of each sample under each class; ``category_ll``
    the samples' categorical log-likelihood, or None without categorical columns.
    """
    logits = log_prior - scale * errors
    if category_ll is not None:
        logits = logits + category_weight * category_ll
    return logits


def row_log_losses(errors, y, log_prior, scale, category_ll=None, category_weight=1.0):
    """Return each sample's log loss under ``softmax(log_prior + category_weight * category_ll - scale * errors)``."""
    scores = bayes_logits(errors, log_prior, scale, category_ll, category_weight)
    # The log-sum-exp written out: scipy's checks and sign handling cost 80 microseconds a
    # call on a few hundred rows, five times this, and fitting the weights makes thousands.
    top = scores.max(axis=1)
    return top + np.log(np.exp(scores - top[:, None]).sum(axis=1)) - scores[np.arange(y.size), y]


def fit_weights(errors, y, log_prior, prior_scale, weights=None, category_ll=None):
    """Return ``((s, a), objective)``: the error scale and the weight of ``category_ll``, fitted by log loss.

    The scores are ``log_prior + a * category_ll - s * errors``, ``category_ll`` of shape
    (n, n_classes) the log-likelihood of each sample's categories under each class. Its
    weight tempers the independence of the categories that the product of their
    frequencies assumes (many categorical columns make it overconfident); it has a
    Gaussian prior of one e-fold on ``log a`` around 0, as the scale has (see
    :func:`fit_scale`). Without ``category_ll``: ``a = 1`` and the scale alone.
    """
    if category_ll is None:
        scale, objective = fit_scale(errors, y, log_prior, prior_scale, weights)
        return (scale, 1.0), objective
    total = y.size if weights is None else weights.sum()

    def scale_and_objective(log_a):
        scale, objective = fit_scale(errors, y, log_prior + np.exp(log_a) * category_ll, prior_scale, weights)
        return scale, objective + 0.5 * log_a**2 / total

    log_a = minimize_scalar(lambda v: scale_and_objective(v)[1], bounds=LOG_CATEGORY_WEIGHT_BOUNDS, method="bounded").x
    scale, objective = scale_and_objective(log_a)
    return (scale, float(np.exp(log_a))), float(objective)


def range_means(errors, t, n_steps):
    """Return the mean errors over the trials of each range of ``RANGE_CANDIDATES``: (n, n_classes, n_ranges).

    ``errors`` of shape (n, n_classes, n_trials) are the samples' errors at the timesteps
    ``t``, spread evenly over ``[0, n_steps)`` in any order; range ``hi`` is
    ``[0, hi * n_steps)``.
    """
    return np.stack([errors[:, :, t < hi * n_steps].mean(axis=2) for hi in RANGE_CANDIDATES], axis=2)


def select_timestep_range(means, y, log_prior, prior_scale, weights=None, category_ll=None):
    """Choose the trials' timestep range and the weights of Bayes' rule by held-out log loss.

    ``means`` (n, n_classes, n_ranges) are the held-out samples' mean errors over the
    trials of each range of ``RANGE_CANDIDATES`` (see :func:`range_means`). Each range
    ``[0, hi * n_steps)`` is scored by the log loss of its mean errors after fitting the
    weights (see :func:`fit_weights`); returns the best as :class:`Trials`.
    """
    best = None
    for hi, mean in zip(RANGE_CANDIDATES, np.moveaxis(means, 2, 0)):
        trials, loss = _fitted_trials((0.0, hi), mean, y, log_prior, prior_scale, weights, category_ll)
        if best is None or loss < best[0]:
            best = (loss, trials)
    return best[1]


def _fitted_trials(timestep_range, mean, y, log_prior, prior_scale, weights, category_ll):
    """Return ``(trials, objective)``: the weights fitted to the range's ``mean`` errors (see :func:`fit_weights`).

    The :class:`Trials` hold the range, the weights and the samples' mean log loss with them.
    """
    (scale, category_weight), objective = fit_weights(mean, y, log_prior, prior_scale, weights, category_ll)
    losses = row_log_losses(mean, y, log_prior, scale, category_ll, category_weight)
    return Trials(timestep_range, scale, category_weight, float(np.average(losses, weights=weights))), objective


def choose_trials(
    denoiser,
    x0,
    y,
    *,
    timestep_range,
    alphas_cumprod,
    loss,
    log_prior,
    noise_seed,
    weights=None,
    mask=None,
    category_ll=None,
    threads=1,
):
    """Return the :class:`Trials` chosen on the held-out samples ``x0`` of class indices ``y``, ``weights``.

    ``timestep_range`` "auto" chooses the range by :func:`select_timestep_range`; a pair
    fixes it, and only the scale is fitted, on ``SELECTION_TRIALS`` trials spread over
    it. Without held-out samples: the whole range (for "auto") and the scale of the
    uniformly weighted ELBO, the number of features. ``mask`` keeps each sample's
    diffused elements; ``category_ll`` (n, n_classes) is the samples' categorical
    log-likelihood, whose weight is fitted with the scale. More than ``CHOOSING_ROWS``
    samples are first scored at ``SURVEY_TRIALS`` trials, and the choice is made on a
    weighted sample of ``CHOOSING_ROWS`` of them, most of them those that survey finds
    wrong or unsure (see :func:`choosing_sample`). The samples are scored on ``threads``
    threads of one torch thread each, in pieces (see :func:`run_in_jobs`), on the CPU.
    """
    n_features, n_steps = math.prod(x0.shape[1:]), alphas_cumprod.shape[0]
    auto = isinstance(timestep_range, str)
    if y.size == 0:
        return Trials((0.0, 1.0) if auto else timestep_range, float(n_features), 1.0)
    bounds = (0, n_steps) if auto else timestep_bounds(timestep_range, n_steps)
    mean_errors = functools.partial(
        _mean_errors,
        denoiser,
        alphas_cumprod=alphas_cumprod,
        loss=loss,
        n_classes=log_prior.shape[-1],
        threads=threads,
    )
    if y.size > CHOOSING_ROWS:  # a sample of the rows, told apart by a survey at a few trials
        seed = noise_seed + SURVEY_SEED_OFFSET
        t, eps = trial_draws(*bounds, SURVEY_TRIALS, x0.shape[1:], seed)
        survey = mean_errors(x0, mask, t, eps, _over_trials)
        (scale, category_weight), _ = fit_weights(survey, y, log_prior, n_features, weights, category_ll)
        losses = row_log_losses(survey, y, log_prior, scale, category_ll, category_weight)
        rows, weights = choosing_sample(losses, weights, CHOOSING_ROWS, seed)
        x0, y = x0[torch.as_tensor(rows, device=x0.device)], y[rows]
        mask = None if mask is None else mask[torch.as_tensor(rows, device=mask.device)]
        category_ll = None if category_ll is None else category_ll[rows]
    t, eps = trial_draws(*bounds, SELECTION_TRIALS, x0.shape[1:], noise_seed + SELECTION_SEED_OFFSET)
    if auto:
        means = mean_errors(x0, mask, t, eps, functools.partial(range_means, t=t, n_steps=n_steps))
        return select_timestep_range(means, y, log_prior, n_features, weights, category_ll)
    mean = mean_errors(x0, mask, t, eps, _over_trials)
    trials, _ = _fitted_trials(timestep_range, mean, y, log_prior, n_features, weights, category_ll)
    return trials


def _over_trials(errors):
    """Return the mean of ``errors`` (n, n_classes, n_trials) over the trials: (n, n_classes)."""
    return errors.mean(axis=2)


def _mean_errors(denoiser, x0, mask, t, eps, reduce, *, alphas_cumprod, loss, n_classes, threads):
    """Return ``reduce(errors)``, ``errors`` those of the samples ``x0`` under every class at the trials ``(t, eps)``.

    ``errors`` has shape (rows, n_classes, n_trials), float64, and ``reduce`` takes the
    means over trials that the choice needs, a piece of rows at a time: the errors of
    every row would take ``n_trials`` times the memory (410 MB for 2,000 rows of 100
    classes at 256 trials). The samples are scored on ``threads`` threads of one torch
    thread each, in pieces (see :func:`run_in_jobs`), on the CPU.
    """
    n_trials = t.shape[0]
    score = functools.partial(
        trial_errors,
        denoiser,
        t=torch.as_tensor(t, device=x0.device),
        eps=eps.to(x0.device),
        n_classes=n_classes,
        alphas_cumprod=alphas_cumprod,
        loss=loss,
    )
    (means,) = run_in_jobs(
        lambda x, mask, verbose: (reduce(score(x, mask=mask).cpu().double().numpy()),),
        x0,
        rows=chunk_rows(n_trials, n_classes),
        n_jobs=None,
        mask=mask,
        threads=threads if x0.device.type == "cpu" else 1,
        min_rows=piece_rows(denoiser, n_trials, n_classes),
    )
    return means


def choosing_sample(losses, weights, size, seed):
    """Return ``(rows, weights)``: a sample of about ``size`` of the held-out rows, weighted to stand for them all.

    Row ``i`` is kept with probability ``pi_i = min(1, c u_i)``, ``c`` such that the
    ``pi_i`` sum to ``size``, independently of the others (Poisson sampling), and weighs
    ``w_i / pi_i`` (Horvitz & Thompson, 1952): a weighted sum over the sample is an
    unbiased estimate of the sum over all rows, ``w_i`` the rows' ``weights`` (None: 1).
    ``u_i = w_i (mean + losses_i)``, ``losses`` each row's log loss in a survey of a few
    trials and ``mean`` their mean weighted by ``w``: the held-out log loss of a large
    fit rests on its few wrong or unsure rows, which a uniform sample holds too few of to
    choose by, and the half of ``u`` that is uniform keeps every row's chance at least
    half that of a sample in proportion to ``w``. Rows of weight 0 are never kept. The
    draws are seeded by ``seed``, so a network that changes the losses little keeps
    nearly the same rows.
    """
    weights = np.ones(losses.size) if weights is None else weights
    u = weights * (np.dot(weights, losses) / weights.sum() + losses) if weights.any() else weights
    if not u.any():  # all certain and right: in proportion to the weights
        u = weights
    pi = inclusion_probabilities(u, size)
    rows = np.flatnonzero(np.random.default_rng(seed).random(u.size) < pi)
    return rows, weights[rows] / pi[rows]


def inclusion_probabilities(u, size):
    """Return ``min(1, c u)`` with ``c`` such that it sums to ``size`` (or ``u > 0`` where fewer are positive).

    The rows whose ``c u_i`` would pass 1 are kept for sure, and ``c`` shares the rest of
    ``size`` among the others in proportion to ``u`` (found by bisection).
    """
    positive = u > 0
    if np.count_nonzero(positive) <= size:
        return positive.astype(float)
    lo, hi = 0.0, size / u[positive].min()
    for _ in range(100):
        c = 0.5 * (lo + hi)
        lo, hi = (c, hi) if np.minimum(1.0, c * u).sum() < size else (lo, c)
    return np.minimum(1.0, hi * u)
