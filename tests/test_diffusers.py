"""skdiffusion.diffusers: tiny randomly initialised diffusers models, built from configs (no download)."""

import importlib.util
import pathlib
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import nn

diffusers = pytest.importorskip("diffusers")

import skdiffusion  # noqa: E402
from skdiffusion import DiffusionClassifier  # noqa: E402
from skdiffusion._schedule import add_noise, as_tensor, make_alphas_cumprod  # noqa: E402
from skdiffusion.diffusers import DiTAdapter, UNet2DAdapter, VAEEncoder, scheduler_alphas_cumprod  # noqa: E402

ALPHAS_CUMPROD = scheduler_alphas_cumprod(diffusers.DDPMScheduler(num_train_timesteps=1000))
EXAMPLE = pathlib.Path(__file__).parents[1] / "examples" / "zero_shot_dit.py"


def _unet(n_classes=2, out_channels=1, seed=0):
    torch.manual_seed(seed)
    return diffusers.UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=out_channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        num_class_embeds=n_classes,
        add_attention=False,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )


def _dit(n_classes=10, seed=0):
    """A DiT with a learned variance: 8 output channels for 4 latent ones, as DiT-XL/2.

    In eval mode, as from_pretrained returns it: in training mode DiT replaces 10% of the
    labels by its null label (class dropout, for classifier-free guidance).
    """
    torch.manual_seed(seed)
    model = diffusers.DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=1,
        sample_size=4,
        patch_size=2,
        num_embeds_ada_norm=n_classes,
    )
    return model.eval()


def _vae(seed=0):
    """A VAE that halves the side: 3 x 8 x 8 images, 4 x 4 x 4 latents."""
    torch.manual_seed(seed)
    return diffusers.AutoencoderKL(
        block_out_channels=(8, 16),
        norm_num_groups=8,
        latent_channels=4,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )


