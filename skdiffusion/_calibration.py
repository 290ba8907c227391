"""Choosing, on held-out samples, the trials' timestep range and the error-to-log-likelihood scale."""

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

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
    timesteps ``t``, spread evenly over ``[0, n_steps)`` in any order. Each range
    ``[0, hi * n_steps)`` of ``RANGE_CANDIDATES`` is scored by the log loss of its mean
    errors after fitting the scale (see :func:`fit_scale`); returns ``((0.0, hi), scale)``
    of the best.
    """
    best = None
    for hi in RANGE_CANDIDATES:
        in_range = t < hi * n_steps
        scale, loss = fit_scale(errors[:, :, in_range].mean(axis=2), y, log_prior, prior_scale)
        if best is None or loss < best[0]:
            best = (loss, (0.0, hi), scale)
    return best[1], best[2]
