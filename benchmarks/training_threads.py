"""A training step on two threads: the minibatch split in halves, each half's gradients on a thread of its own.

Run ``python benchmarks/training_threads.py``; it prints a table and writes
``benchmarks/results/training_threads.md`` and ``.json``. ``fit`` trains one network on one
torch thread (two OpenMP threads in one product wait for each other when another process
shares the cores, see the cost guide). The alternative measured here is the way
``predict_proba`` uses the cores: Python threads of one torch thread each. The step's
256 rows are split in halves; each half's gradients are computed by the network's own
backward pass on its own thread, into a replica that shares the weights, then summed.
The networks are the default ones of the spirals (64 units), of 12 features of
``make_classification`` (128 units) and of the digits (256 units), each built by
``fit``. Each variant runs ``--steps`` steps in ``--rounds`` alternated rounds, on an idle
machine and with a process spinning on every core; the table gives the median time per
step, in milliseconds.
"""

import argparse
import copy
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from _suite import alternated, spinning, split, write_results
from sklearn.datasets import make_classification

from skdiffusion import DiffusionClassifier
from skdiffusion._compute import one_torch_thread
from skdiffusion._losses import mean_loss_and_gradient

BATCH = 256


def _twelve_features():
    X, y = make_classification(n_samples=2000, n_features=12, n_informative=6, random_state=0)
    return X, y


DATA = {
    "spirals": lambda: split("spirals")[::2],
    "12 features": _twelve_features,
    "digits": lambda: split("digits")[::2],
}


def network(load):
    """Return the default network that ``fit`` builds for the data of ``load()``, trained one step."""
    X, y = load()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one step has not converged
        return DiffusionClassifier(max_iter=1, n_trials=1, random_state=0).fit(X, y).denoiser_


def minibatch(denoiser, seed=0):
    """Return a minibatch ``(x_t, t, y, eps)`` of ``BATCH`` random rows for ``denoiser``."""
    generator = torch.Generator().manual_seed(seed)
    n_features, n_classes = denoiser.output[1].out_features, denoiser.n_classes
    x_t = torch.randn(BATCH, n_features, generator=generator)
    t = torch.randint(0, 1000, (BATCH,), generator=generator)
    y = torch.randint(0, n_classes, (BATCH,), generator=generator)
    return x_t, t, y, torch.randn(BATCH, n_features, generator=generator)


def gradients(denoiser, batch, rows=slice(None)):
    """Set ``denoiser``'s gradients from its loss on ``batch``'s ``rows``, by its own backward pass."""
    x_t, t, y, eps = (part[rows] for part in batch)
    eps_hat, backward = denoiser.forward_backward(x_t, t, y)
    _, gradient = mean_loss_and_gradient("l2", eps_hat, eps)
    backward(gradient)


def replica(denoiser):
    """Return a copy of ``denoiser`` whose parameters share its weights' memory and keep gradients of their own."""
    twin = copy.deepcopy(denoiser)
    for own, shared in zip(twin.parameters(), denoiser.parameters()):
        own.data = shared.data
    return twin


def halves_step(denoiser, twin, batch, pool):
    """Set ``denoiser``'s gradients of the whole ``batch`` from its halves, the second on ``pool``'s thread."""
    half = BATCH // 2
    done = pool.submit(gradients, twin, batch, slice(half, None))
    gradients(denoiser, batch, slice(None, half))
    done.result()
    for own, other in zip(denoiser.parameters(), twin.parameters()):
        own.grad.add_(other.grad).mul_(0.5)  # the mean of the halves' mean losses: the whole's


def _one_torch_thread():
    """Set the calling thread to compute as the library's threads do: one torch thread, denormals flushed."""
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)


def steps(step, n_steps):
    """Return a call that runs ``step()`` ``n_steps`` times."""

    def run():
        for _ in range(n_steps):
            step()

    return run


def measure(denoiser, n_steps, rounds, busy):
    """Return the median milliseconds per step of each variant, and the ratio of one thread's to two threads'."""
    batch, twin = minibatch(denoiser), replica(denoiser)
    # The pool's thread is set once, not at every step: a step would pay for the setting.
    with ThreadPoolExecutor(1, initializer=_one_torch_thread) as pool, one_torch_thread(), spinning(busy):
        calls = {
            "one thread": steps(lambda: gradients(denoiser, batch), n_steps),
            "two threads, halves": steps(lambda: halves_step(denoiser, twin, batch, pool), n_steps),
        }
        for call in calls.values():  # warm: the tables, the pool's thread
            call()
        seconds = alternated(calls, rounds)
    ms = {label: 1e3 * float(np.median(values)) / n_steps for label, values in seconds.items()}
    return {**ms, "speed-up": ms["one thread"] / ms["two threads, halves"]}


def format_table(records):
    lines = [
        "Milliseconds per training step of 256 rows (median of the rounds), and the speed-up of two threads:",
        "",
        "| network | load | one thread | two threads, halves | speed-up |",
        "|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['data']} ({r['width']} units) | {r['load']} | {r['one thread']:.2f} "
            f"| {r['two threads, halves']:.2f} | {r['speed-up']:.2f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    records = []
    for name, load in DATA.items():
        denoiser = network(load)
        for load_name, busy in (("idle", False), ("busy", True)):
            record = {"data": name, "width": denoiser.input.out_features, "load": load_name}
            records.append({**record, **measure(denoiser, args.steps, args.rounds, busy)})
            print(format_table(records[-1:]).splitlines()[-1], flush=True)
    table = format_table(records)
    print(table)
    write_results("training_threads", table, {"torch": torch.__version__, "records": records, **vars(args)})


if __name__ == "__main__":
    main()
