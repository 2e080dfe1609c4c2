"""Comparing networks: where they disagree, and what each one says at a given place.

Disagreements are found class-blind: every network's sites are clustered within ``radius`` Å
with the one-to-one matching of :func:`napari_hrtem.analysis.metrics.match_sites` (as in
:mod:`napari_hrtem.analysis.consensus`, but ignoring the class); a cluster is a disagreement when some
networks did not find it, or when its members give it different classes.
"""

from __future__ import annotations

import numpy as np

from napari_hrtem.analysis.metrics import match_sites
from napari_hrtem.io.sites import Sites


def disagreements(results: dict[str, Sites], radius: float = 0.5) -> tuple[np.ndarray, list[str], list[str]]:
    """Sites where the networks do not all agree.

    Parameters
    ----------
    results : dict
        Network name -> its :class:`~napari_hrtem.io.sites.Sites` (same class names).
    radius : float
        Largest distance in Å between sites of two networks taken as the same column.

    Returns
    -------
    yx : numpy.ndarray
        ``(k, 2)`` mean positions in Å of the disputed columns.
    kind : list of str
        ``"missed by <names>"`` (found by some networks only) or ``"class differs"``.
    says : list of str
        What each network says there, e.g. ``"unet: S2; msdnet: S; unetpp: -"``.

    Raises
    ------
    ValueError
        If ``results`` is empty.
    """
    if not results:
        raise ValueError("disagreements need the sites of at least one network")
    names = list(results)
    class_names = results[names[0]].class_names
    clusters: list[dict[str, tuple[np.ndarray, int]]] = []
    for name in names:
        sites = results[name]
        centres = np.array([np.mean([p for p, _ in c.values()], axis=0) for c in clusters]).reshape(-1, 2)
        ia, ib = match_sites(sites.yx, centres, radius)
        for i, j in zip(ia, ib):
            clusters[j][name] = (sites.yx[i], int(sites.classes[i]))
        for i in np.setdiff1d(np.arange(len(sites)), ia):
            clusters.append({name: (sites.yx[i], int(sites.classes[i]))})
    yx, kind, says = [], [], []
    for c in clusters:
        missing = [n for n in names if n not in c]
        classes = {cls for _, cls in c.values()}
        if not missing and len(classes) == 1:
            continue
        yx.append(np.mean([p for p, _ in c.values()], axis=0))
        kind.append(f"missed by {', '.join(missing)}" if missing else "class differs")
        says.append("; ".join(f"{n}: {class_names[c[n][1]] if n in c else '-'}" for n in names))
    return np.array(yx).reshape(-1, 2), kind, says


def probabilities_at(network, images: np.ndarray, sampling: float, yx, *, window: float = 24.0, model=None) -> dict:
    """What one network says at a place: its class probabilities there and its nearest site.

    The network runs (with its model card's preprocessing) on a window of ``2 * window`` Å
    around ``yx`` only, so the answer comes in a fraction of a second on any image size.

    Parameters
    ----------
    network : napari_hrtem.models.registry.Network
    images : numpy.ndarray
        ``(N, H, W)`` raw focal series.
    sampling : float
        Å/px of ``images``.
    yx : (float, float)
        The place, Å (origin at the centre of pixel (0, 0)).
    window : float
        Half-size of the analysed window, Å.

    Returns
    -------
    dict
        ``probabilities`` {class or "background": P} at the pixel nearest ``yx`` (the column's
        probabilities summed over its 3x3 neighbourhood and normalized), ``site`` (the nearest
        site the network finds in the window: ``yx`` Å, ``class``, ``distance`` Å) or None.
    """
    from napari_hrtem.analysis.inference import predict_sites

    images = np.asarray(images, np.float32)
    h, w = images.shape[-2:]
    y, x = (float(v) / sampling for v in yx)
    half = int(np.ceil(window / sampling))
    r0, r1 = max(round(y) - half, 0), min(round(y) + half + 1, h)
    c0, c1 = max(round(x) - half, 0), min(round(x) + half + 1, w)
    if r1 - r0 < 8 or c1 - c0 < 8:
        raise ValueError(f"the place ({yx[0]:.1f}, {yx[1]:.1f}) Å lies outside the image")
    sites, prob = predict_sites(network, images[:, r0:r1, c0:c1], sampling, model=model)
    net_sampling = float(network.card.sampling)
    local = np.array([yx[0] - r0 * sampling, yx[1] - c0 * sampling])
    pr, pc = np.clip(np.round(local / net_sampling).astype(int), 0, np.array(prob.shape[1:]) - 1)
    patch = prob[:, max(pr - 1, 0) : pr + 2, max(pc - 1, 0) : pc + 2].sum(axis=(1, 2))
    patch = patch / max(patch.sum(), 1e-12)
    names = [*network.card.classes, "background"]
    site = None
    if len(sites):
        d = np.hypot(*(sites.yx - local).T)
        i = int(np.argmin(d))
        site = dict(
            yx=(sites.yx[i] + np.array([r0, c0]) * sampling).tolist(),
            **{"class": sites.class_names[sites.classes[i]]},
            distance=float(d[i]),
        )
    return dict(probabilities={n: float(p) for n, p in zip(names, patch)}, site=site)
