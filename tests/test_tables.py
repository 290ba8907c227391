"""Real tables: categorical columns and missing values, natively."""

import numpy as np
import pytest
from sklearn.ensemble import AdaBoostClassifier

from skdiffusion import DiffusionClassifier, load, save
from skdiffusion._tabular import (
    MAX_NETWORK_CATEGORIES,
    MIN_CATEGORY_ROWS,
    category_counts,
    category_log_likelihood,
    network_categories,
    one_hot,
    smoothed_counts,
)

pd = pytest.importorskip("pandas")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _clf(**params):
    return DiffusionClassifier(**{"max_iter": 100, "n_trials": 8, "random_state": 0, **params})


def _frame(n=200, seed=0):
    """A numeric column that separates the classes, a colour that agrees with the class 80% of the time."""
    rng = np.random.RandomState(seed)
    y = rng.randint(2, size=n)
    agrees = rng.rand(n) < 0.8
    colour = np.where(agrees == (y == 0), "red", "blue")
    frame = pd.DataFrame({"x": y * 2.0 + rng.normal(size=n), "colour": colour, "noise": rng.normal(size=n)})
    return frame, y


@pytest.fixture(scope="module")
def table():
    X, y = _frame()
    return X, y, _clf().fit(X, y)


def test_a_frame_with_strings_fits_without_preprocessing(table):
    X, y, clf = table
    np.testing.assert_array_equal(clf.is_categorical_, [False, True, False])
    assert [c.tolist() for c in clf.categories_] == [["blue", "red"]]
    # The counts behind p(colour | class), per class.
    counts = clf.category_count_[0]
    assert counts.shape == (2, 2) and counts.sum() == len(y)
    np.testing.assert_array_equal(counts.sum(axis=1), np.bincount(y))
    assert clf.score(X, y) > 0.8
    np.testing.assert_array_equal(clf.feature_names_in_, ["x", "colour", "noise"])


@pytest.mark.parametrize("spec", [[1], ["colour"], [False, True, False]], ids=["index", "name", "mask"])
def test_categorical_columns_by_index_name_or_mask(table, spec):
    X, y, clf = table
    other = _clf(categorical_features=spec).fit(X, y)
    np.testing.assert_array_equal(other.predict_proba(X), clf.predict_proba(X))
    # A numpy array of objects takes indices and masks too.
    if spec != ["colour"]:
        on_array = _clf(categorical_features=spec).fit(X.to_numpy(dtype=object), y)
        np.testing.assert_array_equal(on_array.predict_proba(X.to_numpy(dtype=object)), clf.predict_proba(X))


@pytest.mark.parametrize("empty", [[], np.array([], dtype=int)], ids=["list", "array"])
def test_no_categorical_column_when_none_is_named(empty):
    X, y = _frame()
    X = X.drop(columns="colour")
    clf = _clf(categorical_features=empty).fit(X, y)
    assert not clf.is_categorical_.any()
    np.testing.assert_array_equal(clf.predict_proba(X), _clf(categorical_features=None).fit(X, y).predict_proba(X))


def test_a_category_is_a_discrete_likelihood_not_a_collapsing_density():
    # Only the colour says anything about the class: the posterior is the colour's
    # frequency in each class, about 0.8, not the near-certainty of a density on 0/1.
    rng = np.random.RandomState(1)
    y = rng.randint(2, size=400)
    colour = np.where((rng.rand(400) < 0.8) == (y == 0), "red", "blue")
    X = pd.DataFrame({"noise": rng.normal(size=400), "colour": colour})
    clf = _clf().fit(X, y)
    red = clf.predict_proba(pd.DataFrame({"noise": rng.normal(size=200), "colour": "red"}))[:, 0]
    red_share = np.mean(y[colour == "red"] == 0)
    assert abs(np.median(red) - red_share) < 0.1, (np.median(red), red_share)
    assert red.max() < 0.97


