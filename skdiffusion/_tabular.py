"""Tables: which columns are categorical, their codes, and their class-conditional frequencies.

A row of a table is split into numeric values (NaN where missing) and category codes (-1
where missing or unseen). The class-conditional density factors as

    p(x | c) = p(x_cat | c) * p(x_num | x_cat, c)

The diffusion model gives the second factor: it diffuses the observed numeric values
only, the one-hot codes of the categories and the missing values' places held clean
beside them as conditioning. The first factor is a product of smoothed category
frequencies per class (categorical naive Bayes): a discrete likelihood, where a Gaussian
density on 0/1 columns would collapse at small noise. Neither factor takes the noise of a
few rows for evidence: the frequencies shrink towards those of all classes as far as a
column does not tell the classes apart, and a rare category conditions the diffusion
model as an unseen one.
"""

import functools
import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import minimize_scalar

# A category of fewer (weighted) training rows enters the denoiser as an unseen one does,
# as zeros: from a few rows the network learns their noise, and a column of random labels
# cost accuracy and log loss (benchmarks/results/random_labels.md).
MIN_CATEGORY_ROWS = 40
# A column with more categories of inputs than this enters through its frequencies alone,
# p(x_cat | c), and gives the network no input: an identifier or a code of many values
# splits the rows into many small groups, whose offsets the network would learn from few
# rows each, while the frequencies carry what the column tells of the class. Gradient
# boosting libraries likewise one-hot encode only columns of few categories (LightGBM's
# max_cat_to_onehot, CatBoost's one_hot_max_size). Of the real-table panel, only churn has
# such a column, its state of 51 values: see the tables guide, and
# benchmarks/results/real_panel.md and random_labels.md.
MAX_NETWORK_CATEGORIES = 16
# The largest pseudo-count m of smoothed_counts, per category: the frequencies over all
# classes, nearly. The smallest is one per category, Laplace's: a leave-one-out likelihood
# cannot see the chance of a category that a class never showed, and a column whose
# categories follow the class exactly in fit would otherwise get m near 0, and Bayes' rule
# near-certain odds against a class that shows another category.
MAX_PSEUDO_COUNT = 1e6
# How far (in steps) a value may fall from a whole multiple of its column's step and count as
# one: float decimals (7.2 is 71.99999999999999 steps of 0.1) lie within 1e-9 steps of one.
GRID_TOLERANCE = 1e-6


class Table(NamedTuple):
    """A table's rows as the model reads them."""

    numeric: np.ndarray  # (n, n_numeric) floats, NaN where a value is missing
    codes: np.ndarray  # (n, n_categorical) category codes, -1 where missing or unseen
    categories: list  # the categories of each categorical column
    is_categorical: np.ndarray  # (n_features,): which of X's columns are categorical


def _own_step(distinct):
    """Return the step of which each of a column's sorted ``distinct`` values is a whole multiple, or 0.

    The step is the smallest gap between the values; 0 where there are fewer than two or
    one of them is not a whole multiple of that step (see :func:`on_step`): integer
    counts, scores on a scale, pixel intensities and measurements to a fixed precision
    have a step, continuous values none.
    """
    if distinct.size < 2:
        return 0.0
    step = float(np.diff(distinct).min())
    return step if on_step(distinct, step) else 0.0


def on_step(values, step):
    """Return True if every one of ``values`` is a whole multiple of ``step``, to within ``GRID_TOLERANCE`` steps."""
    multiples = values / step
    return bool(np.allclose(multiples, np.round(multiples), rtol=0.0, atol=GRID_TOLERANCE))


def _distinct(column):
    """Return the sorted distinct values of ``column``, NaN left out."""
    return np.unique(column[~np.isnan(column)])


