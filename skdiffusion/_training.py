"""The DDPM training loop: minimise ``E || eps - eps_theta(x_t, t, y) ||`` (Ho et al., 2020)."""

import copy
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from ._schedule import add_noise

# Per-element losses; the per-sample loss is their mean over the sample's elements.
# Li et al. (2023) compare all three for classification.
LOSSES = {
    "l2": lambda eps_hat, eps: (eps_hat - eps).square(),
    "l1": lambda eps_hat, eps: (eps_hat - eps).abs(),
    "huber": lambda eps_hat, eps: F.huber_loss(eps_hat, eps, reduction="none"),
}

CHECK_EVERY = 50  # optimizer steps between convergence checks


def per_sample_loss(loss, eps_hat, eps):
    """Return the mean of ``LOSSES[loss]`` over each sample's elements.

    ``eps`` has shape (n, *sample_shape); ``eps_hat`` the same, or (n, n_classes,
    *sample_shape) for every class's prediction, which gives shape (n, n_classes).
    """
    sample_ndim = eps.ndim - 1
    if eps_hat.ndim > eps.ndim:
        eps = eps.unsqueeze(1)
    return LOSSES[loss](eps_hat, eps).flatten(-sample_ndim).mean(-1)


@dataclass
class TrainingState:
    """What the loop learned, kept by the estimator between fits (for ``warm_start``)."""

    loss_curve: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_loss: float = np.inf
    n_no_improvement: int = 0
    converged: bool = False
    interrupted: bool = False


def train_denoiser(
    denoiser,
    x0,
    y,
    *,
    alphas_cumprod,
    timestep_probs,
    max_iter,
    batch_size,
    learning_rate,
    loss,
    generator,
    tol,
    n_iter_no_change,
    validation=None,
    state=None,
    verbose=False,
):
    """Train ``denoiser`` in place for up to ``max_iter`` optimizer steps.

    Timesteps are drawn from ``timestep_probs``; ``validation`` is ``(x0, y, t, eps)``
    with fixed draws, whose loss decides early stopping and which weights are kept.
    Without it, training runs ``max_iter`` steps and counts as converged when the loss
    fell by at most ``tol`` (relative) over its last ``n_iter_no_change`` checks.
    Returns the updated :class:`TrainingState`.
    """
    state = state or TrainingState()
    state.converged = state.interrupted = False
    optimizer = torch.optim.Adam(denoiser.parameters(), lr=learning_rate, fused=True)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_iter, eta_min=learning_rate / 10)
    n_samples, device = x0.shape[0], x0.device
    batch_size = min(batch_size, n_samples)
    timestep_probs = torch.as_tensor(timestep_probs, dtype=torch.float64)
    best_weights = None
    window = []
    denoiser.train()
    try:
        for step in range(max_iter):
            idx = torch.randint(n_samples, (batch_size,), generator=generator).to(device)
            t = torch.multinomial(timestep_probs, batch_size, replacement=True, generator=generator).to(device)
            eps = torch.randn((batch_size, *x0.shape[1:]), generator=generator).to(device)
            x_t = add_noise(x0[idx], eps, t, alphas_cumprod)
            batch_loss = per_sample_loss(loss, denoiser(x_t, t, y[idx]), eps).mean()
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            optimizer.step()
            scheduler.step()
            value = batch_loss.item()
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"The training loss became {value} at step {len(state.loss_curve) + 1}; "
                    "lower learning_rate or check the denoiser."
                )
            state.loss_curve.append(value)
            window.append(value)
            if len(window) < CHECK_EVERY and step + 1 < max_iter:
                continue
            if validation is None:
                score = float(np.mean(window))
            else:
                score = validation_loss(denoiser, *validation, alphas_cumprod=alphas_cumprod, loss=loss)
                state.validation_scores.append(score)
                denoiser.train()
            window = []
            if verbose:
                kind = "validation loss" if validation is not None else "loss"
                print(f"Iteration {len(state.loss_curve)}, {kind} = {score:.6f}")
            if score < state.best_loss * (1 - tol):
                state.best_loss, state.n_no_improvement = score, 0
                if validation is not None:
                    best_weights = copy.deepcopy(denoiser.state_dict())
            else:
                state.n_no_improvement += 1
            if validation is not None and state.n_no_improvement >= n_iter_no_change:
                state.converged = True
                break
    except KeyboardInterrupt:
        warnings.warn("Training interrupted by the user; the model keeps the weights reached so far.", stacklevel=3)
        state.interrupted = True
    if validation is None:
        state.converged = relative_decrease(state.loss_curve[-n_iter_no_change * CHECK_EVERY :]) <= tol
    if best_weights is not None:
        denoiser.load_state_dict(best_weights)
    denoiser.eval()
    return state


def relative_decrease(losses):
    """Return how far a straight line fitted to ``losses`` falls over them, relative to their mean."""
    losses = np.asarray(losses)
    if losses.size < 2:
        return np.inf
    slope = np.polyfit(np.arange(losses.size), losses, 1)[0]
    return -slope * losses.size / losses.mean()


@torch.no_grad()
def validation_loss(denoiser, x0, y, t, eps, *, alphas_cumprod, loss):
    """Return the mean denoising loss on fixed ``(t, eps)`` draws."""
    denoiser.eval()
    eps_hat = denoiser(add_noise(x0, eps, t, alphas_cumprod), t, y)
    return per_sample_loss(loss, eps_hat, eps).mean().item()


def training_timestep_probs(n_steps, low_fraction=0.1, low_boost=10.0):
    """Return the distribution of training timesteps, shape (n_steps,).

    Uniform, with the lowest ``low_fraction`` of timesteps ``low_boost`` times as likely:
    fine class structure (such as the arms of a spiral) is only visible at small noise,
    yet generation needs every timestep trained.
    """
    probs = np.ones(n_steps)
    probs[: max(1, int(low_fraction * n_steps))] = low_boost
    return probs / probs.sum()


def validation_draws(x0, y, timestep_probs, generator, n_draws=2048):
    """Return ``(x0, y, t, eps)``: held-out samples, repeated to ``n_draws`` rows, with fixed draws."""
    repeats = -(-n_draws // x0.shape[0])
    x0, y = x0.repeat_interleave(repeats, dim=0), y.repeat_interleave(repeats)
    probs = torch.as_tensor(timestep_probs, dtype=torch.float64)
    t = torch.multinomial(probs, x0.shape[0], replacement=True, generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    return x0, y, t, eps
