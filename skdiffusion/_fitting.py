"""Fit as a plan and a few steps: train, choose the trials, then refit or tune.

:func:`plan_fit` decides once, from the parameters and the data, what a fit does;
:func:`run_plan` trains as the plan says and returns what it made. Neither reads or
writes the estimator: it sets its fitted attributes from the result, at the end.
"""

import copy
import dataclasses
import functools
import time
import warnings
from typing import NamedTuple

import joblib
import numpy as np
import torch
from scipy import stats
from sklearn.model_selection import train_test_split

from ._calibration import CHOOSING_ROWS, choose_trials
from ._compute import ceil_div, seeded_torch
from ._denoisers import MLPDenoiser, build_denoiser, mlp_options
from ._training import (
    CrossEntropyTerm,
    Progress,
    scored_timesteps,
    train_denoiser,
    training_timestep_probs,
    validation_draws,
    weights_copy,
)
from ._unet import UNetDenoiser
from ._validation import timestep_bounds

# refit="auto" trains afresh on all rows below this many rows, where the held-out rows are
# a loss the network feels; above it, the refit's network suits the scale chosen on the
# first one less well.
REFIT_BELOW = 1000
# validation_fraction="auto" holds out this share of a fit that refits (the held-out rows
# only choose the trials, then are trained on), and VALIDATION_SHARE of any other (they
# are never trained on).
REFIT_VALIDATION_SHARE = 0.3
VALIDATION_SHARE = 0.1
# max_iter="auto": a cosine of AUTO_STEPS steps, then on at its final rate while the
# held-out loss still falls (by more than tol over each stretch of the convergence check's
# steps), up to AUTO_MOST_STEPS in all; a network with a Gaussian base: half as many, not
# going on (see plan_fit).
AUTO_STEPS = 600
AUTO_MOST_STEPS = 1800
# ... or, before a tuning on LONG_TRAINING_ROWS rows or more, a cosine of AUTO_LONG_STEPS
# steps, not going on after it: more rows support a longer training, which raised the
# accuracy and lowered the log loss there, and raised the log loss on fewer rows (see
# the user guide).
AUTO_LONG_STEPS = 3000
LONG_TRAINING_ROWS = 3000
# ... and while the held-out loss rose by more than tol over the last half of the training,
# it trains afresh for half as many steps, down to AUTO_FEWEST_STEPS.
AUTO_FEWEST_STEPS = 150
# A fit that tunes goes on for TUNE_STEPS * max_iter steps at TUNE_RATE times the initial
# learning rate: a restart at the full rate would undo what the first training learned.
# A tuning without the cross-entropy term, which only concentrates the training on the
# chosen range, runs PLAIN_TUNE_STEPS * max_iter: 150 steps did as well as 300 on spirals,
# digits, leaves and 20 and 50 synthetic classes, while the term's tuning needs its 300.
TUNE_STEPS = 0.5
PLAIN_TUNE_STEPS = 0.25
TUNE_RATE = 0.2
# max_iter="auto": a tuning with the cross-entropy term that lowered the held-out log loss
# of the classes runs again, from where it ended and with the scale chosen for the network
# it left, while that loss falls, up to this many tunings in all; the network goes back to
# the weights before the one that did not lower it. Where the term helps, one tuning was
# too short (benchmarks/results/discriminative.md).
AUTO_MOST_TUNINGS = 10
# ... on at least this many held-out rows: a tuning moves their log loss by about 0.01,
# within the noise of fewer, and on 105 of them it fell over three more tunings while the
# test rows' rose (see the user guide).
TUNE_AGAIN_ROWS = 300
# The weight of the cross-entropy term of a discriminative tuning (see CrossEntropyTerm),
# against the denoising loss's 1.
DISCRIMINATIVE_WEIGHT = 1.0
# discriminative="auto" tunes with the term on two classes that overlap: where the held-out
# log loss of the first network is above this share of the labels' entropy under the
# priors. Where the diffusion model alone separates the classes, the term made a few rows
# overconfident, and on 20 overlapping classes it lowered the accuracy
# (benchmarks/results/discriminative.md).
DISCRIMINATIVE_ABOVE = 0.1
# The initial learning rate of "auto": the default MLP's, and any other network's.
MLP_LEARNING_RATE = 1e-2
OTHER_LEARNING_RATE = 5e-3


