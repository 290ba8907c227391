"""Accuracy against denoiser evaluations per sample, for four ways of scoring one trained model.

Run ``python benchmarks/evaluations.py``; it prints tables and writes
``benchmarks/results/evaluations.md``, ``.json`` and ``.png``. On each data set one
``DiffusionClassifier(random_state=0)`` is trained, and only the scoring differs:

1. naive: the plain Monte Carlo loop: t uniform at random on [0, T), fresh noise for every
   class, no pruning, the class of least mean error;
2. Li et al. (2023): evenly spaced t over [0, T), noise shared by the classes, staged
   top-k (keep half the classes after a tenth of the trials, as their CIFAR-10 setting),
   the class of least mean error;
3. Clark & Jaini (2023): evenly spaced t over [0, T) weighted by exp(-7 t / T), shared
   noise, paired t-test pruning at p < 2e-3 from 20 trials on;
4. skdiffusion's default: timesteps over the range fitted on held-out data, shared
   noise in antithetic pairs, priors and fitted scale, paired t-test pruning on the
   pairs (``pruning="t-test"``).

An evaluation is one (sample, trial, class) denoising error. Pruning is replayed with
the library's own loop (``_scoring.prune``) on errors computed once per budget, and
every procedure ranks the classes as ``predict_proba`` does (``_scoring.paired_means``):
a class kept to the end by its mean error, a class dropped early by the draws it shares
with the best kept class.

Each cell is the mean over ``--repeats`` draws of the noise (and, for the naive loop, of
its timesteps): on one draw, which test rows a procedure gets right is partly luck, and
the best of the table's 32 single draws overstated what any procedure reaches. The first
draw of skdiffusion's is the noise ``predict_proba`` uses.
"""

import argparse
import warnings

import matplotlib
import numpy as np
import torch
from _suite import RESULTS, split, write_results

from skdiffusion import DiffusionClassifier
from skdiffusion._schedule import as_tensor
from skdiffusion._scoring import (
    PairedTTest,
    StagedPruning,
    paired_means,
    prune,
    spread_order,
    timestep_grid,
    trial_draws,
    trial_errors,
    trial_noise,
)
from skdiffusion._validation import check_pruning, timestep_bounds

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BUDGETS = (2, 4, 8, 16, 32, 64, 128, 256)
PROCEDURES = ("naive", "Li et al.", "Clark & Jaini", "skdiffusion")


def errors_for(clf, X, t, eps):
    """Return every (sample, class, trial) error of ``clf``'s denoiser, shape (n, K, n_trials)."""
    return trial_errors(
        clf.denoiser_,
        torch.as_tensor(clf.scaler_.transform(X), dtype=torch.float32),
        torch.as_tensor(t),
        eps,
        clf.classes_.size,
        alphas_cumprod=as_tensor(clf.alphas_cumprod_),
        loss=clf.loss,
    ).double()


def replay(errors, rule, log_prior, scale):
    """Replay ``rule``'s pruning on precomputed errors; return the errors it scored (NaN elsewhere)."""

    def score(active, start, stop):
        part = errors[:, :, start:stop].clone()
        part[~active] = float("nan")
        return part

    n, k, n_trials = errors.shape
    return prune(score, n, k, n_trials, rule=rule, log_prior=log_prior, scale=scale)