def value_steps(numeric, dequantize, scale=None, least_noise=0.0):
    """Return the step of each numeric column that fit dequantizes, 0 for the others.

    ``dequantize``: True, each column's own step (:func:`_own_step`, NaN left out); "auto", the table's
    step, for every column of two values or more: the own step that most columns share
    (the smallest of those that tie), where every value of every column is a whole
    multiple of it (a table quantized as a whole: pixel intensities, answers on one
    scale, measurements to one precision; a sparse column of a few hundred images, with
    levels 0, 3 and 16 only, has no step of its own but lies on its table's grid of 1),
    else none; False, none. A step narrower than ``least_noise`` once divided by the
    column's ``scale`` (the standardisation's; None: 1) is left out: the noise of every
    timestep, at least ``least_noise``, blurs a grid that fine already.
    """
    columns = [_distinct(column) for column in numeric.T]
    own = np.array([_own_step(column) for column in columns], dtype=np.float64)
    auto = isinstance(dequantize, str)  # "auto", the only string the parameter takes
    steps = own if dequantize and not auto else np.zeros(len(columns))  # True, or numpy's
    if auto and (own > 0).any():
        # Steps that differ by float rounding alone (0.1 from 7.3 - 7.2 and from 5.1 - 5.0) vote together.
        votes, counts = np.unique(np.round(own[own > 0], 12), return_counts=True)
        step = float(votes[counts.argmax()])  # the first of the most shared: the smallest
        if all(on_step(column, step) for column in columns):
            steps = np.where([column.size >= 2 for column in columns], step, 0.0)
    return np.where(steps / (1.0 if scale is None else scale) >= least_noise, steps, 0.0)


def dequantization_widths(steps, scale, sample_shape):
    """Return the cells of the denoiser's inputs that training spreads each value over, or None if there are none.

    ``steps`` of the numeric columns (see :func:`value_steps`) over ``scale``, the
    standardisation's (None: unscaled), then 0 for the one-hot categories that follow
    them: a float32 tensor of the denoiser's ``sample_shape``.
    """
    if not (steps > 0).any():
        return None
    cells = np.zeros(math.prod(sample_shape), dtype=np.float32)
    cells[: steps.size] = steps / (1.0 if scale is None else scale)
    return torch.as_tensor(cells).reshape(sample_shape)


def on_grid(numbers, steps):
    """Return ``numbers`` (n, n_numeric) with each column of a positive step rounded to its nearest multiple."""
    stepped = steps > 0
    numbers = numbers.copy()
    numbers[:, stepped] = np.round(numbers[:, stepped] / steps[stepped]) * steps[stepped]
    return numbers


def input_width(n_numeric, read):
    """Return the number of values of a row for the denoiser: the numbers, then the one-hot categories it ``read``s.

    ``read`` holds, per categorical column, the mask of the categories that the network
    has an input for (see :func:`network_categories`).
    """
    return n_numeric + sum(int(np.count_nonzero(r)) for r in read)


def network_categories(counts, every=False):
    """Return, per column, the mask of the categories that the network reads: an input each.

    Those of at least ``MIN_CATEGORY_ROWS`` (weighted) rows in the training ``counts``;
    ``every``: all of them (``partial_fit``, whose first batch may hold few rows of a
    category that later batches fill). None of a column where that makes more than
    ``MAX_NETWORK_CATEGORIES``. A category without an input conditions the network as an
    unseen one does, and a column of thousands of labels does not widen the network's
    input layer.
    """
    if every:
        read = [np.ones(count.shape[1], dtype=bool) for count in counts]
    else:
        read = [count.sum(axis=0) >= MIN_CATEGORY_ROWS for count in counts]
    return [r if np.count_nonzero(r) <= MAX_NETWORK_CATEGORIES else np.zeros_like(r) for r in read]


def table(X_numeric, X_categorical, is_categorical, categories=None, feature_names=None):
    """Return the :class:`Table` of checked columns; ``categories`` None: those seen in ``X_categorical``.

    ``feature_names`` (X's column names, or None) name the columns in errors.
    """
    if X_categorical is None:
        no_codes = np.zeros((X_numeric.shape[0], 0), dtype=np.int64)
        return Table(X_numeric, no_codes, [], np.zeros(X_numeric.shape[1], dtype=bool))
    absent = missing(X_categorical)
    if categories is None:
        names = [column_name(k, feature_names) for k in np.flatnonzero(is_categorical)]
        categories = fit_categories(X_categorical, absent, names)
    return Table(X_numeric, encode(X_categorical, categories, absent), categories, is_categorical)


