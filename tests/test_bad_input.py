"""Bad input and faults, tried as a new user would: clear errors, never a torch traceback.

Each bad input goes to every method it applies to (fit, predict, predict_proba,
predict_log_proba, score, sample) and the test names the exact error and the words of its
message. A fit that fails leaves the estimator as it was; a diverging fit never leaves a
model that predicts NaN; Ctrl-C during training leaves a usable model.
"""

import ast
import functools
import os
import pickle
import signal
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

import skdiffusion
from skdiffusion import DiffusionClassifier, MLPDenoiser, _fitting, _scoring, _training

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RNG = np.random.RandomState(0)
X = RNG.normal(size=(40, 2))
Y = np.arange(40) % 2
PREDICT_METHODS = ["predict", "predict_proba", "predict_log_proba", "score"]
NUMBER = r"\d+(\.\d+)?(e\+\d+)?"  # a finite loss, as the messages print it


def _clf(**params):
    return DiffusionClassifier(**{"max_iter": 5, "n_trials": 2, "random_state": 0, **params})


@pytest.fixture(scope="module")
def fitted():
    return _clf().fit(X, Y)


def _call(estimator, method, X_new):
    """Call a predict method on ``X_new``, or score it against as many labels as it has rows."""
    if method == "score":
        return estimator.score(X_new, np.resize(Y, np.shape(X_new)[0]))
    return getattr(estimator, method)(X_new)


def _with(value):
    bad = X.copy()
    bad[3, 1] = value
    return bad


def _assert_probabilities(proba, n_rows, n_classes):
    assert proba.shape == (n_rows, n_classes)
    assert np.isfinite(proba).all()
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
def test_good_input_gives_no_warning(loss):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)  # 5 steps do not converge
        clf = _clf(loss=loss).fit(X, Y)
        _assert_probabilities(clf.predict_proba(X), 40, 2)
        clf.score(X, Y)
        clf.sample(2, random_state=0)


# --- Bad data -------------------------------------------------------------------------


@pytest.mark.parametrize("value, match", [(np.inf, "Input X contains infinity"), (-np.inf, "infinity")])
def test_infinite_input(fitted, value, match):
    with pytest.raises(ValueError, match=match):
        _clf().fit(_with(value), Y)
    for method in PREDICT_METHODS:
        with pytest.raises(ValueError, match=match):
            _call(fitted, method, _with(value))


def test_non_finite_labels(fitted):
    with pytest.raises(ValueError, match="Input y contains NaN"):
        _clf().fit(X, np.where(Y == 0, np.nan, 1.0))
    with pytest.raises(ValueError, match="Input y contains infinity"):
        _clf().fit(X, np.where(Y == 0, np.inf, 1.0))
    with pytest.raises(ValueError, match=r"y contains labels not seen in fit: \[nan\]"):
        fitted.sample(2, y=np.nan)


def test_values_too_large_to_standardise(fitted):
    # The variance of 1e160 overflows float64; standardised 1e40 overflows float32.
    match = r"X has values too large for DiffusionClassifier: .* overflow float32 \(largest \|X\| = 2\.5\de\+160\)"
    with pytest.raises(ValueError, match=match):
        _clf().fit(X * 1e160, Y)
    # One value near float64's limit among ordinary ones: the column's variance is NaN.
    one_huge = X.copy()
    one_huge[0, 0] = 1e300
    with pytest.raises(ValueError, match=r"overflow float32 \(largest \|X\| = 1e\+300\)"):
        _clf().fit(one_huge, Y)
    for method in PREDICT_METHODS:
        with pytest.raises(ValueError, match=r"overflow float32 \(largest \|X\| = 2\.5\de\+40\)"):
            _call(fitted, method, X * 1e40)


def test_a_column_whose_scale_a_few_values_set_is_warned_of():
    from skdiffusion._validation import outlying_columns

    far = X.copy()
    far[0, 1] = 1e30  # standardised, the other 39 values of column 1 lie within 1e-27 of each other
    with pytest.warns(UserWarning, match=r"standard deviation of the numeric column 1 of X is over 100 times"):
        _clf().fit(far, Y)
    rare = np.zeros((200, 1))
    rare[:3] = 1.0  # a rare value among repeats is no outlier: constant between the percentiles
    heavy = RNG.standard_t(3, size=(200, 1))
    assert outlying_columns(far).tolist() == [1]
    assert outlying_columns(np.hstack([X[:, :1].repeat(5, axis=0), rare, heavy])).tolist() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _clf().fit(X, Y)
        placeholder = X.copy()
        placeholder[0, 1] = 1e4
        _clf(standardize=False).fit(placeholder, Y)  # no scale to set
    with pytest.warns(UserWarning, match="column 1 of X"):
        _clf().fit(placeholder, Y)


def test_samples_too_far_from_the_training_data(fitted):
    # Standardised values of 1e30 fit in float32, but their squared errors do not.
    far = X[:3].copy()
    far[1] *= 1e30
    match = r"The denoising errors of 1 of 3 samples are not finite \(first: row 1\).*too far from the training data"
    for method in PREDICT_METHODS:
        with pytest.raises(ValueError, match=match):
            _call(fitted, method, far)
    # Far, but not that far: probabilities, not NaN.
    _assert_probabilities(fitted.predict_proba(X[:3] * 1e6), 3, 2)


