"""Weighting the timesteps: one range and one scale (the default), a learned weight per band, or exp(-7 t / T).

Run ``python benchmarks/timestep_weights.py``. ``fit`` turns the denoising errors into
log-likelihoods with the uniform mean over one range ``[0, hT)`` and one scale, both
chosen on held-out rows. Clark & Jaini (2023) instead learn a weight for each of 20
buckets of timesteps by logistic regression on held-out data (1% of accuracy on their
images), or weight them by ``exp(-7 t / T)``. Here the three are compared on the same
networks and rows. Each training split (70/30, stratified, ``random_state=0``) is split
again, 70/30 stratified at ``random_state=seed``: ``DiffusionClassifier(random_state=seed)``
is fitted on the first part, the second part (rows no fit has seen) chooses each
variant's weights, and the test rows score them. Every row is scored at 256 trials
spread over the whole range, once per network, and the variants read those errors:

- "range" (the default's own choice, :func:`~skdiffusion._calibration.select_timestep_range`):
  the mean error over one of ``RANGE_CANDIDATES`` and its scale;
- "bands": a scale for each band of timesteps between ``BAND_EDGES`` (finer where the
  ranges' choice is), fitted by log loss with a prior of one e-fold around the range's
  weights, as the default's scale has around its centre. At the centre the bands give
  the range's errors exactly: a band inside the range weighs its share of the range's
  trials times the range's scale; one outside it starts at ``OUTSIDE`` of that weight
  per trial, so the bands refine the range's choice;
- "bands, even": the same, every band centred at the range's weight per trial;
- "exp(-7t)": the errors over the whole range weighted by ``exp(-7 t / T)``, the scale fitted.

Tables' categorical columns add their log-likelihood with its weight, fitted with the
scales. Data: the accuracy suite and the real-table panel but oils (the benchmark extra),
seeds 0-2. Prints a table of the means and writes ``benchmarks/results/timestep_weights.md``
and ``.json``.
"""

import argparse
import warnings

import numpy as np
import torch
from _suite import (
    grouped,
    mean_cells,
    means,
    scores,
    split_loaders,
    timed,
    write_results,
)
from scipy.optimize import minimize
from scipy.special import softmax
from sklearn.model_selection import train_test_split

from skdiffusion import DiffusionClassifier
from skdiffusion._calibration import (
    LOG_CATEGORY_WEIGHT_BOUNDS,
    RANGE_CANDIDATES,
    SELECTION_TRIALS,
    _mean_errors,
    bayes_logits,
    fit_weights,
    range_means,
    row_log_losses,
    select_timestep_range,
)
from skdiffusion._schedule import as_tensor
from skdiffusion._scoring import trial_draws
from skdiffusion._tabular import category_log_likelihood

VARIANTS = ("range", "bands", "bands, even", "exp(-7t)")
# Band edges, fractions of the diffusion steps: those of the candidate ranges, and two more
# below the narrowest, where the spirals' and crabs' class signal lies.
BAND_EDGES = (0.0, 0.01, 0.02, *RANGE_CANDIDATES)
# The real-table panel but oils, whose 67 training rows leave one of a class for a second split.
PANEL = ("crabs", "biopsy", "oj", "attrition", "churn", "mroz", "hmda", "leaf")
# The prior centre of a band outside the range, per trial, against one inside it ("bands").
OUTSIDE = 0.01
# Seeded apart from every noise the fit draws.
NOISE_SEED = 12345