def denoiser_input(x_numeric, table, read, counts):
    """Return the denoiser's rows and their mask of diffused elements (None: every element is).

    ``x_numeric`` is the standardised numeric part, 0 where missing (float32 tensor); the
    one-hot categories follow it (see :func:`one_hot`, with the network's ``read`` mask and
    the training ``counts``). The mask is 1 on the observed numbers, 0 on the missing ones
    and on the one-hot columns, which condition the denoiser and are not diffused.
    """
    absent = np.isnan(table.numeric)
    if not table.categories and not absent.any():
        return x_numeric, None
    one = torch.as_tensor(one_hot(table.codes, read, counts))
    mask = torch.cat([torch.as_tensor(~absent, dtype=torch.float32), torch.zeros_like(one)], dim=1)
    return torch.cat([x_numeric, one], dim=1), mask


def categorical_mask(X, categorical_features, n_features):
    """Return the boolean mask of the categorical columns of ``X``.

    ``categorical_features`` is read as ``HistGradientBoostingClassifier`` reads it: None
    or an empty list (no column), "from_dtype" (pandas columns of dtype category, object,
    string or bool), a boolean mask, integer indices or column names.
    """
    mask = np.zeros(n_features, dtype=bool)
    if categorical_features is None:
        return mask
    if isinstance(categorical_features, str):  # "from_dtype", the only string the constraints allow
        dtypes = getattr(X, "dtypes", None)
        if dtypes is not None:
            mask[:] = [dtype.kind in "OSUb" or str(dtype) in ("category", "string") for dtype in dtypes]
        return mask
    given = np.asarray(categorical_features)
    if given.size == 0:  # no column, as HistGradientBoostingClassifier reads an empty list
        return mask
    if given.dtype.kind == "b":
        if given.shape != (n_features,):
            raise ValueError(
                f"categorical_features as a boolean mask must have shape ({n_features},), got {given.shape}."
            )
        return given.copy()
    if given.dtype.kind in "OU":
        names = getattr(X, "columns", None)
        if names is None:
            raise ValueError("categorical_features names columns, but X has no column names (pass a DataFrame).")
        names = [str(name) for name in names]
        unknown = sorted(set(given.tolist()) - set(names))
        if unknown:
            raise ValueError(f"categorical_features names columns {unknown} that X does not have.")
        mask[[names.index(name) for name in given.tolist()]] = True
        return mask
    if given.dtype.kind not in "iu" or given.ndim != 1:
        raise ValueError(
            "categorical_features must be 'from_dtype', None, a boolean mask, column indices or column names, "
            f"got {categorical_features!r}."
        )
    if ((given < -n_features) | (given >= n_features)).any():
        raise ValueError(f"categorical_features holds indices out of range for {n_features} features: {given}.")
    mask[given] = True
    return mask


def columns(X, mask, *, as_objects=True):
    """Return the columns of ``X`` where ``mask`` is True: an object array (n, k), or a frame's own columns.

    ``as_objects=False`` keeps a DataFrame's columns as a DataFrame, for scikit-learn's
    ``check_array`` to convert (pandas' nullable dtypes, whose NA becomes NaN, among them).
    """
    if hasattr(X, "iloc"):
        selected = X.iloc[:, np.flatnonzero(mask)]
        return selected.to_numpy(dtype=object) if as_objects else selected
    return np.asarray(X, dtype=object)[:, mask]


def missing(values):
    """Return where ``values`` (an object array) are missing: None, NaN, pandas' NA or NaT."""
    flat = [
        v is None or type(v).__name__ in ("NAType", "NaTType") or (isinstance(v, float) and v != v) for v in values.flat
    ]
    return np.array(flat, dtype=bool).reshape(values.shape)


