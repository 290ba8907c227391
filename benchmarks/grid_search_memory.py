"""A grid search over ``n_trials``, with and without ``memory``, against a single candidate's search.

Run ``python benchmarks/grid_search_memory.py``; it prints one table and writes
``benchmarks/results/grid_search_memory.md`` and ``.json``. The data are the README's:
two spirals, 2,000 rows, 70 % for the search. Every search is
``GridSearchCV(DiffusionClassifier(random_state=0, ...), {"n_trials": ...}, cv=3)`` at
defaults otherwise (refit on all rows included), in a fresh cache folder, run in turn
in one process, ``ROUNDS`` times; the table shows the median time of each. ``n_trials``
only changes prediction, so with ``memory`` the four candidates share each fold's training.
"""

import statistics
import tempfile
import time
import warnings

import numpy as np
from _suite import write_results
from sklearn.model_selection import GridSearchCV, train_test_split

from skdiffusion import DiffusionClassifier
from skdiffusion.datasets import make_spirals

GRID = [16, 32, 64, 128]
ROUNDS = 3


def _search(X, y, n_trials, memory):
    """Return (seconds, best n_trials, mean test scores) of one grid search."""
    clf = DiffusionClassifier(random_state=0, memory=memory)
    search = GridSearchCV(clf, {"n_trials": n_trials}, cv=3)
    start = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - start, search.best_params_["n_trials"], search.cv_results_["mean_test_score"]


def main():
    warnings.simplefilter("ignore")
    X, y = make_spirals(n_samples=2000, random_state=0)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    runs = {"single candidate (n_trials=64)": [], "four candidates, no memory": [], "four candidates, memory": []}
    scores = {}
    for _ in range(ROUNDS):
        for name, (grid, memory) in zip(runs, [([64], False), (GRID, False), (GRID, True)]):
            with tempfile.TemporaryDirectory() as folder:
                seconds, best, mean_scores = _search(X_train, y_train, grid, folder if memory else None)
            runs[name].append(seconds)
            scores[name] = {"best n_trials": best, "mean test scores": np.round(mean_scores, 4).tolist()}
    single = statistics.median(runs["single candidate (n_trials=64)"])
    lines = ["| search | seconds (median) | / single candidate | best n_trials | mean test scores |", "|---" * 5 + "|"]
    records = {}
    for name, times in runs.items():
        median = statistics.median(times)
        records[name] = {"seconds": times, "median": median, "ratio": median / single, **scores[name]}
        lines.append(
            f"| {name} | {median:.1f} | {median / single:.2f} | {scores[name]['best n_trials']} "
            f"| {', '.join(f'{s:.3f}' for s in scores[name]['mean test scores'])} |"
        )
    table = (
        f"GridSearchCV(DiffusionClassifier(random_state=0), n_trials in {GRID}, cv=3) on spirals "
        f"({len(y_train)} rows), median of {ROUNDS} rounds\n\n" + "\n".join(lines)
    )
    print(table)
    write_results("grid_search_memory", table, records)


if __name__ == "__main__":
    main()
