"""The fit plan: what a fit trains, on which rows, with which range, and what follows the choice of trials."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification
from sklearn.exceptions import ConvergenceWarning

from skdiffusion import DiffusionClassifier, _fitting, _training
from skdiffusion._calibration import Trials
from skdiffusion._fitting import (
    AUTO_MOST_TUNINGS,
    LONG_TRAINING_ROWS,
    REFIT_BELOW,
    Seeds,
    TrainingData,
    _discriminative,
    plan_fit,
)

SEEDS = Seeds(init=1, train=2, split=3, noise=4)


def _plan(n_rows=300, n_classes=2, **params):
    """Return the plan of a fit with ``params`` (else the defaults) on ``n_rows`` balanced rows."""
    y_index = np.arange(n_rows) % n_classes
    return plan_fit(DiffusionClassifier(**params).get_params(deep=False), y_index, n_classes, seeds=SEEDS)


def _rows(training):
    return np.sort(training.rows)


def test_a_small_fit_holds_out_three_tenths_then_refits_on_every_row_afresh():
    plan = _plan()
    first, second = plan.first, plan.second
    assert (first.max_iter, first.learning_rate, first.scored, first.anneal, first.afresh) == (
        600,
        1e-2,
        None,
        True,
        False,
    )
    assert plan.held_out.size == 90 and first.rows.size == 210
    np.testing.assert_array_equal(np.sort(np.concatenate([first.rows, plan.held_out])), np.arange(300))
    # Stratified: each class keeps its share of the held-out rows.
    assert np.bincount(plan.held_out % 2).tolist() == [45, 45]
    np.testing.assert_array_equal(_rows(second), np.arange(300))
    # Same steps and rate; the range it concentrates on is known only once it is chosen.
    assert (second.max_iter, second.learning_rate, second.scored) == (600, 1e-2, None)
    assert second.anneal and second.afresh
    # max_iter="auto": a cosine of 600 steps, on while the held-out loss falls, to 1800 at most.
    assert (first.extend_to, second.extend_to) == (1800, 1800)
    assert plan.steps == [1800, 1800] and plan.trains


def test_a_large_fit_holds_out_a_tenth_then_tunes_the_same_network_on_the_same_rows():
    plan = _plan(n_rows=REFIT_BELOW)
    first, second = plan.first, plan.second
    assert plan.held_out.size == 100 and first.rows.size == 900
    np.testing.assert_array_equal(_rows(second), _rows(first))
    assert (second.max_iter, second.learning_rate, second.anneal, second.afresh) == (
        300,
        pytest.approx(2e-3),
        True,
        False,
    )
    assert (first.extend_to, second.extend_to) == (1800, 0)  # the tuning runs at most its 300 steps
    # Whether it has a cross-entropy term is decided once the first network is scored.
    assert second.discriminative == 0.0 and plan.discriminative == "auto"
    assert plan.steps == [1800, 300]


def test_auto_trains_a_longer_cosine_first_on_many_rows_where_it_tunes():
    plan = _plan(n_rows=LONG_TRAINING_ROWS)
    first, second = plan.first, plan.second
    assert plan.held_out.size == 300 and not second.afresh
    # 3,000 steps along the cosine, not going on after it; the tuning's steps stay 300.
    assert (first.max_iter, first.extend_to, second.max_iter) == (3000, 3000, 300)
    assert plan.steps == [3000, 300] and plan.tuning_of == 600 and plan.tunings == AUTO_MOST_TUNINGS
    assert plan.retries == [1500, 750, 375, 187]  # afresh, for half as many steps, while the held-out loss rose
    # One row fewer trains as before.
    fewer = _plan(n_rows=LONG_TRAINING_ROWS - 1)
    assert (fewer.first.max_iter, fewer.first.extend_to) == (600, 1800) and fewer.retries == [300, 150]
    # Not where max_iter is told, nor before a refit, nor with early stopping, nor without a tuning.
    told = _plan(n_rows=LONG_TRAINING_ROWS, max_iter=1000)
    assert (told.first.max_iter, told.first.extend_to, told.second.max_iter, told.tuning_of) == (1000, 0, 500, 1000)
    refit = _plan(n_rows=LONG_TRAINING_ROWS, refit=True)
    assert (refit.first.max_iter, refit.second.max_iter, refit.second.afresh) == (600, 600, True)
    assert _plan(n_rows=LONG_TRAINING_ROWS, early_stopping=True).first.max_iter == 600
    explicit = _plan(n_rows=LONG_TRAINING_ROWS, timestep_range=(0.0, 0.5))  # nothing follows the first
    assert explicit.second is None and (explicit.first.max_iter, explicit.first.extend_to) == (600, 1800)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("discriminative", [False, True])
def test_a_tuning_after_the_longer_cosine_trains_its_share_of_max_iters_steps(monkeypatch, discriminative):
    # The same rules at a small scale: a cosine of 80 steps on 200 rows, where "auto" is 40.
    for name, value in {"AUTO_LONG_STEPS": 80, "LONG_TRAINING_ROWS": 200, "AUTO_STEPS": 40, "REFIT_BELOW": 200}.items():
        monkeypatch.setattr(_fitting, name, value)
    X, y = make_classification(n_samples=200, n_features=4, random_state=0)
    model = DiffusionClassifier(discriminative=discriminative, random_state=0).fit(X, y)
    # 80 steps, then a quarter of 40 (a plain tuning) or half (with the cross-entropy term), once on 20 held-out rows.
    assert model.n_iter_ == 80 + (20 if discriminative else 10) == len(model.loss_curve_)


def _data(log_prior):
    y_index = np.arange(10) % log_prior.size
    return TrainingData(None, None, y_index, None, None, None, log_prior, None)


@pytest.mark.parametrize("prior", [[0.5, 0.5], [0.1, 0.9]])
def test_auto_tunes_two_classes_discriminatively_where_the_held_out_log_loss_is_above_a_tenth_of_the_priors(prior):
    data = _data(np.log(prior))
    entropy = -np.sum(np.multiply(prior, np.log(prior)))  # the log loss of the priors alone
    below, above = (Trials((0.0, 1.0), 1.0, 1.0, loss) for loss in (0.099 * entropy, 0.101 * entropy))
    assert not _discriminative("auto", lambda: below, data) and _discriminative("auto", lambda: above, data)
    for parameter in (True, False):  # as told
        told = _discriminative(parameter, lambda: below, data), _discriminative(parameter, lambda: above, data)
        assert told[0] is told[1] is parameter


def test_auto_never_tunes_more_classes_discriminatively():
    data = _data(np.log([0.1, 0.2, 0.7]))
    assert not _discriminative("auto", lambda: Trials((0.0, 1.0), 1.0, 1.0, 5.0), data)
    assert _discriminative(True, lambda: Trials((0.0, 1.0), 1.0, 1.0, 0.0), data)


@pytest.mark.parametrize(
    "params",
    [{"max_iter": 600}, {"early_stopping": True}, {"validation_fraction": None}],
)
def test_only_auto_with_held_out_rows_and_no_early_stopping_goes_on(params):
    plan = _plan(**params)
    assert plan.first.max_iter == 600 and plan.first.extend_to == 0
    assert plan.steps[0] == 600


def test_auto_may_shorten_the_first_training_twice_down_to_150_steps():
    from skdiffusion._fitting import shorter

    assert _plan().retries == [300, 150]
    assert _plan(max_iter=600).retries == [] and _plan(early_stopping=True).retries == []
    half = shorter(_plan().first, auto=True)
    assert (half.max_iter, half.extend_to) == (300, 0)  # and it does not go on after its 300 steps
    assert shorter(shorter(half, auto=True), auto=True) is None


def test_refit_is_decided_by_the_number_of_rows_or_forced():
    assert _plan(n_rows=REFIT_BELOW - 1).second.afresh
    assert not _plan(n_rows=REFIT_BELOW).second.afresh
    assert _plan(n_rows=REFIT_BELOW, refit=True).second.afresh
    assert not _plan(n_rows=100, refit=False).second.afresh  # a tuning


@pytest.mark.parametrize(
    "params, held_out",
    [
        ({}, 90),  # refits: 0.3
        ({"refit": False}, 30),  # tunes: 0.1
        ({"validation_fraction": 0.2}, 60),  # as given
        ({"early_stopping": True}, 30),  # never refits: 0.1
        ({"validation_fraction": None}, 0),
    ],
)
def test_validation_fraction_auto_holds_out_more_when_the_fit_refits(params, held_out):
    assert _plan(**params).held_out.size == held_out


@pytest.mark.parametrize(
    "params",
    [
        {"early_stopping": True},
        {"validation_fraction": None},
        {"max_iter": 0},
        {"timestep_range": (0.0, 0.5), "refit": False},
    ],
)
def test_no_second_training(params):
    assert _plan(**params).second is None


def test_an_explicit_range_is_trained_on_from_the_start_and_a_refit_concentrates_on_it_too():
    plan = _plan(timestep_range=(0.2, 0.55))
    assert plan.first.scored == (200.0, 550.0)
    assert plan.second.afresh and plan.second.scored is None  # set to the chosen range, the same one


def test_max_iter_zero_trains_nothing_and_holds_out_every_row():
    plan = _plan(max_iter=0)
    assert plan.first.max_iter == 0 and not plan.trains
    assert plan.first.rows.size == 0 and plan.held_out.size == 300


def _base_plan(n_rows=300, **params):
    """Return :func:`_plan`'s plan for a network with a Gaussian base."""
    y_index = np.arange(n_rows) % 2
    params = DiffusionClassifier(**params).get_params(deep=False)
    return plan_fit(params, y_index, 2, seeds=SEEDS, gaussian_base=True)