def test_the_network_is_as_wide_as_the_numbers_ask_not_the_one_hot_codes():
    # 8 numeric columns and a column of 16 categories: 24 inputs, but 8 diffused features
    # ask for 64 units (with 4,000 rows, the rows would allow 1,024).
    rng = np.random.RandomState(0)
    X = pd.DataFrame(rng.normal(size=(4000, 8)), columns=[f"x{j}" for j in range(8)])
    X["state"] = [f"s{k}" for k in rng.randint(MAX_NETWORK_CATEGORIES, size=4000)]
    y = rng.randint(2, size=4000)
    clf = _clf(max_iter=1).fit(X, y)
    assert clf.denoiser_.input.in_features == 8 + MAX_NETWORK_CATEGORIES
    assert clf.denoiser_.input.out_features == 64
    as_numbers = _clf(max_iter=1).fit(pd.get_dummies(X, dtype=float), y)  # 24 numeric columns
    assert as_numbers.denoiser_.input.out_features == 256


def test_frequencies_shrink_towards_all_classes_where_a_column_says_nothing():
    # The same distribution of 5 categories in both classes: the class frequencies meet;
    # a category that is the class 90% of the time: they keep its 9 to 1.
    rng = np.random.RandomState(0)
    noise = np.stack([rng.multinomial(300, [0.1, 0.2, 0.3, 0.2, 0.2]) for _ in range(2)]).astype(float)
    smoothed = smoothed_counts(noise)
    frequencies = smoothed / smoothed.sum(axis=1, keepdims=True)
    assert np.abs(np.log(frequencies[0] / frequencies[1])).max() < 0.05
    raw = noise / noise.sum(axis=1, keepdims=True)
    assert np.abs(np.log(raw[0] / raw[1])).max() > 0.2  # what Laplace's one per cell would have kept
    telling = np.array([[90.0, 10.0], [10.0, 90.0]])
    smoothed = smoothed_counts(telling)
    np.testing.assert_allclose(smoothed / smoothed.sum(axis=1, keepdims=True), [[0.9, 0.1], [0.1, 0.9]], atol=0.01)
    # Categories that follow the class exactly keep Laplace's one pseudo-count per cell, not
    # near-certain odds against a class that shows the other category.
    exact = np.array([[50.0, 0.0], [0.0, 50.0]])
    np.testing.assert_allclose(smoothed_counts(exact), exact + 1.0, rtol=1e-3)


def test_a_category_seen_in_its_own_row_alone_is_no_evidence_when_left_out():
    # "a" is class 0's, "b" class 1's (so the frequencies shrink little), and row 0 holds
    # the only "c": with its own count, "c" looks like class 0's; left out, it is scored
    # as in a class without it, in every class.
    codes = np.array([[2]] + [[0]] * 20 + [[1]] * 20 + [[0], [1]])
    y_index = np.array([0] + [0] * 20 + [1] * 20 + [1, 0])
    counts = category_counts(codes, [np.array(["a", "b", "c"])], y_index, 2)
    smoothed = smoothed_counts(counts[0])
    pseudo = smoothed[1, 2]  # class 1 never holds "c": its cell is the pseudo-count alone
    sums = smoothed.sum(axis=1)
    left_out = category_log_likelihood(codes, counts, leave_out=(y_index, None))
    np.testing.assert_allclose(left_out[0], np.log(pseudo / (sums - [1.0, 0.0])))
    kept = category_log_likelihood(codes, counts)
    assert kept[0, 0] - kept[0, 1] > 0.3  # with its own count, "c" argues for class 0
    # Weights leave out the row's weight.
    weights = np.array([2.0] + [1.0] * 42)
    counts = category_counts(codes, [np.array(["a", "b", "c"])], y_index, 2, weights)
    smoothed = smoothed_counts(counts[0])
    left_out = category_log_likelihood(codes, counts, leave_out=(y_index, weights))
    np.testing.assert_allclose(left_out[0], np.log(smoothed[1, 2] / (smoothed.sum(axis=1) - [2.0, 0.0])))


