"""A small convolutional U-Net denoiser ``eps_theta(x_t, t, y)`` for images."""

import torch
from torch import nn
from torch.nn import functional as F

from ._denoisers import TIMESTEP_FREQUENCIES, timestep_embedding
from ._schedule import append_dims


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with group norm and SiLU, the embedding added between them (Ho et al., 2020)."""

    def __init__(self, in_channels, out_channels, embedding_size, n_groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(n_groups, in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.embedding = nn.Linear(embedding_size, out_channels)
        self.norm2 = nn.GroupNorm(min(n_groups, out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        # Zero-initialised last layer: each block starts as the identity (k-diffusion).
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, h, embedding):
        r = self.conv1(F.silu(self.norm1(h)))
        r = r + append_dims(self.embedding(embedding), r.ndim)
        r = self.conv2(F.silu(self.norm2(r)))
        return self.skip(h) + r


class UNetDenoiser(nn.Module):
    """Small convolutional U-Net that predicts eps from ``(x_t, t, y)`` for images.

    The layout of DDPM's network (Ho et al., 2020) at a small size: a 3x3 input
    convolution, then per resolution one residual block (group norm, SiLU, two 3x3
    convolutions, the timestep embedding added between them) and a stride-2 convolution;
    a middle block; and the mirror path up, each block taking the skip connection of its
    resolution. The timestep enters every block through sinusoidal features and an MLP.
    The class enters late, as a learned embedding added to the timestep's in the last
    ``class_blocks`` blocks of the upward path, so that :meth:`forward_all` computes the
    rest once per noisy image, however many classes are scored. The output convolution
    and the last convolution of each block start at zero, as in k-diffusion.

    Any height and width work: the downward path rounds odd sizes up and the upward path
    resizes to the skip connection's size.

    Parameters
    ----------
    image_shape : tuple of int (C, H, W)
        Shape of one image: channels, height, width.
    n_classes : int
        Number of classes the network is conditioned on.
    base_channels : int, default=16
        Channels at the full resolution.
    channel_mults : tuple of int, default=(1, 2)
        Channels of each resolution, as multiples of ``base_channels``; each level after
        the first halves the height and width.
    n_groups : int, default=8
        Groups of the group normalisations (Wu & He, 2018).
    class_blocks : int or None, default=None
        How many of the last blocks of the upward path receive the class embedding, from
        0 (the class only shifts the output layer's input) to ``len(channel_mults)``;
        None: all of them. On digits, 0 was fast but classified far worse than the whole
        upward path.

    Examples
    --------
    >>> import torch
    >>> from skdiffusion import UNetDenoiser
    >>> net = UNetDenoiser((1, 8, 8), n_classes=10)
    >>> x_t, t, y = torch.zeros(4, 1, 8, 8), torch.full((4,), 10), torch.arange(4)
    >>> net(x_t, t, y).shape
    torch.Size([4, 1, 8, 8])
    >>> net.forward_all(x_t, t).shape
    torch.Size([4, 10, 1, 8, 8])
    """

    def __init__(
        self, image_shape, n_classes, *, base_channels=16, channel_mults=(1, 2), n_groups=8, class_blocks=None
    ):
        super().__init__()
        image_shape = tuple(int(size) for size in image_shape)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (channels, height, width), got {image_shape!r}.")
        class_blocks = len(channel_mults) if class_blocks is None else class_blocks
        if not 0 <= class_blocks <= len(channel_mults):
            raise ValueError(f"class_blocks must be in [0, {len(channel_mults)}], got {class_blocks!r}.")
        channels = [base_channels * mult for mult in channel_mults]
        embedding_size = 4 * base_channels
        self.image_shape = image_shape
        self.n_shared = len(channels) - class_blocks
        self.time = nn.Sequential(
            nn.Linear(2 * TIMESTEP_FREQUENCIES, embedding_size),
            nn.SiLU(),
            nn.Linear(embedding_size, embedding_size),
            nn.SiLU(),
        )
        self.label = nn.Embedding(n_classes, embedding_size)
        self.input = nn.Conv2d(image_shape[0], channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = channels[0]
        for level, width in enumerate(channels):
            self.down.append(ResidualBlock(previous, width, embedding_size, n_groups))
            last = level == len(channels) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(width, width, 3, stride=2, padding=1))
            previous = width
        self.middle = ResidualBlock(previous, previous, embedding_size, n_groups)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level, width in enumerate(reversed(channels)):
            # Nearest-neighbour upsampling, then a 3x3 convolution, as in DDPM.
            self.upsample.append(nn.Identity() if level == 0 else nn.Conv2d(previous, previous, 3, padding=1))
            self.up.append(ResidualBlock(previous + width, width, embedding_size, n_groups))
            previous = width
        self.output_norm = nn.GroupNorm(min(n_groups, previous), previous)
        self.output_embedding = nn.Linear(embedding_size, previous)
        self.output = nn.Conv2d(previous, image_shape[0], 3, padding=1)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def _shared(self, x_t, t):
        """Return the state before the class enters: hidden map, pending skips, time embedding."""
        time = self.time(timestep_embedding(t, TIMESTEP_FREQUENCIES))
        h = self.input(x_t)
        skips = []
        for block, downsample in zip(self.down, self.downsample):
            h = block(h, time)
            skips.append(h)
            h = downsample(h)
        h = self.middle(h, time)
        for level in range(self.n_shared):
            h = self._up(level, h, skips.pop(), time)
        if not skips:
            h = self.output_norm(h)
        return h, skips, time

    def _up(self, level, h, skip, embedding):
        """Run upward block ``level`` on ``h``, resized to its skip connection, and on the skip."""
        h = self.upsample[level](F.interpolate(h, size=skip.shape[-2:]))
        return self.up[level](torch.cat([h, skip], dim=1), embedding)

    def _conditioned(self, h, skips, embedding):
        """Run the class-conditioned blocks, if any are left, and the output layer."""
        if skips:
            for level in range(self.n_shared, len(self.up)):
                h = self._up(level, h, skips.pop(), embedding)
            h = self.output_norm(h)
        return self.output(F.silu(h + append_dims(self.output_embedding(embedding), h.ndim)))

    def forward(self, x_t, t, y):
        h, skips, time = self._shared(x_t, t)
        return self._conditioned(h, skips, time + self.label(y))

    def forward_all(self, x_t, t):
        """Return eps_hat under every class, shape ``(n, n_classes, *image_shape)``.

        A new tensor: scoring computes its errors in that memory.
        """
        h, skips, time = self._shared(x_t, t)
        n, n_classes = x_t.shape[0], self.label.num_embeddings
        embedding = (time.unsqueeze(1) + self.label.weight).flatten(0, 1)
        h = h.repeat_interleave(n_classes, dim=0)
        skips = [skip.repeat_interleave(n_classes, dim=0) for skip in skips]
        return self._conditioned(h, skips, embedding).unflatten(0, (n, n_classes))
