"""Speed of DiffusionClassifier against what the machine can do, as a user gets it.

Run ``python benchmarks/speed.py``; it prints one table and writes
``benchmarks/results/speed.md`` and ``.json``. Everything is measured in the same run, at
default settings unless a column says otherwise:

- predict_proba's FLOP rate without pruning (the denoiser's FLOPs per (row, trial) counted
  with torch's FlopCounterMode, autograd on, times ``n_trials``) on 4,000 rows, as a
  fraction of the best float32 GEMM rate over the network's layer shapes at 8,192 rows:
  with every core (torch's default thread count: the user's machine), and beside it the
  same with one thread for both; and the time with the default pruning; the same over the
  rate of oneDNN's product on those shapes, which the network itself uses on x86 CPUs other
  than Intel's;
- predict_proba from 16 to 4,000 rows at the defaults, with ``n_jobs=1``, and with the rows
  always split over the threads (the defaults split them only where that pays);
- predict_proba with the default network's scoring calls, which grow with the rows to
  score, against calls of one size (hidden states of 1, 2 and 4 MiB): on 4,000 rows
  without pruning at the defaults and with ``n_jobs=1``, and on 400 rows and one row at
  the defaults;
- busy cores: fit and predict_proba with another process spinning on every core, at the
  default threads against one, alternated: the median, least and greatest of the rounds'
  ratios;
- cost per predicted row with 50 classes against 2 (20 features, no pruning), and the
  default pruning against none at 50 classes, alternated, with the spread of the ratios;
- predict time of the late-class design against the full network per class (digits);
- digits' scoring with the noise taken off before the read-outs (the default) against after;
- threads inside torch: the scoring and training loops with one and two torch threads,
  idle and beside a busy process (why each scoring thread and the training loop run one);
- fit time against MLPClassifier(max_iter=1000) on the spirals split;
- oneDNN's matrix products against torch's ``mm`` (one thread), on the layer shapes of the
  default networks, and the scoring and training loops with oneDNN switched off and on;
- where a scoring loop's time goes (one thread, torch's profiler): the matrix products, the
  SiLUs, the sinusoidal features, the other operations, and the time outside them;
- peak RSS growth of ``predict_proba`` on 1,000,000 rows of 2 features (a fresh process).
"""

import argparse
import contextlib
import copy
import functools
import pickle
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
from _suite import alternated, constants_set, ratio_spread, spinning, split, timed, write_results
from sklearn.datasets import make_classification
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.flop_counter import FlopCounterMode

from skdiffusion import DiffusionClassifier, MLPDenoiser, _denoisers, _scoring
from skdiffusion._fitting import resolved_learning_rate
from skdiffusion._schedule import as_tensor
from skdiffusion._scoring import mean_errors, trial_draws
from skdiffusion._training import train_denoiser, training_timestep_probs

# oneDNN's product wherever this torch and CPU have it, also where MLPDenoiser keeps to
# addmm (Intel CPUs): the kernel rows compare the two.
ONEDNN = _denoisers._onednn_linear()

# Peak RSS of predict_proba on many rows, measured in a fresh process.
RSS_SCRIPT = """
import pickle, resource, sys, time
import numpy as np
clf = pickle.load(open(sys.argv[1], "rb"))
X = np.random.default_rng(0).normal(size=(int(sys.argv[2]), 2))
clf.predict_proba(X[:10])
with open("/proc/self/status") as status:
    before = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
start = time.perf_counter()
proba = clf.predict_proba(X)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(max(peak - before, 0) / 1024, seconds, np.isfinite(proba).all())
"""


def clone_fitted(clf, **params):
    """Return a copy of the fitted ``clf`` with ``params`` changed."""
    return copy.deepcopy(clf).set_params(**params)


def gemm_gflops(shapes, repeats=20, onednn=False):
    """Return the best float32 GEMM rate, GFLOP/s, over the ``(m, k, n)`` products of ``shapes`` at torch's threads.

    torch's ``mm``, each product written into one output tensor (a fresh output per
    product would time the kernel's page faults on new memory too); or with ``onednn``,
    oneDNN's product, which MLPDenoiser uses on x86 CPUs other than Intel's (None where
    this torch or CPU has none).
    """
    kernel = ONEDNN
    if onednn and kernel is None:
        return None
    best = 0.0
    for m, k, n in shapes:
        a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)

        def products(a=a, b=b, out=out):
            for _ in range(repeats):
                if onednn:
                    kernel(a, b.t(), None, "none", [], "")
                else:
                    torch.mm(a, b, out=out)

        products()
        seconds = min(timed(products)[1] for _ in range(3))
        best = max(best, 2 * m * k * n * repeats / seconds / 1e9)
    return best


