"""Progress: ``verbose`` output, and scikit-learn's callbacks (``set_callbacks``, scikit-learn >= 1.9)."""

import functools
import re
import types
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from skdiffusion import DiffusionClassifier, MLPDenoiser, _calibration, _fitting, _scoring, _training, load, save

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SMALL_MLP = functools.partial(MLPDenoiser, hidden_size=32, n_blocks=2)


def _clf(**params):
    return DiffusionClassifier(**{"denoiser": SMALL_MLP, "max_iter": 50, "n_trials": 8, "random_state": 0, **params})


def _callbacks():
    """Return ``sklearn.callback``, or skip the test where scikit-learn has no callbacks (< 1.9)."""
    return pytest.importorskip("sklearn.callback", reason="scikit-learn < 1.9 has no callbacks")


def _recorder(stop_after=None):
    """Return a callback that records its hook calls, and asks to stop after ``stop_after`` intervals."""

    class Recorder(_callbacks().FitCallback):
        def __init__(self):
            self.events, self.fitted = [], None

        def setup(self, estimator, context):
            self.events.append(("setup", context.task_name))

        def on_fit_task_begin(self, estimator, context, *, X=None, y=None):
            assert X is not None and y is not None
            self.events.append(("begin", context.task_name, context.task_id))

        def on_fit_task_end(self, estimator, context, *, X=None, y=None, fitted_estimator=None):
            assert X is not None and y is not None
            self.events.append(("end", context.task_name, context.task_id))
            if context.task_name == "fit":
                self.fitted = fitted_estimator
            else:
                assert fitted_estimator is None
            return context.task_id + 1 == stop_after

        def teardown(self, estimator, context):
            self.events.append(("teardown", context.task_name))

    return Recorder()


ITERATION = re.compile(r"Iteration (\d+)/(\d+), loss = \d\.\d{8}, (\d+\.\d) s elapsed, about (\d+\.\d) s left")


def _iterations(lines):
    """Return the "step/steps" of iteration lines."""
    matches = [ITERATION.fullmatch(line) for line in lines]
    assert all(matches), lines
    return [f"{match[1]}/{match[2]}" for match in matches]


def test_verbose_prints_each_stage_with_its_steps_and_the_time_left(spirals, capsys):
    X, y = spirals
    _clf(max_iter=120, verbose=1).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    # The mean loss of the steps since the last check, every 50 steps and at the end; 200
    # samples are refitted on (refit="auto"), so a second training follows.
    assert lines[0] == "Training on 140 samples: at most 120 steps (training 1 of 2)"
    assert re.fullmatch(
        r"Chose the timestep range \(0\.0, 0\.\d+\) and the scale \d+(\.\d+)? on 60 held-out samples "
        r"\(log loss \d+(\.\d+)?(e-\d+)?\) in \d+\.\d s \(\d+\.\d s elapsed\)",
        lines[4],
    )
    assert lines[5] == "Refitting on all 200 samples: at most 120 steps (training 2 of 2)"
    assert _iterations(lines[1:4] + lines[6:]) == ["50/120", "100/120", "120/120"] * 2
    assert ITERATION.fullmatch(lines[-1])[4] == "0.0"  # nothing is left after the last step
    # Without the refit, the fit tunes on the chosen range: 30 more steps, counted apart, or
    # 60 with the cross-entropy term.
    for discriminative, term, steps in [
        (False, "", ["30/30"]),
        (True, " with the cross-entropy term", ["50/60", "60/60"]),
    ]:
        _clf(max_iter=120, verbose=1, refit=False, discriminative=discriminative).fit(X, y)
        lines = capsys.readouterr().out.splitlines()
        most = steps[-1].split("/")[1]
        tuning = rf"Tuning{term} on the timestep range \(0\.0, 0\.\d+\): at most {most} steps \(training 2 of 2\)"
        assert re.fullmatch(tuning, lines[5])
        assert _iterations(lines[1:4] + lines[6:-1]) == ["50/120", "100/120", "120/120", *steps]
        assert re.fullmatch(r"Chose the scale \d+(\.\d+)? again in \d+\.\d s \(\d+\.\d s elapsed\)", lines[-1])
    _clf(max_iter=120, verbose=1, refit=False, timestep_range=(0, 1)).fit(X, y)  # no second training
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(training 1 of 1)") and len(lines) == 5
    _clf(max_iter=120).fit(X, y)
    assert capsys.readouterr().out == ""


