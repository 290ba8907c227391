"""The two-spirals demo: ``python -m skdiffusion [--output spirals.png]``.

Fits a DiffusionClassifier on 70% of 2000 points of two interlaced spirals, prints its
held-out accuracy and writes one figure: the data, samples the model generates for each
class, and its decision boundary with the held-out points.
"""

# The demo lives in the package, so that ``python -m skdiffusion`` works from any install.
# examples/plot_spirals.py walks the docs reader through the same steps: it writes out
# the four lines that make the data and fit the model (they are what a reader copies) and
# calls `plot_demo` for the figure, so the drawing code exists only here.

import argparse
import sys

import numpy as np
from sklearn.inspection import DecisionBoundaryDisplay
from sklearn.model_selection import train_test_split

from skdiffusion import DiffusionClassifier
from skdiffusion.datasets import make_spirals

# Class 0 red, class 1 blue; "RdBu" runs from red (p = 0) to blue (p = 1).
CLASS_COLORS = ("tab:red", "tab:blue")
PROBA_CMAP = "RdBu"


def plot_classes(ax, X, y, **scatter_kw):
    """Scatter the 2-D points ``X`` on ``ax``, coloured by their class ``y`` (0 or 1)."""
    for label, color in enumerate(CLASS_COLORS):
        ax.scatter(*X[y == label].T, s=8, color=color, label=f"class {label}", **scatter_kw)


def plot_demo(clf, X, y, X_test, y_test, *, n_samples=500, random_state=0):
    """Return a figure of three panels: data, generated samples per class, decision boundary.

    ``clf`` is a DiffusionClassifier fitted on 2-D data of classes 0 and 1, ``X, y`` the
    whole data set and ``X_test, y_test`` the held-out points drawn over the boundary.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 5), sharex=True, sharey=True, layout="constrained")
    plot_classes(axes[0], X, y)
    axes[0].set_title(f"Data ({len(X)} points)")
    axes[0].legend(loc="upper right")

    generated = [clf.sample(n_samples, y=label, random_state=random_state) for label in clf.classes_]
    plot_classes(axes[1], *(np.concatenate(parts) for parts in zip(*generated)))
    axes[1].set_title(f"Generated: clf.sample({n_samples}, y=c) per class")

    display = DecisionBoundaryDisplay.from_estimator(
        clf, X, response_method="predict_proba", cmap=PROBA_CMAP, levels=np.linspace(0, 1, 11), alpha=0.7, ax=axes[2]
    )
    plot_classes(axes[2], X_test, y_test, edgecolor="k", linewidth=0.3)
    axes[2].set_title("p(class 1 | x) and held-out points")
    fig.colorbar(display.surface_, ax=axes[2], label="p(class 1 | x)")

    # The axes are shared: show every panel on the boundary's grid, which spans the data.
    axes[2].set(xlim=(display.xx0.min(), display.xx0.max()), ylim=(display.xx1.min(), display.xx1.max()))
    for ax in axes:
        ax.set_aspect("equal")
        ax.set(xlabel="$x_1$", ylabel="$x_2$")
    return fig


def run_demo(output="spirals.png", *, random_state=0):
    """Fit the classifier on the spirals, print its held-out accuracy, save the figure to ``output``.

    Returns the held-out accuracy.
    """
    import matplotlib.pyplot as plt

    X, y = make_spirals(n_samples=2000, random_state=random_state)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=random_state, stratify=y)
    clf = DiffusionClassifier(random_state=random_state).fit(X_train, y_train)
    accuracy = clf.score(X_test, y_test)
    print(f"Held-out accuracy on {len(y_test)} points: {accuracy:.3f}")
    fig = plot_demo(clf, X, y, X_test, y_test, random_state=random_state)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    print(f"Figure written to {output}")
    return accuracy


def main(argv=None):
    """Parse the command line and run the demo without a display."""
    parser = argparse.ArgumentParser(
        prog="python -m skdiffusion", description="Fit a DiffusionClassifier on two spirals and draw it."
    )
    parser.add_argument("--output", default="spirals.png", help="where to write the figure (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        import matplotlib
    except ImportError:
        sys.exit(
            "The spirals demo draws its figure with matplotlib, which is not installed: "
            'pip install "skdiffusion[plot]" (or pip install matplotlib).'
        )
    matplotlib.use("Agg")
    run_demo(args.output)


if __name__ == "__main__":
    main()