class Seeds(NamedTuple):
    """The seeds of one fit, drawn from ``random_state``: weights, training draws, split, predict's noise."""

    init: int
    train: int
    split: int
    noise: int

    @classmethod
    def draw(cls, rng):
        return cls(*(int(seed) for seed in rng.randint(np.iinfo(np.int32).max, size=4)))


@dataclasses.dataclass(frozen=True)
class Training:
    """One run of the training loop."""

    rows: np.ndarray  # the rows it trains on
    max_iter: int
    learning_rate: float
    scored: tuple | None = None  # (t_min, t_max) of the trials, if known: see training_timestep_probs
    # The most steps in all, going on after max_iter while the held-out loss falls (a
    # refit: as many as its first training went on); 0: exactly max_iter.
    extend_to: int = 0
    anneal: bool = True  # a fresh Adam along a cosine; False: a constant rate, Adam's moments carried on
    afresh: bool = False  # from the initial weights and seed, not the network trained so far
    discriminative: float = 0.0  # the weight of a cross-entropy term in its loss (see CrossEntropyTerm)


@dataclasses.dataclass(frozen=True)
class FitPlan:
    """What one fit does, decided from the parameters and the data before anything is trained."""

    first: Training
    # After choosing the trials on held_out: a refit (afresh, on every row) or a tuning (on
    # the first's rows), concentrated on the chosen range; None: neither.
    second: Training | None
    held_out: np.ndarray  # the rows that choose the trials and stop early; the first never trains on them
    timestep_range: str | tuple  # "auto" or the parameter's pair
    early_stopping: bool
    seeds: Seeds
    n_steps: int
    batch_size: int
    loss: str
    tol: float
    n_iter_no_change: int
    verbose: int
    weight_decay: float = 0.0  # Adam's, in every training
    discriminative: bool | str = False  # the parameter: whether a tuning has a CrossEntropyTerm
    tunings: int = 1  # the most times a tuning with the cross-entropy term runs (see TUNE_AGAIN_ROWS)
    # A tuning's steps are a share of the first training's cosine, up to this many: max_iter's.
    tuning_of: int = AUTO_STEPS
    # The first training's length is max_iter="auto"'s choice for a Gaussian base, made
    # before training (see plan_fit): it counts as converged, its held-out loss still falling.
    settled: bool = False

    @property
    def trains(self):
        return self.first.max_iter > 0

    @property
    def steps(self):
        """The most steps of each training, for the callbacks' progress."""
        return [max(t.max_iter, t.extend_to) for t in (self.first, self.second) if t is not None]

    @property
    def retries(self):
        """The steps of each shorter first training that max_iter="auto" may run instead (see :func:`shorter`)."""
        lengths, training, auto = [], self.first, bool(self.first.extend_to)
        while (training := shorter(training, auto)) is not None:
            lengths.append(training.max_iter)
        return lengths

    @property
    def repeats(self):
        """The most steps of each tuning after the first that max_iter="auto" may run (see ``AUTO_MOST_TUNINGS``)."""
        return [] if self.second is None else [self.second.max_iter] * (self.tunings - 1)


class TrainingData(NamedTuple):
    """The training rows as the denoiser sees them, on its device."""

    x0: torch.Tensor  # standardised samples, shape (n, *sample_shape)
    y: torch.Tensor  # class indices
    y_index: np.ndarray  # the same, in numpy
    weights: np.ndarray | None  # of each row, or None: all equal
    mask: torch.Tensor | None  # of x0's shape: 1 on the diffused elements; None: all are
    alphas_cumprod: torch.Tensor  # float32
    log_prior: np.ndarray  # (n_classes,)
    category_ll: np.ndarray | None  # (n, n_classes): log p(x_cat | c) of each row; None without categories
    hole_rate: float = 0.0  # the share of missing numbers, removed anew at random while training
    cells: torch.Tensor | None = None  # of a sample's shape: each value's dequantization cell (0: none); None: none

    @classmethod
    def on(cls, device, x0, y_index, weights, mask, alphas_cumprod, log_prior, category_ll, hole_rate=0.0, cells=None):
        """Return the data with its tensors moved to ``device``."""
        y = torch.as_tensor(y_index, device=device)
        mask = None if mask is None else mask.to(device)
        schedule = alphas_cumprod.to(device)
        cells = None if cells is None else cells.to(device)
        return cls(x0.to(device), y, y_index, weights, mask, schedule, log_prior, category_ll, hole_rate, cells)

    def rows_mask(self, rows):
        """Return the mask of ``rows``, or None."""
        return None if self.mask is None else self.mask[rows]

    def row_weights(self, rows):
        """Return the weights of ``rows`` as a float64 tensor on the CPU (where draws are made), or None."""
        return None if self.weights is None else torch.as_tensor(self.weights[rows])


