"""Missing values: DiffusionClassifier marginalising them, against imputing them first.

Run ``python benchmarks/missing_values.py`` (the benchmark extra: ``pip install -e
".[benchmark]"``). On complete numeric tables of the real-table panel, a share of the
cells (10 % and 30 %) is removed at random, in the training and the test rows alike
(``random_state=0``); on the panel's table with missing values (biopsy) the cells are
left as they are. Each time, ``DiffusionClassifier(random_state=0)`` on the rows with
their holes (the error of the observed values only) is compared with the same classifier
behind ``SimpleImputer()`` (the mean). Prints a table and writes
``benchmarks/results/missing_values.md`` and ``.json``.
"""

import argparse
import warnings

import numpy as np
from _suite import write_results
from real_panel import TABLES, evaluate
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from skdiffusion import DiffusionClassifier

COMPLETE = ("crabs", "oils", "leaf")
SHARES = (0.1, 0.3)


def _with_holes(X, share, seed=0):
    """Return the numeric columns of ``X`` as floats with ``share`` of the cells set to NaN at random."""
    X = X.select_dtypes("number").to_numpy(dtype=float)
    rng = np.random.RandomState(seed)
    return np.where(rng.rand(*X.shape) < share, np.nan, X)


def run(tables, shares):
    records = []
    cases = [(name, share) for name in tables for share in shares] + [("biopsy", 0.0)]
    for name, share in cases:
        X, y = TABLES[name]()
        X = _with_holes(X, share) if share else X.select_dtypes("number").to_numpy(dtype=float)
        data = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
        models = {
            "marginalised": DiffusionClassifier(random_state=0),
            "imputed": make_pipeline(SimpleImputer(), DiffusionClassifier(random_state=0)),
        }
        for model_name, model in models.items():
            record = {"table": name, "missing": float(np.isnan(X).mean()), "model": model_name}
            records.append({**record, **evaluate(model, data)})
        shown = " ".join(f"{r['model']}={r['accuracy']:.3f}/{r['log_loss']:.3f}" for r in records[-2:])
        print(f"{name} ({records[-1]['missing']:.0%} missing): {shown}", flush=True)
    return records


def format_table(records):
    lines = [
        "| table | cells missing | marginalised accuracy | imputed accuracy | marginalised log loss "
        "| imputed log loss |",
        "|---|---|---|---|---|---|",
    ]
    for own, imputed in zip(records[::2], records[1::2]):
        lines.append(
            f"| {own['table']} | {own['missing']:.1%} | {own['accuracy']:.3f} | {imputed['accuracy']:.3f} "
            f"| {own['log_loss']:.3f} | {imputed['log_loss']:.3f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="*", default=list(COMPLETE), choices=list(TABLES))
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = run(args.tables, SHARES)
    table = format_table(records)
    print(table)
    write_results("missing_values", table, {"records": records})


if __name__ == "__main__":
    main()
