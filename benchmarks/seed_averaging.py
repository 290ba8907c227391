"""Averaging fits of several seeds: one fit against the mean probabilities of three.

Run ``python benchmarks/seed_averaging.py``. Each data set of the accuracy suite, and of
the real-table panel with the benchmark extra, is split 70/30, stratified, with
``random_state=0`` (the panel's protocol split), and DiffusionClassifier is fitted at its
defaults with ``random_state`` 0 to ``--seeds`` - 1. "one fit": each fit alone. "3
seeds": the mean of the probabilities of each three consecutive seeds (0-2 and 3-5 with
the default six), which is what ``VotingClassifier(voting="soft")`` over those three
classifiers predicts (a test checks it); its fit time is the sum of its fits'. Every fit
belongs to one average, so the two columns compare the same fits. Then
``VotingClassifier`` itself is fitted on the suite's breast cancer data, its three fits one
after another (``n_jobs=None``) and in parallel (``n_jobs=3``) on joblib's processes and
on its threads, alternated, medians of three. Prints the tables and writes
``benchmarks/results/seed_averaging.md`` and ``.json``.
"""

import argparse
import warnings

import numpy as np
import real_panel
from _suite import (
    alternated,
    grouped,
    mean_cells,
    ratio_spread,
    scores,
    split,
    split_loaders,
    timed,
    write_results,
)
from joblib import parallel_config
from sklearn.ensemble import VotingClassifier

from skdiffusion import DiffusionClassifier

AVERAGED = 3  # fits per average
VARIANTS = ("one fit", f"{AVERAGED} seeds")


def evaluate(name, data, seeds):
    """Return the records of one fit per seed and of the average of each ``AVERAGED`` consecutive seeds."""
    X_train, X_test, y_train, y_test = data
    records, probas = [], []
    for seed in range(seeds):
        model, fit_s = timed(DiffusionClassifier(random_state=seed).fit, X_train, y_train)
        probas.append(model.predict_proba(X_test))
        record = {"data": name, "seeds": [seed], "variant": VARIANTS[0], **scores(y_test, probas[-1], model.classes_)}
        records.append({**record, "fit_s": fit_s})
        print(f"{name} seed {seed}: {record['accuracy']:.3f} / {record['log_loss']:.3f} in {fit_s:.1f} s", flush=True)
    for first in range(0, seeds, AVERAGED):
        members = range(first, first + AVERAGED)
        records.append(
            {
                "data": name,
                "seeds": list(members),
                "variant": VARIANTS[1],
                **scores(y_test, np.mean([probas[i] for i in members], axis=0), model.classes_),
                "fit_s": sum(records[i]["fit_s"] for i in members),
            }
        )
    return records


def format_table(records):
    """Return the table of the means: accuracy / log loss and fit seconds per variant."""
    groups = grouped(records)
    lines = [f"| data | {' | '.join(VARIANTS)} | fit s, {' | '.join(VARIANTS)} |", "|---|---|---|---|---|"]
    for name in dict.fromkeys(record["data"] for record in records):
        cells = mean_cells(groups, name, VARIANTS) + mean_cells(groups, name, VARIANTS, keys=("fit_s",))
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def parallel_fits(rounds=3):
    """Return the seconds of fitting the soft vote of ``AVERAGED`` seeds on breast cancer, on 1 or 3 jobs."""
    X_train, _, y_train, _ = split("breast")
    members = [(f"seed {seed}", DiffusionClassifier(random_state=seed)) for seed in range(AVERAGED)]

    def fit(n_jobs, backend):
        with parallel_config(backend=backend):
            VotingClassifier(members, voting="soft", n_jobs=n_jobs).fit(X_train, y_train)

    calls = {
        "one after another": lambda: fit(None, "loky"),
        "3 processes": lambda: fit(3, "loky"),
        "3 threads": lambda: fit(3, "threading"),
    }
    seconds = alternated(calls, rounds)
    base = seconds["one after another"]
    return {
        label: {
            "seconds": times,
            "median_s": float(np.median(times)),
            "against_one_after_another": ratio_spread(times, base),
        }
        for label, times in seconds.items()
    }


def parallel_table(timings):
    """Return the table of :func:`parallel_fits`' medians and their ratios to one fit after another."""
    lines = ["| VotingClassifier on breast cancer | fit s (median) | against one after another |", "|---|---|---|"]
    for label, timing in timings.items():
        ratio = timing["against_one_after_another"]
        spread = f"{ratio['median']:.2f} ({ratio['least']:.2f} to {ratio['greatest']:.2f})"
        lines.append(f"| {label} | {timing['median_s']:.1f} | {spread} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2 * AVERAGED)
    parser.add_argument("--data", nargs="*", help="data sets (default: the suite, then the panel)")
    args = parser.parse_args()
    if args.seeds < AVERAGED or args.seeds % AVERAGED:
        parser.error(f"--seeds must be a multiple of {AVERAGED}")
    loaders = split_loaders(real_panel.TABLES)
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.data or loaders:
            records += evaluate(name, loaders[name](), args.seeds)
    table = (
        f"Means over random_state 0-{args.seeds - 1} (one fit) and over the averages of each {AVERAGED} consecutive "
        'seeds (the mean of their probabilities, as VotingClassifier(voting="soft") predicts), on the split of '
        "random_state 0; accuracy / log loss, fit seconds (an average's: the sum of its fits').\n\n"
        + format_table(records)
    )
    print(table)
    timings = parallel_fits()
    parallel = parallel_table(timings)
    print(parallel)
    table += (
        f"\n\nVotingClassifier of {AVERAGED} default classifiers fitted on the suite's breast cancer split, its fits "
        "one after another or on 3 of joblib's processes or threads, alternated, 3 rounds:\n\n" + parallel
    )
    write_results("seed_averaging", table, {"records": records, "parallel_fits": timings})


if __name__ == "__main__":
    main()