def test_empty_x(fitted):
    with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\) \(shape=\(0, 2\)\)"):
        _clf().fit(np.zeros((0, 2)), [])
    with pytest.raises(ValueError, match=r"Found array with 0 feature\(s\) \(shape=\(40, 0\)\)"):
        _clf().fit(np.zeros((40, 0)), Y)
    for method in PREDICT_METHODS:
        with pytest.raises(ValueError, match=r"Found array with 0 sample\(s\) \(shape=\(0, 2\)\)"):
            _call(fitted, method, np.zeros((0, 2)))
        with pytest.raises(ValueError, match=r"Found array with 0 feature\(s\) \(shape=\(4, 0\)\)"):
            _call(fitted, method, np.zeros((4, 0)))


def test_one_dimensional_x(fitted):
    with pytest.raises(ValueError, match="(?s)Expected 2D array, got 1D array instead.*Reshape your data"):
        _clf().fit(X[:, 0], Y)
    for method in PREDICT_METHODS:
        with pytest.raises(ValueError, match="(?s)Expected 2D array, got 1D array instead.*Reshape your data"):
            _call(fitted, method, X[0])


def test_three_dimensional_x(fitted):
    with pytest.raises(ValueError, match="Found array with dim 3, while dim <= 2 is required by DiffusionClassifier"):
        _clf().fit(X.reshape(40, 2, 1), Y)
    for method in PREDICT_METHODS:
        with pytest.raises(ValueError, match="Found array with dim 3"):
            _call(fitted, method, X.reshape(40, 2, 1))


@pytest.mark.parametrize("method", PREDICT_METHODS)
def test_wrong_number_of_features_at_predict(fitted, method):
    with pytest.raises(ValueError, match="X has 3 features, but DiffusionClassifier is expecting 2 features as input"):
        _call(fitted, method, np.zeros((4, 3)))


def test_complex_x(fitted):
    with pytest.raises(ValueError, match="Complex data not supported"):
        _clf().fit(X + 1j, Y)
    for method in PREDICT_METHODS:
        with pytest.raises(ValueError, match="Complex data not supported"):
            _call(fitted, method, X + 1j)


def test_object_x(fitted):
    strings = np.full((40, 2), "a", dtype=object)
    with pytest.raises(ValueError, match="could not convert string to float: 'a'"):
        _clf().fit(strings, Y)
    for method in PREDICT_METHODS:
        with pytest.raises(ValueError, match="could not convert string to float: 'a'"):
            _call(fitted, method, strings)
    # Numbers held in an object array are numbers.
    as_objects = _clf().fit(X.astype(object), Y)
    np.testing.assert_array_equal(as_objects.predict_proba(X.astype(object)), fitted.predict_proba(X))


@pytest.mark.parametrize("to_sparse", [sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.csr_array])
def test_sparse_input(fitted, to_sparse):
    match = r"Sparse data was passed for X, but dense data is required. Use '\.toarray\(\)'"
    with pytest.raises(TypeError, match=match):
        _clf().fit(to_sparse(X), Y)
    for method in PREDICT_METHODS:
        with pytest.raises(TypeError, match=match):
            _call(fitted, method, to_sparse(X))


def test_dataframe_with_other_column_names(fitted):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=["a", "b"])
    clf = _clf().fit(frame, Y)
    renamed = frame.rename(columns={"b": "c"})
    for method in PREDICT_METHODS:
        with pytest.raises(
            ValueError,
            match=r"(?s)The feature names should match those that were passed during fit.*"
            r"Feature names unseen at fit time:\n- c.*Feature names seen at fit time, yet now missing:\n- b",
        ):
            _call(clf, method, renamed)
        with pytest.raises(ValueError, match="Feature names must be in the same order as they were in fit"):
            _call(clf, method, frame[["b", "a"]])
    with pytest.warns(UserWarning, match="X does not have valid feature names, but DiffusionClassifier was fitted"):
        clf.predict(X)
    with pytest.warns(UserWarning, match="X has feature names, but DiffusionClassifier was fitted without"):
        fitted.predict(frame)
    with pytest.raises(TypeError, match=r"Feature names are only supported if all input features have string names"):
        _clf().fit(pd.DataFrame(X, columns=["a", 1]), Y)


# --- Bad labels -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, shown", [(np.full(40, "a"), "'a'"), (np.full(40, 3), "3"), (np.ones(40, bool), "True")]
)
def test_one_class_only(labels, shown):
    with pytest.raises(ValueError, match=f"needs samples of at least 2 classes.*only one class: {shown}"):
        _clf().fit(X, labels)


def test_a_class_with_one_sample():
    y = np.r_[np.zeros(39, int), 1]
    # 40 rows: the fit would refit, so validation_fraction="auto" would hold out 0.3 of them.
    with pytest.warns(
        UserWarning,
        match=r"Too few samples per class to hold out a fraction 0.3 of them \(validation_fraction='auto'\)",
    ):
        clf = _clf().fit(X, y)
    np.testing.assert_allclose(clf.class_prior_, [39 / 40, 1 / 40])
    _assert_probabilities(clf.predict_proba(X), 40, 2)
    assert clf.sample(2, y=1, random_state=0)[1].tolist() == [1, 1]


def test_a_hundred_classes():
    X100 = RNG.normal(size=(300, 2))
    y100 = np.arange(300) % 100
    with pytest.warns(UserWarning, match="Too few samples per class"):
        clf = _clf(n_diffusion_steps=20).fit(X100, y100)
    np.testing.assert_array_equal(clf.classes_, np.arange(100))
    _assert_probabilities(clf.predict_proba(X100), 300, 100)
    assert set(clf.predict(X100)) <= set(range(100))
    X_new, y_new = clf.sample(3, y=99, random_state=0)
    assert np.isfinite(X_new).all() and y_new.tolist() == [99, 99, 99]


