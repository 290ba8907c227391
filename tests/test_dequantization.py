"""Values on a grid: which columns are dequantized, how training spreads them, and what fit and sample keep."""

import numpy as np
import pytest
import torch

from skdiffusion import DiffusionClassifier
from skdiffusion._tabular import dequantization_widths, on_grid, value_steps
from skdiffusion._training import dequantized, minibatch, validation_draws

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _clf(**params):
    return DiffusionClassifier(**{"max_iter": 60, "n_trials": 8, "random_state": 0, **params})


def _counts(n=120, seed=0):
    """Two integer columns (counts of 0 to 9) whose mean follows the class."""
    rng = np.random.RandomState(seed)
    y = rng.randint(2, size=n)
    X = np.c_[rng.binomial(9, 0.3 + 0.4 * y), rng.binomial(9, 0.6 - 0.2 * y)].astype(float)
    return X, y


@pytest.mark.parametrize(
    "values, step",
    [
        ([3.0, 1.0, 2.0, 7.0], 1.0),
        ([7.2, 7.3, 10.1, np.nan], pytest.approx(0.1)),  # decimals: 7.2 is 71.99999999999999 steps of 0.1
        ([0.0, 4.0, 8.0], 4.0),
        ([0.5, 1.5, 2.5], 0.0),  # a step of 1, but not whole multiples of it
        ([0.0, 1.0, 2.5], 0.0),  # 2.5 is not a multiple of the smallest gap
        ([1.0, 1.0, np.nan], 0.0),  # one value: no gap
        ([np.nan, np.nan], 0.0),
    ],
)
def test_a_columns_step_is_its_smallest_gap_where_every_value_is_a_multiple_of_it(values, step):
    assert value_steps(np.array(values)[:, None], True)[0] == step  # True: the column's own step