def test_verbose_prints_each_tuning_run_again(spirals, monkeypatch, scripted_losses, capsys):
    # Tunings of 20 steps after 40 (see the callbacks' test of the same fit), whose held-out
    # log losses fall twice and then rise: each prints its steps, the time left (never
    # negative: the choice after each is still to come) and its choice.
    X, y = spirals
    monkeypatch.setattr(_fitting, "AUTO_STEPS", 40)
    monkeypatch.setattr(_fitting, "TUNE_AGAIN_ROWS", 20)
    monkeypatch.setattr(_training._HeldOutLoss, "fall", lambda self, start, stop: 0.0)
    scripted_losses([0.5, 0.4, 0.3, 0.35])
    _clf(max_iter="auto", refit=False, discriminative=True, verbose=1).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert _iterations([line for line in lines if line.startswith("Iteration")]) == ["40/1800", *["20/20"] * 3]
    again = [line for line in lines if line.startswith("Tuning again")]
    assert [re.sub(r"\d+\.\d+", "N", line) for line in again] == [
        f"Tuning again with the cross-entropy term (the held-out log loss of the classes fell to {loss}): "
        "20 steps (training 2 of 2)"
        for loss in ("N", "N")
    ]
    assert lines[-1] == "The held-out log loss of the classes did not fall: back to the weights before this tuning"


def test_the_time_left_counts_the_choice_after_each_tuning_run_again(monkeypatch, capsys):
    # Progress driven as a fit that tunes twice more drives it, on a clock where a step
    # takes 0.01 s and a choice of the trials 1 s: 40 steps and a choice, a tuning of 20
    # and a choice, then each tuning again (a restart) of 20 and its choice. At the end of
    # every tuning, the time left is the choice still to come.
    now = [0.0]
    monkeypatch.setattr(_training, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))

    def run(progress, steps):
        now[0] += 0.01 * steps
        progress.check(steps, 0.5)

    def choose(progress):
        now[0] += 1.0
        progress.chose("Chose", 1.0)

    progress = _training.Progress([40, 20], choices=2)
    progress.begin("Training")
    run(progress, 40)
    choose(progress)
    progress.end()
    progress.begin("Tuning")
    run(progress, 20)
    choose(progress)
    for _ in range(2):
        progress.restart("Tuning again", 20, 20, choices=1)
        run(progress, 20)
        choose(progress)
    lefts = [float(match[4]) for line in capsys.readouterr().out.splitlines() if (match := ITERATION.fullmatch(line))]
    # The first check knows no choice's time yet: 20 steps left.
    assert lefts == [0.2, 1.0, 1.0, 1.0]


def test_verbose_says_when_the_trials_are_chosen_on_a_sample(spirals, capsys, monkeypatch):
    X, y = spirals
    for module in (_calibration, _fitting):
        monkeypatch.setattr(module, "CHOOSING_ROWS", 40)
    _clf(refit=False, validation_fraction=0.5, verbose=1).fit(X, y)
    chose = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Chose the timestep")]
    assert len(chose) == 1
    assert " on a weighted sample of about 40 of the 100 held-out samples (log loss " in chose[0]


