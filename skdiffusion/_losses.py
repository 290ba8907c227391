"""Per-element denoising losses, shared by training and scoring."""

import torch

# The per-sample loss is their mean over the sample's elements. Li et al. (2023) compare
# all three for classification. Each is a function of ``d = eps_hat - eps``, a new tensor
# that it overwrites: a scoring call's differences for every class are megabytes, and a
# second tensor of them was mostly page faults (a fifth of a 50-class prediction).


def _huber(d):
    """Return ``F.huber_loss(eps_hat, eps, reduction="none")`` (delta 1) from ``d``, bit for bit."""
    z = d.abs_()
    return torch.where(z < 1.0, 0.5 * z * z, z - 0.5)


LOSSES = {"l2": torch.Tensor.square_, "l1": torch.Tensor.abs_, "huber": _huber}
# Their derivatives with respect to eps_hat, as functions of eps_hat - eps (autograd's: the
# sign of 0 is 0, and Huber's slope is 1 at |d| = 1).
GRADIENTS = {
    "l2": lambda d: 2 * d,
    "l1": torch.sign,
    "huber": lambda d: d.clamp(-1.0, 1.0),
}


def per_sample_loss(loss, eps_hat, eps, *, sample_ndim=None, mask=None):
    """Return the mean of ``LOSSES[loss]`` over each sample's elements.

    ``eps_hat`` and ``eps`` have the same shape, the samples' dimensions last:
    ``sample_ndim`` of them (default: all but the first). ``mask`` (broadcast to that
    shape) keeps the diffused elements: the others count as zero, so that the loss of a
    row with missing values is that of its observed ones, summed over the same number of
    elements as a whole row's (the ELBO of the observed marginal, Ouyang et al., 2023).
    """
    sample_ndim = eps.ndim - 1 if sample_ndim is None else sample_ndim
    elements = LOSSES[loss](eps_hat - eps)
    if mask is None:
        return elements.flatten(-sample_ndim).mean(-1)
    return elements.mul_(mask).flatten(-sample_ndim).mean(-1)


def mean_loss_and_gradient(loss, eps_hat, eps, *, mask=None):
    """Return the mean of :func:`per_sample_loss` over the samples, and its gradient with respect to ``eps_hat``.

    The mean over samples of the per-sample means is the mean over all elements, each
    sample having as many; the gradient is computed directly, without autograd.
    """
    difference = eps_hat - eps
    gradient = GRADIENTS[loss](difference)
    elements = LOSSES[loss](difference)
    if mask is not None:
        elements, gradient = elements.mul_(mask), gradient.mul_(mask)
    return elements.mean(), gradient.div_(elements.numel())
