"""How the work runs: on one torch thread, with seeded network builds, in chunks of rows and joblib jobs."""

import contextlib
import itertools
import threading

import numpy as np
import torch
from sklearn.utils.parallel import Parallel, delayed

# Held while torch's global generator is seeded to build a network: fits in threads of one
# process (joblib's threading backend, a Dask worker running two tasks) would otherwise
# draw from each other's seed.
_GLOBAL_RNG_LOCK = threading.Lock()


def ceil_div(a, b):
    """Return ``ceil(a / b)`` for integers, exactly."""
    return -(-a // b)


@contextlib.contextmanager
def one_torch_thread():
    """Run the block on one torch thread, then restore the caller's setting.

    On two cores shared with another busy process, two torch threads made predict_proba
    and fit several times slower than one (OpenMP threads spin while they wait), while on
    an idle machine they gained less than 2x: parallelism is safer across processes.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def seeded_torch(seed):
    """Seed torch's global generator for the block (which builds a network); restore the caller's after."""
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _on_one_thread(fn, *args, **kwargs):
    """Return ``fn(*args, **kwargs)``, run on one torch thread (a job's body)."""
    with one_torch_thread():
        return fn(*args, **kwargs)


def run_in_jobs(fn, x, *, rows, n_jobs, verbose=0, mask=None):
    """Return ``fn(x, mask=mask)``, a tuple of arrays over the rows of ``x``, computed on one torch thread.

    With ``n_jobs`` other than None or 1, the rows (of ``x`` and ``mask``) are cut into
    chunks of ``rows``, each a joblib job of ``fn(chunk, mask=chunk's, verbose=0)`` on the
    backend of the moment, and the results are concatenated; progress is then joblib's,
    per finished job.
    """
    # Around the jobs too: with the threading backend, they share this process's setting.
    with one_torch_thread():
        if n_jobs in (None, 1):
            return fn(x, mask=mask, verbose=verbose)
        masks = itertools.repeat(None) if mask is None else torch.split(mask, rows)
        # Cloned: a pickled view would carry all of x to every job.
        jobs = (
            delayed(_on_one_thread)(fn, chunk.clone(), mask=None if m is None else m.clone(), verbose=0)
            for chunk, m in zip(torch.split(x, rows), masks)
        )
        results = Parallel(n_jobs=n_jobs, verbose=10 * bool(verbose))(jobs)
    return tuple(np.concatenate(parts) for parts in zip(*results))
