"""
Likelihoods: spotting digits the model has never seen
=====================================================

A generative classifier models how each class's samples are distributed, so besides
``p(class | x)`` it can say how likely ``x`` is at all. :meth:`~skdiffusion.DiffusionClassifier.score_samples`
mixes the class-conditional log-likelihood estimates by Bayes' rule,
``log p(x) = logsumexp_c(log p(c) + log p(x | c))``, up to a constant shared by all
samples: a score for ranking samples and flagging outliers, not a normalised density.

This example fits :class:`~skdiffusion.DiffusionClassifier` on the handwritten digits 0
to 4 only, then asks how well its likelihood separates held-out digits 0 to 4 from the
digits 5 to 9, which it has never seen, and from images of uniform noise.
"""

# %%
# Data
# ----
# The 8 x 8 digits of scikit-learn, 64 features with values 0 to 16. The digits 0 to 4
# are split 70/30 into training and held-out samples; the digits 5 to 9 are all unseen.
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

X, y = load_digits(return_X_y=True)
known = y < 5
X_train, X_test, y_train, y_test = train_test_split(
    X[known], y[known], test_size=0.3, random_state=0, stratify=y[known]
)
X_unseen = X[~known]
X_noise = np.random.default_rng(0).uniform(0, 16, size=(300, 64))

# %%
# Fit, and score every sample
# ---------------------------
# Early stopping on the held-out denoising loss ends the training once it stops
# improving (about 900 steps here), so no step count needs tuning. Pruning stops scoring
# the classes that cannot win the argmax, but a likelihood sums over all the classes, so
# they are all scored here on every trial (``pruning=None``, which leaves ``predict``
# as it was and costs about twice the evaluations on these data).
from skdiffusion import DiffusionClassifier

clf = DiffusionClassifier(early_stopping=True, max_iter=3000, random_state=0).fit(X_train, y_train)
print(f"Held-out accuracy on the digits 0-4: {clf.score(X_test, y_test):.3f}")
clf.set_params(pruning=None)
scores = {
    "held-out digits 0-4": clf.score_samples(X_test),
    "unseen digits 5-9": clf.score_samples(X_unseen),
    "uniform noise": clf.score_samples(X_noise),
}

# %%
# How well does the likelihood separate them?
# -------------------------------------------
# The area under the ROC curve (AUROC) of the score, held-out digits 0-4 counting as the
# positives: 1 is a perfect separation, 0.5 a coin toss. For comparison, the usual
# baseline of a classifier, its confidence ``max_c p(c | x)``, which needs no density
# (Hendrycks & Gimpel, 2017).
from sklearn.metrics import roc_auc_score


def auroc(inside, outside):
    """AUROC of scores meant to be higher inside than outside."""
    labels = np.r_[np.ones(len(inside)), np.zeros(len(outside))]
    return roc_auc_score(labels, np.r_[inside, outside])


known_scores = scores["held-out digits 0-4"]
print(f"AUROC against unseen digits, score_samples: {auroc(known_scores, scores['unseen digits 5-9']):.3f}")
confidence_known = clf.predict_proba(X_test).max(axis=1)
confidence_unseen = clf.predict_proba(X_unseen).max(axis=1)
print(f"AUROC against unseen digits, max p(c | x):  {auroc(confidence_known, confidence_unseen):.3f}")
print(f"AUROC against uniform noise, score_samples: {auroc(known_scores, scores['uniform noise']):.3f}")

# %%
# The scores of the digits, as histograms (left), and of all three groups (right). The
# noise images score so far below every digit that the right panel shows minus the score
# on a logarithmic axis: a score is at most 0 (a log-probability of Bayes' rule's terms),
# so minus the score is positive, and further right means less likely. The unseen digits
# mostly score lower than the held-out ones; of them, the 8s, which share their strokes
# with the known 3s and 0s, overlap the known digits most.
import matplotlib.pyplot as plt

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
digits = np.r_[scores["held-out digits 0-4"], scores["unseen digits 5-9"]]
bins = np.linspace(np.percentile(digits, 1), digits.max(), 50)
for name in ["held-out digits 0-4", "unseen digits 5-9"]:
    left.hist(scores[name], bins=bins, alpha=0.6, density=True, label=name)
left.set(xlabel="score_samples (log-likelihood up to a constant)", ylabel="density", title="Digits")
left.legend()
surprise = {name: -s for name, s in scores.items()}
everything = np.concatenate(list(surprise.values()))
log_bins = np.geomspace(max(everything.min(), 1e-3), everything.max(), 60)
for name, values in surprise.items():
    right.hist(values, bins=log_bins, alpha=0.6, label=name)
right.set(xscale="log", xlabel="minus score_samples (log axis; right: less likely)", ylabel="samples")
right.set_title("All three groups")
right.legend()
plt.show()

# %%
# The score ranks samples; to flag outliers, choose a threshold from held-out scores of
# known data, e.g. their 5th percentile, which flags about 5% of normal samples.
threshold = np.percentile(known_scores, 5)
for name, s in scores.items():
    print(f"{name}: {np.mean(s < threshold):.0%} flagged")
