"""The MLP denoiser, the denoiser contract and how fit builds its network."""

import copy
import functools
import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import nn

from skdiffusion import DiffusionClassifier, MLPDenoiser, _denoisers
from skdiffusion._denoisers import (
    MIN_BASE_VARIANCE,
    ONEDNN_MIN_PRODUCT,
    TIMESTEP_FREQUENCIES,
    Prepared,
    _Layers,
    build_denoiser,
    check_denoiser,
    class_spacing,
    mlp_options,
    scoring_passes,
    sinusoidal_embedding,
    timestep_embedding,
)
from skdiffusion._schedule import as_tensor, make_alphas_cumprod


def _inputs(n, n_features, n_classes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x_t = torch.randn((n, n_features), generator=generator)
    t = torch.randint(1000, (n,), generator=generator)
    y = torch.randint(n_classes, (n,), generator=generator)
    return x_t, t, y


@pytest.mark.parametrize("n_features, n_classes", [(1, 2), (2, 2), (8, 3), (9, 5), (64, 10)])
def test_mlp_denoiser_output_shape_and_zero_at_init(n_features, n_classes):
    denoiser = MLPDenoiser(n_features, n_classes)
    eps_hat = denoiser(*_inputs(7, n_features, n_classes))
    assert eps_hat.shape == (7, n_features)
    assert eps_hat.dtype == torch.float32
    # The output layer starts at zero (as in k-diffusion): the first prediction is 0.
    assert torch.equal(eps_hat, torch.zeros(7, n_features))


def test_mlp_denoiser_learns_from_the_zero_output_layer():
    denoiser = MLPDenoiser(2, 3)
    x_t, t, y = _inputs(16, 2, 3)
    loss = (denoiser(x_t, t, y) - x_t).square().mean()
    loss.backward()
    # Only the output layer gets a gradient at init (the rest is multiplied by zero weights),
    # so the first step moves it off zero.
    assert denoiser.output[-1].weight.grad.abs().sum() > 0
    assert denoiser.input.weight.grad.abs().sum() == 0


def test_mlp_denoiser_conditions_on_class_and_timestep():
    torch.manual_seed(0)
    denoiser = MLPDenoiser(2, 3)
    nn.init.normal_(denoiser.output[-1].weight)
    x_t = torch.zeros(3, 2)
    by_class = denoiser(x_t, torch.full((3,), 10), torch.arange(3))
    by_time = denoiser(x_t, torch.tensor([0, 500, 999]), torch.zeros(3, dtype=torch.long))
    assert torch.unique(by_class, dim=0).shape[0] == 3
    assert torch.unique(by_time, dim=0).shape[0] == 3


@pytest.mark.parametrize("class_blocks", [0, 1, 3])
def test_forward_all_equals_forward_under_each_class(class_blocks):
    torch.manual_seed(0)
    net = MLPDenoiser(5, 3, class_blocks=class_blocks)
    nn.init.normal_(net.output[-1].weight)  # a non-zero output, so that classes differ
    x_t, t = torch.randn(6, 5), torch.randint(1000, (6,))
    per_class = torch.stack([net(x_t, t, torch.full((6,), c)) for c in range(3)], dim=1)
    all_classes = net.forward_all(x_t, t)
    assert all_classes.shape == (6, 3, 5)
    torch.testing.assert_close(all_classes, per_class, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(all_classes[:, 0], all_classes[:, 1])


def test_late_class_network_shares_the_blocks_before_the_class():
    net = MLPDenoiser(4, 2, n_blocks=3, class_blocks=1)
    assert net.n_shared == 2
    assert MLPDenoiser(4, 2).n_shared == 3  # by default the class enters at the output layer only


def test_mlp_denoiser_widths():
    assert MLPDenoiser(2, 2).input.out_features == 64
    assert MLPDenoiser(9, 2).input.out_features == 128
    assert MLPDenoiser(17, 2).input.out_features == 256
    assert MLPDenoiser(17, 2, hidden_size=8).input.out_features == 8
    # Up to 8 features each coordinate gets 16 sin/cos pairs; above, coordinates enter raw.
    assert MLPDenoiser(8, 2).input.in_features == 8 * (1 + 2 * 16)
    assert MLPDenoiser(9, 2).input.in_features == 9
    assert len(MLPDenoiser(2, 2, n_blocks=5).blocks) == 5


@pytest.mark.parametrize(
    "class_blocks, class_readout, class_embedding", [(0, 0, True), (2, 0, True), (0, 3, True), (0, 3, False)]
)
def test_scoring_path_computes_what_the_autograd_path_computes(class_blocks, class_readout, class_embedding):
    # Without autograd the blocks sum in place; the network, its inputs and (to rounding)
    # its outputs stay those of the plain path that training differentiates.
    torch.manual_seed(0)
    net = MLPDenoiser(
        3,
        4,
        hidden_size=32,
        n_blocks=2,
        class_blocks=class_blocks,
        class_readout=class_readout,
        class_embedding=class_embedding,
    )
    nn.init.normal_(net.output[-1].weight)
    if class_readout:
        nn.init.normal_(net.readout[-1].weight)
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    x_t, t, y = torch.randn(40, 3), torch.randint(1000, (40,)), torch.randint(4, (40,))
    inputs = x_t.clone(), t.clone()
    plain, plain_all = net(x_t, t, y), net.forward_all(x_t, t)
    assert plain.requires_grad
    with torch.no_grad():
        scoring, scoring_all = net(x_t, t, y), net.forward_all(x_t, t)
    torch.testing.assert_close(scoring, plain.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scoring_all, plain_all.detach(), rtol=1e-5, atol=1e-6)
    assert torch.equal(x_t, inputs[0]) and torch.equal(t, inputs[1])
    assert all(torch.equal(v, weights[k]) for k, v in net.state_dict().items())


def test_scoring_path_falls_back_where_summing_in_place_would_differ():
    torch.manual_seed(0)
    net = MLPDenoiser(3, 2, hidden_size=32, n_blocks=2)
    nn.init.normal_(net.output[-1].weight)
    x_t, y = torch.randn(8, 3), torch.randint(2, (8,))
    # A timestep shared by every row, broadcast; a bfloat16 autocast.
    t = torch.tensor([500])
    with torch.no_grad():
        torch.testing.assert_close(net(x_t, t, y), net(x_t, t.expand(8), y))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert net.forward_all(x_t, t.expand(8)).shape == (8, 2, 3)
    # A hook sees the layers' tensors as the plain path makes them, and still fires.
    seen = []
    net.blocks[0][1].register_forward_hook(lambda module, args, out: seen.append(out.clone()))
    plain = net(x_t, t.expand(8), y).detach()
    with torch.no_grad():
        torch.testing.assert_close(net(x_t, t.expand(8), y), plain)
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])


