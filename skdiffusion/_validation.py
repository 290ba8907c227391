"""Pure validators of data and parameters, shared by the estimator, persistence and the adapters.

Each takes values and returns them checked (or converted); none reads or writes an estimator.
"""

import warnings
from numbers import Integral, Number, Real

import numpy as np
import torch
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import _check_sample_weight, _get_feature_names, check_array, check_X_y, validate_data

from ._schedule import make_alphas_cumprod
from ._scoring import PairedTTest, StagedPruning
from ._tabular import columns

# The dtypes X is converted to: float32 stays float32, anything else becomes float64.
DTYPES = [np.float64, np.float32]


def check_table(estimator, X, y="no_validation", *, reset, is_categorical=None):
    """Return ``(X_numeric, X_categorical, y, feature_names)`` checked as ``validate_data`` checks them.

    ``X_numeric`` holds the numeric columns as floats, NaN where a value is missing;
    ``X_categorical`` the columns where ``is_categorical`` is True, as an object array (None
    without any). ``y="no_validation"``: ``X`` alone is checked, and None comes back for
    ``y``. Nothing is written on the estimator:
    with ``reset=True``, the feature names of ``X`` (or None) are returned, where
    ``validate_data`` would set them at once and a fit that then fails would leave them
    behind; with ``reset=False``, ``X`` must have the features the estimator was fitted on.
    """
    try:
        return _checked_table(estimator, X, y, reset=reset, is_categorical=is_categorical)
    except ValueError as exc:
        # numpy's message names the value but not its column, nor what to do.
        if not str(exc).startswith("could not convert"):
            raise
        raise ValueError(
            f"X has values that are not numbers ({exc}) in columns that are not categorical. A DataFrame's "
            "string, category and boolean columns are categorical by default; in an array (as meta-estimators "
            "such as AdaBoostClassifier pass X on), name them: categorical_features=[their indices]."
        ) from exc


def _checked_table(estimator, X, y, *, reset, is_categorical):
    """Return ``(X_numeric, X_categorical, y, feature_names)``: see :func:`check_table`."""
    check_no_dates(X, is_categorical)
    finite = {"dtype": DTYPES, "ensure_all_finite": "allow-nan"}
    x_only = isinstance(y, str) and y == "no_validation"
    if is_categorical is None or not is_categorical.any():
        if not reset:
            if x_only:
                X = validate_data(estimator, X, reset=False, **finite)
            else:
                X, y = validate_data(estimator, X, y, reset=False, **finite)
            return X, None, y, getattr(estimator, "feature_names_in_", None)
        feature_names = _get_feature_names(X)
        X, y = check_X_y(X, y, estimator=estimator, **finite)  # a fit: reset=True comes with y
        return X, None, y, feature_names
    if reset:
        feature_names = _get_feature_names(X)
    else:  # the feature count and names, then each part's own checks
        validate_data(estimator, X, reset=False, skip_check_array=True)
        feature_names = getattr(estimator, "feature_names_in_", None)
    X_categorical, X = columns(X, is_categorical), columns(X, ~is_categorical, as_objects=False)
    if X.shape[0] == 0:  # scikit-learn's message, with the shape of the whole table
        check_array(np.empty((0, is_categorical.size)), estimator=estimator)
    if X.shape[1] == 0:
        raise ValueError(
            "X has only categorical columns; DiffusionClassifier needs at least one numeric column to diffuse. "
            "Categories alone are a naive Bayes model's data (sklearn.naive_bayes.CategoricalNB), which is "
            "what this classifier's factor of the categories would be without the diffusion."
        )
    if x_only:
        return check_array(X, estimator=estimator, **finite), X_categorical, None, feature_names
    X, y = check_X_y(X, y, estimator=estimator, **finite)
    if X_categorical.shape[0] != X.shape[0]:
        raise ValueError(f"X has {X_categorical.shape[0]} rows, y has {X.shape[0]}.")
    return X, X_categorical, y, feature_names


