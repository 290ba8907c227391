"""Pretrained `diffusers <https://huggingface.co/docs/diffusers>`_ models as skdiffusion denoisers.

Install with ``pip install "skdiffusion[diffusers]"``. The adapters turn a diffusers model
into a denoiser of skdiffusion's contract, ``forward(x_t, t, y) -> eps_hat``, so that a
:class:`~skdiffusion.DiffusionClassifier` with ``max_iter=0`` classifies with it zero-shot;
:class:`VAEEncoder` maps images to the latents of a latent diffusion model such as DiT.
"""

import importlib.util
from numbers import Integral

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import validate_data
from torch import nn

from ._validation import check_sample_shape

# The adapters only call the models; the check is for a clear message, not for an import.
if importlib.util.find_spec("diffusers") is None:
    raise ImportError('skdiffusion.diffusers needs the diffusers package: pip install "skdiffusion[diffusers]"')

__all__ = ["DiTAdapter", "UNet2DAdapter", "VAEEncoder", "scheduler_alphas_cumprod"]


def scheduler_alphas_cumprod(scheduler):
    """Return the ``alphas_cumprod`` of a diffusers scheduler, as ``noise_schedule`` takes them.

    Diffusers indexes its schedules as skdiffusion does: ``alphas_cumprod[t]`` for the
    integer timesteps ``t = 0, ..., num_train_timesteps - 1`` of the forward process, so the
    returned array can be passed as ``DiffusionClassifier(noise_schedule=...)`` unchanged.

    Parameters
    ----------
    scheduler : diffusers scheduler
        A scheduler with an ``alphas_cumprod`` tensor, e.g. ``DDPMScheduler`` or
        ``DDIMScheduler``, built with the configuration the model was trained with
        (``DDPMScheduler.from_pretrained(repo, subfolder="scheduler")``).

    Returns
    -------
    alphas_cumprod : ndarray of shape (num_train_timesteps,)
        The scheduler's values, float64.

    Examples
    --------
    >>> from diffusers import DDPMScheduler
    >>> from skdiffusion.diffusers import scheduler_alphas_cumprod
    >>> scheduler_alphas_cumprod(DDPMScheduler(num_train_timesteps=1000)).shape
    (1000,)
    """
    alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)
    if not isinstance(alphas_cumprod, torch.Tensor):
        raise TypeError(f"{type(scheduler).__name__} has no alphas_cumprod tensor; pass a DDPM-style scheduler.")
    return alphas_cumprod.detach().cpu().double().numpy()


class _Adapter(nn.Module):
    """Maps class indices to label ids, runs the model in its dtype and in batches, keeps eps."""

    def __init__(self, model, label_ids=None, *, eval_batch_size=None):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        if eval_batch_size is not None and not (isinstance(eval_batch_size, Integral) and eval_batch_size >= 1):
            raise ValueError(f"eval_batch_size must be None or a positive int, got {eval_batch_size!r}.")
        self.model = model
        self.eval_batch_size = None if eval_batch_size is None else int(eval_batch_size)
        if label_ids is not None:
            ids = np.asarray(label_ids)
            if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(f"label_ids must be a 1-D sequence of ints, got {label_ids!r}.")
            label_ids = torch.as_tensor(ids, dtype=torch.long)
        # A buffer: it moves with .to(device) and is saved with the weights.
        self.register_buffer("label_ids", label_ids)

    def forward(self, x_t, t, y):
        labels = y if self.label_ids is None else self.label_ids[y]
        dtype = next(self.model.parameters(), x_t).dtype
        rows = self.eval_batch_size or max(1, x_t.shape[0])
        eps_hat = torch.cat(
            [
                self._predict(x.to(dtype), t_batch, labels_batch)
                for x, t_batch, labels_batch in zip(x_t.split(rows), t.split(rows), labels.split(rows))
            ]
        )
        channels = x_t.shape[1]
        if eps_hat.ndim == x_t.ndim and eps_hat.shape[1] == 2 * channels:
            # A learned variance (Nichol & Dhariwal, 2021) is stacked after eps on the channels.
            eps_hat = eps_hat[:, :channels]
        return eps_hat.to(x_t.dtype)

    def _predict(self, x_t, t, labels):
        raise NotImplementedError


