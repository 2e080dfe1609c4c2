"""Uncertainty from the ensemble: what every network says at each consensus site, and how much
the networks agree overall.

Networks trained differently make errors that are less correlated [1]_, so where they disagree
the input is likely hard or outside what they were trained on. Two kinds of figures:

* per consensus site (:func:`site_uncertainty`): each network's column probability
  ``1 - P(background)`` at the site, their mean and spread (standard deviation across the
  networks), the mean probability of every class, and the spread of the probability of the
  site's class. They are read from the probability maps the networks computed anyway
  (:class:`napari_hrtem.analysis.inference.ProbabilityMaps`), bilinearly at the network's
  sampling: no second inference pass.
* per prediction (:func:`agreement_counts`): consensus sites found by every network
  (``unanimous``) or by at least ``k`` but not all (``majority``), and the columns the networks
  dispute (``disputed``: found by some networks only, or given different classes;
  :func:`napari_hrtem.analysis.comparison.disagreements`, which also counts the majority sites).

References
----------
.. [1] J. Schiøtz, J. Madsen, B. J. G. Østergaard, A. S. Dreisig, P. Liu, S. Helveg, O. Winther,
   J. Kling, J. B. Wagner, T. W. Hansen, "Using neural networks to identify atoms in HRTEM
   images", Microscopy and Microanalysis 25 (S2), 216-217 (2019).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from napari_hrtem.analysis.comparison import disagreements
from napari_hrtem.io.sites import Sites

if TYPE_CHECKING:
    from napari_hrtem.analysis.inference import ProbabilityMaps


def site_uncertainty(
    sites: Sites, maps: ProbabilityMaps, offset: np.ndarray | None = None, networks: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Per-site figures of the ensemble at the consensus sites.

    Differently trained networks err differently [1]_: their spread at a site is a warning.

    Parameters
    ----------
    sites : Sites
        The consensus sites, Å.
    maps : ProbabilityMaps
        Every network's class probability maps (classes then background), at its sampling.
    offset : numpy.ndarray, optional
        ``(y, x)`` Å to subtract from the positions to get to the frame of the series the networks
        saw (a drift-aligned series' crop origin); default none.
    networks : list of str, optional
        The networks, in order; default every network of ``maps``.

    Returns
    -------
    dict of str to numpy.ndarray
        ``(n,)`` float arrays, in this order: ``p_column_<network>`` per network,
        ``p_column_mean``, ``p_column_std`` (population standard deviation across the networks),
        ``p_<class>_mean`` per class and ``p_class_std`` (spread of the probability of the
        site's own class).

    References
    ----------
    .. [1] J. Schiøtz et al., "Using neural networks to identify atoms in HRTEM images",
       Microscopy and Microanalysis 25 (S2), 216-217 (2019).
    """
    names = list(maps.maps) if networks is None else list(networks)
    yx = np.asarray(sites.yx, float).reshape(-1, 2)
    if offset is not None:
        yx = yx - np.asarray(offset, float).reshape(1, 2)
    n = len(yx)
    per_net = np.stack([maps.sample(name, yx) for name in names]) if names else np.zeros((0, 1, n))  # (M, C, n)
    column = 1.0 - per_net[:, -1, :]  # (M, n)
    out: dict[str, np.ndarray] = {f"p_column_{name}": column[i] for i, name in enumerate(names)}
    out["p_column_mean"] = column.mean(axis=0) if names else np.full(n, np.nan)
    out["p_column_std"] = column.std(axis=0) if names else np.full(n, np.nan)
    class_names = list(sites.class_names)
    for c, cls in enumerate(class_names):
        out[f"p_{cls}_mean"] = per_net[:, c, :].mean(axis=0) if names else np.full(n, np.nan)
    own = per_net[:, np.clip(sites.classes, 0, len(class_names) - 1), np.arange(n)] if names else None
    out["p_class_std"] = own.std(axis=0) if own is not None else np.full(n, np.nan)
    return out


def agreement_counts(consensus: Sites, results: dict[str, Sites], radius: float) -> dict[str, int]:
    """How much the networks agree: ``unanimous``, ``majority`` and ``disputed`` counts.

    Parameters
    ----------
    consensus : Sites
        The consensus sites with ``votes`` and ``meta["n"]``.
    results : dict of str to Sites
        Every network's sites.
    radius : float
        Agreement radius, Å.

    Returns
    -------
    dict
        ``unanimous``: consensus sites found by all ``n`` networks, all with the site's class
        (``votes`` and ``extra["class_votes"]``); ``majority``: the other consensus sites (found by
        at least ``k``, or not all with its class); ``disputed``: columns that not every network finds
        with the same class (:func:`~napari_hrtem.analysis.comparison.disagreements`; the
        majority sites are among them).
    """
    n = int(consensus.meta.get("n", len(results)))
    votes = np.zeros(len(consensus), int) if consensus.votes is None else np.asarray(consensus.votes, int)
    agreed = np.asarray(consensus.extra.get("class_votes", votes), float)  # networks giving the site its class
    unanimous = int(np.sum((votes >= n) & (agreed >= n)))
    disputed = len(disagreements(results, radius=radius)[0]) if results else 0
    return dict(unanimous=unanimous, majority=len(consensus) - unanimous, disputed=disputed)


def describe_agreement(consensus: Sites) -> str:
    """One line: ``consensus of 3 (≥2 votes): 1329 sites (unanimous 1021, majority 308); disputed
    7156 sites`` from a consensus whose ``meta`` holds :func:`agreement_counts`."""
    meta = consensus.meta
    line = f"consensus of {meta.get('n', '?')} (≥{meta.get('k', '?')} votes): {len(consensus)} sites"
    if "unanimous" in meta:
        line += f" (unanimous {meta['unanimous']}, majority {meta['majority']})"
    if "disputed" in meta:
        line += f"; disputed {meta['disputed']} sites"
    return line
