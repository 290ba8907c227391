"""A column of random labels (an identifier, a code of many values) beside the numbers that tell the classes apart.

Run ``python benchmarks/random_labels.py``. Each case is ``make_classification`` (5
numeric features, 3 informative) with a string column of random labels beside it,
``rows`` rows and ``labels`` distinct labels, split 70/30 (``random_state=0``);
``DiffusionClassifier`` at its defaults, seeds 0-2 (the data's seed too), with the column
and without it. Prints a table of the means (fit seconds too) and writes ``benchmarks/results/random_labels.md``
and ``.json``.
"""

import argparse

import numpy as np
import pandas as pd
from _suite import grouped, means, run_variants, scores, timed, write_results
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

from skdiffusion import DiffusionClassifier

SIZES = [(600, 30), (600, 100), (1500, 20), (1500, 50), (1500, 300), (1500, 1000)]
CASES = {f"{rows} rows, {labels} labels": (rows, labels) for rows, labels in SIZES}
VARIANTS = {"with the labels": True, "without": False}


def _case(rows, labels):
    """Return a loader of the case's data as a function of the seed."""

    def load(seed):
        X, y = make_classification(n_samples=rows, n_features=5, n_informative=3, random_state=seed)
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(5)])
        frame["id"] = np.random.RandomState(100 + seed).randint(labels, size=rows).astype(str)
        return train_test_split(frame, y, test_size=0.3, random_state=0, stratify=y)

    return lambda: load


def evaluate(load, seed, with_labels):
    X_train, X_test, y_train, y_test = load(seed)
    if not with_labels:
        X_train, X_test = X_train.drop(columns="id"), X_test.drop(columns="id")
    clf = DiffusionClassifier(random_state=seed)
    _, fit_s = timed(clf.fit, X_train, y_train)
    return {**scores(y_test, clf.predict_proba(X_test), clf.classes_), "fit_s": fit_s}


def format_table(records):
    lines = [
        "| data | accuracy with the labels | without | log loss with the labels | without "
        "| fit s with the labels | without |",
        "|---|---|---|---|---|---|---|",
    ]
    groups = grouped(records)
    for name in dict.fromkeys(r["data"] for r in records):
        mean = {
            (variant, key): value
            for variant in VARIANTS
            for key, value in means(groups[name, variant], ("accuracy", "log_loss", "fit_s")).items()
        }
        with_, without = VARIANTS
        lines.append(
            f"| {name} | {mean[with_, 'accuracy']:.3f} | {mean[without, 'accuracy']:.3f} "
            f"| {mean[with_, 'log_loss']:.3f} | {mean[without, 'log_loss']:.3f} "
            f"| {mean[with_, 'fit_s']:.1f} | {mean[without, 'fit_s']:.1f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    datasets = {name: _case(*case) for name, case in CASES.items()}
    records = run_variants(datasets, list(CASES), args.seeds, VARIANTS, evaluate)
    table = format_table(records)
    print(table)
    write_results("random_labels", table, {"records": records})


if __name__ == "__main__":
    main()
