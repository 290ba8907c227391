"""DiffusionClassifier as a scikit-learn citizen: integration, Bayes' rule, fitting options."""

import copy
import functools
import pickle
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_wine, make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from torch import nn

import skdiffusion
from skdiffusion import DiffusionClassifier, MLPDenoiser, _fitting, _scoring, _training
from skdiffusion._schedule import as_tensor
from skdiffusion._training import still_falling
from skdiffusion._validation import timestep_bounds
from skdiffusion.datasets import make_spirals

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SMALL_MLP = functools.partial(MLPDenoiser, hidden_size=32, n_blocks=2)


def _blobs(n=120, n_classes=3, random_state=0):
    centers = [[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]][:n_classes]
    return make_blobs(n, centers=centers, cluster_std=0.8, random_state=random_state)


def _clf(**params):
    return DiffusionClassifier(**{"max_iter": 150, "n_trials": 8, "random_state": 0, **params})


def test_fitted_attributes(fitted_spirals, spirals_split):
    X, y, _, _ = spirals_split
    np.testing.assert_array_equal(fitted_spirals.classes_, [0, 1])
    assert fitted_spirals.n_features_in_ == 2
    np.testing.assert_allclose(fitted_spirals.class_prior_, np.bincount(y) / y.size)
    assert fitted_spirals.alphas_cumprod_.shape == (1000,)
    assert isinstance(fitted_spirals.denoiser_, MLPDenoiser)
    assert not fitted_spirals.denoiser_.training
    assert fitted_spirals.n_iter_ == len(fitted_spirals.loss_curve_) == 300
    assert fitted_spirals.validation_scores_ is None
    assert np.isfinite(fitted_spirals.best_loss_)
    assert fitted_spirals.scale_ > 0
    np.testing.assert_allclose(fitted_spirals.scaler_.mean_, X.mean(axis=0))


def test_predict_is_the_argmax_of_predict_proba(fitted_spirals, spirals_split):
    _, _, X_test, y_test = spirals_split
    proba = fitted_spirals.predict_proba(X_test)
    assert proba.shape == (100, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_array_equal(fitted_spirals.predict(X_test), fitted_spirals.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(fitted_spirals.predict_log_proba(X_test), np.log(proba), rtol=1e-10, atol=1e-12)
    # A short fit on spirals_split already separates the held-out points well.
    assert fitted_spirals.score(X_test, y_test) >= 0.85


def test_predictions_are_reproducible_and_leave_the_model_unchanged(fitted_spirals, spirals_split):
    _, _, X_test, _ = spirals_split
    before = pickle.dumps(fitted_spirals)
    first = fitted_spirals.predict_proba(X_test)
    np.testing.assert_array_equal(fitted_spirals.predict_proba(X_test), first)
    np.testing.assert_array_equal(fitted_spirals.predict_proba(X_test[::-1])[::-1], first)
    np.testing.assert_array_equal(fitted_spirals.predict_proba(X_test[5:6]), first[5:6])
    assert pickle.dumps(fitted_spirals) == before


def test_same_random_state_same_probabilities(spirals_split):
    X, y, X_test, _ = spirals_split
    a = _clf(random_state=3).fit(X, y).predict_proba(X_test)
    b = _clf(random_state=3).fit(X, y).predict_proba(X_test)
    c = _clf(random_state=4).fit(X, y).predict_proba(X_test)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fitting_does_not_touch_torch_global_random_state(spirals_split):
    X, y, _, _ = spirals_split
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _clf(max_iter=10).fit(X, y).predict_proba(X[:3])
    torch.testing.assert_close(torch.rand(3), expected)


def test_priors_shift_the_log_odds_by_the_log_prior_ratio(spirals_split):
    # Bayes' rule: log p(c | x) - log p(c' | x) = log p(x | c) - log p(x | c') + log p(c) / p(c').
    # Held-out selection fits the error scale with the priors, so hold out nothing here:
    # the priors then change nothing but the prior term.
    X, y, X_test, _ = spirals_split
    params = {"validation_fraction": None, "timestep_range": (0.0, 0.2)}
    frequencies = _clf(**params).fit(X, y)
    skewed = _clf(priors=[0.99, 0.01], **params).fit(X, y)
    log_odds = np.diff(frequencies.predict_log_proba(X_test), axis=1)[:, 0]
    skewed_log_odds = np.diff(skewed.predict_log_proba(X_test), axis=1)[:, 0]
    shift = np.log(0.01 / 0.99) - np.log(frequencies.class_prior_[1] / frequencies.class_prior_[0])
    np.testing.assert_allclose(skewed_log_odds - log_odds, shift, rtol=0, atol=1e-9)
    assert skewed.scale_ == frequencies.scale_ == X.shape[1]
    # ... which moves every uncertain sample to class 0.
    assert (skewed.predict(X_test) == 0).mean() > (frequencies.predict(X_test) == 0).mean()


def test_string_labels(spirals_split):
    X, y, X_test, _ = spirals_split
    labels = np.array(["left", "right"])[y]
    clf = _clf().fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, ["left", "right"])
    assert set(clf.predict(X_test)) <= {"left", "right"}
    X_new, y_new = clf.sample(2, y="right", random_state=0)
    assert y_new.tolist() == ["right", "right"]


def test_three_classes_and_pandas_input():
    pd = pytest.importorskip("pandas")
    X, y = _blobs(n_classes=3)
    frame = pd.DataFrame(X, columns=["a", "b"])
    # 32 trials: with 8, the Monte Carlo noise alone misclassifies about one blob point in ten.
    clf = _clf(max_iter=200, n_trials=32).fit(frame, pd.Series(y))
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b"])
    assert clf.predict_proba(frame).shape == (len(y), 3)
    assert clf.score(frame, y) >= 0.9


def test_pipeline_and_clone(spirals_split):
    X, y, X_test, _ = spirals_split
    pipe = make_pipeline(MinMaxScaler(), _clf())
    pipe.fit(X, y)
    assert pipe.predict_proba(X_test).shape == (100, 2)
    clf = _clf(n_trials=5, denoiser=SMALL_MLP)
    twin = clone(clf)
    assert twin is not clf
    params, twin_params = clf.get_params(), twin.get_params()
    # clone deep-copies a parameter that is not an estimator, such as the denoiser.
    assert twin_params.pop("denoiser").keywords == params.pop("denoiser").keywords
    assert twin_params == params
    assert not hasattr(twin, "classes_")


def test_predict_proba_is_bayes_rule_on_antithetic_pairs_pruned_by_the_pair_t_test():
    X, y = _blobs()
    clf = _clf(n_trials=32).fit(X, y)
    t, eps = _scoring.trial_draws(*timestep_bounds(clf.timestep_range_, 1000), 32, (2,), clf.noise_seed_)
    errors, _ = _scoring.mean_errors(
        clf.denoiser_,
        torch.as_tensor(clf.scaler_.transform(X), dtype=torch.float32),
        torch.as_tensor(t),
        eps,
        3,
        alphas_cumprod=as_tensor(clf.alphas_cumprod_),
        loss="l2",
        pruning=_scoring.PairedTTest(trials_per_draw=2),
        log_prior=np.log(clf.class_prior_),
        scale=clf.scale_,
    )
    scores = np.log(clf.class_prior_) - clf.scale_ * errors
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(X), expected / expected.sum(axis=1, keepdims=True), rtol=1e-10)


