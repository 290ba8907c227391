"""The Monte Carlo error loop: timestep grid, shared noise, batch invariance, chunking."""

import functools

import numpy as np
import pytest
import torch
from torch import nn

from skdiffusion import MLPDenoiser, _scoring
from skdiffusion._sampling import ancestral_sample
from skdiffusion._schedule import as_tensor, make_alphas_cumprod
from skdiffusion._scoring import (
    PairedTTest,
    StagedPruning,
    mean_errors,
    paired_means,
    prune,
    spread_order,
    timestep_grid,
    trial_draws,
    trial_errors,
    trial_noise,
)

ALPHAS_CUMPROD = as_tensor(make_alphas_cumprod("linear", 1000))


class _Zero(nn.Module):
    def forward(self, x_t, t, y):
        return torch.zeros_like(x_t)


def _random_mlp(n_features, n_classes, seed=0):
    """An MLP denoiser with every weight drawn at random (a fresh one predicts zero)."""
    torch.manual_seed(seed)
    denoiser = MLPDenoiser(n_features, n_classes, hidden_size=32)
    with torch.no_grad():
        for p in denoiser.parameters():
            p.normal_(std=0.2)
    return denoiser.eval()


def _errors(denoiser, x0, n_trials=16, n_classes=3, seed=0, **kwargs):
    t = torch.as_tensor(timestep_grid(0, 1000, n_trials))
    eps = trial_noise(n_trials, x0.shape[1:], seed)
    return mean_errors(denoiser, x0, t, eps, n_classes, alphas_cumprod=ALPHAS_CUMPROD, loss="l2", **kwargs)[0]


def test_timestep_grid_is_li_et_al_grid():
    # Li et al. (2023): range(T // n // 2, T, T // n).
    np.testing.assert_array_equal(timestep_grid(0, 1000, 10), np.arange(50, 1000, 100))
    np.testing.assert_array_equal(timestep_grid(0, 1000, 1000), np.arange(1000))
    np.testing.assert_array_equal(timestep_grid(0, 1000, 1), [500])
    assert timestep_grid(0, 1000, 10).dtype == np.int64


@pytest.mark.parametrize(
    "t_min, t_max, n_trials", [(0, 1000, 32), (0, 100, 7), (200, 600, 40), (0.0, 500.0, 16), (0, 10, 25)]
)
def test_timestep_grid_is_evenly_spaced_in_range(t_min, t_max, n_trials):
    t = timestep_grid(t_min, t_max, n_trials)
    assert t.shape == (n_trials,)
    assert t.min() >= t_min and t.max() < t_max
    assert np.all(np.diff(t) >= 0)
    # Evenly spaced up to the rounding down to integers.
    exact = t_min + (np.arange(n_trials) + 0.5) * (t_max - t_min) / n_trials
    assert np.all((exact - t >= 0) & (exact - t < 1))


def test_trial_noise_is_seeded_standard_normal():
    eps = trial_noise(4096, (3,), seed=7)
    assert eps.shape == (4096, 3)
    assert eps.dtype == torch.float32
    assert torch.equal(eps, trial_noise(4096, (3,), seed=7))
    assert not torch.equal(eps, trial_noise(4096, (3,), seed=8))
    assert abs(eps.mean().item()) < 0.05
    assert abs(eps.std().item() - 1) < 0.05
    assert trial_noise(2, (1, 4, 4), seed=0).shape == (2, 1, 4, 4)