def test_a_rare_category_enters_the_network_as_an_unseen_one():
    codes = np.array([[0], [1], [2], [-1]])
    counts = [np.array([[MIN_CATEGORY_ROWS - 1.0, MIN_CATEGORY_ROWS / 2, 5.0], [0.0, MIN_CATEGORY_ROWS / 2, 0.0]])]
    # A network with an input for every category (partial_fit's) gets zeros on the rare ones ...
    every = network_categories(counts, every=True)
    np.testing.assert_array_equal(every, [[True, True, True]])
    np.testing.assert_array_equal(one_hot(codes, every, counts), [[0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]])
    # ... and fit's has no input for them.
    read = network_categories(counts)
    np.testing.assert_array_equal(read, [[False, True, False]])
    np.testing.assert_array_equal(one_hot(codes, read, counts), [[0], [1], [0], [0]])


def test_a_column_of_many_frequent_categories_enters_through_its_frequencies_alone():
    # Three columns: MAX_NETWORK_CATEGORIES categories of enough rows, one more, and one more
    # beside a rare one. The first keeps an input per category; the others, none at all.
    rows = float(MIN_CATEGORY_ROWS)
    n = MAX_NETWORK_CATEGORIES
    counts = [
        np.full((2, n), rows / 2),
        np.full((2, n + 1), rows / 2),
        np.hstack([np.full((2, n + 1), rows), [[1.0], [0.0]]]),
    ]
    read = network_categories(counts)
    assert [r.tolist() for r in read] == [[True] * n, [False] * (n + 1), [False] * (n + 2)]
    # partial_fit's network reads every category of a column of few, and none of one of many.
    every = network_categories(counts[:2], every=True)
    assert [r.tolist() for r in every] == [[True] * n, [False] * (n + 1)]
    # A fit: a column of 20 random labels of about 50 rows each gives the network no input.
    rng = np.random.RandomState(0)
    X, y = _frame(1000, seed=3)
    X = X.drop(columns="colour")
    labels = X.assign(code=[f"c{k}" for k in rng.randint(20, size=1000)])
    clf, without = _clf().fit(labels, y), _clf().fit(X, y)
    assert clf.category_count_[0].sum(axis=0).min() >= MIN_CATEGORY_ROWS  # each frequent enough on its own
    assert not clf.network_categories_[0].any()
    assert clf.denoiser_.input.in_features == without.denoiser_.input.in_features
    assert clf.score(labels, y) >= without.score(X, y) - 0.05


def test_a_column_of_random_labels_leaves_the_classifier_as_it_was():
    # 300 rows, 150 random labels: neither the network (every label is rare) nor the
    # categorical factor (its frequencies shrink to one) take anything from them.
    rng = np.random.RandomState(0)
    X, y = _frame(300, seed=1)
    X = X.drop(columns="colour")
    with_ids = X.assign(id=[f"id{k}" for k in rng.randint(150, size=300)])
    clf = _clf().fit(with_ids, y)
    codes = clf._table(with_ids).codes
    factor = clf.category_weight_ * category_log_likelihood(codes, clf.category_count_)
    assert np.abs(factor[:, 0] - factor[:, 1]).max() < 0.05
    # The network has no input for the labels: it is the one fitted without them.
    assert not clf.network_categories_[0].any()
    without = _clf().fit(X, y)
    assert clf.denoiser_.input.in_features == without.denoiser_.input.in_features == 2
    assert clf.score(with_ids, y) >= without.score(X, y) - 0.05


