"""Large fits: the trials chosen on a sample of the held-out rows (the default) or on all of them.

Run ``python benchmarks/choosing_rows.py``; it prints a table and writes
``benchmarks/results/choosing_rows.md`` and ``.json``. ``fit`` chooses the trials'
timestep range and error scale on its held-out rows, each scored under every class at
256 trials; beyond ``CHOOSING_ROWS`` (2,000) held-out rows, it scores them all at 16
trials first and chooses on a sample of 2,000, weighted to stand for them all and drawn
mostly from the rows that survey finds wrong or unsure (see the user guide). Three
variants of the same fit, on each data set with ``random_state`` 0 to ``--seeds`` - 1:

- default: that sample;
- uniform sample: 2,000 rows drawn with equal chances (the survey's losses ignored);
- all rows: every held-out row at 256 trials, as before the sample.

Data: four sets of 30,000 to 100,000 training rows, each tested on 20,000 rows more of
the same generator. Fit time: wall-clock seconds with every core, one fit per variant.
"""

import argparse

import numpy as np
from _suite import constants_set, grouped, means, run_variants, scores, timed, write_results
from sklearn.datasets import make_classification

from skdiffusion import DiffusionClassifier, _calibration
from skdiffusion.datasets import make_spirals

N_TEST = 20_000
DATA = {
    "2 classes, 100,000 rows": lambda: make_classification(
        n_samples=100_000 + N_TEST, n_features=20, n_informative=12, random_state=0
    ),
    "10 classes, 50,000 rows": lambda: make_classification(
        n_samples=50_000 + N_TEST, n_features=20, n_informative=12, n_classes=10, n_clusters_per_class=1, random_state=0
    ),
    "spirals, 60,000 rows": lambda: make_spirals(n_samples=60_000 + N_TEST, random_state=0),
    "2 classes, 10% flipped, 30,000 rows": lambda: make_classification(
        n_samples=30_000 + N_TEST, n_features=10, n_informative=6, flip_y=0.1, random_state=1
    ),
}


def _uniform(losses, weights, size, seed, choosing_sample=_calibration.choosing_sample):
    """The default's sample with the survey's losses ignored: every row of a weight has the same chance."""
    return choosing_sample(np.zeros_like(losses), weights, size, seed)


VARIANTS = {
    "default": {},
    "uniform sample": {"choosing_sample": _uniform},
    "all rows": {"CHOOSING_ROWS": np.inf},
}


def evaluate(data, seed, setting):
    """Fit and score one variant: its module settings in place during the fit."""
    X, y = data
    with constants_set(_calibration, setting):
        clf, fit_s = timed(DiffusionClassifier(random_state=seed).fit, X[:-N_TEST], y[:-N_TEST])
    record = scores(y[-N_TEST:], clf.predict_proba(X[-N_TEST:]), clf.classes_)
    return {**record, "fit_s": fit_s, "timestep_range": list(clf.timestep_range_), "scale": clf.scale_}


def table(records):
    """Return the table of means over the seeds, with each seed's range and scale."""
    lines = [
        "| data | variant | accuracy | log loss | fit s | range, scale by seed |",
        "|---|---|---|---|---|---|",
    ]
    for (data, variant), group in grouped(records).items():
        mean = means(group, ["accuracy", "log_loss", "fit_s"])
        chosen = ", ".join(f"{r['timestep_range'][1]:g} / {r['scale']:.1f}" for r in group)
        lines.append(
            f"| {data} | {variant} | {mean['accuracy']:.4f} | {mean['log_loss']:.4f} | {mean['fit_s']:.1f} | {chosen} |"
        )
    return "Means over the seeds; the range is (0, h), h given, and the scale is ``scale_``.\n\n" + "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    records = run_variants(DATA, list(DATA), args.seeds, VARIANTS, evaluate)
    text = table(records)
    print(text)
    write_results("choosing_rows", text, records)


if __name__ == "__main__":
    main()
