"""Held-out accuracy, log loss and time of DiffusionClassifier beside scikit-learn's classifiers.

Run ``python benchmarks/accuracy.py``; it prints a table and writes
``benchmarks/results/accuracy.md`` and ``.json``. ``--set key=value`` changes a
DiffusionClassifier parameter (``random_state=0`` is always set), ``--datasets`` picks
rows and ``--no-baselines`` skips the scikit-learn columns (for tuning). ``--seeds N``
(default 5) also fits DiffusionClassifier and MLPClassifier with ``random_state`` 0 to
N - 1 and tabulates the spread: on these small test sets, one seed is one draw.
"""

import argparse
import warnings

import numpy as np
import torch
from _suite import DATASETS, parse_settings, scores, split, timed, write_results
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from skdiffusion import DiffusionClassifier

BASELINES = {
    "SVC": lambda: SVC(probability=True, random_state=0),
    "MLP": lambda: MLPClassifier(max_iter=1000, random_state=0),
    "RF": lambda: RandomForestClassifier(random_state=0),
    "HGB": lambda: HistGradientBoostingClassifier(random_state=0),
    "GaussianNB": GaussianNB,
    "QDA": lambda: QuadraticDiscriminantAnalysis(reg_param=0.01),
    "kNN": KNeighborsClassifier,
    "LogReg": LogisticRegression,
}


def expected_calibration_error(y_true, y_pred, proba, n_bins=15):
    """Top-label ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    confidence = proba.max(axis=1)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    correct = y_pred == y_true
    return sum(
        abs(correct[bins == b].mean() - confidence[bins == b].mean()) * np.mean(bins == b) for b in np.unique(bins)
    )


def evaluate(model, data):
    """Fit and score ``model``; return accuracy, log loss and seconds."""
    X_train, X_test, y_train, y_test = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, fit_s = timed(model.fit, X_train, y_train)
    proba, predict_s = timed(model.predict_proba, X_test)
    y_pred = model.classes_.take(proba.argmax(axis=1))
    return {
        **scores(y_test, proba, model.classes_),
        "ece": expected_calibration_error(y_test, y_pred, proba),
        "fit_s": fit_s,
        "predict_s": predict_s,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--output", default="accuracy")
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    settings = parse_settings(args.set)
    baselines = {} if args.no_baselines else BASELINES

    records, seed_records = [], []
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)  # SVC(probability=True), deprecated in 1.9
        # One-time costs (torch's lazy imports, ~1 s) are paid before anything is timed.
        evaluate(DiffusionClassifier(max_iter=1, n_trials=1, random_state=0), split("iris"))
        for name in args.datasets:
            data = split(name)
            diffusion = DiffusionClassifier(**{"random_state": 0, **settings})
            records.append({"data": name, "model": "Diffusion", **evaluate(diffusion, data)})
            for model_name, make in baselines.items():
                model = make_pipeline(StandardScaler(), make())
                records.append({"data": name, "model": model_name, **evaluate(model, data)})
            shown = [r for r in records if r["data"] == name]
            print(" ".join(f"{r['model']}={r['accuracy']:.3f}" for r in shown), f"({name})", flush=True)
            # Seed 0 is the run above; the seeds' table takes it from there.
            seed_records += [{**r, "seed": 0} for r in shown if r["model"] in ("Diffusion", "MLP")]
            for seed in range(1, args.seeds):
                seeded = {"Diffusion": DiffusionClassifier(**{**settings, "random_state": seed})}
                if baselines:
                    seeded["MLP"] = make_pipeline(StandardScaler(), MLPClassifier(max_iter=1000, random_state=seed))
                for model_name, model in seeded.items():
                    seed_records.append({"data": name, "model": model_name, "seed": seed, **evaluate(model, data)})

    table = format_table(records, settings) + format_seed_table(seed_records)
    print(table)
    if not args.no_baselines or args.output != "accuracy":
        results = {"settings": settings, "torch": torch.__version__, "records": records, "seed_records": seed_records}
        write_results(args.output, table, results)


def format_table(records, settings):
    """Return markdown tables: accuracy per model, then DiffusionClassifier's details."""
    models = list(dict.fromkeys(r["model"] for r in records))
    names = list(dict.fromkeys(r["data"] for r in records))
    by = {(r["data"], r["model"]): r for r in records}
    lines = [f"DiffusionClassifier settings: random_state=0 {settings or ''}".rstrip(), ""]
    lines += ["| data | " + " | ".join(models) + " | best other |", "|---" * (len(models) + 2) + "|"]
    for name in names:
        others = [by[name, m]["accuracy"] for m in models if m != "Diffusion"]
        best = f"{max(others):.3f}" if others else "-"
        lines.append(f"| {name} | " + " | ".join(f"{by[name, m]['accuracy']:.3f}" for m in models) + f" | {best} |")
    lines += ["", "| data | model | accuracy | log loss | ECE | fit s | predict s |", "|---|---|---|---|---|---|---|"]
    for r in records:
        if r["model"] in ("Diffusion", "MLP", "SVC", "GaussianNB"):
            lines.append(
                f"| {r['data']} | {r['model']} | {r['accuracy']:.3f} | {r['log_loss']:.3f} | {r['ece']:.3f} "
                f"| {r['fit_s']:.2f} | {r['predict_s']:.2f} |"
            )
    for name in names:
        if (name, "MLP") in by and (name, "SVC") in by:
            better = min(by[name, "MLP"]["log_loss"], by[name, "SVC"]["log_loss"])
            diffusion = by[name, "Diffusion"]["log_loss"]
            verdict = "no worse" if diffusion <= better else "worse"
            lines.append(
                f"\n{name}: Diffusion log loss {diffusion:.3f}, {verdict} than the better of MLP and SVC ({better:.3f})"
            )
    for name in names:
        if (name, "MLP") in by:
            ratio = by[name, "Diffusion"]["fit_s"] / by[name, "MLP"]["fit_s"]
            lines.append(f"\n{name}: DiffusionClassifier fit / MLPClassifier fit = {ratio:.2f} (same run)")
    return "\n".join(lines)


def format_seed_table(seed_records):
    """Return a markdown table of accuracy and log loss over seeds: mean, min and max."""
    if not seed_records:
        return ""
    seeds = sorted({r["seed"] for r in seed_records})
    lines = [
        "",
        f"\nOver random_state = {seeds[0]}..{seeds[-1]}: mean (min-max)",
        "",
        "| data | model | accuracy | log loss |",
        "|---|---|---|---|",
    ]
    for key in dict.fromkeys((r["data"], r["model"]) for r in seed_records):
        rows = [r for r in seed_records if (r["data"], r["model"]) == key]
        cells = []
        for metric in ("accuracy", "log_loss"):
            values = np.array([r[metric] for r in rows])
            cells.append(f"{values.mean():.3f} ({values.min():.3f}-{values.max():.3f})")
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
