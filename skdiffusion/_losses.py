"""Per-element denoising losses, shared by training and scoring."""

import torch
from torch.nn import functional as F


def _difference(eps_hat, eps, overwrite=False):
    """Return ``eps_hat - eps``: in ``eps_hat``'s own memory if the caller gives it up (``overwrite``).

    Only where autograd does not track ``eps_hat``. A scoring call's predictions are a
    temporary of a megabyte or so, and a new one for their difference is fresh pages.
    """
    return eps_hat.sub_(eps) if overwrite and not eps_hat.requires_grad else eps_hat - eps


def _squared(difference):
    """Return ``difference ** 2``, in place where autograd does not track it (the caller's temporary).

    A second temporary for the square cost digits' predictions 6% of their time, in fresh pages.
    """
    return difference.square() if difference.requires_grad else difference.square_()


def _absolute(difference):
    """Return ``|difference|``, in place as :func:`_squared` squares."""
    return difference.abs() if difference.requires_grad else difference.abs_()


def _huber(difference):
    """Return Huber's loss of ``difference``: ``F.huber_loss(eps_hat, eps)`` of ``eps_hat - eps``, the same bits."""
    return F.huber_loss(difference, difference.new_zeros(()).expand_as(difference), reduction="none")


# Each loss as a function of eps_hat - eps. The per-sample loss is their mean over the
# sample's elements. Li et al. (2023) compare all three for classification.
OF_DIFFERENCE = {"l2": _squared, "l1": _absolute, "huber": _huber}


def _of_predictions(name):
    """Return loss ``name`` as a function of ``eps_hat`` and ``eps`` (``overwrite``: see :func:`_difference`)."""
    return lambda eps_hat, eps, overwrite=False: OF_DIFFERENCE[name](_difference(eps_hat, eps, overwrite))


LOSSES = {name: _of_predictions(name) for name in OF_DIFFERENCE}
# Their derivatives with respect to eps_hat, as functions of eps_hat - eps (autograd's: the
# sign of 0 is 0, and Huber's slope is 1 at |d| = 1).
GRADIENTS = {
    "l2": lambda d: 2 * d,
    "l1": torch.sign,
    "huber": lambda d: d.clamp(-1.0, 1.0),
}


def per_sample_loss(loss, eps_hat, eps, *, sample_ndim=None, mask=None, overwrite=False):
    """Return the mean of ``LOSSES[loss]`` over each sample's elements.

    ``eps_hat`` and ``eps`` have the same shape, the samples' dimensions last:
    ``sample_ndim`` of them (default: all but the first). ``mask`` (broadcast to that
    shape) keeps the diffused elements: the others count as zero, so that the loss of a
    row with missing values is that of its observed ones, summed over the same number of
    elements as a whole row's (the ELBO of the observed marginal, Ouyang et al., 2023).
    ``overwrite``: ``eps_hat`` is a temporary the loss may compute in (see :func:`_difference`).
    """
    sample_ndim = eps.ndim - 1 if sample_ndim is None else sample_ndim
    return difference_loss(loss, _difference(eps_hat, eps, overwrite), sample_ndim=sample_ndim, mask=mask)


def difference_loss(loss, difference, *, sample_ndim, mask=None):
    """Return :func:`per_sample_loss` from ``difference = eps_hat - eps``, a temporary it may compute in."""
    elements = OF_DIFFERENCE[loss](difference)
    if mask is not None:
        elements = elements * mask
    return (elements if sample_ndim == 1 else elements.flatten(-sample_ndim)).mean(-1)


def mean_loss_and_gradient(loss, eps_hat, eps, *, mask=None):
    """Return the mean of :func:`per_sample_loss` over the samples, and its gradient with respect to ``eps_hat``.

    The mean over samples of the per-sample means is the mean over all elements, each
    sample having as many; the gradient is computed directly, without autograd.
    """
    difference = eps_hat - eps
    gradient = GRADIENTS[loss](difference)  # a new tensor: the loss may then be computed in the difference
    elements = OF_DIFFERENCE[loss](difference)
    if mask is not None:
        elements, gradient = elements * mask, gradient * mask
    return elements.mean(), gradient.div_(elements.numel())
