"""The DDPM training loop: minimise ``E || eps - eps_theta(x_t, t, y) ||`` (Ho et al., 2020)."""

import functools
import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from scipy import stats

from ._compute import ceil_div
from ._denoisers import MLPDenoiser, _hooked
from ._losses import mean_loss_and_gradient, per_sample_loss
from ._schedule import add_noise

CHECK_EVERY = 50  # optimizer steps between convergence checks
# A loss this many times the first one of a fit (or 1, if larger) means that training has
# diverged: the features are standardised and eps ~ N(0, I), so predicting eps_hat = 0
# already scores about 1, and a healthy loss never leaves that neighbourhood by orders of
# magnitude. Such weights overflow into NaN at predict time, or a few steps later.
DIVERGENCE_FACTOR = 1e4
# A step whose loss is this many times the lowest mean of a check interval so far (of this
# training) is a spike: training goes back to the weights of the last check, at half the
# rate (see _SpikeGuard). The largest ratio over the default fits of the suite, the
# real-table panel (seeds 0-2) and tables of 12 to 40 rows with and without missing cells
# was 3.4; the spike that spoiled a fit on 100,000 rows was 156 (see _SpikeGuard).
SPIKE_FACTOR = 20.0
# Spikes that a training goes back from; after them, only DIVERGENCE_FACTOR stops it.
MAX_SPIKES = 4
# Share of a training's timesteps drawn from the range the classifier scores, when it is
# known; the rest keep the default spread, which generation needs.
SCORED_SHARE = 0.5
# Noisy copies of the held-out samples that early stopping scores: enough that the loss
# of a few dozen rows is not one draw's luck.
VALIDATION_DRAWS = 2048


@dataclass
class TrainingState:
    """What the loop learned, kept by the estimator between fits (for ``warm_start``)."""

    loss_curve: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_loss: float = np.inf
    n_no_improvement: int = 0
    converged: bool = False
    # (fall, steps, held_out) of the convergence check: the loss fell by this share over
    # the last ``steps`` steps, on the held-out samples (True) or the training minibatches.
    fall: tuple | None = None
    interrupted: bool = False  # by Ctrl-C or by a callback: no ConvergenceWarning
    cancelled: bool = False  # by Ctrl-C (KeyboardInterrupt): the fit says what it keeps
    # Adam's moments after partial_fit (on the CPU), which the next partial_fit continues.
    optimizer_state: dict | None = None
    discriminative: bool = False  # some training of the network had a CrossEntropyTerm


