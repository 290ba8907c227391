"""Conditional denoisers ``eps_theta(x_t, t, y)`` and the contract they keep."""

import copy
import functools
import inspect
import itertools
import math
import platform
from typing import NamedTuple

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors
from torch import nn
from torch.nn import functional as F

from ._compute import ceil_div

CONTRACT = (
    "A denoiser is a torch.nn.Module whose forward(x_t, t, y) takes noisy samples x_t "
    "(float32, shape (n, *sample_shape)), integer timesteps t (shape (n,)) and integer "
    "class indices y (shape (n,)), and returns the predicted noise eps_hat, a float "
    "tensor of the same shape as x_t."
)


# Frequencies of the timestep embedding, whose width is twice this (a sine and a cosine each).
TIMESTEP_FREQUENCIES = 16
# Cap of input_scale: samples that (nearly) coincide would otherwise ask for input
# frequencies without bound.
MAX_INPUT_SCALE = 1e3
# The default network reads each class out on its own from this many classes on, through
# this many shared features, the class entering through its read-out alone (see mlp_options).
READOUT_CLASSES = 10
READOUT_RANK = 32
# Rows whose read-outs are computed at once, outside scoring (see _own_read_out).
OWN_READ_OUT_ROWS = 256
# Below this many classes, a row's own read-out is picked from every class's (see _own_read_out).
EVERY_READ_OUT_BELOW = 20
# Floats of the all-class hidden state of one scoring call (1 MiB), and the most rows of
# one: see eval_batch_size.
CALL_STATE_FLOATS = 1 << 18
MAX_CALL_ROWS = 2016
# A scoring call grows, by doublings up to CALL_GROWTH times eval_batch_size, while the
# (sample, trial) pairs to score fill GROWN_CALLS calls of the grown size: see scoring_rows.
CALL_GROWTH = 4
GROWN_CALLS = 8
# Every product of a scoring call has a multiple of this many rows: then each row comes out
# the same bits wherever it falls in the product, on MKL's AVX-512 kernels (any product of
# 16 rows or more does) and on its kernels for CPUs without AVX-512, which round a
# product's last rows their own way when its rows are not a multiple of 48 (see the user
# guide's reproducibility page).
CALL_ROW_MULTIPLE = 48
# The least variance of a Gaussian base's feature (see MLPDenoiser): a constant feature's.
MIN_BASE_VARIANCE = 1e-6


def sinusoidal_embedding(x, n_frequencies, max_period=10_000.0):
    """Fixed features ``[sin(w x), cos(w x)]`` at geometric frequencies (Vaswani et al., 2017).

    ``x`` of shape (...,) becomes shape (..., 2 * n_frequencies).
    """
    x = x if x.dtype == torch.float32 else x.to(torch.float32)
    angles = x.unsqueeze(-1) * _frequencies(n_frequencies, max_period, x.device)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def timestep_embedding(t, n_frequencies):
    """Return ``sinusoidal_embedding(t, n_frequencies)`` of integer timesteps ``t``.

    On the CPU, timesteps below 2**16 are looked up in a table of every timestep below a
    power of two, made once per process: the same values, for 2048 timesteps in 0.1 of
    the time (on the spirals network, 3% of a scoring call). Elsewhere the table's size,
    ``t.max()``, would wait for the device, so the embedding is computed, as it is for
    float or larger ``t``.
    """
    size = timestep_table_size(t)
    if size is None:
        return sinusoidal_embedding(t, n_frequencies)
    return _timestep_table(size, n_frequencies).index_select(0, t.reshape(-1)).reshape(*t.shape, -1)


def timestep_table_size(t):
    """Return the size of the table that looks up integer timesteps ``t``: a power of two, at least 1024.

    None where ``t`` is not looked up: off the CPU (the size would wait for the device),
    empty, float, negative or from 2**16 on.
    """
    if t.device.type != "cpu" or t.numel() == 0 or t.is_floating_point():
        return None
    lo, hi = (int(v) for v in torch.aminmax(t))
    return None if lo < 0 or hi >= 1 << 16 else 1 << max(10, hi.bit_length())


@functools.cache
def _timestep_table(size, n_frequencies):
    """Return the embedding of the timesteps ``0 .. size - 1``, on the CPU."""
    with torch.inference_mode(False):  # a tensor that autograd may use later
        return sinusoidal_embedding(torch.arange(size, device="cpu"), n_frequencies)


@functools.cache
def _frequencies(n_frequencies, max_period, device):
    """Return the frequencies of :func:`sinusoidal_embedding`, made once: fit embeds at every step."""
    with torch.inference_mode(False):  # a tensor that autograd may use later
        exponents = torch.arange(n_frequencies, dtype=torch.float32, device=device)
        return torch.exp(-math.log(max_period) * exponents / n_frequencies)


