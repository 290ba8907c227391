"""The accuracy suite: six data sets, each split 70/30 the same way."""

import json
import platform
import time
from pathlib import Path

from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_moons
from sklearn.model_selection import train_test_split

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


def split(name):
    """Return ``X_train, X_test, y_train, y_test`` of a suite data set."""
    X, y = DATASETS[name]()
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def timed(fn, *args):
    """Return ``(fn(*args), seconds)``."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


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


def write_results(name, table, records):
    """Write the printed table and the raw records under ``benchmarks/results/``."""
    RESULTS.mkdir(exist_ok=True)
    header = f"Machine: {platform.machine()}, {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')}\n\n"
    (RESULTS / f"{name}.md").write_text(header + table + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps(records, indent=1) + "\n")