def test_the_network_reads_the_categories_of_enough_rows_and_keeps_them():
    # "c" has 10 rows, fewer than MIN_CATEGORY_ROWS: no input for it; the later fits keep the inputs.
    X, y = _frame(200, seed=2)
    X["colour"] = np.where(np.arange(200) < 10, "green", X["colour"])
    clf = _clf(warm_start=True).fit(X, y)
    assert clf.categories_[0].tolist() == ["blue", "green", "red"]
    np.testing.assert_array_equal(clf.network_categories_, [[True, False, True]])
    assert clf.denoiser_.input.in_features == 2 + 2
    # The network scores "green" as a missing colour: only the categorical factor tells them apart.
    green = X.iloc[:10]
    factor = clf.category_weight_ * category_log_likelihood(clf._table(green).codes, clf.category_count_)
    difference = clf._joint_log_likelihood(green) - clf._joint_log_likelihood(green.assign(colour=None))
    np.testing.assert_allclose(difference, factor, rtol=0, atol=1e-9)
    X_new, _ = clf.sample(50, random_state=0)  # "green" is drawn too, from its frequencies
    assert X_new.shape == (50, 3) and set(X_new[:, 1]) <= {"blue", "green", "red"}
    many = pd.concat([X, X.iloc[:10]] * 3)  # now 60 rows of "green", and the network still has no input for it
    clf.fit(many, np.concatenate([y, y[:10]] * 3))
    np.testing.assert_array_equal(clf.network_categories_, [[True, False, True]])
    # partial_fit's first batch builds a network with an input for each category it holds.
    incremental = _clf().partial_fit(X, y, classes=[0, 1])
    np.testing.assert_array_equal(incremental.network_categories_, [[True, True, True]])
    assert incremental.denoiser_.input.in_features == 2 + 3


def test_an_unseen_category_counts_as_missing(table):
    X, _, clf = table
    unseen, absent = X.iloc[:5].copy(), X.iloc[:5].copy()
    unseen["colour"] = "green"
    absent["colour"] = None
    np.testing.assert_array_equal(clf.predict_proba(unseen), clf.predict_proba(absent))


def test_samples_hold_category_values(table):
    X, y, clf = table
    X_new, y_new = clf.sample(100, y=0, random_state=0)
    assert X_new.shape == (100, 3) and X_new.dtype == object
    assert set(X_new[:, 1]) <= {"red", "blue"}
    # The colours follow the class's frequencies: red is the majority of class 0.
    assert np.mean(X_new[:, 1] == "red") > 0.6
    assert all(isinstance(v, float) for v in X_new[:, 0])


def test_missing_numbers_are_marginalised():
    rng = np.random.RandomState(2)
    y = rng.randint(2, size=200)
    X = np.column_stack([y * 3.0 + rng.normal(size=200), rng.normal(size=200)])
    X[rng.rand(200) < 0.2, 1] = np.nan
    clf = _clf().fit(X, y)
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all() and clf.score(X, y) > 0.9
    # A row with no value at all has only its prior to go by.
    np.testing.assert_allclose(clf.predict_proba([[np.nan, np.nan]])[0], clf.class_prior_, rtol=1e-12)
    # The informative column missing: the prediction falls back towards the prior.
    informative_missing = clf.predict_proba(np.column_stack([np.full(20, np.nan), X[:20, 1]]))
    assert np.abs(informative_missing - clf.class_prior_).max() < np.abs(proba[:20] - clf.class_prior_).max()


def test_nullable_numbers_beside_categories():
    X, y = _frame()
    X["x"] = pd.array(np.where(np.arange(len(y)) % 7 == 0, None, X["x"].round()), dtype="Int64")
    clf = _clf().fit(X, y)
    nan_instead = X.assign(x=X["x"].astype(float))  # the same values, NA as NaN
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(nan_instead))


def test_a_column_without_any_value_is_refused():
    X, y = _frame()
    X["noise"] = np.nan
    with pytest.raises(ValueError, match=r"The numeric column 2 \('noise'\) of X holds no value"):
        _clf().fit(X, y)
    with pytest.raises(ValueError, match=r"The numeric column 0, column 2 of X hold no value"):
        _clf().fit(np.column_stack([X["noise"], X["x"], X["noise"]]), y)
    X, y = _frame()
    X["colour"] = None
    with pytest.raises(ValueError, match=r"The categorical column 1 \('colour'\) of X holds no value"):
        _clf(categorical_features=["colour"]).fit(X, y)


