"""The convolutional U-Net denoiser, and DiffusionClassifier on images (``image_shape``)."""

import functools
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import nn

from skdiffusion import DiffusionClassifier, MLPDenoiser, UNetDenoiser, load, save
from skdiffusion._denoisers import build_denoiser, check_denoiser

SMALL = functools.partial(UNetDenoiser, base_channels=8, n_groups=4)


def _inputs(n, image_shape, n_classes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x_t = torch.randn((n, *image_shape), generator=generator)
    t = torch.randint(1000, (n,), generator=generator)
    y = torch.randint(n_classes, (n,), generator=generator)
    return x_t, t, y


def _randomise(net):
    """Give every zero-initialised layer random weights, so that every input matters."""
    torch.manual_seed(0)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.2)
    return net


@pytest.mark.parametrize(
    "image_shape, channel_mults", [((1, 8, 8), (1, 2)), ((3, 7, 9), (1, 2)), ((2, 5, 6), (1, 2, 2)), ((1, 1, 1), (1,))]
)
def test_unet_output_shape_and_zero_at_init(image_shape, channel_mults):
    net = SMALL(image_shape, 3, channel_mults=channel_mults)
    eps_hat = net(*_inputs(4, image_shape, 3))
    assert eps_hat.shape == (4, *image_shape)
    assert eps_hat.dtype == torch.float32
    # The output convolution starts at zero (as in k-diffusion): the first prediction is 0.
    assert torch.equal(eps_hat, torch.zeros(4, *image_shape))