# oneDNN's product wherever this torch and CPU have it, also where the network keeps to
# addmm (on Intel CPUs): the tests below switch it on.
ONEDNN = _denoisers._onednn_linear()
needs_onednn = pytest.mark.skipif(ONEDNN is None, reason="this torch or CPU has no oneDNN product")


@needs_onednn
@pytest.mark.parametrize("rows, n_in, n_out", [(256, 64, 64), (2048, 66, 64), (256, 128, 128), (3200, 256, 20)])
def test_products_run_on_onednn_by_their_size_alone_with_addmms_values(rows, n_in, n_out, monkeypatch):
    monkeypatch.setattr(_denoisers, "_ONEDNN_LINEAR", ONEDNN)
    torch.manual_seed(0)
    x, weight, bias = torch.randn(rows, n_in), torch.randn(n_out, n_in), torch.randn(n_out)
    large = rows * n_in * n_out >= ONEDNN_MIN_PRODUCT
    with torch.no_grad():
        assert _denoisers._on_onednn(x, weight) == large
        assert not _denoisers._on_onednn(x.double(), weight.double())  # float32 only
        tolerance = {"rtol": 1e-5, "atol": 1e-5 * n_in}
        torch.testing.assert_close(_denoisers._product(x, weight, bias), torch.addmm(bias, x, weight.t()), **tolerance)
        # The backward pass's products, the weight's gradient and the input's: on the same kernel.
        grad = torch.randn(rows, n_out)
        torch.testing.assert_close(_denoisers._matmul(grad.t(), x), grad.t().mm(x), rtol=1e-5, atol=1e-5 * rows)
        torch.testing.assert_close(_denoisers._matmul(grad, weight), grad.mm(weight), **tolerance)
        for a, b in ((grad.t(), x), (grad, weight)):
            assert torch.equal(_denoisers._matmul(a, b), _denoisers._product(a, b.t()))
    with torch.enable_grad():  # autograd's path never meets oneDNN
        assert not _denoisers._on_onednn(x, weight)


def test_onednn_is_taken_only_where_it_runs(monkeypatch):
    monkeypatch.setattr(_denoisers.platform, "machine", lambda: "arm64")
    assert _denoisers._onednn_linear() is None  # elsewhere than x86: unmeasured
    monkeypatch.setattr(_denoisers.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert _denoisers._onednn_linear() is None
    # Without a kernel every product is addmm's, bit for bit.
    monkeypatch.setattr(_denoisers, "_ONEDNN_LINEAR", None)
    x, weight = torch.randn(2048, 64), torch.randn(64, 64)
    with torch.no_grad():
        assert torch.equal(_denoisers._product(x, weight), torch.nn.functional.linear(x, weight))
        assert torch.equal(_denoisers._matmul(x, weight.t()), torch.nn.functional.linear(x, weight))


def test_intel_cpus_keep_to_mkls_addmm(monkeypatch):
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: True)
    for maker, intel in (("GenuineIntel", True), ("AuthenticAMD", False)):  # Linux: /proc/cpuinfo names it
        cpuinfo = f"processor\t: 0\nvendor_id\t: {maker}\ncpu family\t: 6\n"
        monkeypatch.setattr(_denoisers, "open", lambda *args, text=cpuinfo: io.StringIO(text), raising=False)
        assert _denoisers._intel_mkl() == intel

    def no_cpuinfo(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(_denoisers, "open", no_cpuinfo, raising=False)  # as on Windows: the maker is in the name
    monkeypatch.setattr(_denoisers.platform, "processor", lambda: "Intel64 Family 6 Model 85 Stepping 7, GenuineIntel")
    assert _denoisers._intel_mkl()
    monkeypatch.setattr(_denoisers.platform, "processor", lambda: "AMD64 Family 25 Model 17 Stepping 1, AuthenticAMD")
    assert not _denoisers._intel_mkl()
    monkeypatch.setattr(_denoisers.platform, "processor", lambda: "i386")  # macOS: no maker named, oneDNN kept
    assert not _denoisers._intel_mkl()
    monkeypatch.setattr(_denoisers.platform, "processor", lambda: "Intel64 Family 6 Model 85 Stepping 7, GenuineIntel")
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: False)  # addmm is not MKL's: oneDNN kept
    assert not _denoisers._intel_mkl()