@pytest.mark.parametrize(
    "labels, classes",
    [
        (np.array(["no", "yes"])[Y], ["no", "yes"]),
        (np.array(["no", "yes"], dtype=object)[Y], ["no", "yes"]),
        (Y.astype(bool), [False, True]),
        (Y.astype(float), [0.0, 1.0]),
        (Y.astype(object), [0, 1]),
        (Y - 5, [-5, -4]),
        ([1, "a"] * 20, ["1", "a"]),  # a list of mixed types becomes an array of strings (numpy's choice)
    ],
)
def test_label_types(fitted, labels, classes):
    clf = _clf().fit(X, labels)
    assert clf.classes_.tolist() == classes
    assert set(clf.predict(X).tolist()) <= set(classes)
    # The labels are only names: the same classes in the same order give the same model.
    np.testing.assert_array_equal(clf.predict_proba(X), fitted.predict_proba(X))
    assert clf.sample(2, y=classes[1], random_state=0)[1].tolist() == [classes[1]] * 2
    # (score takes them as classes_ holds them: scikit-learn's metrics reject object arrays of numbers.)
    assert clf.score(X, clf.classes_.take(Y)) == fitted.score(X, Y)


@pytest.mark.parametrize(
    "labels, kinds",
    [
        (np.array([1, "a"] * 20, dtype=object), r"\['number', 'str'\]"),
        (np.array(["a", 1.5] * 20, dtype=object), r"\['number', 'str'\]"),
        (np.array(["a", None] * 20, dtype=object), r"\['NoneType', 'str'\]"),
        (np.array([(1,), 2] * 20, dtype=object), r"\['number', 'tuple'\]"),
    ],
)
def test_mixed_label_types(labels, kinds):
    with pytest.raises(TypeError, match=f"y mixes labels of types {kinds}; the labels must be all strings or all"):
        _clf().fit(X, labels)


def test_continuous_target():
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        _clf().fit(X, np.linspace(0, 1, 40))


def test_inconsistent_lengths(fitted):
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[40, 39\]"):
        _clf().fit(X, Y[:-1])
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[39, 40\]"):
        fitted.score(X, Y[:-1])


def test_two_dimensional_labels():
    with pytest.raises(ValueError, match=r"y should be a 1d array, got an array of shape \(40, 2\) instead"):
        _clf().fit(X, np.c_[Y, Y])
    with pytest.warns(DataConversionWarning, match="A column-vector y was passed when a 1d array was expected"):
        _clf().fit(X, Y[:, None])


# --- Bad parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_trials": 0}, r"The 'n_trials' parameter of DiffusionClassifier must be an int in the range \[1, 100000\]"),
        # Unbounded, a trial count or a schedule would take gigabytes (10**8 trials: 3 GB for one row).
        ({"n_trials": 10**8}, r"'n_trials' parameter .* \[1, 100000\]. Got 100000000 instead"),
        ({"n_diffusion_steps": 10**9}, r"'n_diffusion_steps' parameter .* \[2, 100000\]. Got 1000000000 instead"),
        ({"n_jobs": 0}, r"The 'n_jobs' parameter .* \(-inf, -1\], an int in the range \[1, inf\) or None. Got 0"),
        ({"n_trials": 2.5}, "'n_trials' parameter"),
        ({"n_trials": "8"}, r"'n_trials' parameter .* Got '8' instead"),
        ({"loss": "l3"}, r"The 'loss' parameter of DiffusionClassifier must be a str among \{.*'l3' instead"),
        ({"loss": None}, "'loss' parameter"),
        ({"max_iter": -1}, "'max_iter' parameter"),  # 0 trains nothing: a pretrained denoiser
        ({"batch_size": -1}, "'batch_size' parameter"),
        ({"batch_size": 1.5}, "'batch_size' parameter"),
        ({"learning_rate": 0.0}, "'learning_rate' parameter"),
        ({"learning_rate": "fast"}, "'learning_rate' parameter"),
        ({"weight_decay": -1e-3}, r"'weight_decay' parameter .* a float in the range \[0.0, inf\). Got -0.001 instead"),
        ({"weight_decay": "l2"}, "'weight_decay' parameter"),
        ({"noise_schedule": "quadratic"}, "'noise_schedule' parameter"),
        ({"noise_schedule": 0.5}, "'noise_schedule' parameter .* an array-like"),
        ({"standardize": "yes"}, "'standardize' parameter"),
        ({"n_diffusion_steps": 1}, "'n_diffusion_steps' parameter"),
        ({"validation_fraction": 1.0}, "'validation_fraction' parameter"),
        ({"validation_fraction": 0.0}, "'validation_fraction' parameter"),
        ({"tol": -1.0}, "'tol' parameter"),
        ({"n_iter_no_change": 0}, "'n_iter_no_change' parameter"),
        ({"early_stopping": "yes"}, "'early_stopping' parameter"),
        ({"warm_start": 1}, "'warm_start' parameter"),
        ({"denoiser": "mlp"}, "The 'denoiser' parameter of DiffusionClassifier must be None or a callable"),
        ({"device": 0}, "'device' parameter"),
        ({"device": None}, "'device' parameter"),
        ({"priors": "uniform"}, "'priors' parameter"),
        ({"timestep_range": "all"}, "'timestep_range' parameter"),
        ({"timestep_range": [0.0, 0.5]}, "'timestep_range' parameter .* an instance of 'tuple'"),
        ({"random_state": "seed"}, "'random_state' parameter"),
        ({"verbose": "yes"}, "'verbose' parameter"),
        ({"pruning": "fast"}, "'pruning' parameter"),
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
        ([np.nan, np.nan], "The sum of the priors should be 1"),
        ([1.5, -0.5], "Priors must be positive"),
        ([1.0, 0.0], "Priors must be positive"),
        (["a", "b"], r"priors must be an array of class probabilities, got \['a', 'b'\]"),
        ([{}, {}], "priors must be an array of class probabilities"),
    ],
)
def test_invalid_priors(priors, match):
    with pytest.raises(ValueError, match=match):
        _clf(priors=priors).fit(X, Y)


