"""Saving a fitted DiffusionClassifier as plain data: safetensors weights and JSON, no pickle."""

import dataclasses
import hashlib
import json
import os
import re
import struct

import numpy as np
import safetensors
import safetensors.torch
import torch
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from ._classifier import DiffusionClassifier
from ._denoisers import MLPDenoiser, build_denoiser, check_denoiser, mlp_arguments, mlp_from_weights
from ._tabular import input_width
from ._training import TrainingState
from ._validation import check_alphas_cumprod, check_sample_shape, timestep_bounds

FORMAT = "skdiffusion"
FORMAT_VERSION = 1
# numpy dtype kinds an array in the file may have: bool, integers, floats, strings, and
# object arrays of strings (string labels and feature names).
ARRAY_KINDS = set("biufUO")
# The fitted attributes without which predict cannot run.
REQUIRED = (
    "classes_",
    "class_prior_",
    "n_features_in_",
    "scaler_",
    "alphas_cumprod_",
    "noise_seed_",
    "timestep_range_",
    "scale_",
    "is_categorical_",
    "categories_",
    "category_count_",
    "category_weight_",
)
FITTED_NAME = re.compile(r"[a-z][a-z0-9_]*_")


def save(clf, path):
    """Save a fitted :class:`DiffusionClassifier` to ``path`` without pickle.

    The file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file: the
    denoiser's weights as tensors, and the parameters and every other fitted attribute
    (classes, priors, standardisation, noise schedule, timestep range, error scale,
    noise seed, loss curve, ...) as JSON in its metadata, with a SHA-256 digest of both.
    :func:`load` reads it back without running any code from the file, unlike pickle.

    Parameters
    ----------
    clf : DiffusionClassifier
        A fitted classifier. Its denoiser must be an ``nn.Module`` whose ``state_dict``
        holds only tensors.
    path : str or path-like
        The file to write (conventionally ``*.safetensors``); an existing file is replaced.

    See Also
    --------
    load : Read the file back.

    Notes
    -----
    The default :class:`MLPDenoiser` is stored with its constructor arguments, so
    :func:`load` rebuilds it. Any other denoiser is stored as weights only: pass a
    module of the same architecture (or a callable that builds one, as the ``denoiser``
    parameter) to ``load(path, denoiser=...)``. The optimizer's moments, which
    :meth:`~DiffusionClassifier.partial_fit` carries from call to call, are not stored: a
    loaded classifier's next ``partial_fit`` starts them afresh.
    """
    if not isinstance(clf, DiffusionClassifier):
        raise TypeError(f"save expects a DiffusionClassifier, got {type(clf).__name__}.")
    check_is_fitted(clf)
    params = clf.get_params(deep=False)
    denoiser = clf.denoiser_
    content = {
        # The cache of trained networks (memory) is this machine's, not the model's.
        "params": {
            name: _encode_parameter(name, None if name == "memory" else value)
            for name, value in params.items()
            if name != "denoiser"
        },
        "denoiser": _denoiser_spec(denoiser, params["denoiser"]),
        "attributes": {},
    }
    for name, value in vars(clf).items():
        # Callbacks (set_callbacks) watch fits; they are not part of the model.
        if name in params or name in ("denoiser_", "_skl_callbacks"):
            continue
        if name == "scaler_":
            fitted = {key: item for key, item in vars(value).items() if key.endswith("_")}
            value = {"params": value.get_params(), "attributes": fitted}
        elif name == "_training_state":
            # Adam's moments of partial_fit are not stored: a loaded model's next call starts them afresh.
            value = dataclasses.asdict(dataclasses.replace(value, optimizer_state=None))
        elif not FITTED_NAME.fullmatch(name):
            raise TypeError(f"save does not know how to store the attribute {name!r} of DiffusionClassifier.")
        try:
            content["attributes"][name] = _encode(value)
        except TypeError as exc:
            raise TypeError(f"save cannot store the attribute {name!r}: {exc}") from exc
    tensors = {}
    for name, tensor in denoiser.state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"The denoiser's state_dict holds {name!r} of type {type(tensor).__name__}, not a tensor.")
        # A copy of its own: safetensors refuses tensors that share memory (tied weights).
        tensors[name] = tensor.detach().to("cpu", copy=True).contiguous()
    text = json.dumps(content, allow_nan=True)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "content": text,
        "sha256": _digest(text, tensors),
    }
    data = safetensors.torch.save(tensors, metadata=metadata)
    with open(os.fspath(path), "wb") as file:
        file.write(data)


