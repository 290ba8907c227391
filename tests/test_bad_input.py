"""Bad data, bad parameters and broken denoisers raise clear errors, never a torch traceback."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from skdiffusion import DiffusionClassifier, MLPDenoiser

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RNG = np.random.RandomState(0)
X = RNG.normal(size=(40, 2))
Y = np.arange(40) % 2


def _clf(**params):
    return DiffusionClassifier(**{"max_iter": 5, "n_trials": 2, "random_state": 0, **params})


@pytest.fixture(scope="module")
def fitted():
    return _clf().fit(X, Y)


def _with(value):
    bad = X.copy()
    bad[3, 1] = value
    return bad


@pytest.mark.parametrize(
    "value, match", [(np.nan, "Input X contains NaN"), (np.inf, "Input X contains infinity"), (-np.inf, "infinity")]
)
def test_non_finite_input(fitted, value, match):
    with pytest.raises(ValueError, match=match):
        _clf().fit(_with(value), Y)
    for method in (fitted.predict, fitted.predict_proba, fitted.predict_log_proba):
        with pytest.raises(ValueError, match=match):
            method(_with(value))


def test_wrong_number_of_features_at_predict(fitted):
    with pytest.raises(ValueError, match="X has 3 features, but DiffusionClassifier is expecting 2 features as input"):
        fitted.predict(np.zeros((4, 3)))


def test_one_dimensional_x(fitted):
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array instead"):
        _clf().fit(X[:, 0], Y)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array instead"):
        fitted.predict_proba(X[0])


def test_three_dimensional_x():
    with pytest.raises(ValueError, match="Found array with dim 3"):
        _clf().fit(X.reshape(40, 2, 1), Y)


def test_empty_x():
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\)"):
        _clf().fit(np.zeros((0, 2)), [])


def test_one_class_only():
    with pytest.raises(ValueError, match="needs samples of at least 2 classes.*only one class: 'a'"):
        _clf().fit(X, np.full(40, "a"))


def test_continuous_target():
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        _clf().fit(X, np.linspace(0, 1, 40))


def test_inconsistent_lengths():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        _clf().fit(X, Y[:-1])


def test_sparse_input(fitted):
    with pytest.raises(TypeError, match="Sparse data was passed for X, but dense data is required"):
        _clf().fit(sp.csr_matrix(X), Y)
    with pytest.raises(TypeError, match="Sparse data was passed"):
        fitted.predict(sp.csr_matrix(X))


def test_non_numeric_x():
    with pytest.raises(ValueError, match="could not convert string to float"):
        _clf().fit(np.full((40, 2), "a", dtype=object), Y)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_trials": 0}, r"The 'n_trials' parameter of DiffusionClassifier must be an int in the range \[1, inf\)"),
        ({"n_trials": 2.5}, "'n_trials' parameter"),
        ({"loss": "l3"}, r"The 'loss' parameter of DiffusionClassifier must be a str among \{.*'l3' instead"),
        ({"max_iter": 0}, "'max_iter' parameter"),
        ({"batch_size": -1}, "'batch_size' parameter"),
        ({"learning_rate": 0.0}, "'learning_rate' parameter"),
        ({"noise_schedule": "quadratic"}, "'noise_schedule' parameter"),
        ({"n_diffusion_steps": 1}, "'n_diffusion_steps' parameter"),
        ({"validation_fraction": 1.0}, "'validation_fraction' parameter"),
        ({"tol": -1.0}, "'tol' parameter"),
        ({"n_iter_no_change": 0}, "'n_iter_no_change' parameter"),
        ({"early_stopping": "yes"}, "'early_stopping' parameter"),
        ({"denoiser": "mlp"}, "The 'denoiser' parameter of DiffusionClassifier must be None or a callable"),
        ({"device": 0}, "'device' parameter"),
        ({"priors": "uniform"}, "'priors' parameter"),
        ({"timestep_range": "all"}, "'timestep_range' parameter"),
        ({"random_state": "seed"}, "'random_state' parameter"),
    ],
)
def test_invalid_parameters(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        _clf(**params).fit(X, Y)


@pytest.mark.parametrize(
    "priors, match",
    [
        ([1.0], "Number of priors must match number of classes"),
        ([[0.5, 0.5]], "Number of priors must match number of classes"),
        ([0.5, 0.6], "The sum of the priors should be 1"),
        ([1.5, -0.5], "Priors must be positive"),
        ([1.0, 0.0], "Priors must be positive"),
    ],
)
def test_invalid_priors(priors, match):
    with pytest.raises(ValueError, match=match):
        _clf(priors=priors).fit(X, Y)


@pytest.mark.parametrize("timestep_range", [(0.5, 0.2), (0.0, 1.5), (-0.1, 0.5), (0.1,), (0.0, 0.5, 1.0), ("a", "b")])
def test_invalid_timestep_range(timestep_range):
    with pytest.raises(ValueError, match=r"timestep_range must be a pair \(lo, hi\) with 0 <= lo < hi <= 1"):
        _clf(timestep_range=timestep_range).fit(X, Y)


class _WrongShape(nn.Module):
    def __init__(self, n_features, n_classes):
        super().__init__()
        self.linear = nn.Linear(n_features, 1)

    def forward(self, x_t, t, y):
        return self.linear(x_t)


class _OneArgument(nn.Module):
    def __init__(self, n_features, n_classes):
        super().__init__()
        self.linear = nn.Linear(n_features, n_features)

    def forward(self, x):
        return self.linear(x)


class _NoParameters(nn.Module):
    def __init__(self, n_features, n_classes):
        super().__init__()

    def forward(self, x_t, t, y):
        return torch.zeros_like(x_t)


class _NotAModule:
    def __init__(self, n_features, n_classes):
        pass

    def __call__(self, x_t, t, y):
        return x_t


@pytest.mark.parametrize(
    "denoiser, error, match",
    [
        (_WrongShape, ValueError, r"The denoiser returned shape \(2, 1\) for x_t of shape \(2, 2\)"),
        (_WrongShape(2, 2), ValueError, r"The denoiser returned shape \(2, 1\)"),
        (_OneArgument, ValueError, r"The denoiser failed on a batch of shape \(2, 2\).*takes 2 positional arguments"),
        (_NotAModule, TypeError, "denoiser class _NotAModule is not a torch.nn.Module subclass"),
        (lambda n_features, n_classes: "mlp", TypeError, r"returned str, not a torch.nn.Module"),
        (MLPDenoiser(3, 2), ValueError, r"The denoiser failed on a batch of shape \(2, 2\)"),
        (_NoParameters, ValueError, "The denoiser has no trainable parameters"),
    ],
)
def test_broken_denoisers(denoiser, error, match):
    with pytest.raises(error, match=match) as excinfo:
        _clf(denoiser=denoiser).fit(X, Y)
    assert "forward(x_t, t, y)" in str(excinfo.value)  # the message states the contract


def test_denoiser_for_too_few_classes():
    y3 = np.arange(40) % 3
    with pytest.raises(ValueError, match="The denoiser failed"):
        _clf(denoiser=MLPDenoiser(2, 2)).fit(X, y3)


@pytest.mark.parametrize(
    "device, match",
    [
        ("nonsense", "device='nonsense' is not available"),
        ("cuda:99", r"device='cuda:99' is not available"),
        ("meta", "device='meta' is not available"),
    ],
)
def test_invalid_device(device, match):
    with pytest.raises(ValueError, match=match):
        _clf(device=device).fit(X, Y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_device_without_cuda(fitted):
    with pytest.raises(ValueError, match="device='cuda' is not available"):
        _clf(device="cuda").fit(X, Y)
    # A model fitted on the CPU asked to predict on a missing GPU says so too.
    fitted_copy = _clf().fit(X, Y).set_params(device="cuda")
    with pytest.raises(ValueError, match="device='cuda' is not available"):
        fitted_copy.predict(X)


def test_non_finite_training_loss():
    with pytest.raises(FloatingPointError, match="The training loss became (inf|nan) at step"):
        _clf(learning_rate=1e6, max_iter=100).fit(X, Y)


@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_log_proba", "sample"])
def test_not_fitted(method):
    args = () if method == "sample" else (X,)
    with pytest.raises(NotFittedError, match="This DiffusionClassifier instance is not fitted yet"):
        getattr(_clf(), method)(*args)


def test_warm_start_with_other_classes_or_features():
    clf = _clf(warm_start=True).fit(X, Y)
    with pytest.raises(
        ValueError, match=r"warm_start=True needs the classes of the previous fit \[0, 1\], got \[0, 2\]"
    ):
        clf.fit(X, Y * 2)
    with pytest.raises(ValueError, match="X has 4 features, but DiffusionClassifier is expecting 2 features"):
        clf.fit(np.hstack([X, X]), Y)


@pytest.mark.parametrize(
    "params",
    [
        {"priors": [0.2, 0.2]},
        {"denoiser": _WrongShape},
        {"learning_rate": 1e6, "max_iter": 100},
    ],
)
def test_a_failed_fit_leaves_no_half_fitted_model(params):
    clf = _clf(**params)
    with pytest.raises((ValueError, FloatingPointError)):
        clf.fit(X, Y)
    with pytest.raises(NotFittedError):
        clf.predict(X)


def test_a_failed_refit_does_not_keep_the_previous_network():
    clf = _clf().fit(X, Y)
    clf.set_params(learning_rate=1e6, max_iter=100)
    with pytest.raises(FloatingPointError):
        clf.fit(X[:, :1], Y)
    # The old two-feature network must not be used with the new one-feature scaler.
    with pytest.raises(NotFittedError):
        clf.predict(X[:, :1])
