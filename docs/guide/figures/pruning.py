"""Pruning: how many classes are still scored as the trials of predict_proba accumulate (digits, 10 classes).

Replays the scoring of predict_proba with the package's own pieces (the trials' draws,
the paired t-test and the loop that drops classes between stages), recording which
classes each stage scores.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skdiffusion import DiffusionClassifier
from skdiffusion._scoring import PairedTTest, paired_means, prune, trial_draws, trial_errors

plt.rcParams.update({"font.size": 13})

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=300, random_state=0, stratify=y)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # 400 steps, shorter than the default: a quicker build
    clf = DiffusionClassifier(max_iter=400, random_state=0).fit(X_train, y_train)

x0 = torch.as_tensor(clf.scaler_.transform(X_test), dtype=torch.float32)
lo, hi = clf.timestep_range_
t, eps = trial_draws(
    lo * clf.n_diffusion_steps, hi * clf.n_diffusion_steps, clf.n_trials, (x0.shape[1],), clf.noise_seed_
)
t = torch.as_tensor(t)
alphas_cumprod = torch.as_tensor(clf.alphas_cumprod_, dtype=torch.float32)
n_classes, log_prior = clf.classes_.size, np.log(clf.class_prior_)
stages = []  # (first trial, last trial, classes scored per test row)


def score(active, start, stop):
    stages.append((start, stop, active.sum(dim=1).numpy()))
    return trial_errors(
        clf.denoiser_,
        x0,
        t[start:stop],
        eps[start:stop],
        n_classes,
        alphas_cumprod=alphas_cumprod,
        loss=clf.loss,
        active=active,
    )


# On one torch thread, as the classifier scores: faster when other work shares the cores.
threads = torch.get_num_threads()
torch.set_num_threads(1)
try:
    errors = prune(
        score, x0.shape[0], n_classes, clf.n_trials, rule=PairedTTest(), log_prior=log_prior, scale=clf.scale_
    )
finally:
    torch.set_num_threads(threads)
# Classes dropped early are estimated from their trials, paired with a class scored on all of them.
accuracy = np.mean(clf.classes_[(log_prior - clf.scale_ * paired_means(errors).numpy()).argmax(axis=1)] == y_test)

# Classes scored during each trial, per test row: shape (n_trials, n_rows). A row left
# with one class is settled: it is scored no further, and that class is its answer.
scored = np.concatenate([np.tile(kept, (stop - start, 1)) for start, stop, kept in stages])
in_running = np.maximum(scored, 1)
trials = np.arange(1, clf.n_trials + 1)
evaluations = scored.cumsum(axis=0)

fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.1), layout="constrained")
ax = axes[0]
for row in range(0, y_test.size, 15):
    ax.step(
        trials, in_running[:, row] + np.random.default_rng(row).uniform(-0.15, 0.15), where="post", color="0.6", lw=1
    )
ax.step(trials, in_running.mean(axis=1), where="post", color="tab:blue", lw=3, label="mean over test rows")
ax.plot([], [], color="0.6", lw=1, label="single test rows")
ax.plot([], [], color="k", ls=":", lw=0.8, label="t-test checks")
for start, _, _ in stages[1:]:
    ax.axvline(start + 0.5, color="k", ls=":", lw=0.8)
ax.set_xlabel("trials so far")
ax.set_ylabel("classes still in the running")
ax.set_ylim(0, n_classes + 0.5)
ax.set_xlim(1, clf.n_trials)
ax.set_title("Classes dropped by the paired t-test")
ax.legend(loc="upper right", fontsize=11)

ax = axes[1]
pruned = evaluations.mean(axis=1)
ax.plot(trials, n_classes * trials, color="tab:red", lw=2.5, ls="--", label="no pruning")
ax.plot(trials, pruned, color="tab:blue", lw=2.5, label="t-test pruning (default)")
ax.annotate(
    f"{n_classes * clf.n_trials}",
    (clf.n_trials, n_classes * clf.n_trials),
    xytext=(-8, 2),
    textcoords="offset points",
    ha="right",
    va="bottom",
    color="tab:red",
)
ax.annotate(
    f"{pruned[-1]:.0f} (accuracy {accuracy:.3f})",
    (clf.n_trials, pruned[-1]),
    xytext=(-6, 8),
    textcoords="offset points",
    ha="right",
    va="bottom",
    color="tab:blue",
)
ax.set_xlabel("trials so far")
ax.set_ylabel("network evaluations per row")
ax.set_xlim(1, clf.n_trials)
ax.set_ylim(0, 1.12 * n_classes * clf.n_trials)
ax.set_title("Evaluations spent, on average")
ax.legend(loc="upper left", fontsize=11)
