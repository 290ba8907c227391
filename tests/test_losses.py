"""Per-element denoising losses and their per-sample means."""

import pytest
import torch

from skdiffusion._losses import LOSSES, per_sample_loss


def test_per_sample_loss_values():
    eps_hat = torch.tensor([[0.0, 0.0], [1.0, -3.0]])
    eps = torch.tensor([[1.0, -2.0], [1.0, 0.0]])
    torch.testing.assert_close(per_sample_loss("l2", eps_hat, eps), torch.tensor([2.5, 4.5]))
    torch.testing.assert_close(per_sample_loss("l1", eps_hat, eps), torch.tensor([1.5, 1.5]))
    # Huber with delta 1: 0.5 d^2 below 1, |d| - 0.5 above.
    torch.testing.assert_close(per_sample_loss("huber", eps_hat, eps), torch.tensor([1.0, 1.25]))
    assert set(LOSSES) == {"l2", "l1", "huber"}


@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
def test_per_sample_loss_compares_every_class_with_the_same_noise(loss):
    eps_hat, eps = torch.randn(5, 3, 2, 4), torch.randn(5, 2, 4)  # 3 classes, samples of shape (2, 4)
    per_class = torch.stack([per_sample_loss(loss, eps_hat[:, c], eps) for c in range(3)], dim=1)
    repeated = eps.unsqueeze(1).expand(5, 3, 2, 4).contiguous()
    assert torch.equal(per_sample_loss(loss, eps_hat, repeated, sample_ndim=2), per_class)
