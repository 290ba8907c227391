"""The trials' timestep range on small data: chosen on the held-out rows (the default) or by cross-validation.

Run ``python benchmarks/range_choice.py``. A fit on fewer than 1,000 rows chooses the
range on the 30% of its rows it holds out, then trains afresh on all of them: on a table
of 140 rows, 42 rows decide. Here the default fit is set beside a grid search over the
range (``GridSearchCV``, 5 folds, scored by log loss) among ``"auto"`` and each fixed
range ``(0, hi)`` of the library's candidates, whose every fit is a whole default fit
with that range; the search then refits the best on all the training rows. Data: the
accuracy suite's sets and the real-table panel's tables (the benchmark extra) of fewer
than 1,000 training rows, each split 70/30, stratified, ``random_state=0``;
``DiffusionClassifier(random_state=seed)`` for seeds 0-2. Prints a table and writes
``benchmarks/results/range_choice.md`` and ``.json``.
"""

import argparse
from collections import Counter

from _suite import DATASETS, grouped, mean_cells, panel_tables, run_variants, scores, split_loader, timed, write_results
from sklearn.model_selection import GridSearchCV

from skdiffusion import DiffusionClassifier
from skdiffusion._calibration import RANGE_CANDIDATES

SUITE = ("iris", "wine", "moons", "breast")
TABLES = ("crabs", "biopsy", "oils", "mroz")
GRID = {"timestep_range": ["auto", *((0.0, hi) for hi in RANGE_CANDIDATES)]}
FOLDS = 5


def default(seed):
    return DiffusionClassifier(random_state=seed)


def grid_search(seed):
    return GridSearchCV(DiffusionClassifier(random_state=seed), GRID, scoring="neg_log_loss", cv=FOLDS)


VARIANTS = {"default": default, "grid search": grid_search}


def evaluate(data, seed, make):
    """Fit and score the variant's model; record the range it predicts with."""
    X_train, X_test, y_train, y_test = data
    model = make(seed)
    _, fit_s = timed(model.fit, X_train, y_train)
    fitted = getattr(model, "best_estimator_", model)  # the search's refit, or the fit itself
    hi = f"{fitted.timestep_range_[1]:g}"
    return {
        "fit_s": fit_s,
        "range": f"auto: {hi}" if fitted.timestep_range == "auto" else hi,
        **scores(y_test, model.predict_proba(X_test), model.classes_),
    }


def format_table(records, seeds):
    lines = [
        f"Accuracy / log loss / fit seconds: means over seeds 0-{seeds - 1}. Ranges: the upper end of "
        'the range each fit predicts with, "auto: hi" where the search kept the held-out choice '
        "(times chosen).",
        "",
        "| data | default | grid search | ranges, default | ranges, grid search |",
        "|---|---|---|---|---|",
    ]
    groups = grouped(records)
    for data in dict.fromkeys(record["data"] for record in records):
        cells = mean_cells(groups, data, VARIANTS, keys=("accuracy", "log_loss", "fit_s"))
        ranges = [
            ", ".join(f"{r} ({n})" for r, n in Counter(rec["range"] for rec in groups[data, v]).items())
            for v in VARIANTS
        ]
        lines.append(f"| {data} | {' | '.join(cells)} | {' | '.join(ranges)} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", default=[*SUITE, *TABLES], choices=[*SUITE, *TABLES])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    loaders = {name: DATASETS[name] for name in SUITE} | panel_tables([t for t in TABLES if t in args.data])
    data = {name: split_loader(load) for name, load in loaders.items()}
    records = run_variants(data, args.data, args.seeds, VARIANTS, evaluate)
    table = format_table(records, args.seeds)
    print(table)
    write_results("range_choice", table, {"records": records})


if __name__ == "__main__":
    main()
