"""
Calibration of the probabilities
================================

When a classifier says 80%, is it right four times in five? This example draws the
calibration curves (reliability diagrams) of :class:`~skdiffusion.DiffusionClassifier`,
of scikit-learn's :class:`~sklearn.neural_network.MLPClassifier` and of an
:class:`~sklearn.svm.SVC` with Platt scaling, on the breast-cancer data.

A diffusion classifier's probabilities come from Bayes' rule on its denoising errors,
``softmax_c(log p(c) - scale_ * Error_c)``; ``fit`` chooses ``scale_`` by the log loss
of held-out samples (temperature scaling), which is what makes them calibrated.
"""

# %%
# Data and models
# ---------------
# 569 tumours, 30 features, half held out (stratified) so that each bin of the curves
# holds enough samples. The other two models get standardised features; the SVC's
# decision values become probabilities by Platt scaling (a logistic fit on
# cross-validated decision values).
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from skdiffusion import DiffusionClassifier

X, y = load_breast_cancer(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)

models = {
    "DiffusionClassifier": DiffusionClassifier(random_state=0),
    "MLPClassifier": make_pipeline(StandardScaler(), MLPClassifier(max_iter=1000, random_state=0)),
    "SVC (Platt scaling)": make_pipeline(StandardScaler(), CalibratedClassifierCV(SVC(), ensemble=False)),
}
for model in models.values():
    model.fit(X_train, y_train)

# %%
# Scores
# ------
# Accuracy, and two proper scores of the probabilities: the log loss and the Brier score
# (lower is better). The expected calibration error (ECE) is the mean gap between the
# confidence and the accuracy over ten equal-width bins of confidence, weighted by the
# bins' sizes.
import numpy as np
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss


def expected_calibration_error(y_true, proba, n_bins=10):
    """ECE of the predicted class's probability, over equal-width bins."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    return sum(
        np.mean(bins == b) * abs(correct[bins == b].mean() - confidence[bins == b].mean()) for b in np.unique(bins)
    )


probas = {name: model.predict_proba(X_test) for name, model in models.items()}
print(f"{'':22s} accuracy  log loss  Brier    ECE")
for name, proba in probas.items():
    print(
        f"{name:22s} {accuracy_score(y_test, proba.argmax(axis=1)):.3f}     "
        f"{log_loss(y_test, proba):.3f}     {brier_score_loss(y_test, proba[:, 1]):.3f}    "
        f"{expected_calibration_error(y_test, proba):.3f}"
    )

# %%
# Calibration curves
# ------------------
# :class:`~sklearn.calibration.CalibrationDisplay` bins the held-out samples by their
# predicted probability of the benign class and plots the fraction that are benign
# against the mean prediction of each bin; a calibrated model follows the diagonal. Most
# predictions of all three models are near 0 or 1 (these data are easy), so the middle
# bins hold few samples and the curves are noisy there; quantile bins give each point
# the same number of samples.
import matplotlib.pyplot as plt
from sklearn.calibration import CalibrationDisplay

fig, (curve_ax, hist_ax) = plt.subplots(1, 2, figsize=(10, 4.5))
for name, proba in probas.items():
    CalibrationDisplay.from_predictions(y_test, proba[:, 1], n_bins=6, strategy="quantile", name=name, ax=curve_ax)
    hist_ax.hist(proba[:, 1], bins=20, range=(0, 1), histtype="step", linewidth=2, label=name)
curve_ax.set(title="Calibration curves (quantile bins)")
hist_ax.set(xlabel="predicted probability of the benign class", ylabel="held-out samples", yscale="log")
hist_ax.set_title("How confident the predictions are")
hist_ax.legend(loc="upper center")
fig.tight_layout()
plt.show()

# %%
# All three models are close to the diagonal where they have samples, and their
# expected calibration errors are within a couple of points of each other: the
# temperature fitted by ``fit`` makes the diffusion classifier's probabilities about as
# calibrated as Platt scaling makes the SVC's. On these data it is a little more accurate
# than the SVC and less accurate than the MLP, and its log loss, which also rewards accuracy and
# confidence, lies between theirs: calibration says that its probabilities can be taken
# at their word, not that they are sharp.