def errors_of(model, X):
    """Return ``(errors, t, category_ll, width)``: ``model``'s errors on the rows ``X`` at every trial, every class.

    ``errors`` (n, n_classes, SELECTION_TRIALS), at the timesteps ``t`` spread over the
    whole range; ``category_ll`` (n, n_classes) the rows' categorical log-likelihood, or
    None; ``width`` the denoiser's input width, the centre of the scale's prior in ``fit``.
    """
    rows, x0, mask = model._denoiser_rows(X)  # as predict_proba scores them
    t, eps = trial_draws(0, model.n_diffusion_steps, SELECTION_TRIALS, x0.shape[1:], NOISE_SEED)
    errors = _mean_errors(
        model.denoiser_,
        x0,
        mask,
        t,
        eps,
        lambda every: every,
        alphas_cumprod=as_tensor(model.alphas_cumprod_),
        loss=model.loss,
        n_classes=model.classes_.size,
        threads=torch.get_num_threads(),
    )
    categories = category_log_likelihood(rows.codes, model.category_count_) if rows.categories else None
    return errors, t, categories, x0.shape[1]


def band_masks(t, n_steps):
    """Return, for each band between ``BAND_EDGES``, which of the timesteps ``t`` fall in it."""
    edges = np.asarray(BAND_EDGES) * n_steps
    return [(t >= lo) & (t < hi) for lo, hi in zip(edges[:-1], edges[1:])]


def band_means(errors, t, n_steps):
    """Return the mean errors over the trials of each band between ``BAND_EDGES``: (n, n_classes, n_bands)."""
    return np.stack([errors[:, :, band].mean(axis=2) for band in band_masks(t, n_steps)], axis=2)


def band_centre(t, n_steps, trials, outside):
    """Return the prior centre of each band's scale: the weights under which the bands give ``trials``' errors.

    ``trials`` (:class:`~skdiffusion._calibration.Trials`) average the errors over the
    timesteps ``t`` in their range and multiply them by their scale: a band inside the range
    weighs the scale times its share of the range's trials, one outside ``outside`` times
    the scale over the range's count of trials per trial of its own.
    """
    counts = np.array([np.count_nonzero(band) for band in band_masks(t, n_steps)])
    inside = np.asarray(BAND_EDGES[1:]) <= trials.timestep_range[1]
    in_range = np.count_nonzero(t < trials.timestep_range[1] * n_steps)
    return trials.scale * counts / in_range * np.where(inside, 1.0, outside)


def fit_bands(bands, y, log_prior, centre, category_ll):
    """Return ``(scales, category_weight)``: a scale per band and the categories' weight, fitted by log loss.

    The log scales have a Gaussian prior of one e-fold around ``log centre``, the log of the
    categories' weight one around 0 (see :func:`~skdiffusion._calibration.fit_weights`).
    """
    n_bands, total = bands.shape[2], y.size

    def objective(theta):
        log_s, log_a = theta[:n_bands], theta[n_bands:]
        errors = bands @ np.exp(log_s)
        weight = float(np.exp(log_a[0])) if log_a.size else 1.0
        loss = row_log_losses(errors, y, log_prior, 1.0, category_ll, weight).sum()
        prior = 0.5 * np.sum((log_s - np.log(centre)) ** 2) + 0.5 * np.sum(log_a**2)
        return (loss + prior) / total

    start = np.r_[np.log(centre), np.zeros(0 if category_ll is None else 1)]
    bounds = [(None, None)] * n_bands + [LOG_CATEGORY_WEIGHT_BOUNDS] * (start.size - n_bands)
    theta = minimize(objective, start, method="L-BFGS-B", bounds=bounds).x
    return np.exp(theta[:n_bands]), float(np.exp(theta[n_bands])) if category_ll is not None else 1.0


