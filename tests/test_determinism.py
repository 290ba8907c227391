"""Same data and random_state: bit-identical probabilities, however and wherever computed.

Two fits in one process, fits in fresh processes (other hash seeds, other torch thread
settings), predictions in batches of any size and rows in any order, after pickling and
after clone-and-refit: every `predict_proba` is equal to the last bit. The limits (device,
torch version, CPU kind, the order of the *training* rows) are stated in the user guide.
"""

import json
import os
import pickle
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone

import skdiffusion
from skdiffusion import DiffusionClassifier, MLPDenoiser, _scoring
from skdiffusion.datasets import make_spirals

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Settings a fresh process can rebuild from JSON; each runs every stage of fit.
CONFIGS = {
    "default": {"max_iter": 60, "n_trials": 8, "random_state": 3},
    "early stopping, cosine, l1": {
        "max_iter": 60,
        "n_trials": 8,
        "random_state": 4,
        "early_stopping": True,
        "n_iter_no_change": 1,
        "noise_schedule": "cosine",
        "loss": "l1",
        "batch_size": 32,
    },
    "pruning": {"max_iter": 60, "n_trials": 24, "random_state": 6, "pruning": "t-test"},
    "fixed range, nothing held out": {
        "max_iter": 60,
        "n_trials": 5,
        "random_state": 5,
        "validation_fraction": None,
        "timestep_range": (0.0, 0.3),
    },
}


@pytest.fixture(scope="module")
def data():
    X, y = make_spirals(240, noise=0.05, random_state=0)
    return X[:200], y[:200], X[200:]


@pytest.fixture(scope="module", params=list(CONFIGS))
def fitted(request, data):
    X, y, _ = data
    return request.param, DiffusionClassifier(**CONFIGS[request.param]).fit(X, y)


def test_two_fits_in_one_process(fitted, data):
    name, clf = fitted
    X, y, X_test = data
    again = DiffusionClassifier(**CONFIGS[name]).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X_test), clf.predict_proba(X_test))
    np.testing.assert_array_equal(again.loss_curve_, clf.loss_curve_)
    other_seed = DiffusionClassifier(**{**CONFIGS[name], "random_state": 99}).fit(X, y)
    assert not np.array_equal(other_seed.predict_proba(X_test), clf.predict_proba(X_test))


def test_batch_sizes_and_row_orders(fitted, data, monkeypatch):
    _, clf = fitted
    X, _, X_test = data
    rows = np.vstack([X_test, X[:60]])
    expected = clf.predict_proba(rows)
    one_by_one = np.vstack([clf.predict_proba(rows[i : i + 1]) for i in range(len(rows))])
    np.testing.assert_array_equal(one_by_one, expected)
    in_sevens = np.vstack([clf.predict_proba(rows[i : i + 7]) for i in range(0, len(rows), 7)])
    np.testing.assert_array_equal(in_sevens, expected)
    order = np.random.default_rng(0).permutation(len(rows))
    np.testing.assert_array_equal(clf.predict_proba(rows[order]), expected[order])
    np.testing.assert_array_equal(clf.predict_proba(np.vstack([rows, rows]))[len(rows) :], expected)
    # Internal chunks of 3 samples instead of thousands: the same bits.
    monkeypatch.setattr(_scoring, "CHUNK_PAIRS", 3 * clf.n_trials)
    np.testing.assert_array_equal(clf.predict_proba(rows), expected)


def test_pruning_staged_or_scored_ahead_gives_the_same_bits(data, monkeypatch):
    # Calls of 768 rows: 160 rows x 64 trials (checks after 16, 24, 36 and 54) are scored
    # stage by stage, then ahead before the last check, when the rows left fit in the calls
    # of the stages left; a row alone is scored ahead at once. The same probabilities.
    X, y, X_test = data
    clf = DiffusionClassifier(**CONFIGS["pruning"]).fit(X, y).set_params(n_trials=64)
    monkeypatch.setattr(MLPDenoiser, "eval_batch_size", property(lambda self: 768))
    rows = np.vstack([X_test, X[:120]])
    stages = []
    prune = _scoring.prune

    def counted(score, *args, **kwargs):
        def spy(active, start, stop):
            stages.append((start, stop))
            return score(active, start, stop)

        return prune(spy, *args, **kwargs)

    monkeypatch.setattr(_scoring, "prune", counted)
    expected = clf.predict_proba(rows)
    assert stages[0] == (0, 16) and stages[-1][1] == 64 and stages[-1][0] < 54  # scored ahead before the last check
    stages.clear()
    one_by_one = np.vstack([clf.predict_proba(rows[i : i + 1]) for i in range(len(rows))])
    assert set(stages) == {(0, clf.n_trials)}
    np.testing.assert_array_equal(one_by_one, expected)


