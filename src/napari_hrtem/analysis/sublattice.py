"""Sublattice check: pairs of columns of one sublattice closer than the lattice allows.

Seen along [001], a 2H-MoS2 layer is a honeycomb of two sublattices: metal (Mo) columns and
chalcogen columns (S2, or S where one sulphur is missing) [1]_. Every nearest neighbour of a column,
at ``a / sqrt(3)`` = 1.82 Å (``a`` = 3.16 Å), is on the other sublattice; two columns of the same
sublattice are at least ``a`` apart. Two Mo columns (or two S2/S columns) closer than halfway
between the two distances (2.49 Å) are therefore a label error, most often the edge of a patch
where the Mo and S2 labels are swapped (at low dose, the networks may swap a patch together, and
the consensus cannot catch what they agree on), or a defect with a bond between like atoms, as in
some dislocation cores [2]_. Either way, worth a look.

The check looks at labels only; a swapped patch is flagged along its edge, not inside it.

References
----------
.. [1] J. A. Wilson, A. D. Yoffe, "The transition metal dichalcogenides: discussion and
   interpretation of the observed optical, electrical and structural properties", Advances in
   Physics 18 (73), 193-335 (1969).
.. [2] W. Zhou, X. Zou, S. Najmaei, Z. Liu, Y. Shi, J. Kong, J. Lou, P. M. Ajayan, B. I. Yakobson,
   J.-C. Idrobo, "Intrinsic structural defects in monolayer molybdenum disulfide", Nano Letters 13
   (6), 2615-2622 (2013).
"""

from __future__ import annotations

import numpy as np

from napari_hrtem.io.sites import Sites

#: Name of the Points layer of the consensus sites in conflict (Predict widget).
SUBLATTICE_CONFLICTS = "sublattice conflicts"


def sublattices(material: str) -> tuple[float, tuple[tuple[str, ...], ...]]:
    """The in-plane lattice constant ``a`` (Å) of a 2H-MX2 material and the classes of its two
    sublattices: ``(a, ((M,), (X2, X)))``, e.g. ``(3.16, (("Mo",), ("S2", "S")))`` for MoS2.

    Raises
    ------
    ValueError
        If the material is not one of
        :data:`napari_hrtem.simulation.structures.MX2_LATTICE` (MoS2, WS2, MoSe2, WSe2, MoTe2, WTe2).
    """
    from napari_hrtem.simulation.structures import MX2_LATTICE, mx2_classes

    if material not in MX2_LATTICE:
        raise ValueError(f"no lattice known for material {material!r}; known: {', '.join(MX2_LATTICE)}")
    metal, dimer, single = mx2_classes(material)
    return MX2_LATTICE[material][0], ((metal,), (dimer, single))


def material_of(class_names) -> str | None:
    """The 2H-MX2 material whose classes are ``class_names`` (``("Mo", "S2", "S")`` -> ``"MoS2"``),
    else None."""
    from napari_hrtem.simulation.structures import MX2_LATTICE, mx2_classes

    names = tuple(str(c) for c in class_names)
    return next((m for m in MX2_LATTICE if mx2_classes(m) == names), None)


def sublattice_distance(lattice_constant: float) -> float:
    """Closest distance (Å) allowed between two columns of one sublattice of a honeycomb of lattice
    constant ``a``: halfway between the nearest-neighbour distance ``a / sqrt(3)`` (the other
    sublattice) and ``a`` (the same one); 2.49 Å for MoS2."""
    a = float(lattice_constant)
    return 0.5 * (a / np.sqrt(3.0) + a)


def sublattice_conflicts(sites: Sites, material: str | None = None, distance: float | None = None) -> np.ndarray:
    """Which sites have a neighbour of their own sublattice closer than the lattice allows.

    Parameters
    ----------
    sites : Sites
        Positions ``(y, x)`` in Å and classes (a network's or the consensus').
    material : str, optional
        A 2H-MX2 material (:func:`sublattices`: its lattice constant, and which classes share a
        sublattice: Mo; S2 and S for MoS2); default the material of the sites' class names
        (:func:`material_of`).
    distance : float, optional
        Pairs of one sublattice closer than this (Å) conflict; default
        :func:`sublattice_distance` of the material (2.49 Å for MoS2).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` bool, True for each site in such a pair. Sites of classes on neither sublattice
        never conflict.

    Raises
    ------
    ValueError
        If the material is unknown (or, not given, cannot be told from the class names) or
        ``distance`` is not a finite number > 0.

    References
    ----------
    .. [1] J. A. Wilson, A. D. Yoffe, Advances in Physics 18 (73), 193-335 (1969): the 2H-MoS2
       structure.
    .. [2] W. Zhou et al., "Intrinsic structural defects in monolayer molybdenum disulfide", Nano
       Letters 13 (6), 2615-2622 (2013): defects with bonds between like atoms.
    """
    from scipy.spatial import cKDTree

    if material is None:
        material = material_of(sites.class_names)
        if material is None:
            raise ValueError(f"no 2H-MX2 material has the classes {'/'.join(sites.class_names)}; give the material")
    a, groups = sublattices(material)
    limit = sublattice_distance(a) if distance is None else float(distance)
    if not (np.isfinite(limit) and limit > 0):
        raise ValueError(f"distance must be a finite number of Å > 0, not {distance!r}")
    names = np.array(sites.class_names, dtype=object)
    group = np.full(len(sites.yx), -1)
    for g, classes in enumerate(groups):
        codes = [i for i, name in enumerate(names) if name in classes]
        group[np.isin(sites.classes, codes)] = g
    out = np.zeros(len(sites.yx), bool)
    on = np.flatnonzero(group >= 0)
    if len(on) < 2:
        return out
    pairs = cKDTree(sites.yx[on]).query_pairs(limit, output_type="ndarray")
    same = group[on[pairs[:, 0]]] == group[on[pairs[:, 1]]]
    out[on[pairs[same].ravel()]] = True
    return out


def mark_sublattice_conflicts(sites: Sites, material: str | None = None) -> int | None:
    """Mark the sites of :func:`sublattice_conflicts` on ``sites`` itself:
    ``extra["sublattice_conflict"]`` (1.0 for a site in conflict, else 0.0) and
    ``meta["sublattice_conflicts"]`` (their number), which is returned. Sites of a material without
    a known lattice (or, ``material`` not given, classes of none) are left as they are: None."""
    try:
        conflict = sublattice_conflicts(sites, material)
    except ValueError:
        return None
    sites.extra = {**sites.extra, "sublattice_conflict": conflict.astype(float)}
    n = sites.meta["sublattice_conflicts"] = int(conflict.sum())
    return n
