"""
Tuning the number of trials with GridSearchCV
=============================================

``n_trials``, the number of Monte Carlo draws of ``(t, eps)`` per sample, trades the
time of ``predict_proba`` against the variance of its estimate. It is an ordinary
parameter, so :class:`~sklearn.model_selection.GridSearchCV` can choose it by
cross-validation. The grid search also records the time it spent scoring each
candidate, so one search gives both curves: accuracy and prediction time against the
number of trials.
"""

# %%
# Data and search
# ---------------
# 1000 points on two spirals, 30% held out. ``n_trials`` only changes prediction, so with
# a ``memory`` (here a temporary folder) the classifier trains once per fold and reuses
# that network for all eight candidates: 3 trainings and the refit on all 700 points,
# not 25.
import tempfile

from sklearn.model_selection import GridSearchCV, train_test_split

from skdiffusion import DiffusionClassifier
from skdiffusion.datasets import make_spirals

X, y = make_spirals(n_samples=1000, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)

trials = [1, 2, 4, 8, 16, 32, 64, 128]
with tempfile.TemporaryDirectory() as cache:
    search = GridSearchCV(DiffusionClassifier(random_state=0, memory=cache), {"n_trials": trials}, cv=3)
    search.fit(X_train, y_train)
print(f"Best: {search.best_params_}, cross-validated accuracy {search.best_score_:.3f}")
print(f"Held-out accuracy of the refitted best model: {search.score(X_test, y_test):.3f}")
print(f"Fit time per candidate and fold: {search.cv_results_['mean_fit_time'].round(2)} s")

# %%
# Accuracy and prediction time against trials
# -------------------------------------------
# ``cv_results_["mean_score_time"]`` is the time to score one validation fold (about
# 233 points), shown here per point. It includes ``score``'s overhead.
import matplotlib.pyplot as plt
import numpy as np

results = search.cv_results_
n_scored = len(y_train) / 3
fig, (acc_ax, time_ax) = plt.subplots(1, 2, figsize=(10, 4))
acc_ax.errorbar(trials, results["mean_test_score"], yerr=results["std_test_score"], fmt="o-")
acc_ax.set(xscale="log", xlabel="n_trials", ylabel="cross-validated accuracy", title="Accuracy")
time_ax.plot(trials, 1e6 * np.asarray(results["mean_score_time"]) / n_scored, "o-")
time_ax.set(xscale="log", ylim=(0, None), xlabel="n_trials", ylabel="µs per point", title="Prediction time")
for ax in (acc_ax, time_ax):
    ax.set_xticks(trials, [str(n) for n in trials])
    ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %%
# One or two trials are too few: they are one timestep (an antithetic pair of noises),
# and the arms of the spirals are told apart only at small noise. From four on the
# accuracy is within a point or two of its best, and from 16 on the differences are
# within the spread of the folds. The time
# grows with the trials, but ever more slowly: with the default ``pruning="t-test"``, a
# point whose two classes a paired t-test tells apart (at checks after 16, 24, 36, ...
# trials) is settled and not scored any further, so only the points near the boundary
# pay for all the trials. At few trials a fixed cost per call dominates.