def _inputs(n, shape, n_classes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x_t = torch.randn((n, *shape), generator=generator)
    return x_t, torch.randint(1000, (n,), generator=generator), torch.randint(n_classes, (n,), generator=generator)


class RecordingModel(nn.Module):
    """Stands in for a diffusers model: records the labels and returns eps and a variance of ones."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.class_labels = []

    def forward(self, x, timestep, class_labels):
        self.class_labels.append(class_labels.clone())
        return diffusers.models.modeling_outputs.Transformer2DModelOutput(
            sample=torch.cat([x + self.weight, torch.ones_like(x)], dim=1)
        )


def test_unet_adapter_returns_the_models_prediction():
    unet = _unet()
    x_t, t, y = _inputs(6, (1, 8, 8), 2)
    with torch.no_grad():
        expected = unet(x_t, t, class_labels=y).sample
        eps_hat = UNet2DAdapter(unet)(x_t, t, y)
    assert eps_hat.shape == x_t.shape and eps_hat.dtype == torch.float32
    torch.testing.assert_close(eps_hat, expected, rtol=0, atol=0)


def test_dit_adapter_keeps_the_eps_half_of_a_learned_variance():
    dit = _dit()
    x_t, t, y = _inputs(6, (4, 4, 4), 10)
    with torch.no_grad():
        raw = dit(x_t, timestep=t, class_labels=y).sample
        eps_hat = DiTAdapter(dit)(x_t, t, y)
    assert raw.shape == (6, 8, 4, 4) and eps_hat.shape == x_t.shape
    torch.testing.assert_close(eps_hat, raw[:, :4], rtol=0, atol=0)


def test_adapters_pass_the_mapped_label_ids():
    model = RecordingModel()
    adapter = DiTAdapter(model, label_ids=[207, 1, 360])
    x_t, t, _ = _inputs(4, (2, 3, 3), 3)
    eps_hat = adapter(x_t, t, torch.tensor([0, 2, 1, 0]))
    assert model.class_labels[-1].tolist() == [207, 360, 1, 207]
    torch.testing.assert_close(eps_hat, x_t)  # the first half of the channels
    DiTAdapter(model)(x_t, t, torch.tensor([0, 2, 1, 0]))  # no label_ids: the indices themselves
    assert model.class_labels[-1].tolist() == [0, 2, 1, 0]


def test_eval_batch_size_splits_calls_and_sets_the_scoring_block():
    model = RecordingModel()
    x_t, t, y = _inputs(7, (2, 3, 3), 3)
    eps_hat = DiTAdapter(model, eval_batch_size=3)(x_t, t, y)
    assert [len(labels) for labels in model.class_labels] == [3, 3, 1]
    torch.testing.assert_close(eps_hat, x_t)
    # Scoring calls the model with exactly eval_batch_size rows, however many pairs it scores.
    model.class_labels.clear()
    X = np.random.default_rng(0).standard_normal((2, 18))
    clf = DiffusionClassifier(
        DiTAdapter(model, eval_batch_size=5), image_shape=(2, 3, 3), max_iter=0, n_trials=4, pruning=None
    )
    clf.fit(X, [0, 1]).predict_proba(X)
    model = clf.denoiser_.model
    assert {len(labels) for labels in model.class_labels[1:]} == {5}  # after the contract check's batch of 2


def test_scheduler_schedule_is_the_one_skdiffusion_noises_with():
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000)
    alphas_cumprod = scheduler_alphas_cumprod(scheduler)
    assert alphas_cumprod.dtype == np.float64 and alphas_cumprod.shape == (1000,)
    np.testing.assert_array_equal(alphas_cumprod, scheduler.alphas_cumprod.double().numpy())
    # DDPM's linear schedule: the same values as skdiffusion's "linear", to float32 precision.
    np.testing.assert_allclose(alphas_cumprod, make_alphas_cumprod("linear", 1000), rtol=1e-5)
    # The same timestep convention: alphas_cumprod[t] for t in 0..999, in both forward processes.
    x0, t, _ = _inputs(5, (1, 8, 8), 2)
    t = torch.tensor([0, 1, 500, 998, 999])
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(add_noise(x0, eps, t, as_tensor(alphas_cumprod)), scheduler.add_noise(x0, eps, t))
    # The classifier stores the array it is given.
    clf = DiffusionClassifier(UNet2DAdapter(_unet()), image_shape=(1, 8, 8), max_iter=0, noise_schedule=alphas_cumprod)
    clf.fit(np.zeros((2, 64)), [0, 1])
    np.testing.assert_array_equal(clf.alphas_cumprod_, alphas_cumprod)


def test_vae_encoder_gives_the_scaled_posterior_mean():
    vae = _vae()
    images = np.random.default_rng(0).uniform(-1, 1, size=(5, 3 * 8 * 8)).astype(np.float32)
    encoder = VAEEncoder(vae, image_shape=(3, 8, 8), batch_size=2)
    latents = encoder.transform(images)  # no fit needed: it learns nothing
    with torch.no_grad():
        mean = vae.encode(torch.as_tensor(images).reshape(5, 3, 8, 8)).latent_dist.mean
    assert latents.shape == (5, 4 * 4 * 4) and latents.dtype == np.float32
    np.testing.assert_allclose(latents, (vae.config.scaling_factor * mean).flatten(1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(encoder.fit(images).transform(images), latents)  # deterministic
    with pytest.raises(ValueError, match=r"image_shape=\(3, 4, 4\) holds 48 values, but X has 192"):
        VAEEncoder(vae, image_shape=(3, 4, 4)).transform(images)


def test_max_iter_0_checks_the_contract_and_changes_no_parameter():
    dit = _dit().requires_grad_(False)  # frozen, as a pretrained model may be
    before = {name: tensor.clone() for name, tensor in dit.state_dict().items()}
    X = np.random.default_rng(0).standard_normal((10, 64)).astype(np.float32)
    clf = DiffusionClassifier(
        DiTAdapter(dit, label_ids=[3, 7]), image_shape=(4, 4, 4), max_iter=0, standardize=False, n_trials=8
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning
        clf.fit(X, np.arange(10) % 2)
    assert clf.n_iter_ == 0 and clf.loss_curve_ == []
    for name, tensor in before.items():
        torch.testing.assert_close(dit.state_dict()[name], tensor, rtol=0, atol=0)
        torch.testing.assert_close(clf.denoiser_.model.state_dict()[name], tensor, rtol=0, atol=0)
    assert clf.predict_proba(X).shape == (10, 2)
    # A denoiser that breaks the contract is caught on the batch of two: 5 latent channels.
    bad = DiffusionClassifier(DiTAdapter(dit), image_shape=(5, 4, 4), max_iter=0, standardize=False)
    with pytest.raises(ValueError, match="The denoiser failed on a batch of shape"):
        bad.fit(np.zeros((2, 80)), [0, 1])


def _two_images(n, seed):
    """8 x 8 images in [-1, 1]: class 0 bright in the top half, class 1 in the bottom half, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(2, size=n)
    images = np.full((n, 8, 8), -0.8)
    images[y == 0, :4] = 0.8
    images[y == 1, 4:] = 0.8
    return (images + 0.2 * rng.standard_normal(images.shape)).reshape(n, 64), y


@pytest.mark.slow
def test_a_unet_trained_here_classifies_zero_shot():
    X, y = _two_images(400, 0)
    X_test, y_test = _two_images(200, 1)
    settings = {"image_shape": (1, 8, 8), "noise_schedule": ALPHAS_CUMPROD, "standardize": False, "random_state": 0}
    # Train the diffusers U-Net as skdiffusion trains any denoiser (1.0 held-out accuracy after 60 steps) ...
    trainer = DiffusionClassifier(
        UNet2DAdapter(_unet()), max_iter=60, batch_size=64, learning_rate=1e-2, validation_fraction=None, **settings
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        trainer.fit(X, y)
    # ... then wrap the trained model, frozen, as a pretrained one; labels swapped to check label_ids.
    unet = trainer.denoiser_.model.requires_grad_(False)
    clf = DiffusionClassifier(UNet2DAdapter(unet, label_ids=[1, 0]), max_iter=0, n_trials=16, **settings)
    clf.fit(X[:100], 1 - y[:100])  # calibrated on these: 100 x 2 classes x 256 trials
    # Chance is 0.5; the bright half is obvious at moderate noise.
    assert clf.score(X_test, 1 - y_test) >= 0.9


def test_save_and_load_an_adapter(tmp_path):
    X, y = _two_images(20, 0)
    clf = DiffusionClassifier(
        UNet2DAdapter(_unet(), label_ids=[1, 0]),
        image_shape=(1, 8, 8),
        max_iter=0,
        n_trials=4,
        noise_schedule=ALPHAS_CUMPROD,
        standardize=False,
    ).fit(X, y)
    path = tmp_path / "model.safetensors"
    skdiffusion.save(clf, path)
    with pytest.raises(ValueError, match=r"skdiffusion\.diffusers\.UNet2DAdapter.*load\(path, denoiser=\.\.\.\)"):
        skdiffusion.load(path)
    # The architecture from the model's config; the weights and label ids from the file.
    config = clf.denoiser_.model.config
    loaded = skdiffusion.load(path, denoiser=UNet2DAdapter(diffusers.UNet2DModel.from_config(config), label_ids=[0, 0]))
    assert loaded.denoiser_.label_ids.tolist() == [1, 0]
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_the_dit_example_runs_with_tiny_models(tmp_path):
    spec = importlib.util.spec_from_file_location("zero_shot_dit", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    dit, vae = _dit(n_classes=3), _vae()
    size = example.image_size(dit, vae)
    assert size == 8
    for label in range(3):  # one folder per class, named by its label id
        (tmp_path / str(label)).mkdir()
        pixels = np.random.default_rng(label).integers(256, size=(12, 10, 3), dtype=np.uint8)
        example.Image.fromarray(pixels).save(tmp_path / str(label) / "image.png")
    paths, y = example.list_images(tmp_path, n_classes=3)
    X = example.read_images(paths, size)
    assert X.shape == (3, 3 * 8 * 8) and y.tolist() == [0, 1, 2]
    assert X.min() >= -1 and X.max() <= 1
    pipeline = example.build_classifier(
        dit, vae, ALPHAS_CUMPROD, n_trials=100, pruning=((50, 2),), device="cpu", batch_size=2
    )
    clf = pipeline[-1]
    assert clf.classes_.tolist() == [0, 1, 2] and clf.denoiser_.eval_batch_size == example.EVAL_BATCH_SIZE
    assert set(pipeline.predict(X)) <= {0, 1, 2}


@pytest.mark.parametrize(
    "params, match",
    [
        ({"label_ids": [0.5, 1.0]}, "label_ids must be a 1-D sequence of ints"),
        ({"label_ids": [[0, 1]]}, "label_ids must be a 1-D sequence of ints"),
        ({"eval_batch_size": 0}, "eval_batch_size must be None or a positive int"),
    ],
)
def test_adapters_reject_bad_settings(params, match):
    with pytest.raises(ValueError, match=match):
        DiTAdapter(RecordingModel(), **params)
