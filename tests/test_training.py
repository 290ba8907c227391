"""The DDPM training loop: loss history, interruption, non-finite losses, early stopping."""

import dataclasses
import functools
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from skdiffusion import DiffusionClassifier, MLPDenoiser, _training as training
from skdiffusion._denoisers import EVERY_READ_OUT_BELOW
from skdiffusion._losses import mean_loss_and_gradient, per_sample_loss
from skdiffusion._schedule import add_noise, as_tensor, make_alphas_cumprod
from skdiffusion._training import (
    CHECK_EVERY,
    MAX_SPIKES,
    SPIKE_FACTOR,
    Adam,
    CrossEntropyTerm,
    TrainingState,
    _written_out,
    cosine_rates,
    minibatch_loss,
    still_falling,
    train_denoiser,
    training_timestep_probs,
    validation_draws,
    validation_loss,
)

N_STEPS = 100


def _problem(n=64, seed=0):
    """Two tight clusters in 2-D, one per class."""
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x0 = (2.0 * y - 1.0)[:, None] * torch.tensor([1.0, 1.0]) + 0.1 * torch.randn((n, 2), generator=generator)
    return x0, y


def _train(denoiser, x0, y, **kwargs):
    params = {
        "alphas_cumprod": as_tensor(make_alphas_cumprod("linear", N_STEPS)),
        "timestep_probs": training_timestep_probs(N_STEPS),
        "max_iter": 100,
        "batch_size": 32,
        "learning_rate": 5e-3,
        "loss": "l2",
        "generator": torch.Generator().manual_seed(0),
        "tol": 0.0,
        "n_iter_no_change": 1000,
    }
    return train_denoiser(denoiser, x0, y, **{**params, **kwargs})


class _Interrupting(nn.Module):
    """Wraps a denoiser; the k-th training forward pass (with gradients) raises ``exc``."""

    def __init__(self, inner, k, exc):
        super().__init__()
        self.inner, self.k, self.exc, self.calls = inner, k, exc, 0

    def forward(self, x_t, t, y):
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls == self.k:
                raise self.exc
        return self.inner(x_t, t, y)


class _Scalar(nn.Module):
    """``eps_hat = w * x_t``: one weight, so the path of training is easy to follow."""

    def __init__(self, w=1.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, x_t, t, y):
        return self.w * x_t


def test_training_timestep_probs():
    probs = training_timestep_probs(1000)
    assert probs.shape == (1000,)
    assert probs.sum() == pytest.approx(1.0)
    assert np.all(probs > 0)
    assert probs[0] == pytest.approx(10 * probs[-1])


def test_training_timestep_probs_moves_half_the_draws_onto_the_scored_timesteps():
    default = training_timestep_probs(1000)
    # The trials of (12.5, 37.2) take the timesteps floor(t), 12 to 37: 26 of them.
    probs = training_timestep_probs(1000, scored=(12.5, 37.2))
    in_range = np.zeros(1000, dtype=bool)
    in_range[12:38] = True
    assert probs.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(probs[~in_range], default[~in_range] / 2)
    np.testing.assert_allclose(probs[in_range], default[in_range] / 2 + 0.5 / 26)
    # Over the whole range, half the draws become uniform.
    np.testing.assert_allclose(training_timestep_probs(1000, scored=(0, 1000)), default / 2 + 0.5 / 1000)


def test_loss_decreases_on_a_tiny_problem():
    torch.manual_seed(0)
    x0, y = _problem()
    denoiser = MLPDenoiser(2, 2, hidden_size=32)
    state = _train(denoiser, x0, y, max_iter=150)
    assert isinstance(state, TrainingState)
    assert len(state.loss_curve) == 150
    assert all(np.isfinite(state.loss_curve))
    # The zero-initialised network starts at E[eps^2] = 1 and must do much better.
    assert np.mean(state.loss_curve[:10]) > 0.8
    assert np.mean(state.loss_curve[-30:]) < 0.6 * np.mean(state.loss_curve[:10])
    assert not state.interrupted
    assert not denoiser.training


def test_keyboard_interrupt_leaves_a_usable_model_and_warns():
    torch.manual_seed(0)
    x0, y = _problem()
    denoiser = _Interrupting(MLPDenoiser(2, 2, hidden_size=32), k=31, exc=KeyboardInterrupt())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fit warns, saying which network it keeps
        state = _train(denoiser, x0, y)
    assert state.interrupted and state.cancelled
    assert len(state.loss_curve) == 30  # the 31st step never finished
    assert not denoiser.training
    with torch.no_grad():
        eps_hat = denoiser(x0, torch.zeros(len(x0), dtype=torch.long), y)
    assert torch.isfinite(eps_hat).all()
    assert eps_hat.abs().sum() > 0  # 30 steps moved the output layer off zero


