"""Skewed columns: numbers spread over orders of magnitude, fitted as they are and after a logarithm.

Run ``python benchmarks/skewed_columns.py``. The classifier standardises each numeric
column; a column whose values spread over orders of magnitude, such as a lognormal,
then crowds most rows into a small part of its range, where the Gaussian diffusion barely
tells them apart. Data: ``make_classification(n_samples=1500, n_features=10,
n_informative=5, shuffle=False, random_state=0)``, each column replaced by ``exp(s * x)``
for ``s`` in 0.5, 1 and 2 (the logarithm gives back ``s * x``); 70/30 stratified split
(``random_state=0``). ``DiffusionClassifier(random_state=seed)`` for seeds 0-2 on the
columns as they are, on their logarithms and after a Box-Cox transform of each column
chosen by maximum likelihood (``PowerTransformer(method="box-cox")``, fitted on the
training rows), and HistGradientBoostingClassifier (which no monotone map of a column
changes) for reference. The Box-Cox transform, a choice from each column's distribution
alone, is also tried on the strictly positive numeric columns of four tables of the
real-table panel with skewed columns (the benchmark extra; their protocol split). Prints
a table and writes ``benchmarks/results/skewed_columns.md`` and ``.json``.
"""

import argparse
import functools

import numpy as np
import pandas as pd
from _suite import grouped, mean_cells, panel_tables, run_variants, scores, timed, write_results
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import PowerTransformer

from skdiffusion import DiffusionClassifier

SPREADS = (0.5, 1.0, 2.0)
TABLES = ("biopsy", "oils", "hmda", "leaf")


def box_cox(X_train, X_test):
    """Return both with each strictly positive numeric column of ``X_train`` Box-Cox transformed as it chooses.

    A test value at or below zero is taken as the column's smallest training value; NaN stays missing.
    """
    X_train, X_test = (X.copy() if hasattr(X, "iloc") else pd.DataFrame(X) for X in (X_train, X_test))
    numeric = X_train.select_dtypes("number")
    positive = [name for name in numeric.columns if numeric[name].min() > 0]
    transform = PowerTransformer(method="box-cox", standardize=False).fit(X_train[positive])
    low = X_train[positive].min()
    X_train[positive] = transform.transform(X_train[positive])
    kept = (X_test[positive] > 0) | X_test[positive].isna()  # NaN stays missing
    X_test[positive] = transform.transform(X_test[positive].where(kept, low, axis=1))
    return X_train, X_test


def _lognormal(spread):
    """Return the cases of Gaussian columns ``x`` made ``exp(spread * x)``: as they are, their logarithms, Box-Cox."""
    X, y = make_classification(n_samples=1500, n_features=10, n_informative=5, shuffle=False, random_state=0)
    X = np.exp(spread * X)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    cases = {
        "as it is": (X_train, X_test),
        "logarithm": (np.log(X_train), np.log(X_test)),
        "Box-Cox": box_cox(X_train, X_test),
    }
    return cases, y_train, y_test


def _panel_table(load):
    """Return the cases of a real-table panel table, split as its protocol does: as it is and Box-Cox."""
    X, y = load()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    return {"as it is": (X_train, X_test), "Box-Cox": box_cox(X_train, X_test)}, y_train, y_test


def _diffusion(case):
    return case, lambda seed: DiffusionClassifier(random_state=seed)


VARIANTS = {
    "as it is": _diffusion("as it is"),
    "logarithm": _diffusion("logarithm"),
    "Box-Cox": _diffusion("Box-Cox"),
    "HistGradientBoosting": ("as it is", lambda seed: HistGradientBoostingClassifier(random_state=seed)),
}
PANEL_VARIANTS = {name: VARIANTS[name] for name in ("as it is", "Box-Cox")}


def evaluate(data, seed, setting):
    """Fit and score the variant's model on its case of the data."""
    cases, y_train, y_test = data
    case, model_of = setting
    (train, test), model = cases[case], model_of(seed)
    _, fit_s = timed(model.fit, train, y_train)
    return {"fit_s": fit_s, **scores(y_test, model.predict_proba(test), model.classes_)}


def format_table(records, seeds):
    lines = [
        f"Accuracy / log loss: means over seeds 0-{seeds - 1}.",
        "",
        "| data | as it is | logarithm | Box-Cox | HistGradientBoosting |",
        "|---|---|---|---|---|",
    ]
    groups = grouped(records)
    for data in dict.fromkeys(record["data"] for record in records):
        cells = mean_cells(groups, data, VARIANTS)  # a panel table has neither logarithms nor gradient boosting
        lines.append(f"| {data} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spreads", nargs="*", type=float, default=list(SPREADS))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    lognormal = {f"exp({spread:g} x)": functools.partial(_lognormal, spread) for spread in args.spreads}
    records = run_variants(lognormal, list(lognormal), args.seeds, VARIANTS, evaluate)
    tables = {name: functools.partial(_panel_table, load) for name, load in panel_tables(TABLES).items()}
    records += run_variants(tables, list(tables), args.seeds, PANEL_VARIANTS, evaluate)
    table = format_table(records, args.seeds)
    print(table)
    write_results("skewed_columns", table, {"records": records})


if __name__ == "__main__":
    main()