@needs_onednn
@pytest.mark.parametrize("class_blocks", [0, 1])
def test_the_scoring_path_on_onednn_agrees_with_addmms(class_blocks, monkeypatch):
    monkeypatch.setattr(_denoisers, "_ONEDNN_LINEAR", ONEDNN)
    torch.manual_seed(0)
    net = MLPDenoiser(20, 50, hidden_size=256, class_blocks=class_blocks).eval()
    torch.nn.init.normal_(net.output[1].weight, std=0.1)
    torch.nn.init.normal_(net.label.weight)
    x_t, t, y = _inputs(256, 20, 50)
    with torch.no_grad():
        on_onednn = net.forward_all(x_t, t), net(x_t, t, y)
        monkeypatch.setattr(_denoisers, "_ONEDNN_LINEAR", None)
        on_addmm = net.forward_all(x_t, t), net(x_t, t, y)
    assert on_onednn[0].std() > 0.1
    for ours, theirs in zip(on_onednn, on_addmm):
        assert not torch.equal(ours, theirs)  # two kernels: float rounding apart
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_scoring_calls_grow_with_the_pairs_to_score(monkeypatch):
    # Doublings of eval_batch_size, up to 4 times, while the pairs fill 8 calls of the grown size.
    from skdiffusion import _denoisers

    monkeypatch.setattr(_denoisers, "_MKL_PRODUCTS", True)
    spirals = MLPDenoiser(2, 2, hidden_size=64)
    assert [spirals.scoring_rows(pairs) for pairs in (0, 8 * 4032 - 1, 8 * 4032, 8 * 8064 - 1, 8 * 8064, 10**9)] == [
        2016,
        2016,
        4032,
        4032,
        8064,
        8064,
    ]
    assert MLPDenoiser(64, 10, hidden_size=256).scoring_rows(10**9) == 4 * 384
    # Elsewhere (oneDNN from a size on, other libraries), and off the CPU, the calls keep one size.
    assert MLPDenoiser(2, 2, hidden_size=64).to("meta").scoring_rows(10**9) == 2016
    monkeypatch.setattr(_denoisers, "_MKL_PRODUCTS", False)
    assert spirals.scoring_rows(10**9) == 2016


def test_scoring_calls_keep_their_hidden_state_within_a_mebibyte():
    # Shared calls: rows x max(2 x width, classes x features) floats <= 2**18, in multiples
    # of 48, between 48 and 2016 rows.
    assert MLPDenoiser(2, 2, hidden_size=64).eval_batch_size == 2016  # spirals
    assert MLPDenoiser(64, 10, hidden_size=256).eval_batch_size == 384  # digits: 640 floats a row
    assert MLPDenoiser(20, 50, hidden_size=256).eval_batch_size == 240  # 1000 floats a row
    assert MLPDenoiser(2, 2, hidden_size=16).eval_batch_size == 2016  # the cap
    assert MLPDenoiser(2, 2, hidden_size=8192).eval_batch_size == 48  # the floor
    # Class slices of forward_all: divisors of the rows within rows x classes x width <= 2**18,
    # the largest whose products (rows x classes) are a multiple of 48; else the smallest
    # such within twice that; else the largest.
    digits = MLPDenoiser(64, 10, hidden_size=256)
    assert digits.class_rows(384) == 96  # 960 rows a product
    assert digits.class_rows(400) == 100  # no divisor of 400 within 102 is a multiple of 24
    assert digits.class_rows(816) == 48  # not 102, whose products of 1020 rows are not
    assert digits.class_rows(97) == 97 and digits.class_rows(101) == 101
    assert MLPDenoiser(20, 50, hidden_size=256).class_rows(240) == 24  # 20 fit; 1,200 rows a product
    assert MLPDenoiser(20, 50, hidden_size=256).class_rows(256) == 16  # 20 fit: 16 divides 256; 32 is no better
    assert MLPDenoiser(2, 1000, hidden_size=512).class_rows(512) == 1
    # Calls of forward_pairs: rows x width floats <= 2**18, in multiples of 48.
    assert digits.pair_rows == 1008 and MLPDenoiser(2, 2, hidden_size=64).pair_rows == 2016


@pytest.mark.parametrize("class_readout, class_embedding", [(0, True), (6, True), (6, False)])
def test_forward_all_and_forward_pairs_agree_with_forward(class_readout, class_embedding):
    torch.manual_seed(0)
    net = MLPDenoiser(3, 40, hidden_size=512, class_readout=class_readout, class_embedding=class_embedding).eval()
    torch.nn.init.normal_(net.output[1].weight)  # not the zeros it starts at
    if class_embedding:
        torch.nn.init.normal_(net.label.weight)
    if class_readout:
        torch.nn.init.normal_(net.readout[1].weight)
    x_t, t = torch.randn(48, 3), torch.randint(1000, (48,))
    with torch.no_grad():
        every = net.forward_all(x_t, t)
        assert every.shape == (48, 40, 3) and net.class_rows(48) == 12  # four class slices
        for c in (0, 17, 39):
            torch.testing.assert_close(every[:, c], net(x_t, t, torch.full((48,), c)), rtol=1e-5, atol=1e-6)
        rows, classes = torch.randint(48, (3000,)), torch.randint(40, (3000,))  # six calls of 512, the last padded
        some = net.forward_pairs(x_t, t, rows, classes)
        assert some.shape == (3000, 3) and every.std() > 0.1
        torch.testing.assert_close(some, every[rows, classes], rtol=1e-5, atol=1e-6)