class _Spiking(nn.Module):
    """Wraps a denoiser; the training forward passes (with gradients) in ``at`` come out 300 times too large."""

    def __init__(self, inner, at):
        super().__init__()
        self.inner, self.at, self.calls = inner, set(at), 0

    def forward(self, x_t, t, y):
        eps_hat = self.inner(x_t, t, y)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls in self.at:
                return 300.0 * eps_hat + 30.0
        return eps_hat


class _Quiet:
    """A progress report that prints nothing of the checks."""

    def check(self, step, loss):
        pass


def test_a_spike_of_the_loss_sends_training_back_to_the_last_check_at_half_the_rate(monkeypatch, capsys):
    rates, before = [], []  # each step's rate; the weights and moments before steps 101 and 131
    step = training._step

    def recorded(denoiser, optimizer, rate, *args, **kwargs):
        rates.append(rate)
        if len(rates) in (101, 131):
            moments = [value.clone() for values in optimizer.state.values() for value in values.values()]
            before.append(([p.detach().clone() for p in denoiser.parameters()], moments))
        return step(denoiser, optimizer, rate, *args, **kwargs)

    monkeypatch.setattr(training, "_step", recorded)
    x0, y = _problem()
    torch.manual_seed(0)
    plain = _Spiking(MLPDenoiser(2, 2, hidden_size=32), at=[])  # trained by autograd, as the other
    spiking = _Spiking(MLPDenoiser(2, 2, hidden_size=32), at=[130])
    spiking.load_state_dict(plain.state_dict())
    plain_curve = _train(plain, x0, y, max_iter=200).loss_curve
    cosine = rates[:]
    rates.clear()
    state = _train(spiking, x0, y, max_iter=200, progress=_Quiet())
    # Steps 1-129 as without the spike; the 130th goes back to the check after 100 steps,
    # and the steps from 101 on are taken again, at half the rate, on other minibatches: the
    # loss curve keeps the first 100 steps and those.
    assert state.loss_curve[:100] == plain_curve[:100] and state.loss_curve[100] != plain_curve[100]
    assert rates[:130] == cosine[:130] and rates[130:] == [rate / 2 for rate in cosine[100:200]]
    assert len(state.loss_curve) == 200 and max(state.loss_curve[100:]) < 2 * max(plain_curve[100:])
    assert spiking.calls == 230
    # The 131st step starts from the weights and Adam moments that the 101st started from.
    for first, again in zip(*before[-2:]):
        assert len(first) == len(again) and all(torch.equal(a, b) for a, b in zip(first, again))
    message = "Iteration 130: the training loss jumped to "
    assert capsys.readouterr().out.count(message) == 1
    assert (
        f"over {SPIKE_FACTOR:g} times its lowest mean of 50 steps ("
        in message + "over 20 times its lowest mean of 50 steps ("
    )
    with torch.no_grad():
        assert torch.isfinite(spiking(x0, torch.zeros(len(x0), dtype=torch.long), y)).all()


def test_spikes_that_keep_coming_end_in_the_divergence_error():
    # From step 60 on, every step spikes: training goes back to the check after 50 steps
    # MAX_SPIKES times, and then the spike is a loss like any other, here over 10,000 times
    # the first, which stops the training at its 51st step.
    x0, y = _problem()
    torch.manual_seed(0)
    spiking = _Spiking(MLPDenoiser(2, 2, hidden_size=32), at=range(60, 1000))
    with pytest.raises(FloatingPointError, match=r"at step 51, over 10000 times its first value"):
        _train(spiking, x0, y, max_iter=200)
    assert spiking.calls == 60 + MAX_SPIKES


def _spiking_network(n_features, n_classes):
    """A small default network whose 70th and 120th training passes spike."""
    return _Spiking(MLPDenoiser(n_features, n_classes, hidden_size=16), at=[70, 120])


def test_a_fit_that_goes_back_from_spikes_keeps_its_steps_and_its_callbacks_intervals(spirals):
    # scikit-learn's callbacks (1.9 on) get one task per check interval, as many as the
    # steps planned allow: a spike's interval goes on after going back, it is not a new one.
    X, y = spirals
    clf = DiffusionClassifier(_spiking_network, max_iter=150, validation_fraction=None, random_state=0).fit(X, y)
    # The 70th pass (step 70) goes back to step 50; the 120th is step 100 again, before its
    # check, and goes back to step 50 once more: 20 and 50 steps taken again.
    assert len(clf.loss_curve_) == 150 and clf.denoiser_.calls == 150 + 20 + 50
    assert max(clf.loss_curve_) < 2.0


