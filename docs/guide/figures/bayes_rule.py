"""Bayes' rule: each class's scaled denoising error over the plane, and the posterior they give.

The errors come from the public methods: predict_log_proba(X) + score_samples(X)[:, None]
is log p(c) - scale_ * Error_c(x), the terms of Bayes' rule.
"""

import matplotlib.pyplot as plt
import numpy as np
from _spirals import fitted_spirals

plt.rcParams.update({"font.size": 13})

clf, X_train, X_test, y_train, y_test = fitted_spirals()

lim = 2.4
grid = np.linspace(-lim, lim, 141)
xx, yy = np.meshgrid(grid, grid)
points = np.column_stack([xx.ravel(), yy.ravel()])
log_proba = clf.predict_log_proba(points)
terms = log_proba + clf.score_samples(points)[:, None]  # log p(c) - s * Error_c(x)
scaled_error = (np.log(clf.class_prior_) - terms).reshape(*xx.shape, 2)  # s * Error_c(x)
proba = np.exp(log_proba[:, 1]).reshape(xx.shape)

fig, axes = plt.subplots(1, 3, figsize=(11.5, 4.3), layout="constrained")
top = np.percentile(scaled_error, 50)  # the valleys along the arms, not the far corners
for c, ax in enumerate(axes[:2]):
    image = ax.pcolormesh(
        xx, yy, scaled_error[:, :, c], cmap="viridis_r", vmin=np.percentile(scaled_error, 1), vmax=top, shading="auto"
    )
    ax.set_title(f"class {c}: $s \\cdot \\mathrm{{Error}}_{c}(x)$")
fig.colorbar(image, ax=axes[:2], label="scaled denoising error (low = likely)", shrink=0.9, extend="max")
mesh = axes[2].pcolormesh(xx, yy, proba, cmap="RdBu_r", vmin=0, vmax=1, shading="auto")
for label, face in ((0, "white"), (1, "black")):
    axes[2].scatter(
        *X_test[y_test == label].T, s=12, color=face, edgecolor="0.5", linewidth=0.5, label=f"test, class {label}"
    )
axes[2].set_title("Bayes' rule: $p(\\mathrm{class}\\ 1 \\mid x)$")
axes[2].legend(loc="lower right", fontsize=10, framealpha=0.9)
fig.colorbar(mesh, ax=axes[2], label="probability of class 1", shrink=0.9)
for ax in axes:
    ax.set_aspect("equal")
    ax.set_xlabel("feature 1")
    ax.set_ylabel("feature 2")