@pytest.mark.parametrize(
    "spec, match",
    [
        ([True, False], r"boolean mask must have shape \(3,\)"),
        ([5], "out of range for 3 features"),
        (["size"], r"names columns \['size'\] that X does not have"),
        ([0.5], "must be 'from_dtype', None, a boolean mask"),
    ],
)
def test_bad_categorical_features(spec, match):
    X, y = _frame()
    with pytest.raises(ValueError, match=match):
        _clf(categorical_features=spec).fit(X, y)


def test_column_names_need_a_frame():
    X, y = _frame()
    with pytest.raises(ValueError, match="X has no column names"):
        _clf(categorical_features=["colour"]).fit(X.to_numpy(dtype=object), y)


def test_a_list_of_rows_takes_categorical_columns_by_index():
    X, y = _frame()
    clf = _clf(categorical_features=[1]).fit(X.to_numpy(dtype=object).tolist(), y)
    assert [c.tolist() for c in clf.categories_] == [["blue", "red"]]
    np.testing.assert_array_equal(
        clf.predict_proba(X.iloc[:5].to_numpy(dtype=object).tolist()),
        clf.predict_proba(X.iloc[:5].to_numpy(dtype=object)),
    )


def test_strings_in_an_array_ask_for_the_categorical_columns():
    # AdaBoostClassifier passes a DataFrame on as an array of objects: no dtypes to go by.
    X, y = _frame()
    match = r"values that are not numbers \(could not convert string to float: '(red|blue)'\).*categorical_features"
    with pytest.raises(ValueError, match=match):
        _clf().fit(X.to_numpy(dtype=object), y)
    with pytest.raises(ValueError, match=match):
        AdaBoostClassifier(_clf(), n_estimators=2, random_state=0).fit(X, y)
    boosted = AdaBoostClassifier(_clf(categorical_features=[1]), n_estimators=2, random_state=0).fit(X, y)
    assert boosted.score(X, y) > 0.8
    fitted = _clf(categorical_features=[1]).fit(X, y)
    with pytest.raises(ValueError, match=match.replace("(red|blue)", "red")):
        fitted.predict(X.assign(noise="red"))


def test_a_column_that_mixes_types_is_refused():
    X, y = _frame()
    X["colour"] = X["colour"].astype(object)
    X.loc[0, "colour"] = 3
    with pytest.raises(ValueError, match=r"column 1 \('colour'\) of X mixes values of types \['int', 'str'\]"):
        _clf().fit(X, y)


@pytest.mark.parametrize("values", [pd.date_range("2020-01-01", periods=200), pd.to_timedelta(np.arange(200), "s")])
def test_a_column_of_dates_is_refused_by_name_unless_categorical(values):
    X, y = _frame()
    X["when"] = values
    with pytest.raises(ValueError, match=r"column 3 \('when', dtype \w+64\[\w+\]\) of X: dates or durations"):
        _clf().fit(X, y)
    with pytest.raises(ValueError, match=r"X \(dtype datetime64\[D\]\): dates or durations"):
        _clf().fit(np.datetime64("2020-01-01") + np.arange(400).reshape(200, 2), y)
    clf = _clf(categorical_features=["colour", "when"]).fit(X, y)  # each date a category of its own
    assert clf.categories_[1].size == 200
    with pytest.raises(ValueError, match="column 3 \\('when'"):  # predict reads it as fit did
        _clf().fit(X.assign(when=np.arange(200.0)), y).predict(X)


def test_a_table_without_rows_is_refused_with_its_whole_shape(table):
    X, y, fitted = table
    match = r"Found array with 0 sample\(s\) \(shape=\(0, 3\)\) while a minimum of 1 is required"
    with pytest.raises(ValueError, match=match):
        _clf().fit(X.iloc[:0], y[:0])
    with pytest.raises(ValueError, match=match):
        fitted.predict_proba(X.iloc[:0])


def test_only_categorical_columns_or_images_with_categories_are_refused():
    X, y = _frame()
    with pytest.raises(ValueError, match="only categorical columns.*CategoricalNB"):
        _clf().fit(X[["colour"]], y)
    with pytest.raises(ValueError, match="image_shape cannot be used with categorical columns"):
        _clf(image_shape=(1, 1, 4)).fit(X, y)


