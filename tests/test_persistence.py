"""skdiffusion.save / skdiffusion.load: plain data, no pickle, the same probabilities."""

import inspect
import json
import struct
import warnings

import numpy as np
import pytest
import safetensors.torch
import torch
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from torch import nn

import skdiffusion
from skdiffusion import DiffusionClassifier, MLPDenoiser
from skdiffusion._denoisers import mlp_arguments
from skdiffusion._persistence import _digest

X, Y = make_blobs(n_samples=120, centers=[[-2, 0], [2, 0], [0, 3]], cluster_std=0.5, random_state=0)


def _fit(**params):
    params = {"max_iter": 30, "n_trials": 8, "random_state": 0, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 30 steps: enough to be a model
        return DiffusionClassifier(**params).fit(X, Y)


@pytest.fixture(scope="module")
def fitted():
    return _fit()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "model.safetensors"


class TinyDenoiser(nn.Module):
    """A denoiser that only code can rebuild: no forward_all, its own layout."""

    def __init__(self, n_features, n_classes, width=16):
        super().__init__()
        self.label = nn.Embedding(n_classes, width)
        self.net = nn.Sequential(nn.Linear(n_features + 1, width), nn.SiLU(), nn.Linear(width, n_features))

    def forward(self, x_t, t, y):
        h = self.net[0](torch.cat([x_t, t[:, None] / 1000.0], dim=1)) + self.label(y)
        return self.net[2](self.net[1](h))


def _assert_same_model(loaded, original):
    np.testing.assert_array_equal(loaded.predict_proba(X), original.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), original.score_samples(X))
    X_a, y_a = loaded.sample(3, random_state=0)
    X_b, y_b = original.sample(3, random_state=0)
    np.testing.assert_array_equal(X_a, X_b)
    np.testing.assert_array_equal(y_a, y_b)


