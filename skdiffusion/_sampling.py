"""Class-conditional generation by DDPM ancestral sampling."""

import numpy as np
import torch

from ._denoisers import without_autograd


@without_autograd
def ancestral_sample(denoiser, y, sample_shape, *, alphas_cumprod, generator, condition=None):
    """Draw ``x_0 ~ p(x_0 | y)`` with Algorithm 2 of Ho et al. (2020); shape (len(y), *sample_shape).

    The reverse variance is the posterior one, ``beta_tilde_t`` (Ho et al., eq. 7), and
    ``alphas_cumprod`` is the float64 schedule of the forward process. ``condition``, a
    pair ``(x_cond, mask)`` of tensors of the samples' shape, holds the elements where
    ``mask`` is 0 at ``x_cond`` throughout, as training held them: ``p(x_0 | y, x_cond)``.
    """
    alphas_cumprod = np.asarray(alphas_cumprod, dtype=np.float64)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    alphas = alphas_cumprod / alphas_cumprod_prev
    betas = 1 - alphas
    posterior_std = np.sqrt(betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod))
    device, n = y.device, y.shape[0]
    x_t = torch.randn((n, *sample_shape), generator=generator).to(device)
    x_cond, mask = condition if condition is not None else (None, None)
    for t in range(alphas_cumprod.size - 1, -1, -1):
        if mask is not None:
            x_t = x_cond + mask * (x_t - x_cond)
        eps_hat = denoiser(x_t, torch.full((n,), t, dtype=torch.long, device=device), y)
        x_t = (x_t - betas[t] / np.sqrt(1 - alphas_cumprod[t]) * eps_hat) / np.sqrt(alphas[t])
        if t > 0:
            x_t = x_t + posterior_std[t] * torch.randn(x_t.shape, generator=generator).to(device)
    return x_t if mask is None else x_cond + mask * (x_t - x_cond)
