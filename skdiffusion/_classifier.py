"""DiffusionClassifier: a class-conditional diffusion model as a scikit-learn classifier."""

import copy
import dataclasses
import functools
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_memory

from ._calibration import bayes_logits
from ._callbacks import CallbackSupportMixin, FitTasks
from ._compute import one_torch_thread, run_in_jobs, usable_threads
from ._denoisers import MLPDenoiser, check_denoiser, mlp_arguments, mlp_from_weights
from ._fitting import Seeds, TrainingData, cached_run_plan, network_builder, plan_fit, run_plan
from ._losses import LOSSES
from ._sampling import ancestral_sample
from ._schedule import BETA_SCHEDULES, as_tensor
from ._scoring import chunk_rows, mean_errors, piece_rows, trial_draws
from ._tabular import (
    categorical_mask,
    category_counts,
    category_log_likelihood,
    column_name,
    columns_of,
    conditioning,
    denoiser_input,
    dequantization_widths,
    input_width,
    network_categories,
    on_grid,
    one_hot,
    sample_codes,
    table,
    value_steps,
)
from ._validation import (
    OUTLYING_SCALE,
    center_constant_columns,
    check_alphas_cumprod,
    check_device,
    check_errors,
    check_label_types,
    check_pruning,
    check_sample_shape,
    check_table,
    class_index,
    class_prior,
    drop_zero_weights,
    log_prior,
    outlying_columns,
    partial_fit_classes,
    row_weights,
    standardise,
    standardised,
    timestep_bounds,
)

# Bounds of n_trials and n_diffusion_steps: far beyond any use (Li et al. score ImageNet
# with 1,000 trials of 1,000 steps), yet small enough that the trials' noise and the
# schedule stay within memory (100,000 trials of 1,000 features: 400 MB).
MAX_TRIALS = 100_000
MAX_DIFFUSION_STEPS = 100_000
# (trial, class) evaluations of one row that predict_proba holds at once: chunks of rows
# keep to 2**22 (16 MiB of errors), but a row is not split (4x that: 64 MiB).
MAX_ROW_EVALUATIONS = 1 << 24
# Optimizer steps below which partial_fit warns: on spirals and moons, fewer left the
# accuracy several points below fit's (benchmarks/results/partial_fit.md).
MIN_INCREMENTAL_STEPS = 100


def _not_converged(max_iter, steps, fall):
    """Return the ConvergenceWarning's message: how much the loss still fell after ``steps``, and what to change."""
    most = f"max_iter='auto': {steps} steps" if max_iter == "auto" else max_iter
    message = f"DiffusionClassifier: maximum iterations ({most}) reached and the training loss has not converged"
    advice = f"Raise max_iter (e.g. max_iter={2 * steps}) to train longer."
    if fall is None:  # early stopping, which had not stopped
        return f"{message} yet. {advice}"
    share, last, held_out = fall
    loss = "the denoising loss of the held-out samples" if held_out else "the training loss"
    return f"{message}: {loss} still fell by {share:.1%} over the last {last} steps. {advice}"