def test_timestep_embedding_is_the_sinusoidal_embedding_bit_for_bit():
    for t in (torch.arange(1000), torch.tensor([0, 1023, 1024, 5000]), torch.randint(2048, (37,))):
        assert torch.equal(timestep_embedding(t, 16), sinusoidal_embedding(t, 16))
    assert timestep_embedding(torch.zeros(0, dtype=torch.long), 16).shape == (0, 32)
    # Float, negative, large and 0-d timesteps are computed as they are.
    for t in (torch.tensor([0.5, 999.0]), torch.tensor([-3, 7]), torch.tensor([70_000]), torch.tensor(12)):
        assert torch.equal(timestep_embedding(t, 16), sinusoidal_embedding(t, 16))


def test_the_time_branch_is_looked_up_in_a_table_of_the_weights_of_the_moment():
    torch.manual_seed(0)
    net = MLPDenoiser(3, 2, hidden_size=32, n_blocks=2)
    nn.init.normal_(net.output[-1].weight)
    x_t, t, y = _inputs(64, 3, 2)

    def plain():  # the branch of these rows alone, as autograd's path computes it
        return net.time(timestep_embedding(t, TIMESTEP_FREQUENCIES)).detach()

    with torch.no_grad():
        torch.testing.assert_close(Prepared(net).time(t), plain(), rtol=1e-6, atol=1e-7)
        before = net(x_t, t, y)
    # A training step changes the weights in place, as fit's optimizer does.
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1, fused=True)
    net(x_t, t, y).square().mean().backward()
    optimizer.step()
    with torch.no_grad():
        torch.testing.assert_close(Prepared(net).time(t), plain(), rtol=1e-6, atol=1e-7)
        after = net(x_t, t, y)
    assert (after - before).abs().max() > 0.01
    torch.testing.assert_close(after, net(x_t, t, y).detach(), rtol=1e-5, atol=1e-6)


def test_a_rows_time_branch_does_not_depend_on_the_timesteps_looked_up_before():
    torch.manual_seed(0)
    net = MLPDenoiser(3, 2, hidden_size=32, n_blocks=2)
    x_t, t, y = _inputs(16, 3, 2)
    with torch.no_grad():
        first = Prepared(net).time(t)
        assert Prepared(net).time(torch.tensor([5000, 3])).shape == (2, 32)  # a table of 8192 timesteps
        assert torch.equal(Prepared(net).time(t), first)
        assert torch.equal(Prepared(net).time(t[3]), first[3])  # a 0-d timestep
        # Off the table (float or from 2**16 on) the branch is computed for the rows alone.
        torch.testing.assert_close(Prepared(net).time(t.double()), first, rtol=1e-6, atol=1e-7)
        assert Prepared(net).time(torch.tensor([70_000])).shape == (1, 32)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # in autocast's precision, and not kept
            assert Prepared(net).time(t).dtype == torch.bfloat16
        assert torch.equal(Prepared(net).time(t), first)


def test_a_copy_or_a_pickle_of_the_network_makes_its_own_time_table():
    net = MLPDenoiser(3, 2, hidden_size=32)
    x_t, t, y = _inputs(16, 3, 2)
    with torch.no_grad():
        expected = net(x_t, t, y)
        for copied in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
            assert "_time_table" not in copied.__dict__
            assert torch.equal(copied(x_t, t, y), expected)
    assert "_time_table" in net.__dict__


def test_sinusoidal_embedding():
    x = torch.tensor([0.0, 1.0, -2.5])
    emb = sinusoidal_embedding(x, 4)
    assert emb.shape == (3, 8)
    freqs = torch.exp(-torch.log(torch.tensor(10_000.0)) * torch.arange(4) / 4)
    torch.testing.assert_close(emb[:, :4], torch.sin(x[:, None] * freqs))
    torch.testing.assert_close(emb[:, 4:], torch.cos(x[:, None] * freqs))
    assert sinusoidal_embedding(torch.zeros(2, 5), 3).shape == (2, 5, 6)


# The contract checker -------------------------------------------------------------------


class _Returns(nn.Module):
    """A denoiser whose forward returns ``make(x_t)``; it has one (unused) trainable weight."""

    def __init__(self, make):
        super().__init__()
        self.make = make
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x_t, t, y):
        return self.make(x_t)


def _raise(x_t):
    raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")


def test_check_denoiser_accepts_the_mlp():
    check_denoiser(MLPDenoiser(3, 2), (3,), 2, torch.device("cpu"))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda x_t: x_t[:, :1], ValueError, r"returned shape \(2, 1\) for x_t of shape \(2, 3\)"),
        (lambda x_t: x_t.T, ValueError, r"returned shape \(3, 2\)"),
        (lambda x_t: x_t.numpy(), TypeError, "returned ndarray, not a torch.Tensor"),
        (lambda x_t: None, TypeError, "returned NoneType, not a torch.Tensor"),
        (lambda x_t: x_t.long(), TypeError, "returned dtype torch.int64, not a float tensor"),
        (_raise, ValueError, r"failed on a batch of shape \(2, 3\).*mat1 and mat2"),
    ],
)
def test_check_denoiser_raises_clear_errors(make, error, match):
    with pytest.raises(error, match=match) as excinfo:
        check_denoiser(_Returns(make), (3,), 2, torch.device("cpu"))
    # Every message states the contract the denoiser broke.
    assert "forward(x_t, t, y)" in str(excinfo.value)