def check_no_dates(X, is_categorical=None):
    """Raise a ValueError naming the columns of ``X`` that hold dates or durations, unless they are categorical.

    numpy would fail to convert them to floats with a message about dtype promotion.
    """
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None:
        dtype = getattr(X, "dtype", None)
        dated = [f"X (dtype {dtype})"] if getattr(dtype, "kind", "") in ("m", "M") else []
    else:
        categorical = np.zeros(len(dtypes), dtype=bool) if is_categorical is None else is_categorical
        dated = [
            f"column {k} ({name!r}, dtype {dtype}) of X"
            for k, (name, dtype, is_category) in enumerate(zip(X.columns, dtypes, categorical))
            if getattr(dtype, "kind", "") in ("m", "M") and not is_category
        ]
    if dated:
        raise ValueError(
            f"{', '.join(dated)}: dates or durations, which DiffusionClassifier does not read as numbers. "
            "Convert them (for example to days since a date, or to the year and the month as columns of their "
            "own), make them categorical, or drop them."
        )


def drop_zero_weights(X, y, sample_weight):
    """Return ``X``, ``y`` and ``sample_weight`` (checked) without the rows of weight zero: they are removed.

    ``sample_weight`` None stays None.
    """
    if sample_weight is None:
        return X, y, None
    sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    kept = sample_weight > 0
    if kept.all():
        return X, y, sample_weight
    return X[kept], y[kept], sample_weight[kept]


def row_weights(sample_weight, class_weight, classes, y_index, *, incremental=False):
    """Return the weight of each row: ``sample_weight`` times its class's ``class_weight``; None if all are 1.

    ``class_weight`` is None, "balanced" (``n_samples / (n_classes * count)``, as in
    scikit-learn) or a dict from label to weight. ``incremental``: a ``partial_fit`` call,
    which sees one batch and cannot balance the classes of all of them.
    """
    weights = np.ones(y_index.size) if sample_weight is None else sample_weight
    if class_weight is not None:
        if incremental and class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' is not supported for partial_fit: a batch does not show the class "
                "frequencies of the whole data. Pass them as a dict, e.g. from "
                "sklearn.utils.class_weight.compute_class_weight."
            )
        labels = classes[y_index]
        if class_weight == "balanced":  # over the classes present: a class without rows has no frequency
            present = np.unique(y_index)
            per_class = np.ones(classes.size)
            per_class[present] = compute_class_weight("balanced", classes=classes[present], y=labels)
        else:
            per_class = compute_class_weight(class_weight, classes=classes, y=labels)
        weights = weights * per_class[y_index]
    return None if (weights == 1).all() else weights


def check_label_types(y):
    """Return ``y``, an object array of numbers as numbers; raise a TypeError if it mixes types."""
    if y.dtype != object:
        return y
    numeric = Number | np.number | np.bool_
    kinds = {"str" if isinstance(v, str) else "number" if isinstance(v, numeric) else type(v).__name__ for v in y}
    if len(kinds) > 1:
        raise TypeError(f"y mixes labels of types {sorted(kinds)}; the labels must be all strings or all numbers.")
    # type_of_target calls an object array of numbers "unknown"; as numbers they are classes.
    return np.asarray(y.tolist()) if kinds == {"number"} else y


def partial_fit_classes(classes, fitted_classes):
    """Return the classes of a ``partial_fit`` call, with scikit-learn's errors for a missing or changed list."""
    if classes is None:
        if fitted_classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return fitted_classes
    given = unique_labels(classes)
    if fitted_classes is not None and not np.array_equal(fitted_classes, given):
        raise ValueError(
            f"`classes={classes!r}` is not the same as on last call to partial_fit, was: {fitted_classes!r}"
        )
    return given


def class_index(labels, classes, message=lambda unknown: f"y contains labels not seen in fit: {unknown}."):
    """Map labels to their index in ``classes``; raise ``message(unknown labels)`` on unknown ones."""
    # isin compares labels of any dtype to classes without raising (e.g. "a" against ints).
    unknown = ~np.isin(labels, classes)
    if unknown.any():
        try:
            found = np.unique(labels[unknown]).tolist()
        except TypeError:  # labels that do not sort, such as None: in order of appearance
            found = list(dict.fromkeys(labels[unknown].tolist()))
        raise ValueError(message(found))
    return np.searchsorted(classes, labels)