@pytest.mark.parametrize(
    "timestep_range", [(0.5, 0.2), (0.0, 1.5), (-0.1, 0.5), (0.1,), (0.0, 0.5, 1.0), ("a", "b"), (0.0, np.nan)]
)
def test_invalid_timestep_range(timestep_range):
    with pytest.raises(ValueError, match=r"timestep_range must be a pair \(lo, hi\) with 0 <= lo < hi <= 1"):
        _clf(timestep_range=timestep_range).fit(X, Y)


@pytest.mark.parametrize(
    "pruning", [(), [(0, 1)], [(4, 0)], [(1,)], [("a", 1)], [(np.inf, 1)], [(1.5, 1)], [(8, np.nan)], [(True, 1)]]
)
def test_invalid_pruning(pruning):
    with pytest.raises(ValueError, match=r"pruning must be None, 't-test' or a sequence of \(trials, kept\) pairs"):
        _clf(pruning=pruning).fit(X, Y)


def test_whole_float_pruning_stages_are_their_integers():
    clf = _clf(pruning=((8.0, 1),)).fit(X, Y)
    np.testing.assert_array_equal(clf.predict_proba(X), clf.set_params(pruning=((8, 1),)).predict_proba(X))


def test_early_stopping_without_held_out_samples():
    with pytest.raises(ValueError, match="early_stopping=True needs held-out samples: set validation_fraction"):
        _clf(early_stopping=True, validation_fraction=None).fit(X, Y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples must be a positive integer"),
        ({"random_state": "seed"}, "'seed' cannot be used to seed a numpy.random.RandomState instance"),
        ({"y": "a"}, r"y contains labels not seen in fit: \['a'\]"),
    ],
)
def test_invalid_sample_arguments(fitted, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fitted.sample(**{"n_samples": 2, **kwargs})


# --- Broken denoisers -------------------------------------------------------------------


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


class _Scaled(nn.Module):
    """``eps_hat = w * x_t``, with a hook to break it in tests."""

    def __init__(self, n_features, n_classes):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.5))

    def forward(self, x_t, t, y):
        return self.w * x_t


class _NaNAlways(_Scaled):
    def forward(self, x_t, t, y):
        return super().forward(x_t, t, y) * float("nan")


class _NaNInEvalMode(_Scaled):
    def forward(self, x_t, t, y):
        return super().forward(x_t, t, y) * (1.0 if self.training else float("nan"))


class _RaisesAtStep3(_Scaled):
    calls = 0

    def forward(self, x_t, t, y):
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("boom in the user's denoiser")
        return super().forward(x_t, t, y)


def test_denoiser_that_returns_nan():
    with pytest.raises(ValueError, match=r"The denoiser returned NaN or inf on a batch of zeros.*forward\(x_t, t, y\)"):
        _clf(denoiser=_NaNAlways).fit(X, Y)
    # NaN only in eval mode, the mode predict uses: caught by the check of the final weights.
    clf = _clf(denoiser=_NaNInEvalMode)
    with pytest.raises(FloatingPointError, match="The training loss became nan after the last update"):
        clf.fit(X, Y)
    assert vars(clf).keys() == clf.get_params().keys()  # unfitted, as before the call


def test_denoiser_that_raises_during_training():
    clf = _clf(denoiser=_RaisesAtStep3)
    with pytest.raises(RuntimeError, match="boom in the user's denoiser"):
        clf.fit(X, Y)
    with pytest.raises(NotFittedError):
        clf.predict(X)


def test_fitted_denoiser_that_turns_nan(fitted):
    broken = pickle.loads(pickle.dumps(fitted))
    with torch.no_grad():
        broken.denoiser_.input.weight.fill_(float("nan"))
    for method in PREDICT_METHODS:
        with pytest.raises(
            ValueError, match=r"The denoising errors of 40 of 40 samples are not finite \(first: row 0\)"
        ):
            _call(broken, method, X)
    with pytest.raises(ValueError, match="The denoiser returned non-finite values while sampling"):
        broken.sample(2, random_state=0)


class _NaNAtSmallTimesteps(MLPDenoiser):
    """An MLP that returns NaN below timestep ``nan_below`` (-1: never), in both of its forwards."""

    nan_below = -1

    def forward(self, x_t, t, y):
        return torch.where((t < self.nan_below)[:, None], float("nan"), super().forward(x_t, t, y))

    def forward_all(self, x_t, t):
        return torch.where((t < self.nan_below)[:, None, None], float("nan"), super().forward_all(x_t, t))


def test_fitted_denoiser_that_turns_nan_on_some_trials():
    clf = _clf(denoiser=_NaNAtSmallTimesteps, n_trials=8, timestep_range=(0.0, 0.2)).fit(X, Y)
    clf.denoiser_.nan_below = 50  # the first two of the trials' timesteps 12, 37, ..., 187
    with pytest.raises(ValueError, match=r"The denoising errors of 40 of 40 samples are not finite"):
        clf.predict_proba(X)