def column_name(index, feature_names=None):
    """Return how errors name column ``index`` of X: by its index, and its name if X has names."""
    return f"column {index}" if feature_names is None else f"column {index} ({feature_names[index]!r})"


def fit_categories(X_cat, absent, names):
    """Return the sorted categories seen in each column of ``X_cat``, the ``absent`` (missing) values left out.

    ``names`` name the columns in errors (see :func:`column_name`).
    """
    categories = []
    for j, name in enumerate(names):
        seen = set(X_cat[~absent[:, j], j].tolist())
        if not seen:
            raise ValueError(f"The categorical {name} of X holds no value: every entry is missing. Drop it.")
        try:
            categories.append(np.array(sorted(seen)))
        except TypeError as exc:
            kinds = sorted({type(v).__name__ for v in seen})
            raise ValueError(f"The categorical {name} of X mixes values of types {kinds}; make them one type.") from exc
    return categories


def encode(X_cat, categories, absent):
    """Return the code of each value, shape (n, k): its index in its column's categories; -1 if ``absent`` or unseen."""
    codes = np.full(X_cat.shape, -1, dtype=np.int64)
    for j, column_categories in enumerate(categories):
        lookup = {value: code for code, value in enumerate(column_categories.tolist())}
        present = np.flatnonzero(~absent[:, j])
        codes[present, j] = [lookup.get(value, -1) for value in X_cat[present, j].tolist()]
    return codes


def one_hot(codes, read, counts):
    """Return the one-hot vectors of ``codes``, shape (n, inputs), float32: a column per category the network ``read``s.

    ``read`` holds each column's mask of those categories (see :func:`network_categories`).
    A code of -1 (missing or unseen), of a category without an input, or of one of fewer
    than ``MIN_CATEGORY_ROWS`` rows in the training ``counts`` (see
    :func:`category_counts`) gets zeros.
    """
    blocks = []
    for j, (inputs, frequent) in enumerate(zip(read, network_categories(counts))):
        block = np.zeros((codes.shape[0], int(np.count_nonzero(inputs))), dtype=np.float32)
        column = np.where(inputs & frequent, np.cumsum(inputs) - 1, -1)
        position = np.where(codes[:, j] >= 0, column[np.maximum(codes[:, j], 0)], -1)
        rows = np.flatnonzero(position >= 0)
        block[rows, position[rows]] = 1.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((codes.shape[0], 0), dtype=np.float32)


def category_counts(codes, categories, y_index, n_classes, weights=None):
    """Return, per column, the (weighted) count of each category in each class: arrays (n_classes, n_categories)."""
    weights = np.ones(y_index.size) if weights is None else weights
    counts = []
    for j, column_categories in enumerate(categories):
        rows = codes[:, j] >= 0
        count = np.zeros((n_classes, len(column_categories)))
        np.add.at(count, (y_index[rows], codes[rows, j]), weights[rows])
        counts.append(count)
    return counts


def smoothed_counts(count):
    """Return a column's counts (n_classes, n_categories) plus their pseudo-counts ``m * pi``: read-only.

    ``pi`` holds the categories' frequencies over all classes (one pseudo-count each), and
    ``m`` how far each class's frequencies shrink towards them: the ``m`` under which the
    rows' categories, each row left out of the counts in turn, are most likely given
    their class (an empirical Bayes choice by leave-one-out likelihood), at least the
    number of categories (see ``MAX_PSEUDO_COUNT``). A column whose categories do not
    depend on the class gets a large ``m``, frequencies nearly the same in every class,
    and its factor nearly cancels out of Bayes' rule; one whose categories tell the
    classes apart, a small one. (Weighted counts leave out one unit of a cell, or all of
    it if less.) Computed once per counts: predict and sample ask again at every call.
    """
    count = np.asarray(count, dtype=np.float64)
    return _smoothed_counts(count.tobytes(), count.shape)


