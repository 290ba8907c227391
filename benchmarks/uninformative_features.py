"""Uninformative features: ten informative columns among 10 to 500, with and without selecting features first.

Run ``python benchmarks/uninformative_features.py``. A generative classifier models every
feature, and each class's model of a column that says nothing of the class differs from
the others' by its estimation noise alone: summed over many such columns, that noise
swamps the evidence of the few that matter (naive Bayes has the same weakness). Data:
``make_classification(n_samples=1000, n_features=p, n_informative=10, n_redundant=0,
random_state=0)`` for ``p`` in 10, 20, 100 and 500, 70/30 stratified split
(``random_state=0``). ``DiffusionClassifier(random_state=seed)`` for seeds 0-2 on every
column, and behind ``SelectFromModel(ExtraTreesClassifier(random_state=seed))`` (the
columns of at least the mean importance); HistGradientBoostingClassifier and
StandardScaler + LogisticRegression for reference. Prints a table and writes
``benchmarks/results/uninformative_features.md`` and ``.json``.
"""

import argparse
import functools

from _suite import grouped, mean_cells, means, run_variants, scores, timed, write_results
from sklearn.datasets import make_classification
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier
from sklearn.feature_selection import SelectFromModel
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skdiffusion import DiffusionClassifier

N_FEATURES = (10, 20, 100, 500)
VARIANTS = {
    "every column": lambda seed: DiffusionClassifier(random_state=seed),
    "selected first": lambda seed: make_pipeline(
        SelectFromModel(ExtraTreesClassifier(random_state=seed)), DiffusionClassifier(random_state=seed)
    ),
    "HistGradientBoosting": lambda seed: HistGradientBoostingClassifier(random_state=seed),
    "LogisticRegression": lambda seed: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
}


def _data(n_features):
    X, y = make_classification(n_samples=1000, n_features=n_features, n_informative=10, n_redundant=0, random_state=0)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def evaluate(data, seed, model_of):
    """Fit and score the variant's model; record how many columns it kept."""
    X_train, X_test, y_train, y_test = data
    model = model_of(seed)
    _, fit_s = timed(model.fit, X_train, y_train)
    selection = model[0] if hasattr(model, "steps") else None
    kept = int(selection.get_support().sum()) if isinstance(selection, SelectFromModel) else X_train.shape[1]
    return {"columns_kept": kept, "fit_s": fit_s, **scores(y_test, model.predict_proba(X_test), model.classes_)}


def format_table(records, seeds):
    lines = [
        f"Accuracy / log loss: means over seeds 0-{seeds - 1}; columns kept by the selection (mean).",
        "",
        "| columns | " + " | ".join(VARIANTS) + " | columns kept |",
        "|---" * (len(VARIANTS) + 2) + "|",
    ]
    groups = grouped(records)
    for data in dict.fromkeys(record["data"] for record in records):
        cells = mean_cells(groups, data, VARIANTS)
        kept = means(groups[data, "selected first"], ["columns_kept"])["columns_kept"]
        lines.append(f"| {data} | {' | '.join(cells)} | {kept:.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", nargs="*", type=int, default=list(N_FEATURES))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    data = {f"10 of {p}": functools.partial(_data, p) for p in args.features}
    records = run_variants(data, list(data), args.seeds, VARIANTS, evaluate)
    table = format_table(records, args.seeds)
    print(table)
    write_results("uninformative_features", table, {"records": records})


if __name__ == "__main__":
    main()
