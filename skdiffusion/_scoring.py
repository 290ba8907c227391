"""The Monte Carlo error loop: shared ``(t, eps)`` draws in antithetic pairs, every class's denoising error."""

import functools

import numpy as np
import torch
from scipy import stats

from ._compute import ceil_div, report_progress
from ._denoisers import MLPDenoiser, rows_within, scoring_passes, without_autograd
from ._losses import difference_loss, per_sample_loss
from ._schedule import noise_terms, noised

# (sample, trial, class) evaluations per denoiser call, for a denoiser that does not set
# its own eval_batch_size (MLPDenoiser does, from its width). A model's calls have the
# same number of rows, call_rows(...) (the last block is padded; the default network's,
# one of a few multiples of it), so float32 GEMM results do not depend on how many rows
# were passed or which rows stand beside a sample (on MKL's kernels, given rows in
# multiples of CALL_ROW_MULTIPLE, and on oneDNN's).
# Not more: pruning scores ever fewer pairs, and padding is then wasted work; and the
# all-class intermediates of a larger block (rows x classes x width floats) were freed back
# to the kernel after every call, which doubled digits' predict time in page faults.
EVAL_BLOCK = 1024
# (sample, trial, class) evaluations per chunk of samples: bounds the memory of
# predict_proba (16 MiB of errors a thread), and makes a chunk long enough that the padding
# of its pruning stages' last calls costs little and that they grow (see
# MLPDenoiser.scoring_rows): at 2**18, digits' pruned predictions were 1.3x slower with the
# shared calls of 400 rows that eval_batch_size now makes, and at 2**20, with the calls
# that grow, 50 classes' took 1.11 to 1.15 times as long as without pruning (0.99 at 2**22).
CHUNK_PAIRS = 1 << 22


# A thread's piece of the rows to score holds at least this many scoring calls' worth of
# (sample, trial) pairs for every stage of pruning: each stage ends on a padded call, and
# on smaller pieces two threads took longer than one (benchmarks/speed.py times both).
PIECE_CALLS = 6


def piece_rows(denoiser, n_trials, n_classes, pruning=None):
    """Return the fewest rows worth a thread of their own when scoring: see ``PIECE_CALLS``."""
    pairs = call_rows(denoiser, n_classes if hasattr(denoiser, "forward_all") else 1)
    stages = 1 if pruning is None else len(pruning.checkpoints(n_trials)) + 1
    return max(1, ceil_div(PIECE_CALLS * stages * pairs, n_trials))