def evaluate(data, seed):
    """Fit one network on part of the training rows; return each variant's scores on the test rows, by variant."""
    X_train, X_test, y_train, y_test = data
    X_fit, X_held, y_fit, y_held = train_test_split(
        X_train, y_train, test_size=0.3, random_state=seed, stratify=y_train
    )
    model = DiffusionClassifier(random_state=seed)
    _, fit_s = timed(model.fit, X_fit, y_fit)
    n_steps, classes = model.n_diffusion_steps, model.classes_
    log_prior, y = np.log(model.class_prior_), np.searchsorted(classes, y_held)
    held, t, held_categories, width = errors_of(model, X_held)
    test, _, test_categories, _ = errors_of(model, X_test)
    chosen = select_timestep_range(range_means(held, t, n_steps), y, log_prior, width, category_ll=held_categories)
    hi = chosen.timestep_range[1]
    bands = band_means(held, t, n_steps)
    fitted = {
        name: fit_bands(bands, y, log_prior, band_centre(t, n_steps, chosen, outside), held_categories)
        for name, outside in (("bands", OUTSIDE), ("bands, even", 1.0))
    }
    decay = np.exp(-7 * t / n_steps)
    decay /= decay.mean()
    (decay_scale, decay_weight), _ = fit_weights(
        (held * decay).mean(axis=2), y, log_prior, width, category_ll=held_categories
    )
    variants = {
        "range": (test[:, :, t < hi * n_steps].mean(axis=2), chosen.scale, chosen.category_weight),
        **{name: (band_means(test, t, n_steps) @ scales, 1.0, weight) for name, (scales, weight) in fitted.items()},
        "exp(-7t)": ((test * decay).mean(axis=2), decay_scale, decay_weight),
    }
    records = {}
    for variant, (errors, scale, weight) in variants.items():
        proba = softmax(bayes_logits(errors, log_prior, scale, test_categories, weight), axis=1)
        records[variant] = {"fit_s": fit_s, **scores(y_test, proba, classes)}
    records["range"]["chosen"] = hi
    for name, (scales, _) in fitted.items():
        records[name]["scales"] = [float(scale) for scale in scales]
    return records


def format_table(records, seeds):
    lines = [
        f"Accuracy / log loss on the test rows, means over seeds 0-{seeds - 1}; the range chosen at each seed.",
        "",
        "| data | " + " | ".join(VARIANTS) + " | range chosen |",
        "|---" * (len(VARIANTS) + 2) + "|",
    ]
    groups = grouped(records)
    for data in dict.fromkeys(record["data"] for record in records):
        cells = mean_cells(groups, data, VARIANTS)
        chosen = ", ".join(f"{record['chosen']:g}" for record in groups[data, "range"])
        lines.append(f"| {data} | {' | '.join(cells)} | {chosen} |")
    overall = []
    for variant in VARIANTS:
        mean = means([record for record in records if record["variant"] == variant], ("accuracy", "log_loss"))
        overall.append(f"{mean['accuracy']:.4f} / {mean['log_loss']:.4f}")
    lines.append(f"| mean of every data set and seed | {' | '.join(overall)} | |")
    edges = ", ".join(f"{edge:g}" for edge in BAND_EDGES)
    lines += [
        "",
        f"The bands' fitted scales at seed 0 (bands between {edges} of T), and each seed's accuracy / log loss:",
        "",
        "| data | bands' scales | bands' scales, even | " + " | ".join(VARIANTS) + " |",
        "|---" * (len(VARIANTS) + 3) + "|",
    ]
    for data in dict.fromkeys(record["data"] for record in records):
        fitted = [", ".join(f"{s:.3g}" for s in groups[data, v][0]["scales"]) for v in ("bands", "bands, even")]
        cells = [", ".join(f"{r['accuracy']:.3f} / {r['log_loss']:.3f}" for r in groups[data, v]) for v in VARIANTS]
        lines.append(f"| {data} | {' | '.join(fitted)} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data", nargs="*", help="data sets (default: the suite, then the panel)")
    args = parser.parse_args()
    loaders = split_loaders(PANEL)
    records = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.data or loaders:
            data = loaders[name]()
            for seed in range(args.seeds):
                for variant, record in evaluate(data, seed).items():
                    records.append({"data": name, "seed": seed, "variant": variant, **record})
                    scored = f"{record['accuracy']:.3f} / {record['log_loss']:.3f}"
                    print(f"{name} seed {seed} {variant}: {scored}", flush=True)
    table = format_table(records, args.seeds)
    print(table)
    write_results("timestep_weights", table, records)


if __name__ == "__main__":
    main()