def test_check_denoiser_passes_class_indices_in_range():
    seen = []

    def record(x_t, t, y):
        seen.append((t, y))
        return x_t

    denoiser = _Returns(lambda x_t: x_t)
    denoiser.forward = record
    check_denoiser(denoiser, (4,), 1, torch.device("cpu"))
    t, y = seen[0]
    assert t.dtype == torch.long and y.dtype == torch.long
    assert y.max() < 1


# Building the network -------------------------------------------------------------------


class _Linear(nn.Module):
    def __init__(self, n_features, n_classes):
        super().__init__()
        self.n_features, self.n_classes = n_features, n_classes
        self.linear = nn.Linear(n_features, n_features)

    def forward(self, x_t, t, y):
        return self.linear(x_t)


def test_build_denoiser_none_is_an_mlp_sized_from_the_data():
    denoiser = build_denoiser(None, 5, 3)
    assert isinstance(denoiser, MLPDenoiser)
    assert denoiser.label.num_embeddings == 3
    assert denoiser.output[-1].out_features == 5


def test_build_denoiser_calls_a_class_or_callable_with_the_sizes():
    from_class = build_denoiser(_Linear, 4, 3)
    assert isinstance(from_class, _Linear)
    assert (from_class.n_features, from_class.n_classes) == (4, 3)
    from_partial = build_denoiser(functools.partial(MLPDenoiser, hidden_size=16), 4, 3)
    assert from_partial.input.out_features == 16
    from_lambda = build_denoiser(lambda n_features, n_classes: _Linear(n_features, n_classes + 1), 2, 2)
    assert from_lambda.n_classes == 3


def test_build_denoiser_copies_an_instance():
    instance = _Linear(3, 2)
    copy = build_denoiser(instance, 3, 2)
    assert copy is not instance
    assert copy.linear.weight is not instance.linear.weight
    assert torch.equal(copy.linear.weight, instance.linear.weight)
    before = instance.linear.weight.detach().clone()
    with torch.no_grad():
        copy.linear.weight.add_(1.0)
    assert torch.equal(instance.linear.weight, before)


def test_build_denoiser_rejects_a_class_that_is_not_a_module():
    class NotAModule:
        def __init__(self, n_features, n_classes):
            pass

    with pytest.raises(TypeError, match="denoiser class NotAModule is not a torch.nn.Module subclass"):
        build_denoiser(NotAModule, 2, 2)


def test_build_denoiser_rejects_a_callable_returning_no_module():
    with pytest.raises(TypeError, match=r"returned dict, not a torch.nn.Module"):
        build_denoiser(lambda n_features, n_classes: {}, 2, 2)


def _grid(spacing, n_per_side):
    """A square grid of points ``spacing`` apart, shape (n_per_side**2, 2)."""
    side = spacing * np.arange(n_per_side)
    return np.stack(np.meshgrid(side, side), axis=-1).reshape(-1, 2)


def test_mlp_options_scale_the_frequencies_to_the_point_spacing():
    # Two classes on interleaved grids: every point's nearest same-class point is `spacing` away.
    x = np.concatenate([_grid(0.05, 10), _grid(0.05, 10) + 0.01])
    y = np.repeat([0, 1], 100)
    assert class_spacing(x, y) == pytest.approx(0.05)
    options = mlp_options(x, y)
    assert options["n_frequencies"] == 16
    assert options["input_scale"] == pytest.approx(1 / 0.05)


def test_mlp_options_use_no_frequencies_on_sparse_data():
    # Spacing 0.2 > 0.1: no finer detail than a plain MLP draws.
    x = np.concatenate([_grid(0.2, 5), _grid(0.2, 5) + 0.05])
    options = mlp_options(x, np.repeat([0, 1], 25))
    assert (options["n_frequencies"], options["input_scale"]) == (0, 1.0)


@pytest.mark.parametrize(
    "n_samples, n_features, width",
    [(50, 2, 32), (124, 13, 32), (129, 13, 64), (398, 30, 128), (700, 2, 64), (1257, 64, 256), (5000, 9, 128)],
)
def test_mlp_options_width_is_capped_by_a_quarter_of_the_samples(n_samples, n_features, width):
    x = np.random.default_rng(0).normal(size=(n_samples, n_features))
    assert mlp_options(x, np.arange(n_samples) % 2)["hidden_size"] == width


def test_class_readouts_start_at_zero_and_read_each_class_its_own_way():
    torch.manual_seed(0)
    plain = MLPDenoiser(3, 12, hidden_size=32)
    nn.init.normal_(plain.output[1].weight)  # not the zeros it starts at
    read = MLPDenoiser(3, 12, hidden_size=32, class_readout=4)
    read.load_state_dict(plain.state_dict(), strict=False)  # the same network besides the read-out
    x_t, t = torch.randn(10, 3), torch.randint(1000, (10,))
    with torch.no_grad():
        assert torch.equal(read.forward_all(x_t, t), plain.forward_all(x_t, t))  # R_c = 0, r_c = 0
        # 4 shared features, 3 x 12 outputs: rank 4 for every class.
        assert read.readout[0].weight.shape == (4, 32) and read.readout[0].bias is None
        assert read.readout[1].weight.shape == (36, 4)
        nn.init.normal_(read.readout[1].weight)
        added = read.forward_all(x_t, t) - plain.forward_all(x_t, t)
        basis = read.readout[0](nn.functional.silu(_Layers(read).shared(x_t, t)))
        expected = (basis @ read.readout[1].weight.t() + read.readout[1].bias).view(10, 12, 3)
        torch.testing.assert_close(added, expected, rtol=1e-4, atol=1e-5)


