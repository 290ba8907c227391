"""The forward process: two spirals, standardised, noised to a few timesteps.

x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, with DDPM's linear schedule of 1,000
steps (the classifier's default); every point keeps one noise draw across the panels.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.preprocessing import StandardScaler

from skdiffusion.datasets import make_spirals

plt.rcParams.update({"font.size": 13})

X, y = make_spirals(n_samples=1000, random_state=0)
x0 = StandardScaler().fit_transform(X)
eps = np.random.default_rng(0).standard_normal(x0.shape)

# DDPM's linear schedule (noise_schedule="linear", n_diffusion_steps=1000).
betas = np.linspace(1e-4, 0.02, 1000)
alphas_cumprod = np.cumprod(1 - betas)

timesteps = [0, 30, 100, 300, 999]
fig, axes = plt.subplots(1, len(timesteps), figsize=(11, 3.4), sharex=True, sharey=True, layout="constrained")
for ax, t in zip(axes, timesteps):
    abar = alphas_cumprod[t]
    x_t = np.sqrt(abar) * x0 + np.sqrt(1 - abar) * eps
    for label, colour in ((0, "tab:blue"), (1, "tab:orange")):
        ax.scatter(*x_t[y == label].T, s=4, color=colour, label=f"class {label}")
    ax.set_title(f"t = {t}\nnoise sd {np.sqrt(1 - abar):.2f}")
    ax.set_xlabel("feature 1")
    ax.set_aspect("equal")
axes[0].set_ylabel("feature 2")
axes[0].set_xlim(-3.2, 3.2)
axes[0].set_ylim(-3.2, 3.2)
axes[-1].legend(loc="lower right", markerscale=4, fontsize=11, framealpha=0.9)