def test_partial_fit_keeps_the_first_batch_categories(table):
    X, y, _ = table
    clf = _clf()
    clf.partial_fit(X.iloc[:100], y[:100], classes=[0, 1])
    later = X.iloc[100:].copy()
    later.loc[later.index[:10], "colour"] = "green"  # unseen in the first batch: missing
    clf.partial_fit(later, y[100:])
    assert [c.tolist() for c in clf.categories_] == [["blue", "red"]]
    assert clf.category_count_[0].sum() == len(y) - 10


def test_a_table_is_saved_and_loaded(table, tmp_path):
    X, _, clf = table
    save(clf, tmp_path / "model.safetensors")
    loaded = load(tmp_path / "model.safetensors")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(loaded.is_categorical_, clf.is_categorical_)


def test_the_guides_pipeline_of_logarithms_keeps_string_columns_categorical(table):
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y, _ = table
    X = X.assign(size=np.exp(3 * X["x"]))  # a lognormal column
    logs = make_column_transformer(
        (FunctionTransformer(np.log, feature_names_out="one-to-one"), ["size"]),
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    pipeline = make_pipeline(logs, _clf()).fit(X, y)
    np.testing.assert_array_equal(pipeline[-1].feature_names_in_, ["size", "x", "colour", "noise"])
    np.testing.assert_array_equal(pipeline[-1].is_categorical_, [False, False, True, False])
    # The model of the logarithms, fitted by hand, as the pipeline fits it.
    by_hand = _clf().fit(X[["size", "x", "colour", "noise"]].assign(size=3 * X["x"]), y)
    np.testing.assert_allclose(pipeline.predict_proba(X), by_hand.predict_proba(logs.transform(X)), rtol=1e-6)


def test_a_zero_inflated_column_split_as_the_guide_shows():
    X, y = _frame(n=300)
    rng = np.random.RandomState(1)
    spent = np.where(rng.rand(300) < np.where(y == 1, 0.1, 0.6), 0.0, np.exp(rng.normal(size=300)))
    spent[:5] = np.nan
    X["spent"] = spent
    X = X.assign(spent=X["spent"].mask(X["spent"] == 0), spent_nothing=(X["spent"] == 0).mask(X["spent"].isna()))
    clf = _clf().fit(X, y)
    np.testing.assert_array_equal(clf.is_categorical_, [False, True, False, False, True])
    assert clf.categories_[1].tolist() == [False, True]
    # p(spent nothing | class) counts each class's rows at zero; the 5 rows without a value count in neither.
    at_zero = spent == 0
    np.testing.assert_array_equal(clf.category_count_[1][:, 1], [at_zero[y == 0].sum(), at_zero[y == 1].sum()])
    assert clf.category_count_[1].sum() == 295
    assert np.isfinite(clf.predict_proba(X)).all()


def test_seeds_averaged_by_a_soft_vote_as_the_guide_shows(table):
    from sklearn.ensemble import VotingClassifier
    from sklearn.metrics import log_loss

    X, y, _ = table
    seeds = [_clf(random_state=seed) for seed in range(3)]
    vote = VotingClassifier([(f"seed {i}", clf) for i, clf in enumerate(seeds)], voting="soft").fit(X, y)
    # Each fit keeps the frame's string column as a category, as a fit of its own does.
    assert all(member.is_categorical_.tolist() == [False, True, False] for member in vote.estimators_)
    # The vote is the mean of the probabilities of the same classifiers fitted alone.
    alone = [clf.fit(X, y).predict_proba(X) for clf in seeds]
    np.testing.assert_array_equal(vote.predict_proba(X), np.mean(alone, axis=0))
    # The log loss is convex in the probabilities: the mean's is at most the mean of the fits'.
    assert log_loss(y, vote.predict_proba(X)) <= np.mean([log_loss(y, proba) for proba in alone])
