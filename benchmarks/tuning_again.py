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

from _suite import (
    grouped,
    mean_cells,
    means,
    panel_tables,
    run_variants,
    scores,
    split_loader,
    timed,
    write_results,
)
from sklearn.datasets import make_classification

from skdiffusion import DiffusionClassifier, _fitting

VARIANTS = {
    "once": {"AUTO_MOST_TUNINGS": 1},
    "default": {},
    "any rows": {"TUNE_AGAIN_ROWS": 0},
}
SYNTHETIC = {
    "Gaussian, 1,500 rows": lambda: make_classification(
        n_samples=1500, n_features=10, n_informative=5, shuffle=False, random_state=0
    ),
    "Gaussian, 6,000 rows": lambda: make_classification(
        n_samples=6000, n_features=10, n_informative=4, class_sep=0.8, flip_y=0.02, random_state=0
    ),
}


def evaluate(data, seed, constants):
    """Fit at the defaults with the fitting module's ``constants`` set; return scores, seconds and steps."""
    X_train, X_test, y_train, y_test = data
    saved = {name: getattr(_fitting, name) for name in constants}
    for name, value in constants.items():
        setattr(_fitting, name, value)
    try:
        model = DiffusionClassifier(random_state=seed)
        _, fit_s = timed(model.fit, X_train, y_train)
    finally:
        for name, value in saved.items():
            setattr(_fitting, name, value)
    proba = model.predict_proba(X_test)
    return {"fit_s": fit_s, "n_iter": model.n_iter_, **scores(y_test, proba, model.classes_)}


def format_table(records, seeds):
    lines = [
        f"Accuracy / log loss / fit seconds, and the steps trained (n_iter_): means over seeds 0-{seeds - 1}.",
        "",
        "| data | " + " | ".join(VARIANTS) + " | steps, " + ", ".join(VARIANTS) + " |",
        "|---" * (len(VARIANTS) + 2) + "|",
    ]
    groups = grouped(records)
    for data in dict.fromkeys(record["data"] for record in records):
        cells = mean_cells(groups, data, VARIANTS, keys=("accuracy", "log_loss", "fit_s"))
        steps = ", ".join(f"{means(groups[data, variant], ['n_iter'])['n_iter']:.0f}" for variant in VARIANTS)
        lines.append(f"| {data} | {' | '.join(cells)} | {steps} |")
    lines += ["", "Each seed, accuracy / log loss (steps):", "", "| data | variant | seeds |", "|---|---|---|"]
    for (data, variant), group in groups.items():
        values = ", ".join(f"{r['accuracy']:.3f} / {r['log_loss']:.3f} ({r['n_iter']})" for r in group)
        lines.append(f"| {data} | {variant} | {values} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    data = {name: split_loader(load) for name, load in {**panel_tables(["churn", "attrition"]), **SYNTHETIC}.items()}
    records = run_variants(data, list(data), args.seeds, VARIANTS, evaluate)
    table = format_table(records, args.seeds)
    print(table)
    write_results("tuning_again", table, {"records": records})


if __name__ == "__main__":
    main()