def test_the_default_dequantizes_a_table_only_where_every_value_lies_on_the_step_most_columns_share():
    integers = np.array([[0.0, 3.0, 5.0], [1.0, 5.0, 5.0], [2.0, 4.0, 5.0]])  # the last column is constant
    np.testing.assert_array_equal(value_steps(integers, "auto"), [1.0, 1.0, 0.0])
    # A sparse column (levels 0, 3 and 16: its own smallest gap, 3, is no step of 16) lies on its table's grid.
    sparse = np.array([[0.0, 0.0], [3.0, 1.0], [16.0, 2.0]])
    np.testing.assert_array_equal(value_steps(sparse, "auto"), [1.0, 1.0])
    np.testing.assert_array_equal(value_steps(sparse, True), [0.0, 1.0])
    # Counts beside a column of quarters: grids of their own, not one table's (the counts' step of 1 is most shared).
    quarters = np.c_[integers, [0.25, 0.5, 1.0]]
    np.testing.assert_array_equal(value_steps(quarters, "auto"), [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(value_steps(quarters, True), [1.0, 1.0, 0.0, 0.25])
    np.testing.assert_array_equal(value_steps(quarters, np.True_), [1.0, 1.0, 0.0, 0.25])  # numpy's bool too
    halves = np.c_[integers, [0.5, 1.0, 1.5], [1.5, 2.0, 3.5]]  # a tie of 1 and 0.5: the smaller, which all lie on
    np.testing.assert_array_equal(value_steps(halves, "auto"), [0.5, 0.5, 0.0, 0.5, 0.5])
    np.testing.assert_array_equal(value_steps(quarters, False), [0.0, 0.0, 0.0, 0.0])
    off_grid = np.c_[integers, [0.3, 0.5, 1.1]]  # its smallest gap, 0.2, is no step of 0.3
    np.testing.assert_array_equal(value_steps(off_grid, "auto"), [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(value_steps(off_grid, True), [1.0, 1.0, 0.0, 0.0])
    continuous = np.c_[integers, [0.1234, 0.5678, 0.9]]
    np.testing.assert_array_equal(value_steps(continuous, "auto"), [0.0, 0.0, 0.0, 0.0])
    assert value_steps(np.zeros((3, 0)), "auto").shape == (0,)


def test_a_step_finer_than_the_least_noise_is_left_out():
    integers = np.array([[0.0, 0.0], [1.0, 1000.0], [2.0, 2000.0], [3.0, 3001.0]])  # steps of 1 on both
    scale = integers.std(axis=0)  # 1.1 and 1,118: cells of 0.89 and 0.00089 standardised
    np.testing.assert_array_equal(value_steps(integers, "auto", scale, 0.01), [1.0, 0.0])
    np.testing.assert_array_equal(value_steps(integers, True, scale, 0.01), [1.0, 0.0])
    np.testing.assert_array_equal(value_steps(integers, "auto", scale, 0.0), [1.0, 1.0])
    # Unstandardised, the steps themselves are the cells.
    np.testing.assert_array_equal(value_steps(integers, "auto", None, 1.0), [1.0, 1.0])
    np.testing.assert_array_equal(value_steps(integers, "auto", None, 1.5), [0.0, 0.0])


def test_cells_are_the_steps_in_standardised_units_and_none_for_the_one_hot_inputs():
    cells = dequantization_widths(np.array([1.0, 0.0]), np.array([2.0, 4.0]), (4,))
    torch.testing.assert_close(cells, torch.tensor([0.5, 0.0, 0.0, 0.0]))
    assert cells.dtype == torch.float32
    torch.testing.assert_close(dequantization_widths(np.array([3.0]), None, (1,)), torch.tensor([3.0]))
    assert dequantization_widths(np.array([0.0, 0.0]), np.ones(2), (2,)) is None


def test_dequantized_values_spread_evenly_over_their_cells_and_leave_the_undiffused_ones():
    x0 = torch.zeros(20_000, 3)
    cells = torch.tensor([1.0, 0.25, 0.0])
    mask = torch.ones_like(x0)
    mask[::2, 1] = 0.0  # a missing value: not diffused, held at 0
    spread = dequantized(x0, cells, torch.Generator().manual_seed(0), mask)
    assert spread[:, 0].abs().max() <= 0.5 and spread[1::2, 1].abs().max() <= 0.125
    assert torch.equal(spread[:, 2], x0[:, 2]) and torch.equal(spread[::2, 1], x0[::2, 1])
    # Uniform over the cell: mean 0, variance cell**2 / 12 (to 5 standard errors).
    assert abs(spread[:, 0].mean().item()) < 5 * (1 / 12 / 20_000) ** 0.5
    assert spread[:, 0].var().item() == pytest.approx(1 / 12, rel=0.05)
    assert spread[1::2, 1].var().item() == pytest.approx(0.25**2 / 12, rel=0.05)
    assert dequantized(x0, None, torch.Generator()) is x0


def test_without_cells_minibatches_and_held_out_draws_are_those_of_before():
    x0, y = torch.randn(50, 2), torch.arange(50) % 2
    schedule = torch.linspace(0.99, 0.01, 100)
    probs = torch.full((100,), 0.01, dtype=torch.float64)
    drawn = minibatch(x0, y, schedule, probs, 16, torch.Generator().manual_seed(3), cells=None)
    again = minibatch(x0, y, schedule, probs, 16, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(drawn[:4], again[:4]))
    # With cells of 0 nothing moves but the generator: the noise is drawn first, the spread after it.
    zero = minibatch(x0, y, schedule, probs, 16, torch.Generator().manual_seed(3), cells=torch.zeros(2))
    assert all(torch.equal(a, b) for a, b in zip(zero[:4], again[:4]))
    held = validation_draws(x0, y, probs, torch.Generator().manual_seed(4), cells=torch.ones(2))
    plain = validation_draws(x0, y, probs, torch.Generator().manual_seed(4))
    assert torch.equal(held[2], plain[2]) and torch.equal(held[3], plain[3])  # the same timesteps and noise
    assert 0 < (held[0] - plain[0]).abs().max() <= 0.5  # the samples spread over their cells


def test_fit_records_the_steps_it_dequantized_and_sample_returns_values_on_them():
    X, y = _counts()
    clf = _clf().fit(X, y)
    np.testing.assert_array_equal(clf.value_steps_, [1.0, 1.0])
    samples, _ = clf.sample(50, random_state=0)
    np.testing.assert_array_equal(samples, np.round(samples))
    plain = _clf(dequantize=False).fit(X, y)
    np.testing.assert_array_equal(plain.value_steps_, [0.0, 0.0])
    plain_samples, _ = plain.sample(50, random_state=0)
    assert not np.array_equal(plain_samples, np.round(plain_samples))  # continuous values, as trained
    # The training differs; scoring reads the values as they are.
    assert not np.array_equal(clf.predict_proba(X), plain.predict_proba(X))


def test_fit_leaves_out_a_column_whose_step_the_least_noise_blurs():
    X, y = _counts()
    incomes = np.c_[X, 1000.0 * np.arange(len(y))]  # a step of 1, a thousandth of its spread (least noise: 0.01)
    np.testing.assert_array_equal(_clf().fit(incomes, y).value_steps_, [1.0, 1.0, 0.0])
    schedule = _clf(noise_schedule="cosine").fit(X, y)  # its first timestep's noise is smaller still
    np.testing.assert_array_equal(schedule.value_steps_, [1.0, 1.0])


def test_a_continued_fit_keeps_the_steps_of_the_fit_that_built_the_network():
    X, y = _counts()
    clf = _clf(warm_start=True).fit(X, y)
    clf.set_params(dequantize=False).fit(X + 0.5, y)  # off the grid, and told not to: the network's steps hold
    np.testing.assert_array_equal(clf.value_steps_, [1.0, 1.0])
    batches = _clf()
    batches.partial_fit(X[:60], y[:60], classes=[0, 1]).partial_fit(X[60:] * 0.5, y[60:])
    np.testing.assert_array_equal(batches.value_steps_, [1.0, 1.0])


def test_categorical_columns_have_no_step():
    pd = pytest.importorskip("pandas")
    X, y = _counts()
    frame = pd.DataFrame({"a": X[:, 0], "colour": np.where(y == 1, "red", "blue"), "b": X[:, 1]})
    clf = _clf().fit(frame, y)
    np.testing.assert_array_equal(clf.value_steps_, [1.0, 0.0, 1.0])
    samples, _ = clf.sample(20, random_state=0)  # an object array, the categories' values in their column
    assert set(samples[:, 1]) <= {"red", "blue"}
    numbers = samples[:, [0, 2]].astype(float)
    np.testing.assert_array_equal(numbers, np.round(numbers))


def test_on_grid_rounds_only_the_columns_of_a_step():
    numbers = np.array([[0.4, 2.6, 7.77], [-0.6, 3.14159, 7.74]])
    np.testing.assert_allclose(on_grid(numbers, np.array([1.0, 0.0, 0.1])), [[0.0, 2.6, 7.8], [-1.0, 3.14159, 7.7]])