def layer_shapes(denoiser, rows=8192):
    """Return the ``(rows, in, out)`` shapes of the denoiser's linear layers."""
    return [(rows, m.in_features, m.out_features) for m in denoiser.modules() if isinstance(m, torch.nn.Linear)]


def flops_per_pair(denoiser, n_features, n_classes, rows=256):
    """Return the denoiser's FLOPs to score one (sample, trial) pair under every class.

    Counted on MLPDenoiser's plain path (autograd on): without autograd its residual blocks
    make the same products in place (``addmm_``), which FlopCounterMode does not count.
    """
    x_t = torch.randn(rows, n_features)
    t = torch.randint(1000, (rows,))
    with FlopCounterMode(display=False) as counter, torch.enable_grad():
        if hasattr(denoiser, "forward_all"):
            denoiser.forward_all(x_t, t)
        else:
            for c in range(n_classes):
                denoiser(x_t, t, torch.full((rows,), c))
    return counter.get_total_flops() / rows


def predict_row(name, clf, X, repeats=2):
    """Time predict_proba on ``X`` (defaults, then one thread) and relate it to the GEMM rates; return a record.

    Pruning is switched off for the rates, so that every (sample, trial) pair costs one
    call's FLOPs: they measure how well the hardware is used, not how many calls are saved.
    """
    clf.predict_proba(X[:256])
    default_seconds = min(timed(clf.predict_proba, X)[1] for _ in range(repeats))
    clf = clone_fitted(clf, pruning=None)
    flops = flops_per_pair(clf.denoiser_, clf.n_features_in_, clf.classes_.size) * len(X) * clf.n_trials
    shapes = layer_shapes(clf.denoiser_)[:4]
    record = {"data": name, "rows": len(X), "s_per_1000_rows_default_pruning": default_seconds / len(X) * 1000}
    for label, threads in (("all_cores", torch.get_num_threads()), ("one_thread", 1)):
        with torch_threads(threads):
            clf.predict_proba(X[:256])
            seconds = min(timed(clf.predict_proba, X)[1] for _ in range(repeats))
            gemm, onednn = gemm_gflops(shapes), gemm_gflops(shapes, onednn=True)
        record[label] = {
            "threads": threads,
            "gemm_gflops": gemm,
            "onednn_gflops": onednn,
            "predict_gflops": flops / seconds / 1e9,
            "fraction": flops / seconds / 1e9 / gemm,
            "fraction_of_onednn": None if onednn is None else flops / seconds / 1e9 / onednn,
            "s_per_1000_rows": seconds / len(X) * 1000,
        }
    return record


