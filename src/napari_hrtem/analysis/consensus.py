"""Consensus across networks: the atomic columns that at least k of n networks find, each with the
class the networks make most probable.

Matching is one-to-one between networks (:func:`napari_hrtem.analysis.metrics.match_sites`), over
all classes: each network's sites are matched to the clusters built so far (cluster position =
mean of its members) within ``radius`` Å; unmatched sites start new clusters. A cluster's
``votes`` are the networks in it; clusters with ``votes >= k`` form the consensus. Each takes the
class with the largest summed probability over its networks (the sum rule), so one confident
network can outweigh two uncertain ones. The rule ``"same-class"`` (the only one before
2026-12-03) matches class by class instead: a column needs ``k`` networks giving it the same class.
The rule ``"learned"`` gives the same clusters to a classifier trained on simulated series
(:mod:`napari_hrtem.analysis.combiner`), which weighs each network by what its probabilities were
worth there and decides both the class and whether the column is real.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from napari_hrtem.analysis.metrics import match_sites
from napari_hrtem.io.sites import Sites

if TYPE_CHECKING:
    from napari_hrtem.analysis.combiner import Combiner


def class_probabilities(sites: Sites) -> np.ndarray:
    """``(n, C)`` probability of each class at each site: the ``extra["p_<class>"]`` columns that
    :func:`napari_hrtem.analysis.inference.find_sites` writes, or, for sites without them (a file
    written by hand or by another program), the site's ``confidence`` for its own class and 0 for the
    others."""
    names = [f"p_{name}" for name in sites.class_names]
    if all(name in sites.extra for name in names):
        return np.column_stack([np.nan_to_num(sites.extra[name]) for name in names]).reshape(-1, len(names))
    out = np.zeros((len(sites.yx), len(names)))
    out[np.arange(len(sites.yx)), np.asarray(sites.classes, int)] = np.nan_to_num(sites.confidence)
    return out


#: Consensus rules: ``"sum"`` (a column found by ``k`` networks takes the class of the largest summed
#: probability), ``"same-class"`` (a column needs ``k`` networks giving it the same class) and
#: ``"learned"`` (a trained :class:`~napari_hrtem.analysis.combiner.Combiner` gives each column found by
#: ``k`` networks its class, or drops it).
RULES = ("sum", "same-class", "learned")


def _clusters(results: dict[str, Sites], radius: float) -> list[list[tuple[str, np.ndarray, np.ndarray, int]]]:
    """Sites matched one-to-one across networks, network after network, to the clusters built so far
    (position = mean of the members) within ``radius``; each member ``(network, yx, class
    probabilities, class)``."""
    members: list[list[tuple[str, np.ndarray, np.ndarray, int]]] = []
    centres = np.zeros((0, 2))
    for name, sites in results.items():
        pts, probs, own = sites.yx, class_probabilities(sites), np.asarray(sites.classes, int)
        ia, ib = match_sites(pts, centres, radius)
        for i, j in zip(ia, ib):
            members[j].append((name, pts[i], probs[i], own[i]))
        members += [[(name, pts[i], probs[i], own[i])] for i in np.setdiff1d(np.arange(len(pts)), ia)]
        centres = cluster_centres(members)
    return members


def cluster_centres(clusters: list) -> np.ndarray:
    """``(n, 2)`` mean position ``(y, x)`` in Å of the members of each cluster of :func:`_clusters`."""
    return np.array([np.mean([m[1] for m in c], axis=0) for c in clusters]).reshape(-1, 2)


def consensus(
    results: dict[str, Sites],
    k: int | None = None,
    radius: float = 0.5,
    rule: str = "sum",
    combiner: Combiner | None = None,
) -> Sites:
    """The atomic columns that at least ``k`` networks find, with the class they make most probable.

    Sites of the networks are matched one-to-one within ``radius`` Å, whatever their class; a
    column found by at least ``k`` networks is kept at their mean position [1]_. Its class is the
    one with the largest sum, over those networks, of their probability of the class at their
    site (:func:`class_probabilities`; the sum rule of combining classifiers [2]_): where the
    networks give a column different classes, the more confident ones decide, and a column found
    by a majority is never dropped for want of a majority class.

    Parameters
    ----------
    results : dict of str to Sites
        Network name -> its sites (Å, same class names).
    k : int, optional
        Least number of networks that find the column (default: a majority, ``n // 2 + 1``).
    radius : float
        Agreement radius, Å.
    rule : str
        ``"sum"`` (above) or ``"same-class"``: sites are matched class by class, and a column needs
        ``k`` networks giving it the same class (stricter: columns whose class the networks dispute
        are left out), or ``"learned"``: ``combiner`` gives each column found by ``k`` networks
        the class it makes most probable, and drops it where "no column" is most probable.
    combiner : Combiner, optional
        The trained combiner of these networks, for ``rule="learned"``
        (:func:`napari_hrtem.analysis.combiner.shipped_combiner`).

    Returns
    -------
    Sites
        Mean positions ``(y, x)`` in Å, the class, its mean probability over the networks that
        found the column (``confidence``), ``votes`` (those networks) and ``networks`` (their
        names joined by ``;``); ``extra["class_votes"]`` is how many of them gave the column that
        class themselves. ``meta`` holds ``k``, ``n``, ``radius`` and ``rule``.

    Raises
    ------
    ValueError
        If ``results`` is empty, ``k`` is outside ``1..n``, ``radius`` is not a finite number
        > 0 and at most :data:`~napari_hrtem.arguments.MAX_RADIUS` Å, the rule is unknown or the
        class names differ, or the learned rule lacks a combiner of exactly these networks.

    References
    ----------
    .. [1] J. Schiøtz, J. Madsen, B. J. G. Østergaard, A. S. Dreisig, P. Liu, S. Helveg, O. Winther,
       J. Kling, J. B. Wagner, T. W. Hansen, "Using neural networks to identify atoms in HRTEM
       images", Microscopy and Microanalysis 25 (S2),
       216-217 (2019).
    .. [2] J. Kittler, M. Hatef, R. P. W. Duin, J. Matas, "On combining classifiers", IEEE
       Transactions on Pattern Analysis and Machine Intelligence 20 (3), 226-239 (1998), the sum
       rule (eq. 11 with equal priors).
    """
    from napari_hrtem.arguments import check_number, check_radius

    radius = check_radius(radius)
    if rule not in RULES:
        raise ValueError(f"unknown consensus rule {rule!r}; known: {', '.join(RULES)}")
    if not results:
        raise ValueError("consensus needs the sites of at least one network")
    n = len(results)
    k = n // 2 + 1 if k is None else check_number(k, "k", low=1, high=n, integer=True)
    class_names = next(iter(results.values())).class_names
    if any(s.class_names != class_names for s in results.values()):
        raise ValueError("the networks label different classes; a consensus needs the same classes")
    n_classes = len(class_names)
    kept: list[list[tuple[str, np.ndarray, np.ndarray, int]]] = []
    codes: list[int] = []
    learned = None
    if rule == "learned":
        if combiner is None or set(results) != set(combiner.networks):
            have = ", ".join(sorted(results))
            raise ValueError(f"the learned consensus needs a combiner trained with exactly these networks ({have})")
        clusters = _clusters({name: results[name] for name in combiner.networks}, radius)
        p = combiner.probabilities(combiner.features(clusters)).reshape(-1, n_classes + 1)
        best = np.argmax(p, axis=1)
        chosen = [i for i, c in enumerate(clusters) if len(c) >= k and best[i] < n_classes]
        kept = [clusters[i] for i in chosen]
        codes = [int(best[i]) for i in chosen]
        learned = p[chosen, best[chosen]] if chosen else np.zeros(0)
    elif rule == "sum":
        kept = [c for c in _clusters(results, radius) if len(c) >= k]
        summed = np.array([np.sum([m[2] for m in c], axis=0) for c in kept]).reshape(-1, n_classes)
        codes = [int(i) for i in np.argmax(summed, axis=1)] if len(kept) else []
    else:
        for code in range(n_classes):
            of_class = {name: sites.take(sites.classes == code) for name, sites in results.items()}
            clusters = [c for c in _clusters(of_class, radius) if len(c) >= k]
            kept += clusters
            codes += [code] * len(clusters)
    yx = cluster_centres(kept)
    votes = np.array([len(c) for c in kept], int)
    if learned is None:
        conf = np.array([np.mean([m[2][code] for m in c]) for c, code in zip(kept, codes)], float)
    else:
        conf = np.asarray(learned, float)
    class_votes = np.array([sum(m[3] == code for m in c) for c, code in zip(kept, codes)], float)
    return Sites(
        yx,
        np.array(codes, int),
        conf,
        votes=votes,
        networks=[";".join(m[0] for m in c) for c in kept],
        class_names=class_names,
        extra=dict(class_votes=class_votes),
        meta=dict(k=k, n=n, radius=radius, rule=rule) | ({"combiner": combiner.name} if learned is not None else {}),
    )
