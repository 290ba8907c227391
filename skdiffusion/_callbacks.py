"""Support for scikit-learn's callbacks (``set_callbacks``, scikit-learn >= 1.9) in ``fit`` and ``partial_fit``."""

from ._compute import ceil_div
from ._training import CHECK_EVERY

try:
    from sklearn.callback import CallbackSupportMixin
except ImportError:  # scikit-learn < 1.9 has no callbacks

    class CallbackSupportMixin:
        """Stand-in for scikit-learn's mixin where it does not exist: adds nothing."""


class FitTasks:
    """The callback tasks of one fit: the fit, with a subtask per check interval of training.

    The subtasks are the ``CHECK_EVERY`` optimizer steps between two convergence checks,
    not single steps: scikit-learn 1.9.1's ``ProgressBar`` spends time quadratic in the
    number of subtasks (13 s for 20,000), and a bar of ``max_iter / 50`` moves often enough.
    The subtasks carry no ``fitted_estimator``, which would need the timestep range and
    scale chosen after training; the fit's own task does, at its end. Without callback
    support (scikit-learn < 1.9) every method does nothing.
    """

    def __init__(self, estimator, X, y, *, trainings):
        """Open the fit's task: run the callbacks' ``setup`` and ``on_fit_task_begin``.

        ``trainings`` holds the most steps of each training the fit runs (two when it
        refits or tunes).
        """
        self.estimator, self.data, self.interval, self.root = estimator, {"X": X, "y": y}, None, None
        if hasattr(estimator, "_init_callback_context"):
            n_intervals = sum(ceil_div(max_iter, CHECK_EVERY) for max_iter in trainings)
            self.root = estimator._init_callback_context(max_subtasks=n_intervals)
            self.root.call_on_fit_task_begin(estimator=estimator, **self.data)

    def next_interval(self):
        """End the running interval's task and begin the next; return True if a callback asks to stop.

        The training loop's hook (the ``callback`` of ``train_denoiser``).
        """
        if self.end_interval():
            return True
        if self.root is not None:
            self.interval = self.root.subcontext(task_name="check-interval")
            self.interval.call_on_fit_task_begin(estimator=self.estimator, **self.data)
        return False

    def end_interval(self):
        """End the running interval's task, if any; return True if a callback asks to stop."""
        interval, self.interval = self.interval, None
        return interval is not None and interval.call_on_fit_task_end(estimator=self.estimator, **self.data)

    def end(self):
        """End the fit's task, whose ``fitted_estimator`` is the fitted estimator."""
        if self.root is not None:
            self.root.call_on_fit_task_end(estimator=self.estimator, reconstruction_attributes={}, **self.data)