def small_predict_rows(clfs, sizes=(16, 128, 400, 1000, 2000, 4000), repeats=5):
    """Time predict_proba at the defaults, with ``n_jobs=1`` and on threads whatever the rows, alternated.

    Returns the medians. The defaults give a thread its own rows only where they fill its
    scoring calls (``_scoring.PIECE_CALLS``); "split" sets that to zero, so any rows are
    cut into a piece per thread, to show where that would cost more than one thread.
    """
    record = {}
    for name, (clf, X) in clfs.items():
        X = np.tile(X, (max(sizes) // len(X) + 1, 1))
        default = clone_fitted(clf)
        variants = [("default", default), ("one thread", clone_fitted(clf, n_jobs=1)), ("split", default)]
        for rows in sizes:
            calls, warm = (
                {label: functools.partial(_predict_proba, model, X[:n], label == "split") for label, model in variants}
                for n in (rows, 2)
            )
            seconds = alternated(calls, repeats, warm)
            record[f"{name}, {rows:,} rows"] = {label: float(np.median(v)) for label, v in seconds.items()}
    return record


def call_size_rows(clfs, budgets=(1, 2, 4), rounds=5):
    """Time predict_proba with scoring calls of other sizes, alternated; return the medians.

    The default network's calls keep their hidden state within a budget
    (``_denoisers.CALL_STATE_FLOATS``, 1 MiB) and hold at most ``MAX_CALL_ROWS`` rows, and
    grow up to ``CALL_GROWTH`` times where the pairs to score fill enough calls of the
    larger size (see ``MLPDenoiser.scoring_rows``). Against it, calls of one size: each
    budget of ``budgets`` (MiB), scaling both, without growth (see :func:`_with_budget`).
    Timed without pruning on 4,000 rows at the defaults (a thread per core) and with
    ``n_jobs=1``; and at the defaults, with the default pruning, on 400 rows and on one
    row, which pay for the padding of larger calls.
    """
    record = {}
    sizes = {"default (growing)": None, **{f"{mib} MiB": mib for mib in budgets}}
    for name, (clf, X) in clfs.items():
        X = np.tile(X, (4000 // len(X) + 1, 1))[:4000]
        default, one = clone_fitted(clf, pruning=None), clone_fitted(clf, pruning=None, n_jobs=1)
        timings = {"default": (default, X), "n_jobs=1": (one, X), "400 rows": (clf, X[:400]), "one row": (clf, X[:1])}
        calls, warm = {}, {}
        for size, mib in sizes.items():
            for label, (model, rows) in timings.items():
                calls[size, label] = functools.partial(_with_budget, mib, model.predict_proba, rows)
                warm[size, label] = functools.partial(_with_budget, mib, model.predict_proba, X[:64])
        seconds = alternated(calls, rounds, warm)
        for size, mib in sizes.items():
            denoiser = clf.denoiser_
            least = _with_budget(mib, denoiser.scoring_rows, 0)
            most = _with_budget(mib, denoiser.scoring_rows, 1 << 40)
            medians = {label: float(np.median(seconds[size, label])) for label in timings}
            record[f"{name}, {size}"] = {"rows_per_call": [least, most], **medians}
    return record


def _with_budget(mib, fn, *args):
    """Return ``fn(*args)`` with the default network's scoring calls of one size, for ``mib`` MiB of hidden state.

    The budget and the most rows of a call scale together, and the calls do not grow, for
    that call only; ``mib`` None: the defaults.
    """
    if mib is None:
        return fn(*args)
    scale = (mib << 18) / _denoisers.CALL_STATE_FLOATS
    budget = {"CALL_STATE_FLOATS": mib << 18, "MAX_CALL_ROWS": int(_denoisers.MAX_CALL_ROWS * scale), "CALL_GROWTH": 1}
    with constants_set(_denoisers, budget):
        return fn(*args)


def _predict_proba(clf, X, split_any=False):
    """Return ``clf.predict_proba(X)``; ``split_any``: with any rows cut into a piece per thread.

    (See :func:`small_predict_rows`.)
    """
    with constants_set(_scoring, {"PIECE_CALLS": 0} if split_any else {}):
        return clf.predict_proba(X)


def busy_row(X_train, y_train, X_predict, rounds=5):
    """Fit and predict_proba with a process spinning on every core: default threads against one, alternated.

    Returns the median seconds of each, and the median, least and greatest of the rounds'
    ratios: on a shared core, the scheduler sometimes gives a lone thread a core of its
    own, and a single timing of each can fall either way.
    """
    threads = {"default": torch.get_num_threads(), "one": 1}
    with spinning():
        fit = {label: DiffusionClassifier(random_state=0).fit for label in threads}
        fits = alternated({label: _on_threads(n, fit[label], X_train, y_train) for label, n in threads.items()}, rounds)
        clf = DiffusionClassifier(random_state=0).fit(X_train, y_train)
        clf.predict_proba(X_predict[:256])
        predict = {label: _on_threads(n, clf.predict_proba, X_predict) for label, n in threads.items()}
        predicts = alternated(predict, rounds)
    return {
        "rounds": rounds,
        "fit_s": {label: float(np.median(v)) for label, v in fits.items()},
        "predict_s": {label: float(np.median(v)) for label, v in predicts.items()},
        "fit_ratio": ratio_spread(fits["default"], fits["one"]),
        "predict_ratio": ratio_spread(predicts["default"], predicts["one"]),
    }


@contextlib.contextmanager
def torch_threads(threads):
    """Run the block with ``threads`` torch threads, then restore the setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _on_threads(threads, fn, *args):
    """Return a function that runs ``fn(*args)`` with ``threads`` torch threads (see :func:`torch_threads`)."""

    def call():
        with torch_threads(threads):
            return fn(*args)

    return call


def classes_row(rounds=5):
    """predict_proba on 2,000 rows of 20 features: 50 classes against 2 (no pruning), and pruning at 50.

    Pruning and none alternate, ``rounds`` times each; returns the median seconds, the
    median, least and greatest of the rounds' ratios of pruning to none at 50 classes, and
    the scoring loop of each model on 500 rows (see :func:`kernel_rows`).
    """
    seconds, rounds_s, jobs = {}, {}, {}
    for k in (2, 50):
        X, y = make_classification(
            n_samples=6000, n_features=20, n_informative=12, n_classes=k, n_clusters_per_class=1, random_state=0
        )
        clf = DiffusionClassifier(random_state=0, max_iter=300).fit(X[:4000], y[:4000])
        jobs[f"scoring loop, {k} classes (500 rows)"] = scoring_job(clf, X[4000:4500])
        variants = {pruning: clone_fitted(clf, pruning=pruning) for pruning in (None, "t-test")}
        for variant in variants.values():
            variant.predict_proba(X[4000:4064])
        timings = alternated({p: functools.partial(v.predict_proba, X[4000:]) for p, v in variants.items()}, rounds)
        for pruning, values in timings.items():
            rounds_s[k, pruning] = values
            seconds[f"{k} classes, pruning={pruning}"] = float(np.median(values))
    record = {
        "rounds": rounds,
        "seconds": seconds,
        "classes_ratio": seconds["50 classes, pruning=None"] / seconds["2 classes, pruning=None"],
        "pruning_ratio": ratio_spread(rounds_s[50, "t-test"], rounds_s[50, None]),
    }
    return record, jobs


def scoring_job(clf, X):
    """Return a call of the scoring loop that predict_proba runs (predict_proba fixes one thread)."""
    t, eps = trial_draws(0, 1000, clf.n_trials, (clf.n_features_in_,), 0)
    return functools.partial(
        mean_errors,
        clf.denoiser_,
        torch.as_tensor(clf.scaler_.transform(X), dtype=torch.float32),
        torch.as_tensor(t),
        eps,
        clf.classes_.size,
        alphas_cumprod=as_tensor(clf.alphas_cumprod_),
        loss=clf.loss,
    )


def training_job(clf, X, y, max_iter=300):
    """Return a call of the training loop that fit runs, on a copy of ``clf``'s network."""

    def train():
        train_denoiser(
            copy.deepcopy(clf.denoiser_),
            torch.as_tensor(clf.scaler_.transform(X), dtype=torch.float32),
            torch.as_tensor(np.searchsorted(clf.classes_, y)),
            alphas_cumprod=as_tensor(clf.alphas_cumprod_),
            timestep_probs=training_timestep_probs(len(clf.alphas_cumprod_)),
            max_iter=max_iter,
            batch_size=clf.batch_size,
            learning_rate=resolved_learning_rate(clf.get_params()),
            loss=clf.loss,
            generator=torch.Generator().manual_seed(0),
            tol=clf.tol,
            n_iter_no_change=clf.n_iter_no_change,
        )

    return train


def thread_rows(jobs):
    """Time each job with one and two torch threads, on an idle machine and beside a busy process."""
    seconds = {name: {} for name in jobs}
    for load in ("idle", "busy"):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load == "busy" else None
        try:
            for n_threads in (1, 2):
                with torch_threads(n_threads):
                    for name, job in jobs.items():
                        job()
                        seconds[name][f"{n_threads} thread(s), {load}"] = min(timed(job)[1] for _ in range(3))
        finally:
            if busy is not None:
                busy.kill()
    return seconds


def fit_row(repeats=3):
    """Fit DiffusionClassifier and MLPClassifier alternately on the spirals split; the medians."""
    X_train, X_test, y_train, y_test = split("spirals")
    mlp = make_pipeline(StandardScaler(), MLPClassifier(max_iter=1000, random_state=0))
    clf = DiffusionClassifier(random_state=0)
    seconds = alternated(
        {
            "mlp": functools.partial(mlp.fit, X_train, y_train),
            "diffusion": functools.partial(clf.fit, X_train, y_train),
        },
        repeats,
    )
    diffusion_s, mlp_s = np.median(seconds["diffusion"]), np.median(seconds["mlp"])
    return {
        "diffusion_fit_s": float(diffusion_s),
        "mlp_fit_s": float(mlp_s),
        "ratio": float(diffusion_s / mlp_s),
        "diffusion_accuracy": clf.score(X_test, y_test),
        "mlp_accuracy": mlp.score(X_test, y_test),
    }, clf


def conditioning_row(seeds=(0, 1, 2)):
    """Digits: the default late-class network against the full network run per class (mean of seeds).

    Both train with the default network's rate: "auto" would give the full network, a
    denoiser passed in, the lower rate of other networks.
    """
    X_train, X_test, y_train, y_test = split("digits")
    rows = {}
    for label, denoiser in [
        ("late class (default)", None),
        ("full network per class", functools.partial(MLPDenoiser, class_blocks=3)),
    ]:
        accuracy, seconds = [], []
        for seed in seeds:
            clf = DiffusionClassifier(denoiser=denoiser, learning_rate=1e-2, random_state=seed)
            clf.fit(X_train, y_train)
            seconds.append(min(timed(clf.predict_proba, X_test)[1] for _ in range(2)))
            accuracy.append(clf.score(X_test, y_test))
        rows[label] = {"accuracy": float(np.mean(accuracy)), "predict_s": float(np.mean(seconds))}
    return rows


def noise_off_row(clf, X, rounds=5):
    """Digits' predict_proba on 4,000 rows without pruning, the noise taken off before the read-outs or after.

    Where the read-out alone tells the classes apart, scoring takes each row's noise off
    its class-independent prediction and then adds every class's read-out (the default,
    see ``_denoisers.scoring_passes``); against it, the noise, copied for each class, taken
    off every class's prediction. Alternated; the medians of ``rounds``, their ratio's
    spread, and the largest difference between the two probabilities.
    """
    X = np.tile(X, (4000 // len(X) + 1, 1))[:4000]
    model = clone_fitted(clf, pruning=None)
    passes = _scoring.scoring_passes

    def after(denoiser, timesteps):  # no difference_all: forward_all, then the noise off each class
        return (*passes(denoiser, timesteps)[:2], None)

    def predict(off_first):
        with constants_set(_scoring, {} if off_first else {"scoring_passes": after}):
            return model.predict_proba(X)

    calls = {"before (default)": functools.partial(predict, True), "after": functools.partial(predict, False)}
    seconds = alternated(calls, rounds, calls)  # each warmed by a call of its own before it is timed
    return {
        "seconds": {label: float(np.median(s)) for label, s in seconds.items()},
        "ratio": ratio_spread(seconds["before (default)"], seconds["after"]),
        "rounds": rounds,
        "largest_difference": float(np.abs(predict(True) - predict(False)).max()),
    }


# (rows, in, out) of products the default networks make: spirals' scoring calls, digits'
# (512 rows of 256 units), a training step of 256 rows at widths 128 and 256, and the
# class head of 50 classes of 20 features (64 rows x 50 classes).
KERNEL_SHAPES = [(2016, 66, 64), (2016, 64, 64), (512, 256, 256), (256, 128, 128), (256, 256, 256), (3200, 256, 20)]


def kernel_rows(jobs, repeats=20):
    """One thread: GFLOP/s of torch's ``mm`` and of oneDNN's product, and each job's seconds without and with oneDNN.

    The jobs alternate between the two settings, best of 3 each.
    """
    kernel, setting_of_the_host = ONEDNN, _denoisers._ONEDNN_LINEAR
    with torch_threads(1):
        try:
            products = {}
            for shape in KERNEL_SHAPES:
                rates = {"mm": gemm_gflops([shape], repeats), "oneDNN": gemm_gflops([shape], repeats, onednn=True)}
                products["{} x {} x {}".format(*shape)] = {k: v for k, v in rates.items() if v is not None}
            seconds = {name: {"mm": [], "oneDNN": []} for name in jobs}
            for _ in range(3 if kernel is not None else 0):
                for label, setting in (("mm", None), ("oneDNN", kernel)):
                    _denoisers._ONEDNN_LINEAR = setting
                    for name, job in jobs.items():
                        job()
                        seconds[name][label].append(timed(job)[1])
        finally:
            _denoisers._ONEDNN_LINEAR = setting_of_the_host
    return {"products": products, "jobs": {k: {s: min(v) for s, v in t.items() if v} for k, t in seconds.items()}}


# The operations of a scoring loop by kind, as torch's profiler names them (see anatomy_rows).
OPERATION_KINDS = {
    "matrix products": ("mkldnn::_linear_pointwise", "aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm"),
    "SiLU": ("aten::silu", "aten::silu_"),
    "sinusoidal features": ("aten::sin", "aten::cos"),
}


def anatomy_rows(jobs):
    """One thread: each job's share of time in each kind of operation (:data:`OPERATION_KINDS`), and outside them.

    Torch's profiler records each operation's own time; "other operations" are the rest
    of the operations, "outside the operations" the job's time between them (Python, and
    the profiler's own bookkeeping, which makes it larger than in a job that is not
    profiled). Also the job's seconds without the profiler, best of 3.
    """
    rows = {}
    with torch_threads(1):
        for name, job in jobs.items():
            job()
            seconds = min(timed(job)[1] for _ in range(3))
            with torch.profiler.profile() as profiler:
                profiled = timed(job)[1]
            own = dict.fromkeys([*OPERATION_KINDS, "other operations"], 0.0)
            for event in profiler.key_averages():
                kind = next((k for k, names in OPERATION_KINDS.items() if event.key in names), "other operations")
                own[kind] += event.self_cpu_time_total / 1e6
            shares = {kind: value / profiled for kind, value in own.items()}
            rows[name] = {"seconds": seconds, "shares": {**shares, "outside the operations": 1 - sum(shares.values())}}
    return rows


def rss_row(clf, n_rows):
    """Peak RSS growth (MB) and seconds of predict_proba on ``n_rows`` rows, in a fresh process."""
    with tempfile.NamedTemporaryFile(suffix=".pkl") as f:
        pickle.dump(clf, f)
        f.flush()
        out = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, f.name, str(n_rows)], capture_output=True, text=True, check=True
        )
    growth_mb, seconds, finite = out.stdout.split()
    return {"rows": n_rows, "peak_rss_growth_mb": float(growth_mb), "seconds": float(seconds), "finite": finite}


def _spread(spread):
    """Format a :func:`_suite.ratio_spread` as "median (least to greatest)"."""
    return f"{spread['median']:.2f} ({spread['least']:.2f} to {spread['greatest']:.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rss-rows", type=int, default=1_000_000)
    parser.add_argument("--output", default="speed")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    X_spirals, X_spirals_test, y_spirals, _ = split("spirals")
    X_digits, X_digits_test, y_digits, _ = split("digits")
    fit, spirals_clf = fit_row()
    digits_clf = DiffusionClassifier(random_state=0).fit(X_digits, y_digits)
    predict = [
        predict_row("spirals", spirals_clf, np.tile(X_spirals, (4000 // len(X_spirals) + 1, 1))[:4000]),
        predict_row("digits", digits_clf, np.tile(X_digits, (4000 // len(X_digits) + 1, 1))[:4000]),
    ]
    small = small_predict_rows({"spirals": (spirals_clf, X_spirals), "digits": (digits_clf, X_digits)})
    call_sizes = call_size_rows({"spirals": (spirals_clf, X_spirals), "digits": (digits_clf, X_digits)})
    busy = busy_row(X_spirals, y_spirals, np.tile(X_spirals, (3, 1)))
    classes, class_jobs = classes_row()
    conditioning = conditioning_row()
    noise_off = noise_off_row(digits_clf, X_digits)
    threads = thread_rows(
        {
            "scoring loop, spirals (600 rows)": scoring_job(spirals_clf, X_spirals_test),
            "scoring loop, digits (540 rows)": scoring_job(digits_clf, X_digits_test),
            "training loop, spirals (300 steps)": training_job(spirals_clf, X_spirals, y_spirals),
            "training loop, digits (300 steps)": training_job(digits_clf, X_digits, y_digits),
        }
    )
    kernels = kernel_rows(
        {
            "scoring loop, spirals (600 rows)": scoring_job(spirals_clf, X_spirals_test),
            "scoring loop, digits (540 rows)": scoring_job(digits_clf, X_digits_test),
            "training loop, spirals (300 steps)": training_job(spirals_clf, X_spirals, y_spirals),
            "training loop, digits (300 steps)": training_job(digits_clf, X_digits, y_digits),
            **class_jobs,
        }
    )
    anatomy = anatomy_rows(
        {
            "scoring loop, spirals (600 rows)": scoring_job(spirals_clf, X_spirals_test),
            "scoring loop, digits (540 rows)": scoring_job(digits_clf, X_digits_test),
        }
    )
    rss = rss_row(spirals_clf, args.rss_rows)

    cores = predict[0]["all_cores"]["threads"]
    lines = [
        f"torch {torch.__version__}; {cores} threads by default (the machine is shared: compare numbers",
        "within one table, not across runs)",
        "",
        "predict_proba without pruning, 4,000 rows: its FLOP rate over the best GEMM rate of the",
        "network's layer shapes at 8,192 rows, with every core (defaults) and with one thread",
        "",
        "| data | GEMM GFLOP/s, all cores | predict GFLOP/s | fraction, all cores | GEMM GFLOP/s, one thread "
        "| predict GFLOP/s | fraction, one thread | s per 1,000 rows | with default pruning |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in predict:
        every, one = r["all_cores"], r["one_thread"]
        lines.append(
            f"| {r['data']} | {every['gemm_gflops']:.1f} | {every['predict_gflops']:.1f} | {every['fraction']:.2f} "
            f"| {one['gemm_gflops']:.1f} | {one['predict_gflops']:.1f} | {one['fraction']:.2f} "
            f"| {every['s_per_1000_rows']:.3f} | {r['s_per_1000_rows_default_pruning']:.3f} |"
        )
    lines += [
        "",
        "the same predictions over oneDNN's rate on those shapes (the network's products, except on Intel CPUs):",
        "",
        "| data | oneDNN GFLOP/s, all cores | fraction, all cores | oneDNN GFLOP/s, one thread "
        "| fraction, one thread |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['data']} | {r['all_cores']['onednn_gflops']:.1f} | {r['all_cores']['fraction_of_onednn']:.2f} "
        f"| {r['one_thread']['onednn_gflops']:.1f} | {r['one_thread']['fraction_of_onednn']:.2f} |"
        for r in predict
        if r["all_cores"]["onednn_gflops"] is not None
    ]
    lines += [
        "",
        "predict_proba with the default pruning, seconds (medians of 5, alternated): the defaults, n_jobs=1, and",
        "every prediction split over the threads (what the defaults do only from a size on)",
        "",
        "| data, rows | default | n_jobs=1 | split | default / n_jobs=1 | split / n_jobs=1 |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {v['default']:.4f} | {v['one thread']:.4f} | {v['split']:.4f} | "
        f"{v['default'] / v['one thread']:.2f} | {v['split'] / v['one thread']:.2f} |"
        for k, v in small.items()
    ]
    lines += [
        "",
        "predict_proba with scoring calls of other sizes, seconds (medians of 5, alternated): the default",
        "network's calls keep their hidden state within 1 MiB (at most 2,016 rows), and grow up to 4 times where",
        "the pairs to score fill 8 calls of the larger size; against calls of one size, of 1, 2 and 4 MiB.",
        "4,000 rows without pruning at the defaults (a thread per core) and with n_jobs=1; 400 rows and one row",
        "at the defaults",
        "",
        "| data, calls | rows per call | 4,000 rows, default | n_jobs=1 | n_jobs=1 / default | 400 rows | one row |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {' to '.join(f'{n:,}' for n in sorted(set(v['rows_per_call'])))} | {v['default']:.3f} | "
        f"{v['n_jobs=1']:.3f} | "
        f"{v['n_jobs=1'] / v['default']:.2f} | {v['400 rows']:.4f} | {v['one row']:.4f} |"
        for k, v in call_sizes.items()
    ]
    lines += [
        "",
        f"busy cores (a process spinning on each), default threads / one thread, median (least to greatest) of "
        f"{busy['rounds']} alternated rounds: fit {_spread(busy['fit_ratio'])} ({busy['fit_s']['default']:.2f} s / "
        f"{busy['fit_s']['one']:.2f} s), predict {_spread(busy['predict_ratio'])} "
        f"({busy['predict_s']['default']:.3f} s / {busy['predict_s']['one']:.3f} s)",
        f"classes: 50 vs 2 per predicted row, no pruning: {classes['classes_ratio']:.1f}x; default pruning / none "
        f"at 50 classes: {_spread(classes['pruning_ratio'])} (median, least to greatest, of {classes['rounds']} "
        "alternated rounds)",
        "",
        "| seconds, 2,000 rows of 20 features | " + " | ".join(classes["seconds"]) + " |",
        "|---" * (len(classes["seconds"]) + 1) + "|",
        "| predict_proba (medians) | " + " | ".join(f"{v:.3f}" for v in classes["seconds"].values()) + " |",
    ]
    lines += ["", "| digits denoiser (mean of 3 seeds) | accuracy | predict s (540 rows) |", "|---|---|---|"]
    lines += [f"| {k} | {v['accuracy']:.3f} | {v['predict_s']:.2f} |" for k, v in conditioning.items()]
    late, full = conditioning.values()
    lines.append(f"\nlate-class speed-up on digits: {full['predict_s'] / late['predict_s']:.2f}x")
    before, after = noise_off["seconds"].values()
    lines.append(
        "\ndigits, 4,000 rows without pruning: the noise taken off before the read-outs (default) / after them, "
        f"median (least to greatest) of {noise_off['rounds']} alternated rounds: {_spread(noise_off['ratio'])} "
        f"({before:.3f} s / {after:.3f} s; probabilities differ by at most {noise_off['largest_difference']:.1e})"
    )
    columns = list(next(iter(threads.values())))
    lines += [
        "",
        "torch threads inside one loop (what each scoring thread and the training loop avoid):",
        "",
        "| seconds | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    lines += [f"| {k} | " + " | ".join(f"{v[c]:.3f}" for c in columns) + " |" for k, v in threads.items()]
    lines += [
        "",
        "matrix products, one thread, GFLOP/s: torch's mm against oneDNN's (which MLPDenoiser uses without",
        "autograd on x86 CPUs other than Intel's, for products of at least 2**21 multiply-adds)",
        "",
        "| rows x in x out | mm | oneDNN |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v['mm']:.1f} | {v.get('oneDNN', float('nan')):.1f} |" for k, v in kernels["products"].items()]
    lines += ["", "| seconds, one thread | mm only | oneDNN | ratio |", "|---|---|---|---|"]
    lines += [
        f"| {k} | {v['mm']:.3f} | {v['oneDNN']:.3f} | {v['oneDNN'] / v['mm']:.2f} |"
        for k, v in kernels["jobs"].items()
        if "oneDNN" in v
    ]
    kinds = list(next(iter(anatomy.values()))["shares"])
    lines += [
        "",
        "where a scoring loop's time goes, one thread (torch's profiler; its own bookkeeping falls outside the",
        "operations, which it makes larger than in a loop that is not profiled): shares of the loop's time",
        "",
        "| loop | seconds, not profiled | " + " | ".join(kinds) + " |",
        "|---" * (len(kinds) + 2) + "|",
    ]
    lines += [
        f"| {k} | {v['seconds']:.3f} | " + " | ".join(f"{v['shares'][kind]:.2f}" for kind in kinds) + " |"
        for k, v in anatomy.items()
    ]
    lines += [
        "",
        f"fit on spirals: DiffusionClassifier {fit['diffusion_fit_s']:.2f} s (accuracy "
        f"{fit['diffusion_accuracy']:.3f}), MLPClassifier {fit['mlp_fit_s']:.2f} s (accuracy "
        f"{fit['mlp_accuracy']:.3f}), ratio {fit['ratio']:.2f} (medians of 3, alternated)",
        f"predict_proba on {rss['rows']:,} rows x 2 features: {rss['seconds']:.1f} s, peak RSS growth "
        f"{rss['peak_rss_growth_mb']:.0f} MB, all finite: {rss['finite']}",
    ]
    table = "\n".join(lines)
    print(table)
    write_results(
        args.output,
        table,
        {
            "predict": predict,
            "small_predictions": small,
            "call_sizes": call_sizes,
            "busy": busy,
            "classes": classes,
            "conditioning": conditioning,
            "noise_off": noise_off,
            "threads": threads,
            "fit": fit,
            "kernels": kernels,
            "anatomy": anatomy,
            "rss": rss,
        },
    )


if __name__ == "__main__":
    main()
