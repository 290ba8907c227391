"""Parallel work: threads and n_jobs give the predictions of one thread bit for bit; fits in threads stay apart."""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pytest
import threadpoolctl
import torch

from skdiffusion import DiffusionClassifier, MLPDenoiser, _classifier, _compute, _scoring, _training
from skdiffusion.datasets import make_spirals


@pytest.fixture(scope="module")
def fitted():
    # Three overlapping classes in 4-D: the t-test settles some samples after 16 or 24 of 32 trials.
    rng = np.random.default_rng(0)
    y = rng.integers(3, size=300)
    X = rng.normal(size=(300, 4)) + y[:, None]
    return DiffusionClassifier(max_iter=50, n_trials=32, random_state=0).fit(X, y), X


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("pruning", ["t-test", None])
def test_parallel_jobs_give_identical_results(fitted, pruning, monkeypatch):
    clf, X = fitted
    clf.set_params(pruning=pruning, n_jobs=None)
    expected = {name: getattr(clf, name)(X) for name in ("predict_proba", "predict_log_proba", "score_samples")}
    # 32 trials x 3 classes: chunks of 20 rows, 15 jobs for the 300 rows.
    monkeypatch.setattr(_scoring, "CHUNK_PAIRS", 2000)
    clf.set_params(n_jobs=2)
    with joblib.parallel_config(backend="loky"):
        for name, values in expected.items():
            np.testing.assert_array_equal(getattr(clf, name)(X), values)
        np.testing.assert_array_equal(clf.predict(X), clf.classes_.take(expected["predict_proba"].argmax(axis=1)))