def plan_fit(params, y_index, n_classes, *, seeds, continuing=False, incremental=False, gaussian_base=False):
    """Return the :class:`FitPlan` of a fit with ``params`` (``get_params()``) on class indices ``y_index``.

    ``continuing``: the fit trains the fitted network on (``warm_start``); ``incremental``:
    ``partial_fit``, one epoch's worth of steps at a constant rate, without a second training.
    ``gaussian_base``: the network starts at the exact denoiser of Gaussian classes (see
    :class:`~skdiffusion.MLPDenoiser`); max_iter="auto" then trains it half as long.
    """
    if params["early_stopping"] and params["validation_fraction"] is None and not incremental:
        raise ValueError("early_stopping=True needs held-out samples: set validation_fraction, not None.")
    max_iter, n_steps = resolved_max_iter(params), params["n_diffusion_steps"]
    trains = incremental or max_iter > 0
    then = None if incremental or continuing or not trains else _second_training(params, y_index.size)
    rows, held_out = _split(y_index, n_classes, params["validation_fraction"], seeds.split, trains, then == "refit")
    extends = params["max_iter"] == "auto" and held_out.size and not (params["early_stopping"] or incremental)
    long = extends and then == "tune" and y_index.size >= LONG_TRAINING_ROWS
    extend_to = AUTO_MOST_STEPS if extends else 0
    # A network with a Gaussian base has only the classes' departures from Gaussians to
    # learn: "auto" trains it for the first shorter length, half of AUTO_STEPS (and a quarter
    # if its held-out loss rises), and not on after it. On the suite's, the panel's and the
    # held-out tables it matched the longer training in about half the time (see the
    # training guide).
    settled = bool(extends and gaussian_base and not long)
    if settled:
        max_iter = extend_to = AUTO_STEPS // 2
    explicit = params["timestep_range"]
    scored = None if isinstance(explicit, str) else timestep_bounds(explicit, n_steps)
    rate = resolved_learning_rate(params)
    if incremental:  # as many steps as one pass over the rows, as MLPClassifier's partial_fit
        first = Training(rows, ceil_div(rows.size, params["batch_size"]), rate, scored, anneal=False)
    elif long:
        first = Training(rows, AUTO_LONG_STEPS, rate, scored, extend_to=AUTO_LONG_STEPS)
    else:
        first = Training(rows, max_iter, rate, scored, extend_to=extend_to)
    second, tunings = None, 1
    if then == "refit" and held_out.size:
        second = Training(np.arange(y_index.size), max_iter, rate, afresh=True, extend_to=extend_to)
    elif then == "tune" and held_out.size:
        second = Training(rows, max(1, round(TUNE_STEPS * max_iter)), TUNE_RATE * rate)
        tunings = AUTO_MOST_TUNINGS if extends and held_out.size >= TUNE_AGAIN_ROWS else 1
    return FitPlan(
        first=first,
        second=second,
        discriminative=params["discriminative"],
        tunings=tunings,
        tuning_of=max_iter,
        settled=settled,
        held_out=held_out,
        timestep_range=params["timestep_range"],
        early_stopping=params["early_stopping"] and not incremental,
        seeds=seeds,
        n_steps=n_steps,
        **{name: params[name] for name in ("batch_size", "loss", "tol", "n_iter_no_change", "verbose", "weight_decay")},
    )


def _second_training(params, n_samples):
    """Return how a fit on ``n_samples`` rows trains once it has chosen the trials: "refit", "tune" or None.

    "tune" only for ``timestep_range="auto"``: an explicit range is concentrated on from the start.
    """
    if params["early_stopping"] or params["validation_fraction"] is None:
        return None
    refit = params["refit"]
    if refit is True or (refit == "auto" and n_samples < REFIT_BELOW):
        return "refit"
    return "tune" if isinstance(params["timestep_range"], str) else None


