"""How many passes of partial_fit a model needs: test accuracy against the optimizer steps.

Run ``python benchmarks/partial_fit.py``; it prints one table and writes
``benchmarks/results/partial_fit.md`` and ``.json``. Each data set is split 70/30
(stratified, random_state=0); the training rows are passed in batches of 500 rows, in
order, one ``partial_fit`` call per batch (as ``dask_ml.wrappers.Incremental`` does with
blocks of 500 rows), for 1 to 64 passes; ``fit`` at defaults is the reference.
"""

import warnings

import numpy as np
from _suite import write_results
from sklearn.datasets import load_breast_cancer, make_moons
from sklearn.model_selection import train_test_split

from skdiffusion import DiffusionClassifier
from skdiffusion.datasets import make_spirals

DATA = {
    "spirals (3,500 rows)": lambda: make_spirals(n_samples=5000, random_state=0),
    "moons (3,500 rows)": lambda: make_moons(5000, noise=0.2, random_state=0),
    "breast (398 rows)": lambda: load_breast_cancer(return_X_y=True),
}
PASSES = (1, 2, 4, 8, 16, 32, 64)


def main():
    warnings.simplefilter("ignore")
    records = {}
    for name, load in DATA.items():
        X, y = load()
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
        batches = np.array_split(np.arange(len(y_train)), max(1, len(y_train) // 500))
        clf, rows = DiffusionClassifier(random_state=0), []
        for n_passes in range(1, PASSES[-1] + 1):
            for batch in batches:
                clf.partial_fit(X_train[batch], y_train[batch], classes=np.unique(y))
            if n_passes in PASSES:
                rows.append({"passes": n_passes, "steps": clf.n_iter_, "accuracy": clf.score(X_test, y_test)})
        fitted = DiffusionClassifier(random_state=0).fit(X_train, y_train)
        records[name] = {
            "partial_fit": rows,
            "fit": {"steps": fitted.n_iter_, "accuracy": fitted.score(X_test, y_test)},
        }
    lines = ["| data | " + " | ".join(f"{p} passes" for p in PASSES) + " | fit |", "|---" * (len(PASSES) + 2) + "|"]
    for name, record in records.items():
        cells = [f"{r['accuracy']:.3f} ({r['steps']} steps)" for r in record["partial_fit"]]
        fit = record["fit"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fit['accuracy']:.3f} ({fit['steps']} steps) |")
    table = "test accuracy (optimizer steps in all) after passes of partial_fit over 500-row batches\n\n" + "\n".join(
        lines
    )
    print(table)
    write_results("partial_fit", table, records)


if __name__ == "__main__":
    main()