def evaluate(procedure, clf, X, y_index, n_trials, seed=0):
    """Return (accuracy, mean evaluations per sample) of one procedure at one budget."""
    n_steps, n_classes, n_features = clf.alphas_cumprod_.size, clf.classes_.size, clf.n_features_in_
    uniform = np.zeros(n_classes)
    if procedure == "naive":
        rng = np.random.default_rng(seed)
        columns = []
        for c in range(n_classes):  # every class gets its own timesteps and noise
            t = rng.integers(0, n_steps, size=n_trials)
            eps = trial_noise(n_trials, (n_features,), seed * 1000 + c)
            columns.append(errors_for(clf, X, t, eps)[:, c])
        scored = torch.stack(columns, dim=1)
        scores = -scored.mean(dim=2)
    else:
        if procedure in ("skdiffusion", "skdiffusion, no pruning"):
            lo, hi = timestep_bounds(clf.timestep_range_, clf.n_diffusion_steps)
            t, eps = trial_draws(lo, hi, n_trials, (n_features,), clf.noise_seed_ + seed)
            rule, log_prior, scale = check_pruning(clf.pruning), np.log(clf.class_prior_), clf.scale_
            rule = rule if procedure == "skdiffusion" else None
        else:
            t = timestep_grid(0, n_steps, n_trials)[spread_order(n_trials)]
            eps = trial_noise(n_trials, (n_features,), clf.noise_seed_ + seed)
            log_prior, scale = uniform, 1.0
            if procedure == "Li et al.":
                stage = max(1, n_trials // 10)
                rule = StagedPruning([(stage, max(1, n_classes // 2))]) if n_classes > 2 and stage < n_trials else None
            else:
                rule = PairedTTest(min_trials=20, trials_per_draw=1)
        errors = errors_for(clf, X, t, eps)
        if procedure == "Clark & Jaini":
            weights = np.exp(-7 * t / n_steps)
            errors = errors * torch.as_tensor(weights / weights.mean())
        scored = errors if rule is None else replay(errors, rule, log_prior, scale)
        # As predict_proba: a class dropped early is estimated on the draws it shares with
        # the best kept class (a plain mean over fewer, other timesteps would be biased).
        scores = torch.as_tensor(log_prior) - scale * paired_means(scored)
    accuracy = float((scores.argmax(dim=1).numpy() == y_index).mean())
    return accuracy, float((~scored.isnan()).sum(dim=(1, 2)).double().mean())


def summarise(name, rows, exhaustive):
    """Return the bar checks of one data set as text lines."""
    by = {p: [r for r in rows if r["procedure"] == p] for p in PROCEDURES}
    best = max(r["accuracy"] for r in rows)
    default = next(r for r in by["skdiffusion"] if r["n_trials"] == 64)
    li_reaching = [r for r in by["Li et al."] if r["accuracy"] >= default["accuracy"]]
    li_text = (
        f"Li et al. first reach it with {li_reaching[0]['evaluations']:.0f} "
        f"({li_reaching[0]['evaluations'] / default['evaluations']:.1f}x the default's)"
        if li_reaching
        else "Li et al. never reach it within 256 trials"
    )
    return [
        f"{name}: best accuracy of any procedure {best:.3f}; skdiffusion's default (64 trials) "
        f"{default['accuracy']:.3f} ({100 * (best - default['accuracy']):.1f} points below) with "
        f"{default['evaluations']:.0f} evaluations per sample; {li_text}.",
        f"{name}: without pruning the default's 64 trials cost {exhaustive['evaluations']:.0f} evaluations "
        f"for accuracy {exhaustive['accuracy']:.3f}: pruning saves "
        f"{exhaustive['evaluations'] / default['evaluations']:.1f}x.",
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=["spirals", "digits", "breast"])
    parser.add_argument("--repeats", type=int, default=5, help="draws of the noise averaged in each cell")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    records, notes = [], []
    fig, axes = plt.subplots(1, len(args.datasets), figsize=(5 * len(args.datasets), 4), squeeze=False)
    for ax, name in zip(axes[0], args.datasets):
        X_train, X_test, y_train, y_test = split(name)
        clf = DiffusionClassifier(random_state=0).fit(X_train, y_train)
        y_index = np.searchsorted(clf.classes_, y_test)
        rows = []
        for procedure in PROCEDURES:
            for n_trials in BUDGETS:
                draws = [evaluate(procedure, clf, X_test, y_index, n_trials, seed) for seed in range(args.repeats)]
                accuracy, evaluations = np.mean(draws, axis=0)
                rows.append(
                    {
                        "data": name,
                        "procedure": procedure,
                        "n_trials": n_trials,
                        "evaluations": float(evaluations),
                        "accuracy": float(accuracy),
                        "accuracy_per_draw": [a for a, _ in draws],
                    }
                )
            shown = [r for r in rows if r["procedure"] == procedure]
            ax.plot([r["evaluations"] for r in shown], [r["accuracy"] for r in shown], "o-", label=procedure)
            print(name, procedure, " ".join(f"{r['evaluations']:.0f}:{r['accuracy']:.3f}" for r in shown), flush=True)
        draws = [evaluate("skdiffusion, no pruning", clf, X_test, y_index, 64, seed) for seed in range(args.repeats)]
        exhaustive = dict(zip(("accuracy", "evaluations"), np.mean(draws, axis=0)))
        notes += summarise(name, rows, exhaustive)
        records += rows
        ax.set(xscale="log", xlabel="denoiser evaluations per sample", ylabel="held-out accuracy", title=name)
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / "evaluations.png", dpi=100)

    lines = ["| data | procedure | " + " | ".join(f"{b} trials" for b in BUDGETS) + " |"]
    lines.append("|---" * (len(BUDGETS) + 2) + "|")
    for name in args.datasets:
        for procedure in PROCEDURES:
            cells = [r for r in records if r["data"] == name and r["procedure"] == procedure]
            lines.append(
                f"| {name} | {procedure} | "
                + " | ".join(f"{r['accuracy']:.3f} ({r['evaluations']:.0f})" for r in cells)
                + " |"
            )
    header = f"accuracy (evaluations per sample), each the mean of {args.repeats} draws of the noise"
    table = header + "\n\n" + "\n".join(lines) + "\n\n" + "\n".join(notes)
    print(table)
    write_results("evaluations", table, {"records": records, "notes": notes})


if __name__ == "__main__":
    main()
