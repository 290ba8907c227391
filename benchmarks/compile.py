"""torch.compile on the CPU: the default network's scoring call and training step, compiled and not.

Run ``python benchmarks/compile.py``; it prints a table and writes
``benchmarks/results/compile.md`` and ``.json``. The default network of the spirals and of
digits (fitted for a few steps: the weights do not change the cost), on one torch thread,
as the library runs each scoring call and each training step (see the user guide's cost
page). Scoring: one call of the network's largest size (``MLPDenoiser.scoring_rows``)
under every class, as the library makes it (its operations without autograd, see
``Prepared``), that same function compiled by ``torch.compile``, and the network's plain
layers (``_Layers``: each layer called on its input, the timestep branch computed rather
than looked up), as they are and compiled, which leaves the compiler every element-wise
operation to fuse.
Training: one step on a minibatch of the fit's size, with the network's own backward pass
(the library's), through autograd, and through autograd with the loss compiled. Each
variant is timed in ``--rounds`` alternated rounds of ``--repeats`` calls (the median
round, per call); "first call" is the first call's seconds, compilation included, with the
compiler's caches off (as on a machine that has not compiled these graphs before), and
"difference" the largest difference from the library's values.
"""

import argparse
import functools
import warnings

import numpy as np
import torch
import torch._inductor.config
from _suite import alternated, split, timed, write_results
from sklearn.exceptions import ConvergenceWarning

from skdiffusion import DiffusionClassifier
from skdiffusion._compute import one_torch_thread
from skdiffusion._denoisers import _Layers, scoring_passes
from skdiffusion._losses import per_sample_loss
from skdiffusion._training import Adam, _step, minibatch, training_timestep_probs

DATA = ("spirals", "digits")
BATCH_SIZE = 256


def network(name):
    """Return the default network of ``name``'s training split, fitted for a few steps, and its standardised rows."""
    X_train, _, y_train, _ = split(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = DiffusionClassifier(random_state=0, max_iter=20).fit(X_train, y_train)
    x0 = torch.as_tensor(clf.scaler_.transform(X_train), dtype=torch.float32)
    return clf, x0, torch.as_tensor(clf.classes_.searchsorted(y_train))


def _repeated(call, repeats):
    """Return a function that makes ``call()`` ``repeats`` times."""

    def run():
        for _ in range(repeats):
            call()

    return run


def scoring(clf, rounds, repeats):
    """Return the records of one scoring call on random rows (``x_t``), per variant."""
    net = clf.denoiser_
    rows = net.scoring_rows(1 << 30)
    generator = torch.Generator().manual_seed(0)
    x_t = torch.randn(rows, clf.n_features_in_, generator=generator)
    t = torch.randint(0, clf.n_diffusion_steps // 10, (rows,), generator=generator)
    with torch.inference_mode():
        library = scoring_passes(net, t)[0]
    plain = functools.partial(net._forward_all, layers=_Layers(net))
    variants = {
        "library": library,
        "library, compiled": torch.compile(library, dynamic=False),
        "plain layers": plain,
        "plain layers, compiled": torch.compile(plain, dynamic=False),
    }

    def call(variant):
        with torch.inference_mode():
            return variants[variant](x_t, t)

    firsts = {variant: timed(call, variant) for variant in variants}
    seconds = alternated({v: _repeated(functools.partial(call, v), repeats) for v in variants}, rounds)
    reference = firsts["library"][0]
    return [
        {
            "part": f"scoring call, {rows} rows",
            "variant": variant,
            "ms": 1e3 * float(np.median(seconds[variant])) / repeats,
            "first_s": firsts[variant][1],
            "difference": float((firsts[variant][0] - reference).abs().max()),
        }
        for variant in variants
    ]


def training(clf, x0, y, rounds, repeats):
    """Return the records of one training step, per variant."""
    net, loss = clf.denoiser_, clf.loss
    alphas_cumprod = torch.as_tensor(clf.alphas_cumprod_, dtype=torch.float32)
    probs = torch.as_tensor(training_timestep_probs(alphas_cumprod.shape[0]), dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    draw = (x0, y, alphas_cumprod, probs, BATCH_SIZE, loss, generator)
    optimizer = Adam(net.parameters())

    def batch_loss(x_t, t, labels, eps):
        return per_sample_loss(loss, net(x_t, t, labels), eps).mean()

    compiled = torch.compile(batch_loss, dynamic=False)

    def autograd_step(function):
        x_t, t, labels, eps, _ = minibatch(x0, y, alphas_cumprod, probs, BATCH_SIZE, generator)
        function(x_t, t, labels, eps).backward()
        optimizer.step(1e-4)

    variants = {
        "library (own backward pass)": lambda: _step(net, optimizer, 1e-4, draw, own_gradients=True),
        "autograd": functools.partial(autograd_step, batch_loss),
        "autograd, loss compiled": functools.partial(autograd_step, compiled),
    }
    firsts = {variant: timed(call)[1] for variant, call in variants.items()}
    seconds = alternated({v: _repeated(call, repeats) for v, call in variants.items()}, rounds)
    return [
        {
            "part": f"training step, {BATCH_SIZE} rows",
            "variant": variant,
            "ms": 1e3 * float(np.median(seconds[variant])) / repeats,
            "first_s": firsts[variant],
            "difference": None,
        }
        for variant in variants
    ]


def run(rounds, repeats):
    """Return the records of every data set."""
    records = []
    torch._inductor.config.force_disable_caches = True
    with one_torch_thread():  # as fit and each scoring thread run: one torch thread, denormals flushed
        for name in DATA:
            clf, x0, y = network(name)
            for record in scoring(clf, rounds, repeats) + training(clf, x0, y, rounds, 10 * repeats):
                records.append({"data": name, **record})
                print(records[-1], flush=True)
    return records


def table(records):
    lines = [
        "| data | part | variant | ms | against the library's | first call s | difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        base = next(b for b in records if b["data"] == r["data"] and b["part"] == r["part"])
        difference = "" if r["difference"] is None else f"{r['difference']:.1e}"
        lines.append(
            f"| {r['data']} | {r['part']} | {r['variant']} | {r['ms']:.3f} | {r['ms'] / base['ms']:.2f} "
            f"| {r['first_s']:.2f} | {difference} |"
        )
    return (
        f"One torch thread, as the library runs each call and step; torch {torch.__version__}. "
        "Medians of the alternated rounds, per call.\n\n" + "\n".join(lines)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    records = run(args.rounds, args.repeats)
    text = table(records)
    print(text)
    write_results("compile", text, records)


if __name__ == "__main__":
    main()