def load(path, *, denoiser=None):
    """Load a classifier saved by :func:`save`, without running code from the file.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.
    denoiser : None, nn.Module class or callable, or nn.Module instance, default=None
        The network into which the saved weights are loaded, given as the
        ``denoiser`` parameter of :class:`DiffusionClassifier` is (an instance is copied,
        a class or callable is called as ``denoiser(n_features, n_classes)``); it becomes
        the loaded classifier's ``denoiser`` parameter. Needed when the classifier was
        fitted with a denoiser other than :class:`MLPDenoiser`; None rebuilds the
        :class:`MLPDenoiser` from its saved constructor arguments.

    Returns
    -------
    clf : DiffusionClassifier
        The fitted classifier, its network on the CPU; its probabilities are bit for bit
        those of the saved one on the same machine. A ``device`` parameter that names a
        device this machine lacks can be changed with ``set_params(device="cpu")``.

    Raises
    ------
    ValueError
        If the file is not a valid skdiffusion file: not safetensors, another format
        version, a digest that does not match its contents (the file was corrupted or
        edited), or contents that are inconsistent; or if the weights do not fit the
        given ``denoiser``.

    See Also
    --------
    save : Write the file.

    Examples
    --------
    >>> import os, tempfile
    >>> import skdiffusion
    >>> from skdiffusion.datasets import make_spirals
    >>> X, y = make_spirals(n_samples=200, random_state=0)
    >>> clf = skdiffusion.DiffusionClassifier(max_iter=300, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> skdiffusion.save(clf, path)
    >>> loaded = skdiffusion.load(path)
    >>> bool((loaded.predict_proba(X) == clf.predict_proba(X)).all())
    True
    """
    with open(os.fspath(path), "rb") as file:
        data = file.read()
    try:
        metadata = _metadata(data)
        tensors = safetensors.torch.load(data)
    except (ValueError, safetensors.SafetensorError) as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a safetensors file written by skdiffusion.save: {exc}") from exc
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is a safetensors file, but not one written by skdiffusion.save.")
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise ValueError(
            f"{os.fspath(path)!r} has skdiffusion format version {metadata.get('format_version')!r}; "
            f"this version of skdiffusion reads version {FORMAT_VERSION}."
        )
    text = metadata.get("content", "")
    if metadata.get("sha256") != _digest(text, tensors):
        raise ValueError(
            f"{os.fspath(path)!r} does not match its SHA-256 digest: the file was corrupted or edited after save."
        )
    try:
        return _rebuild(json.loads(text), tensors, denoiser)
    except KeyError as exc:
        raise ValueError(f"Cannot load {os.fspath(path)!r}: the entry {exc} is missing.") from exc
    except (ValueError, TypeError, AttributeError, RecursionError, IndexError, OverflowError, RuntimeError) as exc:
        raise ValueError(f"Cannot load {os.fspath(path)!r}: {exc}.") from exc