def test_verbose_prints_the_validation_loss_and_the_stop(spirals, capsys):
    X, y = spirals
    _clf(max_iter=2000, verbose=1, early_stopping=True, n_iter_no_change=1, tol=0.5).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    # A 50% relative improvement is never reached after the first check: stop at the second.
    assert [re.sub(r"\d+\.\d+", "N", line) for line in lines[:6]] == [
        "Training on 180 samples: at most 2000 steps (training 1 of 1)",
        "Iteration 50/2000, loss = N, N s elapsed, about N s left",
        "Validation loss: N",
        "Iteration 100/2000, loss = N, N s elapsed, about N s left",
        "Validation loss: N",
        "Validation loss did not improve more than tol=N for 1 consecutive checks. Stopping.",
    ]
    assert lines[6].startswith("Chose the timestep range")


def test_verbose_predict_reports_each_tenth_of_the_rows(spirals, capsys, monkeypatch):
    X, y = spirals
    clf = _clf().fit(X, y)
    monkeypatch.setattr(_scoring, "CHUNK_PAIRS", 3 * 8 * 2)  # chunks of 3 rows of 8 trials x 2 classes
    capsys.readouterr()
    clf.set_params(verbose=1).predict_proba(np.tile(X, (2, 1))[:100])
    # 34 chunks; a line for the chunk that completes each tenth.
    assert capsys.readouterr().out.splitlines() == [
        f"predict: {n}/100 samples" for n in (12, 21, 30, 42, 51, 60, 72, 81, 90, 100)
    ]


def test_callbacks_see_the_fit_and_each_check_interval_in_order(spirals):
    X, y = spirals
    recorder = _recorder()
    clf = _clf(max_iter=120).set_callbacks(recorder).fit(X, y)
    # 120 steps: intervals of 50, 50 and 20 steps, the last ending with training; twice,
    # as 200 samples are refitted on (refit="auto").
    intervals = [(hook, "check-interval", i) for i in range(6) for hook in ("begin", "end")]
    assert recorder.events == [
        ("setup", "fit"),
        ("begin", "fit", 0),
        *intervals,
        ("end", "fit", 0),
        ("teardown", "fit"),
    ]
    # The fit's task ends on a copy of the fitted estimator, ready to predict.
    assert recorder.fitted is not clf and recorder.fitted.n_iter_ == 120
    np.testing.assert_array_equal(recorder.fitted.predict_proba(X[:5]), clf.predict_proba(X[:5]))
    assert not hasattr(clf, "_callback_fit_ctx")


def test_callbacks_see_each_interval_of_a_tuning_run_again(spirals, monkeypatch, scripted_losses):
    # A fit that tunes with the cross-entropy term on its 20 held-out rows (the minimum
    # lowered to them): 40 steps, then tunings of 20 whose held-out log losses, scripted,
    # fall twice and then rise. One interval for the first training, one for each of the
    # three tunings, the last undone.
    X, y = spirals
    monkeypatch.setattr(_fitting, "AUTO_STEPS", 40)
    monkeypatch.setattr(_fitting, "TUNE_AGAIN_ROWS", 20)
    monkeypatch.setattr(_training._HeldOutLoss, "fall", lambda self, start, stop: 0.0)
    scripted_losses([0.5, 0.4, 0.3, 0.35])
    recorder = _recorder()
    params = {"max_iter": "auto", "refit": False, "discriminative": True}
    clf = _clf(**params).set_callbacks(recorder).fit(X, y)
    assert clf.n_iter_ == 40 + 3 * 20
    intervals = [(hook, "check-interval", i) for i in range(4) for hook in ("begin", "end")]
    assert recorder.events == [
        ("setup", "fit"),
        ("begin", "fit", 0),
        *intervals,
        ("end", "fit", 0),
        ("teardown", "fit"),
    ]


