"""Noise schedules and the forward process, pinned to the values of the papers."""

import math

import numpy as np
import pytest
import torch

from skdiffusion._schedule import (
    BETA_SCHEDULES,
    add_noise,
    append_dims,
    as_tensor,
    make_alphas_cumprod,
)


def test_linear_betas_of_ddpm():
    # Ho et al. (2020), section 4: betas rise linearly from 1e-4 to 0.02 over T = 1000.
    betas = BETA_SCHEDULES["linear"](1000)
    assert betas.shape == (1000,)
    assert betas.dtype == np.float64
    assert betas[0] == pytest.approx(1e-4, rel=1e-12)
    assert betas[-1] == pytest.approx(0.02, rel=1e-12)
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-9)


def test_linear_betas_rescale_with_the_number_of_steps():
    # Nichol & Dhariwal (2021): T steps scale the betas by 1000 / T.
    betas = BETA_SCHEDULES["linear"](250)
    assert betas[0] == pytest.approx(4e-4, rel=1e-12)
    assert betas[-1] == pytest.approx(0.08, rel=1e-12)


@pytest.mark.parametrize(
    "schedule, n_steps",
    [
        ("cosine", 2),
        ("cosine", 20),
        ("cosine", 1000),
        ("linear", 2),
        ("linear", 20),
        ("linear", 50),
        ("linear", 1000),
    ],
)
def test_alphas_cumprod_is_a_decreasing_product_in_0_1(schedule, n_steps):
    abar = make_alphas_cumprod(schedule, n_steps)
    betas = BETA_SCHEDULES[schedule](n_steps)
    assert abar.shape == (n_steps,)
    assert abar.dtype == np.float64
    np.testing.assert_allclose(abar, np.cumprod(1 - betas), rtol=1e-12)
    assert np.all(np.diff(abar) < 0)
    assert np.all((abar > 0) & (abar < 1))


def test_linear_alphas_cumprod_pinned_values():
    abar = make_alphas_cumprod("linear", 1000)
    assert abar[0] == 1 - 1e-4
    betas = np.linspace(1e-4, 0.02, 1000)
    assert abar[1] == pytest.approx((1 - 1e-4) * (1 - betas[1]), rel=1e-14)
    # The end of DDPM's schedule is almost pure noise: abar_T ~ 4.04e-5.
    assert abar[-1] == pytest.approx(np.prod(1 - betas), rel=1e-12)
    assert 4.0e-5 < abar[-1] < 4.1e-5


def test_cosine_alphas_cumprod_follows_the_formula():
    # Nichol & Dhariwal (2021), eq. (17): abar(t) = f(t) / f(0),
    # f(t) = cos((t / T + s) / (1 + s) * pi / 2) ** 2, with abar[t] the value after step t + 1.
    T, s = 1000, 0.008
    f = np.cos((np.arange(T + 1) / T + s) / (1 + s) * math.pi / 2) ** 2
    abar = make_alphas_cumprod("cosine", T)
    betas = BETA_SCHEDULES["cosine"](T)
    unclipped = betas < 0.999
    assert unclipped[:-1].all()  # only the last beta reaches the clip
    np.testing.assert_allclose(abar[:-1], f[1:-1] / f[0], rtol=1e-10)
    assert betas[-1] == 0.999
    assert abar[T // 2] == pytest.approx(np.cos((0.501 + s) / (1 + s) * math.pi / 2) ** 2 / f[0], rel=1e-10)


def test_add_noise_at_known_alphas_cumprod():
    # Ho et al. (2020), eq. (4): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.
    alphas_cumprod = torch.tensor([1.0, 0.64, 0.36, 0.0])
    x0 = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5], [4.0, 4.0]])
    eps = torch.tensor([[10.0, 10.0], [1.0, 2.0], [-1.0, 1.0], [0.25, -0.5]])
    t = torch.tensor([0, 1, 2, 3])
    expected = torch.tensor(
        [
            [1.0, 2.0],  # t=0: abar = 1, no noise
            [0.8 * 3 + 0.6 * 1, 0.8 * -1 + 0.6 * 2],
            [0.6 * 0.5 + 0.8 * -1, 0.6 * 0.5 + 0.8 * 1],
            [0.25, -0.5],  # abar = 0: pure noise
        ]
    )
    torch.testing.assert_close(add_noise(x0, eps, t, alphas_cumprod), expected)


def test_add_noise_broadcasts_over_sample_dimensions():
    alphas_cumprod = torch.tensor([0.25, 0.0])
    x0 = torch.ones((2, 3, 4, 5))
    eps = torch.full((2, 3, 4, 5), 2.0)
    x_t = add_noise(x0, eps, torch.tensor([0, 1]), alphas_cumprod)
    assert x_t.shape == x0.shape
    torch.testing.assert_close(x_t[0], torch.full((3, 4, 5), 0.5 + math.sqrt(0.75) * 2))
    torch.testing.assert_close(x_t[1], eps[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_add_noise_looks_up_the_factors_that_its_timesteps_own_values_give(dtype):
    # The square roots are made once per schedule tensor (in inference mode too, for later
    # use with autograd): bit for bit those of the timesteps' own alphas_cumprod.
    alphas_cumprod = as_tensor(make_alphas_cumprod("cosine", 1000), dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn((500, 3), generator=generator, dtype=dtype)
    eps = torch.randn((500, 3), generator=generator, dtype=dtype)
    t = torch.randint(0, 1000, (500,), generator=generator)
    abar = alphas_cumprod[t].unsqueeze(1)
    with torch.inference_mode():
        inferred = add_noise(x0, eps, t, alphas_cumprod)
    assert torch.equal(inferred, abar.sqrt() * x0 + (1 - abar).sqrt() * eps)
    weight = torch.ones(3, dtype=dtype, requires_grad=True)
    add_noise(x0 * weight, eps, t, alphas_cumprod).sum().backward()
    assert torch.equal(weight.grad, (abar.sqrt() * x0).sum(0))


def test_append_dims():
    x = torch.arange(3.0)
    assert append_dims(x, 4).shape == (3, 1, 1, 1)
    assert append_dims(x, 1).shape == (3,)


def test_as_tensor_converts_the_float64_schedule():
    abar = make_alphas_cumprod("linear", 10)
    tensor = as_tensor(abar)
    assert tensor.dtype == torch.float32
    assert tensor.shape == (10,)
    np.testing.assert_allclose(tensor.numpy(), abar, rtol=1e-7)
    assert as_tensor(abar, dtype=torch.float64).numpy().tolist() == abar.tolist()
