"""The Monte Carlo error loop: shared ``(t, eps)`` draws, every class's denoising error."""

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from ._schedule import add_noise
from ._training import per_sample_loss

# (row, trial) pairs per denoiser call. Every call has exactly this many rows (the last
# block is padded), so float32 GEMM results never depend on how many rows were passed
# or which rows stand beside a sample. Keep it a multiple of 16: with a ragged tail the
# GEMM kernel takes another path for the leftover rows, and results move by ~1e-6.
EVAL_BLOCK = 2048
# (sample, trial) pairs scored per chunk of samples: bounds the memory of predict_proba.
CHUNK_PAIRS = 1 << 18


def timestep_grid(t_min, t_max, n_trials):
    """Return ``n_trials`` evenly spaced timesteps in ``[t_min, t_max)``, as Li et al. (2023)."""
    width = (t_max - t_min) / n_trials
    return (t_min + (np.arange(n_trials) + 0.5) * width).astype(np.int64)


def trial_noise(n_trials, sample_shape, seed):
    """Return the noise shared by every sample and class: shape (n_trials, *sample_shape)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((n_trials, *sample_shape), generator=generator)


@torch.no_grad()
def trial_errors(denoiser, x0, t, eps, n_classes, *, alphas_cumprod, loss):
    """Return the denoising loss of every (sample, class, trial), shape (n, n_classes, n_trials).

    Trial ``k`` noises every sample with ``eps[k]`` at timestep ``t[k]`` and asks the
    denoiser for that noise under each class: the comparison between classes is paired.
    """
    n_samples, n_trials = x0.shape[0], t.shape[0]
    n_pairs = n_samples * n_trials
    errors = torch.empty((n_pairs, n_classes), dtype=torch.float32, device=x0.device)
    forward_all = getattr(denoiser, "forward_all", None)
    labels = [torch.full((EVAL_BLOCK,), c, dtype=torch.long, device=x0.device) for c in range(n_classes)]
    for start in range(0, n_pairs, EVAL_BLOCK):
        pairs = torch.arange(start, start + EVAL_BLOCK, device=x0.device).clamp_(max=n_pairs - 1)
        rows, trials = pairs // n_trials, pairs % n_trials
        x_t = add_noise(x0[rows], eps[trials], t[trials], alphas_cumprod)
        if forward_all is not None:  # the class-independent part of the network runs once
            eps_hat = forward_all(x_t, t[trials])
        else:
            eps_hat = torch.stack([denoiser(x_t, t[trials], labels[c]) for c in range(n_classes)], dim=1)
        stop = min(start + EVAL_BLOCK, n_pairs) - start
        errors[start : start + stop] = per_sample_loss(loss, eps_hat, eps[trials])[:stop]
    return errors.reshape(n_samples, n_trials, n_classes).transpose(1, 2)


def mean_errors(denoiser, x0, t, eps, n_classes, *, alphas_cumprod, loss, weights=None, verbose=0):
    """Return the trial-weighted mean error of each (sample, class), shape (n, n_classes), float64.

    Samples are scored in chunks, so memory stays bounded whatever ``len(x0)``; ``x0``
    may stay on the CPU and is moved to the denoiser's device a chunk at a time.
    """
    n_samples, n_trials = x0.shape[0], t.shape[0]
    weights = torch.full((n_trials,), 1 / n_trials, dtype=torch.float64) if weights is None else weights
    chunk = max(1, CHUNK_PAIRS // n_trials)
    out = np.empty((n_samples, n_classes))
    for start in range(0, n_samples, chunk):
        x_chunk = x0[start : start + chunk].to(t.device)
        errors = trial_errors(denoiser, x_chunk, t, eps, n_classes, alphas_cumprod=alphas_cumprod, loss=loss)
        out[start : start + chunk] = (errors.cpu().double() @ weights).numpy()
        if verbose and n_samples > chunk:
            print(f"predict: {min(start + chunk, n_samples)}/{n_samples} samples")
    return out


# Upper ends of the timestep ranges that fit chooses among, as fractions of T. Which
# timesteps separate the classes depends on the data: fine 2-D structure lives at small t,
# other data use the whole range (DESIGN.md section 4).
RANGE_CANDIDATES = (0.05, 0.1, 0.2, 0.5, 1.0)


def fit_scale(errors, y, log_prior, prior_scale):
    """Return ``(s, objective)``: the scale of ``softmax(log_prior - s * errors)`` fitted by log loss.

    ``errors`` has shape (n, n_classes) and ``y`` holds class indices. This is temperature
    scaling (Guo et al., 2017) of the error-to-log-likelihood map, with a Gaussian prior of
    one e-fold on ``log s`` around ``log prior_scale``, so that a few held-out samples that
    are all classified right do not drive ``s`` to infinity.
    """
    rows = np.arange(y.size)

    def objective(log_s):
        scores = log_prior - np.exp(log_s) * errors
        log_loss = np.sum(logsumexp(scores, axis=1) - scores[rows, y])
        return float((log_loss + 0.5 * (log_s - np.log(prior_scale)) ** 2) / y.size)

    result = minimize_scalar(objective, bounds=(-8.0, 12.0), method="bounded")
    return float(np.exp(result.x)), float(result.fun)


def select_timestep_range(errors, t, y, log_prior, n_steps, prior_scale):
    """Choose the trials' timestep range and error scale by held-out log loss.

    ``errors`` of shape (n, n_classes, n_grid) are the held-out samples' errors at the
    timesteps ``t`` (an even grid over ``[0, n_steps)``). Each range ``[0, hi * n_steps)``
    of ``RANGE_CANDIDATES`` is scored by the log loss of its mean errors after fitting the
    scale (see :func:`fit_scale`); returns ``((0.0, hi), scale)`` of the best.
    """
    best = None
    for hi in RANGE_CANDIDATES:
        in_range = t < hi * n_steps
        scale, loss = fit_scale(errors[:, :, in_range].mean(axis=2), y, log_prior, prior_scale)
        if best is None or loss < best[0]:
            best = (loss, (0.0, hi), scale)
    return best[1], best[2]
