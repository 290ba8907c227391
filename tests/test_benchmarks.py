"""The benchmarks that reach into the library's internals still measure what the library does."""

import sys
from pathlib import Path

import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

from skdiffusion import DiffusionClassifier

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch):
    """Import the benchmark scripts as their own folder does (they import ``_suite`` beside them)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    yield
    for name in ("discriminative", "_suite"):
        sys.modules.pop(name, None)


@pytest.mark.slow
def test_discriminative_benchmark_records_the_choice_of_auto(benchmarks):
    import discriminative

    # Two overlapping classes on 1,100 rows: a fit that tunes, where "auto" asks its rule.
    X, y = make_classification(n_samples=1100, n_features=4, n_informative=2, flip_y=0.2, random_state=0)
    data = train_test_split(X, y, test_size=0.05, random_state=0, stratify=y)
    record = discriminative.evaluate(data, 0, False)
    auto = DiffusionClassifier(random_state=0).fit(data[0], data[2])
    assert record["held_out_share"] > 0
    assert record["auto_term"] == auto.discriminative_
    # The record's fit is the user's: without the term it gives the probabilities of a plain fit.
    plain = DiffusionClassifier(discriminative=False, random_state=0).fit(data[0], data[2])
    assert record["log_loss"] == pytest.approx(
        discriminative.scores(data[3], plain.predict_proba(data[1]), plain.classes_)["log_loss"], rel=1e-12
    )
    assert discriminative.evaluate(data, 0, True)["auto_term"] is None  # with the term, nothing is recorded