class Progress:
    """The verbose lines of a fit: each training's title, then its checks, with the time the fit has left.

    ``steps`` holds the most steps of each training the fit runs, ``choices`` how many times
    it chooses the trials. The time left is the time per step so far times the steps still
    to run (at most: early stopping may end sooner), plus the choices still to make at the
    time the last one took.
    """

    def __init__(self, steps, choices):
        self.shown, self.steps, self.choices = list(steps), list(steps), choices
        self.training, self.done, self.offset, self.chosen = 0, 0, 0, []
        self.start = time.perf_counter()

    def begin(self, title, steps=None):
        """Print the title of the next training, with its number and its most steps (``steps``, if now known)."""
        if steps is not None:
            self.steps[self.training] = self.shown[self.training] = steps
        print(f"{title}: at most {self.shown[self.training]} steps (training {self.training + 1} of {len(self.steps)})")

    def restart(self, title, ran, steps, choices=0):
        """Print ``title``: the running training starts afresh for ``steps`` steps, after ``ran`` steps.

        ``choices``: how many more choices of the trials follow it than were counted.
        """
        self.offset, self.choices = self.offset + ran, self.choices + choices
        self.steps[self.training], self.shown[self.training] = self.offset + steps, steps
        print(f"{title}: {steps} steps (training {self.training + 1} of {len(self.steps)})")

    def check(self, step, loss):
        """Print step ``step`` of the running training and the mean training ``loss`` since the last check."""
        done, elapsed = self.done + self.offset + step, time.perf_counter() - self.start
        per_step = (elapsed - sum(self.chosen)) / done
        choosing = (self.choices - len(self.chosen)) * (self.chosen[-1] if self.chosen else 0.0)
        left = per_step * (sum(self.steps) - done) + choosing
        print(
            f"Iteration {step}/{self.shown[self.training]}, loss = {loss:.8f}, "
            f"{elapsed:.1f} s elapsed, about {left:.1f} s left"
        )

    def chose(self, text, seconds):
        """Print ``text``, what a choice of the trials that took ``seconds`` chose, with the time elapsed."""
        self.chosen.append(seconds)
        print(f"{text} in {seconds:.1f} s ({time.perf_counter() - self.start:.1f} s elapsed)")

    def end(self):
        """Count the running training as done, whether it ran all its steps or stopped early."""
        self.done += self.steps[self.training]
        self.training, self.offset = self.training + 1, 0


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
    progress=None,
    anneal=True,
    watch=None,
    extend_to=0,
    extra=0,
    callback=None,
    weights=None,
    mask=None,
    hole_rate=0.0,
    cells=None,
    cross_entropy=None,
    goes_on=None,
    weight_decay=0.0,
):
    """Train ``denoiser`` in place for up to ``max_iter`` optimizer steps.

    Timesteps are drawn from ``timestep_probs``; ``validation`` is ``(x0, y, t, eps)``
    with fixed draws, whose loss decides early stopping and which weights are kept.
    Without it, training runs ``max_iter`` steps and counts as converged unless the loss
    still falls over its last ``n_iter_no_change`` checks (at most the last half of the
    steps) by more than ``tol`` (relative): the loss of held-out samples ``watch`` (as
    ``validation``), measured at the start and the end of those steps, if given; else the
    training loss, beyond noise (see :func:`still_falling`). While the held-out loss still
    falls so at the end, training goes on at the cosine's final rate, that many steps at a
    time, up to ``extend_to`` steps in all (0: it stops at ``max_iter``), while ``goes_on()``
    (None: always), asked before each stretch, says so (once it says no, the training stops
    and counts as converged: what follows it trains on); ``extra`` steps
    at that rate follow the cosine in any case (a refit, replaying its first training's).
    With ``anneal`` (fit), Adam starts afresh and its rate decays along a cosine over
    ``max_iter`` steps; without (partial_fit, whose calls have no known total length),
    the rate stays constant and Adam continues from ``state.optimizer_state``.
    ``progress`` (a :class:`Progress`, or None) prints each check (verbose fits).
    ``callback()``, if given, is called before each check interval of ``CHECK_EVERY``
    steps; when it returns True, training stops there (``state.interrupted``).
    ``weights`` (shape (n,), or None for equal weights) make a row's chance of being drawn
    into a minibatch proportional to its weight: the loss is the weighted mean, in expectation.
    ``mask`` (of ``x0``'s shape, or None) keeps the diffused elements of each row (see
    :func:`~skdiffusion._losses.per_sample_loss`); ``hole_rate`` of them are removed anew
    in each minibatch (see :func:`minibatch_loss`). ``cells`` (of a sample's shape, or
    None): each element's dequantization cell, over which its value is spread anew in
    each minibatch (see :func:`minibatch`). ``cross_entropy`` (a
    :class:`CrossEntropyTerm`, or None) adds a discriminative term to each step's loss.
    ``weight_decay``: Adam's L2 penalty (see :class:`Adam`).
    A step whose loss spikes sends the training back to its last check, at half the rate
    (see :class:`_SpikeGuard`), and the loss curve with it.
    Returns the updated :class:`TrainingState`; raises a FloatingPointError when the loss
    diverges (see :func:`check_loss`), during training or with the weights it ends on.
    """
    state = state or TrainingState()
    state.converged = state.interrupted = state.cancelled = False
    state.discriminative = state.discriminative or cross_entropy is not None
    if max_iter == 0:  # a pretrained denoiser (fit with max_iter=0): nothing to train
        denoiser.eval()
        return state
    optimizer = Adam(denoiser.parameters(), state.optimizer_state, weight_decay=weight_decay)
    rates = list(cosine_rates(learning_rate, max_iter)) if anneal else [learning_rate]
    timestep_probs = torch.as_tensor(timestep_probs, dtype=torch.float64)
    batch_size = min(batch_size, x0.shape[0])
    draw = Draws(x0, y, alphas_cumprod, timestep_probs, batch_size, loss, generator, weights, mask, hole_rate, cells)
    # Decided once: each step's update clears the gradients it set, and leaves the others None.
    own_gradients = _written_out(denoiser)
    check = functools.partial(
        _check_progress, denoiser, state, validation, alphas_cumprod=alphas_cumprod, loss=loss, tol=tol
    )
    best_weights, window, limit, n_before = None, [], None, len(state.loss_curve)
    # The convergence check's steps: the last n_iter_no_change checks, or the last half of
    # this training's steps if fewer (the first steps' descent says nothing of the end).
    last = min(n_iter_no_change * CHECK_EVERY, max_iter // 2)
    held_out, declined = None, False
    if watch is not None and last:
        held_out = _HeldOutLoss(denoiser, watch, alphas_cumprod=alphas_cumprod, loss=loss)
    budget = max_iter + extra  # the steps after the cosine run at its final rate
    step = 0
    spikes = _SpikeGuard(denoiser, optimizer, progress)
    went_back = False  # a spike sent the training back: the check interval goes on
    denoiser.train()
    try:
        while step < budget:
            if callback is not None and not window and not went_back and callback():
                state.interrupted = True
                break
            # After the cosine's end, the rate stays at its final value.
            rate = rates[min(step, len(rates) - 1)] * spikes.rate_scale
            value = _step(denoiser, optimizer, rate, draw, own_gradients, cross_entropy)
            if step == 0:
                limit = DIVERGENCE_FACTOR * max(value, 1.0)
            if spikes.spiked(value):
                step, window, went_back = spikes.go_back(state, value), [], True
                if held_out is not None:
                    held_out.forget_after(step)
                continue
            check_loss(value, limit, len(state.loss_curve) + 1, first=step == 0)
            state.loss_curve.append(value)
            window.append(value)
            went_back = False
            step += 1
            if held_out is not None and budget - step == last:
                held_out.at(step)
            if held_out is not None and step == budget and budget + last <= extend_to:
                if held_out.fall(step - last, step) > tol:  # still falling: one more stretch of `last` steps
                    if goes_on is not None:
                        declined = not goes_on()
                        denoiser.train()
                    budget += 0 if declined else last
            if len(window) < CHECK_EVERY and step < budget:
                continue
            if check(window, step, progress) and validation is not None:
                best_weights = weights_copy(denoiser)
            spikes.checked(np.mean(window), step, state)
            window = []
            if validation is not None and state.n_no_improvement >= n_iter_no_change:
                if progress is not None:
                    print(
                        f"Validation loss did not improve more than tol={tol:f} for {n_iter_no_change} "
                        "consecutive checks. Stopping."
                    )
                state.converged = True
                break
    except KeyboardInterrupt:  # the caller warns, saying which network it keeps
        state.interrupted = state.cancelled = True
    steps = len(state.loss_curve) - n_before
    if validation is None and held_out is not None and steps == budget:
        fall = held_out.fall(budget - last, budget)
        state.converged, state.fall = declined or not fall > tol, (fall, last, True)
    elif validation is None:
        window = min(last, steps // 2)
        losses = state.loss_curve[-window:] if window else []
        state.converged = not still_falling(losses, tol)
        state.fall = (line_fall(losses)[0], window, False)
    if best_weights is not None:
        denoiser.load_state_dict(best_weights)
    state.optimizer_state = None if anneal else _state_copy(optimizer.state, "cpu")
    denoiser.eval()
    # The loss above is computed before each update: the last one is checked here, on the
    # weights kept, in the mode that predict uses.
    with torch.no_grad():
        check_loss(minibatch_loss(denoiser, *draw).item(), limit or np.inf, None)
    return state


def cosine_rates(learning_rate, max_iter):
    """Yield the rate of each step: from ``learning_rate`` down to a tenth of it along a cosine over ``max_iter`` steps.

    Step ``k`` gets the rate after ``k`` updates of torch's ``CosineAnnealingLR(T_max=max_iter,
    eta_min=learning_rate / 10)``, computed by its recurrence, so that the rates are its own
    to the last bit; its final rate is yielded at step ``max_iter``, and then no more.
    """
    rate, floor = learning_rate, learning_rate / 10
    yield rate
    for k in range(1, max_iter + 1):
        shrink = (1 + math.cos(math.pi * k / max_iter)) / (1 + math.cos(math.pi * (k - 1) / max_iter))
        rate = shrink * (rate - floor) + floor
        yield rate


class Adam:
    """Adam (Kingma & Ba, 2015) with its default settings, one fused kernel per step: torch's ``_fused_adam_``.

    The update of ``torch.optim.Adam(params, lr, weight_decay=weight_decay, fused=True)``
    (an L2 penalty: ``weight_decay * p`` added to each gradient), bit for bit, without the
    cost around its kernel: the first ``torch.optim`` optimizer of a process imports
    ``torch._dynamo``, which takes about a second (as long as a whole fit on small
    data), and each of its steps runs tens of microseconds of Python more. A parameter
    takes part once it has a gradient; ``state`` holds the moments by the parameter's
    index, in ``torch.optim``'s format, so the moments saved by ``partial_fit`` continue
    from ``moments``.

    The parameters of one kernel with equal step counts share one count tensor (the kernel
    only reads it), which a step advances once rather than once per parameter; the lists
    the kernel takes are made again only when the parameters with a gradient, or ``state``
    (which a spike's return replaces), change.
    """

    def __init__(self, params, moments=None, weight_decay=0.0):
        self.params, self.weight_decay = list(params), weight_decay
        self.state = {}
        for index, values in (moments or {}).items():
            param = self.params[index]
            self.state[index] = {
                name: value.to(device=param.device, dtype=torch.float32 if name == "step" else param.dtype, copy=True)
                for name, value in values.items()
            }
        self._groups, self._made_for = [], (None, None)  # the lists, and the gradients and state they were made for

    def step(self, rate):
        """Update every parameter that has a gradient with the rate ``rate``, then clear the gradients.

        One kernel per device and dtype, as ``torch.optim`` groups them.
        """
        with_gradient = tuple(p.grad is not None for p in self.params)
        made_with, made_state = self._made_for
        if with_gradient != made_with or self.state is not made_state:
            self._groups, self._made_for = self._grouped(with_gradient), (with_gradient, self.state)
        for params, exp_avgs, exp_avg_sqs, steps, counts in self._groups:
            grads = [p.grad for p in params]
            if any(grad.is_sparse for grad in grads):
                raise RuntimeError("Adam does not support sparse gradients: give the denoiser dense parameters")
            torch._foreach_add_(counts, 1)
            with torch.no_grad():
                torch._fused_adam_(
                    params,
                    grads,
                    exp_avgs,
                    exp_avg_sqs,
                    [],
                    steps,
                    lr=rate,
                    beta1=0.9,
                    beta2=0.999,
                    weight_decay=self.weight_decay,
                    eps=1e-8,
                    amsgrad=False,
                    maximize=False,
                )
            for p in params:
                p.grad = None

    def _grouped(self, with_gradient):
        """Return the kernel's lists per device and dtype: the parameters with a gradient, their moments, step counts.

        A parameter without state yet gets fresh moments. The parameters with a gradient
        and an equal step count get one new tensor of it, shared: their steps advance
        together while these lists are used, and no parameter without a gradient holds it.
        """
        groups, counts = {}, {}
        for i, (p, has_gradient) in enumerate(zip(self.params, with_gradient)):
            if not has_gradient:
                continue
            if i not in self.state:
                self.state[i] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }
            state = self.state[i]
            key = (p.device, p.dtype, float(state["step"]))  # one count per kernel: it advances it once
            if key not in counts:
                counts[key] = state["step"].clone()
            state["step"] = counts[key]
            groups.setdefault((p.device, p.dtype), []).append((p, state))
        lists = []
        for members in groups.values():
            params, states = zip(*members)
            steps = [state["step"] for state in states]
            distinct = list({id(step): step for step in steps}.values())
            moments = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
            lists.append((list(params), *moments, steps, distinct))
        return lists


def _step(denoiser, optimizer, rate, draw, own_gradients=False, cross_entropy=None):
    """Take one optimizer step at the rate ``rate`` on a minibatch drawn by :func:`minibatch_loss`; return its loss.

    ``own_gradients``: the network computes its gradients (see :func:`_written_out`); else autograd does.
    ``cross_entropy`` (a :class:`CrossEntropyTerm`): its gradient, by autograd, is added
    to the denoising loss's; the loss returned is the denoising loss alone, which the
    convergence checks follow.
    """
    if own_gradients:
        batch_loss = minibatch_gradients(denoiser, *draw)
    else:
        batch_loss = minibatch_loss(denoiser, *draw)
        batch_loss.backward()
    if cross_entropy is not None:  # autograd adds its gradients to those set above
        cross_entropy(denoiser, *draw).backward()
    optimizer.step(rate)
    return batch_loss.item()


def _written_out(denoiser):
    """Return True if ``denoiser`` trains by its own backward pass: an MLPDenoiser, every parameter trained, no hook."""
    return (
        type(denoiser) is MLPDenoiser
        and not _hooked(denoiser)
        and all(p.requires_grad and p.grad is None for p in denoiser.parameters())
    )


class _HeldOutLoss:
    """The loss of held-out draws (see :func:`validation_draws`) at the steps of a training, each measured once."""

    def __init__(self, denoiser, draws, *, alphas_cumprod, loss):
        self.denoiser, self.values = denoiser, {}
        self.measure = functools.partial(validation_loss, denoiser, *draws, alphas_cumprod=alphas_cumprod, loss=loss)

    def at(self, step):
        """Return the loss at ``step``, the training's current step if not measured before; training goes on after."""
        if step not in self.values:
            self.values[step] = self.measure()
            self.denoiser.train()
        return self.values[step]

    def forget_after(self, step):
        """Drop the losses measured after ``step``: training went back to it, and their weights are gone."""
        self.values = {at: loss for at, loss in self.values.items() if at <= step}

    def fall(self, start, end):
        """Return how much the loss fell from step ``start`` (measured then) to ``end`` (now), relative to the first."""
        before = self.values[start]
        return (before - self.at(end)) / before


def _check_progress(denoiser, state, validation, window, step, progress, *, alphas_cumprod, loss, tol):
    """Score a check interval (its training losses ``window``, or the held-out loss); return whether it improved.

    Records the score in ``state``: the held-out loss, the best loss and the count of
    checks without progress. ``progress`` (or None) prints the check, at the training's ``step``.
    """
    if validation is None:
        score = float(np.mean(window))
    else:
        score = validation_loss(denoiser, *validation, alphas_cumprod=alphas_cumprod, loss=loss)
        state.validation_scores.append(score)
        denoiser.train()
    if progress is not None:
        # scikit-learn's MLP format, with the mean training loss since the last check.
        progress.check(step, np.mean(window))
        if validation is not None:
            print(f"Validation loss: {score:.8f}")
    if score < state.best_loss * (1 - tol):
        state.best_loss, state.n_no_improvement = score, 0
        return True
    state.n_no_improvement += 1
    return False


class _SpikeGuard:
    """Go back from a spike of the training loss to the weights of the last check, at half the rate.

    A rare minibatch whose loss is a hundred times the others' (the network's output
    explodes on a few rows) sends a gradient that Adam's second moments remember for
    thousands of steps: in the fit where it was seen (100,000 rows, ``max_iter=3000``, a
    step's loss of 80 where the lowest mean of 50 steps was 0.51), the loss never came back
    to where it had been, and accuracy fell from 0.99 to 0.72. As in the training of large
    language models (Chowdhery et al., 2022, section 5.1), training goes back to weights
    from before the spike, with their Adam moments: those of the last check, at most
    ``CHECK_EVERY`` steps back. It goes on from there, on other minibatches, at half the
    rate. A spike is a step's loss above ``SPIKE_FACTOR`` times the lowest mean loss of a
    check interval so far; training goes back from ``MAX_SPIKES`` at most.
    """

    def __init__(self, denoiser, optimizer, progress):
        self.denoiser, self.optimizer, self.progress = denoiser, optimizer, progress
        self.rate_scale, self.count, self.lowest, self.saved = 1.0, 0, np.inf, None

    def checked(self, mean, step, state):
        """Keep the weights and moments after ``step`` steps, at a check whose interval's mean loss was ``mean``."""
        if self.count < MAX_SPIKES:
            self.lowest = min(self.lowest, mean)
            self.saved = (step, len(state.loss_curve), weights_copy(self.denoiser), _state_copy(self.optimizer.state))

    def spiked(self, value):
        """Return whether the loss ``value`` of a step is a spike that training goes back from."""
        return self.saved is not None and not value <= SPIKE_FACTOR * self.lowest

    def go_back(self, state, value):
        """Restore the weights and moments of the last check, halve the rate; return the step to go on from.

        ``value`` is the spike's loss; the fit's loss curve is cut back to the check.
        """
        step, length, weights, moments = self.saved
        self.denoiser.load_state_dict(weights)
        self.optimizer.state = _state_copy(moments)  # the saved copy stays as it was, for a later spike
        if self.progress is not None:
            print(
                f"Iteration {len(state.loss_curve) + 1}: the training loss jumped to {value:.4g}, over "
                f"{SPIKE_FACTOR:g} times its lowest mean of {CHECK_EVERY} steps ({self.lowest:.4g}): back to "
                f"iteration {length}, at half the learning rate"
            )
        del state.loss_curve[length:]
        self.count += 1
        self.rate_scale /= 2
        if self.count >= MAX_SPIKES:
            self.saved = None
        return step


def weights_copy(network):
    """Return a copy of ``network``'s weights (its state dict), apart from the training that goes on."""
    return {name: value.detach().clone() for name, value in network.state_dict().items()}


def _state_copy(optimizer_state, device=None):
    """Return a copy of an optimizer's per-parameter state, its tensors on ``device`` (None: where they are)."""
    return {
        index: {
            name: value.detach().to(value.device if device is None else device, copy=True)
            for name, value in moments.items()
        }
        for index, moments in optimizer_state.items()
    }


def minibatch_loss(denoiser, *draw):
    """Return the mean loss of ``denoiser`` on a minibatch of samples, timesteps and noise.

    ``draw``: the fields of :class:`Draws`, from which :func:`drawn` draws the minibatch.
    """
    (x_t, t, y, eps, mask), loss = drawn(*draw)
    return per_sample_loss(loss, denoiser(x_t, t, y), eps, mask=mask).mean()


def minibatch_gradients(denoiser, *draw):
    """Set an MLPDenoiser's gradients from the loss of the minibatch that :func:`minibatch_loss` draws; return the loss.

    The network's own backward pass (:meth:`~skdiffusion.MLPDenoiser.forward_backward`)
    from the loss's gradient, computed directly: no autograd graph.
    """
    (x_t, t, y, eps, mask), loss = drawn(*draw)
    eps_hat, backward = denoiser.forward_backward(x_t, t, y)
    batch_loss, gradient = mean_loss_and_gradient(loss, eps_hat, eps, mask=mask)
    backward(gradient)
    return batch_loss


class Draws(NamedTuple):
    """What a training draws each minibatch from, the same at every step (see :func:`train_denoiser`).

    The losses' functions take its fields as their arguments, in this order (see
    :func:`minibatch` for what each means).
    """

    x0: torch.Tensor
    y: torch.Tensor
    alphas_cumprod: torch.Tensor
    timestep_probs: torch.Tensor | None
    batch_size: int | None
    loss: str
    generator: torch.Generator
    weights: np.ndarray | None = None
    mask: torch.Tensor | None = None
    hole_rate: float = 0.0
    cells: torch.Tensor | None = None


def drawn(*draw):
    """Return ``(minibatch(...), loss)``: a training step's minibatch (see :func:`minibatch`) and its loss's name.

    ``draw``: the fields of :class:`Draws`.
    """
    x0, y, alphas_cumprod, timestep_probs, batch_size, loss, *rest = draw  # rest: generator on, minibatch's defaults
    return minibatch(x0, y, alphas_cumprod, timestep_probs, batch_size, *rest), loss


def minibatch(
    x0, y, alphas_cumprod, timestep_probs, batch_size, generator, weights=None, mask=None, hole_rate=0.0, cells=None
):
    """Return a minibatch ``(x_t, t, y, eps, mask)`` of samples, timesteps and noise drawn anew.

    Samples are drawn uniformly, or in proportion to ``weights``; ``mask`` keeps each
    row's diffused elements. ``cells`` (of a sample's shape, or None): each diffused value
    is moved by a uniform draw over its cell, centred on it (see :func:`dequantized`).
    ``hole_rate``: each diffused element is also removed with
    this probability, as a missing value is (held at 0 and not scored), so that the network
    learns from rows with holes where they are, as it will meet them (MissDiff's
    training, with fresh holes in every minibatch).
    """
    device = x0.device
    idx = draw_rows(x0.shape[0], batch_size, generator, weights)
    t = torch.multinomial(timestep_probs, batch_size, replacement=True, generator=generator)
    eps = torch.randn((batch_size, *x0.shape[1:]), generator=generator)
    if device.type != "cpu":  # drawn on the CPU, where the generator is
        idx, t, eps = idx.to(device), t.to(device), eps.to(device)
    x0, mask = x0.index_select(0, idx), None if mask is None else mask.index_select(0, idx)
    x0 = dequantized(x0, cells, generator, mask)
    if hole_rate > 0:
        holes = mask * (torch.rand(mask.shape, generator=generator).to(device) < hole_rate)
        x0, mask = x0 * (1 - holes), mask - holes
    return add_noise(x0, eps, t, alphas_cumprod, mask), t, y.index_select(0, idx), eps, mask


def dequantized(x0, cells, generator, mask=None):
    """Return ``x0`` plus a uniform draw over each element's cell, centred on 0 (``x0`` itself if ``cells`` is None).

    Uniform dequantization (Uria et al., 2013; Theis et al., 2016): values that are whole
    multiples of a step become continuous values spread over their cells, whose density
    does not pile up on the grid's points as the noise gets small. Elements that ``mask``
    does not diffuse (missing values, held at 0) are left as they are; drawn on the CPU,
    where ``generator`` is.
    """
    if cells is None:
        return x0
    spread = (torch.rand(x0.shape, generator=generator).to(x0.device) - 0.5) * cells
    return x0 + (spread if mask is None else spread * mask)


def draw_rows(n_samples, count, generator, weights=None):
    """Return ``count`` row indices below ``n_samples``, drawn uniformly or in proportion to ``weights``, on the CPU."""
    if weights is None:
        return torch.randint(n_samples, (count,), generator=generator)
    return torch.multinomial(weights, count, replacement=True, generator=generator)


def check_loss(value, limit, step, first=False):
    """Raise a FloatingPointError if the loss ``value`` is not finite or above ``limit``.

    ``step`` is the optimizer step that computed it (None: the loss of the final weights);
    the loss of the first step comes before any update, so a learning rate cannot explain it.
    """
    if np.isfinite(value) and value <= limit:
        return
    where = "after the last update" if step is None else f"at step {step}"
    if first and not np.isfinite(value):
        raise FloatingPointError(
            f"The training loss became {value} {where}, before any update: the denoiser's predictions "
            "were not finite, or so large that their loss overflowed; check the denoiser."
        )
    if np.isfinite(value):
        where += f", over {DIVERGENCE_FACTOR:g} times its first value (training diverged)"
    raise FloatingPointError(
        f"The training loss became {value:.6g} {where}; lower learning_rate or check the denoiser."
    )


def still_falling(losses, tol):
    """Return whether a straight line fitted to ``losses`` falls by more than ``tol`` of their mean, beyond noise.

    Beyond noise: by more than twice the fall's standard error. Minibatch losses are
    noisy (each draws its own timesteps), so a fall of a few per cent over some hundred
    steps can be chance alone. Fewer than 3 losses: True (nothing shows that they stopped).
    """
    if len(losses) < 3:
        return True
    fall, stderr = line_fall(losses)
    return bool(fall > tol and fall > 2 * stderr)


def line_fall(losses):
    """Return ``(fall, stderr)``: a straight line's fall over ``losses`` as a share of their mean, and its error.

    Needs 3 losses or more; fewer give ``(0.0, inf)``.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.size < 3:
        return 0.0, np.inf
    fit = stats.linregress(np.arange(losses.size), losses)
    return float(-fit.slope * losses.size / losses.mean()), float(fit.stderr * losses.size / losses.mean())


@torch.no_grad()
def validation_loss(denoiser, x0, y, t, eps, weights=None, mask=None, *, alphas_cumprod, loss):
    """Return the mean denoising loss on fixed ``(t, eps)`` draws, weighted by ``weights`` if given."""
    denoiser.eval()
    eps_hat = denoiser(add_noise(x0, eps, t, alphas_cumprod, mask), t, y)
    losses = per_sample_loss(loss, eps_hat, eps, mask=mask)
    if weights is None:
        return losses.mean().item()
    return ((losses.double() * weights.to(losses.device)).sum() / weights.sum()).item()


def training_timestep_probs(n_steps, scored=None, low_fraction=0.1, low_boost=10.0):
    """Return the distribution of training timesteps, shape (n_steps,).

    Uniform, with the lowest ``low_fraction`` of timesteps ``low_boost`` times as likely:
    fine class structure (such as the arms of a spiral) is only visible at small noise,
    yet generation needs every timestep trained. ``scored``, the ``(t_min, t_max)`` of
    the classifier's trials when a training knows them, moves ``SCORED_SHARE`` of the
    draws to a uniform distribution over the timesteps those trials take.
    """
    probs = np.ones(n_steps)
    probs[: max(1, int(low_fraction * n_steps))] = low_boost
    probs /= probs.sum()
    if scored is None:
        return probs
    in_range = scored_timesteps(n_steps, scored)
    return (1 - SCORED_SHARE) * probs + SCORED_SHARE * in_range / in_range.sum()


def scored_timesteps(n_steps, scored):
    """Return 1.0 at the timesteps of trials in ``scored``, ``(t_min, t_max)``, and 0 elsewhere: shape (n_steps,)."""
    # The trials' timesteps are floor(t) for t in [t_min, t_max): see timestep_grid.
    in_range = np.zeros(n_steps)
    in_range[int(scored[0]) : int(np.ceil(scored[1]))] = 1.0
    return in_range


def validation_draws(x0, y, timestep_probs, generator, weights=None, mask=None, cells=None, n_draws=VALIDATION_DRAWS):
    """Return ``(x0, y, t, eps, weights, mask)``: held-out samples, repeated to ``n_draws`` rows, with fixed draws.

    With ``cells``, each repeat of a sample is dequantized once (see :func:`dequantized`),
    as the training's minibatches are.
    """
    repeats = ceil_div(n_draws, x0.shape[0])
    x0, y = x0.repeat_interleave(repeats, dim=0), y.repeat_interleave(repeats)
    weights = None if weights is None else weights.repeat_interleave(repeats)
    mask = None if mask is None else mask.repeat_interleave(repeats, dim=0)
    probs = torch.as_tensor(timestep_probs, dtype=torch.float64)
    t = torch.multinomial(probs, x0.shape[0], replacement=True, generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0.device)
    return dequantized(x0, cells, generator, mask), y, t, eps, weights, mask


@dataclass(frozen=True)
class CrossEntropyTerm:
    """A discriminative term of the training loss: the log loss of Bayes' rule on a few rows' class errors.

    Each step draws ``rows`` training rows (in proportion to their weights) and ``trials``
    draws of ``(t, eps)`` for each, ``t`` from ``timestep_probs`` (the trials' range), scores
    every row under every class as ``predict_proba`` does, and adds

        weight * mean_i CE( log_prior + category_weight * category_ll[i] - scale * Error_c(x_i), y_i )

    to the denoising loss: the hybrid of generative and discriminative training (the
    classifier's probabilities still come from Bayes' rule on the errors alone). ``scale``
    and ``category_weight`` are those of the trials chosen before (see
    :func:`~skdiffusion._calibration.choose_trials`); ``category_ll`` (n, n_classes), or
    None without categorical columns, holds the training rows' log p(x_cat | c).
    """

    weight: float
    scale: float
    log_prior: torch.Tensor  # (n_classes,), float32
    category_weight: float
    category_ll: torch.Tensor | None
    timestep_probs: torch.Tensor  # float64, over the diffusion steps
    rows: int = 64
    trials: int = 4

    def __call__(self, denoiser, *draw):
        """Return the term on rows drawn from a training's data: ``draw``, the fields of :class:`Draws`.

        Their ``timestep_probs``, ``batch_size`` and ``hole_rate`` are the denoising loss's and
        are not used: the term draws its own timesteps, and scores rows as they are, but
        dequantized over their ``cells`` as the denoising loss's are.
        """
        x0, y, alphas_cumprod, _, _, loss, generator, weights, mask, _, cells = Draws(*draw)
        device = x0.device
        idx = draw_rows(x0.shape[0], self.rows, generator, weights)
        pairs = idx.repeat_interleave(self.trials)
        t = torch.multinomial(self.timestep_probs, pairs.numel(), replacement=True, generator=generator)
        eps = torch.randn((pairs.numel(), *x0.shape[1:]), generator=generator, dtype=x0.dtype).to(device)
        idx, pairs, t = idx.to(device), pairs.to(device), t.to(device)
        mask = None if mask is None else mask[pairs]
        x_t = add_noise(dequantized(x0[pairs], cells, generator, mask), eps, t, alphas_cumprod, mask)
        eps_hat = _under_every_class(denoiser, x_t, t, self.log_prior.shape[0])
        target = eps.unsqueeze(1).expand_as(eps_hat)
        errors = per_sample_loss(
            loss, eps_hat, target, sample_ndim=eps.ndim - 1, mask=None if mask is None else mask.unsqueeze(1)
        )
        logits = self.log_prior.to(device) - self.scale * errors.view(self.rows, self.trials, -1).mean(1)
        if self.category_ll is not None:
            logits = logits + self.category_weight * self.category_ll.to(device)[idx]
        return self.weight * torch.nn.functional.cross_entropy(logits, y[idx])


def _under_every_class(denoiser, x_t, t, n_classes):
    """Return ``eps_hat`` of ``x_t`` under every class, shape (n, n_classes, *sample_shape), with autograd."""
    forward_all = getattr(denoiser, "forward_all", None)
    if forward_all is not None:
        return forward_all(x_t, t)
    labels = torch.arange(n_classes, device=x_t.device)
    return torch.stack([denoiser(x_t, t, label.expand(x_t.shape[0])) for label in labels], dim=1)
