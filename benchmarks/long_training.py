"""The first training's length on 3,000 rows or more: 600 steps (before), 2,000, 3,000 (the default) or 4,000.

Run ``python benchmarks/long_training.py``. With ``max_iter="auto"``, a fit that tunes on
``LONG_TRAINING_ROWS`` rows or more trains a cosine of ``AUTO_LONG_STEPS`` steps first
(see the user guide). Variants: "600" (no long training: 600 steps, going on while the
held-out loss falls, as on fewer rows), "2000", "3000" (the default), "4000", and "3000,
any rows" (the default without its minimum of rows). Data, 70/30 stratified split
(``random_state=0``): the real-table panel's churn (3,500 training rows), attrition (1,029)
and HMDA (1,666), modeldata's credit_data (3,118; the benchmark extra), and ten Gaussian
columns of ``make_classification(n_samples=6000, n_features=10, n_informative=4,
class_sep=0.8, flip_y=0.02, random_state=0)`` (4,200). ``DiffusionClassifier(random_state=seed)``,
seeds 0-2. Prints a table of the means and writes ``benchmarks/results/long_training.md``
and ``.json``.
"""

import argparse
import sys

from _suite import compare_constants, gaussian_6000, panel_tables

VARIANTS = {
    "600": {"LONG_TRAINING_ROWS": sys.maxsize},
    "2000": {"AUTO_LONG_STEPS": 2000},
    "3000": {},
    "4000": {"AUTO_LONG_STEPS": 4000},
    "3000, any rows": {"LONG_TRAINING_ROWS": 0},
}


def credit_data():
    """Return modeldata's credit_data (``Status``), as the zero-inflated benchmark loads it."""
    from zero_inflated import TABLES

    return TABLES["credit_data"]()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    tables = panel_tables(["churn", "attrition", "hmda"])
    if tables:
        tables["credit_data"] = credit_data
    tables["Gaussian, 6,000 rows"] = gaussian_6000
    compare_constants("long_training", tables, VARIANTS, args.seeds)


if __name__ == "__main__":
    main()