def test_auto_trains_a_network_with_a_gaussian_base_half_as_long_and_not_on_after_it():
    # Before a refit: a cosine of 300 steps, which the refit replays; afresh for 150 if the
    # held-out loss rises; never on after it, and counted as converged.
    plan = _base_plan()
    first, second = plan.first, plan.second
    assert (first.max_iter, first.extend_to, second.max_iter, second.extend_to) == (300, 300, 300, 300)
    assert plan.settled and plan.steps == [300, 300] and plan.retries == [150]
    # Before a tuning: the tuning's share is of the 300 steps.
    tuned = _base_plan(n_rows=REFIT_BELOW)
    assert (tuned.first.max_iter, tuned.second.max_iter, tuned.tuning_of) == (300, 150, 300) and tuned.settled
    # The longer cosine on many rows, a told max_iter, and fits without held-out rows train as any network's.
    long = _base_plan(n_rows=LONG_TRAINING_ROWS)
    assert (long.first.max_iter, long.tuning_of, long.settled) == (3000, 600, False)
    told = _base_plan(max_iter=600)
    assert (told.first.max_iter, told.first.extend_to, told.settled) == (600, 0, False)
    for params in ({"validation_fraction": None}, {"early_stopping": True}):
        plan = _base_plan(**params)
        assert (plan.first.max_iter, plan.settled) == (600, False)