@pytest.mark.parametrize("class_blocks", [0, 1, 2])
def test_unet_forward_all_equals_forward_under_each_class(class_blocks):
    net = _randomise(SMALL((2, 6, 6), 3, class_blocks=class_blocks))
    x_t, t, _ = _inputs(5, (2, 6, 6), 3)
    per_class = torch.stack([net(x_t, t, torch.full((5,), c)) for c in range(3)], dim=1)
    all_classes = net.forward_all(x_t, t)
    assert all_classes.shape == (5, 3, 2, 6, 6)
    torch.testing.assert_close(all_classes, per_class, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("class_blocks", [0, 2])
def test_unet_conditions_on_class_and_timestep(class_blocks):
    net = _randomise(SMALL((1, 4, 4), 3, class_blocks=class_blocks))
    x_t = torch.zeros(3, 1, 4, 4)
    by_class = net(x_t, torch.full((3,), 10), torch.arange(3))
    by_time = net(x_t, torch.tensor([0, 500, 999]), torch.zeros(3, dtype=torch.long))
    assert torch.unique(by_class, dim=0).shape[0] == 3
    assert torch.unique(by_time, dim=0).shape[0] == 3


def test_unet_rows_do_not_depend_on_each_other():
    net = _randomise(SMALL((1, 8, 8), 2))
    x_t, t, y = _inputs(6, (1, 8, 8), 2)
    torch.testing.assert_close(net(x_t, t, y)[:2], net(x_t[:2], t[:2], y[:2]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_shape": (8, 8)}, "image_shape must be"),
        ({"image_shape": (1, 0, 8)}, "image_shape must be"),
        ({"class_blocks": 3}, r"class_blocks must be in \[0, 2\]"),
    ],
)
def test_unet_rejects_bad_arguments(kwargs, match):
    arguments = {"image_shape": (1, 8, 8), "n_classes": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        UNetDenoiser(**arguments)


def test_unet_keeps_the_denoiser_contract():
    check_denoiser(SMALL((3, 5, 5), 4), (3, 5, 5), 4, torch.device("cpu"))


def test_build_denoiser_with_an_image_shape():
    assert isinstance(build_denoiser(None, 64, 10), MLPDenoiser)
    built = build_denoiser(UNetDenoiser, 64, 10, image_shape=(1, 8, 8))
    assert isinstance(built, UNetDenoiser) and built.image_shape == (1, 8, 8)
    seen = []
    record = lambda shape, n_classes: seen.append((shape, n_classes)) or SMALL(shape, n_classes)  # noqa: E731
    build_denoiser(record, 12, 2, image_shape=(3, 2, 2))
    assert seen == [((3, 2, 2), 2)]
    with pytest.raises(TypeError, match=r"denoiser\(image_shape, n_classes\) returned dict"):
        build_denoiser(lambda shape, n_classes: {}, 4, 2, image_shape=(1, 2, 2))


def _bars(n_per_class, seed=0):
    """Two well-separated classes of 1 x 6 x 6 images: a vertical or a horizontal bar, with noise."""
    rng = np.random.default_rng(seed)
    images = np.zeros((2 * n_per_class, 1, 6, 6))
    y = np.repeat([0, 1], n_per_class)
    position = rng.integers(1, 5, size=y.size)
    for i, (label, k) in enumerate(zip(y, position)):
        if label == 0:
            images[i, 0, :, k] = 1.0
        else:
            images[i, 0, k, :] = 1.0
    images += 0.1 * rng.standard_normal(images.shape)
    return images.reshape(y.size, -1), y


@pytest.fixture(scope="module")
def bars_fitted():
    X, y = _bars(60)
    clf = DiffusionClassifier(SMALL, image_shape=(1, 6, 6), max_iter=150, n_trials=16, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(X, y)


def test_images_are_classified(bars_fitted):
    X_test, y_test = _bars(30, seed=1)
    assert isinstance(bars_fitted.denoiser_, UNetDenoiser)
    assert bars_fitted.denoiser_.image_shape == (1, 6, 6)
    assert bars_fitted.score(X_test, y_test) == 1.0


def test_image_probabilities_do_not_depend_on_the_other_rows(bars_fitted):
    X, _ = _bars(30, seed=1)
    proba = bars_fitted.predict_proba(X)
    np.testing.assert_allclose(bars_fitted.predict_proba(X[5:8]), proba[5:8], rtol=0, atol=1e-7)
    np.testing.assert_allclose(bars_fitted.predict_proba(X[::-1]), proba[::-1], rtol=0, atol=1e-9)


def test_image_samples_come_back_as_rows(bars_fitted):
    X_new, y_new = bars_fitted.sample(3, y=1, random_state=0)
    assert X_new.shape == (3, 36) and y_new.tolist() == [1, 1, 1]
    assert np.isfinite(X_new).all()


def test_image_model_round_trips_through_pickle_and_save(bars_fitted, tmp_path):
    X, _ = _bars(10, seed=2)
    expected = bars_fitted.predict_proba(X)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(bars_fitted)).predict_proba(X), expected)
    save(bars_fitted, tmp_path / "bars.safetensors")
    loaded = load(tmp_path / "bars.safetensors", denoiser=SMALL)
    assert loaded.image_shape == (1, 6, 6)
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)


def test_flat_default_is_unchanged():
    assert DiffusionClassifier().image_shape is None
    X, y = _bars(5)
    clf = DiffusionClassifier(max_iter=1, validation_fraction=None, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert isinstance(clf.denoiser_, MLPDenoiser)


@pytest.mark.parametrize(
    "image_shape, match",
    [
        ((1, 6, 5), r"image_shape=\(1, 6, 5\) holds 30 values, but X has 36 features"),
        ((6, 6), "image_shape must be a tuple"),
        ((1, 6, 6.0), "image_shape must be a tuple"),
        ((0, 6, 6), "image_shape must be a tuple"),
    ],
)
def test_bad_image_shape_is_rejected(image_shape, match):
    X, y = _bars(5)
    with pytest.raises(ValueError, match=match):
        DiffusionClassifier(SMALL, image_shape=image_shape, max_iter=1).fit(X, y)


def test_image_shape_must_be_a_tuple():
    X, y = _bars(5)
    with pytest.raises(ValueError, match="image_shape"):
        DiffusionClassifier(image_shape=[1, 6, 6], max_iter=1).fit(X, y)
