"""Consensus across networks: sites that at least k of n networks find at one place, same class.

Matching is one-to-one between networks (:func:`napari_hrtem.analysis.metrics.match_sites`), class by
class: each network's sites of a class are matched to the clusters built so far (cluster
position = mean of its members) within ``radius`` Å; unmatched sites start new clusters. A
cluster's ``votes`` are the networks in it; clusters with ``votes >= k`` form the consensus.
"""

from __future__ import annotations

import numpy as np

from napari_hrtem.analysis.metrics import match_sites
from napari_hrtem.io.sites import Sites


def consensus(results: dict[str, Sites], k: int | None = None, radius: float = 0.5) -> Sites:
    """The sites where at least ``k`` networks agree.

    Sites of the networks are matched one-to-one within ``radius`` Å; a column found by at
    least ``k`` networks with the same class is kept at their mean position [1]_.

    Parameters
    ----------
    results : dict of str to Sites
        Network name -> its sites (Å, same class names).
    k : int, optional
        Least number of agreeing networks (default: a majority, ``n // 2 + 1``).
    radius : float
        Agreement radius, Å.

    Returns
    -------
    Sites
        Mean positions ``(y, x)`` in Å, the agreed class, the mean confidence, ``votes`` and
        ``networks`` (names joined by ``;``); ``meta`` holds ``k``, ``n`` and ``radius``.

    Raises
    ------
    ValueError
        If ``results`` is empty, ``k`` is outside ``1..n``, ``radius`` is not a finite number
        > 0 and at most :data:`~napari_hrtem.arguments.MAX_RADIUS` Å, or the class names differ.

    References
    ----------
    .. [1] J. Schiøtz, J. Madsen, B. J. G. Østergaard, A. S. Dreisig, P. Liu, S. Helveg, O. Winther,
       J. Kling, J. B. Wagner, T. W. Hansen, "Using neural networks to identify atoms in HRTEM
       images", Microscopy and Microanalysis 25 (S2),
       216-217 (2019).
    """
    from napari_hrtem.arguments import check_number, check_radius

    radius = check_radius(radius)
    if not results:
        raise ValueError("consensus needs the sites of at least one network")
    n = len(results)
    k = n // 2 + 1 if k is None else check_number(k, "k", low=1, high=n, integer=True)
    class_names = next(iter(results.values())).class_names
    if any(s.class_names != class_names for s in results.values()):
        raise ValueError("the networks label different classes; a consensus needs the same classes")
    yx, cls, conf, votes, nets = [], [], [], [], []
    for code in range(len(class_names)):
        members: list[list[tuple[str, np.ndarray, float]]] = []
        for name, sites in results.items():
            mask = sites.classes == code
            pts, cf = sites.yx[mask], sites.confidence[mask]
            centres = np.array([np.mean([m[1] for m in c], axis=0) for c in members]).reshape(-1, 2)
            ia, ib = match_sites(pts, centres, radius)
            for i, j in zip(ia, ib):
                members[j].append((name, pts[i], cf[i]))
            for i in np.setdiff1d(np.arange(len(pts)), ia):
                members.append([(name, pts[i], cf[i])])
        for c in members:
            if len(c) >= k:
                yx.append(np.mean([m[1] for m in c], axis=0))
                cls.append(code)
                conf.append(float(np.mean([m[2] for m in c])))
                votes.append(len(c))
                nets.append(";".join(m[0] for m in c))
    return Sites(
        np.array(yx).reshape(-1, 2),
        np.array(cls, int),
        np.array(conf),
        votes=np.array(votes, int),
        networks=nets,
        class_names=class_names,
        meta=dict(k=k, n=n, radius=radius),
    )