# --- Devices ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device, match",
    [
        ("nonsense", "device='nonsense' is not available"),
        ("cuda:99", r"device='cuda:99' is not available"),
        ("meta", "device='meta' is not available"),
    ],
)
def test_invalid_device(fitted, device, match):
    with pytest.raises(ValueError, match=match):
        _clf(device=device).fit(X, Y)
    moved = pickle.loads(pickle.dumps(fitted)).set_params(device=device)
    for method in PREDICT_METHODS:
        with pytest.raises(ValueError, match=match):
            _call(moved, method, X)
    with pytest.raises(ValueError, match=match):
        moved.sample(2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_device_without_cuda(fitted):
    with pytest.raises(ValueError, match="device='cuda' is not available"):
        _clf(device="cuda").fit(X, Y)
    # A model fitted on the CPU asked to predict on a missing GPU says so too.
    fitted_copy = _clf().fit(X, Y).set_params(device="cuda")
    with pytest.raises(ValueError, match="device='cuda' is not available"):
        fitted_copy.predict(X)


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


@pytest.mark.parametrize("change", [{"n_diffusion_steps": 500}, {"noise_schedule": "cosine"}])
@pytest.mark.parametrize("continue_fit", ["warm_start", "partial_fit"])
def test_a_continued_fit_keeps_the_noise_schedule(change, continue_fit):
    clf = _clf(warm_start=True).fit(X, Y)
    n_iter = clf.n_iter_
    clf.set_params(**change)
    with pytest.raises(ValueError, match=r"noise_schedule or n_diffusion_steps changed since the model was fitted"):
        clf.fit(X, Y) if continue_fit == "warm_start" else clf.partial_fit(X, Y)
    assert clf.n_iter_ == n_iter
    assert clf.set_params(warm_start=False).fit(X, Y).alphas_cumprod_.size == change.get("n_diffusion_steps", 1000)


# --- Faults during fit: divergence ------------------------------------------------------


@pytest.mark.parametrize(
    "learning_rate, max_iter, match",
    [
        # The loss explodes at the second step, long before it would overflow.
        (1e6, 100, rf"The training loss became {NUMBER} at step 2, over 10000 times its first value \(training"),
        (10.0, 100, rf"became {NUMBER} at step [2-9], over 10000 times its first value \(training diverged\)"),
        # One step: the loss is computed before the update, so only the final check sees it.
        (10.0, 1, rf"became {NUMBER} after the last update, over 10000 times its first value"),
        (1e30, 1, r"The training loss became (inf|nan) after the last update; lower learning_rate"),
    ],
)
def test_diverging_training_raises(learning_rate, max_iter, match):
    # One training, on all rows: a refit that diverges after a sound first training keeps
    # the first network instead (see test_divergence_during_the_refit_keeps_the_first_network...).
    clf = _clf(learning_rate=learning_rate, max_iter=max_iter, validation_fraction=None)
    with pytest.raises(FloatingPointError, match=match):
        clf.fit(X, Y)
    with pytest.raises(NotFittedError):
        clf.predict(X)


class _Exploding(_Scaled):
    """``eps_hat = w * x_t * 1000**k`` at the k-th training step: a loss that grows a
    millionfold a step, finite at first, past float32's range by the seventh."""

    def __init__(self, n_features, n_classes):
        super().__init__(n_features, n_classes)
        self.k = 0

    def forward(self, x_t, t, y):
        if torch.is_grad_enabled():
            self.k += 1
        return super().forward(x_t, t, y) * 1000.0**self.k


@pytest.mark.parametrize("early_stopping", [False, True])
def test_a_loss_that_explodes_is_stopped_while_finite(early_stopping):
    clf = _clf(denoiser=_Exploding, max_iter=20, early_stopping=early_stopping)
    with pytest.raises(FloatingPointError, match=r"at step 2, over 10000 times its first value \(training diverged\)"):
        clf.fit(X, Y)
    with pytest.raises(NotFittedError):
        clf.predict(X)


@pytest.mark.parametrize("learning_rate", [1e-2, 1.0, 1e2, 1e4, 1e8, 1e16, 1e32])
@pytest.mark.parametrize("max_iter", [1, 2, 3, 60])
def test_a_fit_raises_or_predicts_finite_probabilities(learning_rate, max_iter):
    clf = _clf(learning_rate=learning_rate, max_iter=max_iter)
    try:
        clf.fit(X, Y)
    except FloatingPointError:
        with pytest.raises(NotFittedError):
            clf.predict(X)
        return
    _assert_probabilities(clf.predict_proba(X), 40, 2)


# --- Faults during fit: Ctrl-C ----------------------------------------------------------


class _SigintAt(MLPDenoiser):
    """Sends this process SIGINT, as Ctrl-C does, from inside the k-th training step."""

    def __init__(self, n_features, n_classes, *, k, **kwargs):
        super().__init__(n_features, n_classes, **kwargs)
        self.k, self.calls = k, 0

    def forward(self, x_t, t, y):
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls == self.k:
                os.kill(os.getpid(), signal.SIGINT)
        return super().forward(x_t, t, y)


needs_sigint = pytest.mark.skipif(
    os.name == "nt" or signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="needs POSIX signals and Python's default SIGINT handler",
)


def _fit_catching_warnings(clf, X_fit, y_fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(X_fit, y_fit)
    return caught


@needs_sigint
def test_ctrl_c_during_training_leaves_a_usable_model():
    clf = _clf(denoiser=functools.partial(_SigintAt, k=4, hidden_size=16), max_iter=100)
    caught = _fit_catching_warnings(clf, X, Y)
    assert [str(w.message) for w in caught if w.category is UserWarning] == [
        "Training interrupted by the user; the model keeps the weights reached so far."
    ]
    assert not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert clf.n_iter_ == len(clf.loss_curve_) == 3  # the fourth step never finished
    _assert_probabilities(clf.predict_proba(X), 40, 2)
    assert np.isfinite(clf.sample(2, random_state=0)[0]).all()


@needs_sigint
def test_ctrl_c_during_a_warm_start_keeps_the_steps_made():
    clf = _clf(denoiser=functools.partial(_SigintAt, k=1000, hidden_size=16), max_iter=10, warm_start=True)
    clf.fit(X, Y)
    first_curve = list(clf.loss_curve_)
    clf.denoiser_.k = 15  # the fifth step of the next fit
    caught = _fit_catching_warnings(clf, X, Y)
    assert any("Training interrupted by the user" in str(w.message) for w in caught)
    assert clf.n_iter_ == 14
    assert clf.loss_curve_[:10] == first_curve
    _assert_probabilities(clf.predict_proba(X), 40, 2)


class _AcrossNetworks(MLPDenoiser):
    """Counts training steps across the networks of one fit (the first, then the refit's); acts at step ``at``."""

    total, at, action = 0, None, None

    def __init__(self, n_features, n_classes, **kwargs):
        super().__init__(n_features, n_classes, **kwargs)
        self.calls = 0

    def forward(self, x_t, t, y):
        if torch.is_grad_enabled():
            self.calls += 1
            type(self).total += 1
            if type(self).total >= type(self).at:
                return type(self).action(self, x_t)
        return super().forward(x_t, t, y)


def _across(at, action):
    return type("Across", (_AcrossNetworks,), {"total": 0, "at": at, "action": staticmethod(action)})


def _sigint(network, x_t):
    os.kill(os.getpid(), signal.SIGINT)
    return MLPDenoiser.forward(
        network, x_t, torch.zeros(len(x_t), dtype=torch.long), torch.zeros(len(x_t), dtype=torch.long)
    )


@needs_sigint
def test_ctrl_c_during_the_refit_keeps_the_first_network_and_says_so():
    # 40 rows: 28 trained on, 12 held out to choose the trials, then a refit on all 40.
    network = _across(at=15, action=_sigint)  # the refit's fifth step
    clf = _clf(denoiser=functools.partial(network, hidden_size=16), max_iter=10)
    caught = _fit_catching_warnings(clf, X, Y)
    assert [str(w.message) for w in caught if w.category is UserWarning] == [
        "Training interrupted by the user during the refit on all 40 samples; "
        "the model keeps the network trained before it (on 28 samples) and its trials."
    ]
    assert not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    # Not the refit's network after 4 steps (near chance) but the first, trained 10 steps.
    assert clf.denoiser_.calls == 10 and clf.n_iter_ == len(clf.loss_curve_) == 10
    assert caught[0].filename == __file__  # the warning points at the fit call
    _assert_probabilities(clf.predict_proba(X), 40, 2)


@needs_sigint
def test_ctrl_c_during_a_shorter_first_training_stops_there_before_a_tuning(monkeypatch):
    # A fit that tunes whose held-out loss rose after its 20 steps: afresh for 10. Stopped
    # there, it keeps what it reached, as any interrupted first training does, rather than
    # comparing the longer training's log loss with it and tuning on.
    monkeypatch.setattr(_fitting, "AUTO_STEPS", 20)
    monkeypatch.setattr(_fitting, "AUTO_FEWEST_STEPS", 5)
    rose = iter([True])
    monkeypatch.setattr(_fitting, "_rose", lambda *args: next(rose, False))
    # ... and whose trials would give the longer training the lower log loss.
    losses = iter([0.0])
    choose_trials = _fitting.choose_trials

    def choose_longer(network, **kwargs):
        return choose_trials(network, **kwargs)._replace(held_out_loss=next(losses, 1.0))

    monkeypatch.setattr(_fitting, "choose_trials", choose_longer)
    network = _across(at=23, action=_sigint)  # the shorter training's third step
    params = {"max_iter": "auto", "refit": False, "discriminative": False}
    clf = _clf(denoiser=functools.partial(network, hidden_size=16), **params)
    caught = _fit_catching_warnings(clf, X, Y)
    assert [str(w.message) for w in caught if w.category is UserWarning] == [
        "Training interrupted by the user; the model keeps the weights reached so far."
    ]
    assert clf.n_iter_ == 2
    _assert_probabilities(clf.predict_proba(X), 40, 2)


@needs_sigint
@pytest.mark.parametrize(
    ("discriminative", "tuning"), [(False, "the tuning"), (True, "the tuning with the cross-entropy term")]
)
def test_ctrl_c_during_the_tuning_keeps_the_tuned_steps(discriminative, tuning):
    network = _across(at=12, action=_sigint)  # the tuning's second step (of 2, or 5 with the term)
    params = {"max_iter": 10, "refit": False, "discriminative": discriminative}
    clf = _clf(denoiser=functools.partial(network, hidden_size=16), **params)
    caught = _fit_catching_warnings(clf, X, Y)
    assert [str(w.message) for w in caught if w.category is UserWarning] == [
        f"Training interrupted by the user during {tuning}; the model keeps the weights reached so far."
    ]
    assert clf.n_iter_ == 11  # 10 steps, then 1 of the tuning
    _assert_probabilities(clf.predict_proba(X), 40, 2)


@pytest.mark.parametrize(
    ("fault", "message", "steps"),
    [
        (
            "diverges",
            "Training diverged while tuning again (the loss is nan); the model keeps the network before it.",
            0,
        ),
        (
            "interrupted",
            "Training interrupted by the user while tuning again; the model keeps the network before it.",
            5,
        ),
    ],
)
def test_a_fault_while_tuning_again_keeps_the_network_before_it(monkeypatch, fault, message, steps):
    # max_iter="auto" with the cross-entropy term: 10 steps (half of 20: the network has a
    # Gaussian base), then tunings of 5. The first tuning lowers the held-out log loss, so it
    # tunes again, and that tuning diverges or is interrupted: the model keeps the network
    # of the first tuning, and says so.
    monkeypatch.setattr(_fitting, "AUTO_STEPS", 20)
    monkeypatch.setattr(_training._HeldOutLoss, "fall", lambda self, start, stop: 0.0)
    monkeypatch.setattr(_fitting, "TUNE_AGAIN_ROWS", 1)  # these 40 rows hold out 4
    losses, choose_trials = [], _fitting.choose_trials

    def falling(network, **kwargs):
        losses.append(1.0 - len(losses) / 10)
        return choose_trials(network, **kwargs)._replace(held_out_loss=losses[-1])

    monkeypatch.setattr(_fitting, "choose_trials", falling)
    params = {"max_iter": "auto", "refit": False, "discriminative": True}
    monkeypatch.setattr(_fitting, "AUTO_MOST_TUNINGS", 1)
    once = _clf(**params).fit(X, Y)
    monkeypatch.setattr(_fitting, "AUTO_MOST_TUNINGS", 10)
    train, trainings = _fitting._train, []

    def faulty(*args, **kwargs):
        trainings.append(kwargs.get("term"))
        if len(trainings) < 3:
            return train(*args, **kwargs)
        if fault == "diverges":
            raise FloatingPointError("the loss is nan")
        state = train(*args, **kwargs)
        state.interrupted = state.cancelled = True
        return state

    monkeypatch.setattr(_fitting, "_train", faulty)
    losses.clear()
    caught = _fit_catching_warnings(clf := _clf(**params), X, Y)
    assert [str(w.message) for w in caught if w.category is UserWarning] == [message]
    assert len(trainings) == 3 and trainings[0] is None and None not in trainings[1:]
    assert clf.n_iter_ == len(clf.loss_curve_) == 10 + 5 + steps
    for name, value in clf.denoiser_.state_dict().items():
        torch.testing.assert_close(value, once.denoiser_.state_dict()[name], rtol=0, atol=0)
    assert clf.scale_ == once.scale_
    _assert_probabilities(clf.predict_proba(X), 40, 2)


def test_divergence_during_the_refit_keeps_the_first_network_and_says_so():
    # From the refit's third step on, predictions of 1e30 (through the weights, for autograd).
    network = _across(at=13, action=lambda net, x_t: net.output[1].bias.sum() + torch.full_like(x_t, 1e30))
    clf = _clf(denoiser=functools.partial(network, hidden_size=16), max_iter=10)
    caught = _fit_catching_warnings(clf, X, Y)
    messages = [str(w.message) for w in caught if w.category is UserWarning]
    assert len(messages) == 1 and messages[0].startswith("Training diverged during the refit on all 40 samples (")
    assert messages[0].endswith("; the model keeps the network trained before it (on 28 samples) and its trials.")
    assert clf.denoiser_.calls == 10 and clf.n_iter_ == 10
    _assert_probabilities(clf.predict_proba(X), 40, 2)


# --- Faults during fit: a failed fit leaves the estimator as it was ----------------------


def _fitted_state(clf):
    """Everything that fit learned, as bytes: the fitted attributes, the network's weights."""
    state = {}
    for name, value in vars(clf).items():
        if isinstance(value, nn.Module):  # its pickle holds storage addresses, not only values
            value = {key: tensor.numpy().tobytes() for key, tensor in value.state_dict().items()}
        if name.endswith("_") or name.startswith("_"):
            state[name] = pickle.dumps(value)
    return state


# A fault that the next call of _Faulty raises, set by a test through monkeypatch.
FAULT = {"raise": None}


class _Faulty(nn.Module):
    """A small MLP denoiser that calls ``FAULT["raise"](x_t)`` first: faults injected through the public API."""

    def __init__(self, n_features, n_classes):
        super().__init__()
        self.net = MLPDenoiser(n_features, n_classes, hidden_size=16)

    def forward(self, x_t, t, y):
        if FAULT["raise"] is not None:
            FAULT["raise"](x_t)
        return self.net(x_t, t, y)


def _interrupt_the_selection(clf, monkeypatch):
    # Training has run (and changed the network, with warm_start) when this raises: the
    # choice of the trials scores the held-out rows in calls of block_rows(1) rows (1008),
    # without grad.
    def interrupt(x_t):
        if not torch.is_grad_enabled() and x_t.shape[0] >= _scoring.block_rows(1):
            raise KeyboardInterrupt

    monkeypatch.setitem(FAULT, "raise", interrupt)
    clf.fit(X, Y)


def _fail_after_three_steps(clf, monkeypatch):
    steps = []

    def fail(x_t):
        steps.extend([None] * torch.is_grad_enabled())
        if len(steps) > 3:
            raise RuntimeError("failed part way")

    monkeypatch.setitem(FAULT, "raise", fail)
    clf.fit(X, Y)


FAILURES = {
    "inf in X": (lambda clf, mp: clf.fit(_with(np.inf), Y), ValueError),
    "more features and a continuous y": (lambda clf, mp: clf.fit(np.hstack([X, X]), np.linspace(0, 1, 40)), ValueError),
    "invalid priors": (lambda clf, mp: clf.set_params(priors=[0.2, 0.2]).fit(X, Y), ValueError),
    "divergence": (lambda clf, mp: clf.set_params(learning_rate=1e6, max_iter=20).fit(X, Y), FloatingPointError),
    "an error during training": (_fail_after_three_steps, RuntimeError),
    "Ctrl-C after training": (_interrupt_the_selection, KeyboardInterrupt),
}


@pytest.mark.parametrize("warm_start", [False, True])
@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_refit_leaves_the_fitted_model_as_it_was(failure, warm_start, monkeypatch):
    fail, error = FAILURES[failure]
    clf = _clf(denoiser=_Faulty, warm_start=warm_start).fit(X, Y)
    params, state, proba = clf.get_params(), _fitted_state(clf), clf.predict_proba(X)
    with pytest.raises(error):
        fail(clf, monkeypatch)
    monkeypatch.undo()
    assert _fitted_state(clf) == state
    clf.set_params(**params)
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    with pytest.raises(ValueError, match="X has 1 features, but DiffusionClassifier is expecting 2"):
        clf.predict(X[:, :1])
    # ... and it goes on from there: a continued fit runs the steps of a continued fit.
    assert clf.fit(X, Y).n_iter_ == (10 if warm_start else 5)


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
    assert vars(clf).keys() == clf.get_params().keys()
    with pytest.raises(NotFittedError):
        clf.predict(X)


def test_a_failed_refit_keeps_the_feature_names():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=["a", "b"])
    clf = _clf().fit(frame, Y)
    with pytest.raises(ValueError, match="Input X contains infinity"):
        clf.fit(_with(np.inf), Y)  # no names: validation would reset them before it fails
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict(frame)


# --- Safe loading -------------------------------------------------------------------------
# skdiffusion.load reads safetensors and JSON (tests/test_persistence.py rejects tampered
# files); nothing the library loads may ever unpickle arbitrary objects.

UNSAFE_LOADERS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("pickle", "Unpickler"),
    ("joblib", "load"),
    ("dill", "load"),
    ("dill", "loads"),
    ("cloudpickle", "load"),
    ("cloudpickle", "loads"),
}