def _rebuild(content, tensors, denoiser):
    """Return the classifier described by the file's ``content`` and weights ``tensors``."""
    params = {name: _decode(value) for name, value in _dict(content["params"]).items()}
    if "denoiser" in params:
        raise ValueError("the denoiser parameter is not stored as data")
    spec = _dict(content["denoiser"])
    attributes = _dict(content["attributes"])
    missing = [name for name in REQUIRED if name not in attributes]
    if missing:
        raise ValueError(f"fitted attributes {missing} are missing")
    clf = DiffusionClassifier(**params)
    clf._validate_params()
    if clf.n_jobs is not None and abs(clf.n_jobs) > (os.cpu_count() or 1):
        # How many processes to start is this machine's choice, not the file's.
        clf.n_jobs = -1
    for name, value in attributes.items():
        if name == "scaler_":
            scaler = _dict(_decode(value))
            clf.scaler_ = StandardScaler(**_dict(scaler["params"]))
            for key, item in _dict(scaler["attributes"]).items():
                if not FITTED_NAME.fullmatch(key):
                    raise ValueError(f"unexpected scaler attribute {key!r}")
                setattr(clf.scaler_, key, item)
        elif name == "_training_state":
            fields = _dict(_decode(value))
            known = {f.name for f in dataclasses.fields(TrainingState)}
            if not set(fields) <= known:
                raise ValueError(f"unexpected training-state fields {sorted(set(fields) - known)}")
            clf._training_state = TrainingState(**fields)
        elif FITTED_NAME.fullmatch(name) and not hasattr(DiffusionClassifier, name) and name not in params:
            setattr(clf, name, _decode(value))
        else:
            raise ValueError(f"unexpected attribute {name!r}")
    if not hasattr(clf, "network_categories_"):  # saved before it was kept: the network read every category
        clf.network_categories_ = [np.ones(len(c), dtype=bool) for c in clf.categories_]
    if not hasattr(clf, "value_steps_"):  # saved before dequantization: trained on the values as they are
        clf.value_steps_ = np.zeros(np.asarray(clf.is_categorical_).shape)
    width, n_classes = _check_shapes(clf)
    if denoiser is None and spec.get("class") != "MLPDenoiser":
        raise ValueError(
            f"the classifier was fitted with the denoiser {spec.get('class')!r}, which only code can rebuild: "
            "pass load(path, denoiser=...), a module of that architecture or a callable that builds one"
        )
    # Building a network draws its initial weights; the caller's torch generator is left alone.
    with torch.random.fork_rng(devices=[]):
        if denoiser is not None:
            module = build_denoiser(denoiser, width, n_classes, image_shape=clf.image_shape)
            clf.denoiser = denoiser
            try:
                module.load_state_dict(tensors, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"the saved weights do not fit the denoiser {type(module).__name__}: {exc}") from exc
            module.eval()
        else:
            arguments = _dict(spec["arguments"])
            module = mlp_from_weights(arguments, tensors)  # checked, loaded, in eval mode
            if spec.get("parameter") == "MLPDenoiser":
                clf.denoiser = MLPDenoiser
            elif spec.get("parameter") is not None:  # an instance or a callable: the same architecture
                clf.denoiser = MLPDenoiser(**arguments)
    # Not trainable, perhaps: a frozen pretrained denoiser, fitted with max_iter=0.
    check_denoiser(module, check_sample_shape(clf.image_shape, width), n_classes, torch.device("cpu"), trainable=False)
    clf.denoiser_ = module
    return clf


