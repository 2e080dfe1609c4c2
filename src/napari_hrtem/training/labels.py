"""Label maps for training: disk class maps from ground-truth sites."""

from __future__ import annotations

import numpy as np

from napari_hrtem.simulation.structures import BACKGROUND


def class_map(
    sites: np.ndarray, classes: np.ndarray, shape: tuple[int, int], sampling: float, radius: float = 0.45
) -> np.ndarray:
    """Disk labels: pixels within ``radius`` Å of a site take its class, others background.

    Parameters
    ----------
    sites : numpy.ndarray
        ``(n, 2)`` positions ``(y, x)`` in Å (origin at the centre of pixel (0, 0)).
    classes : numpy.ndarray
        ``(n,)`` integer class codes.
    shape : (int, int)
        ``(H, W)`` of the map.
    sampling : float
        Å/px.
    radius : float
        Disk radius in Å.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` uint8, background = :data:`~napari_hrtem.simulation.structures.BACKGROUND`.
    """
    labels = np.full(shape, BACKGROUND, dtype=np.uint8)
    r_px = radius / sampling
    k = int(np.ceil(r_px))
    dy, dx = np.mgrid[-k : k + 1, -k : k + 1]
    for (y, x), c in zip(np.asarray(sites) / sampling, classes):
        iy, ix = int(round(y)), int(round(x))
        rr, cc = iy + dy, ix + dx
        inside = ((rr - y) ** 2 + (cc - x) ** 2 <= r_px**2) & (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        labels[rr[inside], cc[inside]] = c
    return labels