def shorter(training, auto):
    """Return ``training`` at half its steps (and not going on after them), or None if it may not be shortened.

    Only max_iter="auto" (``auto``) shortens, down to ``AUTO_FEWEST_STEPS``.
    """
    if not auto or training.max_iter // 2 < AUTO_FEWEST_STEPS:
        return None
    return dataclasses.replace(training, max_iter=training.max_iter // 2, extend_to=0)


def resolved_max_iter(params):
    """Return the length of ``max_iter``'s cosine: the parameter, or ``AUTO_STEPS`` for "auto"."""
    return AUTO_STEPS if params["max_iter"] == "auto" else params["max_iter"]


def resolved_learning_rate(params):
    """Return ``learning_rate``, "auto" resolved by the network: the default MLP's, or any other's."""
    if not isinstance(params["learning_rate"], str):
        return params["learning_rate"]
    default_mlp = params["denoiser"] is None and params["image_shape"] is None
    return MLP_LEARNING_RATE if default_mlp else OTHER_LEARNING_RATE


def _split(y_index, n_classes, fraction, seed, trains, refits):
    """Return the (trained, held-out) row indices; the held-out part is empty when none is kept.

    The held-out rows are a stratified share of the classes that have two samples or more;
    a class of one sample is trained on whole. Nothing is held out (with a warning) when
    fewer than two classes could be, or when either part would have fewer rows than classes.
    """
    rows = np.arange(y_index.size)
    if fraction is None:
        return rows, rows[:0]
    if not trains:  # max_iter=0: every sample serves to choose the trials
        return rows[:0], rows
    share = fraction if fraction != "auto" else REFIT_VALIDATION_SHARE if refits else VALIDATION_SHARE
    counts = np.bincount(y_index, minlength=n_classes)
    several = counts[y_index] >= 2
    n_split, n_several = int(several.sum()), int(np.count_nonzero(counts >= 2))
    n_held_out = int(np.ceil(share * n_split))
    if n_several < 2 or min(n_held_out, n_split - n_held_out) < n_several:
        warnings.warn(
            f"Too few samples per class to hold out a fraction {share} of them "
            f"(validation_fraction={fraction!r}): "
            "training on all samples, without early stopping, with the error scale of the ELBO.",
            stacklevel=6,  # the caller of fit: _split, plan_fit, _fit, fit, _fit_context
        )
        return rows, rows[:0]
    trained, held_out = train_test_split(
        rows[several], test_size=n_held_out, stratify=y_index[several], random_state=seed
    )
    return np.concatenate([rows[~several], trained]), held_out


def network_builder(params, x_standardised, y_index, n_classes, *, n_diffused, seed, device):
    """Return a function that builds the fit's network anew, its initial weights drawn from ``seed``.

    ``params["denoiser"]`` None builds the default network: an :class:`MLPDenoiser` sized
    from the standardised data, whose first ``n_diffused`` columns it denoises (see
    :func:`mlp_options`), or a :class:`UNetDenoiser` for images.
    """
    architecture, image_shape = params["denoiser"], params["image_shape"]
    if architecture is None and image_shape is None:
        with np.errstate(over="ignore", invalid="ignore"):  # standardise reports an overflow
            options = mlp_options(
                x_standardised, y_index, n_diffused=n_diffused, n_classes=n_classes, n_steps=params["n_diffusion_steps"]
            )
        architecture = functools.partial(MLPDenoiser, **options)
    elif architecture is None:
        architecture = UNetDenoiser
    return functools.partial(
        _build, architecture, x_standardised.shape[1], n_classes, image_shape=image_shape, seed=seed, device=device
    )


def _build(architecture, n_features, n_classes, *, image_shape, seed, device):
    """Return a new network of ``architecture`` (see :func:`build_denoiser`), seeded, on ``device``."""
    # Only the seeded draws hold the lock: mlp_options runs joblib (kneighbors), during
    # which a Dask worker starts another task in this thread's place.
    with seeded_torch(seed):
        module = build_denoiser(architecture, n_features, n_classes, image_shape=image_shape)
    return module.to(device)


def run_plan(plan, data, network, state, *, n_iter, build, tasks, threads=1):
    """Train ``network`` as ``plan`` says: the first training, the choice of trials, then the refit or tuning.

    ``state`` and ``n_iter`` are those of the fitted network a fit continues (None and 0
    for a new one); ``build()`` makes the network afresh for a refit; ``tasks`` reports to
    the callbacks. The trials are chosen on ``threads`` threads (training runs on one).
    Returns ``(network, state, trials)``, the last a ``Trials``.
    """
    generator = torch.Generator().manual_seed(plan.seeds.train + n_iter)
    tunes = plan.second is not None and not plan.second.afresh  # then chooses the trials' weights again
    progress = Progress(plan.steps, 1 + tunes) if plan.verbose and plan.trains else None
    held = plan.held_out
    validation = watch = None
    if held.size and plan.trains:
        probs = training_timestep_probs(plan.n_steps, plan.first.scored)
        weights, mask = data.row_weights(held), data.rows_mask(held)
        if plan.early_stopping:
            validation = validation_draws(data.x0[held], data.y[held], probs, generator, weights, mask, data.cells)
        elif plan.first.anneal:  # a fit, which warns if the held-out loss still falls (partial_fit does not)
            # Drawn apart from the training's draws, which stay those of a fit without them.
            draws = torch.Generator().manual_seed(plan.seeds.split)
            watch = validation_draws(data.x0[held], data.y[held], probs, draws, weights, mask, data.cells)
    choose = functools.partial(
        choose_trials,
        x0=data.x0[held],
        y=data.y_index[held],
        alphas_cumprod=data.alphas_cumprod,
        loss=plan.loss,
        log_prior=data.log_prior,
        noise_seed=plan.seeds.noise,
        weights=None if data.weights is None else data.weights[held],
        mask=data.rows_mask(held),
        category_ll=None if data.category_ll is None else data.category_ll[held],
        threads=threads,
    )

    def chosen(network, timestep_range=plan.timestep_range):
        """Return the trials chosen for ``network`` on the held-out rows, and the seconds that took."""
        start = time.perf_counter()
        return choose(network, timestep_range=timestep_range), time.perf_counter() - start

    # A tuning trains the network on, as the first training would go on after its cosine;
    # only the cross-entropy term's tuning needs those steps first (see the user guide).
    early = []  # the (trials, seconds) of the network the first training keeps, if chosen before its end
    answer = []  # before_tuning's: whether the tuning has the cross-entropy term

    def before_tuning():
        """Return whether the first training goes on after its cosine: before a tuning with the cross-entropy term."""
        if not answer:
            choice = []  # the trials, where the rule needs them

            def trials():
                choice.append(chosen(network))
                return choice[0][0]

            answer.append(_discriminative(plan.discriminative, trials, data))
            early.extend([] if answer[0] else choice)
        return answer[0]

    stretches = []  # before each stretch the first training goes on for: its (trials, seconds) and weights

    def before_refit():
        """Return whether the first training goes on: while its trials' held-out log loss of the classes falls.

        Once it rises, the network goes back to the weights of the stretch before (see the user guide).
        """
        choice = chosen(network)
        stretches.append((choice, weights_copy(network)))
        if not _log_loss_rose(stretches):
            return True
        if progress is not None:
            then, now = stretches[-2][0][0].held_out_loss, choice[0].held_out_loss
            rise = f"the held-out log loss of the classes rose from {then:.4g} to {now:.4g}"
            print(f"Stopped going on ({rise}): back to the weights before the last stretch")
        return False

    refits = plan.second is not None and plan.second.afresh
    if progress is not None:
        progress.begin(f"Training on {plan.first.rows.size} samples")
    first = plan.first
    state = _train(
        network,
        data,
        plan,
        first,
        state,
        generator,
        validation,
        tasks.next_interval,
        progress,
        watch,
        goes_on=before_tuning if tunes else before_refit if refits else None,
    )
    gone_back = 0  # the steps of the stretch after the weights that before_refit went back to
    if _log_loss_rose(stretches) and not state.interrupted:
        choice, weights = stretches[-2]
        network.load_state_dict(weights)
        early.append(choice)
        gone_back = (len(state.loss_curve) - n_iter - first.max_iter) // (len(stretches) - 1)
    # max_iter="auto" on data that the network overfits: afresh, for half as many steps.
    auto = bool(first.extend_to)  # a continued fit has no build, and is not shortened
    longer = []  # before a tuning, each longer training's (trials, seconds, network, state, Training)
    while build is not None and _rose(state, plan.tol, watch) and (half := shorter(first, auto)) is not None:
        if tunes:
            longer.append((*chosen(network), network, state, first))
        first = half
        if progress is not None:
            rise, steps, _ = state.fall
            reason = f"the held-out loss rose by {-rise:.1%} over the last {steps} steps"
            progress.restart(f"Training afresh for fewer steps ({reason})", len(state.loss_curve), first.max_iter)
        network, state, generator = build(), None, torch.Generator().manual_seed(plan.seeds.train)
        state = _train(network, data, plan, first, state, generator, validation, tasks.next_interval, progress, watch)
    if longer and not state.interrupted:  # the held-out log loss of the classes has the last word (see the user guide)
        trainings = [*longer, (*chosen(network), network, state, first)]
        trials, _, network, state, first = min(trainings, key=lambda training: training[0].held_out_loss)
        early.append((trials, sum(training[1] for training in trainings)))
        if progress is not None and first is not trainings[-1][-1]:
            losses = ", ".join(f"{t.held_out_loss:.4g} after {run.max_iter}" for t, _, _, _, run in trainings)
            print(f"Kept the training of {first.max_iter} steps, of the lowest held-out log loss ({losses})")
    shortened = first is not plan.first
    # A length between a rise of the held-out loss and where it still fell (or 150), or
    # one chosen for a Gaussian base: no ConvergenceWarning.
    if shortened or plan.settled:
        state.converged = True
    verdict = state.converged, state.fall  # also the second training's (see below)
    extra = len(state.loss_curve) - n_iter - first.max_iter - gone_back  # beyond the cosine, which a refit replays
    tasks.end_interval()
    trials, seconds = early[0] if early else chosen(network)
    if progress is not None:
        what = f"the timestep range {trials.timestep_range} and the scale {trials.scale:.4g}"
        loss = f"log loss {trials.held_out_loss:.4g}"
        rows = f"{held.size} held-out samples"
        if held.size > CHOOSING_ROWS:
            rows = f"a weighted sample of about {CHOOSING_ROWS} of the {rows}"
        progress.chose(f"Chose {what} on {rows} ({loss})", seconds)
    if plan.second is None or state.interrupted:
        if state.cancelled:
            _warn("Training interrupted by the user; the model keeps the weights reached so far.")
        return network, state, trials
    second = dataclasses.replace(plan.second, scored=timestep_bounds(trials.timestep_range, plan.n_steps))
    if shortened and second.afresh:  # as long as the shortened first training
        second = dataclasses.replace(second, max_iter=first.max_iter, extend_to=0)
    if not second.afresh:  # a share of the first training's cosine, larger with the cross-entropy term
        term = _discriminative(plan.discriminative, lambda: trials, data)
        share = TUNE_STEPS if term else PLAIN_TUNE_STEPS
        steps = max(1, round(share * min(first.max_iter, plan.tuning_of)))
        second = dataclasses.replace(second, max_iter=steps, discriminative=DISCRIMINATIVE_WEIGHT if term else 0.0)
    # What the model keeps should the second training be interrupted or diverge: the first
    # network, with the trials chosen for it (a copy, as a tuning trains it in place).
    kept = (network, state, trials) if second.afresh else (copy.deepcopy(network), copy.deepcopy(state), trials)
    kept[1].interrupted = True  # no ConvergenceWarning about a training that was cut short
    stage = f"the refit on all {data.y_index.size} samples" if second.afresh else _tuning(second)
    if second.afresh:  # the same initial weights and seed, now with the held-out rows too
        network, state, generator = build(), None, torch.Generator().manual_seed(plan.seeds.train)
    if progress is not None:
        progress.end()
        if second.afresh:  # as many steps as the first training ran
            progress.begin(f"Refitting on all {data.y_index.size} samples", second.max_iter + extra)
        else:
            progress.begin(
                f"{_tuning(second, 'Tuning')} on the timestep range {trials.timestep_range}", second.max_iter
            )
    before = f"the network trained before it (on {plan.first.rows.size} samples) and its trials"
    term = _cross_entropy_term(second, trials, data)
    try:
        state = _train(
            network, data, plan, second, state, generator, None, tasks.next_interval, progress, extra=extra, term=term
        )
        if watch is not None:  # the training to convergence is the first; a tuning is a short one after it
            state.converged, state.fall = verdict
    except FloatingPointError as exc:
        _warn(f"Training diverged during {stage} ({exc}); the model keeps {before}.")
        return kept
    if state.cancelled and second.afresh:  # a refit cut short is worse than the network before it
        _warn(f"Training interrupted by the user during {stage}; the model keeps {before}.")
        return kept
    if state.cancelled:
        _warn(f"Training interrupted by the user during {stage}; the model keeps the weights reached so far.")
    if not second.afresh:  # the range stays; the weights are fitted again to the tuned network
        untuned_loss = trials.held_out_loss
        trials, seconds = chosen(network, trials.timestep_range)
        if progress is not None:
            progress.chose(f"Chose the scale {trials.scale:.4g} again", seconds)
        if term is not None and plan.tunings > 1 and not state.interrupted and trials.held_out_loss < untuned_loss:

            def tune(trials):
                """Run the tuning once more, its cross-entropy term at the scale of ``trials``; return the state."""
                term = _cross_entropy_term(second, trials, data)
                return _train(
                    network, data, plan, second, state, generator, None, tasks.next_interval, progress, term=term
                )

            state, trials = _tuned_again(
                network,
                state,
                trials,
                tune=tune,
                choose=functools.partial(chosen, network, trials.timestep_range),
                most=plan.tunings - 1,
                steps=second.max_iter,
                progress=progress,
            )
    tasks.end_interval()
    return network, state, trials


def _tuned_again(network, state, trials, *, tune, choose, most, steps, progress):
    """Run the tuning again while it lowers the held-out log loss of the classes; return ``(state, trials)``.

    ``trials``: those chosen for ``network`` after its tuning; ``tune(trials)`` runs the
    tuning (of ``steps`` steps) once more and returns the state; ``choose()`` returns the
    trials of the network as it is, and the seconds they took. At most ``most`` tunings
    more. The first that does not lower the loss, diverges or is interrupted has its weights
    undone: ``network`` keeps those before it, with their trials.
    """
    kept = weights_copy(network)
    for _ in range(most):
        if progress is not None:
            then = f"the held-out log loss of the classes fell to {trials.held_out_loss:.4g}"
            progress.restart(f"Tuning again with the cross-entropy term ({then})", steps, steps, choices=1)
        try:
            state = tune(trials)
        except FloatingPointError as exc:
            _warn(f"Training diverged while tuning again ({exc}); the model keeps the network before it.")
            break
        if state.cancelled:
            _warn("Training interrupted by the user while tuning again; the model keeps the network before it.")
        if state.interrupted:
            break
        now, seconds = choose()
        if progress is not None:
            progress.chose(f"Chose the scale {now.scale:.4g} again (log loss {now.held_out_loss:.4g})", seconds)
        if not now.held_out_loss < trials.held_out_loss:
            if progress is not None:
                print("The held-out log loss of the classes did not fall: back to the weights before this tuning")
            break
        trials, kept = now, weights_copy(network)
    network.load_state_dict(kept)
    return state, trials


def _tuning(training, name="the tuning"):
    """Return ``name`` for a tuning, "with the cross-entropy term" after it for a discriminative one."""
    return f"{name} with the cross-entropy term" if training.discriminative else name


def _discriminative(parameter, trials, data):
    """Return whether a tuning has a cross-entropy term: the ``discriminative`` parameter, "auto" resolved.

    "auto": on two classes, when the held-out log loss of the trials ``trials()`` returns
    is above ``DISCRIMINATIVE_ABOVE`` times the entropy of the labels under the priors (the
    log loss of the priors alone). ``trials`` is called only there.
    """
    if parameter != "auto":
        return parameter
    entropy = stats.entropy(np.exp(data.log_prior))
    return data.log_prior.size == 2 and trials().held_out_loss > DISCRIMINATIVE_ABOVE * entropy


def _cross_entropy_term(training, trials, data):
    """Return the :class:`CrossEntropyTerm` of ``training`` with the ``trials`` chosen before it, or None."""
    if not training.discriminative:
        return None
    category_ll = None if data.category_ll is None else torch.as_tensor(data.category_ll[training.rows])
    return CrossEntropyTerm(
        weight=training.discriminative,
        scale=trials.scale,
        log_prior=torch.as_tensor(data.log_prior, dtype=torch.float32),
        category_weight=trials.category_weight,
        category_ll=None if category_ll is None else category_ll.float(),
        timestep_probs=torch.from_numpy(scored_timesteps(data.alphas_cumprod.shape[0], training.scored)),
    )


def cached_run_plan(memory, plan, data, network, state, *, n_iter, build, tasks, threads=1):
    """Run :func:`run_plan` through ``memory`` (a ``joblib.Memory``): the same training again is looked up, not run.

    The key is all that decides what is trained: the plan but its verbosity (the rows, the
    budget, the seeds), the training data, and the network's architecture and initial
    weights. A training cut short (by Ctrl-C or a callback) is dropped from the cache.
    """
    # Hashed now: the network's weights change as it trains.
    key = joblib.hash(
        (
            dataclasses.replace(plan, verbose=0),
            [value.cpu().numpy() if isinstance(value, torch.Tensor) else value for value in data],
            str(network),
            {name: tensor.cpu().numpy() for name, tensor in network.state_dict().items()},
        )
    )
    ignored = ["plan", "data", "network", "state", "n_iter", "build", "tasks", "threads"]
    cached = memory.cache(_run_plan_keyed, ignore=ignored)
    arguments = dict(
        plan=plan, data=data, network=network, state=state, n_iter=n_iter, build=build, tasks=tasks, threads=threads
    )
    network, state, trials = cached(key, **arguments)
    if state.interrupted:
        cached.call_and_shelve(key, **arguments).clear()
    return network, state, trials


def _run_plan_keyed(key, *, plan, data, network, state, n_iter, build, tasks, threads):
    """:func:`run_plan`, cached by :func:`cached_run_plan` under ``key`` alone."""
    return run_plan(plan, data, network, state, n_iter=n_iter, build=build, tasks=tasks, threads=threads)


def _rose(state, tol, watch):
    """Return True if the held-out loss (``watch``) rose by more than ``tol`` over the last steps of a training."""
    return watch is not None and not state.interrupted and state.fall is not None and state.fall[0] < -tol


def _log_loss_rose(stretches):
    """Return True if the held-out log loss of the last stretch's trials did not fall below the one's before it."""
    return len(stretches) > 1 and not stretches[-1][0][0].held_out_loss < stretches[-2][0][0].held_out_loss


def _warn(message):
    """Warn about what a fit keeps, pointing at the caller's line (_warn, run_plan, _fit, fit, _fit_context)."""
    warnings.warn(message, UserWarning, stacklevel=6)


def _train(
    network,
    data,
    plan,
    training,
    state,
    generator,
    validation,
    callback,
    progress,
    watch=None,
    extra=0,
    term=None,
    goes_on=None,
):
    """Run :func:`train_denoiser` for one ``training`` of ``plan``, printing to ``progress``; return its state.

    ``watch``: the held-out draws whose loss says whether the first training converged and
    goes on (see :func:`train_denoiser`); a refit runs the ``extra`` steps its first
    training went on for instead. ``term``: the training's :class:`CrossEntropyTerm`, or None.
    ``goes_on``: whether the training goes on after its cosine (see :func:`train_denoiser`).
    A new network (``state`` None) with a Gaussian base has it set from the training's rows
    first (if any): the first training's never include the held-out rows that choose the trials.
    """
    if state is None and training.rows.size and isinstance(network, MLPDenoiser) and network.gaussian_base:
        rows = training.rows
        network.fit_gaussian_base(
            data.x0[rows], data.y[rows], data.alphas_cumprod, data.row_weights(rows), data.rows_mask(rows)
        )
    return train_denoiser(
        network,
        data.x0[training.rows],
        data.y[training.rows],
        alphas_cumprod=data.alphas_cumprod,
        timestep_probs=training_timestep_probs(plan.n_steps, training.scored),
        max_iter=training.max_iter,
        batch_size=plan.batch_size,
        learning_rate=training.learning_rate,
        weight_decay=plan.weight_decay,
        loss=plan.loss,
        generator=generator,
        tol=plan.tol,
        n_iter_no_change=plan.n_iter_no_change,
        validation=validation,
        state=state,
        progress=progress,
        watch=watch,
        extend_to=0 if training.afresh else training.extend_to,
        extra=extra if training.afresh else 0,
        anneal=training.anneal,
        callback=callback,
        weights=data.row_weights(training.rows),
        mask=data.rows_mask(training.rows),
        hole_rate=data.hole_rate,
        cells=data.cells,
        cross_entropy=term,
        goes_on=goes_on,
    )