def _check_shapes(clf):
    """Raise a ValueError unless the fitted attributes have valid types and values and agree in shape.

    Returns (the denoiser's input width, n_classes).
    """
    classes = clf.classes_
    if not (isinstance(classes, np.ndarray) and classes.ndim == 1 and np.all(classes[:-1] < classes[1:])):
        raise ValueError(f"classes_={classes!r} is not a sorted array of distinct labels")
    n_features, n_classes = clf.n_features_in_, len(classes)
    if not (type(n_features) is int and n_features >= 1 and n_classes >= 2):
        raise ValueError(f"n_features_in_={n_features!r} and {n_classes} classes")
    for name in ("noise_seed_", "n_iter_"):
        value = getattr(clf, name, 0)
        if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < 2**63):
            raise ValueError(f"{name}={value!r} is not a non-negative integer")
    prior = np.asarray(clf.class_prior_)
    if not (prior.dtype.kind == "f" and np.all(prior >= 0) and np.isclose(prior.sum(), 1.0)):  # NaN fails too
        raise ValueError(f"class_prior_={clf.class_prior_!r} is not a probability vector")
    if not all(
        np.asarray(count).dtype.kind in "iuf" and np.all(np.asarray(count) >= 0) for count in clf.category_count_
    ):
        raise ValueError("category_count_ holds counts that are not non-negative numbers")
    is_categorical, categories = np.asarray(clf.is_categorical_), clf.categories_
    n_numeric = n_features - int(is_categorical.sum()) if is_categorical.dtype == bool else -1
    counts = [np.shape(count) for count in clf.category_count_]
    if not (isinstance(categories, list) and len(categories) == n_features - n_numeric == len(counts)):
        raise ValueError(f"is_categorical_, categories_ and category_count_ disagree: {is_categorical}")
    if counts != [(n_classes, len(c)) for c in categories]:
        raise ValueError(f"category_count_ has shapes {counts}, not (n_classes, n_categories) of categories_")
    read = clf.network_categories_
    if not (isinstance(read, list) and [np.shape(r) for r in read] == [(len(c),) for c in categories]):
        raise ValueError("network_categories_ does not hold a mask of each categorical feature's categories_")
    if not all(np.asarray(r).dtype == bool for r in read):
        raise ValueError("network_categories_ holds masks that are not boolean")
    expected = {
        "is_categorical_": (is_categorical.shape, (n_features,)),
        "class_prior_": (np.shape(clf.class_prior_), (n_classes,)),
        # standardize=False: the identity scaler, which holds None.
        "scaler_.mean_": (np.shape(clf.scaler_.mean_), (n_numeric,) if clf.standardize else ()),
        "scaler_.scale_": (np.shape(clf.scaler_.scale_), (n_numeric,) if clf.standardize else ()),
        "alphas_cumprod_": (np.shape(clf.alphas_cumprod_), (clf.n_diffusion_steps,)),
        "timestep_range_": (np.shape(clf.timestep_range_), (2,)),
        "value_steps_": (np.shape(clf.value_steps_), (n_features,)),
    }
    for name, (shape, want) in expected.items():
        if shape != want:
            raise ValueError(f"{name} has shape {shape}, expected {want}")
    steps = np.asarray(clf.value_steps_)
    if not (steps.dtype.kind == "f" and np.isfinite(steps).all() and (steps >= 0).all()):
        raise ValueError(f"value_steps_ holds {steps.tolist()}, not a finite step of at least 0 per feature")
    if (steps[is_categorical] != 0).any():
        raise ValueError("value_steps_ gives a categorical feature a step")
    timestep_bounds(clf.timestep_range_, clf.n_diffusion_steps)
    check_alphas_cumprod(clf.alphas_cumprod_, clf.n_diffusion_steps)
    weights = (clf.scale_, clf.category_weight_)
    if not all(isinstance(w, (float, np.floating)) and np.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"scale_={clf.scale_!r} or category_weight_={clf.category_weight_!r} is not a positive number")
    return input_width(n_numeric, read), n_classes


def _denoiser_spec(module, parameter):
    """Return the plain-data description of the fitted denoiser and of the ``denoiser`` parameter."""
    spec = {"class": f"{type(module).__module__}.{type(module).__qualname__}"}
    spec["parameter"] = None if parameter is None else "MLPDenoiser" if parameter is MLPDenoiser else "custom"
    if type(module) is MLPDenoiser:
        spec["class"] = "MLPDenoiser"
        spec["arguments"] = mlp_arguments(module)
    return spec


