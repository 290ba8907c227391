"""Shared test settings."""

import pytest
import torch

from skdiffusion import DiffusionClassifier, _calibration, _classifier, _fitting
from skdiffusion.datasets import make_spirals


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The library trains and predicts with one torch thread; unit tests that call its
    # functions directly do the same, so that a busy second core cannot slow them down.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def spirals_split():
    """Two spirals, 300 training rows and 100 test rows: ``X, y, X_test, y_test``."""
    X, y = make_spirals(400, noise=0.05, random_state=0)
    return X[:300], y[:300], X[300:], y[300:]


@pytest.fixture(scope="session")
def spirals():
    """Two spirals of 200 rows, ``(X, y)``, for tests of a cheap network's fit."""
    return make_spirals(200, noise=0.05, random_state=0)


@pytest.fixture(scope="session")
def fitted_spirals(spirals_split):
    """A classifier fitted once on ``spirals_split``, shared by the tests that only read it."""
    X, y, _, _ = spirals_split
    return DiffusionClassifier(max_iter=300, n_trials=16, random_state=0).fit(X, y)


@pytest.fixture
def scripted_losses(monkeypatch):
    """Return ``script(losses)``, which makes the trials' held-out log losses ``losses`` in turn (then 1.0)."""

    def script(losses):
        scripted = iter(losses)

        def scripted_choice(network, **kwargs):
            return _calibration.choose_trials(network, **kwargs)._replace(held_out_loss=next(scripted, 1.0))

        monkeypatch.setattr(_fitting, "choose_trials", scripted_choice)

    return script


@pytest.fixture
def planned_without_base(monkeypatch):
    """Make fits plan their training as for a network without a Gaussian base, whatever it has (see ``plan_fit``)."""
    planned = _classifier.plan_fit

    def without_base(*args, **kwargs):
        return planned(*args, **{**kwargs, "gaussian_base": False})

    monkeypatch.setattr(_classifier, "plan_fit", without_base)