def chunk_rows(n_trials, n_classes):
    """Return the samples of a chunk: ``CHUNK_PAIRS`` (sample, trial, class) evaluations, at least one sample."""
    return max(1, CHUNK_PAIRS // (n_trials * n_classes))


def timestep_grid(t_min, t_max, n_trials):
    """Return ``n_trials`` evenly spaced timesteps in ``[t_min, t_max)``, as Li et al. (2023)."""
    width = (t_max - t_min) / n_trials
    return (t_min + (np.arange(n_trials) + 0.5) * width).astype(np.int64)


def trial_noise(n_trials, sample_shape, seed):
    """Return the noise shared by every sample and class: shape (n_trials, *sample_shape)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn((n_trials, *sample_shape), generator=generator)


def trial_draws(t_min, t_max, n_trials, sample_shape, seed):
    """Return the trials' timesteps and noise, ``(t, eps)``: shapes (n_trials,) and (n_trials, *sample_shape).

    Trials come in antithetic pairs (antithetic variates, Hammersley & Morton, 1956):
    trials ``2k`` and ``2k + 1`` share one timestep and take noise ``eps`` and ``-eps``.
    Between two classes, the leading term of the error difference,
    ``-2 eps . (eps_a - eps_b)``, is odd in ``eps``, and a pair cancels it, which
    narrows the Monte Carlo spread of the log-probabilities at equal trials. The pairs'
    timesteps are Li et al.'s evenly spaced
    grid (:func:`timestep_grid`) in :func:`spread_order`, so every prefix of pairs spreads
    over the range. An odd ``n_trials`` ends with half a pair.
    """
    n_pairs = ceil_div(n_trials, 2)
    t = np.repeat(timestep_grid(t_min, t_max, n_pairs)[spread_order(n_pairs)], 2)[:n_trials]
    eps = trial_noise(n_pairs, sample_shape, seed)
    return t, torch.stack([eps, -eps], dim=1).flatten(0, 1)[:n_trials]


def spread_order(n_trials):
    """Return an order of ``range(n_trials)`` whose every prefix is spread evenly over it.

    The radical inverse in base 2 (van der Corput) of ``0, 1, 2, ...`` fills [0, 1) ever
    more finely; evenly spaced timesteps taken in this order keep each stage of pruning a
    stratified sample of the whole range.
    """
    n_bits = max(1, int(np.ceil(np.log2(n_trials))))
    k = np.arange(1 << n_bits)
    radical_inverse = sum(((k >> b) & 1) << (n_bits - 1 - b) for b in range(n_bits)) / (1 << n_bits)
    order = np.floor(radical_inverse * n_trials).astype(np.int64)
    return order[np.sort(np.unique(order, return_index=True)[1])]


def block_rows(n_classes):
    """Return the rows of every denoiser call that scores ``n_classes`` classes at once.

    A multiple of ``CALL_ROW_MULTIPLE``, at least one: a row's result can depend on how
    many rows a call has (with torch 2.13's CPU kernels here, calls of 1 to 3 rows round
    differently from larger ones, by ~1e-7) and on where it falls in them (see
    ``_denoisers.CALL_ROW_MULTIPLE``), and one fixed, round size keeps every call on one path.
    """
    return rows_within(EVAL_BLOCK // n_classes)


def call_rows(denoiser, n_classes, pairs=0):
    """Return the rows of each call scoring ``pairs`` (sample, trial) pairs: ``eval_batch_size``, or block_rows.

    ``n_classes`` is the number of classes one call scores: all of them with
    ``forward_all``, one without. A large model scoring few (sample, trial) pairs at a
    time sets its own rows, or it would mostly evaluate the padding of ``block_rows(1)``.
    The default network's calls grow with ``pairs`` (see :meth:`MLPDenoiser.scoring_rows`).
    """
    if type(denoiser) is MLPDenoiser:
        return denoiser.scoring_rows(pairs)
    return getattr(denoiser, "eval_batch_size", None) or block_rows(n_classes)


def _blocks(x0, t, eps, rows, alphas_cumprod, block, mask=None):
    """Yield the (row, trial) pairs of ``rows`` x all trials, row-major, in blocks of exactly ``block``.

    Yields ``(x_t, t_block, trial, mask_block, row)``: the noisy samples, their timesteps,
    their trials' indices (``eps.index_select(0, trial)`` is their noise), the rows' masks
    (None without ``mask``) and the rows' indices in ``x0``; the last block is padded with
    copies of the last pair. The losses of all blocks, concatenated and cut to
    ``rows.numel() * n_trials``, reshape to (rows, trials). A block makes few calls into
    torch, where scoring threads wait for each other (see :class:`~skdiffusion._denoisers.Prepared`).
    """
    n_trials = t.shape[0]
    n_pairs = rows.numel() * n_trials
    if n_pairs == 0:
        return
    pairs = torch.arange(ceil_div(n_pairs, block) * block, device=x0.device).clamp_(max=n_pairs - 1)
    signal, noise = noise_terms(eps, t, alphas_cumprod, x0.ndim)  # each trial's, gathered per block
    # index_select: 2.5x faster than x0[row] here
    for k, block_rows in zip((pairs % n_trials).split(block), rows[pairs // n_trials].split(block)):
        mask_block = None if mask is None else mask.index_select(0, block_rows)
        x_t = noised(x0.index_select(0, block_rows), signal.index_select(0, k), noise.index_select(0, k), mask_block)
        yield x_t, t.index_select(0, k), k, mask_block, block_rows


@without_autograd
def trial_errors(denoiser, x0, t, eps, n_classes, *, alphas_cumprod, loss, active=None, mask=None):
    """Return the denoising loss of every (sample, class, trial), shape (n, n_classes, n_trials).

    Trial ``k`` noises every sample with ``eps[k]`` at timestep ``t[k]`` and asks the
    denoiser for that noise under each class: the comparison between classes is paired.
    Only the (sample, class) pairs where ``active`` (shape (n, n_classes)) is True are
    scored; the others hold NaN. ``mask`` (of ``x0``'s shape) keeps each sample's diffused
    elements: the others are neither noised nor scored.
    """
    n_samples, n_trials, device = x0.shape[0], t.shape[0], x0.device
    errors = torch.full((n_samples, n_classes, n_trials), float("nan"), device=device)
    if active is None:
        active = torch.ones((n_samples, n_classes), dtype=torch.bool, device=device)
    forward_all, forward_pairs, difference_all = scoring_passes(denoiser, t)
    if forward_all is not None:  # the class-independent part of the network runs once
        rows = active.any(dim=1).nonzero().squeeze(1)
        block = call_rows(denoiser, n_classes, rows.numel() * n_trials)
        # Each trial's noise, repeated for every class, gathered per block: subtracting a
        # broadcast eps from few features is 2x slower (spirals' 2 classes of 2). The
        # repeats are made once, when they are no more than one block's predictions. Every
        # block gathers into the same memory, and its errors are computed in its
        # predictions' (forward_all's result is the block's own): a megabyte or so each,
        # which new tensors would take in fresh pages.
        target = eps.unsqueeze(1).expand(n_trials, n_classes, *eps.shape[1:])
        target = target.contiguous() if n_trials <= block and difference_all is None else target
        gathered = None
        # Only once pruning has dropped classes may a block score its kept pairs alone; a
        # network whose read-out alone tells the classes apart scores every class of its
        # rows at once anyway (see MLPDenoiser.forward_pairs), by difference_all.
        forward_pairs = None if active.all() or difference_all is not None else forward_pairs
        losses = []
        for x_t, t_b, k, m, r in _blocks(x0, t, eps, rows, alphas_cumprod, block, mask):
            kept = None if forward_pairs is None else active.index_select(0, r)
            # With half the block's classes dropped, the class-conditioned part then costs a
            # share of the block's (both ways agree bit for bit).
            if kept is not None and 2 * kept.sum() <= kept.numel():
                losses.append(_pair_losses(forward_pairs, x_t, t_b, eps.index_select(0, k), m, kept, loss))
                continue
            mask_all = None if m is None else m.unsqueeze(1)
            if difference_all is not None:  # the noise taken off before the classes part
                difference = difference_all(x_t, t_b, eps=eps.index_select(0, k))
                losses.append(difference_loss(loss, difference, sample_ndim=eps.ndim - 1, mask=mask_all))
                continue
            eps_hat = forward_all(x_t, t_b)
            gathered = target.index_select(0, k) if gathered is None else torch.index_select(target, 0, k, out=gathered)
            losses.append(
                per_sample_loss(loss, eps_hat, gathered, sample_ndim=eps.ndim - 1, mask=mask_all, overwrite=True)
            )
        if losses:
            scored = torch.cat(losses)[: rows.numel() * n_trials].view(rows.numel(), n_trials, n_classes)
            errors[rows] = _reported(scored.transpose(1, 2))
        errors[~active] = float("nan")
        return errors
    block = call_rows(denoiser, 1)
    for c in range(n_classes):
        label = torch.full((block,), c, dtype=torch.long, device=device)
        rows = active[:, c].nonzero().squeeze(1)
        blocks = _blocks(x0, t, eps, rows, alphas_cumprod, block, mask)
        losses = [
            per_sample_loss(loss, denoiser(x_t, t_b, label), eps.index_select(0, k), mask=m)
            for x_t, t_b, k, m, _ in blocks
        ]
        if losses:
            errors[rows, c] = _reported(torch.cat(losses)[: rows.numel() * n_trials].view(rows.numel(), n_trials))
    return errors


def _pair_losses(forward_pairs, x_t, t, eps, mask, kept, loss):
    """Return the losses of a block's (row, class) pairs where ``kept``, NaN elsewhere: shape ``kept.shape``."""
    rows, classes = kept.nonzero(as_tuple=True)
    eps_hat = forward_pairs(x_t, t, rows, classes)
    mask = None if mask is None else mask.index_select(0, rows)
    losses = torch.full(kept.shape, float("nan"), device=x_t.device)
    losses[rows, classes] = per_sample_loss(loss, eps_hat, eps.index_select(0, rows), mask=mask).to(losses.dtype)
    return losses


def _reported(loss):
    """Turn a denoiser's NaN into inf, in place: NaN in the error tensor means "not scored"."""
    return loss.nan_to_num_(nan=float("inf"), posinf=float("inf"))


def _whole(number):
    """Return ``number`` as an int if it is a whole number (an int, or a float such as 8.0); else raise a ValueError."""
    if isinstance(number, (bool, np.bool_)) or not isinstance(number, (int, np.integer, float, np.floating)):
        raise ValueError(f"{number!r} is not a whole number")
    if isinstance(number, (float, np.floating)) and not float(number).is_integer():  # 1.5, inf, nan
        raise ValueError(f"{number!r} is not a whole number")
    return int(number)


class StagedPruning:
    """Keep the ``kept`` best classes after ``trials`` trials, for each stage: Li et al. (2023).

    ``stages`` is a sequence of ``(trials, kept)`` pairs, e.g. ``((50, 500), (100, 50),
    (500, 10))`` for ImageNet's 1000 classes, as Li et al. do with 1000 trials in all.
    Classes are ranked by their posterior score. An even ``trials`` ends a stage between
    the antithetic pairs of :func:`trial_draws`; an odd one leaves a dropped class half a
    pair, whose noise does not cancel.
    """

    def __init__(self, stages):
        self.stages = tuple((_whole(trials), _whole(kept)) for trials, kept in stages)
        if not self.stages or min(min(stage) for stage in self.stages) < 1:
            raise ValueError(f"every stage needs trials >= 1 and kept >= 1, got {stages!r}")

    def checkpoints(self, n_trials):
        return [trials for trials, _ in self.stages if 0 < trials < n_trials]

    def keep(self, errors, active, log_prior, scale):
        kept = dict(self.stages)[errors.shape[2]]
        rows, classes = active.nonzero(as_tuple=True)
        scores = _scores(active.shape, rows, classes, errors[rows, classes].double().mean(dim=1), log_prior, scale)
        best = scores.topk(min(kept, scores.shape[1]), dim=1).indices
        return active & torch.zeros_like(active).scatter_(1, best, True)


class PairedTTest:
    """Drop a class once it is worse than the best at one-sided p < ``alpha``: Clark & Jaini (2023).

    From ``min_trials`` trials on, at checkpoints that grow by half (16, 24, 36, 54, ...),
    each class still in the running is compared with the best one by a paired Student
    t-test on their errors (shared draws make the pairs), the priors shifting the
    threshold. Fewer, growing checks keep the scoring calls large. The test's samples are
    the means of ``trials_per_draw`` consecutive trials: 2 for the antithetic pairs of
    :func:`trial_draws`, whose means are independent where the two trials of a pair are
    not; checkpoints fall between draws. The first check comes after 8 pairs: a row
    settled there takes its probabilities from those trials alone, and with the first
    check after 4 pairs the log loss of the real-table panel rose, for fewer evaluations
    (``benchmarks/results/first_check.md``).
    """

    def __init__(self, alpha=2e-3, min_trials=16, trials_per_draw=2):
        self.alpha, self.min_trials, self.trials_per_draw = alpha, min_trials, trials_per_draw

    def checkpoints(self, n_trials):
        per_draw = self.trials_per_draw
        draws = [max(2, ceil_div(self.min_trials, per_draw))]  # a t-test needs 2 samples
        while draws[-1] + draws[-1] // 2 < n_trials // per_draw:
            draws.append(draws[-1] + draws[-1] // 2)
        return [per_draw * k for k in draws if per_draw * k < n_trials]

    def keep(self, errors, active, log_prior, scale):
        # Only the pairs still in the running are tested, a few percent of them after the
        # first checks: at 50 classes, testing every pair cost what pruning saved.
        n_rows, n_classes = active.shape
        rows, classes = active.nonzero(as_tuple=True)
        per_draw = self.trials_per_draw
        n_draws = errors.shape[2] // per_draw
        trials = errors[:, :, : n_draws * per_draw].flatten(0, 1)  # (row * n_classes + class, trial)

        def draws(pairs):
            """The means of each pair's draws (``per_draw`` trials each): a sum of slices, as
            a mean over a last dimension of 2 is slow."""
            picked = trials.index_select(0, pairs)
            return (sum(picked[:, j::per_draw] for j in range(per_draw)) / per_draw).double()

        own = draws(rows * n_classes + classes)
        best = _scores(active.shape, rows, classes, own.mean(dim=1), log_prior, scale).argmax(dim=1)
        diff = own - draws(torch.arange(n_rows, device=errors.device) * n_classes + best).index_select(0, rows)
        # Worse than the best once the mean error difference exceeds the prior's head start;
        # a difference without spread (stderr 0) is worse as soon as it is positive.
        excess = diff.mean(dim=1)
        log_prior = torch.as_tensor(log_prior, dtype=torch.float64, device=errors.device)
        stderr = ((diff - excess.unsqueeze(1)).square_().sum(dim=1) / ((n_draws - 1) * n_draws)).sqrt_()
        excess -= (log_prior[classes] - log_prior[best].index_select(0, rows)) / scale
        worse = excess > _t_quantile(1 - self.alpha, n_draws - 1) * stderr
        kept = active.clone()
        kept[rows[worse], classes[worse]] = False
        return kept


@functools.cache
def _t_quantile(p, dof):
    """Return Student's t quantile ``p`` at ``dof`` degrees of freedom: scipy's, once per pair.

    A prediction asks for the same few at every chunk's checks, and scipy's ``ppf`` took
    90 microseconds a call: 40% of a check on a few hundred rows of few classes.
    """
    return float(stats.t.ppf(p, dof))


def _scores(shape, rows, classes, means, log_prior, scale):
    """Return ``log p(c) - scale * mean error`` of each (sample, class) of ``shape``, -inf out of the running.

    The pairs in the running, ``(rows[i], classes[i])``, have mean errors ``means[i]``.
    """
    log_prior = torch.as_tensor(log_prior, dtype=torch.float64, device=means.device)
    scores = torch.full(shape, -np.inf, dtype=torch.float64, device=means.device)
    scores[rows, classes] = log_prior[classes] - scale * means
    return scores


def prune(score, n_samples, n_classes, n_trials, *, rule, log_prior, scale, device="cpu", calls=None):
    """Score trials stage by stage, dropping classes at ``rule``'s checkpoints.

    ``score(active, start, stop)`` returns the errors of trials ``start:stop`` for the
    (sample, class) pairs where ``active`` is True, NaN elsewhere. A sample left with a
    single class is settled and is not scored any further. Returns the errors of all
    trials, shape (n_samples, n_classes, n_trials), NaN where a pair was not scored.

    ``calls(active, n)``, if given, counts the network calls that scoring ``n`` trials of
    the pairs where ``active`` takes. A stage takes one call at least, padded: once the
    trials left fit in no more calls than the stages left, they are scored at once and the
    remaining checks applied afterwards, which drops the same classes at the same
    checkpoints (a few rows are scored in one call instead of one per stage).
    """
    active = torch.ones((n_samples, n_classes), dtype=torch.bool, device=device)
    errors = torch.empty((n_samples, n_classes, n_trials), device=device)
    stops = [*rule.checkpoints(n_trials), n_trials]
    start = scored = 0
    for stage, stop in enumerate(stops):
        if scored < stop:
            at_once = calls is not None and calls(active, n_trials - start) <= len(stops) - stage
            scored = n_trials if at_once else stop
            errors[:, :, start:scored] = score(active, start, scored)
        if stop < n_trials:
            active = rule.keep(errors[:, :, :stop], active, log_prior, scale)
            active &= (active.sum(dim=1) > 1).unsqueeze(1)
            if scored > stop:  # scored ahead: what the check dropped was not scored after it
                errors[:, :, stop:].masked_fill_(~active.unsqueeze(2), float("nan"))
        start = stop
    return errors


def scoring_calls(denoiser, active, n_trials):
    """Return the calls of ``denoiser`` that :func:`trial_errors` makes to score ``n_trials`` trials of ``active``."""
    if hasattr(denoiser, "forward_all"):
        pairs = int(active.any(dim=1).sum()) * n_trials
        return ceil_div(pairs, call_rows(denoiser, active.shape[1], pairs))
    block = call_rows(denoiser, 1)
    return sum(ceil_div(rows * n_trials, block) for rows in active.sum(dim=0).tolist())


def paired_means(errors):
    """Return each (sample, class)'s mean error, shape (n, n_classes), float64.

    ``errors`` (shape (n, n_classes, n_trials), NaN where not scored) hold, for each
    (sample, class), the errors of a prefix of the trials: all of them, or those before
    pruning dropped the class. A class's mean over its own prefix would set its draws
    against other draws of the classes that stayed; instead, each sample's reference class
    (of the classes scored on the most trials, the one of least mean error) anchors the
    estimate::

        mean_c = mean over c's trials of (e_c - e_ref) + mean over ref's trials of e_ref

    The difference is paired on shared draws, so its noise is small; for a class scored on
    as many trials as the reference, this is its plain mean.
    """
    counts = (~errors.isnan()).sum(dim=2)
    sums = errors.nansum(dim=2, dtype=torch.float64)
    means = sums / counts
    ref = means.masked_fill(counts < counts.max(dim=1, keepdim=True).values, np.inf).argmin(dim=1)
    rows = torch.arange(errors.shape[0], device=errors.device)
    # Over c's trials, the sum of e_c - e_ref is c's sum less the reference's running sum
    # at c's count: one pass over the errors instead of a paired difference of them all.
    ref_sums = errors[rows, ref].double().cumsum(dim=1).gather(1, (counts - 1).clamp_(min=0))
    return (sums - ref_sums) / counts + means[rows, ref].unsqueeze(1)


def mean_errors(
    denoiser,
    x0,
    t,
    eps,
    n_classes,
    *,
    alphas_cumprod,
    loss,
    pruning=None,
    log_prior=None,
    scale=None,
    verbose=0,
    mask=None,
):
    """Return each (sample, class)'s mean error and the evaluations its estimate rests on.

    Returns ``(errors, n_evaluations)`` of shapes (n, n_classes), float64, and (n,): a
    class dropped by ``pruning`` is estimated by :func:`paired_means`, and the
    evaluations count the trials of each class until it was dropped (trials that
    :func:`prune` scored ahead of its checks are not counted after them). Samples are scored
    in chunks, so memory stays bounded whatever ``len(x0)``; ``x0`` (and ``mask``, see
    :func:`trial_errors`) may stay on the CPU and move to the denoiser's device a chunk
    at a time.
    """
    n_samples, n_trials = x0.shape[0], t.shape[0]
    chunk = chunk_rows(n_trials, n_classes)
    errors = np.empty((n_samples, n_classes))
    n_evaluations = np.empty(n_samples, dtype=np.int64)
    for start in range(0, n_samples, chunk):
        x_chunk = x0[start : start + chunk].to(t.device)
        mask_chunk = None if mask is None else mask[start : start + chunk].to(t.device)

        def score(active, first, last, x_chunk=x_chunk, mask_chunk=mask_chunk):
            return trial_errors(
                denoiser,
                x_chunk,
                t[first:last],
                eps[first:last],
                n_classes,
                alphas_cumprod=alphas_cumprod,
                loss=loss,
                active=active,
                mask=mask_chunk,
            )

        if pruning is None:
            e = score(None, 0, n_trials)
        else:
            e = prune(
                score,
                x_chunk.shape[0],
                n_classes,
                n_trials,
                rule=pruning,
                log_prior=log_prior,
                scale=scale,
                device=t.device,
                calls=functools.partial(scoring_calls, denoiser),
            )
        errors[start : start + chunk] = paired_means(e).cpu().numpy()
        n_evaluations[start : start + chunk] = (~e.isnan()).sum(dim=(1, 2)).cpu().numpy()
        # One line per tenth of the rows: 200,000 rows of 2 features make 98 chunks.
        if verbose and n_samples > chunk:
            report_progress(start, min(start + chunk, n_samples), n_samples)
    return errors, n_evaluations
