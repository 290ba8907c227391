"""Write the small intersphinx inventories that ``docs/conf.py`` reads, without the network.

The documentation links scikit-learn, NumPy, PyTorch, joblib and Python names to their
public documentation (``intersphinx_mapping`` in ``conf.py``), but the build must not
download those sites' ``objects.inv`` files. This script writes, for each site, an
inventory of the objects these docs refer to (in ``docs/*.rst``, the docstrings and the
gallery's code), with their real paths under the site's base URL. Run it after adding a
reference to another object::

    pip install sphobjinv    # in the docs extra
    python docs/_inventories/build.py

``python -m sphinx -n`` (nitpicky) lists the references that found no target.
"""

from pathlib import Path

import sphobjinv as soi

HERE = Path(__file__).resolve().parent

# Paths relative to each site's base URL (conf.py's intersphinx_mapping); "$" stands for the
# object's name, as in Sphinx's own inventories.
SKLEARN_GENERATED = "modules/generated/{}.html#$"
NUMPY_GENERATED = "reference/generated/{}.html#$"
TORCH_GENERATED = "generated/{}.html#$"
JOBLIB_GENERATED = "generated/{}.html#$"


def _page_of(pattern, name):
    """The page of a class or function, and of its methods (``Class.method``)."""
    page = name
    parts = name.split(".")
    if len(parts) > 2 and parts[-2][:1].isupper():  # a method: its class's page
        page = ".".join(parts[:-1])
    return pattern.format(page)


SKLEARN = {
    "py:class": [
        "sklearn.calibration.CalibratedClassifierCV",
        "sklearn.calibration.CalibrationDisplay",
        "sklearn.callback.ProgressBar",
        "sklearn.callback.ScoringMonitor",
        # A class, although its name reads as a function.
        "sklearn.compose.make_column_selector",
        "sklearn.ensemble.AdaBoostClassifier",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "sklearn.exceptions.ConvergenceWarning",
        "sklearn.impute.SimpleImputer",
        "sklearn.inspection.DecisionBoundaryDisplay",
        "sklearn.linear_model.LogisticRegression",
        "sklearn.model_selection.GridSearchCV",
        "sklearn.naive_bayes.GaussianNB",
        "sklearn.neural_network.MLPClassifier",
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing.OneHotEncoder",
        "sklearn.preprocessing.StandardScaler",
        "sklearn.svm.SVC",
        "sklearn.utils.metadata_routing.MetadataRequest",
    ],
    "py:method": [
        "sklearn.calibration.CalibrationDisplay.from_predictions",
        "sklearn.metrics.ConfusionMatrixDisplay.from_estimator",
        "sklearn.metrics.ConfusionMatrixDisplay.from_predictions",
        "sklearn.mixture.GaussianMixture.score_samples",
        "sklearn.neural_network.MLPClassifier.partial_fit",
    ],
    "py:function": [
        "sklearn.base.clone",
        "sklearn.compose.make_column_transformer",
        "sklearn.datasets.load_breast_cancer",
        "sklearn.datasets.load_digits",
        "sklearn.metrics.accuracy_score",
        "sklearn.metrics.brier_score_loss",
        "sklearn.metrics.log_loss",
        "sklearn.metrics.roc_auc_score",
        "sklearn.model_selection.train_test_split",
        "sklearn.pipeline.make_pipeline",
        "sklearn.utils.class_weight.compute_class_weight",
    ],
    # Labels that scikit-learn's docstrings, inherited by our estimators, refer to.
    "std:label": {
        "accuracy_score": ("modules/model_evaluation.html#accuracy-score", "Accuracy score"),
        "df_output_transform": (
            "modules/df_output_transform.html#df-output-transform",
            "Pandas/Polars Output for Transformers with set_output API",
        ),
        "metadata_routing": ("metadata_routing.html#metadata-routing", "Metadata Routing"),
        "sphx_glr_auto_examples_miscellaneous_plot_set_output.py": (
            "auto_examples/miscellaneous/plot_set_output.html#sphx-glr-auto-examples-miscellaneous-plot-set-output-py",
            "Introducing the set_output API",
        ),
    },
}