class DiffusionClassifier(CallbackSupportMixin, ClassifierMixin, BaseEstimator):
    """Classifier that applies Bayes' rule to a class-conditional diffusion model.

    ``fit`` trains a conditional denoiser ``eps_theta(x_t, t, y)`` with the DDPM
    noise-prediction loss on standardised features. ``predict_proba`` noises each sample
    ``n_trials`` times, at evenly spaced timesteps with noise shared by all samples and all
    classes, asks the denoiser for that noise under every class, and turns the mean
    denoising errors into class probabilities by Bayes' rule::

        log p(x | c) ~= -scale_ * Error_c + const
        p(c | x) = softmax_c( log p(c) - scale_ * Error_c )

    where ``Error_c`` is the mean over trials of the per-feature mean of the loss
    (``(eps - eps_theta(x_t, t, c))**2`` for "l2"). The ELBO with uniform weights over
    the timesteps gives ``scale_ = n_features`` (the squared error summed over features,
    as in Li et al., 2023); ``fit`` instead fits ``scale_`` to the held-out samples by
    minimising their log loss (temperature scaling), which makes the probabilities
    calibrated, and chooses the timestep range the same way.

    Read more in the :ref:`User Guide <user_guide>`.

    Parameters
    ----------
    denoiser : None, nn.Module class or callable, or nn.Module instance, default=None
        The conditional denoiser. None builds a :class:`~skdiffusion.MLPDenoiser` sized
        from the data: its width from the number of numeric features (the one-hot codes of
        categorical columns condition it, and do not count), capped at a quarter of the
        number of samples (rounded up to a power of two, at least 32); its sinusoidal
        input features from the spacing of the standardised samples (frequencies up to one
        over the median distance to the nearest sample of the same class, and none when
        that distance exceeds 0.1, where the data are too sparse to show finer detail than
        a plain MLP draws); on such smooth data of fewer than 10 classes, a Gaussian base
        (``gaussian_base``: the network learns what the exact denoiser of Gaussian classes
        leaves, see the user guide). A class or callable is called as ``denoiser(n_features, n_classes)``
        and must return an ``nn.Module``. An instance is copied by ``fit`` (the copy is
        trained; the instance is never changed), on the instance's device: to hold a large
        pretrained model once on a GPU, keep the instance on the CPU and set ``device``.
        A pretrained denoiser, whose parameters may be frozen, needs ``max_iter=0`` (see
        :ref:`zero_shot`). The module must compute
        ``forward(x_t, t, y) -> eps_hat`` with ``eps_hat.shape == x_t.shape``, for
        ``x_t`` of shape (n, n_features), integer timesteps ``t`` of shape (n,) and class
        indices ``y`` of shape (n,) in ``range(n_classes)``. With ``image_shape`` set, None
        builds a :class:`~skdiffusion.UNetDenoiser`, a class or callable is called as
        ``denoiser(image_shape, n_classes)`` and ``x_t`` has shape ``(n, *image_shape)``.
    categorical_features : "from_dtype", array-like of int, str or bool, or None, default="from_dtype"
        The categorical columns, as ``HistGradientBoostingClassifier`` takes them:
        "from_dtype" makes the pandas columns of dtype category, object, string or bool
        categorical (none of a numpy array); or column indices, column names (of a
        DataFrame), or a boolean mask over the columns; None or an empty list: no
        column. A categorical column's values can be any hashable labels (strings,
        numbers); missing values (None, NaN) are left out of its likelihood. Categories
        are modelled as discrete: ``p(x | c) = p(x_cat | c) p(x_num | x_cat, c)``, the
        first factor from category frequencies per class, shrunk towards those of all
        classes as far as the column does not tell the classes apart, the second the
        diffusion model of the numeric columns, conditioned on the one-hot categories
        (see the user guide). A category not seen in ``fit`` counts as missing at
        predict time; one seen in fewer than 40 rows, or in a column of more than 16
        categories of 40 rows or more, conditions the diffusion model as an unseen one,
        and the network has no input for it (``network_categories_``).
        :meth:`sample` returns the categories' values.
    image_shape : None or tuple of int (C, H, W), default=None
        Treat each row of ``X`` as an image of this shape (channels, height, width, in
        the row-major order of ``X[i].reshape(image_shape)``), with ``C * H * W ==
        n_features``: the standardised rows are reshaped to images before the denoiser,
        and :meth:`sample` flattens them back. E.g. ``(1, 8, 8)`` for the 64 pixels of
        :func:`~sklearn.datasets.load_digits`. None: the rows are flat vectors.
    n_trials : int, default=64
        Monte Carlo trials per sample in ``predict_proba``: each trial is one timestep and
        one noise draw, shared by every class. Trials come in antithetic pairs, one
        timestep with noise ``eps`` and ``-eps``, which cancel the leading noise term of
        the difference between two classes (see the user guide).
    pruning : None, "t-test" or sequence of (int, int) pairs, default="t-test"
        Stop scoring classes that are out of the running. "t-test" drops a class once a
        paired t-test on the means of the antithetic pairs finds it worse than the best
        class at p < 0.002 (checked after 16, 24, 36 and 54 trials of 64, each count half
        again the last), as Clark & Jaini (2023) do; a sequence of ``(trials, kept)`` keeps
        the ``kept`` best classes after ``trials`` trials, as Li et al. (2023) do (e.g.
        ``((8, 3), (16, 1))``; even trial counts keep the pairs whole). A dropped class's
        mean error is estimated from the trials it was scored on, paired with a class
        scored on all of them (see the user guide), so ``predict_proba`` still sums to one
        and ``predict`` is its argmax; a sample left with one class is settled and scored
        no further. The trials' timesteps are taken in an order whose every prefix is
        spread over the whole range, so each stage is a stratified sample. For the
        evaluations it saves at equal accuracy, see ``benchmarks/results/evaluations.md``.
    timestep_range : "auto" or tuple of two floats, default="auto"
        The trials' timesteps are evenly spaced over ``[lo * T, hi * T)``, with ``T`` the
        number of diffusion steps. Which timesteps separate the classes depends on the
        data (fine 2-D structure is only visible at small noise); "auto" chooses
        ``(0, hi)`` with ``hi`` in 0.05, 0.1, 0.2, 0.5, 1 by the log loss of the held-out
        samples (see ``validation_fraction``), or uses (0, 1) when none are held out.
        Half of a training's timesteps are drawn from the range when it is known: from
        the start with an explicit range, with "auto" in the refit or the tuning that
        follows the choice (see ``refit``).
    max_iter : int or "auto", default="auto"
        Optimizer steps (minibatches) of a training in ``fit``, along which the learning
        rate decays; a fit that tunes (see ``refit``) then runs a quarter as many more (half
        as many with the cross-entropy term of ``discriminative``). "auto"
        lets the denoising loss of the held-out samples decide: 600 steps, then on at the
        final rate, 300 steps at a time, while it still falls by more than ``tol`` over the
        last 300, up to 1,800 steps in all; or, if it rose by more than ``tol`` over the
        last 300 (the network fits its training rows, as on small data), the training
        starts afresh for 300 steps, and again for 150 if it rose again; a fit that tunes
        then keeps, of those trainings, the one whose trials give the held-out samples the
        lowest log loss of the classes. Before a refit, the first training goes on only
        while the held-out log loss of the classes (of the trials chosen before each 300
        steps) falls too, and once it rises goes back to the weights before those steps;
        the refit trains as long as the training it keeps (the last one). Before a tuning,
        the first training goes on only
        if the tuning has the cross-entropy term (see ``discriminative``): a plain tuning
        trains on in its place (see the user guide); on 300 held-out samples or more, a
        tuning with the term that lowered the held-out log loss of the classes runs again
        while that loss falls, up to ten tunings in all, and the first that does not lower
        it is undone. On 3,000 samples or more, before a tuning, "auto" trains a cosine of
        3,000 steps instead of 600, not going on after it (afresh for half as many, as
        above, if the held-out loss rose), and the tuning keeps its share of 600: more
        rows support a longer training (see the user guide). Otherwise a network with a
        Gaussian base (see :class:`~skdiffusion.MLPDenoiser`), which has only the classes'
        departures from Gaussians to learn, trains 300 steps (afresh for 150 if the held-out
        loss rose), not going on after them, and its tuning takes its share of 300. "auto"
        without held-out samples (or with ``early_stopping``, which stops on its own): 600
        steps. Not used by :meth:`partial_fit`, which runs one epoch's worth of steps per
        call. 0 trains nothing, for a pretrained denoiser (with ``denoiser=None``, it is
        refused, but in a ``warm_start`` fit of a fitted network): ``fit`` then records the
        classes, priors and standardisation, checks the denoiser's contract on a batch of
        two, and chooses the trials' timesteps and scale on all of ``X`` (unless
        ``validation_fraction=None``), without a ``ConvergenceWarning``.
    batch_size : int, default=256
        Minibatch size of training; capped at the number of training samples. Smaller
        batches make each step, and so the fit, cheaper, at some cost in accuracy on most
        data (see the user guide).
    learning_rate : float or "auto", default="auto"
        Initial learning rate of Adam; it decays to a tenth along a cosine over
        ``max_iter`` steps. "auto": 1e-2 for the default MLP network, 5e-3 for any
        other (the U-Net of ``image_shape``, or a given ``denoiser``), whose training
        a larger rate made worse. The MLP's rate suits the default length; for much
        longer fits, try 5e-3 (see the user guide).
    weight_decay : float, default=0.0
        Adam's L2 penalty, as ``torch.optim.Adam``'s ``weight_decay``: ``weight_decay *
        w`` is added to the gradient of every parameter ``w`` of the denoiser in every
        training, the refit and the tuning too, and in :meth:`partial_fit`. On three
        small tables 1e-3 raised the accuracy; on others, and on most larger data, it
        lowered the accuracy or raised the log loss, so the default trains without it
        (see the user guide).
    priors : array-like of shape (n_classes,), default=None
        Prior probabilities of the classes. None: the class frequencies seen in ``fit``.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, as in scikit-learn's classifiers: ``{label: weight}``, or
        "balanced" for ``n_samples / (n_classes * np.bincount(y))``; each sample's weight
        is multiplied by its class's (see ``sample_weight`` in :meth:`fit`). A weight
        moves the class priors with it, unless ``priors`` is given: to raise the recall of
        a rare class, pass ``priors`` instead, which leaves the training alone.
    noise_schedule : {"linear", "cosine"} or array-like of shape (n_diffusion_steps,), default="linear"
        The beta schedule of the forward process: DDPM's linear one (Ho et al., 2020) or
        the cosine one of Nichol & Dhariwal (2021); or the ``alphas_cumprod`` of the schedule
        a pretrained denoiser was trained with, strictly decreasing in (0, 1), indexed by the
        timesteps ``t = 0, ..., T - 1`` (e.g. a diffusers scheduler's, see
        :func:`skdiffusion.diffusers.scheduler_alphas_cumprod`).
    n_diffusion_steps : int, default=1000
        Number of timesteps ``T`` of the forward process; with an array as
        ``noise_schedule``, it must equal the array's length.
    standardize : bool, default=True
        Standardise the features (``StandardScaler``) before the diffusion. False feeds
        them to the denoiser as they are, as a pretrained denoiser needs (e.g. images in
        [-1, 1], or a VAE's scaled latents); :meth:`sample` then returns that space too.
    dequantize : {"auto", True, False}, default="auto"
        Train on the numeric values of a column whose values are all whole multiples of one
        step (integer counts, pixel intensities, measurements to a fixed precision) as
        continuous values spread over their cells: each value plus a uniform draw over
        one step, anew at every training step (uniform dequantization, Uria et al., 2013;
        Theis et al., 2016). A continuous density fitted to values on a grid would
        otherwise pile up on the grid's points as the noise gets small. Scoring reads each
        value at its cell's centre, the value itself, and :meth:`sample` rounds the
        generated values to their steps. A column's own step is the smallest gap between
        its values, where every value is a whole multiple of it. "auto" does so where the
        whole table lies on one grid (digits' pixels, answers on one scale): every value
        of every numeric column a whole multiple of the own step that most columns share,
        which is then every column's step. True does so for every column that has a
        step of its own; False, never. Either leaves out a step narrower, once
        standardised, than the noise of the first timestep, which blurs it already. The
        steps are in ``value_steps_`` (see the user guide).
    loss : {"l2", "l1", "huber"}, default="l2"
        Per-element denoising loss, used both to train and to score.
    early_stopping : bool, default=False
        Stop training when the denoising loss of the held-out samples (on fixed noise
        draws) stops improving, and keep the best weights. Otherwise training runs
        ``max_iter`` steps, along a learning rate annealed to that length. Early stopping
        needs held-out samples: ``validation_fraction`` must not be None.
    validation_fraction : float, "auto" or None, default="auto"
        Fraction of the training data held out (stratified) for early stopping, for the
        choice of ``timestep_range`` and for the error scale; a fit that refits (see
        ``refit``) then trains on them too. "auto" holds out 0.3 in a fit that refits,
        whose held-out rows serve only that choice and are trained on in the end, and 0.1
        otherwise, where they are never trained on (see the user guide). A class of a
        single sample is trained on and the others are held out from; with fewer than
        two classes to hold out from, nothing is held out, with a warning. None holds out
        nothing: the
        timesteps are then ``timestep_range`` (or all, for "auto") and the scale is the
        number of features (the uniformly weighted ELBO). With ``max_iter=0``, not None
        means all samples: nothing is trained on them. This choice scores every sample
        under every class at 128 timesteps, an antithetic pair at each, four times the
        cost of predicting with the default 64 trials and no pruning; beyond 2,000
        held-out samples, it scores them all at 16 trials first, and chooses on a
        weighted sample of 2,000 of them, most of them those found wrong or unsure (see
        the user guide). With a large model, pass ``timestep_range`` and None.
    tol : float, default=1e-2
        Relative tolerance. With early stopping, a check whose held-out loss is not below
        ``(1 - tol)`` times the best so far counts as no progress. Without, the fit
        raises a ``ConvergenceWarning`` when the loss still falls by more than ``tol``
        (relative) over the steps of the last ``n_iter_no_change`` checks (at most the
        last half of the steps): the denoising loss of the held-out samples, on fixed
        draws, when the fit holds some out (of the first training, for a refit, which
        trains on them); else a straight line fitted to the training loss, by more than
        twice its standard error too (the noise of the minibatch losses).
    n_iter_no_change : int, default=10
        Number of checks, one every 50 steps: with early stopping, how many checks
        without progress stop the training; otherwise, how many last checks the
        convergence test looks at.
    warm_start : bool, default=False
        Continue training the fitted denoiser on the next call to ``fit``, for up to
        ``max_iter`` more steps, instead of starting afresh. The classes, the features and
        the noise schedule must stay those of the fitted model.
    refit : bool or "auto", default="auto"
        After choosing the trials' timestep range and error scale on the held-out samples,
        train the network afresh on all samples (from the same initial weights and seed,
        half its timesteps drawn from the chosen range) and keep that choice: the held-out
        rows are then trained on too, and training takes twice as long. "auto" refits
        when ``X`` has fewer than 1,000 rows, where the held-out rows are a loss the
        network feels; on more rows, the scale chosen on the first network suits the
        second less well (see the user guide). A fit that does not refit, with
        ``timestep_range="auto"``, tunes instead: it trains the network on for a quarter of
        ``max_iter`` more steps (half, with the cross-entropy term of ``discriminative``),
        half its timesteps drawn from the chosen range, at a fifth of the initial learning
        rate, then fits the scale again on the held-out samples. Neither with ``early_stopping``,
        ``validation_fraction=None``, ``max_iter=0``, in a ``warm_start`` fit that
        continues, or in :meth:`partial_fit`.
    discriminative : bool or "auto", default="auto"
        Add a discriminative term to the tuning's loss (see ``refit``): the log loss of
        Bayes' rule on a few training rows per step, each scored under every class at four
        timesteps of the chosen range with the chosen scale, beside the denoising loss
        with the same weight. The probabilities still come from Bayes' rule on the
        diffusion model's errors: the term trains the network to make the classes' errors
        differ where the labels say. "auto" adds it on two classes that overlap: when the
        held-out log loss of the network before the tuning is above a tenth of the log
        loss of the priors alone. True adds it to any tuning, False to none. Only a fit that
        tunes uses it, after a first training that went on past its cosine (see
        ``max_iter``), and with ``max_iter="auto"`` may run again (see ``max_iter``); on
        the tables where "auto" adds it, the whole fit took 1.3 to 2.0 times as long (see
        the user guide).
    device : str or torch.device, default="cpu"
        Torch device to train and predict on, e.g. ``"cuda"``. A pickled model is stored
        on the CPU and loads on machines without the device.
    n_jobs : int, default=None
        Number of jobs that score the rows of ``predict_proba``, ``predict_log_proba``,
        ``predict`` and ``score_samples`` in parallel, each on one torch thread, in chunks of
        ``2**22 // (n_trials * n_classes)`` rows (at least one) run by joblib's backend of
        the moment (e.g. ``"dask"`` in a :func:`joblib.parallel_config` context); -1 means
        all processors. None scores in the calling process: on the CPU, on as many threads
        as torch may use (``torch.get_num_threads()``, which follows
        ``torch.set_num_threads``, ``OMP_NUM_THREADS`` and threadpoolctl's limits), at most
        the CPUs the process may run on, each thread on its own rows with one torch thread,
        and only as many threads as get rows enough to fill their scoring calls (a few
        hundred rows to a few thousand, more with pruning: fewer are scored in the calling
        thread, faster there); on another device, in the calling thread. 1 scores in the
        calling thread alone.
        Neither uses joblib. ``fit`` scores its held-out samples, to choose the trials, on
        the same threads for None and in the calling thread otherwise; it trains on one torch
        thread. The results are bit for bit those of one thread (see the user guide's
        reproducibility page). With ``verbose``, joblib reports the jobs as they finish.
        Jobs are meant for the CPU: on a GPU, leave it None.
    memory : str, object with the joblib.Memory interface, or None, default=None
        Caches the trained network: the path of a folder, or a :class:`joblib.Memory`.
        ``fit`` then looks up a network trained before on the same data with the same
        training (the parameters that change what is trained, and the seeds drawn from
        ``random_state``) and reuses it instead of training. So a grid search over
        parameters that only change prediction (``n_trials``, ``pruning``, ``n_jobs``)
        trains once per fold, as ``Pipeline(memory=...)`` fits a transformer once. Only an
        integer or a ``RandomState`` ``random_state`` can hit the cache (None draws new seeds
        each fit). A continued fit (``warm_start``, ``partial_fit``) and a training cut short
        are not cached. None caches nothing. :func:`~skdiffusion.save` stores ``memory=None``.
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the training draws and the noise of ``predict_proba``: the same
        value gives the same probabilities, whatever the rows passed beside a sample.
    verbose : int, default=0
        Print each stage of ``fit``: each training with its number of steps, the training
        loss every 50 optimizer steps (as ``MLPClassifier`` does) with the time elapsed and
        an estimate of the time left, and the choice of the trials' range and scale; and
        the rows scored by long predictions. With scikit-learn >= 1.9, ``set_callbacks``
        (e.g. ``ProgressBar()``) reports the training to callbacks as well; see the
        :ref:`User Guide <user_guide>`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    class_prior_ : ndarray of shape (n_classes,)
        Prior probability of each class, from ``priors`` or the training frequencies.
    class_count_ : ndarray of shape (n_classes,)
        Number of training samples of each class (their summed weights with
        ``sample_weight`` or ``class_weight``): of the last ``fit``, plus those of every
        :meth:`partial_fit` since.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the features seen during ``fit``, when ``X`` has string column names.
    is_categorical_ : ndarray of shape (`n_features_in_`,), dtype bool
        Which features are categorical (see ``categorical_features``).
    categories_ : list of ndarray
        The sorted categories seen in ``fit`` for each categorical feature, in column order.
    category_count_ : list of ndarray of shape (n_classes, n_categories)
        Number (or summed weight) of training samples of each class in each category of
        each categorical feature: the counts behind ``p(x_cat | c)``.
    network_categories_ : list of ndarray of shape (n_categories,), dtype bool
        For each categorical feature, the categories that the denoiser has a one-hot
        input for: those of at least 40 (weighted) training rows in the ``fit`` that built
        it, or all of ``categories_`` when the first :meth:`partial_fit` built it (a
        ``warm_start`` fit keeps them); none of a column where these are more than 16.
        The denoiser's input is the numeric features, then these one-hot inputs; any
        other category conditions it as an unseen one.
    value_steps_ : ndarray of shape (n_features,)
        The step of each feature's values that training dequantized (see ``dequantize``);
        0 for the features it did not, categorical ones among them. A ``warm_start`` fit
        and later :meth:`partial_fit` calls keep those of the fit that built the network.
    scaler_ : StandardScaler
        The standardisation applied to the features before the diffusion; the identity
        (neither centring nor scaling) with ``standardize=False``.
    alphas_cumprod_ : ndarray of shape (n_diffusion_steps,)
        ``prod_{s<=t} (1 - beta_s)`` of the noise schedule, float64.
    denoiser_ : torch.nn.Module
        The trained denoiser (a copy of a given instance, even with ``max_iter=0``).
    loss_curve_ : list of float
        Training loss at each optimizer step of the network kept: a refit's steps, or
        the first training's followed by the tuning's.
    validation_scores_ : list of float or None
        Held-out denoising loss at each check, with ``early_stopping``.
    best_loss_ : float
        Best smoothed training loss, or best held-out loss with ``early_stopping``.
    n_iter_ : int
        Number of optimizer steps of the network kept (see ``loss_curve_``), over all
        fits with ``warm_start``.
    noise_seed_ : int
        Seed of the noise shared by the trials of ``predict_proba``.
    timestep_range_ : tuple of two floats
        The range of the trials' timesteps, as fractions of ``n_diffusion_steps``.
    scale_ : float
        The factor that turns a mean error into a log-likelihood (see above).
    category_weight_ : float
        The weight of the categories' log-likelihood ``log p(x_cat | c)`` in Bayes' rule,
        fitted with ``scale_`` on the held-out samples (1 without categorical columns or
        held-out samples).
    discriminative_ : bool
        Whether the network kept was ever tuned with the discriminative term (see
        ``discriminative``): False for a network that no tuning had it, and still True
        after a ``warm_start`` fit continues one that did.

    See Also
    --------
    sklearn.naive_bayes.GaussianNB : Generative classifier with Gaussian class densities.
    sklearn.neural_network.MLPClassifier : Discriminative neural-network classifier.

    References
    ----------
    .. [1] A. C. Li, M. Prabhudesai, S. Duggal, E. Brown, D. Pathak, "Your Diffusion Model
       is Secretly a Zero-Shot Classifier", ICCV 2023, arXiv:2303.16203.
    .. [2] K. Clark, P. Jaini, "Text-to-Image Diffusion Models are Zero-Shot
       Classifiers", NeurIPS 2023, arXiv:2303.15233.
    .. [3] J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic Models",
       NeurIPS 2020, arXiv:2006.11239.

    Examples
    --------
    >>> from skdiffusion import DiffusionClassifier
    >>> from skdiffusion.datasets import make_spirals
    >>> X, y = make_spirals(n_samples=400, random_state=0)
    >>> clf = DiffusionClassifier(max_iter=300, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> X_new, y_new = clf.sample(5, y=1, random_state=0)
    >>> X_new.shape, y_new.tolist()
    ((5, 2), [1, 1, 1, 1, 1])
    """

    # The HTML repr (Jupyter, the docs' gallery) links to this class's API page: docs/conf.py's
    # html_baseurl, then the page docs/api.rst generates (checked by tests/test_docs_link.py).
    _doc_link_module = "skdiffusion"
    _doc_link_template = (
        "https://skdiffusion.readthedocs.io/en/latest/gen_modules/{estimator_module}.{estimator_name}.html"
    )

    _parameter_constraints = {
        "denoiser": [None, callable],
        "categorical_features": ["array-like", StrOptions({"from_dtype"}), None],
        "image_shape": [None, tuple],
        "n_trials": [Interval(Integral, 1, MAX_TRIALS, closed="both")],
        "pruning": [None, StrOptions({"t-test"}), tuple, list],
        "timestep_range": [StrOptions({"auto"}), tuple],
        "max_iter": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "priors": ["array-like", None],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "noise_schedule": [StrOptions(set(BETA_SCHEDULES)), "array-like"],
        "n_diffusion_steps": [Interval(Integral, 2, MAX_DIFFUSION_STEPS, closed="both")],
        "standardize": ["boolean"],
        "dequantize": [StrOptions({"auto"}), "boolean"],
        "loss": [StrOptions(set(LOSSES))],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither"), StrOptions({"auto"}), None],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
        "refit": ["boolean", StrOptions({"auto"})],
        "discriminative": ["boolean", StrOptions({"auto"})],
        "device": [str, torch.device],
        "n_jobs": [Interval(Integral, None, -1, closed="right"), Interval(Integral, 1, None, closed="left"), None],
        "memory": [None, str, HasMethods(["cache"])],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        denoiser=None,
        *,
        categorical_features="from_dtype",
        image_shape=None,
        n_trials=64,
        pruning="t-test",
        timestep_range="auto",
        max_iter="auto",
        batch_size=256,
        learning_rate="auto",
        weight_decay=0.0,
        priors=None,
        class_weight=None,
        noise_schedule="linear",
        n_diffusion_steps=1000,
        standardize=True,
        dequantize="auto",
        loss="l2",
        early_stopping=False,
        validation_fraction="auto",
        tol=1e-2,
        n_iter_no_change=10,
        warm_start=False,
        refit="auto",
        discriminative="auto",
        device="cpu",
        n_jobs=None,
        memory=None,
        random_state=None,
        verbose=0,
    ):
        self.denoiser = denoiser
        self.categorical_features = categorical_features
        self.image_shape = image_shape
        self.n_trials = n_trials
        self.pruning = pruning
        self.timestep_range = timestep_range
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.priors = priors
        self.class_weight = class_weight
        self.noise_schedule = noise_schedule
        self.n_diffusion_steps = n_diffusion_steps
        self.standardize = standardize
        self.dequantize = dequantize
        self.loss = loss
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.refit = refit
        self.discriminative = discriminative
        self.device = device
        self.n_jobs = n_jobs
        self.memory = memory
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the conditional denoiser on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training samples.
        y : array-like of shape (n_samples,)
            Class labels; at least two classes.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample, counted as that many repeats of it: in the
            standardisation, the minibatches (a row is drawn in proportion to its weight),
            the class priors, early stopping and the choice of the trials' range and scale.
            Rows of weight 0 are removed. None: all weigh 1. Multiplied by ``class_weight``.

        Returns
        -------
        self : DiffusionClassifier
            The fitted classifier.

        Notes
        -----
        A fit that raises (bad data, a broken denoiser, a diverging training, an interrupt
        outside the training loop) leaves the estimator as it was before the call. An
        interrupt (Ctrl-C) during the training loop stops it, with a warning, and keeps the
        model trained so far, or, during a refit, the network trained before it; a refit
        or tuning that diverges keeps that network too, with a warning.
        """
        previous = self._fitted_model() if self.warm_start else None
        return self._fit(X, y, previous, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train the conditional denoiser on one batch of ``(X, y)``, for out-of-core learning.

        Each call trains for ``ceil(n_train / batch_size)`` optimizer steps (one epoch's
        worth, as :meth:`sklearn.neural_network.MLPClassifier.partial_fit`), on minibatches
        drawn from the batch's rows as ``fit`` draws them, at the constant rate
        ``learning_rate``, Adam's moments carried over from the previous call. Unlike
        ``fit``, a call neither anneals the rate, stops early, nor warns about convergence:
        how long to train is the caller's choice. ``max_iter`` and ``early_stopping`` are
        not used.

        The first call (on an unfitted model) builds the denoiser, fits the
        standardisation of the features to its ``X`` and keeps it fixed after: moving it
        would shift the inputs of a network trained on the earlier batches. So the first
        batch should be a fair sample of the data (shuffle data sorted by class or time).
        The class priors are the class frequencies of all the batches seen, counted in
        ``class_count_``, unless ``priors`` is given. Every call holds out
        ``validation_fraction`` of its rows (0.1 for "auto": a call never refits;
        stratified; they are not trained on) to refit
        ``timestep_range_`` and ``scale_`` to the network as it now is, as ``fit`` does;
        with ``validation_fraction=None`` all rows are trained on and these take their
        defaults. After ``fit``, ``partial_fit`` continues training the fitted network; a
        later ``fit`` starts afresh, unless ``warm_start``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training samples of this batch.
        y : array-like of shape (n_samples,)
            Their class labels, all among ``classes``.
        classes : array-like of shape (n_classes,), default=None
            All the classes that any batch may hold; at least two. Required on the first
            call, and ignored (if equal to ``classes_``) on later ones.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample of this batch, as in :meth:`fit`; the priors count the
            weights of every batch seen.

        Returns
        -------
        self : DiffusionClassifier
            The classifier, trained further.

        Notes
        -----
        A call that raises leaves the estimator as it was before the call.

        Examples
        --------
        >>> import numpy as np
        >>> from skdiffusion import DiffusionClassifier
        >>> from skdiffusion.datasets import make_spirals
        >>> X, y = make_spirals(n_samples=1000, random_state=0)
        >>> clf = DiffusionClassifier(random_state=0)
        >>> for X_batch, y_batch in zip(np.array_split(X, 4), np.array_split(y, 4)):
        ...     clf = clf.partial_fit(X_batch, y_batch, classes=[0, 1])
        >>> clf.class_count_.tolist(), clf.n_iter_
        ([500, 500], 4)
        """
        previous = self._fitted_model()
        classes = partial_fit_classes(classes, None if previous is None else previous["classes"])
        return self._fit(X, y, previous, classes=classes, sample_weight=sample_weight)

    def _fitted_model(self):
        """Return what a continuing fit starts from (the fitted network and its state), or None if unfitted."""
        if not self.__sklearn_is_fitted__():
            return None
        names = ("denoiser_", "scaler_", "classes_", "class_count_", "alphas_cumprod_", "n_iter_", "is_categorical_")
        names += ("categories_", "category_count_", "network_categories_", "value_steps_")
        return {name.rstrip("_"): getattr(self, name) for name in names} | {"state": self._training_state}

    def _fit(self, X, y, previous, *, classes=None, sample_weight=None):
        """Fit on ``(X, y)``, continuing ``previous`` if given; ``classes`` given: a ``partial_fit`` call.

        Checks, plans and trains, then sets every fitted attribute at once: a fit that raises
        changes none.
        """
        incremental, continuing = classes is not None, previous is not None
        if self.max_iter == 0 and self.denoiser is None and not (incremental or continuing):
            raise ValueError(
                "max_iter=0 trains nothing, for a denoiser trained elsewhere (an nn.Module given as denoiser); "
                "with denoiser=None, fit builds a new network and would classify with its random weights. "
                "Set max_iter to 'auto' or a number of steps."
            )
        rows, y_index, classes, weights, feature_names = self._training_data(X, y, previous, classes, sample_weight)
        device = check_device(self.device)
        added_to = previous if incremental else None  # partial_fit adds its batch's counts to the model's
        class_count, category_count = self._counts(rows, y_index, classes.size, weights, added_to)
        # The categories the network has an input for: chosen by the fit that builds it.
        if continuing:
            read = previous["network_categories"]
        else:
            read = network_categories(category_count, every=incremental)
        sample_shape = self._sample_shape(rows, read)
        check_pruning(self.pruning)
        alphas_cumprod = self._schedule(previous)
        seeds = Seeds.draw(check_random_state(self.random_state))
        prior = class_prior(self.priors, class_count)
        params = self.get_params(deep=False)
        one_hot_of = functools.partial(one_hot, read=read, counts=category_count)
        start = self._start_network(previous, rows, y_index, weights, classes.size, seeds.init, device, one_hot_of)
        scaler, network, build = start
        base = isinstance(network, MLPDenoiser) and bool(network.gaussian_base)
        options = {"continuing": continuing, "incremental": incremental, "gaussian_base": base}
        plan = plan_fit(params, y_index, classes.size, seeds=seeds, **options)
        check_denoiser(network, sample_shape, classes.size, device, trainable=plan.trains)
        x0, mask = denoiser_input(standardise(scaler, rows.numeric), rows, read, category_count)
        if continuing:  # the steps of the fit that built the network: its inputs keep their meaning
            feature_steps = previous["value_steps"]
        else:
            feature_steps = np.zeros(rows.is_categorical.size)
            least_noise = float(np.sqrt(1 - alphas_cumprod[0]))  # the first timestep's
            feature_steps[~rows.is_categorical] = value_steps(rows.numeric, self.dequantize, scaler.scale_, least_noise)
        steps = feature_steps[~rows.is_categorical]
        # log p(x_cat | c): beside the prior, a term of Bayes' rule whose weight fit chooses,
        # on each row's likelihood without its own count.
        category_ll = None
        if rows.categories:
            category_ll = category_log_likelihood(rows.codes, category_count, leave_out=(y_index, weights))
        x0, schedule = x0.reshape(-1, *sample_shape), as_tensor(alphas_cumprod)
        hole_rate = float(np.isnan(rows.numeric).mean())  # rows with holes are trained as they will be met
        widths = dequantization_widths(steps, scaler.scale_, sample_shape)
        data = TrainingData.on(
            device, x0, y_index, weights, mask, schedule, log_prior(prior), category_ll, hole_rate, widths
        )
        state, n_iter = (copy.deepcopy(previous["state"]), previous["n_iter"]) if continuing else (None, 0)
        tasks = FitTasks(self, X, y, trainings=plan.steps + plan.retries + plan.repeats)
        train = run_plan
        if self.memory is not None and not (continuing or incremental):
            train = functools.partial(cached_run_plan, check_memory(self.memory))
        # Training on one torch thread; the trials are chosen on the threads the user's setting allows.
        with one_torch_thread() as torch_threads:
            threads = usable_threads(torch_threads) if self.n_jobs is None else 1
            network, state, trials = train(
                plan, data, network, state, n_iter=n_iter, build=build, tasks=tasks, threads=threads
            )
        self._set_fitted(
            state,
            n_features_in_=rows.numeric.shape[1] + rows.codes.shape[1],
            feature_names_in_=feature_names,
            is_categorical_=rows.is_categorical,
            categories_=rows.categories,
            category_count_=category_count,
            network_categories_=read,
            value_steps_=feature_steps,
            classes_=classes,
            class_count_=class_count,
            class_prior_=prior,
            scaler_=scaler,
            alphas_cumprod_=alphas_cumprod,
            noise_seed_=seeds.noise,
            denoiser_=network,
            timestep_range_=trials.timestep_range,
            scale_=trials.scale,
            category_weight_=trials.category_weight,
            discriminative_=state.discriminative,
        )
        if plan.trains and not (incremental or state.converged or state.interrupted):
            # stacklevel: the caller of fit (_fit, fit, _fit_context)
            warnings.warn(_not_converged(self.max_iter, plan.steps[0], state.fall), ConvergenceWarning, stacklevel=4)
        if incremental and not state.interrupted and self.n_iter_ < MIN_INCREMENTAL_STEPS:
            warnings.warn(
                f"DiffusionClassifier: the network has trained {self.n_iter_} optimizer steps in all, "
                f"fewer than the {MIN_INCREMENTAL_STEPS} below which partial_fit leaves it well short of a fit; "
                "each call trains one pass over its batch (ceil(n_rows / batch_size) steps): call partial_fit "
                "on more passes over the data (see the user guide, Out-of-core training).",
                ConvergenceWarning,
                stacklevel=4,  # the caller of partial_fit: _fit, partial_fit, _fit_context
            )
        tasks.end()
        return self

    @staticmethod
    def _counts(rows, y_index, n_classes, weights, previous):
        """Return the (weighted) rows of each class and of each category in each class, plus ``previous``'s if given."""
        class_count = np.bincount(y_index, weights, minlength=n_classes)
        category_count = category_counts(rows.codes, rows.categories, y_index, n_classes, weights)
        if previous is None:
            return class_count, category_count
        category_count = [count + before for count, before in zip(category_count, previous["category_count"])]
        return class_count + previous["class_count"], category_count

    def _start_network(self, previous, rows, y_index, weights, n_classes, seed, device, one_hot_of):
        """Return the scaler, the network a fit starts from, and a function that builds it afresh (for a refit).

        A new fit fits the scaler and builds the network; a continued one trains a copy of
        the fitted network, so that it stays as it is should the fit fail. ``one_hot_of(codes)``
        returns the network's one-hot inputs of category codes (see ``one_hot``).
        """
        if previous is not None:
            return previous["scaler"], copy.deepcopy(previous["denoiser"]).to(device), None
        scaler = StandardScaler(with_mean=self.standardize, with_std=self.standardize)
        with np.errstate(over="ignore", invalid="ignore"):  # standardised reports an overflow
            scaler = center_constant_columns(scaler.fit(rows.numeric, sample_weight=weights), rows.numeric)
        x_standardised = standardised(scaler, rows.numeric)
        if rows.categories:
            x_standardised = np.hstack([x_standardised, one_hot_of(rows.codes)])
        # The numbers are diffused; the one-hot categories after them only condition the network.
        params, n_diffused = self.get_params(deep=False), rows.numeric.shape[1]
        build = network_builder(
            params, x_standardised, y_index, n_classes, n_diffused=n_diffused, seed=seed, device=device
        )
        return scaler, build(), build

    def _training_data(self, X, y, previous, classes, sample_weight):
        """Return the rows (a ``Table``), ``y`` as class indices, the classes, the row weights and the feature names.

        Like ``validate_data``, but a fit that starts afresh records nothing yet: its
        feature count and names are set with the other fitted attributes. Rows of weight
        0 are removed; the weights are None when all are 1.
        """
        is_categorical = self._is_categorical(X, previous)
        X, X_categorical, y, feature_names = check_table(
            self, X, y, reset=previous is None, is_categorical=is_categorical
        )
        y = check_label_types(y)
        check_classification_targets(y)
        if X_categorical is not None:  # dropped beside X: the rows of weight 0
            X_categorical = drop_zero_weights(X_categorical, y, sample_weight)[0]
        n_given = y.shape[0]
        X, y, sample_weight = drop_zero_weights(X, y, sample_weight)
        numeric = np.flatnonzero(~is_categorical) if is_categorical is not None else np.arange(X.shape[1])
        empty = np.flatnonzero(np.isnan(X).all(axis=0))
        if previous is None and empty.size:
            names = ", ".join(column_name(k, feature_names) for k in numeric[empty])
            hold, them = ("hold", "them") if empty.size > 1 else ("holds", "it")
            raise ValueError(f"The numeric {names} of X {hold} no value: every entry is NaN. Drop {them}.")
        if previous is None and self.standardize and (outlying := outlying_columns(X)).size:
            names = ", ".join(column_name(k, feature_names) for k in numeric[outlying])
            warnings.warn(
                f"The standard deviation of the numeric {names} of X is over {OUTLYING_SCALE} times that of "
                "its values between the 1st and 99th percentiles: a few outlying values set its scale, and, "
                "standardised, the others crowd together where the classifier can barely tell them apart. Check "
                "for placeholder codes or errors, or transform the column (a logarithm, for instance).",
                UserWarning,
                stacklevel=5,  # the caller of fit: _training_data, _fit, fit, _fit_context
            )
        categories = None if previous is None else previous["categories"]
        rows = table(X, X_categorical, is_categorical, categories, feature_names)
        incremental = classes is not None
        if classes is None:
            classes, y_index = np.unique(y, return_inverse=True)
        else:
            y_index = class_index(
                y,
                classes,
                lambda unknown: (
                    f"y contains labels {unknown} that are not in classes={classes.tolist()}, "
                    "the classes given to the first call to partial_fit."
                ),
            )
        if classes.size < 2:
            of_weight = " of positive sample_weight (rows of weight 0 are removed)" if y.shape[0] < n_given else ""
            raise ValueError(
                f"DiffusionClassifier needs samples of at least 2 classes in the data, but the data "
                f"contain only one class{of_weight}: {classes.tolist()[0]!r}."
            )
        if previous is not None and not np.array_equal(classes, previous["classes"]):
            raise ValueError(
                f"warm_start=True needs the classes of the previous fit {previous['classes'].tolist()}, "
                f"got {classes.tolist()}."
            )
        weights = row_weights(sample_weight, self.class_weight, classes, y_index, incremental=incremental)
        return rows, y_index, classes, weights, feature_names

    def _is_categorical(self, X, previous):
        """Return the mask of the categorical columns: from the parameter for a new fit, else the fitted one."""
        if previous is not None:
            return previous["is_categorical"]
        try:  # an array or a frame, or a list of rows
            shape = X.shape if hasattr(X, "shape") else np.asarray(X, dtype=object).shape
        except ValueError:  # ragged rows: check_table raises the error
            return None
        if len(shape) != 2:  # not a 2-D table: check_table raises the error
            return None
        return categorical_mask(X, self.categorical_features, shape[1])

    def _sample_shape(self, rows, read):
        """Return the shape of one row for the denoiser (its categories' inputs ``read``), checking ``image_shape``."""
        if self.image_shape is not None and rows.categories:
            raise ValueError("image_shape cannot be used with categorical columns: every feature must be a pixel.")
        return check_sample_shape(self.image_shape, input_width(rows.numeric.shape[1], read))

    def _schedule(self, previous):
        """Return the ``alphas_cumprod`` of the parameters, which a continued fit must share with the fitted model."""
        alphas_cumprod = check_alphas_cumprod(self.noise_schedule, self.n_diffusion_steps)
        if previous is not None and not np.array_equal(alphas_cumprod, previous["alphas_cumprod"]):
            raise ValueError(
                "noise_schedule or n_diffusion_steps changed since the model was fitted: a continued fit "
                "(warm_start=True, partial_fit) trains the fitted network on its own schedule. Set them back, "
                "or fit afresh (warm_start=False)."
            )
        return alphas_cumprod

    def _set_fitted(self, state, **attributes):
        """Set the fitted attributes of a fit that succeeded, those of its training ``state`` among them."""
        history = {
            "_training_state": state,
            "loss_curve_": state.loss_curve,
            "validation_scores_": state.validation_scores if self.early_stopping else None,
            "best_loss_": state.best_loss,
            "n_iter_": len(state.loss_curve),
        }
        if attributes["feature_names_in_"] is None:  # X without column names
            del attributes["feature_names_in_"]
            self.__dict__.pop("feature_names_in_", None)
        vars(self).update(attributes, **history)

    def predict_proba(self, X):
        """Return the probability of each class, by Bayes' rule on the denoising errors.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to classify.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            ``proba[i, c]`` is ``p(classes_[c] | X[i])``; rows sum to one.
        """
        return np.exp(self.predict_log_proba(X))

    def predict_log_proba(self, X):
        """Return the log-probability of each class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to classify.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            ``log p(classes_[c] | X[i])``.
        """
        jll = self._joint_log_likelihood(X)
        # Shifted first: far from the training data, jll reaches 1e13, where subtracting
        # the log-sum-exp itself would lose the third decimal of the log-probabilities.
        shifted = jll - jll.max(axis=1, keepdims=True)
        return shifted - logsumexp(shifted, axis=1, keepdims=True)

    def predict(self, X):
        """Return the most probable class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to classify.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            The class of highest posterior probability.
        """
        # Score first: it raises NotFittedError before classes_ is touched.
        jll = self._joint_log_likelihood(X)
        return self.classes_.take(jll.argmax(axis=1))

    def sample(self, n_samples=1, *, y=None, random_state=None):
        """Generate samples of given classes by ancestral sampling (Ho et al., 2020, Alg. 2).

        Generation walks through every timestep, while a refit, or a fit's tuning, trains
        the timesteps above the chosen ``timestep_range_`` half as often: on data of many
        features this can spoil the samples (see the user guide). A model fitted with
        ``timestep_range=(0, 1)`` trains the timesteps above the lowest tenth more often
        than by default, and none less than half as often.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to generate.
        y : label, array-like of shape (n_samples,) or None, default=None
            The class of every sample (one label), of each sample, or None to draw the
            classes from ``class_prior_``.
        random_state : int, RandomState instance or None, default=None
            Seed of the class draws and of the sampling noise.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
            Generated samples, in the original feature space; the values of a feature
            that training dequantized are rounded to whole multiples of its step
            (``value_steps_``).
        y : ndarray of shape (n_samples,)
            Their classes.
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
        rng = check_random_state(random_state)
        if y is None:
            y_index = rng.choice(self.classes_.size, size=n_samples, p=self.class_prior_)
        else:
            # No cast to classes_.dtype: it would truncate strings and floor floats into labels.
            labels = np.asarray(y)
            labels = np.broadcast_to(labels, (n_samples,)) if labels.ndim == 0 else labels
            if labels.shape != (n_samples,):
                raise ValueError(
                    f"y must be one label or an array of shape (n_samples,) = ({n_samples},), "
                    f"got an array of shape {labels.shape}."
                )
            y_index = class_index(labels, self.classes_)
        device = check_device(self.device)
        generator = torch.Generator().manual_seed(int(rng.randint(np.iinfo(np.int32).max)))
        # Categories first, from their class's frequencies; the numbers given them.
        codes = sample_codes(self.category_count_, y_index, rng)
        n_numeric = int((~self.is_categorical_).sum())
        condition = conditioning(codes, self.network_categories_, self.category_count_, n_numeric, device)
        width = input_width(n_numeric, self.network_categories_)
        with one_torch_thread():
            x0 = ancestral_sample(
                self.denoiser_.to(device),
                torch.as_tensor(y_index, device=device),
                check_sample_shape(self.image_shape, width),
                alphas_cumprod=self.alphas_cumprod_,
                generator=generator,
                condition=condition,
            )
        if not torch.isfinite(x0).all():
            raise ValueError("The denoiser returned non-finite values while sampling; check the denoiser.")
        x0 = x0.reshape(n_samples, width)[:, :n_numeric].cpu().double().numpy()
        # Values of a dequantized column come back on its grid, as the training's were.
        numbers = on_grid(self.scaler_.inverse_transform(x0), self.value_steps_[~self.is_categorical_])
        X_new = columns_of(numbers, codes, self.categories_, self.is_categorical_)
        return X_new, self.classes_.take(y_index)

    def score_samples(self, X):
        """Return an estimate of the log-likelihood ``log p(x)`` of each sample, up to a constant.

        The same Monte Carlo errors as :meth:`predict_proba`, mixed over the classes::

            score_samples(X)[i] = logsumexp_c( log p(c) - scale_ * Error_c(X[i]) )

        ``Error_c`` is the mean denoising error under class ``c``, as defined for
        :class:`DiffusionClassifier`, over the trials class ``c`` was scored on (a class
        dropped early by ``pruning`` barely counts in the sum), so
        ``predict_log_proba(X)`` is exactly these per-class terms minus
        ``score_samples(X)[:, None]``. By the ELBO with uniform weights,
        ``-n_features * Error_c`` estimates ``log p(x | c)`` up to a constant ``C`` shared by
        all samples and classes (the ELBO's constant and the standardisation's Jacobian;
        ``scale_ = n_features`` when ``validation_fraction=None``). The fitted ``scale_``
        tempers it: ``-scale_ * Error_c`` estimates ``(scale_ / n_features) * (log p(x | c) - C)``, an
        increasing function of the class-conditional likelihood, fitted to calibrate the
        class probabilities rather than the density. So the score is an estimate, not a
        bound and not a normalised density: compare scores of one fitted model with each
        other, to rank samples or to flag outliers (low scores), e.g. with a threshold
        taken from held-out scores; scores of different models are not comparable. Where
        training dequantized the features (``value_steps_``), ``p`` is the density of the
        values spread over their cells, read at the cells' centres: the probability of the
        values divided by the cells' volume, ``prod(value_steps_)`` over those features.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Samples to score.

        Returns
        -------
        log_likelihood : ndarray of shape (n_samples,)
            The estimate of ``log p(X[i])`` described above; higher is more likely.

        See Also
        --------
        sklearn.mixture.GaussianMixture.score_samples : The same for a Gaussian mixture.
        """
        return logsumexp(self._joint_log_likelihood(X), axis=1)

    def _joint_log_likelihood(self, X):
        """Return ``log p(c) + log p(x | c)`` up to a constant per row, shape (n, n_classes)."""
        check_is_fitted(self)
        rows, x0, mask = self._denoiser_rows(X)
        device = check_device(self.device)
        sample_shape = check_sample_shape(self.image_shape, x0.shape[1])
        x0 = x0.reshape(-1, *sample_shape)
        bounds = timestep_bounds(self.timestep_range_, self.n_diffusion_steps)
        t, eps = trial_draws(*bounds, self.n_trials, sample_shape, self.noise_seed_)
        pruning = check_pruning(self.pruning)
        score = functools.partial(
            mean_errors,
            self.denoiser_.to(device),
            t=torch.as_tensor(t, device=device),
            eps=eps.to(device),
            n_classes=self.classes_.size,
            alphas_cumprod=as_tensor(self.alphas_cumprod_, device=device),
            loss=self.loss,
            pruning=pruning,
            log_prior=log_prior(self.class_prior_),
            scale=self.scale_,
        )
        n_evaluations = self.n_trials * self.classes_.size
        if n_evaluations > MAX_ROW_EVALUATIONS:
            raise ValueError(
                f"n_trials={self.n_trials} with {self.classes_.size} classes asks for {n_evaluations:,} "
                f"evaluations of every row, more than the {MAX_ROW_EVALUATIONS:,} whose errors predict_proba holds at "
                f"once (64 MiB): lower n_trials to at most {MAX_ROW_EVALUATIONS // self.classes_.size}."
            )
        chunk = chunk_rows(self.n_trials, self.classes_.size)
        # Threads share one GPU to no gain: off the CPU, None scores in this thread.
        n_jobs = 1 if self.n_jobs is None and device.type != "cpu" else self.n_jobs
        pieces = piece_rows(self.denoiser_, self.n_trials, self.classes_.size, pruning)
        errors, _ = run_in_jobs(score, x0, rows=chunk, n_jobs=n_jobs, verbose=self.verbose, mask=mask, min_rows=pieces)
        check_errors(errors)
        categories = category_log_likelihood(rows.codes, self.category_count_) if rows.categories else None
        return bayes_logits(errors, log_prior(self.class_prior_), self.scale_, categories, self.category_weight_)

    def _table(self, X):
        """Return the rows of ``X`` to score, checked against the fitted features and encoded."""
        X, X_categorical, _, _ = check_table(self, X, reset=False, is_categorical=self.is_categorical_)
        return table(X, X_categorical, self.is_categorical_, self.categories_)

    def _denoiser_rows(self, X):
        """Return ``(rows, x0, mask)``: :meth:`_table`'s rows of ``X``, and the denoiser's input and mask for them.

        ``x0`` (n, input width) holds the standardised numbers, then the one-hot categories
        the network reads; ``mask`` its diffused elements, None where every element is.
        """
        rows = self._table(X)
        numbers = standardise(self.scaler_, rows.numeric)
        return (rows, *denoiser_input(numbers, rows, self.network_categories_, self.category_count_))

    def __sklearn_is_fitted__(self):
        # Fitted once a network is trained: a fit that failed part way leaves other attributes.
        return hasattr(self, "denoiser_")

    def __getstate__(self):
        # A copy: BaseEstimator returns the instance's own __dict__, which must stay as it is.
        state = dict(super().__getstate__())
        denoiser = state.get("denoiser_")
        if type(denoiser) is MLPDenoiser:
            # As plain data (its arguments and numpy weights, on the CPU), which skops can
            # store and check, and which loads on a machine without the fit's device.
            weights = {name: value.detach().cpu().numpy().copy() for name, value in denoiser.state_dict().items()}
            state["denoiser_"] = {"MLPDenoiser": mlp_arguments(denoiser), "weights": weights}
        elif denoiser is not None and any(p.device.type != "cpu" for p in denoiser.parameters()):
            state["denoiser_"] = copy.deepcopy(denoiser).to("cpu")
        training = state.get("_training_state")
        if training is not None and training.optimizer_state is not None:  # partial_fit's Adam moments
            moments = {i: {k: v.numpy() for k, v in m.items()} for i, m in training.optimizer_state.items()}
            state["_training_state"] = dataclasses.replace(training, optimizer_state=moments)
        return state

    def __setstate__(self, state):
        state = dict(state)
        denoiser = state.get("denoiser_")
        if isinstance(denoiser, dict):
            weights = {name: torch.as_tensor(value) for name, value in denoiser["weights"].items()}
            state["denoiser_"] = mlp_from_weights(denoiser["MLPDenoiser"], weights)
        training = state.get("_training_state")
        if training is not None and training.optimizer_state is not None:
            moments = {i: {k: torch.as_tensor(v) for k, v in m.items()} for i, m in training.optimizer_state.items()}
            state["_training_state"] = dataclasses.replace(training, optimizer_state=moments)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        return tags