def _encode_parameter(name, value):
    """Return the parameter ``value`` encoded; raise a TypeError naming it if it cannot be stored."""
    try:
        return _encode(value)
    except TypeError as exc:
        hint = " (pass a numpy array, e.g. scheduler_alphas_cumprod(scheduler))" if name == "noise_schedule" else ""
        raise TypeError(f"save cannot store the parameter {name}, a {type(value).__name__}: {exc}{hint}") from exc


def _encode(value):
    """Return ``value`` as JSON-ready data, numpy values and tuples tagged; raise a TypeError otherwise."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float
        return {"__scalar__": _dtype(value.dtype.str).str, "value": value.item()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, np.random.RandomState):
        kind, keys, pos, has_gauss, cached = value.get_state()
        return {"__random_state__": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in ARRAY_KINDS or (
            value.dtype.kind == "O" and not all(isinstance(v, str) for v in value.flat)
        ):
            raise TypeError(f"arrays of dtype {value.dtype} cannot be stored")
        return {"__array__": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _encode(v) for k, v in value.items()}}
    if isinstance(value, dict):  # keys other than strings, e.g. class_weight={0: 1.0, 1: 3.0}
        return {"__mapping__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    raise TypeError(f"values of type {type(value).__name__} cannot be stored")


def _decode(value):
    """Invert :func:`_encode`; only the tags it writes are accepted."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v) for v in value]
    value = _dict(value)
    if set(value) == {"__scalar__", "value"}:
        dtype = _dtype(value["__scalar__"])
        return dtype.type(value["value"])
    if set(value) == {"__array__", "shape", "data"}:
        dtype = _dtype(value["__array__"])
        data = value["data"]
        if not isinstance(data, list):
            raise ValueError("array data must be a list")
        if dtype.kind in "OU" and not all(isinstance(v, str) for v in data):
            raise ValueError("string arrays may hold only strings")
        if dtype.kind == "U" and dtype.itemsize // 4 > max(map(len, data), default=0):
            # save writes numpy's own width, that of the longest string: a wider one would
            # only make this array take memory the file does not hold.
            raise ValueError(f"dtype {dtype.str} is wider than its longest string")
        array = np.empty(len(data), dtype=dtype)
        array[:] = data
        return array.reshape([int(n) for n in value["shape"]])
    if set(value) == {"__tuple__"}:
        return tuple(_decode(v) for v in value["__tuple__"])
    if set(value) == {"__dict__"}:
        return {str(k): _decode(v) for k, v in _dict(value["__dict__"]).items()}
    if set(value) == {"__mapping__"}:
        pairs = [_decode(pair) for pair in value["__mapping__"]]
        if not all(isinstance(pair, list) and len(pair) == 2 for pair in pairs):
            raise ValueError("a mapping must be a list of [key, value] pairs")
        return {key: item for key, item in pairs}
    if set(value) == {"__random_state__"}:
        kind, keys, pos, has_gauss, cached = value["__random_state__"]
        if not (isinstance(keys, list) and len(keys) == 624):  # the Mersenne Twister's state
            raise ValueError("a random state needs 624 keys")
        random_state = np.random.RandomState()
        random_state.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        return random_state
    raise ValueError(f"unknown value {sorted(value)!r}")


def _dtype(text):
    """Return the numpy dtype named by ``text``, if it is one that arrays in the file may have."""
    dtype = np.dtype(str(text))
    if dtype.kind not in ARRAY_KINDS:
        raise ValueError(f"dtype {text!r} is not allowed")
    return dtype


def _dict(value):
    """Return ``value`` if it is a dict, else raise a ValueError."""
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {type(value).__name__}")
    return value


def _digest(text, tensors):
    """Return the SHA-256 of the JSON ``text`` and of every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256(text.encode())
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{list(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _metadata(data):
    """Return the ``__metadata__`` of a safetensors file's bytes (its JSON header)."""
    if len(data) < 8:
        raise ValueError("the file is too short")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise ValueError("the header is longer than the file")
    try:
        header = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"the header is not JSON ({exc})") from exc
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise ValueError("the header holds no metadata")
    return metadata