class UNet2DAdapter(_Adapter):
    """A class-conditional diffusers ``UNet2DModel`` as a denoiser ``forward(x_t, t, y) -> eps_hat``.

    Calls ``model(x_t, t, class_labels=label_ids[y]).sample``; a model whose output has
    twice the input's channels (a learned variance) gives its first half, the predicted
    noise. The model runs in its own dtype (e.g. float16 on a GPU) and the prediction is
    returned as float32.

    Parameters
    ----------
    model : diffusers.UNet2DModel
        A noise-predicting U-Net built with class embeddings (``num_class_embeds``).
    label_ids : None or array-like of int of shape (n_classes,), default=None
        ``label_ids[c]`` is the model's label id for the classifier's class index ``c``
        (the position of the label in ``classes_``). None: the class index itself.
    eval_batch_size : None or int, default=None
        Rows of each model call: larger inputs are split, and the classifier scores in
        calls of exactly this many rows (padded), instead of its default 1024. Set it for
        a large model, to bound its memory and to waste no work on padding when a call
        holds few trials (e.g. the number of trials of a pruning stage).

    Examples
    --------
    >>> import torch
    >>> from diffusers import UNet2DModel
    >>> from skdiffusion.diffusers import UNet2DAdapter
    >>> unet = UNet2DModel(
    ...     sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
    ...     layers_per_block=1, norm_num_groups=8, num_class_embeds=10,
    ...     down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    ... )
    >>> denoiser = UNet2DAdapter(unet, label_ids=[3, 7])  # two classes: the model's labels 3 and 7
    >>> x_t, t, y = torch.zeros(4, 1, 8, 8), torch.full((4,), 10), torch.tensor([0, 1, 0, 1])
    >>> denoiser(x_t, t, y).shape
    torch.Size([4, 1, 8, 8])
    """

    def _predict(self, x_t, t, labels):
        return self.model(x_t, t, class_labels=labels).sample


class DiTAdapter(_Adapter):
    """A diffusers ``DiTTransformer2DModel`` as a denoiser ``forward(x_t, t, y) -> eps_hat``.

    Calls ``model(x_t, timestep=t, class_labels=label_ids[y]).sample`` and keeps the first
    ``in_channels`` channels: DiT learns the reverse variance too (Peebles & Xie, 2023), so
    its output stacks eps and the variance, ``out_channels == 2 * in_channels``, as
    ``DiTPipeline`` splits it. ``x_t`` are latents of shape (n, in_channels, sample_size,
    sample_size), e.g. (n, 4, 32, 32) for DiT-XL/2 at 256 px: compose the classifier with
    a :class:`VAEEncoder`.

    Parameters
    ----------
    model : diffusers.DiTTransformer2DModel
        A class-conditional DiT.
    label_ids : None or array-like of int of shape (n_classes,), default=None
        ``label_ids[c]`` is the model's label id (e.g. the ImageNet class index) for the
        classifier's class index ``c``. None: the class index itself.
    eval_batch_size : None or int, default=None
        Rows of each model call; see :class:`UNet2DAdapter`.

    Examples
    --------
    >>> import torch
    >>> from diffusers import DiTTransformer2DModel
    >>> from skdiffusion.diffusers import DiTAdapter
    >>> dit = DiTTransformer2DModel(
    ...     num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
    ...     num_layers=1, sample_size=8, patch_size=2, num_embeds_ada_norm=10,
    ... )
    >>> x_t, t, y = torch.zeros(3, 4, 8, 8), torch.full((3,), 10), torch.arange(3)
    >>> DiTAdapter(dit)(x_t, t, y).shape  # the eps half of the 8 output channels
    torch.Size([3, 4, 8, 8])
    """

    def _predict(self, x_t, t, labels):
        return self.model(x_t, timestep=t, class_labels=labels).sample


