"""
Accuracy per denoiser evaluation
================================

Scoring a sample costs one denoiser evaluation per (trial, class). This page plots what
``benchmarks/evaluations.py`` measured on one trained model per data set, for four ways
of spending those evaluations:

- **naive**: the plain Monte Carlo loop: random timesteps, fresh noise for every class;
- **Li et al.**: evenly spaced timesteps, noise shared by the classes, staged top-k;
- **Clark & Jaini**: timesteps weighted by ``exp(-7 t / T)``, paired t-test pruning;
- **skdiffusion**: the default: the timestep range and error scale fitted on held-out
  data at ``fit``, shared noise in antithetic pairs, and ``pruning="t-test"``, which
  stops scoring a class once it is significantly worse than the best and a sample once
  one class is left.

Each point is the mean accuracy over five draws of the noise: on a single draw, which
test rows a procedure gets right is partly luck. Run ``python
benchmarks/evaluations.py`` to measure them again; the plot reads the recorded results,
so that this page builds in a second.
"""

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt

try:
    examples = Path(__file__).resolve().parent
except NameError:  # sphinx-gallery runs an example in its own folder, without __file__
    examples = Path.cwd()
results = examples.parent / "benchmarks" / "results" / "evaluations.json"
records = json.loads(results.read_text())["records"]
datasets = list(dict.fromkeys(r["data"] for r in records))
procedures = list(dict.fromkeys(r["procedure"] for r in records))

fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 3.8), squeeze=False)
for ax, name in zip(axes[0], datasets):
    for procedure in procedures:
        rows = [r for r in records if r["data"] == name and r["procedure"] == procedure]
        ax.plot([r["evaluations"] for r in rows], [r["accuracy"] for r in rows], "o-", label=procedure)
    ax.set(xscale="log", xlabel="denoiser evaluations per sample", title=name)
    ax.grid(alpha=0.3)
axes[0][0].set_ylabel("held-out accuracy")
axes[0][0].legend()
fig.tight_layout()
plt.show()

# %%
# The paired comparison (shared noise) is what lets few trials separate the classes;
# choosing the timesteps from held-out data matters most on the spirals, whose class
# structure is only visible at small noise; pruning matters most with many classes
# (digits), where most classes are ruled out after a few trials.