class MLPDenoiser(nn.Module):
    """Residual MLP that predicts eps from ``(x_t, t, y)`` for flat samples.

    Each coordinate of a low-dimensional ``x_t`` is expanded into sinusoidal features, as
    tiny-diffusion does for 2-D data, so that the network can draw fine structure; the
    timestep gets sinusoidal features, added to every block. The class enters late, as a
    learned embedding added to the last ``class_blocks`` blocks and to the output layer's
    input, so that :meth:`forward_all` computes everything before it once per noisy sample,
    however many classes are scored; a read-out per class (``class_readout``) adds one
    product of that shared state for every class. The output layer starts at zero, as in
    k-diffusion. With a Gaussian base (``gaussian_base``), the network learns what the
    exact denoiser of Gaussian classes leaves, in a share that it learns too.

    Parameters
    ----------
    n_features : int
        Number of features of a sample.
    n_classes : int
        Number of classes the network is conditioned on.
    hidden_size : int or None, default=None
        Width of the hidden layers. None: 64 up to 8 features, 128 up to 16, else 256.
    n_blocks : int, default=3
        Number of residual blocks.
    class_blocks : int, default=0
        How many of the last blocks receive the class embedding. 0: the class enters only
        at the output layer, and scoring ``n_classes`` classes costs little more than one.
    n_frequencies : int or None, default=None
        Sinusoidal frequencies per input coordinate. None: 16 when ``n_features <= 8``,
        otherwise 0 (the coordinates enter as they are). The default network of
        :class:`~skdiffusion.DiffusionClassifier` sets it and ``input_scale`` from the
        data (see its ``denoiser`` parameter).
    input_scale : float, default=25.0
        Multiplies the coordinates before the sinusoidal features, so that the highest
        frequency resolves details of size about ``1 / input_scale`` in standardised units.
    class_readout : int, default=0
        Rank of a read-out of each class's own, added to the prediction: ``eps_c = W silu(s
        + e_c) + b + R_c B silu(s) + r_c``, where ``s`` is the state before the class enters,
        ``B`` maps it to ``class_readout`` features shared by every class, and each class's
        ``R_c`` (starting at zero) reads them its own way. The class embedding ``e_c`` only
        shifts the shared state; with many classes that can be too little to tell their
        noise apart. A rank below the width keeps the read-outs' weights few: each class
        has ``class_readout x n_features`` of its own. 0: no read-out. The default network of
        :class:`~skdiffusion.DiffusionClassifier` sets it on data of 10 classes or more.
    class_embedding : bool, default=True
        Whether the class also enters as the embedding ``e_c``. False (which needs
        ``class_readout`` and ``class_blocks=0``): it enters through its read-out alone,
        ``eps_c = W silu(s) + b + R_c B silu(s) + r_c``, and scoring every class costs one
        product more than scoring one, however many classes there are. The default network
        of :class:`~skdiffusion.DiffusionClassifier` sets it False wherever it has a read-out:
        on data of 10 classes or more.
    gaussian_base : int, default=0
        The length of the noise schedule of a Gaussian base, 0 for none. The prediction is
        then ``eps_c + g * a_t * (x_t - sqrt(abar_t) * mu_c)``, with ``a_t = sqrt(1 - abar_t)
        / (abar_t * var + 1 - abar_t)``: the exact denoiser of data drawn from ``N(mu_c,
        diag(var))``, scaled by the gate ``g``, a weight that starts at 0 and trains with the
        others. The class means ``mu_c``, the pooled within-class variance ``var`` and the
        schedule ``abar`` are set by :meth:`fit_gaussian_base` (``fit`` does, from the rows
        of each new network's training). The default network of
        :class:`~skdiffusion.DiffusionClassifier` has one on smooth data of fewer than 10
        classes (see its ``denoiser`` parameter).
    """

    def __init__(
        self,
        n_features,
        n_classes,
        *,
        hidden_size=None,
        n_blocks=3,
        class_blocks=0,
        n_frequencies=None,
        input_scale=25.0,
        class_readout=0,
        class_embedding=True,
        gaussian_base=0,
    ):
        super().__init__()
        if not class_embedding and not (class_readout and class_blocks == 0):
            raise ValueError(
                "class_embedding=False needs a read-out (class_readout > 0) and the class at the output layer "
                f"(class_blocks=0); got class_readout={class_readout}, class_blocks={class_blocks}."
            )
        self.n_classes = n_classes
        if hidden_size is None:
            hidden_size = feature_width(n_features)
        if n_frequencies is None:
            n_frequencies = 16 if n_features <= 8 else 0
        self.n_frequencies = n_frequencies
        self.input_scale = input_scale
        self.n_shared = n_blocks - class_blocks
        n_inputs = n_features * (1 + 2 * n_frequencies)
        self.input = nn.Linear(n_inputs, hidden_size)
        self.time = nn.Sequential(nn.Linear(2 * TIMESTEP_FREQUENCIES, hidden_size), nn.SiLU())
        self.label = nn.Embedding(n_classes, hidden_size) if class_embedding else None
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, hidden_size)) for _ in range(n_blocks)
        )
        self.output = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, n_features))
        nn.init.zeros_(self.output[-1].weight)
        nn.init.zeros_(self.output[-1].bias)
        self.readout = None
        if class_readout:
            # Read from silu(s): the basis B, then every class's R_c and r_c.
            self.readout = nn.Sequential(
                nn.Linear(hidden_size, class_readout, bias=False),
                nn.Linear(class_readout, n_classes * n_features),
            )
            nn.init.zeros_(self.readout[-1].weight)
            nn.init.zeros_(self.readout[-1].bias)
        self.gaussian_base = gaussian_base
        if gaussian_base:  # the last parameter: a continued fit's optimizer state is kept by index
            self.register_buffer("base_alphas_cumprod", torch.full((gaussian_base,), 0.5))
            self.register_buffer("base_mean", torch.zeros(n_classes, n_features))
            self.register_buffer("base_variance", torch.ones(n_features))
            self.base_gate = nn.Parameter(torch.zeros(()))

    @torch.no_grad()
    def fit_gaussian_base(self, x0, y, alphas_cumprod, weights=None, mask=None):
        """Set the Gaussian base from the samples ``x0`` of class indices ``y`` (see ``gaussian_base``).

        ``alphas_cumprod``: the noise schedule, of ``gaussian_base`` steps. The class means
        and the pooled within-class variance of each feature are weighted by ``weights``
        and taken over the elements that ``mask`` keeps; a class or a feature without any
        value gets the mean of all, and a feature without spread a variance of
        ``MIN_BASE_VARIANCE``.
        """
        if len(alphas_cumprod) != self.gaussian_base:
            raise ValueError(
                f"MLPDenoiser(gaussian_base={self.gaussian_base}) is a base for a noise schedule of that many steps, "
                f"not of {len(alphas_cumprod)}: set gaussian_base to n_diffusion_steps."
            )
        x0 = x0.flatten(1).double()
        kept = torch.ones_like(x0) if mask is None else mask.flatten(1).double()
        if weights is not None:
            kept = kept * torch.as_tensor(weights, dtype=torch.float64, device=x0.device).unsqueeze(1)
        per_class = x0.new_zeros(self.n_classes, x0.shape[1])
        sums = per_class.index_add(0, y, kept * x0)
        counts = per_class.index_add(0, y, kept)
        total = counts.sum(0).clamp(min=1e-300)  # each feature's kept weight over every class
        mean = torch.where(counts > 0, sums / counts.clamp(min=1e-300), sums.sum(0) / total)
        spread = (kept * (x0 - mean.index_select(0, y)) ** 2).sum(0) / total
        self.base_alphas_cumprod.copy_(torch.as_tensor(alphas_cumprod))
        self.base_mean.copy_(mean)
        self.base_variance.copy_(spread.clamp(min=MIN_BASE_VARIANCE))

    def _ungated_base_factors(self, t):
        """Return the Gaussian base's factors ``(a_t, a_t sqrt(abar_t))`` at timesteps ``t``, each (n, features).

        Under class ``c`` the base is ``g (a_t x_t - a_t sqrt(abar_t) mu_c)`` (see ``gaussian_base``).
        """
        abar = self.base_alphas_cumprod.index_select(0, t.reshape(-1)).unsqueeze(1)
        factor = (1 - abar).sqrt() / (abar * self.base_variance + (1 - abar))
        return factor, factor * abar.sqrt()

    def _base_factors(self, t):
        """Return the gated factors ``(g a_t, g a_t sqrt(abar_t))`` (see :meth:`_ungated_base_factors`).

        Without autograd they are looked up, as the time branch is, in a table of every
        timestep made from the gate and the base of the moment by the same operations (so
        with the same bits): a scoring call makes one lookup instead of a handful of
        operations on its rows.
        """
        if torch.is_grad_enabled():
            on_x, on_mean = self._ungated_base_factors(t)
            return self.base_gate * on_x, self.base_gate * on_mean
        return self._base_factor_table(t.device).index_select(0, t.reshape(-1)).unbind(1)

    def _base_factor_table(self, device):
        """Return the table of :meth:`_base_factors`, shape (steps, 2, features), made again if the base changed."""
        gate, cached = self.base_gate.detach(), self.__dict__.get("_base_table")
        sources = (gate, self.base_variance, self.base_alphas_cumprod)
        if cached is None or not all(torch.equal(a, b) for a, b in zip(cached[:3], sources)):
            steps = torch.arange(self.gaussian_base, device=device)
            table = torch.stack([gate * factor for factor in self._ungated_base_factors(steps)], dim=1)
            # One tuple, set at once: scoring threads may read it while another makes its own.
            cached = self.__dict__["_base_table"] = (*(source.clone() for source in sources), table)
        return cached[3]

    def _base_of(self, on_x, on_mean, x_t, classes):
        """Return ``on_x * x_t - on_mean * mu_c`` of row ``i``'s class ``classes[i]``, from factors of the rows.

        Every path adds the base by these operations: the same factors give the same bits.
        """
        return on_x * x_t - on_mean * self.base_mean.index_select(0, classes)

    @property
    def eval_batch_size(self):
        """Rows of each scoring call: as many as keep a two-class hidden state and the predictions within 1 MiB.

        (rows x max(2 x width, classes x features) floats, in multiples of
        ``CALL_ROW_MULTIPLE``, between one multiple and ``MAX_CALL_ROWS`` rows.) Every call is
        padded to this size, which a small prediction pays in full; a large one makes larger
        calls (see :meth:`scoring_rows`). With more classes, :meth:`forward_all` runs the
        class-conditioned part on a slice of the rows at a time (see :meth:`class_rows`), so
        that the class-independent part keeps its large calls.
        """
        per_row = max(2 * self.input.out_features, self.n_classes * self.output[1].out_features)
        return rows_within(CALL_STATE_FLOATS // per_row)

    def scoring_rows(self, pairs):
        """Return the rows of each scoring call of ``pairs`` (sample, trial) pairs: :attr:`eval_batch_size` or more.

        Each of a call's operations takes Python's lock back as it ends, and a scoring
        thread waits there while another runs Python: on an Intel Xeon, two threads scored
        the spirals faster in calls that grow than in calls of 2,016 rows (see the guide on
        scaling out). So where the pairs fill ``GROWN_CALLS`` calls of
        twice the size, the calls double, up to ``CALL_GROWTH`` times
        :attr:`eval_batch_size`: a large prediction makes a quarter of the calls, and a
        small one pads no more than before. A row's result is the same in a call of any of
        these sizes on MKL's kernels (see ``CALL_ROW_MULTIPLE``): so the calls grow on the
        CPU where the products run on MKL alone (see :func:`_intel_mkl`), and nowhere
        else: where they run on oneDNN from a size on (see :func:`_product`), a larger call
        could take a row's product onto the other kernel, and a GPU's or another library's
        kernels may round a row by the size of its product.
        """
        rows = base = self.eval_batch_size
        if _MKL_PRODUCTS and self.input.weight.device.type == "cpu":
            while 2 * rows <= CALL_GROWTH * base and pairs >= GROWN_CALLS * 2 * rows:
                rows *= 2
        return rows

    def class_rows(self, n_rows):
        """Return the rows of each slice that :meth:`forward_all` conditions at once, out of ``n_rows``.

        Slices of one size, a divisor of ``n_rows``, so that a row's result does not depend
        on which slice it falls in, whose all-class hidden state (rows x classes x width
        floats) fits in 1 MiB (or of one row): the largest whose products (rows x classes)
        have a multiple of ``CALL_ROW_MULTIPLE`` rows; else the smallest such within 2 MiB
        (50 classes of 256 units: 24 rows, not 20); else the largest.
        """
        budget = CALL_STATE_FLOATS // (self.n_classes * self.input.out_features)

        def aligned(rows):
            return n_rows % rows == 0 and rows * self.n_classes % CALL_ROW_MULTIPLE == 0

        # From the top, lazily: with few classes the budget holds every row, and the first try does.
        top = min(budget, n_rows)
        largest = next((rows for rows in range(top, 0, -1) if n_rows % rows == 0), 1)
        candidates = itertools.chain(range(largest, 0, -1), range(top + 1, min(2 * budget, n_rows) + 1))
        return next(filter(aligned, candidates), largest)

    # Every block adds the same conditioning c (time, then time + class) to its input:
    # h' = h + block(h + c). The network carries s = h + c instead, so that a block is
    # s' = s + block(s), one addition fewer per block, and entering the class is s + label.
    # The forward passes below are written once over the operations of a layers object:
    # autograd's (_Layers, which calls the layers) or, without autograd, a Prepared one,
    # whose products run on oneDNN where it runs (see _product), which adds s as it writes,
    # and elsewhere sum in s's own memory (see _Layer.added). Both round differently from
    # autograd's path, by ~1e-7.

    def _layers(self, timesteps=None):
        """Return the layers as a forward pass runs them.

        A :class:`Prepared` where autograd is off and no hook must see the layers' tensors
        (``timesteps``: see there), else a :class:`_Layers`.
        """
        return _Layers(self) if torch.is_grad_enabled() or _hooked(self) else Prepared(self, timesteps)

    def _features(self, x_t):
        """Return the input layer's input: ``x_t``, then its sinusoidal features if any."""
        if not self.n_frequencies:
            return x_t
        features = sinusoidal_embedding(self.input_scale * x_t, self.n_frequencies)
        return torch.cat([x_t, features.view(x_t.shape[0], -1)], dim=1)

    def _time_branch_table(self, size):
        """Return the time branch of timesteps ``0 .. size - 1`` (see :meth:`Prepared.time`), remade if it changed."""
        linear, cached = self.time[0], self.__dict__.get("_time_table")
        if cached is None or not _made_from(cached, size, linear):
            table = F.silu(_Layer.of(linear)(_timestep_table(size, TIMESTEP_FREQUENCIES)), inplace=True)
            # One tuple, set at once: scoring threads may read it while another makes its own.
            weights = linear.weight.detach().clone(), linear.bias.detach().clone()
            cached = self.__dict__["_time_table"] = (*weights, table)
        return cached[2]

    def __getstate__(self):
        # A pickle or a copy makes its table again from its weights.
        state = dict(super().__getstate__())
        state.pop("_time_table", None)
        state.pop("_base_table", None)
        return state

    def _own_weights(self, y):
        """Return the read-out weights and biases of row ``i``'s class ``y[i]``: (n, features, rank), (n, features)."""
        readout = self.readout[1]
        weight = readout.weight.view(self.n_classes, -1, readout.in_features).index_select(0, y)
        return weight, readout.bias.view(self.n_classes, -1).index_select(0, y)

    def _own_read_out(self, basis, y):
        """Return the read-out of row ``i``'s own class ``y[i]`` from its ``basis`` features, shape (n, features).

        ``OWN_READ_OUT_ROWS`` rows at a time (ancestral sampling asks for thousands at
        once). Below ``EVERY_READ_OUT_BELOW`` classes, every class's read-out is computed in
        one product and each row's own picked from it (a training step on digits' 10
        classes took 9% less time so, see the cost guide); from there on, only the row's
        own, from its class's weights gathered for each row, whose cost does not grow with
        the classes. :meth:`forward_backward` computes it the same way.
        """
        pieces = zip(basis.split(OWN_READ_OUT_ROWS), y.split(OWN_READ_OUT_ROWS))
        if self._reads_every_class:
            return torch.cat([_picked(self.readout[1](rows), classes, self.n_classes) for rows, classes in pieces])
        return torch.cat([_read_rows(*self._own_weights(classes), rows) for rows, classes in pieces])

    @property
    def _reads_every_class(self):
        """Whether a row's own read-out is picked from every class's (see :meth:`_own_read_out`)."""
        return self.readout is not None and self.n_classes < EVERY_READ_OUT_BELOW

    def _entered(self, s, classes):
        """Return ``s + e_c`` for ``classes`` (a new tensor); without class embeddings, ``s`` itself."""
        return s if self.label is None else s + self.label.weight.index_select(0, classes)

    def forward(self, x_t, t, y):
        layers = self._layers()
        s = layers.shared(x_t, t)
        if self.readout is None:
            eps_hat = layers.conditioned(s + self.label(y))
        else:
            if self.label is None:
                eps_hat, read = layers.unconditioned(s)
            else:
                eps_hat, read = layers.conditioned(s + self.label(y)), F.silu(s)
            eps_hat = eps_hat + self._own_read_out(layers.basis(read), y)
        return eps_hat + self._base_of(*layers.base_factors(t), x_t, y) if self.gaussian_base else eps_hat

    def forward_backward(self, x_t, t, y):
        """Return ``(eps_hat, backward)``: :meth:`forward`'s value, computed without autograd, and its backward pass.

        ``backward(grad)`` sets each parameter's ``grad`` from ``grad``, the loss's gradient
        with respect to ``eps_hat``: autograd's gradients, up to float rounding. The forward
        pass makes inference's products and sums (the values of :meth:`forward` without
        autograd, but for the rounding of the timestep branch, which inference looks up in
        a table) and keeps only what the backward pass reads. On a small
        network, autograd's graph and the out-of-place sums it needs cost more than the
        matrix products: ``fit`` trains the default network this way, every parameter
        trained and no hook on it (a hook must see each forward pass), and any other
        network through autograd.
        """
        with torch.no_grad():
            features = self._features(x_t)
            time_input = timestep_embedding(t, TIMESTEP_FREQUENCIES)
            time_state = _Layer.of(self.time[0])(time_input)
            s = _Layer.of(self.input).added(F.silu(time_state), features)
            linears = [linear for _, linear in self.blocks]
            saved = []  # the input and the output of each block's SiLU
            for i, linear in enumerate(linears):
                if i == self.n_shared:
                    shared, s = s, self._entered(s, y)
                saved.append((s, F.silu(s)))
                s = _Layer.of(linear).added(s, saved[-1][1], keep=True)
            if self.n_shared == len(self.blocks):
                shared, s = s, self._entered(s, y)
            activated = F.silu(s)
            eps_hat = _Layer.of(self.output[1])(activated)
            every_read_out = self._reads_every_class
            if self.readout is not None:  # as forward computes it, all the rows at once
                read = activated if self.label is None else F.silu(shared)
                basis = _Layer.of(self.readout[0])(read)
                if every_read_out:
                    eps_hat = eps_hat + _picked(_Layer.of(self.readout[1])(basis), y, self.n_classes)
                else:
                    weight, bias = self._own_weights(y)
                    eps_hat = eps_hat + _read_rows(weight, bias, basis)
            if self.gaussian_base:  # the base's own share: its gate's gradient is grad . (base / gate)
                ungated = self._base_of(*self._ungated_base_factors(t), x_t, y)
                eps_hat = eps_hat + self.base_gate * ungated

        def entered(grad, output_grad):
            """Set the gradients of the class's weights; return ``grad`` at the state before the class entered."""
            if self.label is not None:
                self.label.weight.grad = _embedding_backward(self.label, grad, y)
            if self.readout is None:
                return grad
            readout, (n_rows, n_features), n_classes = self.readout[1], output_grad.shape, self.n_classes
            if every_read_out:  # each row's gradient at its own class's read-out, 0 at the others'
                every = output_grad.new_zeros(n_rows, n_classes, n_features)
                every.scatter_(1, _class_index(y, n_features), output_grad.unsqueeze(1))
                to_basis = _linear_backward(readout, basis, every.flatten(1))
            else:  # each row's gradient reaches its own class's read-out only: summed per class
                outer = output_grad.unsqueeze(2) * basis.unsqueeze(1)  # (n, features, rank)
                readout.weight.grad = outer.new_zeros(n_classes, *outer.shape[1:]).index_add_(0, y, outer).flatten(0, 1)
                readout.bias.grad = output_grad.new_zeros(n_classes, n_features).index_add_(0, y, output_grad).flatten()
                to_basis = torch.bmm(output_grad.unsqueeze(1), weight).squeeze(1)
            return grad + _silu_backward(_linear_backward(self.readout[0], read, to_basis), shared)

        def backward(grad):
            with torch.no_grad():
                if self.gaussian_base:
                    self.base_gate.grad = (grad * ungated).sum().reshape(())
                output_grad = grad
                grad = _silu_backward(_linear_backward(self.output[1], activated, grad), s)
                for i in range(len(self.blocks) - 1, -1, -1):
                    if i == self.n_shared - 1:  # the class entered after this block
                        grad = entered(grad, output_grad)
                    state, activation = saved[i]
                    grad = _silu_backward(_linear_backward(linears[i], activation, grad), state).add_(grad)
                if self.n_shared == 0:  # the class entered before the first block
                    grad = entered(grad, output_grad)
                _linear_backward(self.input, features, grad, to_input=False)
                _linear_backward(self.time[0], time_input, _silu_backward(grad, time_state), to_input=False)

        return eps_hat, backward

    @property
    def pair_rows(self):
        """Rows of each call of :meth:`forward_pairs`'s class-conditioned part: a hidden state of 1 MiB.

        (In multiples of ``CALL_ROW_MULTIPLE``, between one multiple and ``MAX_CALL_ROWS`` rows.)
        """
        return rows_within(CALL_STATE_FLOATS // self.input.out_features)

    def forward_pairs(self, x_t, t, rows, classes):
        """Return eps_hat of row ``rows[i]`` of ``x_t`` under class ``classes[i]``, shape (len(rows), n_features).

        The class-independent part runs once per row of ``x_t``, the class-conditioned part
        only on the pairs asked for: the pairs that pruning keeps, whose cost then falls with
        their number. Its calls have exactly :attr:`pair_rows` rows (the last padded), so
        that a pair's result does not depend on the others. Without class embeddings, the
        class-conditioned part is the read-out alone, one product of the shared state: every
        class's costs less than gathering the pairs' weights would, and the pairs are picked
        from :meth:`forward_all`'s result.
        """
        return self._forward_pairs(x_t, t, rows, classes, self._layers())

    def _forward_pairs(self, x_t, t, rows, classes, layers):
        """:meth:`forward_pairs` over ``layers`` (see :meth:`_layers`)."""
        if self.label is None:
            return self._forward_all(x_t, t, layers)[rows, classes]
        s = layers.shared(x_t, t)
        n, size = rows.numel(), self.pair_rows
        padded = torch.arange(ceil_div(n, size) * size, device=rows.device).clamp_(max=n - 1)
        parts = [
            layers.conditioned(s.index_select(0, r) + layers.label_weight.index_select(0, c))
            for r, c in zip(rows[padded].split(size), classes[padded].split(size))
        ]
        eps_hat = torch.cat(parts)[:n]
        if self.readout is not None:
            eps_hat = eps_hat + layers.read_out(F.silu(s))[rows, classes]
        if not self.gaussian_base:
            return eps_hat
        # forward_all's operations on the same values: the same bits.
        factors = (factor.index_select(0, rows) for factor in layers.base_factors(t))
        return layers.add(eps_hat, self._base_of(*factors, x_t.index_select(0, rows), classes))

    def forward_all(self, x_t, t):
        """Return eps_hat under every class, shape (n, n_classes, n_features): a new tensor.

        Scoring computes its errors in that tensor's memory. Without autograd, the
        read-out is likewise summed into one of the call's own temporaries: a scoring
        call's are a megabyte or so, which a new tensor would take in fresh pages.
        """
        return self._forward_all(x_t, t, self._layers())

    def _forward_all(self, x_t, t, layers, eps=None):
        """:meth:`forward_all` over ``layers`` (see :meth:`_layers`), minus ``eps`` if given.

        ``eps`` (n, n_features), each row's noise, only where the read-out alone tells the
        classes apart: it is taken off the class-independent prediction, before every
        class's read-out is added, which spares scoring a pass over all the classes'
        predictions and a copy of the noise for each class (see :func:`scoring_passes`).
        """
        s = layers.shared(x_t, t)
        if self.label is None:  # the read-out alone tells the classes apart
            eps_hat, read = layers.unconditioned(s)
            if eps is not None:
                eps_hat = layers.sub(eps_hat, eps)
            eps_hat = layers.add(layers.read_out(read), eps_hat.unsqueeze(1))
        elif eps is not None:
            raise ValueError("eps is taken off only where the class enters through its read-out alone.")
        else:
            eps_hat = layers.every_class(s)
            if self.readout is not None:
                eps_hat = layers.add(eps_hat, layers.read_out(F.silu(s)))
        if not self.gaussian_base:
            return eps_hat
        on_x, on_mean = layers.base_factors(t)
        return layers.add(eps_hat, (on_x * x_t).unsqueeze(1) - on_mean.unsqueeze(1) * self.base_mean)


def rows_within(budget):
    """Return the most rows of a scoring call within ``budget`` and ``MAX_CALL_ROWS``.

    A multiple of ``CALL_ROW_MULTIPLE``, at least one.
    """
    return max(CALL_ROW_MULTIPLE, min(budget, MAX_CALL_ROWS) // CALL_ROW_MULTIPLE * CALL_ROW_MULTIPLE)


class _Layers:
    """The default network's operations as autograd's forward pass runs them: each layer called on its input.

    :class:`MLPDenoiser`'s forward passes are written over these operations, which
    :class:`Prepared` runs without autograd.
    """

    def __init__(self, module):
        self.module = module
        self.label_weight = None if module.label is None else module.label.weight
        self._class_rows = {}  # rows of a call: those of its class slices (see MLPDenoiser.class_rows)

    @staticmethod
    def add(a, b):
        """Return ``a + b``."""
        return a + b

    @staticmethod
    def sub(a, b):
        """Return ``a - b``."""
        return a - b

    def every_class(self, s):
        """Return the class-conditioned part under every class, shape (n, classes, features), from ``s`` (n, hidden).

        On slices of the rows at a time (see :meth:`MLPDenoiser.class_rows`).
        """
        n_rows = s.shape[0]
        step = self._class_rows.get(n_rows)
        if step is None:
            step = self._class_rows[n_rows] = self.module.class_rows(n_rows)
        slices = s.split(step) if step < n_rows else [s]
        parts = [self.conditioned(part.unsqueeze(1) + self.label_weight) for part in slices]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def shared(self, x_t, t):
        """Return ``s = h + time``, the state before the class enters: shape (n, hidden)."""
        module = self.module
        s = module.time(timestep_embedding(t, TIMESTEP_FREQUENCIES)) + module.input(module._features(x_t))
        for block in itertools.islice(module.blocks, module.n_shared):
            s = s + block(s)
        return s

    def conditioned(self, s):
        """Run the class-conditioned blocks and the output layer on ``s = h + time + label``."""
        module = self.module
        for block in itertools.islice(module.blocks, module.n_shared, None):
            s = s + block(s)
        return module.output(s)

    def unconditioned(self, s):
        """Without class embeddings: return the output layer's prediction from ``s`` and ``silu(s)``, its input.

        The read-out reads the same ``silu(s)``.
        """
        return self.module.output(s), F.silu(s)

    def basis(self, read):
        """Return the read-out's shared features of ``read = silu(s)``."""
        return self.module.readout[0](read)

    def read_out(self, read):
        """Return every class's read-out from ``read = silu(s)``, shape (n, classes, features)."""
        return self.module.readout(read).view(read.shape[0], self.module.n_classes, -1)

    def base_factors(self, t):
        """Return the Gaussian base's gated factors at timesteps ``t`` (see :meth:`MLPDenoiser._base_factors`)."""
        return self.module._base_factors(t)


class Prepared(_Layers):
    """The default network's operations without autograd, its weights read once for many forward passes.

    Each call into torch gives Python's lock (the GIL) up while its operation runs and
    takes it back afterwards, and the threads scoring beside it wait for the lock while
    it runs Python between its operations (see the cost guide). So each linear layer's
    weight, its transpose (as the products read it) and its bias are read here once, and
    the tables of the time branch and of the Gaussian base are checked against the
    weights of the moment (and made again if they changed) once: per forward pass, or, in
    scoring, for all the calls on a piece of rows (see :func:`scoring_passes`), during
    which the weights do not change. The products run on oneDNN where it runs (see
    :func:`_product`), and the sums are made in the call's own tensors. ``timesteps``: all
    those the passes will be given, if known (scoring's trials): the time branch's table
    is then chosen once, not from each pass's timesteps.
    """

    def __init__(self, module, timesteps=None):
        super().__init__(module)
        blocks = [_Layer.of(linear) for _, linear in module.blocks]
        self.shared_blocks, self.class_blocks = blocks[: module.n_shared], blocks[module.n_shared :]
        self.input, self.output = _Layer.of(module.input), _Layer.of(module.output[1])
        self.readout = None if module.readout is None else [_Layer.of(linear) for linear in module.readout]
        self._time_tables = {}  # size: the time branch's table
        self._base_table = None
        size = None if timesteps is None else timestep_table_size(timesteps)
        self._time_table = None if size is None else self._time_table_of(size)

    @staticmethod
    def add(a, b):
        """Return ``a + b``, in ``a``'s memory."""
        return a.add_(b)

    @staticmethod
    def sub(a, b):
        """Return ``a - b``, in ``a``'s memory."""
        return a.sub_(b)

    def time(self, t):
        """Return the time branch ``silu(W emb(t) + b)``: a new tensor, shape (n, hidden).

        Where the timesteps are looked up (see :func:`timestep_table_size`), the branch's
        output is too, in a table of every timestep made from the weights of the moment:
        a scoring call's rows take a few dozen timesteps, and the branch's product and SiLU
        cost a tenth of the spirals network's call. The table is made again whenever the
        weights differ from those it was made from (a comparison of a few thousand floats),
        and from them alone, so a row's value does not depend on the calls before it. Under
        autocast, the branch is computed for the rows, in autocast's precision.
        """
        table = None
        if not torch.is_autocast_enabled(t.device.type):
            table = self._time_table
            if table is None and (size := timestep_table_size(t)) is not None:
                table = self._time_table_of(size)
        if table is None:  # under autocast, or timesteps that are not looked up
            return F.silu(_Layer.of(self.module.time[0])(timestep_embedding(t, TIMESTEP_FREQUENCIES)), inplace=True)
        return table.index_select(0, t) if t.dim() == 1 else table.index_select(0, t.reshape(-1)).view(*t.shape, -1)

    def _time_table_of(self, size):
        """Return the time branch's table of ``size`` rows, checked against the weights once per object."""
        table = self._time_tables.get(size)
        if table is None:
            table = self._time_tables[size] = self.module._time_branch_table(size)
        return table

    def shared(self, x_t, t):
        s = self.input.added(self.time(t), self.module._features(x_t))
        for block in self.shared_blocks:
            s = block.added(s, F.silu(s))
        return s

    def conditioned(self, s):
        for block in self.class_blocks:
            s = block.added(s, F.silu(s))
        return self.output(F.silu(s, inplace=True))

    def unconditioned(self, s):
        read = F.silu(s)
        return self.output(read), read

    def basis(self, read):
        return self.readout[0](read)

    def read_out(self, read):
        # The product, then the biases added in its memory: addmm would first copy the
        # biases into every row of the (n, classes x features) result, a pass that took
        # digits' scoring call 4% longer, for the same values.
        basis, readout = self.readout
        every = _product(basis(read), readout.weight, None, readout.weight_t).add_(readout.bias)
        return every.view(read.shape[0], self.module.n_classes, -1)

    def base_factors(self, t):
        if self._base_table is None:
            self._base_table = self.module._base_factor_table(t.device)
        return self._base_table.index_select(0, t.reshape(-1)).unbind(1)


class _Layer(NamedTuple):
    """A linear layer as the products without autograd read it: its weight, that weight transposed, its bias."""

    module: nn.Module
    weight: torch.Tensor
    weight_t: torch.Tensor
    bias: torch.Tensor | None
    plain: bool  # an nn.Linear with a bias: its sum with a state can be made in one product

    @classmethod
    def of(cls, linear):
        weight, bias = linear.weight, linear.bias
        return cls(linear, weight, weight.t(), bias, type(linear) is nn.Linear and bias is not None)

    def __call__(self, x):
        """Return ``linear(x)``, for ``x`` of any number of dimensions (see :func:`_product`)."""
        rows = _product(_matrix(x), self.weight, self.bias, self.weight_t)
        return rows if x.dim() == 2 else rows.view(*x.shape[:-1], rows.shape[-1])

    def added(self, s, x, keep=False):
        """Return ``s + linear(x)``: in one product where the shapes and dtypes allow.

        That product is oneDNN's, which adds ``s`` as it writes its result (see
        :func:`_product`), or else an ``addmm_`` in ``s``'s own memory; with ``keep``, ``s``
        is left as it is, and the ``addmm`` writes a new tensor.
        """
        weight, bias = self.weight, self.bias
        fits = s.is_contiguous() and s.dtype is x.dtype is weight.dtype and s.shape[:-1] == x.shape[:-1]
        if not (self.plain and fits):
            return s + self.module(x)
        rows, state = _matrix(x), _matrix(s)
        if _on_onednn(rows, weight):
            return _ONEDNN_LINEAR.binary(rows, state, weight, bias, "add").view(s.shape)
        if keep:
            added = torch.addmm(state, rows, self.weight_t).add_(bias)
            return added if s.dim() == 2 else added.view(s.shape)
        state.addmm_(rows, self.weight_t)
        return s.add_(bias)


def scoring_passes(denoiser, timesteps):
    """Return ``denoiser``'s ``forward_all``, ``forward_pairs`` and ``difference_all`` for calls on the same weights.

    Each is None where the network has none. ``difference_all(x_t, t, eps=eps)`` returns
    ``forward_all(x_t, t) - eps[:, None]``: the default network's where the read-out alone
    tells the classes apart, which takes the noise off before the classes part (see
    :meth:`MLPDenoiser._forward_all`). The default network's passes read its weights
    once for all the calls (see :class:`Prepared`), each of whose timesteps is one of
    ``timesteps``; any other network's are its own.
    """
    if type(denoiser) is not MLPDenoiser:
        return getattr(denoiser, "forward_all", None), getattr(denoiser, "forward_pairs", None), None
    layers = denoiser._layers(timesteps)
    forward_all = functools.partial(denoiser._forward_all, layers=layers)
    difference_all = forward_all if denoiser.label is None else None
    return forward_all, functools.partial(denoiser._forward_pairs, layers=layers), difference_all


def _made_from(cached, size, linear):
    """Return True if the time branch's ``(weight, bias, table)`` has ``size`` rows of ``linear``'s."""
    weight, bias, table = cached
    return table.shape[0] == size and torch.equal(weight, linear.weight) and torch.equal(bias, linear.bias)


def _picked(every, y, n_classes):
    """Return row ``i``'s read-out of class ``y[i]``, (n, features), from every class's, (n, classes * features)."""
    every = every.view(y.shape[0], n_classes, -1)
    return every.gather(1, _class_index(y, every.shape[2])).squeeze(1)


def _class_index(y, n_features):
    """Return the index of row ``i``'s class ``y[i]`` in a tensor of shape (n, classes, ``n_features``), along dim 1."""
    return y.view(-1, 1, 1).expand(-1, 1, n_features)


def _read_rows(weight, bias, basis):
    """Return ``weight[i] @ basis[i] + bias[i]`` for every row ``i``: shapes (n, out, in), (n, out), (n, in)."""
    return torch.baddbmm(bias.unsqueeze(2), weight, basis.unsqueeze(2)).squeeze(2)


def without_autograd(run):
    """Decorate ``run(denoiser, ...)`` to run in inference mode for the default network, else under ``no_grad``.

    Inference mode skips autograd's bookkeeping of versions and views: the default
    network's scoring took 1 to 8% less time in it, and sampling 5%, with the same values.
    A network of the user's, or a hook on the default one, may keep a tensor made in a
    forward pass for a later training, which a tensor made in inference mode cannot join:
    those run under ``no_grad``.
    """

    @functools.wraps(run)
    def run_without_autograd(denoiser, *args, **kwargs):
        default = type(denoiser) is MLPDenoiser and not _hooked(denoiser)
        with torch.inference_mode() if default else torch.no_grad():
            return run(denoiser, *args, **kwargs)

    return run_without_autograd


def _hooked(module):
    """Return True if ``module`` or a module inside it has a forward hook (a loop: 3.5x faster than ``modules()``)."""
    if module._forward_hooks or module._forward_pre_hooks:
        return True
    for child in module._modules.values():
        if _hooked(child):
            return True
    return False


def _linear_backward(linear, x, grad, to_input=True):
    """Set the ``grad`` of ``linear``'s weight and bias from ``grad``, its output's gradient at input ``x``.

    Returns the gradient at the input (None if not ``to_input``).
    """
    weight = linear.weight
    weight.grad = _matmul(grad.t(), x)
    if linear.bias is not None:
        linear.bias.grad = grad.sum(0)
    return _matmul(grad, weight) if to_input else None


def _silu_backward(grad, x):
    """Return the gradient at SiLU's input ``x`` from ``grad`` at its output."""
    return torch.ops.aten.silu_backward(grad, x)


def _embedding_backward(embedding, grad, indices):
    """Return the gradient of ``embedding``'s weight from ``grad`` at the rows ``indices`` it looked up."""
    return torch.ops.aten.embedding_dense_backward(grad, indices, embedding.num_embeddings, -1, False)


def _matrix(x):
    """Return ``x`` as a matrix of its last dimension's vectors: ``x`` itself if it is one (a training step's are)."""
    return x if x.dim() == 2 else x.reshape(-1, x.shape[-1])


def _matmul(a, b):
    """Return ``a @ b`` for matrices, without autograd: :func:`_product` of ``a`` and ``b.T``, on the same kernel."""
    # Without oneDNN, _product's mm itself: no transposed view of b to make and undo.
    return torch.mm(a, b) if _ONEDNN_LINEAR is None else _product(a, b.t())


def _product(x, weight, bias=None, weight_t=None):
    """Return ``x @ weight.T + bias`` for matrices, without autograd: on oneDNN where it runs, else as ``F.linear``.

    oneDNN is the library behind torch's compiled CPU code: on AMD CPUs with wide vector
    units it computed the float32 products of these networks' layers at up to twice the
    rate of torch's ``addmm``, and at par on others, the same values to float rounding; on
    an Intel CPU, where ``addmm`` is MKL's, it was the slower, and is not used there (see
    :func:`_intel_mkl`). Its calls cost more around the product, so one of fewer than
    ``ONEDNN_MIN_PRODUCT`` multiply-adds stays on ``addmm``: which kernel runs depends on
    the shapes alone, and where it runs a model's scoring calls have one size (see
    :meth:`MLPDenoiser.scoring_rows`), so a sample's result does not depend on the others
    scored with it. ``weight_t``: ``weight.t()``, if made already.
    """
    if _on_onednn(x, weight):
        return _ONEDNN_LINEAR(x, weight, bias, "none", [], "")
    # F.linear's own kernels for matrices, without the layers around them: a training step makes a dozen.
    weight_t = weight.t() if weight_t is None else weight_t
    return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)


def _on_onednn(x, weight):
    """Return True if ``x @ weight.T`` runs on oneDNN: this torch has it, on an x86 CPU, in float32, large enough."""
    return (  # the size first: a training step's small products are told apart at once
        _ONEDNN_LINEAR is not None
        and x.shape[0] * x.shape[1] * weight.shape[0] >= ONEDNN_MIN_PRODUCT
        and x.dtype == weight.dtype == torch.float32
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
    )


def _onednn_linear():
    """Return torch's oneDNN linear kernel, or None where this torch or CPU has none (or it fails a tiny product).

    Only on x86: elsewhere oneDNN calls other libraries, unmeasured here.
    """
    if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
        return None
    kernel = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    try:
        with torch.no_grad():
            x, weight, bias = torch.ones(2, 3), torch.ones(4, 3), torch.ones(4)
            if not torch.equal(kernel(x, weight, bias, "none", [], ""), torch.full((2, 4), 4.0)):
                return None
            if not torch.equal(kernel.binary(x, torch.ones(2, 4), weight, bias, "add"), torch.full((2, 4), 5.0)):
                return None
    except (AttributeError, RuntimeError, TypeError):
        return None
    return kernel


def _intel_mkl():
    """Return True if torch's ``addmm`` is MKL's and the CPU is Intel's, MKL's maker.

    There ``addmm`` alone made fits and scoring faster than with oneDNN, and on AMD CPUs
    oneDNN was the faster or at par (the user guide's cost page): the products stay on
    ``addmm``. The maker is read from ``/proc/cpuinfo`` on Linux and from
    ``platform.processor()`` elsewhere (Windows names it there; macOS does not, and keeps
    oneDNN).
    """
    if not torch.backends.mkl.is_available():
        return False
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            maker = next((line for line in cpuinfo if line.startswith("vendor_id")), "")
    except OSError:
        maker = platform.processor()
    return "GenuineIntel" in maker


# Whether the products run on MKL alone, and else the kernel of _product, or None: decided
# once, when the module loads.
_MKL_PRODUCTS = _intel_mkl()
_ONEDNN_LINEAR = None if _MKL_PRODUCTS else _onednn_linear()
# The fewest multiply-adds of a product that runs on oneDNN (see _product): the 256 x 64 x 64
# products of the 64-unit network's training steps gain nothing there (benchmarks/speed.py).
ONEDNN_MIN_PRODUCT = 1 << 21


def build_denoiser(denoiser, n_features, n_classes, *, image_shape=None):
    """Return the network that ``fit`` trains: built from a spec, or a copy of an instance.

    A class or callable (:class:`MLPDenoiser` when ``denoiser`` is None) is called with
    the sample's size: ``image_shape`` when given, else ``n_features``.
    """
    size = n_features if image_shape is None else tuple(image_shape)
    if denoiser is None:
        return MLPDenoiser(size, n_classes)
    if isinstance(denoiser, nn.Module):
        return copy.deepcopy(denoiser)
    if inspect.isclass(denoiser) and not issubclass(denoiser, nn.Module):
        raise TypeError(f"denoiser class {denoiser.__name__} is not a torch.nn.Module subclass. {CONTRACT}")
    module = denoiser(size, n_classes)
    if not isinstance(module, nn.Module):
        call = "denoiser(n_features, n_classes)" if image_shape is None else "denoiser(image_shape, n_classes)"
        raise TypeError(f"{call} returned {type(module).__name__}, not a torch.nn.Module. {CONTRACT}")
    return module


def mlp_arguments(module):
    """Return the constructor arguments that rebuild the architecture of an MLPDenoiser."""
    return {
        "n_features": module.output[-1].out_features,
        "n_classes": module.n_classes,
        "hidden_size": module.input.out_features,
        "n_blocks": len(module.blocks),
        "class_blocks": len(module.blocks) - module.n_shared,
        "n_frequencies": module.n_frequencies,
        "input_scale": float(module.input_scale),
        "class_readout": 0 if module.readout is None else module.readout[0].out_features,
        "class_embedding": module.label is not None,
        "gaussian_base": module.gaussian_base,
    }


def mlp_from_weights(arguments, tensors):
    """Return the MLPDenoiser of ``arguments`` (see :func:`mlp_arguments`) holding the weights ``tensors``.

    Raises a ValueError, before any memory is taken for the network, unless the arguments
    describe exactly those weights (as a file or a pickle may not).

    The network is first built on torch's meta device, which allocates nothing, and its
    parameters' shapes compared with the weights': a file that declares a huge width
    without holding its weights is refused.
    """
    names = {
        "n_features",
        "n_classes",
        "hidden_size",
        "n_blocks",
        "class_blocks",
        "n_frequencies",
        "input_scale",
        "class_readout",
        "class_embedding",
        "gaussian_base",
    }
    # Files saved before the read-outs have neither argument, and before the base no base.
    arguments = {"class_readout": 0, "class_embedding": True, "gaussian_base": 0, **arguments}
    if set(arguments) != names:
        raise ValueError(f"the MLPDenoiser arguments are {sorted(arguments)}, expected {sorted(names)}")
    counts = {name: arguments[name] for name in names - {"input_scale", "class_embedding"}}
    if not all(type(value) is int and value >= 0 for value in counts.values()):
        raise ValueError(f"the MLPDenoiser arguments {counts} are not all non-negative integers")
    if min(counts["n_features"], counts["n_classes"], counts["hidden_size"]) < 1:
        raise ValueError(f"the MLPDenoiser arguments {counts} leave the network without features, classes or units")
    if counts["class_blocks"] > counts["n_blocks"]:
        raise ValueError(f"class_blocks={counts['class_blocks']} exceeds n_blocks={counts['n_blocks']}")
    if type(arguments["class_embedding"]) is not bool:
        raise ValueError(f"the MLPDenoiser argument class_embedding={arguments['class_embedding']!r} is not a bool")
    scale = arguments["input_scale"]
    if not (type(scale) in (int, float) and np.isfinite(scale)):
        raise ValueError(f"the MLPDenoiser argument input_scale={scale!r} is not a finite number")
    # The products of the counts bound the sizes; a file this small holds no network this large.
    held = sum(tensor.numel() for tensor in tensors.values())
    n_inputs = counts["n_features"] * (1 + 2 * counts["n_frequencies"])
    hidden = counts["hidden_size"]
    readout = counts["class_readout"] * (hidden + counts["n_classes"] * counts["n_features"])
    sizes = (
        n_inputs * hidden,
        hidden * hidden * counts["n_blocks"],
        counts["n_classes"] * hidden,
        readout,
        counts["gaussian_base"],
    )
    if max(sizes) > held:
        raise ValueError(f"the MLPDenoiser arguments {counts} describe more weights than the file's {held}")
    with torch.device("meta"):
        skeleton = MLPDenoiser(**arguments)
    expected = {name: tuple(value.shape) for name, value in skeleton.state_dict().items()}
    found = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
    if expected != found:
        raise ValueError(f"the saved weights {found} are not those of the MLPDenoiser the file describes {expected}")
    module = MLPDenoiser(**arguments)
    module.load_state_dict(tensors, strict=True)
    return module.eval()


def feature_width(n_features):
    """Return the hidden width of an MLP denoiser for samples of ``n_features`` features."""
    return 64 if n_features <= 8 else 128 if n_features <= 16 else 256


def mlp_options(x0, y, *, n_diffused=None, n_classes=None, n_steps=0, min_scale=10.0, min_width=32):
    """Return the options of :class:`MLPDenoiser` that suit the data ``x0`` of classes ``y``.

    Width: :func:`feature_width` of the ``n_diffused`` features the network denoises (None:
    all of them; a table's one-hot categories only condition it, and do not widen it), but
    no wider than the power of two at or above a quarter of the number of samples (and at
    least ``min_width``), so that a small data set does not meet a network it can only
    overfit (wine's 124 training samples get 32 units, not 128).

    Sinusoidal features: the data resolve details down to :func:`class_spacing`.
    ``input_scale`` is its inverse, so that the highest frequency draws details of that
    size; when that is coarser than ``1 / min_scale`` (few samples or many features), a
    plain MLP already draws the details the data support, and frequencies would only fit
    noise: none are used.

    Read-outs per class: of rank ``READOUT_RANK`` with ``READOUT_CLASSES`` classes or more
    (``n_classes``; None: those in ``y``), where shifting the shared state by a class
    embedding is too little to tell the classes' noise apart (see :class:`MLPDenoiser`).
    The class then enters through its read-out alone (``class_embedding=False``): an
    embedding's element-wise work for every class took most of a scoring call's time,
    and the read-out alone was the more accurate on synthetic data of 10 to 50 classes and
    on leaf's 32, and as accurate on digits' 10 (``benchmarks/results/readout.md``).

    A Gaussian base for a schedule of ``n_steps`` steps (0: none) where the network has
    neither frequencies nor read-outs: on smooth data of fewer than ``READOUT_CLASSES``
    classes, where a network of the data's few samples gains from starting at the exact
    denoiser of Gaussian classes (see :class:`MLPDenoiser`). On digits' 10 classes it
    lowered the accuracy and tripled the log loss, on 20 synthetic classes and leaf's 32 it
    changed little, and on one seed of the two-dimensional moons, which the frequencies
    draw, it cost 3 points (``benchmarks/results/gaussian_base.md``).

    Returns a dict of ``hidden_size``, ``n_frequencies``, ``input_scale``, ``class_readout``,
    ``class_embedding`` and ``gaussian_base``.
    """
    n_samples = x0.shape[0]
    n_diffused = math.prod(x0.shape[1:]) if n_diffused is None else n_diffused
    n_classes = np.unique(y).size if n_classes is None else n_classes
    by_samples = 2 ** math.ceil(math.log2(max(n_samples / 4, 1)))
    readout = READOUT_RANK if n_classes >= READOUT_CLASSES else 0
    options = {
        "hidden_size": min(feature_width(n_diffused), max(by_samples, min_width)),
        "class_readout": readout,
        "class_embedding": not readout,
    }
    spacing = class_spacing(x0, y)
    input_scale = 1 / spacing if spacing > 0 else np.inf
    if not input_scale >= min_scale:
        return {**options, "n_frequencies": 0, "input_scale": 1.0, "gaussian_base": 0 if readout else n_steps}
    return {**options, "n_frequencies": 16, "input_scale": float(min(input_scale, MAX_INPUT_SCALE)), "gaussian_base": 0}


def class_spacing(x0, y, *, max_rows=10_000, seed=0):
    """Return the median distance from a sample to its nearest neighbour of the same class.

    Classes of more than ``max_rows`` samples are subsampled, and their distances scaled
    back by ``(max_rows / n)^(1 / n_features)``, the way nearest-neighbour distances
    shrink. Infinite when no class has two samples.
    """
    x0, y = np.asarray(x0, dtype=np.float64), np.asarray(y)
    x0 = x0.reshape(x0.shape[0], -1)
    rng = np.random.default_rng(seed)
    distances = []
    for c in np.unique(y):
        members = x0[y == c]
        shrink = 1.0
        if members.shape[0] > max_rows:
            shrink = (max_rows / members.shape[0]) ** (1 / x0.shape[1])
            members = members[rng.choice(members.shape[0], max_rows, replace=False)]
        if members.shape[0] >= 2:
            found, _ = NearestNeighbors(n_neighbors=2, n_jobs=1).fit(members).kneighbors(members)
            distances.append(shrink * found[:, 1])
    return float(np.median(np.concatenate(distances))) if distances else np.inf


def check_denoiser(denoiser, sample_shape, n_classes, device, *, trainable=True):
    """Run ``denoiser`` on a tiny batch and raise a clear error if it breaks the contract.

    ``trainable=False`` accepts a denoiser without trainable parameters (a frozen,
    pretrained one), for a fit that trains nothing.
    """
    n = 2
    x_t = torch.zeros((n, *sample_shape), device=device)
    t = torch.zeros(n, dtype=torch.long, device=device)
    y = torch.tensor([0, n_classes - 1], device=device)
    try:
        with torch.no_grad():
            eps_hat = denoiser(x_t, t, y)
    except Exception as exc:
        raise ValueError(f"The denoiser failed on a batch of shape {tuple(x_t.shape)}: {exc!r}. {CONTRACT}") from exc
    if not isinstance(eps_hat, torch.Tensor):
        raise TypeError(f"The denoiser returned {type(eps_hat).__name__}, not a torch.Tensor. {CONTRACT}")
    if eps_hat.shape != x_t.shape:
        raise ValueError(
            f"The denoiser returned shape {tuple(eps_hat.shape)} for x_t of shape {tuple(x_t.shape)}. {CONTRACT}"
        )
    if not eps_hat.is_floating_point():
        raise TypeError(f"The denoiser returned dtype {eps_hat.dtype}, not a float tensor. {CONTRACT}")
    if not torch.isfinite(eps_hat).all():
        raise ValueError(f"The denoiser returned NaN or inf on a batch of zeros. {CONTRACT}")
    if trainable and not any(p.requires_grad for p in denoiser.parameters()):
        raise ValueError(
            f"The denoiser has no trainable parameters, so fit cannot train it (max_iter=0 trains nothing). {CONTRACT}"
        )
