"""Speed of DiffusionClassifier against what the machine can do.

Run ``python benchmarks/speed.py``; it prints one table and writes
``benchmarks/results/speed.md`` and ``.json``. Everything is measured in the same run:

- the float32 GEMM rate, one thread, of the default denoiser's hidden layer shape, and of
  all its layers' shapes in one scoring call (each product timed alone; their FLOPs over
  their summed time);
- the FLOP rate ``predict_proba`` reaches without pruning (the denoiser's FLOPs per call
  counted with torch's FlopCounterMode) and its fraction of each GEMM rate, and the time
  with the default pruning;
- denoiser evaluations (sample x trial x class) per second, seconds per 1,000 rows;
- predict time of the late-class design against the full network per class (digits);
- threads: the scoring and training loops with one and two torch threads, idle and beside a
  busy process (fit and predict_proba run on one; this table is why);
- fit time against MLPClassifier(max_iter=1000) on the spirals split;
- peak RSS growth of ``predict_proba`` on 1,000,000 rows of 2 features (a fresh process).
"""

import argparse
import copy
import functools
import pickle
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch
from _suite import split, timed, write_results
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch.utils.flop_counter import FlopCounterMode

from skdiffusion import DiffusionClassifier, MLPDenoiser
from skdiffusion._fitting import resolved_learning_rate
from skdiffusion._schedule import as_tensor
from skdiffusion._scoring import call_rows, mean_errors, trial_draws
from skdiffusion._training import train_denoiser, training_timestep_probs

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


def gemm_gflops(m, k, n, repeats=50):
    """Return the float32 GEMM rate, GFLOP/s, of an (m x k) @ (k x n) product (best of 3 timings).

    The product is written into one output tensor: a fresh output per product would time
    the kernel's page faults on new memory too (this halved the rate measured at 512 rows).
    """
    a, b, out = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)

    def products():
        for _ in range(repeats):
            torch.mm(a, b, out=out)

    products()
    seconds = min(timed(products)[1] for _ in range(3))
    return 2 * m * k * n * repeats / seconds / 1e9