def test_the_read_out_alone_tells_the_classes_apart_without_a_class_embedding():
    torch.manual_seed(0)
    net = MLPDenoiser(3, 25, hidden_size=32, class_readout=4, class_embedding=False)
    assert net.label is None
    nn.init.normal_(net.output[1].weight), nn.init.normal_(net.readout[1].weight)
    x_t, t = torch.randn(10, 3), torch.randint(1000, (10,))
    with torch.no_grad():
        every = net.forward_all(x_t, t)
        # Between two classes, only their read-outs differ: the rest is the same for all.
        layers = _Layers(net)
        read = layers.read_out(nn.functional.silu(layers.shared(x_t, t)))
        torch.testing.assert_close(every - every[:, :1], read - read[:, :1], rtol=1e-5, atol=1e-5)
    for bad in ({"class_readout": 0}, {"class_readout": 4, "class_blocks": 1}):
        with pytest.raises(ValueError, match="class_embedding=False needs a read-out"):
            MLPDenoiser(3, 25, class_embedding=False, **bad)


def test_scoring_takes_the_noise_off_a_read_out_alone_before_the_read_outs():
    # difference_all(x_t, t, eps=eps) is forward_all(x_t, t) - eps under every class, to
    # rounding, with or without autograd's layers, its inputs left alone; only a network
    # whose read-out alone tells the classes apart has it.
    torch.manual_seed(0)
    net = MLPDenoiser(3, 12, hidden_size=32, class_readout=4, class_embedding=False)
    nn.init.normal_(net.output[1].weight), nn.init.normal_(net.readout[1].weight), nn.init.normal_(net.readout[1].bias)
    x_t, t, eps = torch.randn(50, 3), torch.randint(1000, (50,)), torch.randn(50, 3)
    copies = x_t.clone(), eps.clone()
    with torch.inference_mode():
        expected = net.forward_all(x_t, t) - eps.unsqueeze(1)
        for layers in (_Layers(net), Prepared(net)):
            torch.testing.assert_close(net._forward_all(x_t, t, layers, eps=eps), expected, rtol=1e-5, atol=1e-5)
        _, _, difference_all = scoring_passes(net, t)
        assert torch.equal(difference_all(x_t, t, eps=eps), net._forward_all(x_t, t, Prepared(net), eps=eps))
    assert torch.equal(x_t, copies[0]) and torch.equal(eps, copies[1])
    embedded = MLPDenoiser(3, 12, hidden_size=32, class_readout=4)
    assert scoring_passes(embedded, t)[2] is None
    with pytest.raises(ValueError, match="only where the class enters through its read-out alone"):
        embedded._forward_all(x_t, t, _Layers(embedded), eps=eps)


def test_mlp_options_read_each_class_out_from_ten_classes():
    x = np.random.default_rng(0).normal(size=(400, 5))
    assert mlp_options(x, np.arange(400) % 9)["class_readout"] == 0
    assert mlp_options(x, np.arange(400) % 10)["class_readout"] == _denoisers.READOUT_RANK == 32
    # With a read-out, the class enters through it alone; without, as an embedding.
    assert mlp_options(x, np.arange(400) % 9)["class_embedding"]
    assert not mlp_options(x, np.arange(400) % 10)["class_embedding"]
    # The fit's classes, some without rows in y, count: n_classes overrides y's.
    assert mlp_options(x, np.arange(400) % 9, n_classes=10)["class_readout"] == 32
    assert MLPDenoiser(3, 12).readout is None  # not on by default on a network built by hand


def test_mlp_options_keep_the_class_embedding_without_a_read_out(monkeypatch):
    monkeypatch.setattr(_denoisers, "READOUT_CLASSES", 1000)  # no read-out at 20 classes
    options = mlp_options(np.random.default_rng(0).normal(size=(400, 5)), np.arange(400) % 20)
    assert options["class_readout"] == 0 and options["class_embedding"]
    MLPDenoiser(5, 20, **options)  # a network that can be built


def test_mlp_options_width_follows_the_diffused_features():
    # 20 columns, of which the first 6 are diffused: 64 units, as for 6 features.
    x = np.random.default_rng(0).normal(size=(2000, 20))
    y = np.arange(2000) % 2
    assert mlp_options(x, y)["hidden_size"] == 256
    assert mlp_options(x, y, n_diffused=6)["hidden_size"] == 64
    assert mlp_options(x, y, n_diffused=12)["hidden_size"] == 128


def test_class_spacing_corrects_the_spacing_of_a_subsample():
    # 40,000 uniform points in the unit square: a subsample of 2,000 has spacing about
    # sqrt(20) times as large, which the correction undoes to within a few percent.
    x = np.random.default_rng(0).uniform(size=(40_000, 2))
    y = np.zeros(40_000, dtype=int)
    assert class_spacing(x, y, max_rows=2_000) == pytest.approx(class_spacing(x, y), rel=0.1)
    assert class_spacing(x[:1], y[:1]) == np.inf