def test_a_gaussian_base_gives_a_row_the_same_bits_whatever_rows_stand_beside_it(monkeypatch):
    # Five smooth classes, where the default network has a base. Pruned to two classes of
    # five or fewer, a row's pairs are scored by forward_pairs, which adds the base as
    # forward_all does.
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=1000, n_features=6, n_informative=4, n_classes=5, n_clusters_per_class=1, random_state=0
    )
    clf = DiffusionClassifier(max_iter=60, n_trials=64, random_state=0).fit(X[:400], y[:400])
    assert clf.denoiser_.gaussian_base and clf.denoiser_.base_gate.item() != 0.0
    calls = []
    forward_pairs = MLPDenoiser._forward_pairs  # what scoring calls (see scoring_passes)
    monkeypatch.setattr(MLPDenoiser, "_forward_pairs", lambda *a, **k: calls.append(1) or forward_pairs(*a, **k))
    rows = X[400:]
    for pruning in ("t-test", None):
        clf.set_params(pruning=pruning)
        calls.clear()
        expected = clf.predict_proba(rows)
        assert bool(calls) == (pruning is not None)  # the pruned pairs' path was taken
        one_by_one = np.vstack([clf.predict_proba(rows[i : i + 1]) for i in range(0, len(rows), 10)])
        np.testing.assert_array_equal(one_by_one, expected[::10])
        order = np.random.default_rng(1).permutation(len(rows))
        np.testing.assert_array_equal(clf.predict_proba(rows[order]), expected[order])


def test_a_read_out_alone_gives_a_row_the_same_bits_whatever_rows_stand_beside_it(monkeypatch):
    # Ten classes, where the default network's class enters through its read-out alone:
    # scoring takes the noise off before the read-outs (difference_all), pruned or not.
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=1000, n_features=6, n_informative=4, n_classes=10, n_clusters_per_class=1, random_state=0
    )
    clf = DiffusionClassifier(max_iter=60, n_trials=64, random_state=0).fit(X[:400], y[:400])
    assert clf.denoiser_.label is None
    calls = []
    forward_all = MLPDenoiser._forward_all  # what scoring calls (see scoring_passes)

    def counted(*args, eps=None, **kwargs):
        calls.append(eps is not None)
        return forward_all(*args, eps=eps, **kwargs)

    monkeypatch.setattr(MLPDenoiser, "_forward_all", counted)
    rows = X[400:]
    for pruning in ("t-test", None):
        clf.set_params(pruning=pruning)
        calls.clear()
        expected = clf.predict_proba(rows)
        assert calls and all(calls)  # every call took the noise off
        one_by_one = np.vstack([clf.predict_proba(rows[i : i + 1]) for i in range(0, len(rows), 10)])
        np.testing.assert_array_equal(one_by_one, expected[::10])
        order = np.random.default_rng(1).permutation(len(rows))
        np.testing.assert_array_equal(clf.predict_proba(rows[order]), expected[order])


def test_pickle_and_clone_and_refit(fitted, data):
    name, clf = fitted
    X, y, X_test = data
    expected = clf.predict_proba(X_test)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X_test), expected)
    np.testing.assert_array_equal(clone(clf).fit(X, y).predict_proba(X_test), expected)
    # ... and a clone of a clone, fitted after other fits have run in between.
    np.testing.assert_array_equal(clone(clone(clf)).fit(X, y).predict_proba(X_test), expected)


def test_the_callers_torch_thread_setting_does_not_matter(data):
    X, y, X_test = data
    expected = DiffusionClassifier(**CONFIGS["default"]).fit(X, y).predict_proba(X_test)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        proba = DiffusionClassifier(**CONFIGS["default"]).fit(X, y).predict_proba(X_test)
        assert torch.get_num_threads() == 2  # restored after fit and predict
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(proba, expected)


def test_a_passed_module_gives_the_same_fit_twice(data):
    X, y, X_test = data
    module = MLPDenoiser(2, 2, hidden_size=16, n_blocks=1)
    params = {**CONFIGS["default"], "denoiser": module}
    first = DiffusionClassifier(**params).fit(X, y).predict_proba(X_test)
    np.testing.assert_array_equal(DiffusionClassifier(**params).fit(X, y).predict_proba(X_test), first)


# A fresh interpreter: fits each configuration, and predicts with the parent's pickle.
CHILD = """
import json, pickle, sys, warnings
from pathlib import Path
import numpy as np
import torch

warnings.simplefilter("ignore")
folder, n_threads = Path(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(n_threads)
from skdiffusion import DiffusionClassifier

X, y, X_test = (np.load(folder / f"{name}.npy") for name in ("X", "y", "X_test"))
configs = json.loads((folder / "configs.json").read_text())
for i, params in enumerate(configs):
    if "timestep_range" in params:
        params["timestep_range"] = tuple(params["timestep_range"])
    proba = DiffusionClassifier(**params).fit(X, y).predict_proba(X_test)
    np.save(folder / f"fit{i}_threads{n_threads}.npy", proba)
with open(folder / "parent.pkl", "rb") as f:  # written by the test itself
    np.save(folder / f"unpickled_threads{n_threads}.npy", pickle.load(f).predict_proba(X_test))
"""


@pytest.mark.slow
def test_fresh_processes(data, tmp_path):
    X, y, X_test = data
    for name, array in {"X": X, "y": y, "X_test": X_test}.items():
        np.save(tmp_path / f"{name}.npy", array)
    configs = list(CONFIGS.values())
    (tmp_path / "configs.json").write_text(json.dumps(configs))
    fits = [DiffusionClassifier(**params).fit(X, y) for params in configs]
    (tmp_path / "parent.pkl").write_bytes(pickle.dumps(fits[0]))
    # Two interpreters at once, with other hash seeds and other torch thread settings.
    package_root = str(Path(skdiffusion.__file__).parents[1])  # the skdiffusion under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(n_threads)],
            env={**env, "PYTHONHASHSEED": str(n_threads)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n_threads in (1, 2)
    ]
    for child in children:
        _, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr
    for n_threads in (1, 2):
        for i, clf in enumerate(fits):
            np.testing.assert_array_equal(
                np.load(tmp_path / f"fit{i}_threads{n_threads}.npy"), clf.predict_proba(X_test)
            )
        np.testing.assert_array_equal(
            np.load(tmp_path / f"unpickled_threads{n_threads}.npy"), fits[0].predict_proba(X_test)
        )


SHIFTED_CHILD = """
import json, sys, warnings
import numpy as np
import torch
from sklearn.datasets import load_digits
from skdiffusion import DiffusionClassifier
from skdiffusion.datasets import make_spirals

warnings.simplefilter("ignore")
changed = {}

def shifted(name, clf, rows):
    for pruning in ("t-test", None):
        clf.set_params(pruning=pruning)
        expected = clf.predict_proba(rows)
        changed[f"{name}, {pruning}"] = sum(
            int((clf.predict_proba(rows[shift:]) != expected[shift:]).any(axis=1).sum()) for shift in (1, 3, 7, 17)
        )

X, y = make_spirals(2200, noise=0.05, random_state=0)
clf = DiffusionClassifier(max_iter=60, random_state=3).fit(X[:200], y[:200])
# 120 rows of 64 trials: pairs at every place of the calls of 2,016 rows.
shifted("spirals", clf, X[200:320])
rows = X[200:]  # 2,000 rows: a piece per thread, and per job
# Calls that grow: up to 4,032 rows on a piece of 1,000 rows of 64 trials, 8,064 on all 2,000.
expected = clf.predict_proba(rows)
torch.set_num_threads(1)
changed["spirals, one thread"] = int((clf.predict_proba(rows) != expected).any(axis=1).sum())
torch.set_num_threads(2)
changed["spirals, n_jobs=2"] = int((clf.set_params(n_jobs=2).predict_proba(rows) != expected).any(axis=1).sum())
# Ten classes: forward_all's class slices, forward_pairs' calls once pruning drops classes, the read-out.
X, y = load_digits(return_X_y=True)
shifted("digits", DiffusionClassifier(max_iter=30, random_state=3).fit(X[:500], y[:500]), X[500:700])
print(json.dumps(changed))
"""


@pytest.mark.slow
@pytest.mark.skipif(
    not torch.backends.mkl.is_available() or platform.machine().lower() not in ("x86_64", "amd64"),
    reason="MKL's kernels for CPUs without AVX-512 exist only where torch has MKL, on x86",
)
def test_mkls_avx2_kernels_give_a_row_the_same_bits_wherever_it_falls():
    # torch's and MKL's AVX2 kernels, as on CPUs without AVX-512, which round a product's
    # last rows their own way unless its rows are a multiple of 48, as every product of a
    # scoring call's are (with calls of 2,048 rows, 45 of those 2,000 changed with the threads).
    package_root = str(Path(skdiffusion.__file__).parents[1])
    env = {
        **{name: value for name, value in os.environ.items() if name != "MKL_CBWR"},
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    }
    child = subprocess.run([sys.executable, "-c", SHIFTED_CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    changed = json.loads(child.stdout)
    assert len(changed) == 6 and set(changed.values()) == {0}, changed