@pytest.mark.parametrize("n_trials", [1, 2, 7, 64])
def test_trial_draws_are_antithetic_pairs_on_a_spread_grid(n_trials):
    t, eps = trial_draws(100, 500, n_trials, (3,), seed=4)
    n_pairs = (n_trials + 1) // 2
    assert t.shape == (n_trials,) and eps.shape == (n_trials, 3)
    # Pair k: the k-th timestep of the spread pair grid, noise eps_k and -eps_k.
    grid = timestep_grid(100, 500, n_pairs)[spread_order(n_pairs)]
    np.testing.assert_array_equal(t, np.repeat(grid, 2)[:n_trials])
    torch.testing.assert_close(eps[0::2], trial_noise(n_pairs, (3,), seed=4), rtol=0, atol=0)
    torch.testing.assert_close(eps[1::2], -eps[0::2][: n_trials // 2], rtol=0, atol=0)
    assert torch.equal(trial_draws(100, 500, n_trials, (3,), seed=4)[1], eps)


class _LinearClassBias(nn.Module):
    """eps_hat = x_t W + b_c: linear in x_t, the class entering as a bias."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.weight = torch.randn(2, 2, generator=generator) * 0.5
        self.bias = torch.randn(3, 2, generator=generator)

    def forward(self, x_t, t, y):
        return x_t @ self.weight + self.bias[y]


def test_an_antithetic_pair_cancels_the_noise_in_a_class_difference():
    # With eps_hat linear in x_t and the class a bias, e_a - e_b is linear in eps, so a
    # pair's mean difference is its value at eps = 0: no Monte Carlo noise at all.
    denoiser, x0 = _LinearClassBias(), torch.randn(4, 2)
    t, eps = trial_draws(0, 1000, 16, (2,), seed=0)
    t = torch.as_tensor(t)
    errors = trial_errors(denoiser, x0, t, eps, 3, alphas_cumprod=ALPHAS_CUMPROD, loss="l2").double()
    at_zero = trial_errors(denoiser, x0, t, torch.zeros_like(eps), 3, alphas_cumprod=ALPHAS_CUMPROD, loss="l2")
    difference, difference_at_zero = errors[:, 1:] - errors[:, :1], (at_zero[:, 1:] - at_zero[:, :1]).double()
    pair_means = difference.unflatten(2, (8, 2)).mean(dim=3)
    torch.testing.assert_close(pair_means, difference_at_zero[:, :, ::2], rtol=0, atol=1e-5)
    # Each trial alone does carry noise.
    assert (difference - difference_at_zero).abs().max() > 0.1


def test_every_class_and_row_sees_the_same_noise():
    # With eps_hat = 0 the l2 error of trial k is mean(eps[k] ** 2), whatever the row,
    # its class or its timestep: equal errors show the draws are shared.
    n_trials = 12
    x0 = torch.randn(5, 3)
    t = torch.as_tensor(timestep_grid(0, 1000, n_trials))
    eps = trial_noise(n_trials, (3,), seed=0)
    errors = trial_errors(_Zero(), x0, t, eps, 4, alphas_cumprod=ALPHAS_CUMPROD, loss="l2")
    assert errors.shape == (5, 4, n_trials)
    assert torch.equal(errors, errors[:1, :1].expand(5, 4, n_trials))
    torch.testing.assert_close(errors[0, 0], eps.square().mean(dim=1))
    # ... and the mean over trials is the mean of those.
    mean, _ = mean_errors(_Zero(), x0, t, eps, 4, alphas_cumprod=ALPHAS_CUMPROD, loss="l2")
    np.testing.assert_allclose(mean, eps.square().mean().item(), rtol=1e-6)


def test_identical_rows_get_bit_identical_errors():
    # One sample repeated lands at every position of an evaluation block: its errors must
    # not depend on the position.
    denoiser = _random_mlp(2, 3)
    x0 = torch.tensor([[0.3, -1.2]]).repeat(300, 1)
    errors = _errors(denoiser, x0)
    assert np.unique(errors, axis=0).shape == (1, 3)
    assert len(np.unique(errors[0])) == 3  # the classes do differ


def test_a_row_does_not_depend_on_other_rows_or_their_order():
    denoiser = _random_mlp(3, 3)
    x0 = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    full = _errors(denoiser, x0)
    perm = np.random.default_rng(0).permutation(200)
    np.testing.assert_array_equal(_errors(denoiser, x0[perm]), full[perm])
    np.testing.assert_array_equal(_errors(denoiser, x0[:7]), full[:7])
    np.testing.assert_array_equal(_errors(denoiser, x0[199:]), full[199:])
    singles = np.concatenate([_errors(denoiser, x0[i : i + 1]) for i in range(0, 200, 37)])
    np.testing.assert_array_equal(singles, full[::37])


@pytest.mark.parametrize("chunk_pairs, eval_block", [(40, None), (1, None), (80, 64), (100, 32), (1, 16)])
def test_chunk_and_block_boundaries_do_not_change_results(monkeypatch, chunk_pairs, eval_block):
    denoiser = _random_mlp(3, 4)
    x0 = torch.randn(21, 3, generator=torch.Generator().manual_seed(1))
    expected = _errors(denoiser, x0, n_classes=4)
    monkeypatch.setattr(_scoring, "CHUNK_PAIRS", chunk_pairs)
    if eval_block is not None:
        monkeypatch.setattr(_scoring, "EVAL_BLOCK", eval_block)
    np.testing.assert_array_equal(_errors(denoiser, x0, n_classes=4), expected)


def test_mean_errors_reports_chunks_when_verbose(monkeypatch, capsys):
    monkeypatch.setattr(_scoring, "CHUNK_PAIRS", 16 * 3 * 10)  # 10 samples of 16 trials x 3 classes
    _errors(_Zero(), torch.zeros(25, 2), verbose=1)
    assert capsys.readouterr().out.splitlines() == [
        "predict: 10/25 samples",
        "predict: 20/25 samples",
        "predict: 25/25 samples",
    ]


def test_mean_errors_is_the_mean_over_trials_and_counts_every_evaluation():
    denoiser = _random_mlp(2, 2)
    x0 = torch.randn(4, 2)
    t = torch.as_tensor(timestep_grid(0, 1000, 8))
    eps = trial_noise(8, (2,), 0)
    per_trial = trial_errors(denoiser, x0, t, eps, 2, alphas_cumprod=ALPHAS_CUMPROD, loss="l1").double()
    mean, n_evaluations = mean_errors(denoiser, x0, t, eps, 2, alphas_cumprod=ALPHAS_CUMPROD, loss="l1")
    np.testing.assert_allclose(mean, per_trial.mean(dim=2).numpy(), rtol=1e-12)
    assert mean.dtype == np.float64
    np.testing.assert_array_equal(n_evaluations, [16, 16, 16, 16])  # 8 trials x 2 classes


# Pruning ---------------------------------------------------------------------------------


def test_spread_order_is_a_permutation_whose_prefixes_are_spread():
    for n in (1, 2, 7, 16, 32, 100):
        order = spread_order(n)
        assert sorted(order.tolist()) == list(range(n))
    np.testing.assert_array_equal(spread_order(8), [0, 4, 2, 6, 1, 5, 3, 7])
    # Every prefix of 2**k of a 32-trial order has one trial in each of 2**k equal bins.
    order = spread_order(32)
    for k in range(6):
        bins = order[: 2**k] // (32 // 2**k)
        assert sorted(bins.tolist()) == list(range(2**k))


class _ClassBias(nn.Module):
    """Predicts eps exactly for class 0 and with an error growing with the class index."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x_t, t, y):
        self.calls.append(int(y[0]))
        return torch.zeros_like(x_t) + y.unsqueeze(1).to(x_t)


def _pruned(rule, n_classes=4, n_trials=16, n_samples=3):
    x0 = torch.zeros(n_samples, 2)
    t = torch.as_tensor(timestep_grid(0, 1000, n_trials))
    eps = torch.zeros(n_trials, 2)
    eps[::2] = 0.1  # the errors vary a little from trial to trial
    denoiser = _ClassBias()
    log_prior = np.log(np.full(n_classes, 1 / n_classes))
    score = _stage_scorer(denoiser, x0, t, eps, n_classes)
    return prune(score, n_samples, n_classes, n_trials, rule=rule, log_prior=log_prior, scale=1.0), denoiser.calls


def _stage_scorer(denoiser, x0, t, eps, n_classes, stages=None):
    """Return prune's ``score(active, start, stop)``, by trial_errors; each (start, stop) goes to ``stages``."""

    def score(active, start, stop):
        if stages is not None:
            stages.append((start, stop))
        return trial_errors(
            denoiser,
            x0,
            t[start:stop],
            eps[start:stop],
            n_classes,
            alphas_cumprod=ALPHAS_CUMPROD,
            loss="l2",
            active=active,
        )

    return score


def test_staged_pruning_keeps_the_best_classes_at_each_stage():
    errors, calls = _pruned(StagedPruning([(4, 2), (8, 1)]))
    scored = ~errors.isnan()
    # Trials 0-3: all 4 classes; trials 4-7: the best 2 (classes 0 and 1); then the sample
    # is settled on class 0 and scored no further.
    assert scored[:, :, :4].all()
    assert scored[:, :2, 4:8].all() and not scored[:, 2:, 4:].any()
    assert not scored[:, :, 8:].any()
    # A denoiser without forward_all is called only for the classes still in the running.
    assert calls == [0, 1, 2, 3, 0, 1]


@pytest.mark.parametrize("rule", [PairedTTest(alpha=0.05, min_trials=4), StagedPruning([(4, 3), (8, 2)])])
def test_pruning_that_scores_ahead_drops_the_same_classes_with_the_same_errors(rule):
    # Once the trials left fit in no more calls than the stages left, prune scores them at
    # once and applies the remaining checks afterwards: the same NaN, the same errors.
    denoiser, n_classes, n_trials = _random_mlp(2, 4), 4, 32
    x0 = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    t, eps = trial_draws(0, 1000, n_trials, (2,), seed=0)
    stages = []
    score = _stage_scorer(denoiser, x0, torch.as_tensor(t), eps, n_classes, stages)
    kwargs = dict(rule=rule, log_prior=np.log(np.full(n_classes, 1 / n_classes)), scale=20.0)
    staged = prune(score, 40, n_classes, n_trials, **kwargs)
    assert len(stages) == len(rule.checkpoints(n_trials)) + 1
    scored = (~staged.isnan()).sum(dim=2)
    assert (scored < n_trials).any() and (scored == n_trials).any()  # some pairs dropped, some not
    for calls in (lambda active, n: 0, functools.partial(_scoring.scoring_calls, denoiser)):
        stages.clear()
        ahead = prune(score, 40, n_classes, n_trials, **kwargs, calls=calls)
        assert torch.equal(ahead.isnan(), staged.isnan())
        assert torch.equal(ahead.nan_to_num(), staged.nan_to_num())
    assert stages == [(0, n_trials)]  # 40 rows x 32 trials fit in one call of the network


def test_grown_scoring_calls_give_each_row_the_same_bits(monkeypatch):
    # 600 rows x 64 trials fill 8 calls of 4 x 1,008 rows: a quarter as many calls, each
    # row's errors the same bits as in calls of 1,008 rows.
    from skdiffusion import _denoisers

    monkeypatch.setattr(_denoisers, "_MKL_PRODUCTS", True)
    monkeypatch.setattr(_denoisers, "_ONEDNN_LINEAR", None)
    monkeypatch.setattr(MLPDenoiser, "eval_batch_size", property(lambda self: 1008))
    mlp, sizes = _random_mlp(2, 3), []
    forward_all = MLPDenoiser._forward_all
    monkeypatch.setattr(
        MLPDenoiser,
        "_forward_all",
        lambda self, x_t, *a, **k: sizes.append(len(x_t)) or forward_all(self, x_t, *a, **k),
    )
    x0, t, eps = torch.randn(600, 2), torch.as_tensor(timestep_grid(0, 1000, 64)), trial_noise(64, (2,), 0)
    grown = trial_errors(mlp, x0, t, eps, 3, alphas_cumprod=ALPHAS_CUMPROD, loss="l2")
    assert sizes == [4032] * 10  # 38,400 pairs
    assert _scoring.scoring_calls(mlp, torch.ones(600, 3, dtype=torch.bool), 64) == 10
    sizes.clear()
    monkeypatch.setattr(_denoisers, "CALL_GROWTH", 1)
    assert torch.equal(trial_errors(mlp, x0, t, eps, 3, alphas_cumprod=ALPHAS_CUMPROD, loss="l2"), grown)
    assert sizes == [1008] * 39


def test_scoring_calls_counts_the_calls_of_trial_errors():
    mlp, per_class = _random_mlp(2, 3), _ClassBias()
    active = torch.tensor([[True, False, True]] * 5 + [[False] * 3] * 2)
    calls = _scoring.call_rows(mlp, 3)
    assert _scoring.scoring_calls(mlp, active, calls) == 5  # 5 rows of any class, one call per trial's worth
    assert _scoring.scoring_calls(mlp, active, 1) == 1
    # One class at a time: classes 0 and 2 have 5 rows each.
    block = _scoring.call_rows(per_class, 1)
    assert _scoring.scoring_calls(per_class, active, block) == 10
    x0 = torch.zeros(7, 2)
    t, eps = torch.full((block,), 10), torch.zeros(block, 2)
    trial_errors(per_class, x0, t, eps, 3, alphas_cumprod=ALPHAS_CUMPROD, loss="l2", active=active)
    assert len(per_class.calls) == 10


def test_paired_t_test_checks_between_antithetic_pairs():
    assert PairedTTest().checkpoints(64) == [16, 24, 36, 54]
    assert PairedTTest().checkpoints(16) == []  # no check before the last trial
    assert PairedTTest(trials_per_draw=1).checkpoints(64) == [16, 24, 36, 54]
    assert PairedTTest(min_trials=8).checkpoints(64) == [8, 12, 18, 26, 38, 56]
    assert PairedTTest(min_trials=8, trials_per_draw=1).checkpoints(64) == [8, 12, 18, 27, 40, 60]
    # At least two pairs (or trials) before the first test, and never fewer trials than min_trials.
    assert PairedTTest(min_trials=9).checkpoints(64)[0] == 10
    assert PairedTTest(min_trials=1).checkpoints(10) == [4, 6, 8]
    assert PairedTTest(min_trials=1, trials_per_draw=1).checkpoints(10) == [2, 3, 4, 6, 9]


def test_paired_t_test_on_antithetic_pairs_tests_the_pair_means():
    # Class 1 is worse than class 0 by 1.0, 1.1, 0.9, 1.0 on four pairs (t = 24.5 on 3
    # degrees of freedom, p < 1e-4); within each pair the two trials differ by +-5.
    pair_excess = torch.tensor([1.0, 1.1, 0.9, 1.0]).repeat_interleave(2)
    errors = torch.zeros(1, 2, 8)
    errors[0, 1] = pair_excess + 5 * torch.tensor([1.0, -1.0]).repeat(4)
    active = torch.ones(1, 2, dtype=torch.bool)
    log_prior = np.log([0.5, 0.5])
    assert PairedTTest(alpha=1e-3).keep(errors, active, log_prior, 1.0).tolist() == [[True, False]]
    # Taken as 8 independent trials, the spread of +-5 hides the excess (t = 0.5).
    assert PairedTTest(alpha=1e-3, trials_per_draw=1).keep(errors, active, log_prior, 1.0).all()


@pytest.mark.parametrize("trials_per_draw", [1, 2])
def test_paired_t_test_drops_only_classes_that_are_significantly_worse(trials_per_draw):
    errors, _ = _pruned(PairedTTest(alpha=1e-3, min_trials=4, trials_per_draw=trials_per_draw))
    scored = ~errors.isnan()
    # The other classes' errors exceed class 0's by a constant plus a little noise, which
    # a pair (noise 0.1, then 0) averages away: all dropped at the first check, which
    # settles every sample after 4 trials.
    assert scored[:, :, :4].all()
    assert not scored[:, :, 4:].any()
    # With identical classes the differences have zero variance and nothing is dropped.
    errors = torch.zeros(2, 3, 8)
    active = torch.ones(2, 3, dtype=torch.bool)
    assert PairedTTest(min_trials=4).keep(errors, active, np.log([1 / 3] * 3), 1.0).all()


def test_paired_t_test_agrees_with_scipy_on_the_pairs_in_the_running():
    # Each class still in the running against its row's best (highest prior plus lowest
    # mean error), a one-sided paired t-test on the means of the antithetic pairs: dropped
    # exactly where scipy's p-value is below alpha. Pairs out of the running hold NaN, as
    # prune leaves them, and stay out.
    from scipy import stats

    rng = np.random.default_rng(0)
    n_rows, n_classes, n_trials, alpha, scale = 40, 6, 12, 0.05, 2.0
    errors = torch.tensor(
        rng.normal(1.0, 0.3, (n_rows, n_classes, n_trials)) + rng.normal(0, 0.1, (n_rows, n_classes, 1))
    )
    errors = errors.float()
    active = torch.tensor(rng.random((n_rows, n_classes)) < 0.7)
    active[:, 0] = True
    errors[~active] = float("nan")
    log_prior = np.log(rng.dirichlet(np.ones(n_classes)))
    kept = PairedTTest(alpha=alpha, min_trials=4).keep(errors, active, log_prior, scale)
    draws = errors.double().unflatten(2, (-1, 2)).mean(dim=3).numpy()
    checked = 0
    for i in range(n_rows):
        classes = np.flatnonzero(active[i].numpy())
        best = classes[np.argmax(log_prior[classes] - scale * draws[i, classes].mean(axis=1))]
        assert kept[i, best]
        for c in set(classes) - {best}:
            diff = draws[i, c] - draws[i, best] - (log_prior[c] - log_prior[best]) / scale
            p = stats.ttest_1samp(diff, 0.0, alternative="greater").pvalue
            assert bool(kept[i, c]) == (p >= alpha), (i, c, p)
            checked += 1
    assert not kept[~active].any()
    assert 0 < int((active & ~kept).sum()) < checked  # some dropped, some kept


def test_paired_means_anchor_a_pruned_class_on_the_reference_class():
    nan = float("nan")
    errors = torch.tensor(
        [
            [[1.0, 3.0, 5.0, 7.0], [3.0, 5.0, nan, nan], [2.0, 2.0, 4.0, 4.0]],
            # Settled after 2 trials: no class has all 4; the reference is the best of those with 2.
            [[1.0, 2.0, nan, nan], [4.0, 6.0, nan, nan], [9.0, nan, nan, nan]],
        ]
    )
    # Row 0: the reference is class 2 (mean 3 < 4). Class 1 is 2 above it on their 2
    # shared trials (its plain mean would be 4); class 0, scored on all 4, keeps its mean.
    # Row 1: the reference is class 0 (mean 1.5); class 2 is 8 above it on trial 0.
    expected = [[4.0, 2.0 + 3.0, 3.0], [1.5, 3.5 + 1.5, 8.0 + 1.5]]
    np.testing.assert_array_equal(paired_means(errors).numpy(), expected)
    assert paired_means(errors).dtype == torch.float64


def test_paired_means_of_fully_scored_classes_are_plain_means():
    errors = torch.randn(4, 3, 8)
    np.testing.assert_allclose(paired_means(errors).numpy(), errors.double().mean(dim=2).numpy(), rtol=1e-12)


def test_a_pruned_class_is_estimated_from_its_trials_paired_with_the_best_kept_class():
    denoiser = _random_mlp(2, 3)
    x0 = torch.randn(5, 2)
    t = torch.as_tensor(timestep_grid(0, 1000, 8))
    eps = trial_noise(8, (2,), 0)
    full = trial_errors(denoiser, x0, t, eps, 3, alphas_cumprod=ALPHAS_CUMPROD, loss="l2").double()

    def staged(stages):
        return mean_errors(
            denoiser,
            x0,
            t,
            eps,
            3,
            alphas_cumprod=ALPHAS_CUMPROD,
            loss="l2",
            pruning=StagedPruning(stages),
            log_prior=np.log([1 / 3] * 3),
            scale=1.0,
        )

    mean, n_evaluations = staged([(4, 1)])
    # One class kept after 4 trials settles the sample: every class has 4 trials, and keeps their mean.
    np.testing.assert_allclose(mean, full[:, :, :4].mean(dim=2).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(n_evaluations, [3 * 4] * 5)
    mean, n_evaluations = staged([(4, 2), (6, 1)])
    np.testing.assert_array_equal(n_evaluations, [3 * 4 + 2 * 2] * 5)  # settled after 6 trials
    kept = full[:, :, :4].mean(dim=2).topk(2, dim=1, largest=False).indices
    for row in range(5):
        dropped = ({0, 1, 2} - set(kept[row].tolist())).pop()
        ref = min(kept[row].tolist(), key=lambda c: full[row, c, :6].mean().item())
        paired = (full[row, dropped, :4] - full[row, ref, :4]).mean() + full[row, ref, :6].mean()
        assert mean[row, dropped] == pytest.approx(paired.item(), rel=1e-6)
        for c in kept[row].tolist():
            assert mean[row, c] == pytest.approx(full[row, c, :6].mean().item(), rel=1e-6)


class _Rows(nn.Module):
    """Wraps a denoiser and sets the rows of its scoring calls."""

    def __init__(self, denoiser, eval_batch_size, all_classes):
        super().__init__()
        self.denoiser, self.eval_batch_size = denoiser, eval_batch_size
        if all_classes:
            self.forward_all = denoiser.forward_all

    def forward(self, x_t, t, y):
        return self.denoiser(x_t, t, y)


@pytest.mark.parametrize("all_classes", [True, False])
@pytest.mark.parametrize("rows", [16, 4])
def test_trial_errors_matches_a_direct_computation(all_classes, rows):
    # 7 samples x 5 trials in calls of 16 (or 4, fewer than the trials) rows, the last
    # padded; one sample's classes are all inactive, another has one class left.
    denoiser = _Rows(_random_mlp(2, 3), rows, all_classes)
    x0 = torch.randn(7, 2)
    t = torch.tensor([10, 500, 990, 3, 250])
    eps = trial_noise(5, (2,), 0)
    active = torch.ones((7, 3), dtype=torch.bool)
    active[2], active[4, :2] = False, False
    errors = trial_errors(denoiser, x0, t, eps, 3, alphas_cumprod=ALPHAS_CUMPROD, loss="l2", active=active)
    abar = ALPHAS_CUMPROD[t][:, None]
    expected = torch.empty((7, 3, 5))
    with torch.no_grad():
        for i in range(7):
            x_t = abar.sqrt() * x0[i] + (1 - abar).sqrt() * eps
            for c in range(3):
                eps_hat = denoiser.denoiser(x_t, t, torch.full((5,), c))
                expected[i, c] = (eps_hat - eps).square().mean(dim=1)
    expected[~active] = float("nan")
    torch.testing.assert_close(errors, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


class _Caching(nn.Module):
    """A network that keeps a tensor made in its forward pass and trains on it later, as a user's may."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.kept = None

    def forward(self, x_t, t, y):
        if self.kept is None:
            self.kept = torch.ones(x_t.shape[1])
        return self.scale * x_t * self.kept


def test_the_default_network_scores_and_samples_in_inference_mode_to_the_same_bits_others_without_autograd():
    x0, t, eps = torch.randn(40, 2), torch.as_tensor(timestep_grid(0, 1000, 6)), trial_noise(6, (2,), 0)
    arguments = dict(alphas_cumprod=ALPHAS_CUMPROD, loss="l2")
    mlp = _random_mlp(2, 3)
    seen = []
    mlp.blocks[0][1].register_forward_pre_hook(lambda module, inputs: seen.append(torch.is_inference_mode_enabled()))
    errors = trial_errors(mlp, x0, t, eps, 3, **arguments)
    assert seen and not any(seen)  # a hooked network is a user's: no inference mode
    mlp = _random_mlp(2, 3)
    errors = trial_errors(mlp, x0, t, eps, 3, **arguments)
    under_no_grad = torch.no_grad()(trial_errors.__wrapped__)(mlp, x0, t, eps, 3, **arguments)
    assert errors.is_inference() and not under_no_grad.is_inference()
    torch.testing.assert_close(errors, under_no_grad, rtol=0, atol=0, equal_nan=True)
    # Sampling likewise: the same draws.
    schedule = make_alphas_cumprod("linear", 20)
    drawn = [
        sample(mlp, torch.arange(6) % 3, (2,), alphas_cumprod=schedule, generator=torch.Generator().manual_seed(0))
        for sample in (ancestral_sample, torch.no_grad()(ancestral_sample.__wrapped__))
    ]
    assert drawn[0].is_inference()
    torch.testing.assert_close(drawn[0], drawn[1], rtol=0, atol=0)
    # A network of the user's scores under no_grad, and trains afterwards on what it kept.
    caching = _Caching()
    assert not trial_errors(caching, x0, t, eps, 3, **arguments).is_inference()
    (caching(x0, t[:1].expand(40), None) ** 2).mean().backward()
    assert caching.scale.grad is not None


def test_scoring_reads_the_default_networks_weights_once_per_piece_with_the_same_bits(monkeypatch):
    # 40 samples x 64 trials in calls of 48 rows: 54 calls (and the pruned pairs' calls),
    # one Prepared for all of them; each row's errors are those of forward_all called alone.
    from skdiffusion import _denoisers

    mlp = _random_mlp(2, 3)
    monkeypatch.setattr(MLPDenoiser, "eval_batch_size", property(lambda self: 48))
    made, prepared = [], _denoisers.Prepared.__init__
    monkeypatch.setattr(_denoisers.Prepared, "__init__", lambda *a, **k: made.append(1) or prepared(*a, **k))
    x0, t, eps = torch.randn(40, 2), torch.as_tensor(timestep_grid(0, 1000, 64)), trial_noise(64, (2,), 0)
    errors = trial_errors(mlp, x0, t, eps, 3, alphas_cumprod=ALPHAS_CUMPROD, loss="l2")
    assert len(made) == 1
    with torch.inference_mode():
        for i in (0, 17, 39):
            x_t = ALPHAS_CUMPROD[t][:, None].sqrt() * x0[i] + (1 - ALPHAS_CUMPROD[t][:, None]).sqrt() * eps
            eps_hat = torch.cat([mlp.forward_all(x_t[j : j + 48], t[j : j + 48]) for j in range(0, 64, 48)])
            expected = (eps_hat - eps.unsqueeze(1)).square().mean(-1).T
            assert torch.equal(errors[i], expected)


def test_each_forward_pass_and_each_scoring_prepares_the_weights_of_the_moment():
    # Weights changed in place, as fit's optimizer changes them: the next pass and the next
    # scoring's Prepared (its time table made again) compute with the new ones.
    from skdiffusion._denoisers import Prepared

    mlp = _random_mlp(2, 3)
    x_t, t = torch.randn(16, 2), torch.randint(0, 1000, (16,))
    with torch.inference_mode():
        before = mlp.forward_all(x_t, t)
    with torch.no_grad():
        for p in mlp.parameters():
            p.mul_(1.5)
    with torch.inference_mode():
        after = mlp.forward_all(x_t, t)
        assert (after - before).abs().max() > 0.1
        assert torch.equal(mlp._forward_all(x_t, t, Prepared(mlp, t)), after)
    with torch.enable_grad():  # autograd's path, to float rounding
        torch.testing.assert_close(mlp.forward_all(x_t, t).detach(), after, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
def test_a_read_out_alone_scores_with_the_noise_taken_off_first_as_after(loss, monkeypatch):
    # A network whose read-out alone tells the classes apart: scoring takes each row's noise
    # off before every class's read-out is added (difference_all). The errors are those of
    # the noise taken off every class's prediction, to rounding, with missing values masked
    # out and classes dropped by pruning too.
    torch.manual_seed(0)
    net = MLPDenoiser(3, 12, hidden_size=32, class_readout=4, class_embedding=False)
    nn.init.normal_(net.output[1].weight), nn.init.normal_(net.readout[1].weight)
    x0, t, eps = torch.randn(40, 3), torch.randint(0, 1000, (8,)), torch.randn(8, 3)
    mask = (torch.rand(40, 3) > 0.2).float()
    active = torch.rand(40, 12) > 0.3
    arguments = dict(alphas_cumprod=ALPHAS_CUMPROD, loss=loss, mask=mask, active=active)
    first = trial_errors(net, x0, t, eps, 12, **arguments)
    passes = _scoring.scoring_passes
    monkeypatch.setattr(_scoring, "scoring_passes", lambda denoiser, t: (*passes(denoiser, t)[:2], None))
    after = trial_errors(net, x0, t, eps, 12, **arguments)
    assert torch.equal(first.isnan(), ~active.unsqueeze(2).expand_as(first))
    torch.testing.assert_close(first, after, rtol=1e-5, atol=1e-5, equal_nan=True)