def test_classifier_default_network_takes_its_frequencies_from_the_data():
    # After standardisation only the number of points per side sets the spacing: 60 per
    # side are dense enough for frequencies, 5 per side are not.
    clf = DiffusionClassifier(max_iter=1, n_trials=2, validation_fraction=None)
    for n_per_side, n_frequencies, width in [(60, 16, 64), (5, 0, 32)]:
        x = np.concatenate([_grid(1.0, n_per_side), _grid(1.0, n_per_side) + 0.3])
        with pytest.warns(ConvergenceWarning):
            clf.fit(x, np.repeat([0, 1], n_per_side**2))
        assert clf.denoiser_.n_frequencies == n_frequencies
        assert clf.denoiser_.input.out_features == width
        if n_frequencies:  # one over the grid's spacing, 1, in standardised units
            assert clf.denoiser_.input_scale == pytest.approx(x.std(axis=0)[0])


def test_classifier_default_network_reads_each_class_out_from_ten_classes():
    x = np.random.default_rng(0).normal(size=(200, 3))
    clf = DiffusionClassifier(max_iter=1, n_trials=2, validation_fraction=None)
    for n_classes, rank, embedding in [(9, None, True), (10, 32, False), (20, 32, False)]:
        with pytest.warns(ConvergenceWarning):
            clf.fit(x, np.arange(200) % n_classes)
        readout = clf.denoiser_.readout
        assert (None if readout is None else readout[0].out_features) == rank
        assert (clf.denoiser_.label is not None) == embedding
        if rank:  # one read-out of 3 features per class
            assert readout[1].out_features == n_classes * 3


# Picked from every class's read-out, and computed from each row's own class's weights.
@pytest.mark.parametrize("n_classes", [12, _denoisers.EVERY_READ_OUT_BELOW])
def test_the_read_out_of_each_rows_own_class_is_computed_in_pieces_with_the_same_values(n_classes):
    torch.manual_seed(0)
    net = MLPDenoiser(3, n_classes, hidden_size=32, class_readout=4)
    nn.init.normal_(net.readout[1].weight), nn.init.normal_(net.readout[1].bias)
    n = 2 * _denoisers.OWN_READ_OUT_ROWS + 7  # three pieces
    basis, y = torch.randn(n, 4), torch.randint(n_classes, (n,))
    with torch.no_grad():
        own = net._own_read_out(basis, y)
        every = (basis @ net.readout[1].weight.t() + net.readout[1].bias).view(n, n_classes, 3)
        torch.testing.assert_close(own, every[torch.arange(n), y], rtol=1e-5, atol=1e-6)
        assert torch.equal(own[-7:], net._own_read_out(basis[-7:], y[-7:]))  # a row's value: its own


# --- The Gaussian base ------------------------------------------------------------------


def test_a_gaussian_base_is_the_exact_denoiser_of_gaussian_classes():
    # x_0 ~ N(mu_c, diag(var)) and x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps give
    # E[eps | x_t, c] = sqrt(1 - abar) (x_t - sqrt(abar) mu_c) / (abar var + 1 - abar):
    # the prediction of a new network (its output layer at zero) with the gate at 1.
    alphas = make_alphas_cumprod("linear", 1000)
    rng = np.random.default_rng(0)
    mu, sd = np.array([[0.0, 2.0], [1.0, -1.0]]), np.array([0.3, 1.5])
    y = np.arange(4000) % 2
    x0 = mu[y] + sd * rng.standard_normal((4000, 2))
    net = MLPDenoiser(2, 2, hidden_size=16, n_frequencies=0, gaussian_base=1000)
    x_t, t, classes = torch.randn(8, 2), torch.tensor([0, 100, 500, 999] * 2), torch.tensor([0] * 4 + [1] * 4)
    with torch.no_grad():
        assert torch.equal(net(x_t, t, classes), torch.zeros(8, 2))  # the gate starts at 0
    net.fit_gaussian_base(torch.tensor(x0, dtype=torch.float32), torch.as_tensor(y), as_tensor(alphas))
    means = np.stack([x0[y == c].mean(0) for c in (0, 1)])
    np.testing.assert_allclose(net.base_mean.numpy(), means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.base_variance.numpy(), ((x0 - means[y]) ** 2).mean(0), rtol=1e-5)
    with torch.no_grad():
        net.base_gate.fill_(1.0)
        predicted = net(x_t, t, classes).double().numpy()
    abar = alphas.astype(np.float32)[t.numpy()][:, None].astype(np.float64)  # the network's float32 schedule
    mean, var = net.base_mean.double().numpy()[classes.numpy()], net.base_variance.double().numpy()
    expected = np.sqrt(1 - abar) * (x_t.double().numpy() - np.sqrt(abar) * mean) / (abar * var + 1 - abar)
    np.testing.assert_allclose(predicted, expected, rtol=1e-5, atol=1e-6)
    # The factor is the regression of the noise on x_t: on fresh draws at t = 300, the
    # least-squares slope of each class and feature, within Monte Carlo error (~3%).
    abar = alphas[300]
    eps = rng.standard_normal(x0.shape)
    centred = np.sqrt(abar) * x0 + np.sqrt(1 - abar) * eps - np.sqrt(abar) * mu[y]
    for c in (0, 1):
        slope = (centred[y == c] * eps[y == c]).sum(0) / (centred[y == c] ** 2).sum(0)
        np.testing.assert_allclose(slope, np.sqrt(1 - abar) / (abar * sd**2 + 1 - abar), rtol=0.1)