class VAEEncoder(TransformerMixin, BaseEstimator):
    """Encode images into the scaled latents of a diffusers ``AutoencoderKL``.

    ``transform`` maps each row of ``X``, an image of shape ``image_shape`` in the VAE's
    input range [-1, 1], to the mean of the VAE's posterior (deterministic, as Li et al.
    (2023) encode for DiT) times ``vae.config.scaling_factor`` (after subtracting its
    ``shift_factor``, if it has one), flattened: the space a latent diffusion model was
    trained in. Put it before a :class:`~skdiffusion.DiffusionClassifier` with
    ``standardize=False`` and ``image_shape`` set to the latents' shape in a
    :class:`~sklearn.pipeline.Pipeline`. It learns nothing: ``transform`` works without
    ``fit``. The VAE runs on the device and in the dtype of its weights, a batch at a time.

    Parameters
    ----------
    vae : diffusers.AutoencoderKL
        The VAE the diffusion model was trained with.
    image_shape : tuple of int (C, H, W), default=(3, 256, 256)
        Shape of one image, in the row-major order of ``X[i].reshape(image_shape)``.
    batch_size : int, default=16
        Images encoded per call of the VAE.

    Examples
    --------
    >>> import numpy as np
    >>> from diffusers import AutoencoderKL
    >>> from skdiffusion.diffusers import VAEEncoder
    >>> vae = AutoencoderKL(
    ...     block_out_channels=(8, 16), norm_num_groups=8, latent_channels=4,
    ...     down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    ... )
    >>> VAEEncoder(vae, image_shape=(3, 16, 16)).transform(np.zeros((2, 3 * 16 * 16))).shape
    (2, 256)
    """

    _parameter_constraints = {
        "vae": [nn.Module],
        "image_shape": [tuple],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, vae, *, image_shape=(3, 256, 256), batch_size=16):
        self.vae = vae
        self.image_shape = image_shape
        self.batch_size = batch_size

    def fit(self, X, y=None):
        """Check ``X``; nothing is learned.

        Parameters
        ----------
        X : array-like of shape (n_samples, C * H * W)
            Images, flattened.
        y : None
            Ignored.

        Returns
        -------
        self : VAEEncoder
            The transformer.
        """
        self._validate_params()
        self._check(validate_data(self, X, dtype=[np.float32, np.float64]))
        return self

    @torch.no_grad()
    def transform(self, X):
        """Return the scaled posterior means of the images, flattened.

        Parameters
        ----------
        X : array-like of shape (n_samples, C * H * W)
            Images in [-1, 1], flattened as ``X[i].reshape(image_shape)`` unflattens them.

        Returns
        -------
        latents : ndarray of shape (n_samples, n_latent_features)
            ``scaling_factor * (mean - shift_factor)``, float32, flattened from shape
            (latent_channels, H / f, W / f) with ``f`` the VAE's downsampling factor.
        """
        self._validate_params()
        X = self._check(validate_data(self, X, reset=False, dtype=[np.float32, np.float64]))
        weights = next(self.vae.parameters())
        scale = self.vae.config.scaling_factor
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        latents = []
        for start in range(0, X.shape[0], self.batch_size):
            images = torch.as_tensor(X[start : start + self.batch_size]).reshape(-1, *self.image_shape)
            mean = self.vae.encode(images.to(weights.device, weights.dtype)).latent_dist.mean
            latents.append((scale * (mean - shift)).flatten(1).float().cpu().numpy())
        return np.concatenate(latents)

    def _check(self, X):
        """Return ``X``, or raise a ValueError if its rows are not images of ``image_shape``."""
        check_sample_shape(self.image_shape, X.shape[1])
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags
