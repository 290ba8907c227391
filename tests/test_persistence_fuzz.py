"""Loading mutated files: a clean ValueError or a working model, never a crash or a large allocation.

A hostile file recomputes its digest, so the mutations here are re-signed: the loader's
own checks, not the digest, must catch them. Byte-level damage (truncation, flipped
bytes) keeps the old digest, as corruption would.
"""

import copy
import json
import math
import resource
import struct
import tracemalloc
import warnings

import numpy as np
import pytest
import safetensors.torch
import torch
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

import skdiffusion
from skdiffusion import DiffusionClassifier
from skdiffusion._persistence import _digest

X, Y = make_blobs(n_samples=120, centers=[[-2, 0], [2, 0], [0, 3]], cluster_std=0.5, random_state=0)
N_FILES = 1200
# Values a hostile file may put anywhere: huge, negative, non-finite, of the wrong type, or
# tagged arrays that declare more than they hold.
HOSTILE = [
    None,
    True,
    -1,
    0,
    1,
    2**31,
    10**12,
    -(10**12),
    1.5,
    1e308,
    -1e308,
    math.nan,
    math.inf,
    "",
    "x" * 10,
    "<U20000000",
    [],
    {},
    [1, 2, 3],
    {"__array__": "<f8", "shape": [10**9], "data": []},
    {"__array__": "<f8", "shape": [3], "data": [1.0, 2.0]},
    {"__array__": "<U99999999", "shape": [1], "data": ["a"]},
    {"__array__": "|O", "shape": [1], "data": [{"a": 1}]},
    {"__tuple__": []},
    {"__scalar__": "<f8", "value": "x"},
    {"__random_state__": ["MT19937", [1], 0, 0, 0.0]},
    {"__mapping__": [[1]]},
]
DTYPES = ["<f8", "<f4", "<i8", "|b1", "<U1", "<U100000000", "|O", "<M8[s]", "<c16", "|S5", "float64", "nonsense"]


def _leaves(value, path=()):
    """Yield the path of every value inside ``value`` (dict keys and list indices)."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:50]):  # long lists (loss curves): their head
            yield from _leaves(item, (*path, index))


def _mutate(content, rng):
    """Return a copy of ``content`` with one random mutation."""
    content = copy.deepcopy(content)
    paths = [path for path in _leaves(content) if path]
    path = paths[rng.integers(len(paths))]
    parent = content
    for key in path[:-1]:
        parent = parent[key]
    kind = rng.integers(4)
    if kind == 0:  # any value becomes a hostile one
        parent[path[-1]] = copy.deepcopy(HOSTILE[rng.integers(len(HOSTILE))])
    elif kind == 1 and isinstance(parent, dict):  # an entry disappears
        del parent[path[-1]]
    elif kind == 2:  # an array's dtype or shape changes
        arrays = [p for p in paths if p[-1] == "__array__"]
        target = content
        for key in arrays[rng.integers(len(arrays))][:-1]:
            target = target[key]
        if rng.integers(2):
            target["__array__"] = DTYPES[rng.integers(len(DTYPES))]
        else:
            target["shape"] = [int(n) for n in rng.integers(0, 5, size=rng.integers(0, 3))]
    else:  # a number changes a little, or a lot
        value = parent[path[-1]]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parent[path[-1]] = value * float(rng.choice([-1, 0, 0.5, 2, 1e6]))
        else:
            parent[path[-1]] = copy.deepcopy(HOSTILE[rng.integers(len(HOSTILE))])
    return content


def _write(path, content, tensors, metadata):
    metadata = {**metadata, "content": json.dumps(content)}
    metadata["sha256"] = _digest(metadata["content"], tensors)
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))


def _load_outcome(path):
    """Return ("refused" or "loaded", the load's peak of traced allocations above what was held before, in bytes).

    Raises if loading or predicting fails other than by a ValueError.
    """
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        loaded = skdiffusion.load(path)
    except ValueError:
        return "refused", tracemalloc.get_traced_memory()[1] - before
    peak = tracemalloc.get_traced_memory()[1] - before
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proba = loaded.predict_proba(X[:8])
    except ValueError:
        return "refused", peak
    assert proba.shape == (8, loaded.classes_.size) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    return "loaded", peak


@pytest.mark.slow
def test_mutated_files_load_cleanly_or_are_refused_without_large_allocations(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = DiffusionClassifier(max_iter=30, n_trials=8, random_state=0).fit(X, Y)
    original = tmp_path / "model.safetensors"
    skdiffusion.save(clf, original)
    data = original.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8 : 8 + size])["__metadata__"]
    content = json.loads(metadata["content"])
    tensors = safetensors.torch.load(data)
    weights_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    budget = 10 * len(data) + weights_bytes
    rng = np.random.default_rng(0)
    path = tmp_path / "mutated.safetensors"
    tracemalloc.start()
    _load_outcome(original)  # warm: imports, caches
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    outcomes, peaks = {"refused": 0, "loaded": 0}, []
    try:
        for i in range(N_FILES):
            kind = i % 10
            if kind < 7:  # re-signed edits of the content
                _write(path, _mutate(content, rng), tensors, metadata)
            elif kind == 7:  # re-signed weights of another shape or dtype
                name = sorted(tensors)[rng.integers(len(tensors))]
                changed = dict(tensors)
                options = [tensors[name][:1], tensors[name].double(), torch.zeros(3, 7)]
                changed[name] = options[rng.integers(len(options))]
                _write(path, content, changed, metadata)
            elif kind == 8:  # truncated
                path.write_bytes(data[: rng.integers(len(data))])
            else:  # a flipped byte
                damaged = bytearray(data)
                damaged[rng.integers(len(data))] ^= 0xFF
                path.write_bytes(bytes(damaged))
            outcome, peak = _load_outcome(path)
            outcomes[outcome] += 1
            peaks.append(peak)
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    print(
        f"{N_FILES} files: {outcomes}; file {len(data)} B, weights {weights_bytes} B; largest traced peak of a "
        f"load {max(peaks)} B (budget {budget} B); peak RSS growth {rss_growth} B"
    )
    assert sum(outcomes.values()) == N_FILES and outcomes["refused"] >= N_FILES // 2
    assert max(peaks) <= budget  # Python and numpy allocations of one load (traced from its start)
    assert rss_growth <= 64 * 2**20  # torch's too: a network of the declared size would take gigabytes
