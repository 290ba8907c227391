"""Denormal floats: fit and predict with them flushed to zero (the default) or not.

Run ``python benchmarks/denormals.py``; it prints a table and writes
``benchmarks/results/denormals.md`` and ``.json``. Floats below 1.2e-38 in magnitude take
the CPU a slow path; the library flushes them to zero on the threads it computes on (see
the user guide's cost page). "kept" runs the same fits with the threads' setting left
alone (torch's default: kept). Data: ``make_classification`` with 500 features (20
informative), 1,000 training rows and 2,000 test rows, where the SiLU of units far below
zero makes such floats; and the suite's digits, where none arise. Each setting is timed
in ``--rounds`` alternated rounds (wall-clock seconds with every core, the median); the
accuracy is that of the last round's fit.
"""

import argparse
import contextlib
import functools

import numpy as np
from _suite import alternated, split, write_results
from sklearn.datasets import make_classification

from skdiffusion import DiffusionClassifier, _compute


def _wide():
    X, y = make_classification(n_samples=3000, n_features=500, n_informative=20, random_state=0)
    return X[:1000], X[1000:], y[:1000], y[1000:]


DATA = {"500 features, 1,000 rows": _wide, "digits": lambda: split("digits")}


@contextlib.contextmanager
def _kept():
    """Within, the library leaves its threads' denormals as they are."""
    flushed = _compute.denormals_flushed
    _compute.denormals_flushed = contextlib.nullcontext
    try:
        yield
    finally:
        _compute.denormals_flushed = flushed


def _setting(setting):
    """The context of a setting: the library's default, or its threads' denormals left alone."""
    return _kept() if setting == "kept" else contextlib.nullcontext()


def evaluate(name, data, rounds):
    """Return the records of one data set: per setting, the fit and predict seconds and the accuracy."""
    X_train, X_test, y_train, y_test = data
    fitted = {}

    def fit(setting):
        with _setting(setting):
            fitted[setting] = DiffusionClassifier(random_state=0).fit(X_train, y_train)

    def predict(setting):
        with _setting(setting):
            fitted[setting].predict_proba(X_test)

    settings = ("flushed (default)", "kept")
    fits = alternated({s: functools.partial(fit, s) for s in settings}, rounds)
    predicts = alternated({s: functools.partial(predict, s) for s in settings}, rounds)
    return [
        {
            "data": name,
            "setting": setting,
            "fit_s": float(np.median(fits[setting])),
            "predict_s": float(np.median(predicts[setting])),
            "accuracy": float(fitted[setting].score(X_test, y_test)),
        }
        for setting in settings
    ]


def run(rounds):
    """Return the records of every data set."""
    records = []
    for name, load in DATA.items():
        records += evaluate(name, load(), rounds)
        print(records[-2:], flush=True)
    return records


def table(records):
    lines = ["| data | denormals | fit s | predict s | accuracy |", "|---|---|---|---|---|"]
    for r in records:
        lines.append(
            f"| {r['data']} | {r['setting']} | {r['fit_s']:.2f} | {r['predict_s']:.3f} | {r['accuracy']:.4f} |"
        )
    return "Medians of the alternated rounds; predict_proba on the test rows.\n\n" + "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    records = run(args.rounds)
    text = table(records)
    print(text)
    write_results("denormals", text, records)


if __name__ == "__main__":
    main()
