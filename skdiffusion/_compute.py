"""How the work runs: on one torch thread, with seeded network builds, in pieces of rows on threads or joblib jobs."""

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

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
    """Run the block on one torch thread, with denormal floats flushed to zero, then restore the caller's setting.

    Yields the caller's number of torch threads. On two cores shared with another busy
    process, two torch threads made predict_proba and fit several times slower than one
    (OpenMP threads spin while they wait for each other), while on an idle machine they
    gained less than 2x: work is shared between threads of one torch thread each instead
    (see :func:`run_in_jobs`). For the denormals, see :func:`denormals_flushed`.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with denormals_flushed():
            yield previous
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def denormals_flushed():
    """Run the block with denormal floats flushed to zero on this thread (``torch.set_flush_denormal``), as after.

    Floats below 1.2e-38 in magnitude take the CPU a slow path, tens of times slower per
    operation: the SiLU of a unit far below zero, and the gradients through it, are such
    floats, and a fit on 500 features (1,000 rows) took 2.3 times as long with them
    (benchmarks/results/denormals.md). Flushed, each moves by less than 1.2e-38, and
    results without such floats are the same bit for bit. The setting is the thread's own
    (x86's MXCSR register); torch has no way to read it, so it is read from a product whose
    exact value is such a float. Where the CPU cannot flush, nothing changes.
    """
    flushing = _flushing()
    if not flushing:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not flushing:
            torch.set_flush_denormal(False)


def _flushing():
    """Return True if this thread flushes denormal floats to zero: ``1e-30 * 1e-10`` comes out 0."""
    return bool((torch.tensor(1e-30) * torch.tensor(1e-10)).item() == 0.0)


def usable_threads(torch_threads):
    """Return how many threads may score at once: ``torch_threads``, at most the CPUs this process may run on.

    ``torch_threads`` is the caller's ``torch.get_num_threads()``, which follows
    ``torch.set_num_threads``, ``OMP_NUM_THREADS`` and threadpoolctl's OpenMP limits.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks on this platform (macOS, Windows)
        cpus = os.cpu_count() or 1
    return max(1, min(torch_threads, cpus))


def report_progress(start, stop, total):
    """Print the rows done when rows ``start:stop`` of ``total`` complete a tenth of them."""
    if 10 * stop // total > 10 * start // total:
        print(f"predict: {stop}/{total} samples")


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


def run_in_jobs(fn, x, *, rows, n_jobs, verbose=0, mask=None, threads=None, min_rows=1):
    """Return ``fn(x, mask=mask)``, a tuple of arrays over the rows of ``x``, computed on one torch thread at a time.

    ``n_jobs=None``: the rows (of ``x`` and ``mask``) are cut into pieces of at most
    ``rows``, as many as keep ``threads`` busy (None: the :func:`usable_threads` of the
    caller's torch setting; a fit, on one torch thread already, passes the user's) but
    no more than leave ``min_rows`` to each thread, and each is scored in a
    thread of this process (one torch thread each, so no thread waits on another's
    progress when other work shares the cores); ``verbose`` reports each tenth of the
    rows done. ``n_jobs=1``, or a single usable thread: ``fn`` runs in this thread. Any
    other ``n_jobs``: chunks of ``rows``, each a joblib job of ``fn(chunk, mask=chunk's,
    verbose=0)`` on the backend of the moment; progress is then joblib's, per finished
    job. A row's result does not depend on its piece, so the results are the same.
    """
    # Around the jobs too: with the threading backend, they share this process's setting.
    with one_torch_thread() as torch_threads:
        workers = min(threads or usable_threads(torch_threads), x.shape[0] // min_rows) if n_jobs is None else 1
        if n_jobs in (None, 1) and (workers <= 1 or x.shape[0] < 2):
            return fn(x, mask=mask, verbose=verbose)
        if n_jobs is None:
            results = _in_threads(fn, x, mask, rows, workers, verbose)
        else:
            # Cloned: a pickled view would carry all of x to every job.
            jobs = (
                delayed(_on_one_thread)(fn, chunk.clone(), mask=None if m is None else m.clone(), verbose=0)
                for chunk, m in _pieces(x, mask, rows)
            )
            results = Parallel(n_jobs=n_jobs, verbose=10 * bool(verbose))(jobs)
    return tuple(np.concatenate(parts) for parts in zip(*results))


def _pieces(x, mask, size):
    """Return the ``(rows of x, rows of mask or None)`` pieces of ``size`` rows."""
    masks = itertools.repeat(None) if mask is None else torch.split(mask, size)
    return list(zip(torch.split(x, size), masks))


def _in_threads(fn, x, mask, rows, workers, verbose):
    """Return the results of ``fn`` on pieces of ``x``'s rows, scored by ``workers`` threads, in order."""
    n_pieces = ceil_div(ceil_div(x.shape[0], rows), workers) * workers  # a whole number of rounds
    pieces = _pieces(x, mask, ceil_div(x.shape[0], n_pieces))
    results, done = [], 0
    # Each thread sets one torch thread for itself: torch's setting is the process's, but
    # oneDNN (see _denoisers._product) reads OpenMP's of the calling thread, which a new
    # thread does not inherit.
    with ThreadPoolExecutor(workers) as pool:
        for result in pool.map(lambda piece: _on_one_thread(fn, piece[0], mask=piece[1], verbose=0), pieces):
            results.append(result)
            if verbose and len(pieces) > 1:
                report_progress(done, done + result[0].shape[0], x.shape[0])
            done += result[0].shape[0]
    return results