@pytest.mark.parametrize("n_jobs", [None, 1])
def test_one_job_scores_without_joblib(fitted, n_jobs, monkeypatch):
    clf, X = fitted

    def no_joblib(*args, **kwargs):
        raise AssertionError("joblib.Parallel was called")

    monkeypatch.setattr(_compute, "Parallel", no_joblib)
    assert clf.set_params(n_jobs=n_jobs).predict_proba(X).shape == (300, 3)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fits_in_threads_draw_their_own_initial_weights():
    # Two fits at once in one process, as joblib's threading backend or a Dask worker runs
    # them: each seeds torch's global generator for its network, which must not see the other's.
    def slow_mlp(n_features, n_classes):
        torch.randn(1)
        time.sleep(0.05)  # the other thread's fit would seed and draw here
        return MLPDenoiser(n_features, n_classes)

    X, y = make_spirals(n_samples=100, random_state=0)

    def fit(seed):
        clf = DiffusionClassifier(slow_mlp, max_iter=1, validation_fraction=None, random_state=seed)
        return clf.fit(X, y).denoiser_.state_dict()

    with ThreadPoolExecutor(2) as pool:
        concurrent = list(pool.map(fit, [0, 1]))
    for seed, weights in enumerate(concurrent):
        for name, value in fit(seed).items():
            torch.testing.assert_close(weights[name], value, rtol=0, atol=0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_parallel_progress_is_joblibs_per_job(fitted, monkeypatch, capsys):
    clf, X = fitted
    monkeypatch.setattr(_scoring, "CHUNK_PAIRS", 2000)  # 15 jobs of one chunk of 20 rows
    # Threads: a job's own progress lines would reach this process's stdout.
    with joblib.parallel_config(backend="threading"):
        clf.set_params(n_jobs=2, verbose=1).predict_proba(X)
    clf.set_params(n_jobs=None, verbose=0)
    captured = capsys.readouterr()
    assert "predict:" not in captured.out
    assert "Done  15 out of  15" in captured.err


def _threads_seen(clf, X, monkeypatch):
    """Return predict_proba(X) and the (thread, rows) of each scoring call it made."""
    seen = []
    score = _classifier.mean_errors

    def spy(denoiser, x0, *args, **kwargs):
        seen.append((threading.get_ident(), x0.shape[0]))
        return score(denoiser, x0, *args, **kwargs)

    monkeypatch.setattr(_classifier, "mean_errors", spy)
    return clf.predict_proba(X), seen


@pytest.mark.parametrize("pruning", ["t-test", None])
def test_default_scores_on_the_usable_threads_with_the_results_of_one(fitted, pruning, monkeypatch):
    clf, X = fitted
    clf.set_params(pruning=pruning, n_jobs=1)
    expected, seen = _threads_seen(clf, X, monkeypatch)
    assert seen == [(threading.get_ident(), 300)]
    monkeypatch.setattr(_compute, "usable_threads", lambda torch_threads: 3)
    monkeypatch.setattr(_scoring, "CHUNK_PAIRS", 32 * 3 * 40)  # chunks of 40 rows: 8 of them, then 9 pieces
    monkeypatch.setattr(_scoring, "PIECE_CALLS", 0)  # pieces of any size
    clf.set_params(n_jobs=None)
    probabilities, seen = _threads_seen(clf, X, monkeypatch)
    np.testing.assert_array_equal(probabilities, expected)
    assert sorted(rows for _, rows in seen) == [28] + [34] * 8  # 3 rounds of 3 threads, in the order they finish
    assert threading.get_ident() not in {thread for thread, _ in seen} and len({t for t, _ in seen}) >= 2


def test_rows_are_split_over_threads_only_where_each_piece_fills_its_calls(fitted, monkeypatch):
    # Each thread's piece holds PIECE_CALLS scoring calls' worth of (row, trial) pairs for
    # every stage of pruning (32 trials: checks after 16 and 24, three stages); fewer rows
    # are scored in the caller's thread, where padded calls would cost a second thread more
    # than it saves.
    clf, X = fitted
    assert _scoring.PairedTTest().checkpoints(32) == [16, 24]
    monkeypatch.setattr(_compute, "usable_threads", lambda torch_threads: 2)
    for pruning, stages in ((None, 1), ("t-test", 3)):
        clf.set_params(pruning=pruning, n_jobs=None)
        piece = -(-_scoring.PIECE_CALLS * stages * clf.denoiser_.eval_batch_size // 32)
        rows = np.resize(X, (2 * piece, X.shape[1]))
        _, seen = _threads_seen(clf, rows[:-1], monkeypatch)
        assert seen == [(threading.get_ident(), 2 * piece - 1)]
        _, seen = _threads_seen(clf, rows, monkeypatch)
        assert [n for _, n in seen] == [piece, piece] and threading.get_ident() not in {t for t, _ in seen}


def test_the_threads_follow_torch_threadpoolctl_and_the_affinity_mask(fitted, monkeypatch):
    clf, X = fitted
    clf.set_params(n_jobs=None)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the caller's choice
        _, seen = _threads_seen(clf, X, monkeypatch)
        assert seen == [(threading.get_ident(), 300)]
    finally:
        torch.set_num_threads(previous)
    assert torch.get_num_threads() == previous
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert _compute.usable_threads(torch.get_num_threads()) == 1
    assert _compute.usable_threads(10_000) == len(os.sched_getaffinity(0))
    assert _compute.usable_threads(1) == 1


def test_each_scoring_thread_runs_one_openmp_thread(monkeypatch):
    # oneDNN reads OpenMP's setting of the thread that calls it, which a new thread does
    # not take from torch's: each scoring thread sets its own to one.
    def torch_openmp_threads():
        torch_dir = os.path.dirname(torch.__file__)
        libraries = threadpoolctl.threadpool_info()
        return [lib["num_threads"] for lib in libraries if lib["user_api"] == "openmp" and torch_dir in lib["filepath"]]

    if not torch_openmp_threads():
        pytest.skip("torch's OpenMP library is not visible to threadpoolctl here")
    seen = []

    def score(x, mask=None, verbose=0):
        seen.append(torch_openmp_threads())
        return (np.zeros(x.shape[0]),)

    monkeypatch.setattr(_compute, "usable_threads", lambda torch_threads: 2)
    with ThreadPoolExecutor(1) as pool:  # a new thread's own setting: the machine's cores, here more than one
        fresh = pool.submit(torch_openmp_threads).result()
    _compute.run_in_jobs(score, torch.zeros(8, 2), rows=2, n_jobs=None)
    assert len(seen) == 4 and all(threads == [1] for threads in seen)
    assert os.cpu_count() == 1 or fresh != [1]  # what the threads would otherwise run on


def _skip_unless_the_cpu_flushes_denormals():
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    torch.set_flush_denormal(False)


def test_every_scoring_thread_flushes_denormals_and_the_callers_setting_comes_back(monkeypatch):
    _skip_unless_the_cpu_flushes_denormals()

    def score(x, mask=None, verbose=0):  # each row: whether its piece's thread flushed
        return (np.full(x.shape[0], _compute._flushing()),)

    monkeypatch.setattr(_compute, "usable_threads", lambda torch_threads: 2)
    assert not _compute._flushing()  # torch's default
    for n_jobs in (None, 1, 2):  # threads of this process, this thread, joblib's processes
        (flushed,) = _compute.run_in_jobs(score, torch.zeros(8, 2), rows=2, n_jobs=n_jobs)
        assert flushed.shape == (8,) and flushed.all()
        assert not _compute._flushing()
    # A caller that flushes already still does after.
    torch.set_flush_denormal(True)
    try:
        _compute.run_in_jobs(score, torch.zeros(8, 2), rows=2, n_jobs=None)
        assert _compute._flushing()
    finally:
        torch.set_flush_denormal(False)
    # Flushed, a float below 1.2e-38 is 0: the product that tells the setting.
    with _compute.denormals_flushed():
        assert (torch.tensor(1e-30) * torch.tensor(1e-10)).item() == 0.0
    assert (torch.tensor(1e-30) * torch.tensor(1e-10)).item() > 0.0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_and_predict_leave_the_callers_denormals_as_they_were(monkeypatch):
    _skip_unless_the_cpu_flushes_denormals()
    X, y = make_spirals(120, noise=0.05, random_state=0)
    seen = []
    step = _training._step

    def recorded(*args, **kwargs):
        seen.append(_compute._flushing())
        return step(*args, **kwargs)

    monkeypatch.setattr(_training, "_step", recorded)
    clf = DiffusionClassifier(max_iter=20, n_trials=8, random_state=0).fit(X, y)
    assert seen and all(seen) and not _compute._flushing()  # the training steps flushed
    proba = clf.predict_proba(X)
    assert not _compute._flushing()
    # A caller that flushes gets the same model and probabilities, and still flushes after.
    torch.set_flush_denormal(True)
    try:
        again = DiffusionClassifier(max_iter=20, n_trials=8, random_state=0).fit(X, y)
        np.testing.assert_array_equal(again.predict_proba(X), proba)
        assert _compute._flushing()
    finally:
        torch.set_flush_denormal(False)


def test_threads_report_each_tenth_of_the_rows_in_order(fitted, monkeypatch, capsys):
    clf, X = fitted
    monkeypatch.setattr(_compute, "usable_threads", lambda torch_threads: 2)
    monkeypatch.setattr(_scoring, "CHUNK_PAIRS", 32 * 3 * 40)  # 8 chunks of 40 rows: 8 pieces of 38
    monkeypatch.setattr(_scoring, "PIECE_CALLS", 0)
    clf.set_params(n_jobs=None, verbose=1).predict_proba(X)
    clf.set_params(verbose=0)
    assert capsys.readouterr().out.splitlines() == [
        f"predict: {n}/300 samples" for n in (38, 76, 114, 152, 190, 228, 266, 300)
    ]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_chooses_the_trials_on_the_usable_threads_with_the_result_of_one(monkeypatch):
    # Rows with holes and a categorical column: the mask and the categories' term travel with each piece.
    rng = np.random.default_rng(0)
    y = rng.integers(3, size=200)
    X = (rng.normal(size=(200, 4)) + y[:, None]).astype(object)
    X[rng.random((200, 4)) < 0.1] = np.nan
    X[:, 3] = np.where(rng.random(200) < 0.8, y, 0).astype(str)
    params = dict(max_iter=30, n_trials=8, random_state=0, refit=False, categorical_features=[3])
    calls = []
    in_threads = _compute._in_threads

    def counted(fn, x, mask, rows, workers, verbose):
        calls.append((x.shape[0], workers))
        return in_threads(fn, x, mask, rows, workers, verbose)

    monkeypatch.setattr(_compute, "_in_threads", counted)
    monkeypatch.setattr(_scoring, "CHUNK_PAIRS", 256 * 3 * 4)  # pieces of 4 of the 20 held-out rows
    monkeypatch.setattr(_scoring, "PIECE_CALLS", 0)
    one = DiffusionClassifier(**params).fit(X, y)  # the tests' torch setting: one thread
    assert calls == []
    with threadpoolctl.threadpool_limits(2), monkeypatch.context() as context:
        context.setattr(_compute.os, "sched_getaffinity", lambda pid: {0, 1})
        torch.set_num_threads(2)
        try:
            two = DiffusionClassifier(**params).fit(X, y)
            with_one_job = DiffusionClassifier(**params, n_jobs=1).fit(X, y)
        finally:
            torch.set_num_threads(1)
    assert calls == [(20, 2), (20, 2)]  # the choice after the first training, and after the tuning
    for fitted in (two, with_one_job):
        assert (fitted.timestep_range_, fitted.scale_, fitted.category_weight_) == (
            one.timestep_range_,
            one.scale_,
            one.category_weight_,
        )