NUMPY = {
    "py:class": {
        "numpy.ndarray": NUMPY_GENERATED.format("numpy.ndarray"),
        "numpy.random.RandomState": "reference/random/legacy.html#$",
        "numpy.float32": "reference/arrays.scalars.html#$",
        "numpy.int64": "reference/arrays.scalars.html#$",
    },
    "py:function": [
        "numpy.arange",
        "numpy.array",
        "numpy.asarray",
        "numpy.clip",
        "numpy.empty",
        "numpy.empty_like",
        "numpy.linspace",
        "numpy.mean",
        "numpy.ones",
        "numpy.percentile",
        "numpy.prod",
        "numpy.repeat",
        "numpy.unique",
        "numpy.zeros",
        ("numpy.random.default_rng", "reference/random/generator.html#$"),
    ],
    "py:data": {
        "numpy.nan": "reference/constants.html#$",
        "numpy.minimum": NUMPY_GENERATED.format("numpy.minimum"),
        "numpy.r_": NUMPY_GENERATED.format("numpy.r_"),
    },
    "std:term": {
        "array_like": ("glossary.html#term-array_like", "array_like"),
    },
}

TORCH = {
    "py:class": {
        "torch.nn.Module": TORCH_GENERATED.format("torch.nn.Module"),
        "torch.device": "tensor_attributes.html#$",
    },
}

JOBLIB = {
    "py:class": ["joblib.Memory"],
    # joblib documents parallel_config as a class (a context manager); our docstrings call it
    # with :func:, which finds only functions.
    "py:function": ["joblib.parallel_config"],
}

PYTHON = {
    "py:class": {
        "argparse.ArgumentParser": "library/argparse.html#$",
        "dict": "library/stdtypes.html#$",
        "float": "library/functions.html#$",
        "int": "library/functions.html#$",
        "list": "library/stdtypes.html#$",
        "object": "library/functions.html#$",
        "pathlib.Path": "library/pathlib.html#$",
        "str": "library/stdtypes.html#$",
        "tuple": "library/stdtypes.html#$",
        "warnings.catch_warnings": "library/warnings.html#$",
    },
    "py:exception": {
        "ValueError": "library/exceptions.html#$",
    },
    "py:function": {
        "callable": "library/functions.html#$",
        "json.loads": "library/json.html#$",
        "os.listdir": "library/os.html#$",
        "os.path.isdir": "library/os.path.html#$",
        "os.path.join": "library/os.path.html#$",
        "time.perf_counter": "library/time.html#$",
        "warnings.simplefilter": "library/warnings.html#$",
    },
    "py:method": {
        "pathlib.Path.cwd": "library/pathlib.html#$",
    },
    "py:data": {
        "None": "library/constants.html#$",
    },
    "py:module": {
        "pickle": "library/pickle.html#module-$",
    },
    "std:term": {
        "path-like object": ("glossary.html#term-path-like-object", "path-like object"),
        "sequence": ("glossary.html#term-sequence", "sequence"),
    },
    # numpydoc links the type "bool" here.
    "std:label": {
        "bltin-boolean-values": ("library/stdtypes.html#bltin-boolean-values", "Boolean Type - bool"),
    },
}

# file stem: (project, version, objects, page pattern for plain lists)
INVENTORIES = {
    "sklearn": ("scikit-learn", "stable", SKLEARN, SKLEARN_GENERATED),
    "numpy": ("NumPy", "stable", NUMPY, NUMPY_GENERATED),
    "torch": ("PyTorch", "stable", TORCH, TORCH_GENERATED),
    "joblib": ("joblib", "stable", JOBLIB, JOBLIB_GENERATED),
    "python": ("Python", "3", PYTHON, None),
}


def _entries(objects, pattern):
    """Yield (name, domain, role, uri, dispname) for one inventory's objects."""
    for kind, items in objects.items():
        domain, role = kind.split(":")
        if isinstance(items, dict):
            for name, value in items.items():
                uri, dispname = value if isinstance(value, tuple) else (value, "-")
                yield name, domain, role, uri, dispname
        else:
            for item in items:
                name, uri = item if isinstance(item, tuple) else (item, _page_of(pattern, item))
                yield name, domain, role, uri, "-"


def build(stem, project, version, objects, pattern):
    inv = soi.Inventory()
    inv.project = project
    inv.version = version
    for name, domain, role, uri, dispname in sorted(_entries(objects, pattern)):
        priority = "-1" if domain == "std" and role == "term" else "1"
        inv.objects.append(
            soi.DataObjStr(name=name, domain=domain, role=role, priority=priority, uri=uri, dispname=dispname)
        )
    path = HERE / f"{stem}.inv"
    soi.writebytes(path, soi.compress(inv.data_file(contract=True)))
    return path, len(inv.objects)


def main():
    for stem, (project, version, objects, pattern) in INVENTORIES.items():
        path, count = build(stem, project, version, objects, pattern)
        print(f"{path.relative_to(HERE.parent.parent)}: {count} objects")


if __name__ == "__main__":
    main()