def test_a_gaussian_bases_moments_weigh_rows_and_leave_out_masked_values():
    x0 = torch.tensor([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0], [10.0, 5.0], [0.0, 5.0]])
    y = torch.tensor([0, 0, 0, 1, 1])
    alphas = as_tensor(make_alphas_cumprod("linear", 10))

    def moments(x0, y, **kwargs):
        net = MLPDenoiser(2, 3, n_frequencies=0, gaussian_base=10)
        net.fit_gaussian_base(x0, y, alphas, **kwargs)
        return net.base_mean, net.base_variance

    # Integer weights are repeated rows; a weight of 0, a removed row.
    weighted = moments(x0, y, weights=np.array([2.0, 1.0, 0.0, 1.0, 1.0]))
    repeated = moments(x0[[0, 0, 1, 3, 4]], y[[0, 0, 1, 3, 4]])
    for a, b in zip(weighted, repeated):
        torch.testing.assert_close(a, b)
    mean, variance = moments(x0, y)
    torch.testing.assert_close(mean[:2], torch.tensor([[2.0, 5.0], [5.0, 5.0]]))
    torch.testing.assert_close(variance[0], torch.tensor((1 + 1 + 0 + 25 + 25) / 5))
    # A class without rows has the mean of all; a constant feature, the least variance.
    torch.testing.assert_close(mean[2], torch.tensor([16 / 5, 5.0]))
    assert variance[1] == MIN_BASE_VARIANCE
    # A masked value counts for neither its class's mean nor the variance.
    mask = torch.ones_like(x0)
    mask[3, 0] = 0
    mean, variance = moments(x0, y, mask=mask)
    torch.testing.assert_close(mean[:2, 0], torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(variance[0], torch.tensor((1 + 1 + 0 + 0) / 4))


def test_a_gaussian_base_needs_the_schedules_length():
    net = MLPDenoiser(2, 2, gaussian_base=50)
    message = r"gaussian_base=50\) is a base for a noise schedule of that many steps, not of 1000"
    with pytest.raises(ValueError, match=message):
        net.fit_gaussian_base(torch.randn(10, 2), torch.arange(10) % 2, as_tensor(make_alphas_cumprod("linear", 1000)))


def test_forward_all_and_forward_pairs_add_the_same_gaussian_base():
    torch.manual_seed(0)
    net = MLPDenoiser(3, 4, hidden_size=32, n_frequencies=0, gaussian_base=1000).eval()
    torch.nn.init.normal_(net.output[1].weight)
    net.fit_gaussian_base(torch.randn(40, 3) * 2, torch.arange(40) % 4, as_tensor(make_alphas_cumprod("linear", 1000)))
    with torch.no_grad():
        net.base_gate.fill_(0.7)
        x_t, t = torch.randn(48, 3), torch.randint(1000, (48,))
        every = net.forward_all(x_t, t)
        rows, classes = torch.randint(48, (600,)), torch.randint(4, (600,))
        assert torch.equal(net.forward_pairs(x_t, t, rows, classes), every[rows, classes])
        for c in range(4):
            torch.testing.assert_close(every[:, c], net(x_t, t, torch.full((48,), c)), rtol=1e-5, atol=1e-6)
        # The base is what the gate adds: the network without it differs by the base alone.
        on_x, on_mean = net._ungated_base_factors(t)
        base = 0.7 * (on_x * x_t).unsqueeze(1) - 0.7 * on_mean.unsqueeze(1) * net.base_mean
        net.base_gate.fill_(0.0)
        torch.testing.assert_close(every - net.forward_all(x_t, t), base, rtol=1e-5, atol=1e-6)


def test_mlp_options_give_a_gaussian_base_to_smooth_networks_of_fewer_than_ten_classes():
    x = np.random.default_rng(0).normal(size=(400, 12))  # no detail finer than a plain MLP draws
    assert mlp_options(x, np.arange(400) % 9, n_steps=1000)["gaussian_base"] == 1000
    assert mlp_options(x, np.arange(400) % 10, n_steps=1000)["gaussian_base"] == 0  # read-outs instead
    assert mlp_options(x, np.arange(400) % 2)["gaussian_base"] == 0  # no schedule given
    # The frequencies draw fine detail: no base.
    dense = np.concatenate([_grid(0.05, 10), _grid(0.05, 10) + 0.01])
    options = mlp_options(dense, np.repeat([0, 1], 100), n_steps=1000)
    assert options["n_frequencies"] == 16 and options["gaussian_base"] == 0


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_sets_the_gaussian_base_from_each_new_networks_training_rows(monkeypatch):
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    calls = []
    fit_base = MLPDenoiser.fit_gaussian_base

    def recorded(self, x0, y, *args, **kwargs):
        calls.append(x0.shape[0])
        return fit_base(self, x0, y, *args, **kwargs)

    monkeypatch.setattr(MLPDenoiser, "fit_gaussian_base", recorded)
    clf = DiffusionClassifier(max_iter=50, n_trials=8, random_state=0).fit(X, y)
    # The first training's 105 rows (45 held out), then the refit's 150.
    assert calls == [105, 150]
    net = clf.denoiser_
    assert net.gaussian_base == clf.n_diffusion_steps and net.base_gate.item() != 0.0
    standardised = clf.scaler_.transform(X)
    np.testing.assert_allclose(net.base_mean.numpy(), [standardised[y == c].mean(0) for c in range(3)], atol=1e-5)
    np.testing.assert_array_equal(net.base_alphas_cumprod.numpy(), clf.alphas_cumprod_.astype(np.float32))
    # A continued fit trains on from the network's base.
    mean = net.base_mean.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.set_params(warm_start=True).fit(X, y)
    assert calls == [105, 150] and torch.equal(clf.denoiser_.base_mean, mean)
