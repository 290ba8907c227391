"""Noise schedules and the forward process of DDPM (Ho et al., 2020)."""

import math

import numpy as np
import torch
from torch.utils.weak import WeakIdKeyDictionary

# The factors of add_noise per schedule tensor (which nothing changes in place), made once:
# a training step would otherwise take the square roots of its minibatch's timesteps anew.
_NOISE_FACTORS = WeakIdKeyDictionary()


def _linear_betas(n_steps):
    """Linear betas of Ho et al. (2020), rescaled to ``n_steps`` as in Nichol & Dhariwal (2021).

    Below 21 steps the rescaled betas would reach 1; they are clipped at 0.999, as the
    cosine schedule's are.
    """
    scale = 1000 / n_steps
    return np.clip(np.linspace(scale * 1e-4, scale * 0.02, n_steps, dtype=np.float64), 0.0, 0.999)


def _cosine_betas(n_steps, s=0.008):
    """Cosine schedule of Nichol & Dhariwal (2021), eq. (17), betas clipped at 0.999."""
    steps = np.arange(n_steps + 1, dtype=np.float64) / n_steps
    f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return np.clip(1 - f[1:] / f[:-1], 0.0, 0.999)


BETA_SCHEDULES = {"linear": _linear_betas, "cosine": _cosine_betas}


def make_alphas_cumprod(schedule, n_steps):
    """Return ``alphas_cumprod[t] = prod_{s<=t} (1 - beta_s)``, shape (n_steps,), float64."""
    betas = BETA_SCHEDULES[schedule](n_steps)
    return np.cumprod(1.0 - betas)


def append_dims(x, n_dims):
    """Append trailing singleton dimensions to ``x`` until it has ``n_dims`` dimensions."""
    return x.reshape(x.shape + (1,) * (n_dims - x.ndim))


def add_noise(x0, eps, t, alphas_cumprod, mask=None):
    """Sample ``x_t ~ q(x_t | x_0)``: Ho et al. (2020), eq. (4), with ``eps`` given.

    ``alphas_cumprod`` is a tensor on the device and in the dtype of ``x0``. Where
    ``mask`` (of ``x0``'s shape) is 0, ``x_t`` keeps ``x0``: conditioning values, not diffused.
    """
    signal, noise = noise_terms(eps, t, alphas_cumprod, x0.ndim)
    return noised(x0, signal, noise, mask)


def noise_terms(eps, t, alphas_cumprod, n_dims):
    """Return ``sqrt(abar_t)`` and ``sqrt(1 - abar_t) eps`` of :func:`add_noise`, shaped to ``n_dims`` dimensions.

    Scoring makes them once per trial, and gathers them for the samples each call noises.
    """
    signal, noise = noise_factors(alphas_cumprod)
    return append_dims(signal.index_select(0, t), n_dims), append_dims(noise.index_select(0, t), n_dims) * eps


def noised(x0, signal, noise, mask=None):
    """Return ``signal * x0 + noise``, ``x0`` kept where ``mask`` is 0 (see :func:`add_noise`)."""
    x_t = signal * x0 + noise
    return x_t if mask is None else x0 + mask * (x_t - x0)


def noise_factors(alphas_cumprod):
    """Return ``(sqrt(alphas_cumprod), sqrt(1 - alphas_cumprod))`` of the tensor ``alphas_cumprod``.

    Made once per tensor; square roots are correctly rounded, so the factors looked up for
    any timesteps are, bit for bit, those computed from their own ``alphas_cumprod``.
    """
    factors = _NOISE_FACTORS.get(alphas_cumprod)
    if factors is None:
        with torch.inference_mode(False):  # tensors that autograd may use later
            factors = _NOISE_FACTORS[alphas_cumprod] = (alphas_cumprod.sqrt(), (1 - alphas_cumprod).sqrt())
    return factors


def as_tensor(alphas_cumprod, *, dtype=torch.float32, device="cpu"):
    """Convert a float64 schedule to the tensor the hot loops index."""
    return torch.as_tensor(np.asarray(alphas_cumprod), dtype=dtype, device=device)