def check_sample_shape(image_shape, n_features):
    """Return the shape of one sample for the denoiser: ``(n_features,)``, or ``image_shape`` checked."""
    if image_shape is None:
        return (n_features,)
    shape = image_shape
    if not (len(shape) == 3 and all(isinstance(size, Integral) and size >= 1 for size in shape)):
        raise ValueError(f"image_shape must be a tuple (channels, height, width) of positive ints, got {shape!r}.")
    if int(np.prod(shape)) != n_features:
        raise ValueError(
            f"image_shape={shape!r} holds {int(np.prod(shape))} values, but X has {n_features} features per row."
        )
    return tuple(int(size) for size in shape)


def timestep_bounds(timestep_range, n_steps):
    """Return a ``(lo, hi)`` range as timesteps ``(t_min, t_max)``, or raise a ValueError."""
    lo, hi = timestep_range if len(timestep_range) == 2 else (None, None)
    if not (isinstance(lo, Real) and isinstance(hi, Real) and 0 <= lo < hi <= 1):
        raise ValueError(f"timestep_range must be a pair (lo, hi) with 0 <= lo < hi <= 1, got {timestep_range!r}.")
    return lo * n_steps, hi * n_steps


def check_pruning(pruning):
    """Return ``pruning`` as a rule object of ``_scoring``, or None."""
    if pruning is None:
        return None
    if isinstance(pruning, str):
        return PairedTTest()
    try:
        return StagedPruning(pruning)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"pruning must be None, 't-test' or a sequence of (trials, kept) pairs, got {pruning!r} ({exc})."
        ) from exc


def check_alphas_cumprod(noise_schedule, n_steps):
    """Return the ``alphas_cumprod`` of ``noise_schedule``, float64, or raise a ValueError if they are bad."""
    if isinstance(noise_schedule, str):
        return make_alphas_cumprod(noise_schedule, n_steps)
    try:
        # A copy: the fitted schedule must not change with the parameter's array.
        alphas_cumprod = np.asarray(noise_schedule, dtype=np.float64).copy()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"noise_schedule must be a name or an array of numbers, got {noise_schedule!r}.") from exc
    if alphas_cumprod.ndim != 1:
        raise ValueError(f"noise_schedule must be a 1-D array of alphas_cumprod, got shape {alphas_cumprod.shape}.")
    if alphas_cumprod.size != n_steps:
        raise ValueError(
            f"noise_schedule holds {alphas_cumprod.size} values of alphas_cumprod, one per diffusion step, "
            f"but n_diffusion_steps={n_steps}: set n_diffusion_steps={alphas_cumprod.size}."
        )
    # A value of 1 (no noise: no eps to predict) makes sampling divide by zero; one of 0
    # leaves no signal of x_0 at all.
    outside = ~((alphas_cumprod > 0) & (alphas_cumprod < 1))  # NaN too
    rising = np.r_[False, ~(np.diff(alphas_cumprod) < 0)]
    if outside.any() or rising.any():
        t = int(np.flatnonzero(outside | rising)[0])
        raise ValueError(
            "noise_schedule's alphas_cumprod must decrease strictly, every value in (0, 1) (the signal "
            f"kept at each timestep t = 0, 1, ...), got {alphas_cumprod[t]!r} at t = {t}"
            + (f" after {alphas_cumprod[t - 1]!r}." if t else ".")
        )
    return alphas_cumprod


def class_prior(priors, class_count):
    """Return ``priors`` checked, or the class frequencies of ``class_count``."""
    if priors is None:
        return class_count / class_count.sum()
    try:
        priors = np.asarray(priors, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"priors must be an array of class probabilities, got {priors!r}.") from exc
    if priors.shape != class_count.shape:
        raise ValueError("Number of priors must match number of classes.")
    if not np.isclose(priors.sum(), 1.0):
        raise ValueError("The sum of the priors should be 1.")
    if not (priors > 0).all():  # NaN too
        raise ValueError("Priors must be positive.")
    return priors / priors.sum()  # to the last bit: sample draws classes from them


