"""Tables: which columns are categorical, their codes, and their class-conditional frequencies.

A row of a table is split into numeric values (NaN where missing) and category codes (-1
where missing or unseen). The class-conditional density factors as

    p(x | c) = p(x_cat | c) * p(x_num | x_cat, c)

The diffusion model gives the second factor: it diffuses the observed numeric values
only, the one-hot codes of the categories and the missing values' places held clean
beside them as conditioning. The first factor is a product of smoothed category
frequencies per class (categorical naive Bayes): a discrete likelihood, where a Gaussian
density on 0/1 columns would collapse at small noise.
"""

from typing import NamedTuple

import numpy as np
import torch

# Laplace smoothing of the category frequencies: one pseudo-count per category and class.
CATEGORY_SMOOTHING = 1.0


class Table(NamedTuple):
    """A table's rows as the model reads them."""

    numeric: np.ndarray  # (n, n_numeric) floats, NaN where a value is missing
    codes: np.ndarray  # (n, n_categorical) category codes, -1 where missing or unseen
    categories: list  # the categories of each categorical column
    is_categorical: np.ndarray  # (n_features,): which of X's columns are categorical

    @property
    def width(self):
        """The number of values of a row for the denoiser (see :func:`input_width`)."""
        return input_width(self.numeric.shape[1], self.categories)


def input_width(n_numeric, categories):
    """Return the number of values of a row for the denoiser: the numbers, then the one-hot categories."""
    return n_numeric + sum(len(c) for c in categories)


def table(X_numeric, X_categorical, is_categorical, categories=None):
    """Return the :class:`Table` of checked columns; ``categories`` None: those seen in ``X_categorical``."""
    if X_categorical is None:
        no_codes = np.zeros((X_numeric.shape[0], 0), dtype=np.int64)
        return Table(X_numeric, no_codes, [], np.zeros(X_numeric.shape[1], dtype=bool))
    absent = missing(X_categorical)
    categories = fit_categories(X_categorical, absent) if categories is None else categories
    return Table(X_numeric, encode(X_categorical, categories, absent), categories, is_categorical)


def denoiser_input(x_numeric, table):
    """Return the denoiser's rows and their mask of diffused elements (None: every element is).

    ``x_numeric`` is the standardised numeric part, 0 where missing (float32 tensor); the
    one-hot categories follow it. The mask is 1 on the observed numbers, 0 on the missing
    ones and on the one-hot columns, which condition the denoiser and are not diffused.
    """
    absent = np.isnan(table.numeric)
    if not table.categories and not absent.any():
        return x_numeric, None
    one = torch.as_tensor(one_hot(table.codes, table.categories))
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


def fit_categories(X_cat, absent):
    """Return the sorted categories seen in each column of ``X_cat``, the ``absent`` (missing) values left out."""
    categories = []
    for j in range(X_cat.shape[1]):
        seen = set(X_cat[~absent[:, j], j].tolist())
        if not seen:
            raise ValueError(f"Categorical column {j} of X holds no value: every entry is missing. Drop it.")
        try:
            categories.append(np.array(sorted(seen)))
        except TypeError as exc:
            kinds = sorted({type(v).__name__ for v in seen})
            raise ValueError(f"Categorical column {j} mixes values of types {kinds}; make them one type.") from exc
    return categories


def encode(X_cat, categories, absent):
    """Return the code of each value, shape (n, k): its index in its column's categories; -1 if ``absent`` or unseen."""
    codes = np.full(X_cat.shape, -1, dtype=np.int64)
    for j, column_categories in enumerate(categories):
        lookup = {value: code for code, value in enumerate(column_categories.tolist())}
        present = np.flatnonzero(~absent[:, j])
        codes[present, j] = [lookup.get(value, -1) for value in X_cat[present, j].tolist()]
    return codes


def one_hot(codes, categories):
    """Return the one-hot vectors of ``codes``, shape (n, total categories), float32; zeros for -1."""
    blocks = []
    for j, column_categories in enumerate(categories):
        block = np.zeros((codes.shape[0], len(column_categories)), dtype=np.float32)
        rows = np.flatnonzero(codes[:, j] >= 0)
        block[rows, codes[rows, j]] = 1.0
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


def category_log_likelihood(codes, counts):
    """Return ``log p(x_cat | c)`` of each row and class, shape (n, n_classes): smoothed frequencies.

    A missing or unseen category contributes nothing: its column is marginalised out.
    """
    n_classes = counts[0].shape[0] if counts else 0
    total = np.zeros((codes.shape[0], n_classes))
    for j, count in enumerate(counts):
        smoothed = count + CATEGORY_SMOOTHING
        log_prob = np.log(smoothed / smoothed.sum(axis=1, keepdims=True))  # (n_classes, n_categories)
        rows = codes[:, j] >= 0
        total[rows] += log_prob[:, codes[rows, j]].T
    return total


def conditioning(codes, categories, n_numeric, device):
    """Return the ``condition`` of ancestral sampling that holds the one-hot ``codes`` fixed, or None."""
    if not categories:
        return None
    one = torch.as_tensor(one_hot(codes, categories))
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
    """Draw a category code per row and column from the smoothed frequencies of the row's class."""
    codes = np.empty((y_index.size, len(counts)), dtype=np.int64)
    for j, count in enumerate(counts):
        smoothed = count + CATEGORY_SMOOTHING
        probs = smoothed / smoothed.sum(axis=1, keepdims=True)
        cumulative = probs.cumsum(axis=1)[y_index]
        codes[:, j] = np.minimum((rng.random_sample((y_index.size, 1)) > cumulative).sum(axis=1), count.shape[1] - 1)
    return codes