def _keyword_is(call, name, value):
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def _unsafe_loads(source):
    """Return the lines of ``source`` that may unpickle arbitrary objects."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and any((node.module, a.name) in UNSAFE_LOADERS for a in node.names):
            lines.append(node.lineno)
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
        name = (owner, node.func.attr)
        if (
            name in UNSAFE_LOADERS
            or (name == ("torch", "load") and not _keyword_is(node, "weights_only", True))
            or (name in {("np", "load"), ("numpy", "load")} and _keyword_is(node, "allow_pickle", True))
        ):
            lines.append(node.lineno)
    return lines


def test_the_unsafe_load_scanner_finds_unsafe_loads():
    source = (
        "import pickle, torch, numpy as np\n"
        "from pickle import loads\n"
        "torch.load(path)\n"
        "torch.load(path, weights_only=False)\n"
        "pickle.loads(data)\n"
        "np.load(path, allow_pickle=True)\n"
        "torch.load(path, weights_only=True)\n"
        "np.load(path)\n"
    )
    assert _unsafe_loads(source) == [2, 3, 4, 5, 6]


def test_skdiffusion_never_loads_with_unrestricted_pickle():
    package = Path(skdiffusion.__file__).parent
    found = {path.name: _unsafe_loads(path.read_text()) for path in sorted(package.rglob("*.py"))}
    assert len(found) >= 5
    assert {name: lines for name, lines in found.items() if lines} == {}


def test_priors_within_rounding_of_one_are_normalised_and_sample():
    clf = _clf(priors=[0.5, 0.500004]).fit(X, Y)  # np.isclose to 1: accepted, as GaussianNB does
    np.testing.assert_allclose(clf.class_prior_, [0.5 / 1.000004, 0.500004 / 1.000004], rtol=1e-15)
    assert clf.class_prior_.sum() == pytest.approx(1.0, abs=1e-15)
    X_new, y_new = clf.sample(20, random_state=0)  # drew from unnormalised priors: "probabilities do not sum to 1"
    assert X_new.shape == (20, 2) and set(y_new) <= {0, 1}


def test_a_constant_column_of_huge_values_standardises_to_zero():
    # Its mean rounds 2e15 away from 1e30; with the unit scale of a constant column it was
    # standardised to 2e15, and training "diverged".
    X_const = np.c_[X, np.full(40, 1e30)]
    clf = _clf().fit(X_const, Y)
    assert clf.scaler_.mean_[2] == 1e30 and clf.scaler_.scale_[2] == 1.0
    assert np.isfinite(clf.predict_proba(X_const)).all()


@pytest.mark.parametrize("n_samples", [True, 0, -1, 2.0, "3"])
def test_sample_needs_a_positive_integer(n_samples):
    clf = _clf().fit(X, Y)
    with pytest.raises(ValueError, match=f"n_samples must be a positive integer, got {n_samples!r}"):
        clf.sample(n_samples)


def test_sample_names_labels_that_are_not_classes():
    clf = _clf().fit(X, Y)
    with pytest.raises(ValueError, match=r"y contains labels not seen in fit: \[None\]"):
        clf.sample(2, y=[None, None])
    with pytest.raises(ValueError, match=r"y contains labels not seen in fit: \[None, 'a'\]"):
        clf.sample(3, y=[0, None, "a"])


def test_more_trials_times_classes_than_the_memory_budget_is_refused_at_predict():
    X200 = RNG.normal(size=(400, 2))
    y200 = np.arange(400) % 200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = _clf(n_diffusion_steps=20, validation_fraction=None).fit(X200, y200)
    # 100,000 trials x 200 classes: 2e7 errors for each row, beyond 2**24 (64 MiB).
    with pytest.raises(ValueError, match=r"n_trials=100000 with 200 classes asks for 20,000,000 .* at most 83886\."):
        clf.set_params(n_trials=100_000).predict_proba(X200[:1])