@functools.lru_cache(maxsize=128)
def _smoothed_counts(data, shape):
    """:func:`smoothed_counts` of the counts held in the bytes ``data``, of ``shape``."""
    count = np.frombuffer(data).reshape(shape)
    n_categories = count.shape[1]
    pooled = (count.sum(axis=0) + 1.0) / (count.sum() + n_categories)
    own = np.minimum(count, 1.0)
    pooled_without = (count.sum(axis=0) - own + 1.0) / (count.sum() - own + n_categories)
    class_without = count.sum(axis=1, keepdims=True) - own
    seen = count > 0

    def loss(log_m):
        m = np.exp(log_m)
        likelihood = (count - own + m * pooled_without) / (class_without + m)
        return -np.sum(count[seen] * np.log(likelihood[seen]))

    bounds = np.log([n_categories, MAX_PSEUDO_COUNT * n_categories])
    log_m = minimize_scalar(loss, bounds=bounds, method="bounded").x
    smoothed = count + np.exp(log_m) * pooled
    smoothed.flags.writeable = False
    return smoothed


def category_log_likelihood(codes, counts, leave_out=None):
    """Return ``log p(x_cat | c)`` of each row and class, shape (n, n_classes): smoothed frequencies.

    The frequencies are :func:`smoothed_counts`'. A missing or unseen category contributes
    nothing: its column is marginalised out.
    ``leave_out=(y_index, weights)`` (weights None: 1 each) names rows that ``counts``
    hold: each row is scored by the frequencies without its own count (its weight, in
    its class), as a model fitted without it would score it. Fit weighs this term against
    the denoising errors on such scores: with its own count, a row of a rare category
    finds it in its own class, and the term looks more telling than it is.
    """
    n_classes = counts[0].shape[0] if counts else 0
    total = np.zeros((codes.shape[0], n_classes))
    for j, count in enumerate(counts):
        smoothed = smoothed_counts(count)
        rows = np.flatnonzero(codes[:, j] >= 0)
        cells = smoothed[:, codes[rows, j]].T  # (rows, n_classes)
        sums = np.broadcast_to(smoothed.sum(axis=1), cells.shape)
        if leave_out is not None:
            y_index, weights = leave_out
            own = np.zeros_like(cells)
            own[np.arange(rows.size), y_index[rows]] = 1.0 if weights is None else weights[rows]
            cells, sums = cells - own, sums - own
        total[rows] += np.log(cells / sums)
    return total


def conditioning(codes, read, counts, n_numeric, device):
    """Return the ``condition`` of ancestral sampling that holds the one-hot ``codes`` fixed, or None.

    ``read`` and ``counts`` are the network's inputs and the training counts (see :func:`one_hot`).
    """
    if not read:
        return None
    one = torch.as_tensor(one_hot(codes, read, counts))
    x_cond = torch.cat([torch.zeros(codes.shape[0], n_numeric), one], dim=1)
    mask = torch.cat([torch.ones(codes.shape[0], n_numeric), torch.zeros_like(one)], dim=1)
    return x_cond.to(device), mask.to(device)


def columns_of(numbers, codes, categories, is_categorical):
    """Return rows of the table's columns: ``numbers`` alone, or an object array with the categories' values too."""
    if not categories:
        return numbers
    rows = np.empty((numbers.shape[0], is_categorical.size), dtype=object)
    rows[:, ~is_categorical] = numbers
    rows[:, is_categorical] = np.stack([c[codes[:, j]] for j, c in enumerate(categories)], axis=1)
    return rows


def sample_codes(counts, y_index, rng):
    """Draw a category code per row and column from its class's frequencies (see :func:`smoothed_counts`)."""
    codes = np.empty((y_index.size, len(counts)), dtype=np.int64)
    for j, count in enumerate(counts):
        smoothed = smoothed_counts(count)
        probs = smoothed / smoothed.sum(axis=1, keepdims=True)
        cumulative = probs.cumsum(axis=1)[y_index]
        codes[:, j] = np.minimum((rng.random_sample((y_index.size, 1)) > cumulative).sum(axis=1), count.shape[1] - 1)
    return codes