def test_other_exceptions_propagate():
    x0, y = _problem()
    denoiser = _Interrupting(MLPDenoiser(2, 2, hidden_size=8), k=3, exc=RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        _train(denoiser, x0, y)


class _NaNAfter(_Scalar):
    def __init__(self, k):
        super().__init__()
        self.k, self.calls = k, 0

    def forward(self, x_t, t, y):
        self.calls += 1
        out = super().forward(x_t, t, y)
        return out * float("nan") if self.calls >= self.k else out


@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
def test_non_finite_loss_raises_floating_point_error(loss):
    x0, y = _problem()
    with pytest.raises(FloatingPointError, match="training loss became nan at step 5; lower learning_rate"):
        _train(_NaNAfter(5), x0, y, loss=loss)


def test_early_stopping_keeps_the_best_weights():
    # Training data far from 0, held-out data at 0: the optimal w of eps_hat = w * x_t
    # differs between the two, so the held-out loss rises while training goes on.
    alphas_cumprod = as_tensor(make_alphas_cumprod("linear", N_STEPS))
    generator = torch.Generator().manual_seed(1)
    x0 = torch.full((64, 2), 3.0)
    y = torch.zeros(64, dtype=torch.long)
    val_x0 = torch.zeros(256, 2)
    val_t = torch.randint(N_STEPS, (256,), generator=generator)
    validation = (val_x0, torch.zeros(256, dtype=torch.long), val_t, torch.randn((256, 2), generator=generator))
    denoiser = _Scalar(1.0)
    state = _train(denoiser, x0, y, max_iter=5 * CHECK_EVERY, learning_rate=0.02, validation=validation)
    scores = state.validation_scores
    assert len(scores) == 5
    assert len(state.loss_curve) == 5 * CHECK_EVERY
    assert state.best_loss == min(scores)
    assert scores[-1] > min(scores)  # the last weights are not the best ones...
    restored = validation_loss(denoiser, *validation, alphas_cumprod=alphas_cumprod, loss="l2")
    assert restored == pytest.approx(min(scores), rel=1e-6)  # ...and fit kept the best


def test_early_stopping_stops_after_n_iter_no_change_checks():
    x0, y = _problem()
    validation = (x0, y, torch.full((len(y),), N_STEPS // 2), torch.ones_like(x0))
    # A learning rate of ~0 makes no progress: every check after the first fails.
    state = _train(
        _Scalar(0.0),
        x0,
        y,
        max_iter=100 * CHECK_EVERY,
        learning_rate=1e-12,
        n_iter_no_change=2,
        validation=validation,
    )
    assert state.converged
    assert len(state.loss_curve) == 3 * CHECK_EVERY
    assert state.validation_scores == [1.0, 1.0, 1.0]  # eps_hat = 0 against eps = 1


def test_state_carries_the_loss_curve_between_calls():
    x0, y = _problem()
    denoiser = MLPDenoiser(2, 2, hidden_size=8)
    state = _train(denoiser, x0, y, max_iter=20)
    state = _train(denoiser, x0, y, max_iter=30, state=state)
    assert len(state.loss_curve) == 50


def test_still_falling_needs_a_fall_above_tol_and_beyond_noise():
    noise = np.random.default_rng(0).normal(scale=0.1, size=500)
    steady = np.linspace(0.5, 0.49, 500)  # falls by 2% of its mean
    assert still_falling(steady, tol=1e-2)
    assert not still_falling(steady, tol=5e-2)  # a fall below tol
    # The same fall in noise of sd 0.1: its standard error is ~3.1%, so 2% is no evidence.
    assert not still_falling(steady + noise, tol=1e-2)
    assert still_falling(np.linspace(0.6, 0.4, 500) + noise, tol=1e-2)  # a 40% fall stands out
    assert not still_falling(0.5 + noise, tol=1e-2)
    assert still_falling([1.0, 0.5], tol=1e-2)  # too few losses to judge: not converged


def test_convergence_is_judged_on_the_last_half_of_a_short_fit():
    x0, y = _problem()
    # 100 steps at a rate of ~0: the loss is noise around a constant, over every window.
    state = _train(_Scalar(0.0), x0, y, max_iter=2 * CHECK_EVERY, learning_rate=1e-12, tol=1e-2, n_iter_no_change=10)
    assert state.converged
    # A short fit that learns: its loss still falls over the last half of its steps.
    state = _train(MLPDenoiser(2, 2, hidden_size=16), x0, y, max_iter=100, learning_rate=1e-2, tol=1e-2)
    assert not state.converged


def test_convergence_is_judged_on_held_out_draws_when_given():
    x0, y = _problem()
    held_x0, held_y = _problem(seed=1)
    watch = validation_draws(held_x0, held_y, training_timestep_probs(N_STEPS), torch.Generator().manual_seed(1))
    # At a rate of ~0 the weights stay: the held-out loss is the same at both ends, a fall of 0.
    state = _train(_Scalar(0.0), x0, y, learning_rate=1e-12, tol=1e-2, n_iter_no_change=1, watch=watch)
    assert state.converged and state.fall == (0.0, CHECK_EVERY, True)
    # A network that learns: its held-out loss still falls over the last check interval.
    kwargs = dict(max_iter=100, learning_rate=1e-2, tol=1e-2, n_iter_no_change=1)
    torch.manual_seed(0)
    watched = _train(MLPDenoiser(2, 2, hidden_size=16), x0, y, watch=watch, **kwargs)
    fall, steps, held_out = watched.fall
    assert not watched.converged and fall > 1e-2 and (steps, held_out) == (CHECK_EVERY, True)
    # The held-out draws change nothing of the training itself.
    torch.manual_seed(0)
    plain = _train(MLPDenoiser(2, 2, hidden_size=16), x0, y, **kwargs)
    assert plain.loss_curve == watched.loss_curve and plain.fall[1:] == (CHECK_EVERY, False)


def test_training_goes_on_while_the_held_out_loss_falls():
    x0, y = _problem()
    held_x0, held_y = _problem(seed=1)
    watch = validation_draws(held_x0, held_y, training_timestep_probs(N_STEPS), torch.Generator().manual_seed(1))
    kwargs = dict(max_iter=100, learning_rate=1e-2, tol=1e-2, n_iter_no_change=1, watch=watch)
    # A network that still learns at 100 steps goes on, 50 steps at a time, at the final rate.
    torch.manual_seed(0)
    denoiser = MLPDenoiser(2, 2, hidden_size=16)
    state = _train(denoiser, x0, y, extend_to=400, **kwargs)
    steps = len(state.loss_curve)
    assert steps > 100 and steps % CHECK_EVERY == 0 and steps <= 400
    # It stopped because the held-out loss fell by at most tol over the last 50 steps, or at 400.
    assert state.converged == (steps < 400) and state.fall[1:] == (CHECK_EVERY, True)
    # Weights that do not move: the held-out loss does not fall, so training stops at max_iter.
    state = _train(_Scalar(0.0), x0, y, extend_to=400, **{**kwargs, "learning_rate": 1e-12})
    assert len(state.loss_curve) == 100 and state.converged


def test_training_goes_on_only_where_goes_on_says_so():
    x0, y = _problem()
    held_x0, held_y = _problem(seed=1)
    watch = validation_draws(held_x0, held_y, training_timestep_probs(N_STEPS), torch.Generator().manual_seed(1))
    kwargs = dict(max_iter=100, learning_rate=1e-2, tol=1e-2, n_iter_no_change=1, watch=watch, extend_to=400)
    asked = []

    def answer(value):
        asked.append(value)
        return value

    torch.manual_seed(0)
    plain = _train(MLPDenoiser(2, 2, hidden_size=16), x0, y, **kwargs)
    assert len(plain.loss_curve) >= 200  # the held-out loss still falls at 100 and 150 steps
    # Told no, the training stops after its cosine, and counts as converged though the
    # held-out loss still fell: what follows trains on.
    torch.manual_seed(0)
    stopped = _train(MLPDenoiser(2, 2, hidden_size=16), x0, y, goes_on=lambda: answer(False), **kwargs)
    assert asked == [False] and stopped.loss_curve == plain.loss_curve[:100]
    assert stopped.converged and stopped.fall[0] > 1e-2
    # Told yes, asked before each stretch of 50 steps, it trains exactly as without being asked.
    asked.clear()
    torch.manual_seed(0)
    going = _train(MLPDenoiser(2, 2, hidden_size=16), x0, y, goes_on=lambda: answer(True), **kwargs)
    assert asked == [True] * ((len(plain.loss_curve) - 100) // 50) and going.loss_curve == plain.loss_curve
    # Yes, then no: one stretch, then it stops.
    answers = iter([True, False])
    torch.manual_seed(0)
    once = _train(MLPDenoiser(2, 2, hidden_size=16), x0, y, goes_on=lambda: answer(next(answers)), **kwargs)
    assert once.loss_curve == plain.loss_curve[:150] and once.converged
    # Not asked where the held-out loss does not fall.
    asked.clear()
    _train(_Scalar(0.0), x0, y, goes_on=lambda: answer(True), **{**kwargs, "learning_rate": 1e-12})
    assert asked == []


def test_extra_steps_run_at_the_final_rate_of_the_cosine(monkeypatch):
    x0, y = _problem()
    rates = []
    step = Adam.step

    def recorded_step(self, rate):
        rates.append(rate)
        return step(self, rate)

    monkeypatch.setattr(Adam, "step", recorded_step)
    state = _train(_Scalar(1.0), x0, y, max_iter=100, learning_rate=1e-2, extra=30)
    assert len(state.loss_curve) == 130
    assert rates[0] == 1e-2 and rates[99] > 1e-3
    assert rates[100:] == [pytest.approx(1e-3)] * 30


def _adam_run(updates, steps=25, moments=None, weight_decay=0.0):
    """Train a small network ``steps`` steps by ``updates(net, moments, weight_decay)``; return weights, moments."""
    torch.manual_seed(0)
    net = MLPDenoiser(3, 2, hidden_size=16)
    net.time[0].bias.requires_grad_(False)  # a frozen parameter (index 3): no moments, the others' indices kept
    generator = torch.Generator().manual_seed(1)
    update, moments_of = updates(net, moments, weight_decay)
    for k in range(steps):
        x = torch.randn((32, 3), generator=generator)
        t = torch.randint(0, 100, (32,), generator=generator)
        net(x, t, torch.arange(32) % 2).square().mean().backward()
        update(k)
    return [p.detach().clone() for p in net.parameters()], moments_of()


def _torch_adam(net, moments, weight_decay, steps=25):
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=weight_decay, fused=True)
    if moments is not None:
        optimizer.load_state_dict({**optimizer.state_dict(), "state": moments})
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=1e-3)

    def update(k):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()

    return update, lambda: {i: {k: v.clone() for k, v in m.items()} for i, m in optimizer.state_dict()["state"].items()}


def _our_adam(net, moments, weight_decay, steps=25):
    optimizer = Adam(net.parameters(), moments, weight_decay=weight_decay)
    rates = list(cosine_rates(1e-2, steps)) if moments is None else [1e-2] * steps
    return (lambda k: optimizer.step(rates[k])), lambda: {i: dict(m) for i, m in optimizer.state.items()}


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_is_torchs_fused_adam_and_cosine_bit_for_bit(weight_decay):
    # Along the cosine from fresh moments, then at a constant rate from saved ones
    # (partial_fit), the weights and moments are torch.optim's, to the last bit, with
    # and without its L2 penalty.
    for moments in (None, "continued"):
        if moments == "continued":
            moments = _adam_run(_torch_adam, weight_decay=weight_decay)[1]
        ours = _adam_run(_our_adam, moments=moments, weight_decay=weight_decay)
        theirs = _adam_run(_torch_adam, moments=moments, weight_decay=weight_decay)
        assert all(torch.equal(a, b) for a, b in zip(ours[0], theirs[0]))
        assert ours[1].keys() == theirs[1].keys() == set(range(13)) - {3}
        for index in ours[1]:
            assert {k: v.dtype for k, v in ours[1][index].items()} == {k: v.dtype for k, v in theirs[1][index].items()}
            assert all(torch.equal(ours[1][index][k], theirs[1][index][k]) for k in theirs[1][index])
    # The rates: CosineAnnealingLR's, from the rate down to a tenth of it at the last step.
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=25, eta_min=1e-3)
    theirs = [optimizer.param_groups[0]["lr"]]
    for _ in range(25):
        optimizer.step()
        scheduler.step()
        theirs.append(optimizer.param_groups[0]["lr"])
    assert list(cosine_rates(1e-2, 25)) == theirs and theirs[-1] == pytest.approx(1e-3, rel=1e-12)


def test_adam_steps_each_dtype_as_torch_does_and_refuses_sparse_gradients():
    # Parameters of two dtypes: one kernel each, as torch.optim groups them, to the same bits.
    def run(optimizer_of):
        torch.manual_seed(0)
        params = [nn.Parameter(torch.randn(5)), nn.Parameter(torch.randn(3, dtype=torch.float64))]
        step = optimizer_of(params)
        for k in range(5):
            for p in params:
                p.grad = torch.full_like(p, 0.1 * (k + 1))
            step()
        return params

    def theirs(params):
        return torch.optim.Adam(params, lr=1e-2, fused=True).step

    def ours(params):
        return functools.partial(Adam(params).step, 1e-2)

    assert all(torch.equal(a, b) for a, b in zip(run(ours), run(theirs)))
    embedding = nn.Embedding(4, 2, sparse=True)
    embedding(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        Adam(embedding.parameters()).step(1e-2)


def test_adam_follows_parameters_that_gain_or_lose_their_gradient_as_torch_does():
    # Which parameters have a gradient changes from step to step: each one's step count
    # advances only when it has one, as torch.optim's do, to the same bits; the step
    # counts that parameters share while they advance together part when they no longer do.
    def run(optimizer_of):
        torch.manual_seed(0)
        params = [nn.Parameter(torch.randn(4)) for _ in range(3)]
        step, counts = optimizer_of(params)
        for k in range(12):
            for i, p in enumerate(params):  # the first always, the second from step 4, the third on even steps
                if i == 0 or (i == 1 and k >= 4) or (i == 2 and k % 2 == 0):
                    p.grad = torch.full_like(p, 0.1 * (k + 1)) * (-1) ** i
            step()
        return params, counts()

    def theirs(params):
        optimizer = torch.optim.Adam(params, lr=1e-2, fused=True)

        def step():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step, lambda: [float(optimizer.state[p]["step"]) for p in params]

    def ours(params):
        optimizer = Adam(params)
        return functools.partial(optimizer.step, 1e-2), lambda: [float(optimizer.state[i]["step"]) for i in range(3)]

    (params_ours, counts_ours), (params_theirs, counts_theirs) = run(ours), run(theirs)
    assert all(torch.equal(a, b) for a, b in zip(params_ours, params_theirs))
    assert counts_ours == counts_theirs == [12.0, 8.0, 6.0]


def test_holes_are_neither_noised_nor_scored():
    x0, y = _problem()
    alphas_cumprod = as_tensor(make_alphas_cumprod("linear", N_STEPS))
    probs = training_timestep_probs(N_STEPS)
    denoiser = MLPDenoiser(2, 2, hidden_size=16)

    def loss(mask, hole_rate, seed=0):
        generator = torch.Generator().manual_seed(seed)
        draw = (x0, y, alphas_cumprod, torch.as_tensor(probs), 32, "l2", generator, None, mask, hole_rate)
        return minibatch_loss(denoiser, *draw).item()

    full = torch.ones_like(x0)
    # Every element a hole: nothing is scored.
    assert loss(full, 1.0) == 0.0
    # A mask of ones scores what no mask scores; without holes, a rate of 0 draws nothing more.
    assert loss(full, 0.0) == pytest.approx(loss(None, 0.0), rel=1e-6)
    # Half the elements holes: about half the loss (the holes count as zero in the mean).
    halves = [loss(full, 0.5, seed) / loss(full, 0.0, seed) for seed in range(20)]
    assert 0.35 < np.mean(halves) < 0.65


# The class enters at the output layer, after one block, before every block, with no block;
# with or without a read-out of rank 5 per class, or through the read-out alone. Of 4
# classes, or of enough that a row's read-out is its class's alone (see _own_read_out).
@pytest.mark.parametrize(
    "class_blocks, n_blocks, class_readout, class_embedding, n_classes",
    [(0, 3, 0, True, 4), (1, 3, 0, True, 4), (3, 3, 0, True, 4), (0, 0, 0, True, 4), (0, 3, 5, True, 4)]
    + [(3, 3, 5, True, 4), (0, 3, 5, False, 4), (0, 0, 5, False, 4)]
    + [(0, 3, 5, True, EVERY_READ_OUT_BELOW), (0, 0, 5, False, EVERY_READ_OUT_BELOW)],
)
@pytest.mark.parametrize("n_frequencies", [0, 16])
@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
@pytest.mark.parametrize("masked", [False, True])
# 64 rows x 32 units: every product on addmm; 256 x 128: the blocks' products on oneDNN where it runs.
@pytest.mark.parametrize("rows, width", [(64, 32), (256, 128)])
def test_the_default_networks_own_backward_pass_gives_autograds_gradients(
    class_blocks, n_blocks, class_readout, class_embedding, n_classes, n_frequencies, loss, masked, rows, width
):
    torch.manual_seed(0)
    # A Gaussian base where the default network has one: without frequencies or read-outs.
    gaussian_base = 1000 if not (n_frequencies or class_readout) else 0
    net = MLPDenoiser(
        3,
        n_classes,
        hidden_size=width,
        n_blocks=n_blocks,
        class_blocks=class_blocks,
        n_frequencies=n_frequencies,
        class_readout=class_readout,
        class_embedding=class_embedding,
        gaussian_base=gaussian_base,
    )
    with torch.no_grad():  # away from the zero output layer of a new network, which sends no gradient back
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    if gaussian_base:
        samples = torch.randn(50, 3) * torch.tensor([0.5, 1.0, 2.0])
        net.fit_gaussian_base(samples, torch.arange(50) % 4, as_tensor(make_alphas_cumprod("linear", 1000)))
    x_t, t, eps = torch.randn(rows, 3), torch.randint(0, 1000, (rows,)), torch.randn(rows, 3)
    y = torch.arange(rows) % n_classes
    mask = (torch.rand(rows, 3) > 0.3).float() if masked else None
    expected_loss = per_sample_loss(loss, net(x_t, t, y), eps, mask=mask).mean()
    expected_loss.backward()
    expected = {name: p.grad for name, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = None
    eps_hat, backward = net.forward_backward(x_t, t, y)
    batch_loss, gradient = mean_loss_and_gradient(loss, eps_hat, eps, mask=mask)
    backward(gradient)
    with torch.no_grad():  # the forward pass is inference's, but for the rounding of its time table's product
        torch.testing.assert_close(eps_hat, net(x_t, t, y), rtol=1e-6, atol=1e-6)
    assert batch_loss.item() == pytest.approx(expected_loss.item(), rel=1e-6)
    scales = {name: expected[name].abs().max().item() for name in expected}
    if gaussian_base:  # the gate's gradient is one sum of terms that may cancel: its rounding is theirs
        with torch.no_grad():
            scales["base_gate"] = (gradient * net._base_of(*net._ungated_base_factors(t), x_t, y)).abs().sum().item()
    for name, p in net.named_parameters():
        # Summed in another order than autograd's: equal up to float32 rounding.
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-5, atol=1e-5 * scales[name])


def test_only_the_default_network_untouched_trains_by_its_own_backward_pass():
    net = MLPDenoiser(2, 2)
    assert _written_out(net)
    net.time[0].weight.requires_grad_(False)  # a frozen parameter: autograd decides what trains
    assert not _written_out(net)
    hooked = MLPDenoiser(2, 2)
    calls = []
    hooked.blocks[0][1].register_forward_hook(lambda *args: calls.append(1))
    assert not _written_out(hooked)  # a hook must see the training's forward passes
    x0, y = _problem()
    _train(hooked, x0, y, max_iter=3)
    assert len(calls) >= 3

    class Subclass(MLPDenoiser):
        pass

    assert not _written_out(Subclass(2, 2))


def test_a_fit_by_the_own_backward_pass_follows_autograds(monkeypatch):
    # The same training, once through autograd: the weights agree to float32 rounding.
    x0, y = _problem()
    nets = []
    for written in (True, False):
        if not written:
            monkeypatch.setattr(training, "_written_out", lambda denoiser: False)
        torch.manual_seed(0)
        net = MLPDenoiser(2, 2, hidden_size=32)
        _train(net, x0, y, max_iter=50)
        nets.append(net)
    for a, b in zip(*(net.parameters() for net in nets)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def _term_problem(seed=0):
    """A tiny 3-class network (weights away from the zero output layer), data, and a cross-entropy term."""
    torch.manual_seed(seed)
    net = MLPDenoiser(2, 3, hidden_size=16)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    x0, y = torch.randn(20, 2), torch.arange(20) % 3
    probs = torch.zeros(N_STEPS, dtype=torch.float64)
    probs[:50] = 1.0
    term = CrossEntropyTerm(
        weight=2.0,
        scale=3.0,
        log_prior=torch.log(torch.tensor([0.2, 0.3, 0.5])),
        category_weight=0.5,
        category_ll=torch.randn(20, 3),
        timestep_probs=probs,
        rows=8,
        trials=3,
    )
    draw = (x0, y, as_tensor(make_alphas_cumprod("linear", N_STEPS)), None, None, "l2")
    return net, term, draw


class _OneClassAtATime(nn.Module):
    """The network without ``forward_all``: the term calls it once per class."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x_t, t, y):
        return self.inner(x_t, t, y)


def test_the_cross_entropy_term_is_the_log_loss_of_bayes_rule_on_its_draws():
    net, term, (x0, y, alphas_cumprod, *rest) = _term_problem()
    value = term(net, x0, y, alphas_cumprod, *rest, torch.Generator().manual_seed(5))
    # Its draws, in its order: rows, then a timestep and a noise per (row, trial).
    generator = torch.Generator().manual_seed(5)
    rows = torch.randint(20, (8,), generator=generator)
    pairs = rows.repeat_interleave(3)
    t = torch.multinomial(term.timestep_probs, 24, replacement=True, generator=generator)
    eps = torch.randn((24, 2), generator=generator)
    assert t.max() < 50  # in the trials' range
    x_t = add_noise(x0[pairs], eps, t, alphas_cumprod)
    errors = torch.stack([((net(x_t, t, torch.full((24,), c)) - eps) ** 2).mean(1) for c in range(3)], dim=1)
    scores = term.log_prior - 3.0 * errors.view(8, 3, 3).mean(1) + 0.5 * term.category_ll[rows]
    expected = 2.0 * (torch.logsumexp(scores, 1) - scores[torch.arange(8), y[rows]]).mean()
    torch.testing.assert_close(value, expected)
    # A network without forward_all gets the same term, one class at a time.
    again = term(_OneClassAtATime(net), x0, y, alphas_cumprod, *rest, torch.Generator().manual_seed(5))
    torch.testing.assert_close(again, expected)


class _Bilinear(nn.Module):
    """``eps_hat = tanh(x_t W_y + b_y) * t / 100``, in float64: small enough for finite differences."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(3, 2, 2, generator=generator, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(3, 2, generator=generator, dtype=torch.float64))

    def forward(self, x_t, t, y):
        return torch.tanh(torch.einsum("ni,nij->nj", x_t, self.w[y]) + self.b[y]) * (t[:, None] / 100)


class _Term(nn.Module):
    """``term(net, *draw)`` as a module's forward pass, for ``torch.func.functional_call``."""

    def __init__(self, net, term):
        super().__init__()
        self.net, self.term = net, term

    def forward(self, *draw):
        return self.term(self.net, *draw)


def test_the_cross_entropy_terms_gradient_is_exact():
    _, term, (x0, y, alphas_cumprod, *rest) = _term_problem()
    term = dataclasses.replace(term, log_prior=term.log_prior.double(), category_ll=term.category_ll.double())
    net = _Bilinear()

    def value(w, b):
        generator = torch.Generator().manual_seed(5)  # the same draws at every evaluation
        args = (x0.double(), y, alphas_cumprod.double(), *rest, generator)
        return torch.func.functional_call(_Term(net, term), {"net.w": w, "net.b": b}, args)

    params = tuple(p.detach().clone().requires_grad_() for p in net.parameters())
    assert torch.autograd.gradcheck(value, params)


def test_the_terms_gradient_through_forward_all_is_that_of_one_class_at_a_time():
    net, term, (x0, y, *rest) = _term_problem()
    gradients = []
    for network in (net, _OneClassAtATime(net)):
        term(network, x0, y, *rest, torch.Generator().manual_seed(5)).backward()
        gradients.append([p.grad.clone() for p in net.parameters()])
        net.zero_grad(set_to_none=True)
    for a, b in zip(*gradients):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item())


def test_a_step_adds_the_terms_gradient_to_the_denoising_losss():
    # The own backward pass, then autograd's for the term, sum to autograd's of the sum.
    net, term, (x0, y, alphas_cumprod, *_) = _term_problem()
    draw = (x0, y, alphas_cumprod, torch.as_tensor(training_timestep_probs(N_STEPS)), 16, "l2")

    class Recorder:
        def step(self, rate):
            self.grads = [p.grad.clone() for p in net.parameters()]
            for p in net.parameters():
                p.grad = None

    recorder = Recorder()
    loss = training._step(net, recorder, 0.1, (*draw, torch.Generator().manual_seed(1)), True, term)
    generator = torch.Generator().manual_seed(1)
    expected_loss = minibatch_loss(net, *draw, generator)
    (expected_loss + term(net, *draw, generator)).backward()
    assert loss == pytest.approx(expected_loss.item())  # the denoising loss alone
    for got, p in zip(recorder.grads, net.parameters()):
        torch.testing.assert_close(got, p.grad, rtol=1e-5, atol=1e-6)