def layer_gemm_gflops(denoiser, n_features, n_classes):
    """Return the float32 GEMM rate, GFLOP/s, of the denoiser's own linear layers in one scoring call.

    Each layer's product, at the shape it has in a scoring call (``call_rows`` rows)
    (the output layer sees every class's rows), is timed alone; the rate is their FLOPs
    over their summed time: what the call would reach if it did nothing but its GEMMs.
    """
    shapes = []
    hooks = [
        module.register_forward_hook(lambda m, args, out: shapes.append((args[0].numel() // m.in_features, m)))
        for module in denoiser.modules()
        if isinstance(module, torch.nn.Linear)
    ]
    rows = call_rows(denoiser, n_classes)
    with torch.enable_grad():  # the plain path, which calls every layer (see flops_per_pair)
        denoiser.forward_all(torch.randn(rows, n_features), torch.randint(1000, (rows,)))
    for hook in hooks:
        hook.remove()
    flops = [2 * m * layer.in_features * layer.out_features for m, layer in shapes]
    seconds = [f / gemm_gflops(m, layer.in_features, layer.out_features) for f, (m, layer) in zip(flops, shapes)]
    return sum(flops) / sum(seconds)


def flops_per_pair(denoiser, n_features, n_classes):
    """Return the denoiser's FLOPs to score one (sample, trial) pair under every class.

    Counted on MLPDenoiser's plain path (autograd on): without autograd its residual blocks
    make the same products in place (``addmm_``), which FlopCounterMode does not count.
    """
    rows = call_rows(denoiser, n_classes)
    x_t = torch.randn(rows, n_features)
    t = torch.randint(1000, (rows,))
    with FlopCounterMode(display=False) as counter, torch.enable_grad():
        if hasattr(denoiser, "forward_all"):
            denoiser.forward_all(x_t, t)
        else:
            for c in range(n_classes):
                denoiser(x_t, t, torch.full((rows,), c))
    return counter.get_total_flops() / rows


def predict_row(name, clf, X, repeats=3):
    """Time predict_proba on ``X`` and relate it to the GEMM rate; return a record.

    Pruning is switched off here, so that every (sample, trial) pair costs one call's
    FLOPs: this row measures how well the hardware is used, not how many calls are saved.
    """
    default_seconds = min(timed(clf.predict_proba, X)[1] for _ in range(repeats))
    clf = clone_fitted(clf, pruning=None)
    clf.predict_proba(X[:10])
    seconds = min(timed(clf.predict_proba, X)[1] for _ in range(repeats))
    n_classes = clf.classes_.size
    hidden = clf.denoiser_.input.out_features
    gemm = gemm_gflops(call_rows(clf.denoiser_, n_classes), hidden, hidden)  # the hidden layers' shape
    layers_gemm = layer_gemm_gflops(clf.denoiser_, clf.n_features_in_, n_classes)  # every layer's shape
    flops = flops_per_pair(clf.denoiser_, clf.n_features_in_, n_classes) * len(X) * clf.n_trials
    return {
        "data": name,
        "rows": len(X),
        "gemm_gflops": gemm,
        "predict_gflops": flops / seconds / 1e9,
        "fraction": flops / seconds / 1e9 / gemm,
        "layers_gemm_gflops": layers_gemm,
        "layers_fraction": flops / seconds / 1e9 / layers_gemm,
        "evaluations_per_s": len(X) * clf.n_trials * n_classes / seconds,
        "s_per_1000_rows": seconds / len(X) * 1000,
        "default_s_per_1000_rows": default_seconds / len(X) * 1000,
    }


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
    previous = torch.get_num_threads()
    for load in ("idle", "busy"):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if load == "busy" else None
        try:
            for n_threads in (1, 2):
                torch.set_num_threads(n_threads)
                for name, job in jobs.items():
                    job()
                    seconds[name][f"{n_threads} thread(s), {load}"] = min(timed(job)[1] for _ in range(3))
        finally:
            if busy is not None:
                busy.kill()
    torch.set_num_threads(previous)
    return seconds


def fit_row(repeats=3):
    """Fit DiffusionClassifier and MLPClassifier alternately on the spirals split."""
    X_train, X_test, y_train, y_test = split("spirals")
    diffusion_s, mlp_s = [], []
    for _ in range(repeats):
        mlp = make_pipeline(StandardScaler(), MLPClassifier(max_iter=1000, random_state=0))
        mlp_s.append(timed(mlp.fit, X_train, y_train)[1])
        clf = DiffusionClassifier(random_state=0)
        diffusion_s.append(timed(clf.fit, X_train, y_train)[1])
    return {
        "diffusion_fit_s": float(np.median(diffusion_s)),
        "mlp_fit_s": float(np.median(mlp_s)),
        "ratio": float(np.median(diffusion_s) / np.median(mlp_s)),
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rss-rows", type=int, default=1_000_000)
    parser.add_argument("--output", default="speed")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    with threadpool_limits(1):
        fit, spirals_clf = fit_row()
        X_digits_train, X_digits_test, y_digits_train, _ = split("digits")
        digits_clf = DiffusionClassifier(random_state=0).fit(X_digits_train, y_digits_train)
        predict = [
            predict_row("spirals", spirals_clf, np.tile(split("spirals")[1], (10, 1))),
            predict_row("digits", digits_clf, np.tile(X_digits_test, (4, 1))),
        ]
        conditioning = conditioning_row()
    threads = thread_rows(
        {
            "scoring loop, spirals (600 rows)": scoring_job(spirals_clf, split("spirals")[1]),
            "scoring loop, digits (540 rows)": scoring_job(digits_clf, X_digits_test),
            "training loop, spirals (300 steps)": training_job(spirals_clf, *split("spirals")[::2]),
            "training loop, digits (300 steps)": training_job(digits_clf, X_digits_train, y_digits_train),
        }
    )
    rss = rss_row(spirals_clf, args.rss_rows)

    lines = [
        f"torch {torch.__version__}; every timing but the thread table uses one torch thread",
        "(the machine is shared: compare numbers within one table, not across runs)",
        "",
        "GEMM rates: of the hidden layers' shape, and of all the denoiser's layers' shapes in one call",
        "",
        "| data | rows | GEMM GFLOP/s hidden | GEMM GFLOP/s all layers | predict GFLOP/s | fraction of hidden "
        "| fraction of all layers | evaluations/s | s per 1,000 rows | with default pruning |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in predict:
        lines.append(
            f"| {r['data']} | {r['rows']} | {r['gemm_gflops']:.1f} | {r['layers_gemm_gflops']:.1f} "
            f"| {r['predict_gflops']:.1f} | {r['fraction']:.2f} | {r['layers_fraction']:.2f} "
            f"| {r['evaluations_per_s']:.3g} | {r['s_per_1000_rows']:.3f} | {r['default_s_per_1000_rows']:.3f} |"
        )
    lines += ["", "| digits denoiser (mean of 3 seeds) | accuracy | predict s (540 rows) |", "|---|---|---|"]
    lines += [f"| {k} | {v['accuracy']:.3f} | {v['predict_s']:.2f} |" for k, v in conditioning.items()]
    late, full = conditioning.values()
    lines.append(f"\nlate-class speed-up on digits: {full['predict_s'] / late['predict_s']:.2f}x")
    columns = list(next(iter(threads.values())))
    lines += ["", "| seconds | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(f"{v[c]:.3f}" for c in columns) + " |" for k, v in threads.items()]
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
        {"predict": predict, "conditioning": conditioning, "threads": threads, "fit": fit, "rss": rss},
    )


if __name__ == "__main__":
    main()