def test_callbacks_see_each_partial_fit_call(spirals):
    X, y = spirals
    recorder = _recorder()
    clf = _clf(batch_size=32).set_callbacks(recorder)
    for batch in np.array_split(np.arange(len(X)), 2):
        clf.partial_fit(X[batch], y[batch], classes=[0, 1])
    # Each call is a task: 100 rows, 90 trained on, are 3 steps of 32, one interval.
    call = [("setup", "fit"), ("begin", "fit", 0), ("begin", "check-interval", 0)]
    call += [("end", "check-interval", 0), ("end", "fit", 0), ("teardown", "fit")]
    assert recorder.events == call * 2
    assert clf.n_iter_ == 6
    assert recorder.fitted is not clf and recorder.fitted.n_iter_ == 6
    assert not hasattr(clf, "_callback_fit_ctx")


def test_a_callback_stops_training_between_intervals(spirals):
    X, y = spirals
    recorder = _recorder(stop_after=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a requested stop is no failure to converge
        clf = _clf(max_iter=500).set_callbacks(recorder).fit(X, y)
    assert clf.n_iter_ == len(clf.loss_curve_) == 100
    assert [event[2] for event in recorder.events if event[:2] == ("begin", "check-interval")] == [0, 1]
    assert clf.predict(X[:5]).shape == (5,)


def test_callbacks_leave_the_fit_unchanged(spirals):
    X, y = spirals
    recorder = _recorder()
    plain = _clf(max_iter=120).fit(X, y)
    observed = _clf(max_iter=120).set_callbacks(recorder).fit(X, y)
    np.testing.assert_array_equal(observed.loss_curve_, plain.loss_curve_)
    np.testing.assert_array_equal(observed.predict_proba(X), plain.predict_proba(X))


def test_a_fit_that_fails_in_training_tears_the_callbacks_down(spirals):
    X, y = spirals
    recorder = _recorder()
    clf = _clf(learning_rate=1e6, max_iter=100).set_callbacks(recorder)
    with pytest.raises(FloatingPointError):
        clf.fit(X, y)
    assert recorder.events[:3] == [("setup", "fit"), ("begin", "fit", 0), ("begin", "check-interval", 0)]
    assert recorder.events[-1] == ("teardown", "fit")
    assert not hasattr(clf, "_callback_fit_ctx")
    # Bad data fail before the fit's task begins, as in scikit-learn's LogisticRegression.
    recorder = _recorder()
    with pytest.raises(ValueError, match="at least 2 classes"):
        _clf().set_callbacks(recorder).fit(X, np.zeros_like(y))
    assert recorder.events == []


def test_progress_bar_in_fit_and_in_grid_search(spirals, capsys):
    ProgressBar = _callbacks().ProgressBar
    pytest.importorskip("rich")
    X, y = spirals
    _clf(max_iter=120).set_callbacks(ProgressBar()).fit(X, y)
    assert "DiffusionClassifier - fit" in capsys.readouterr().out
    search = GridSearchCV(_clf(), {"n_trials": [4, 8]}, cv=2).set_callbacks(ProgressBar()).fit(X, y)
    out = capsys.readouterr().out
    assert "GridSearchCV - fit" in out
    assert out.count("candidate-split-evaluation | DiffusionClassifier - fit") == 4
    assert search.best_estimator_.n_iter_ == 50


def test_save_leaves_the_callbacks_out(spirals, tmp_path):
    X, y = spirals
    recorder = _recorder()
    clf = _clf().set_callbacks(recorder).fit(X, y)
    save(clf, tmp_path / "model.skd")
    loaded = load(tmp_path / "model.skd")
    assert not hasattr(loaded, "_skl_callbacks")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_callbacks_follow_a_first_training_run_afresh_for_fewer_steps():
    # Wine at the defaults (its network has a Gaussian base): the first training runs 300
    # steps, then afresh for 150 (its held-out loss rose), then the refit 150: 12 check
    # intervals, within the planned most.
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    recorder = _recorder()
    clf = DiffusionClassifier(n_trials=8, random_state=0).set_callbacks(recorder).fit(X, y)
    intervals = [event for event in recorder.events if event[:2] == ("begin", "check-interval")]
    assert clf.n_iter_ == 150 and len(intervals) == (300 + 150 + 150) // 50
    assert recorder.fitted is not None
