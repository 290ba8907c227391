"""Scaling out on a Dask cluster: joblib's dask backend, and dask-ml's wrappers.

Needs the ``dask`` extra (``pip install skdiffusion[dask]``); skipped without it.
"""

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from skdiffusion import DiffusionClassifier
from skdiffusion.datasets import make_spirals

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
wrappers = pytest.importorskip("dask_ml.wrappers")

# A local cluster of two worker processes: slow to start, so the whole module is.
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as client:
        yield client


def blobs(n, seed):
    """Two Gaussian blobs in 2-D, their means 6 standard deviations apart."""
    rng = np.random.default_rng(seed)
    y = rng.integers(2, size=n)
    return rng.normal(size=(n, 2)) + 6.0 * (y[:, None] - 0.5), y


def test_grid_search_on_the_cluster_matches_one_process(client):
    X, y = make_spirals(n_samples=200, random_state=0)
    search = GridSearchCV(DiffusionClassifier(max_iter=50, random_state=0), {"n_trials": [4, 8]}, cv=2)
    local = search.fit(X, y)
    best_params, scores = local.best_params_, local.cv_results_
    with joblib.parallel_config(backend="dask"), distributed.get_task_stream(client) as tasks:
        remote = GridSearchCV(DiffusionClassifier(max_iter=50, random_state=0), {"n_trials": [4, 8]}, cv=2, n_jobs=-1)
        remote.fit(X, y)
    assert tasks.data  # the fits ran on the cluster
    assert remote.best_params_ == best_params
    for key in ("split0_test_score", "split1_test_score", "mean_test_score", "rank_test_score"):
        np.testing.assert_array_equal(remote.cv_results_[key], scores[key])


def test_parallel_post_fit_predicts_blockwise_as_in_memory(client):
    X, y = make_spirals(n_samples=300, random_state=0)
    clf = DiffusionClassifier(max_iter=50, n_trials=8, random_state=0).fit(X, y)
    X_dask = da.from_array(X, chunks=(70, -1))  # 5 blocks, the last one of 20 rows
    proba = wrappers.ParallelPostFit(clf).predict_proba(X_dask)
    np.testing.assert_array_equal(proba.compute(), clf.predict_proba(X))


def test_incremental_trains_by_partial_fit(client):
    X, y = blobs(2000, 0)
    X_test, y_test = blobs(400, 1)
    clf = DiffusionClassifier(n_trials=32, batch_size=64, random_state=0)
    model = wrappers.Incremental(clf, shuffle_blocks=False)
    model.fit(da.from_array(X, chunks=200), da.from_array(y, chunks=200), classes=[0, 1])
    fitted = model.estimator_
    np.testing.assert_array_equal(fitted.class_count_, np.bincount(y))
    assert fitted.n_iter_ == 10 * 3  # 10 blocks of 180 training rows: ceil(180 / 64) steps each
    # Bayes accuracy is Phi(3) = 0.9987. At chance, 400 samples score >= 0.9 with
    # probability below 1e-60.
    assert fitted.score(X_test, y_test) >= 0.9


def test_n_jobs_on_the_cluster_matches_one_process(client, monkeypatch):
    X, y = make_spirals(n_samples=300, random_state=0)
    clf = DiffusionClassifier(max_iter=50, n_trials=8, random_state=0).fit(X, y)
    expected = clf.predict_proba(X)
    monkeypatch.setattr("skdiffusion._scoring.CHUNK_PAIRS", 1000)  # 62 rows a job: 5 jobs
    with joblib.parallel_config(backend="dask"), distributed.get_task_stream(client) as tasks:
        np.testing.assert_array_equal(clf.set_params(n_jobs=2).predict_proba(X), expected)
    assert len(tasks.data) >= 5
