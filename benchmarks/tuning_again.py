"""Tuning again: the cross-entropy term's tuning once, again while it helps (the default), or on any held-out rows.

Run ``python benchmarks/tuning_again.py``. With ``max_iter="auto"``, a tuning with the
cross-entropy term that lowered the held-out log loss of the classes runs again while
that loss falls, up to ``AUTO_MOST_TUNINGS`` tunings, on at least ``TUNE_AGAIN_ROWS``
held-out rows (see the user guide). Variants: "once" (at most one tuning, as an integer
``max_iter`` does), "default", and "any rows" (the default without its minimum of
held-out rows). Data, 70/30 stratified split (``random_state=0``): the real-table panel's
churn and attrition (the benchmark extra; 350 and 103 held-out rows), ten Gaussian columns of
``make_classification(n_samples=1500, n_features=10, n_informative=5, shuffle=False,
random_state=0)`` (105 held-out rows) and of ``make_classification(n_samples=6000,
n_features=10, n_informative=4, class_sep=0.8, flip_y=0.02, random_state=0)`` (420).
``DiffusionClassifier(random_state=seed)``, seeds 0-2. Prints a table of the means and
writes ``benchmarks/results/tuning_again.md`` and ``.json``.
"""

import argparse

from _suite import compare_constants, gaussian_6000, panel_tables
from sklearn.datasets import make_classification

VARIANTS = {
    "once": {"AUTO_MOST_TUNINGS": 1},
    "default": {},
    "any rows": {"TUNE_AGAIN_ROWS": 0},
}
SYNTHETIC = {
    "Gaussian, 1,500 rows": lambda: make_classification(
        n_samples=1500, n_features=10, n_informative=5, shuffle=False, random_state=0
    ),
    "Gaussian, 6,000 rows": gaussian_6000,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    compare_constants("tuning_again", {**panel_tables(["churn", "attrition"]), **SYNTHETIC}, VARIANTS, args.seeds)


if __name__ == "__main__":
    main()