def _rewrite(path, edit):
    """Rewrite a saved file's content with ``edit(content)`` and a digest that matches it."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8 : 8 + size])["__metadata__"]
    tensors = safetensors.torch.load(data)
    content = json.loads(metadata["content"])
    edit(content)
    metadata["content"] = json.dumps(content)
    metadata["sha256"] = _digest(metadata["content"], tensors)
    path.write_bytes(safetensors.torch.save(tensors, metadata=metadata))


# --- Round trips ------------------------------------------------------------------------


def test_round_trip_is_bit_identical(fitted, path):
    skdiffusion.save(fitted, path)
    rng_state = torch.get_rng_state()
    loaded = skdiffusion.load(path)
    assert torch.equal(torch.get_rng_state(), rng_state)  # building the network drew no global numbers
    _assert_same_model(loaded, fitted)
    assert loaded.get_params() == fitted.get_params()
    assert sorted(vars(loaded)) == sorted(vars(fitted))
    assert loaded.timestep_range_ == fitted.timestep_range_ and loaded.scale_ == fitted.scale_
    assert loaded.noise_seed_ == fitted.noise_seed_ and loaded.n_iter_ == fitted.n_iter_
    assert loaded.loss_curve_ == fitted.loss_curve_
    np.testing.assert_array_equal(loaded.classes_, fitted.classes_)
    np.testing.assert_array_equal(loaded.alphas_cumprod_, fitted.alphas_cumprod_)
    np.testing.assert_array_equal(loaded.scaler_.scale_, fitted.scaler_.scale_)
    assert type(loaded.denoiser_) is MLPDenoiser
    assert all(p.device.type == "cpu" for p in loaded.denoiser_.parameters())


def test_round_trip_of_a_discriminatively_tuned_model(path):
    tuned = _fit(max_iter=20, refit=False, discriminative=True)
    assert tuned.discriminative_ is True
    skdiffusion.save(tuned, path)
    loaded = skdiffusion.load(path)
    assert loaded.discriminative_ is True and loaded.discriminative is True
    _assert_same_model(loaded, tuned)


def test_round_trip_of_string_labels_feature_names_and_parameters(path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=["width", "height"])
    labels = np.array(["ant", "bee", "cat"])[Y]
    params = {
        "pruning": ((4, 2), (6, 1)),
        "timestep_range": (0.0, 0.5),
        "priors": np.array([0.2, 0.3, 0.5]),
        "noise_schedule": "cosine",
        "n_diffusion_steps": 200,
        "loss": "huber",
        "early_stopping": True,
        "random_state": np.random.RandomState(3),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = DiffusionClassifier(max_iter=100, n_trials=8, **params).fit(frame, labels)
    skdiffusion.save(clf, path)
    loaded = skdiffusion.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(frame), clf.predict_proba(frame))
    assert loaded.classes_.tolist() == ["ant", "bee", "cat"]
    assert loaded.feature_names_in_.tolist() == ["width", "height"]
    assert loaded.validation_scores_ == clf.validation_scores_
    for name in ["pruning", "timestep_range", "noise_schedule", "n_diffusion_steps", "loss", "early_stopping"]:
        assert loaded.get_params()[name] == params[name]
    np.testing.assert_array_equal(loaded.priors, params["priors"])
    # A RandomState is stored with its state: both draw the same numbers next.
    assert loaded.random_state.randint(1000, size=5).tolist() == clf.random_state.randint(1000, size=5).tolist()


def test_mlp_denoiser_with_its_own_arguments_is_rebuilt(path):
    clf = _fit(denoiser=MLPDenoiser(2, 3, hidden_size=16, n_blocks=2, class_blocks=1, n_frequencies=4))
    skdiffusion.save(clf, path)
    loaded = skdiffusion.load(path)
    _assert_same_model(loaded, clf)
    # The parameter becomes an untrained network of the same architecture.
    assert isinstance(loaded.denoiser, MLPDenoiser)
    assert loaded.denoiser.blocks[0][1].out_features == 16 and len(loaded.denoiser.blocks) == 2


def test_mlp_denoiser_with_class_readouts_is_rebuilt(path):
    clf = _fit(denoiser=MLPDenoiser(2, 3, hidden_size=16, class_readout=4))
    assert clf.denoiser_.readout[1].weight.abs().max() > 0  # trained away from its zeros
    skdiffusion.save(clf, path)
    loaded = skdiffusion.load(path)
    _assert_same_model(loaded, clf)
    assert loaded.denoiser_.readout[0].out_features == 4


def test_mlp_denoiser_with_the_read_out_alone_is_rebuilt(path):
    clf = _fit(denoiser=MLPDenoiser(2, 3, hidden_size=16, class_readout=4, class_embedding=False))
    skdiffusion.save(clf, path)
    loaded = skdiffusion.load(path)
    _assert_same_model(loaded, clf)
    assert loaded.denoiser_.label is None


def test_mlp_denoiser_with_a_gaussian_base_is_rebuilt(path):
    clf = _fit(denoiser=MLPDenoiser(2, 3, hidden_size=16, n_frequencies=0, gaussian_base=1000))
    assert clf.denoiser_.base_gate.item() != 0.0 and clf.denoiser_.base_variance.min() < 1.0  # trained, and set
    skdiffusion.save(clf, path)
    loaded = skdiffusion.load(path)
    _assert_same_model(loaded, clf)
    for name in ("base_alphas_cumprod", "base_mean", "base_variance", "base_gate"):
        assert torch.equal(getattr(loaded.denoiser_, name), getattr(clf.denoiser_, name))


def test_a_file_saved_before_class_readouts_loads_without_them(fitted, path):
    assert mlp_arguments(fitted.denoiser_)["class_readout"] == 0
    skdiffusion.save(fitted, path)
    _rewrite(
        path, lambda content: [content["denoiser"]["arguments"].pop(k) for k in ("class_readout", "class_embedding")]
    )
    loaded = skdiffusion.load(path)
    assert loaded.denoiser_.readout is None
    np.testing.assert_array_equal(loaded.predict_proba(X[:20]), fitted.predict_proba(X[:20]))


def test_a_table_whose_network_reads_some_categories_round_trips(path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": X[:, 0], "y": X[:, 1], "colour": np.where(np.arange(120) < 5, "green", "red")})
    frame.loc[60:, "colour"] = "blue"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 30 steps; partial_fit's one
        fitted = DiffusionClassifier(max_iter=30, n_trials=8, random_state=0).fit(frame, Y)
        every = DiffusionClassifier(max_iter=30, n_trials=8, random_state=0).partial_fit(frame, Y, classes=[0, 1, 2])
    np.testing.assert_array_equal(fitted.network_categories_, [[True, False, True]])  # 5 rows of green
    skdiffusion.save(fitted, path)
    loaded = skdiffusion.load(path)
    np.testing.assert_array_equal(loaded.network_categories_, fitted.network_categories_)
    np.testing.assert_array_equal(loaded.predict_proba(frame), fitted.predict_proba(frame))
    # A file saved before network_categories_ was kept holds a network that read every category.
    skdiffusion.save(every, path)
    _rewrite(path, lambda content: content["attributes"].pop("network_categories_"))
    loaded = skdiffusion.load(path)
    np.testing.assert_array_equal(loaded.network_categories_, [[True, True, True]])
    np.testing.assert_array_equal(loaded.predict_proba(frame), every.predict_proba(frame))


def test_a_file_saved_before_dequantization_loads_as_trained_on_the_values_as_they_are(path):
    integers = np.round(X * 3)  # values on a step of 1: the default dequantizes them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = DiffusionClassifier(max_iter=30, n_trials=8, random_state=0).fit(integers, Y)
    np.testing.assert_array_equal(fitted.value_steps_, [1.0, 1.0])
    skdiffusion.save(fitted, path)
    np.testing.assert_array_equal(skdiffusion.load(path).value_steps_, fitted.value_steps_)
    _rewrite(path, lambda content: content["attributes"].pop("value_steps_"))
    loaded = skdiffusion.load(path)
    np.testing.assert_array_equal(loaded.value_steps_, [0.0, 0.0])
    np.testing.assert_array_equal(loaded.predict_proba(integers), fitted.predict_proba(integers))


def test_mlp_arguments_cover_every_constructor_argument(fitted):
    assert set(mlp_arguments(fitted.denoiser_)) == set(inspect.signature(MLPDenoiser).parameters)


def test_loaded_model_continues_training_with_warm_start(fitted, path):
    skdiffusion.save(fitted, path)
    loaded = skdiffusion.load(path).set_params(warm_start=True, max_iter=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        loaded.fit(X, Y)
    assert loaded.n_iter_ == fitted.n_iter_ + 10


def test_model_fitted_for_another_device_loads_on_the_cpu(path):
    # Stands in for a model fitted on a GPU: the device parameter names one this machine
    # may lack; the weights are stored and loaded on the CPU all the same.
    clf = _fit()
    reference = clf.predict_proba(X)
    clf.set_params(device="cuda:99")
    skdiffusion.save(clf, path)
    loaded = skdiffusion.load(path)
    assert loaded.device == "cuda:99"
    with pytest.raises(ValueError, match="device='cuda:99' is not available"):
        loaded.predict_proba(X)
    np.testing.assert_array_equal(loaded.set_params(device="cpu").predict_proba(X), reference)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_fitted_model_loads_on_the_cpu(path):
    clf = _fit(device="cuda")
    skdiffusion.save(clf, path)
    loaded = skdiffusion.load(path).set_params(device="cpu")
    assert all(p.device.type == "cpu" for p in loaded.denoiser_.parameters())
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), atol=1e-4)


# --- Custom denoisers -------------------------------------------------------------------


def test_custom_denoiser_needs_its_architecture_to_load(path):
    clf = _fit(denoiser=TinyDenoiser)
    skdiffusion.save(clf, path)
    with pytest.raises(ValueError, match=r"fitted with the denoiser '.*TinyDenoiser'.*denoiser="):
        skdiffusion.load(path)
    for denoiser in [TinyDenoiser, TinyDenoiser(2, 3)]:
        loaded = skdiffusion.load(path, denoiser=denoiser)
        assert loaded.denoiser is denoiser
        _assert_same_model(loaded, clf)
    # load copies an instance, as fit does: the module passed keeps its own weights.
    module = TinyDenoiser(2, 3)
    before = module.net[0].weight.clone()
    skdiffusion.load(path, denoiser=module)
    torch.testing.assert_close(module.net[0].weight, before, rtol=0, atol=0)


def test_custom_denoiser_of_another_architecture_is_rejected(path):
    skdiffusion.save(_fit(denoiser=TinyDenoiser), path)
    with pytest.raises(ValueError, match="the saved weights do not fit the denoiser TinyDenoiser"):
        skdiffusion.load(path, denoiser=TinyDenoiser(2, 3, width=8))
    with pytest.raises(ValueError, match="the saved weights do not fit the denoiser MLPDenoiser"):
        skdiffusion.load(path, denoiser=MLPDenoiser)


# --- Bad files --------------------------------------------------------------------------


def test_save_needs_a_fitted_classifier(path):
    with pytest.raises(NotFittedError):
        skdiffusion.save(DiffusionClassifier(), path)
    with pytest.raises(TypeError, match="save expects a DiffusionClassifier"):
        skdiffusion.save(MLPDenoiser(2, 2), path)


@pytest.mark.parametrize("where", ["first", "header", "weights", "last"])
def test_a_flipped_byte_is_rejected(fitted, path, where):
    skdiffusion.save(fitted, path)
    data = bytearray(path.read_bytes())
    (size,) = struct.unpack("<Q", data[:8])
    offset = {"first": 0, "header": 8 + size // 2, "weights": 8 + size + 100, "last": len(data) - 1}[where]
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not a safetensors file written by skdiffusion|SHA-256 digest"):
        skdiffusion.load(path)


def test_an_edited_content_is_rejected_by_its_digest(fitted, path):
    skdiffusion.save(fitted, path)
    data = path.read_bytes()
    edited = data.replace(b'scale_\\": ', b'scale_\\":  ', 1)  # same JSON meaning, other bytes
    assert edited != data
    (size,) = struct.unpack("<Q", data[:8])
    path.write_bytes(struct.pack("<Q", size + 1) + edited[8:])
    with pytest.raises(ValueError, match="does not match its SHA-256 digest"):
        skdiffusion.load(path)


@pytest.mark.parametrize("data", [b"", b"\x00" * 7, b"garbage" * 10, struct.pack("<Q", 10**9) + b"{}"])
def test_a_file_that_is_not_safetensors_is_rejected(path, data):
    path.write_bytes(data)
    with pytest.raises(ValueError, match="not a safetensors file written by skdiffusion.save"):
        skdiffusion.load(path)


def test_other_safetensors_files_and_versions_are_rejected(fitted, path):
    safetensors.torch.save_file(fitted.denoiser_.state_dict(), path)
    with pytest.raises(ValueError, match="not a safetensors file written by skdiffusion.save"):
        skdiffusion.load(path)
    safetensors.torch.save_file(fitted.denoiser_.state_dict(), path, metadata={"format": "skdiffusion"})
    with pytest.raises(ValueError, match="format version None"):
        skdiffusion.load(path)


def _set_attribute(name, value):
    return lambda content: content["attributes"].__setitem__(name, value)


def _set_argument(name, value):
    return lambda content: content["denoiser"]["arguments"].__setitem__(name, value)


@pytest.mark.parametrize(
    "edit, match",
    [
        (_set_attribute("__class__", 1), "unexpected attribute '__class__'"),
        (_set_attribute("predict", 1), "unexpected attribute 'predict'"),
        (_set_attribute("n_trials", 1), "unexpected attribute 'n_trials'"),
        (_set_attribute("classes_", {"__array__": "|O", "shape": [2], "data": [1, 2]}), "only strings"),
        (_set_attribute("classes_", {"__array__": "<M8[s]", "shape": [1], "data": [0]}), "is not allowed"),
        (_set_attribute("classes_", {"__pickle__": "cos\nsystem\n"}), "unknown value"),
        (_set_attribute("scale_", -1.0), "scale_=-1.0"),
        (_set_attribute("timestep_range_", {"__tuple__": [0.5, 0.1]}), "timestep_range must be a pair"),
        (lambda content: content["attributes"].pop("noise_seed_"), r"\['noise_seed_'\] are missing"),
        (lambda content: content["params"].__setitem__("n_trials", 0), "'n_trials' parameter"),
        (lambda content: content["params"].__setitem__("n_diffusion_steps", 100), "alphas_cumprod_ has shape"),
        (lambda content: content["denoiser"]["arguments"].__setitem__("hidden_size", 8), "are not those of the MLP"),
        # A hostile file: sizes beyond its weights, labels wider than their strings, bad values.
        (_set_argument("hidden_size", 10**6), r"describe more weights than the file's"),
        (_set_argument("n_frequencies", 10**9), r"describe more weights than the file's"),
        (_set_argument("n_blocks", -1), "not all non-negative integers"),
        (_set_argument("hidden_size", "64"), "not all non-negative integers"),
        (_set_argument("input_scale", float("inf")), "input_scale=inf is not a finite number"),
        (_set_argument("class_blocks", 9), "class_blocks=9 exceeds n_blocks=3"),
        (_set_argument("class_readout", 10**9), r"describe more weights than the file's"),
        (_set_argument("class_readout", 2), "are not those of the MLP"),
        (_set_argument("class_readout", True), "not all non-negative integers"),
        (_set_argument("class_embedding", 1), "class_embedding=1 is not a bool"),
        (_set_argument("class_embedding", False), "class_embedding=False needs a read-out"),
        (_set_attribute("classes_", {"__array__": "<U20000000", "shape": [2], "data": ["0", "1"]}), "wider than"),
        (_set_attribute("classes_", {"__array__": "<i8", "shape": [2], "data": [1, 0]}), "not a sorted array"),
        (_set_attribute("class_prior_", {"__array__": "<f8", "shape": [2], "data": [1.5, -0.5]}), "probability"),
        (_set_attribute("class_prior_", {"__array__": "<f8", "shape": [2], "data": [0.5, 0.6]}), "probability"),
        (_set_attribute("noise_seed_", "7"), "noise_seed_='7' is not a non-negative integer"),
        (_set_attribute("noise_seed_", -1), "noise_seed_=-1 is not a non-negative integer"),
        (_set_attribute("scale_", "3.0"), "scale_='3.0' or category_weight_"),
        (_set_attribute("n_features_in_", 2.0), "n_features_in_=2.0"),
        (
            lambda content: content["params"].__setitem__(
                "random_state", {"__random_state__": ["MT19937", [1, 2], 0, 0, 0.0]}
            ),
            "624 keys",
        ),
        (lambda content: content.pop("denoiser"), "the entry 'denoiser' is missing"),
        (
            _set_attribute("network_categories_", [{"__array__": "|b1", "shape": [1], "data": [True]}]),
            "network_categories_ does not hold a mask",
        ),
        (_set_attribute("value_steps_", {"__array__": "<f8", "shape": [1], "data": [1.0]}), "value_steps_ has shape"),
        (
            _set_attribute("value_steps_", {"__array__": "<f8", "shape": [2], "data": [-1.0, 0.0]}),
            "not a finite step of at least 0",
        ),
    ],
)
def test_inconsistent_content_with_a_valid_digest_is_rejected(fitted, path, edit, match):
    skdiffusion.save(fitted, path)
    _rewrite(path, edit)
    with pytest.raises(ValueError, match=match):
        skdiffusion.load(path)


# --- skops.io: a classifier and a Pipeline around one -----------------------------------


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 30 steps
@pytest.mark.parametrize("in_pipeline", [False, True])
def test_skops_round_trip_with_the_documented_trusted_types(fitted, tmp_path, in_pipeline):
    sio = pytest.importorskip("skops.io")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), _fit()).fit(X, Y) if in_pipeline else fitted
    path = tmp_path / "model.skops"
    sio.dump(model, path)  # was a RuntimeError: a torch tensor in the state
    assert sorted(sio.get_untrusted_types(file=path)) == sorted(skdiffusion.SKOPS_TRUSTED_TYPES)
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        sio.load(path)
    loaded = sio.load(path, trusted=skdiffusion.SKOPS_TRUSTED_TYPES)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert type(loaded[-1] if in_pipeline else loaded).__name__ == "DiffusionClassifier"


def test_skops_keeps_partial_fit_going(tmp_path):
    sio = pytest.importorskip("skops.io")
    clf = DiffusionClassifier(max_iter=30, n_trials=8, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.partial_fit(X, Y, classes=[0, 1, 2])
        sio.dump(clf, tmp_path / "model.skops")
        loaded = sio.load(tmp_path / "model.skops", trusted=skdiffusion.SKOPS_TRUSTED_TYPES)
        # Adam's moments travel too: the next call continues the same way.
        np.testing.assert_array_equal(loaded.partial_fit(X, Y).predict_proba(X), clf.partial_fit(X, Y).predict_proba(X))


def test_a_pickled_mlp_denoiser_is_plain_data_checked_on_load(fitted):
    state = fitted.__getstate__()
    assert set(state["denoiser_"]) == {"MLPDenoiser", "weights"}
    assert all(isinstance(w, np.ndarray) for w in state["denoiser_"]["weights"].values())
    assert isinstance(fitted.denoiser_, nn.Module)  # the estimator itself is left as it was
    state["denoiser_"]["MLPDenoiser"]["hidden_size"] = 10**6  # more than its weights
    with pytest.raises(ValueError, match="describe more weights than"):
        DiffusionClassifier.__new__(DiffusionClassifier).__setstate__(state)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 30 steps
def test_mlflow_sklearn_flavor_saves_and_loads_a_pipeline(tmp_path):
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipeline = make_pipeline(StandardScaler(), _fit())
    pipeline.fit(X, Y)
    path = tmp_path / "model"
    # MLflow's default format is skops, which needs our types trusted by name.
    mlflow_sklearn.save_model(pipeline, path, skops_trusted_types=skdiffusion.SKOPS_TRUSTED_TYPES)
    loaded = mlflow_sklearn.load_model(str(path))
    np.testing.assert_array_equal(loaded.predict_proba(X), pipeline.predict_proba(X))
    # skdiffusion's own requirement brings torch and safetensors with it.
    requirements = (path / "requirements.txt").read_text().split()
    assert any(r.startswith("skdiffusion") for r in requirements)
