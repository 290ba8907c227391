"""Per-element denoising losses and their per-sample means."""

import pytest
import torch

from skdiffusion._losses import LOSSES, difference_loss, per_sample_loss


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


def test_losses_are_torchs_bit_for_bit_and_leave_their_inputs_alone():
    # At and around Huber's delta = 1 too; neither eps_hat nor eps is written to.
    eps_hat = torch.cat([torch.randn(1000) * 3, torch.tensor([1.0, -1.0, 0.0, 1.0 + 1e-7, 1.0 - 6e-8])])
    eps = torch.cat([torch.randn(1000), torch.zeros(5)])
    copies = eps_hat.clone(), eps.clone()
    expected = {
        "l2": torch.nn.functional.mse_loss(eps_hat, eps, reduction="none"),
        "l1": torch.nn.functional.l1_loss(eps_hat, eps, reduction="none"),
        "huber": torch.nn.functional.huber_loss(eps_hat, eps, reduction="none"),
    }
    for loss, elements in expected.items():
        assert torch.equal(LOSSES[loss](eps_hat, eps), elements)
        assert torch.equal(per_sample_loss(loss, eps_hat.view(5, -1), eps.view(5, -1)), elements.view(5, -1).mean(1))
    assert torch.equal(eps_hat, copies[0]) and torch.equal(eps, copies[1])


def test_the_squared_error_is_differentiable_and_the_same_under_autograd():
    # Without autograd it squares in place; with it, the values and gradient are mse_loss's.
    eps_hat, eps = torch.randn(6, 3, requires_grad=True), torch.randn(6, 3)
    elements = LOSSES["l2"](eps_hat, eps)
    with torch.no_grad():
        assert torch.equal(elements, LOSSES["l2"](eps_hat, eps))
    elements.sum().backward()
    torch.testing.assert_close(eps_hat.grad, 2 * (eps_hat.detach() - eps), rtol=0, atol=0)


@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
def test_overwrite_gives_the_same_values_and_spares_what_autograd_tracks(loss):
    # Scoring gives up its predictions: the loss may be computed in their memory, with the
    # values it has without; a tensor autograd tracks keeps its values and its gradient.
    eps_hat, eps = torch.randn(7, 3, 5), torch.randn(7, 3, 5)
    expected = per_sample_loss(loss, eps_hat, eps, sample_ndim=1)
    assert torch.equal(per_sample_loss(loss, eps_hat.clone(), eps, sample_ndim=1, overwrite=True), expected)
    tracked = eps_hat.clone().requires_grad_()
    values = per_sample_loss(loss, tracked, eps, sample_ndim=1, overwrite=True)
    assert torch.equal(values.detach(), expected) and torch.equal(tracked.detach(), eps_hat)
    values.sum().backward()
    assert tracked.grad is not None and torch.isfinite(tracked.grad).all()


def test_overwrite_computes_the_squared_error_in_the_predictions_memory():
    eps_hat, eps = torch.randn(4, 6), torch.randn(4, 6)
    expected = (eps_hat - eps).square()
    written = eps_hat.clone()
    assert LOSSES["l2"](written, eps, overwrite=True).data_ptr() == written.data_ptr()
    assert torch.equal(written, expected)


@pytest.mark.parametrize("loss", ["l2", "l1", "huber"])
def test_the_loss_of_the_difference_is_the_loss_bit_for_bit(loss):
    # Scoring may take the noise off itself: the loss of eps_hat - eps is per_sample_loss's,
    # at and around Huber's delta too, with a mask, and computed in the difference's memory.
    eps_hat = torch.cat([torch.randn(995) * 3, torch.tensor([1.0, -1.0, 0.0, 1.0 + 1e-7, 1.0 - 6e-8])]).view(5, 2, 100)
    eps = torch.cat([torch.randn(995), torch.zeros(5)]).view(5, 2, 100)
    mask = (torch.rand(5, 1, 100) > 0.3).float()
    for kept in (None, mask):
        expected = per_sample_loss(loss, eps_hat, eps, sample_ndim=1, mask=kept)
        assert torch.equal(difference_loss(loss, eps_hat - eps, sample_ndim=1, mask=kept), expected)
    difference = eps_hat - eps
    difference_loss(loss, difference, sample_ndim=1)
    if loss != "huber":  # squared or made absolute where it is
        assert torch.equal(difference, LOSSES[loss](eps_hat, eps))
