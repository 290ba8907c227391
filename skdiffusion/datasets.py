"""Toy data sets made by code: nothing is downloaded."""

import numpy as np
from sklearn.utils import check_random_state, shuffle as _shuffle


def make_spirals(n_samples=100, *, noise=0.1, n_turns=1.5, shuffle=True, random_state=None):
    """Make two interlaced spirals, a toy problem whose classes differ only in fine 2-D structure.

    A point of class 0 lies at angle ``theta = sqrt(u) * n_turns * 2 * pi`` (u uniform on
    [0, 1], so points are spread evenly along the arm) and radius ``theta / 5``; class 1 is
    class 0 turned by half a circle. Isotropic Gaussian noise of standard deviation
    ``noise`` is added to both coordinates.

    Parameters
    ----------
    n_samples : int or tuple of two ints, default=100
        The total number of points, split as evenly as possible between the two
        classes, or the number of points of each class.
    noise : float, default=0.1
        Standard deviation of the Gaussian noise added to the coordinates.
    n_turns : float, default=1.5
        How many full turns each arm makes around the centre.
    shuffle : bool, default=True
        Whether to shuffle the points; otherwise class 0 comes first.
    random_state : int, RandomState instance or None, default=None
        Seed of the angles, the noise and the shuffle.

    Returns
    -------
    X : ndarray of shape (n_samples, 2)
        The coordinates.
    y : ndarray of shape (n_samples,)
        The class of each point, 0 or 1.

    Examples
    --------
    >>> from skdiffusion.datasets import make_spirals
    >>> X, y = make_spirals(n_samples=10, random_state=0)
    >>> X.shape, y.tolist().count(1)
    ((10, 2), 5)
    """
    if isinstance(n_samples, (int, np.integer)):
        n_per_class = (n_samples - n_samples // 2, n_samples // 2)
    else:
        n_per_class = tuple(n_samples)
    rng = check_random_state(random_state)
    arms = []
    for label, n in enumerate(n_per_class):
        theta = np.sqrt(rng.uniform(size=n)) * n_turns * 2 * np.pi
        arm = np.column_stack([theta * np.cos(theta), theta * np.sin(theta)]) / 5
        arms.append((-1) ** label * arm)
    X = np.concatenate(arms) + rng.normal(scale=noise, size=(sum(n_per_class), 2))
    y = np.repeat(np.arange(2), n_per_class)
    if shuffle:
        X, y = _shuffle(X, y, random_state=rng)
    return X, y
