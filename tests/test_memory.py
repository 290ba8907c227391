"""``memory``: a fit with the same training reuses the network trained before, as ``Pipeline(memory=...)`` does."""

import functools

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

from skdiffusion import DiffusionClassifier, MLPDenoiser, _classifier, _fitting, load, save

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SMALL_MLP = functools.partial(MLPDenoiser, hidden_size=32, n_blocks=2)


def _clf(**params):
    return DiffusionClassifier(**{"denoiser": SMALL_MLP, "max_iter": 30, "n_trials": 8, "random_state": 0, **params})


@pytest.fixture
def trainings(monkeypatch):
    """Count the trainings run: the calls of run_plan, direct (no memory) or through the cache."""
    calls = []
    run_plan = _fitting.run_plan

    def counted(*args, **kwargs):
        calls.append(1)
        return run_plan(*args, **kwargs)

    monkeypatch.setattr(_fitting, "run_plan", counted)
    monkeypatch.setattr(_classifier, "run_plan", counted)
    return calls


def test_same_training_is_reused_and_predicts_as_without_memory(spirals, tmp_path, trainings):
    X, y = spirals
    first = _clf(memory=str(tmp_path)).fit(X, y)
    again = _clf(memory=joblib.Memory(str(tmp_path), verbose=0), n_trials=16, pruning=None, n_jobs=1).fit(X, y)
    assert len(trainings) == 1
    plain = _clf(n_trials=16, pruning=None).fit(X, y)
    assert len(trainings) == 2
    np.testing.assert_array_equal(again.predict_proba(X), plain.predict_proba(X))
    assert again.loss_curve_ == first.loss_curve_ == plain.loss_curve_
    assert (again.scale_, again.timestep_range_) == (plain.scale_, plain.timestep_range_)


@pytest.mark.parametrize("change", [{"max_iter": 31}, {"learning_rate": 2e-3}, {"random_state": 1}, {"rows": 199}])
def test_another_training_is_not_looked_up(spirals, tmp_path, trainings, change):
    X, y = spirals
    _clf(memory=str(tmp_path)).fit(X, y)
    rows = change.pop("rows", len(y))
    _clf(memory=str(tmp_path), **change).fit(X[:rows], y[:rows])
    assert len(trainings) == 2


def test_verbose_and_callbacks_do_not_change_the_key(spirals, tmp_path, trainings, capsys):
    X, y = spirals
    _clf(memory=str(tmp_path), verbose=1).fit(X, y)
    assert "Iteration" in capsys.readouterr().out
    _clf(memory=str(tmp_path)).fit(X, y)
    assert len(trainings) == 1


def test_random_state_none_trains_every_time(spirals, tmp_path, trainings):
    X, y = spirals
    _clf(memory=str(tmp_path), random_state=None).fit(X, y)
    _clf(memory=str(tmp_path), random_state=None).fit(X, y)
    assert len(trainings) == 2


def test_continued_fits_are_not_cached(spirals, tmp_path, trainings):
    X, y = spirals
    clf = _clf(memory=str(tmp_path), warm_start=True).fit(X, y)
    clf.fit(X, y)  # continues the fitted network: trains, from another start than a new fit
    assert len(trainings) == 2 and clf.n_iter_ == 60
    _clf(memory=str(tmp_path)).partial_fit(X, y, classes=[0, 1])
    _clf(memory=str(tmp_path)).partial_fit(X, y, classes=[0, 1])
    assert len(trainings) == 4


def test_a_training_cut_short_is_not_kept(spirals, tmp_path, trainings, monkeypatch):
    X, y = spirals
    run_plan = _fitting.run_plan

    def interrupted(*args, **kwargs):
        network, state, trials = run_plan(*args, **kwargs)
        state.interrupted = True
        return network, state, trials

    monkeypatch.setattr(_fitting, "run_plan", interrupted)
    _clf(memory=str(tmp_path)).fit(X, y)
    monkeypatch.setattr(_fitting, "run_plan", run_plan)  # the counting one
    _clf(memory=str(tmp_path)).fit(X, y)
    _clf(memory=str(tmp_path)).fit(X, y)
    assert len(trainings) == 2  # the cut one, then one kept and looked up


@pytest.mark.slow
def test_grid_search_over_n_trials_trains_once_per_fold(spirals, tmp_path, trainings):
    X, y = spirals
    search = GridSearchCV(_clf(memory=str(tmp_path)), {"n_trials": [4, 8, 16, 32]}, cv=3).fit(X, y)
    assert len(trainings) == 3 + 1  # a training per fold, and the refit on every row
    without = GridSearchCV(_clf(), {"n_trials": [4, 8, 16, 32]}, cv=3).fit(X, y)
    assert len(trainings) == 4 + 4 * 3 + 1
    np.testing.assert_array_equal(search.cv_results_["mean_test_score"], without.cv_results_["mean_test_score"])


def test_bad_memory_is_refused(spirals):
    X, y = spirals
    with pytest.raises(InvalidParameterError, match="'memory' parameter"):
        _clf(memory=3).fit(X, y)


def test_save_stores_no_cache(spirals, tmp_path):
    X, y = spirals
    clf = _clf(memory=str(tmp_path / "cache")).fit(X, y)
    save(clf, tmp_path / "model.safetensors")
    loaded = load(tmp_path / "model.safetensors")
    assert loaded.memory is None
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