def log_prior(class_prior):
    """Return ``log(class_prior)``: -inf for a class that partial_fit has not seen yet."""
    with np.errstate(divide="ignore"):
        return np.log(class_prior)


def check_device(device):
    """Return ``device`` as a torch.device, or raise a ValueError naming it."""
    try:
        checked = torch.device(device)
        torch.zeros(1, device=checked).cpu()
    except (RuntimeError, AssertionError, NotImplementedError) as exc:
        raise ValueError(f"device={device!r} is not available: {exc}") from exc
    return checked


def center_constant_columns(scaler, X):
    """Return the fitted ``scaler`` with the mean of each column constant in ``X`` set to its value, exactly.

    Its mean is a sum divided, which rounds: a column of 1e30 would have a mean 2e15 off
    and, with the unit scale of a constant column, standardise to 2e15 instead of 0.
    """
    if X.shape[0] == 0 or getattr(scaler, "mean_", None) is None:
        return scaler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are checked before
        value = np.nanmax(X, axis=0)
        constant = value == np.nanmin(X, axis=0)
    scaler.mean_ = np.where(constant, value, scaler.mean_)
    return scaler


# A numeric column whose standard deviation is over this many times that of its values
# between the 1st and 99th percentiles has its scale set by a few outlying values. On the
# real-table panel and the suite the largest ratio is 5; one 1e30 among 100,000 normal
# numbers gives 3e27, and Cauchy columns of 10,000 draws 9 to 81.
OUTLYING_SCALE = 100


def outlying_columns(X):
    """Return the indices of the columns of ``X`` whose scale a few outlying values set.

    Standardised, the other values of such a column crowd within a hundredth of a unit,
    where the classifier can barely tell them apart. Columns constant between the
    percentiles (a rare value among repeats) are not counted, nor columns too large to
    standardise at all (:func:`standardised` refuses them).
    """
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        low, high = np.nanpercentile(X, [1, 99], axis=0)
        bulk = np.nanstd(np.where((X >= low) & (X <= high), X, np.nan), axis=0)
        spread = np.nanstd(X, axis=0)
    return np.flatnonzero((bulk > 0) & np.isfinite(spread) & (spread > OUTLYING_SCALE * bulk))


def standardised(scaler, X):
    """Return ``scaler.transform(X)``, 0 where X is NaN; raise a ValueError where it overflows float32.

    One value of 1e30 among ordinary numbers standardises to a few units (it sets the
    column's scale); values near float64's limits overflow the column's variance or the
    result, and the network reads float32.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        x = scaler.transform(X)
    x[np.isnan(X)] = 0.0
    limit = np.finfo(np.float32).max
    # Reductions, not an array of |x|: X may be as large as memory allows. NaN, from an
    # overflowed scale, fails both comparisons.
    if x.size and not (-limit <= x.min() and x.max() <= limit):
        raise ValueError(
            "X has values too large for DiffusionClassifier: standardised with the training mean and "
            f"scale they overflow float32 (largest |X| = {np.nanmax(np.abs(X)):.3g}). Rescale the features."
        )
    return x


def standardise(scaler, X):
    """Return :func:`standardised` ``X`` as a float32 tensor."""
    return torch.as_tensor(standardised(scaler, X), dtype=torch.float32)


def check_errors(errors):
    """Raise a ValueError if some denoising errors of shape (n, n_classes) are not finite."""
    bad = np.flatnonzero(~np.isfinite(errors).all(axis=1))
    if bad.size:
        raise ValueError(
            f"The denoising errors of {bad.size} of {len(errors)} samples are not finite (first: row {bad[0]}): "
            "the denoiser returned NaN or inf, or these samples lie too far from the training data."
        )
