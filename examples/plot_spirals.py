"""
Two spirals: classify, generate, draw the boundary
==================================================

A class-conditional diffusion model learns how each class's points look; Bayes' rule
on its denoising errors turns it into a classifier. This example fits
:class:`~skdiffusion.DiffusionClassifier` to two interlaced spirals, a classic toy
problem of diffusion models, and shows the three things the fitted model gives: held-out accuracy,
new samples of each class, and class probabilities over the plane.

``python -m skdiffusion`` runs the same demo and writes the figure to ``spirals.png``.
"""

# %%
# Data
# ----
# :func:`~skdiffusion.datasets.make_spirals` draws 1000 points on each arm; 30% are held
# out, stratified by class.
from sklearn.model_selection import train_test_split

from skdiffusion.datasets import make_spirals

X, y = make_spirals(n_samples=2000, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)

# %%
# Fit and score
# -------------
# ``fit`` standardises the features and trains a conditional denoiser
# ``eps_theta(x_t, t, y)`` to predict the noise added to a training point. ``predict``
# noises each point at ``n_trials / 2`` evenly spaced timesteps, twice each with opposite
# noises, the same for both classes, and picks the class whose denoiser explains the noise best. The defaults
# are used unchanged; ``random_state`` fixes the weights and the Monte Carlo noise.
from skdiffusion import DiffusionClassifier

clf = DiffusionClassifier(random_state=0).fit(X_train, y_train)
print(f"Held-out accuracy on {len(y_test)} points: {clf.score(X_test, y_test):.3f}")

# %%
# Samples and decision boundary
# -----------------------------
# The classifier is a generative model, so it can draw new points of a chosen class:
# ``clf.sample(500, y=0, random_state=0)`` runs DDPM's ancestral sampler conditioned on
# class 0. The right panel is
# ``DecisionBoundaryDisplay.from_estimator(clf, X, response_method="predict_proba")``:
# the probability of class 1 on a 100 x 100 grid, with the held-out points on top.
#
# The figure is drawn by ``plot_demo`` of ``skdiffusion/__main__.py``, the code behind
# ``python -m skdiffusion``, so that the demo and this page cannot drift apart.
from skdiffusion.__main__ import plot_demo

fig = plot_demo(clf, X, y, X_test, y_test, random_state=0)

# %%
# The samples follow both arms, including the tight turns near the centre, and the
# probabilities change from red to blue between neighbouring arms. Far from the data
# the model has seen nothing, and its probabilities there mean little.
