"""Denoising errors per class: a fitted model's error against the timestep, under the true and a wrong class.

Uses the fitted network through the denoiser contract, eps_hat = denoiser_(x_t, t, y),
on the standardised test rows; each point of a curve is the mean squared error over
64 noise draws.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from _spirals import fitted_spirals

plt.rcParams.update({"font.size": 13})

clf, X_train, X_test, y_train, y_test = fitted_spirals()

x0 = torch.as_tensor(clf.scaler_.transform(X_test), dtype=torch.float32)
alphas_cumprod = torch.as_tensor(clf.alphas_cumprod_, dtype=torch.float32)
timesteps = np.unique(np.geomspace(1, 999, 40).astype(int))
generator = torch.Generator().manual_seed(0)
n_draws = 64


@torch.no_grad()
def errors_at(t, label):
    """Mean squared error of every test row at timestep t under class ``label``, over n_draws noises."""
    eps = torch.randn((n_draws, *x0.shape), generator=generator)
    abar = alphas_cumprod[t]
    x_t = (abar.sqrt() * x0 + (1 - abar).sqrt() * eps).reshape(-1, x0.shape[1])
    t_rows = torch.full((x_t.shape[0],), int(t))
    eps_hat = clf.denoiser_(x_t, t_rows, torch.full_like(t_rows, label))
    return (eps_hat - eps.reshape(-1, x0.shape[1])).square().mean(dim=1).reshape(n_draws, -1).mean(dim=0).numpy()


# errors[c][k, i]: row i of the test set, timestep k, under class c. On one torch thread,
# as the classifier scores: faster when other work shares the cores.
threads = torch.get_num_threads()
torch.set_num_threads(1)
try:
    errors = [np.stack([errors_at(t, c) for t in timesteps]) for c in (0, 1)]
finally:
    torch.set_num_threads(threads)
rows = np.arange(y_test.size)
true = np.where(y_test == 0, errors[0], errors[1])
wrong = np.where(y_test == 0, errors[1], errors[0])

hi = clf.timestep_range_[1] * clf.n_diffusion_steps
fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.4), layout="constrained")
one = int(np.flatnonzero(y_test == 0)[0])
curves = {
    "One test point": (true[:, one], wrong[:, one]),
    f"Mean over {y_test.size} test points": (true.mean(axis=1), wrong.mean(axis=1)),
}
for ax, (title, (under_true, under_wrong)) in zip(axes, curves.items()):
    ax.axvspan(1, hi, color="0.88", zorder=0, label=f"timesteps scored (t < {hi:.0f})")
    ax.plot(timesteps, under_true, color="tab:blue", lw=2.5, label="under the true class")
    ax.plot(timesteps, under_wrong, color="tab:red", lw=2.5, ls="--", label="under the wrong class")
    ax.set_title(title)
    ax.set_xscale("log")
    ax.set_xlim(1, 999)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("timestep t (log scale)")
    ax.set_ylabel("denoising error (MSE)")
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(
    [handles[i] for i in (1, 2, 0)],
    [labels[i] for i in (1, 2, 0)],
    loc="outside upper center",
    ncol=3,
    fontsize=12,
    frameon=False,
)