def test_a_gaussian_base_s_training_stops_at_its_length_without_a_convergence_warning(monkeypatch, request):
    # Iris's default network has a Gaussian base. With the held-out loss still falling at
    # the end of its 40 steps ("auto" at 80), it neither goes on nor warns, and the refit
    # replays those 40; the same fit planned as for a network without a base goes on.
    monkeypatch.setattr(_fitting, "AUTO_STEPS", 80)
    monkeypatch.setattr(_training._HeldOutLoss, "fall", lambda self, start, stop: 1.0)
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = DiffusionClassifier(random_state=0).fit(X, y)
    assert model.denoiser_.gaussian_base and model.n_iter_ == len(model.loss_curve_) == 40
    request.getfixturevalue("planned_without_base")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert DiffusionClassifier(random_state=0).fit(X, y).n_iter_ > 80  # on after its 80


def test_auto_learning_rate_is_that_of_the_network():
    assert _plan().first.learning_rate == 1e-2
    assert _plan(image_shape=(1, 1, 2)).first.learning_rate == 5e-3
    assert _plan(learning_rate=0.3).first.learning_rate == 0.3


def test_a_partial_fit_call_trains_one_epoch_at_a_constant_rate_without_a_second_training():
    params = DiffusionClassifier(batch_size=64, early_stopping=True).get_params(deep=False)
    plan = plan_fit(params, np.arange(300) % 2, 2, seeds=SEEDS, incremental=True)
    assert plan.held_out.size == 30 and plan.first.rows.size == 270
    assert (plan.first.max_iter, plan.first.anneal) == (5, False)  # ceil(270 / 64)
    assert plan.second is None and not plan.early_stopping


def test_a_continued_fit_has_no_second_training():
    params = DiffusionClassifier(warm_start=True).get_params(deep=False)
    assert plan_fit(params, np.arange(300) % 2, 2, seeds=SEEDS, continuing=True).second is None


def test_too_few_rows_per_class_to_hold_out_trains_on_all_with_a_warning():
    with pytest.warns(UserWarning, match="Too few samples per class to hold out a fraction 0.3"):
        plan = _plan(n_rows=3)
    assert plan.held_out.size == 0 and plan.first.rows.size == 3 and plan.second is None


def test_a_class_of_one_sample_is_trained_on_and_the_others_are_held_out_from():
    # Class 2 has one row: it cannot be split, so it stays in training, and a stratified
    # 0.3 of the other classes' 60 rows is held out to choose the trials (no warning).
    y_index = np.r_[np.arange(60) % 2, 2]
    params = DiffusionClassifier().get_params(deep=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = plan_fit(params, y_index, 3, seeds=SEEDS)
    assert plan.held_out.size == 18 and np.bincount(y_index[plan.held_out], minlength=3).tolist() == [9, 9, 0]
    assert 60 in plan.first.rows and plan.first.rows.size == 43
    np.testing.assert_array_equal(np.sort(np.concatenate([plan.first.rows, plan.held_out])), np.arange(61))
    assert plan.second.afresh and plan.second.rows.size == 61


def test_nothing_is_held_out_when_a_single_class_could_be():
    y_index = np.r_[np.zeros(39, int), 1]
    params = DiffusionClassifier().get_params(deep=False)
    with pytest.warns(UserWarning, match="Too few samples per class"):
        plan = plan_fit(params, y_index, 2, seeds=SEEDS)
    assert plan.held_out.size == 0 and plan.first.rows.size == 40 and plan.second is None


def test_early_stopping_needs_held_out_rows():
    with pytest.raises(ValueError, match="early_stopping=True needs held-out samples"):
        _plan(early_stopping=True, validation_fraction=None)