@pytest.mark.slow
def test_grid_search_over_the_number_of_trials():
    X, y = _blobs(80, n_classes=2)
    search = GridSearchCV(_clf(), {"n_trials": [4, 16]}, cv=2)
    search.fit(X, y)
    assert search.best_params_["n_trials"] in (4, 16)
    assert search.cv_results_["mean_test_score"].min() >= 0.9
    assert search.best_estimator_.n_trials == search.best_params_["n_trials"]
    # Two joblib worker processes (one torch thread each) give the very same scores.
    parallel = GridSearchCV(_clf(), {"n_trials": [4, 16]}, cv=2, n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(parallel.cv_results_["split0_test_score"], search.cv_results_["split0_test_score"])
    np.testing.assert_array_equal(parallel.cv_results_["split1_test_score"], search.cv_results_["split1_test_score"])


@pytest.mark.slow
def test_grid_search_over_how_many_columns_to_keep_as_the_guide_shows():
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.feature_selection import SelectFromModel

    X, y = _blobs(90, n_classes=2)
    X = np.hstack([X, np.random.RandomState(0).normal(size=(90, 6))])  # six columns of noise after the two
    keep = SelectFromModel(ExtraTreesClassifier(random_state=0), threshold=-np.inf)
    pipe = make_pipeline(keep, _clf())
    search = GridSearchCV(pipe, {"selectfrommodel__max_features": [2, 8]}, cv=2, scoring="neg_log_loss").fit(X, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # Two columns kept: the two that separate the blobs.
    two = search.best_estimator_.set_params(selectfrommodel__max_features=2).fit(X, y)
    np.testing.assert_array_equal(np.flatnonzero(two[0].get_support()), [0, 1])
    assert two[-1].n_features_in_ == 2


def test_pickle_round_trip_gives_identical_probabilities(fitted_spirals, spirals_split):
    _, _, X_test, _ = spirals_split
    restored = pickle.loads(pickle.dumps(fitted_spirals))
    np.testing.assert_array_equal(restored.predict_proba(X_test), fitted_spirals.predict_proba(X_test))
    assert restored.denoiser_ is not fitted_spirals.denoiser_


def test_decision_boundary_display(fitted_spirals, spirals_split):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.inspection import DecisionBoundaryDisplay

    X, _, _, _ = spirals_split
    display = DecisionBoundaryDisplay.from_estimator(
        fitted_spirals, X, response_method="predict_proba", grid_resolution=8
    )
    assert display.response.shape == (8, 8)
    assert np.all((display.response >= 0) & (display.response <= 1))
    plt.close("all")


class _CountingMLP(MLPDenoiser):
    """Records the batch size of every all-class forward pass (a class attribute, kept by copies)."""

    batch_sizes = []

    def forward_all(self, x_t, t):
        type(self).batch_sizes.append(x_t.shape[0])
        return super().forward_all(x_t, t)


def test_predict_proba_on_ten_thousand_rows_runs_in_bounded_chunks(monkeypatch):
    X, y = _blobs(100, n_classes=2)
    clf = _clf(denoiser=functools.partial(_CountingMLP, hidden_size=16, n_blocks=1), max_iter=20).fit(X, y)
    monkeypatch.setattr(_scoring, "CHUNK_PAIRS", 8 * 4096)  # 2048 samples of 8 trials x 2 classes a chunk
    _CountingMLP.batch_sizes = []
    grid = np.random.default_rng(0).uniform(-5, 5, size=(10_000, 2))
    proba = clf.set_params(n_jobs=1).predict_proba(grid)  # one piece, whatever the cores
    assert proba.shape == (10_000, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # Every denoiser call has the network's eval_batch_size rows and scores both classes at
    # once; four chunks of 2048 samples and one of 1808.
    block = clf.denoiser_.eval_batch_size
    assert block == 2016  # 16 units x 2 classes: the 1 MiB budget allows more, the cap holds
    assert set(_CountingMLP.batch_sizes) == {block}
    blocks = sum(-(-n * 8 // block) for n in (2048, 2048, 2048, 2048, 1808))
    assert len(_CountingMLP.batch_sizes) == blocks
    np.testing.assert_array_equal(proba[4000:4200], clf.predict_proba(grid[4000:4200]))


def test_warm_start_continues_training(spirals_split):
    X, y, _, _ = spirals_split
    clf = _clf(max_iter=50, warm_start=True, denoiser=SMALL_MLP).fit(X, y)
    first_curve = list(clf.loss_curve_)
    denoiser = clf.denoiser_
    weights = {name: value.clone() for name, value in denoiser.state_dict().items()}
    clf.fit(X, y)
    assert clf.n_iter_ == 100
    assert len(clf.loss_curve_) == 100
    assert clf.loss_curve_[:50] == first_curve
    # Trained further on a copy: the previous fit's network is left as it was.
    assert clf.denoiser_ is not denoiser
    for name, value in denoiser.state_dict().items():
        assert torch.equal(value, weights[name])
    cold = _clf(max_iter=50, denoiser=SMALL_MLP).fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_ == 50


def test_early_stopping_sets_validation_scores(spirals_split):
    X, y, _, _ = spirals_split
    clf = _clf(early_stopping=True, max_iter=200, denoiser=SMALL_MLP).fit(X, y)
    # One held-out loss per check of 50 steps.
    assert 1 <= len(clf.validation_scores_) == -(-clf.n_iter_ // 50)
    assert all(np.isfinite(clf.validation_scores_))
    assert clf.best_loss_ == pytest.approx(min(clf.validation_scores_), rel=1e-12)


def test_early_stopping_stops_when_the_held_out_loss_stalls(spirals_split):
    X, y, _, _ = spirals_split
    clf = _clf(early_stopping=True, max_iter=2000, n_iter_no_change=1, tol=0.5, denoiser=SMALL_MLP).fit(X, y)
    # A 50% relative improvement is never reached after the first check: stop at the second.
    assert clf.n_iter_ == 100
    assert len(clf.validation_scores_) == 2


@pytest.mark.parametrize(
    "params, rate",
    [({}, 1e-2), ({"denoiser": SMALL_MLP}, 5e-3), ({"image_shape": (1, 1, 2)}, 5e-3)],
    ids=["default network", "given denoiser", "image U-Net"],
)
def test_auto_learning_rate_is_that_of_the_network(spirals_split, params, rate):
    X, y, _, _ = spirals_split
    auto = _clf(max_iter=20, **params).fit(X, y)
    explicit = _clf(max_iter=20, learning_rate=rate, **params).fit(X, y)
    other = _clf(max_iter=20, learning_rate=rate * 1.5, **params).fit(X, y)
    assert auto.loss_curve_ == explicit.loss_curve_
    assert auto.loss_curve_ != other.loss_curve_


def test_weight_decay_is_adams_in_every_training_and_shrinks_the_weights(spirals_split, monkeypatch):
    X, y, _, _ = spirals_split  # 300 rows: the first training, then the refit on every row (or the tuning)
    made = []
    init = _training.Adam.__init__

    def recorded(self, params, moments=None, weight_decay=0.0):
        made.append(weight_decay)
        init(self, params, moments, weight_decay)

    monkeypatch.setattr(_training.Adam, "__init__", recorded)
    plain, decayed = _clf().fit(X, y), _clf(weight_decay=0.1).fit(X, y)
    assert made == [0.0, 0.0, 0.1, 0.1]
    _clf(weight_decay=0.1, refit=False).fit(X, y)
    decayed.partial_fit(X, y)
    assert made[4:] == [0.1, 0.1, 0.1]
    # The same initial weights and draws: the penalty pulls every layer's weights towards 0.
    for (name, p), q in zip(plain.denoiser_.named_parameters(), decayed.denoiser_.parameters()):
        if name.endswith("weight") and p.dim() == 2:
            assert q.norm() < p.norm(), name


def test_refit_chooses_the_trials_on_the_first_network_then_trains_afresh_on_all_rows(spirals_split):
    X, y, _, _ = spirals_split  # 300 rows: refit="auto" refits, holding out 0.3 to choose the trials
    # With a given range, a fit that does not refit keeps the first network, which chose the scale.
    kept = _clf(timestep_range=(0.0, 0.4), refit=False, validation_fraction=0.3).fit(X, y)
    refit = _clf(timestep_range=(0.0, 0.4)).fit(X, y)
    assert refit.scale_ == kept.scale_ and refit.timestep_range_ == kept.timestep_range_ == (0.0, 0.4)
    # The refit's network is that of a fit on all rows: same initial weights and seed.
    all_rows = _clf(timestep_range=(0.0, 0.4), validation_fraction=None).fit(X, y)
    _assert_same_network(refit, all_rows)
    assert refit.loss_curve_ == all_rows.loss_curve_ != kept.loss_curve_
    # With "auto", the refit concentrates its training on the range the first network chose.
    auto = _clf().fit(X, y)
    _assert_same_network(auto, _clf(validation_fraction=None, timestep_range=auto.timestep_range_).fit(X, y))
    assert auto.n_iter_ == 150


def _assert_same_network(clf, other):
    for name, value in clf.denoiser_.state_dict().items():
        torch.testing.assert_close(value, other.denoiser_.state_dict()[name], rtol=0, atol=0)


def test_a_fit_that_does_not_refit_tunes_for_a_quarter_as_many_steps_or_half_with_the_term(spirals_split):
    X, y, _, _ = spirals_split
    clf = _clf(max_iter=40, refit=False).fit(X, y)
    assert clf.discriminative_ and clf.n_iter_ == len(clf.loss_curve_) == 60
    clf = _clf(max_iter=40, refit=False, discriminative=False).fit(X, y)
    assert not clf.discriminative_ and clf.n_iter_ == len(clf.loss_curve_) == 50
    assert _clf(max_iter=40, refit=False, timestep_range=(0.0, 1.0)).fit(X, y).n_iter_ == 40  # a given range: no tuning


def test_discriminative_tuning_changes_only_the_tuning_and_says_so(spirals_split):
    X, y, _, _ = spirals_split
    plain = _clf(max_iter=40, refit=False, discriminative=False).fit(X, y)
    hybrid = _clf(max_iter=40, refit=False, discriminative=True).fit(X, y)
    assert (plain.discriminative_, hybrid.discriminative_) == (False, True)
    # The same first network and the same denoising draws; the term moves the tuning's steps.
    assert hybrid.loss_curve_[:40] == plain.loss_curve_[:40]
    assert hybrid.loss_curve_[40:] != plain.loss_curve_[40:] and hybrid.n_iter_ == 60
    # After 40 steps the network barely tells the spirals apart: "auto" adds the term, as True does.
    auto = _clf(max_iter=40, refit=False).fit(X, y)
    assert auto.discriminative_ is True and auto.loss_curve_ == hybrid.loss_curve_
    # A refit trains afresh and does not tune; nor does a fit on a given range.
    assert _clf(max_iter=40, discriminative=True).fit(X, y).discriminative_ is False
    given = _clf(max_iter=40, refit=False, discriminative=True, timestep_range=(0.0, 1.0))
    assert given.fit(X, y).discriminative_ is False
    # A continued fit trains the kept network on without a tuning: it still had the term.
    continued = _clf(max_iter=40, refit=False, discriminative=True, warm_start=True).fit(X, y)
    assert continued.fit(X, y).discriminative_ is True
    assert continued.set_params(warm_start=False, discriminative=False).fit(X, y).discriminative_ is False


def test_no_refit_with_early_stopping_or_a_continued_fit(spirals_split):
    X, y, _, _ = spirals_split
    stopped = _clf(early_stopping=True, refit=True).fit(X, y)
    assert stopped.validation_scores_  # trained on the split, with its held-out checks
    assert stopped.loss_curve_ == _clf(early_stopping=True, refit=False).fit(X, y).loss_curve_
    continued = _clf(warm_start=True, refit=True).fit(X, y)
    first = list(continued.loss_curve_)
    continued.fit(X, y)
    assert continued.loss_curve_[: len(first)] == first and continued.n_iter_ == 2 * len(first)


@pytest.mark.filterwarnings("default::sklearn.exceptions.ConvergenceWarning")
def test_convergence_warning_at_max_iter(spirals_split):
    X, y, _, _ = spirals_split
    # 300 rows: 30% held out, whose loss still falls over the last half of 20 steps; then a refit.
    message = (
        r"maximum iterations \(20\) reached and the training loss has not converged: the denoising loss of the "
        r"held-out samples still fell by \d+\.\d% over the last 10 steps\. Raise max_iter \(e\.g\. max_iter=40\)"
    )
    with pytest.warns(ConvergenceWarning, match=message):
        _clf(max_iter=20, denoiser=SMALL_MLP).fit(X, y)
    # Without held-out rows, the training loss is judged.
    with pytest.warns(ConvergenceWarning, match=r"the training loss still fell by \d+\.\d% over the last 10 steps"):
        _clf(max_iter=20, denoiser=SMALL_MLP, validation_fraction=None).fit(X, y)


def test_no_convergence_warning_while_only_the_training_loss_falls():
    # Wine's 178 rows: the network learns the training rows ever better (the training loss
    # still falls by ~7%, beyond noise, over the last 150 steps), but not the held-out ones.
    X, y = load_wine(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = DiffusionClassifier(max_iter=300, random_state=0).fit(X, y)
    assert still_falling(clf.loss_curve_[-150:], tol=1e-2)
    fall, steps, held_out = clf._training_state.fall
    assert held_out and steps == 150 and fall < 1e-2


def test_keyboard_interrupt_in_fit_leaves_a_usable_model(spirals_split):
    X, y, X_test, _ = spirals_split

    class Interrupting(MLPDenoiser):
        calls = 0

        def forward(self, x_t, t, y):
            if torch.is_grad_enabled():
                type(self).calls += 1
                if type(self).calls == 26:
                    raise KeyboardInterrupt
            return super().forward(x_t, t, y)

    clf = _clf(denoiser=functools.partial(Interrupting, hidden_size=16), max_iter=100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(X, y)
    messages = [str(w.message) for w in caught]
    assert any("Training interrupted by the user" in m for m in messages)
    assert not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert clf.n_iter_ == 25
    assert np.isfinite(clf.predict_proba(X_test)).all()


def test_sample_with_and_without_labels(fitted_spirals):
    X_new, y_new = fitted_spirals.sample(6, random_state=0)
    assert X_new.shape == (6, 2)
    assert set(y_new) <= {0, 1}
    X_one, y_one = fitted_spirals.sample(3, y=1, random_state=0)
    np.testing.assert_array_equal(y_one, [1, 1, 1])
    X_arr, y_arr = fitted_spirals.sample(4, y=[0, 1, 1, 0], random_state=0)
    np.testing.assert_array_equal(y_arr, [0, 1, 1, 0])
    X_again, _ = fitted_spirals.sample(4, y=np.array([0, 1, 1, 0]), random_state=0)
    np.testing.assert_array_equal(X_again, X_arr)
    assert not np.array_equal(fitted_spirals.sample(4, y=[0, 1, 1, 0], random_state=1)[0], X_arr)
    assert fitted_spirals.sample()[0].shape == (1, 2)


def test_sample_without_labels_follows_the_priors(spirals_split):
    X, y, _, _ = spirals_split
    clf = _clf(priors=[0.9, 0.1], max_iter=10, n_diffusion_steps=50, denoiser=SMALL_MLP).fit(X, y)
    _, y_new = clf.sample(400, random_state=0)
    assert 0.85 < (y_new == 0).mean() < 0.95  # 400 draws: 0.9 +- 2.5 standard errors


@pytest.mark.parametrize(
    "label, match",
    [
        (7, r"y contains labels not seen in fit: \[7\]"),
        ("a", r"y contains labels not seen in fit: \['a'\]"),
        (0.5, r"y contains labels not seen in fit: \[0.5\]"),
        ([0, 1, 2], r"y contains labels not seen in fit: \[2\]"),
        ([0, 1], r"y must be one label or an array of shape \(n_samples,\) = \(3,\), got an array of shape \(2,\)"),
        ([[0, 1, 1]], r"shape \(1, 3\)"),
    ],
)
def test_sample_rejects_unknown_labels(fitted_spirals, label, match):
    with pytest.raises(ValueError, match=match):
        fitted_spirals.sample(3, y=label)


@pytest.mark.parametrize("n_samples", [0, -1, 2.5, "3"])
def test_sample_rejects_bad_sizes(fitted_spirals, n_samples):
    with pytest.raises(ValueError, match="n_samples must be a positive integer"):
        fitted_spirals.sample(n_samples)


class _Linear(nn.Module):
    def __init__(self, n_features, n_classes):
        super().__init__()
        self.linear = nn.Linear(n_features, n_features)
        self.label = nn.Embedding(n_classes, n_features)

    def forward(self, x_t, t, y):
        return self.linear(x_t) + self.label(y)


def test_fit_does_not_change_a_passed_module(spirals_split):
    X, y, _, _ = spirals_split
    module = _Linear(2, 2)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    clf = _clf(denoiser=module, max_iter=30).fit(X, y)
    assert clf.denoiser is module
    assert clf.denoiser_ is not module
    assert isinstance(clf.denoiser_, _Linear)
    for name, value in module.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert not torch.equal(clf.denoiser_.linear.weight, before["linear.weight"])
    # The same instance fits the same way twice.
    again = _clf(denoiser=module, max_iter=30).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X[:20]), clf.predict_proba(X[:20]))


@pytest.mark.parametrize("loss", ["l1", "huber"])
@pytest.mark.parametrize("noise_schedule", ["linear", "cosine"])
def test_other_losses_and_schedules_classify(loss, noise_schedule):
    X, y = _blobs(100, n_classes=2)
    clf = _clf(loss=loss, noise_schedule=noise_schedule, n_diffusion_steps=200)
    assert clf.fit(X, y).score(X, y) >= 0.9


def test_fixed_timestep_range_is_used(spirals_split):
    X, y, _, _ = spirals_split
    clf = _clf(timestep_range=(0.1, 0.3), denoiser=SMALL_MLP, max_iter=20).fit(X, y)
    assert clf.timestep_range_ == (0.1, 0.3)
    auto = _clf(denoiser=SMALL_MLP, max_iter=20).fit(X, y)
    lo, hi = auto.timestep_range_
    assert 0 <= lo < hi <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fit_and_predict_on_gpu(spirals_split):
    X, y, X_test, y_test = spirals_split
    clf = DiffusionClassifier(max_iter=300, n_trials=16, random_state=0, device="cuda").fit(X, y)
    assert all(p.device.type == "cuda" for p in clf.denoiser_.parameters())
    proba = clf.predict_proba(X_test)
    assert proba.shape == (100, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # GPU kernels differ from the CPU ones (and embedding gradients use atomics), so the
    # fit is not the CPU fit: ask for its quality, not its bits.
    assert clf.score(X_test, y_test) >= 0.75
    np.testing.assert_allclose(clf.predict_proba(X_test[::-1])[::-1], proba, rtol=0, atol=1e-6)
    # Pickles hold the network on the CPU and load without a GPU.
    restored = pickle.loads(pickle.dumps(clf))
    assert all(p.device.type == "cpu" for p in restored.denoiser_.parameters())
    assert all(p.device.type == "cuda" for p in clf.denoiser_.parameters())
    np.testing.assert_allclose(restored.set_params(device="cpu").predict_proba(X_test), proba, atol=1e-4)
    X_new, y_new = clf.sample(2, y=0, random_state=0)
    assert X_new.shape == (2, 2) and y_new.tolist() == [0, 0]


def test_fit_warnings_point_at_the_line_that_called_fit():
    X, y = make_spirals(3, random_state=0)  # too few rows to hold any out, too few steps to converge
    with pytest.warns((UserWarning, ConvergenceWarning)) as record:
        _clf(max_iter=3).fit(X, y)
    assert {warning.category for warning in record} == {UserWarning, ConvergenceWarning}
    assert {warning.filename for warning in record} == {__file__}


def test_import_skdiffusion_loads_torch_and_sklearn_only_on_first_use():
    code = (
        "import sys, skdiffusion\n"
        "heavy = [m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from skdiffusion import *\n"
        "assert 'torch' in sys.modules and DiffusionClassifier.__module__ == 'skdiffusion._classifier'\n"
        "assert sorted(n for n in dir(skdiffusion) if not n.startswith('_')) == sorted(skdiffusion.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    with pytest.raises(AttributeError, match="module 'skdiffusion' has no attribute 'Classifier'"):
        skdiffusion.Classifier  # noqa: B018


def test_matplotlib_is_needed_only_for_figures(monkeypatch):
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None  # as if not installed: importing it raises ImportError\n"
        "from skdiffusion import DiffusionClassifier, load, save\n"
        "from skdiffusion.datasets import make_spirals\n"
        "X, y = make_spirals(100, random_state=0)\n"
        "clf = DiffusionClassifier(max_iter=5, n_trials=2, random_state=0).fit(X, y)\n"
        "assert clf.predict(X).shape == (100,)\n"
    )
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True, capture_output=True, text=True)
    from skdiffusion.__main__ import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit, match=r'matplotlib, which is not installed: pip install "skdiffusion\[plot\]"'):
        main([])


def test_auto_trains_on_while_the_held_out_loss_falls_and_refits_as_long(capsys):
    # 300 spirals: the held-out loss still falls after the cosine's 600 steps, so the first
    # training goes on; the refit on all rows replays its length.
    X, y = make_spirals(300, random_state=0)
    clf = DiffusionClassifier(n_trials=8, random_state=0, verbose=1).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    steps = clf.n_iter_
    assert lines[0] == "Training on 210 samples: at most 1800 steps (training 1 of 2)" and 600 < steps < 1800
    refit = lines.index(f"Refitting on all 300 samples: at most {steps} steps (training 2 of 2)")
    assert lines[refit - 2].startswith(f"Iteration {steps}/1800,")
    assert lines[-1].startswith(f"Iteration {steps}/{steps},")
    # An explicit max_iter trains exactly that long.
    assert DiffusionClassifier(max_iter=600, n_trials=8, random_state=0).fit(X, y).n_iter_ == 600


def test_auto_trains_on_before_a_tuning_only_with_the_cross_entropy_term(capsys):
    # 1,000 spirals: a fit that tunes. With the cross-entropy term, the first training goes
    # on past the cosine's 600 steps: the held-out loss still falls there.
    X, y = make_spirals(1000, random_state=0)
    term = DiffusionClassifier(n_trials=8, random_state=0, discriminative=True).fit(X, y)
    assert term.discriminative_ and term.n_iter_ > 900
    # Without it, the tuning's steps train on instead: the first stops at 600 steps,
    # counted as converged, and its trials, chosen there, are not chosen again.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = DiffusionClassifier(n_trials=8, random_state=0, verbose=1).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert not clf.discriminative_ and clf.n_iter_ == 600 + 150  # the tuning: a quarter as many
    chosen = [i for i, line in enumerate(lines) if line.startswith("Chose the timestep range")]
    assert len(chosen) == 1 and lines[chosen[0] - 1].startswith("Iteration 600/1800,")


def test_before_a_tuning_the_held_out_log_loss_chooses_between_the_lengths(monkeypatch, capsys, planned_without_base):
    # Wine, tuned rather than refitted, trained as a network without a Gaussian base: the
    # held-out denoising loss rises by 600 steps, so the first training runs again for 300,
    # and rises again, so again for 150. The fit keeps whichever of the three gives the
    # held-out rows the lowest log loss of the classes: at one seed 300 steps, at another 600.
    X, y = load_wine(return_X_y=True)
    losses = []
    choose_trials = _fitting.choose_trials

    def recorded(network, **kwargs):
        trials = choose_trials(network, **kwargs)
        losses.append(trials.held_out_loss)
        return trials

    monkeypatch.setattr(_fitting, "choose_trials", recorded)
    kept = []
    for seed in (0, 1):
        losses.clear()
        clf = DiffusionClassifier(n_trials=8, random_state=seed, refit=False, verbose=1).fit(X, y)
        assert len(losses) == 4  # the trials of 600 steps, of 300, of 150, and after the tuning
        steps = (600, 300, 150)[int(np.argmin(losses[:3]))]
        assert clf.n_iter_ == steps + steps // 4  # and the tuning runs a quarter as long
        kept.append(steps)
    assert kept == [300, 600]
    lines = capsys.readouterr().out.splitlines()
    for steps in kept:
        kept_line = f"Kept the training of {steps} steps, of the lowest held-out log loss ("
        assert sum(line.startswith(kept_line) for line in lines) == 1
    # A refit does not compare: it keeps the shortest (see the user guide).
    losses.clear()
    assert DiffusionClassifier(n_trials=8, random_state=1).fit(X, y).n_iter_ == 150 and len(losses) == 1


def test_auto_tunes_again_while_the_held_out_log_loss_of_the_classes_falls(
    monkeypatch, spirals_split, capsys, scripted_losses
):
    # A fit that tunes with the cross-entropy term: a first training of 40 steps (its
    # held-out loss neither falls nor rises), then tunings of 20. Given held-out log losses
    # of 0.5 for the first network, then 0.4, 0.3 and 0.35 after each tuning, it tunes three
    # times and goes back to the weights and trials of the second.
    X, y, _, _ = spirals_split
    monkeypatch.setattr(_fitting, "AUTO_STEPS", 40)
    monkeypatch.setattr(_training._HeldOutLoss, "fall", lambda self, start, stop: 0.0)
    monkeypatch.setattr(_fitting, "TUNE_AGAIN_ROWS", 30)  # the 30 held-out rows of these 300
    params = {"max_iter": "auto", "refit": False, "discriminative": True}
    scripted_losses([0.5, 0.4, 0.3, 0.35])
    clf = _clf(verbose=1, **params).fit(X, y)
    assert clf.n_iter_ == len(clf.loss_curve_) == 40 + 3 * 20
    lines = capsys.readouterr().out.splitlines()
    again = [line for line in lines if line.startswith("Tuning again")]
    assert again == [
        "Tuning again with the cross-entropy term (the held-out log loss of the classes fell to 0.4): "
        "20 steps (training 2 of 2)",
        "Tuning again with the cross-entropy term (the held-out log loss of the classes fell to 0.3): "
        "20 steps (training 2 of 2)",
    ]
    assert lines[-1] == "The held-out log loss of the classes did not fall: back to the weights before this tuning"
    # The same fit, at most two tunings: it stops after the second, and keeps it.
    monkeypatch.setattr(_fitting, "AUTO_MOST_TUNINGS", 2)
    scripted_losses([0.5, 0.4, 0.3])
    two = _clf(**params).fit(X, y)
    assert two.n_iter_ == 40 + 2 * 20 and two.loss_curve_ == clf.loss_curve_[:80]
    _assert_same_network(clf, two)
    assert clf.scale_ == two.scale_ and clf.timestep_range_ == two.timestep_range_
    # No second tuning where the first did not lower the loss, nor with an explicit max_iter,
    # nor on fewer held-out rows than TUNE_AGAIN_ROWS.
    monkeypatch.setattr(_fitting, "AUTO_MOST_TUNINGS", 10)
    scripted_losses([0.5, 0.6, 0.1])
    assert _clf(**params).fit(X, y).n_iter_ == 40 + 20
    scripted_losses([0.5, 0.4, 0.3])
    assert _clf(**{**params, "max_iter": 40}).fit(X, y).n_iter_ == 40 + 20
    scripted_losses([0.5, 0.4, 0.3])
    assert _clf(**{**params, "validation_fraction": 0.09}).fit(X, y).n_iter_ == 40 + 20  # 27 held out
    # Nor without the cross-entropy term: the plain tuning runs once, a quarter as long.
    scripted_losses([0.5, 0.4, 0.3])
    assert _clf(**{**params, "discriminative": False}).fit(X, y).n_iter_ == 40 + 10


def test_auto_trains_afresh_for_fewer_steps_when_the_held_out_loss_rises(capsys):
    # Wine's 178 rows, whose network has a Gaussian base: after its 300 steps the held-out
    # loss has risen (the network fits its training rows); the first training runs again
    # for 150, and the refit as long.
    X, y = load_wine(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a length chosen by the held-out loss: converged
        clf = DiffusionClassifier(n_trials=8, random_state=0, verbose=1).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert "Training on 124 samples: at most 300 steps (training 1 of 2)" in lines
    (again,) = [line for line in lines if line.startswith("Training afresh for fewer steps")]
    assert re.fullmatch(
        r"Training afresh for fewer steps \(the held-out loss rose by \d+\.\d% over the last 150 steps\): "
        r"150 steps \(training 1 of 2\)",
        again,
    )
    assert "Refitting on all 178 samples: at most 150 steps (training 2 of 2)" in lines and clf.n_iter_ == 150
    # The same data with an integer max_iter: exactly that.
    assert DiffusionClassifier(max_iter=600, n_trials=8, random_state=0).fit(X, y).n_iter_ == 600


def test_before_a_refit_the_first_training_goes_on_while_the_held_out_log_loss_falls(monkeypatch, capsys):
    # A refitted fit whose held-out denoising loss keeps falling (a cosine of 40 steps, then
    # stretches of 20): before each stretch the trials are chosen, and given held-out log
    # losses that fall and then rise, the first training stops there and goes back to the
    # weights before its last stretch, whose trials the model keeps; the refit replays
    # that length.
    monkeypatch.setattr(_fitting, "AUTO_STEPS", 40)
    monkeypatch.setattr(_training._HeldOutLoss, "fall", lambda self, start, stop: 1.0)
    X, y = make_spirals(300, random_state=0)
    scripted, chosen, weights = iter([0.5, 0.4, 0.45]), [], []
    choose_trials = _fitting.choose_trials

    def scripted_trials(network, **kwargs):
        weights.append(copy.deepcopy(network.state_dict()))
        trials = choose_trials(network, **kwargs)._replace(held_out_loss=next(scripted))
        chosen.append(trials)
        return trials

    monkeypatch.setattr(_fitting, "choose_trials", scripted_trials)
    networks = []  # the first training's, then the refit's
    build = _fitting._build

    def recorded_build(*args, **kwargs):
        networks.append(build(*args, **kwargs))
        return networks[-1]

    monkeypatch.setattr(_fitting, "_build", recorded_build)
    clf = DiffusionClassifier(n_trials=8, random_state=0, verbose=1).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(chosen) == 3  # after 40, 60 and 80 steps; none chosen again afterwards
    assert (
        "Stopped going on (the held-out log loss of the classes rose from 0.4 to 0.45): "
        "back to the weights before the last stretch"
    ) in lines
    assert "Refitting on all 300 samples: at most 60 steps (training 2 of 2)" in lines and clf.n_iter_ == 60
    assert clf.scale_ == chosen[1].scale and clf.timestep_range_ == chosen[1].timestep_range
    # The first network went back to its weights after 60 steps.
    first = networks[0].state_dict()
    assert all(torch.equal(first[name], value) for name, value in weights[1].items())
    assert not all(torch.equal(first[name], value) for name, value in weights[2].items())
