"""Amorphous-carbon contamination and irregular patches (coverage masks, vacuum holes).

Real specimens carry a few Å of amorphous (hydro)carbon contamination on top of and below the
flake, covering part of the field in irregular patches, and the field may hold vacuum regions
(holes through flake and support). This module builds both:

* :func:`amorphous_carbon`: random carbon positions in a slab at a given mass density, no two
  atoms closer than a minimum distance (random sequential addition), the way amorphous carbon is
  usually modelled for image simulation when no melt-quench structure is at hand.
* :func:`patch_mask`: an irregular binary mask covering a given fraction of the cell (a smoothed,
  periodic Gaussian random field cut at its quantile), used for partial coverage and for vacuum
  holes.

Densities: evaporated and sputtered amorphous carbon (sp2-rich a-C) has 1.8-2.2 g/cm³ (Robertson
[1]_, section 4); 2.0 g/cm³ = 0.100 atoms/Å³ is the default. The minimum C-C distance, 1.3 Å,
lies just below the shortest C-C bond of a-C (the C=C double bond, 1.34 Å [1]_).

Lengths in Å, positions ``(x, y, z)`` as in ``ase.Atoms`` (the image convention ``(y, x)`` is
used only for ground-truth sites in :mod:`napari_hrtem.simulation.structures`).

References
----------
.. [1] J. Robertson, "Diamond-like amorphous carbon", Materials Science and Engineering R 37,
   129-281 (2002).
"""

from __future__ import annotations

import numpy as np

AVOGADRO = 6.02214076e23
CARBON_MASS = 12.011  # u
#: Default mass density of amorphous carbon contamination in g/cm³ (a-C: 1.8-2.2 g/cm³, Robertson 2002).
AMORPHOUS_CARBON_DENSITY = 2.0
#: Default minimum C-C distance in Å (below the C=C bond, 1.34 Å).
MIN_CC_DISTANCE = 1.3


def carbon_number_density(density: float) -> float:
    """Atoms per Å³ of carbon at a mass density in g/cm³ (2.0 g/cm³ -> 0.1003 Å⁻³)."""
    return density / CARBON_MASS * AVOGADRO * 1e-24


def amorphous_carbon(
    extent_xy: tuple[float, float],
    thickness: float,
    rng: np.random.Generator,
    *,
    density: float = AMORPHOUS_CARBON_DENSITY,
    min_distance: float = MIN_CC_DISTANCE,
    max_rounds: int = 100,
) -> np.ndarray:
    """Random amorphous-carbon positions in a slab ``[0, Lx) x [0, Ly) x [0, thickness]``.

    Random sequential addition: uniform candidates are accepted one after the other unless they
    come closer than ``min_distance`` to an accepted atom (periodic in x and y, so the slab tiles
    the multislice cell), until the number of atoms of ``density`` is reached.

    Parameters
    ----------
    extent_xy : (float, float)
        ``(Lx, Ly)`` in Å.
    thickness : float
        Slab thickness in Å (0 gives no atoms).
    rng : numpy.random.Generator
        Source of randomness.
    density : float
        Mass density in g/cm³ (amorphous carbon 1.8-2.2 g/cm³ [1]_).
    min_distance : float
        Smallest C-C distance in Å.
    max_rounds : int
        Rounds of candidates before giving up.

    Returns
    -------
    numpy.ndarray
        ``(n, 3)`` float64 positions ``(x, y, z)`` in Å, z in ``[0, thickness]``,
        ``n = round(density_number * Lx * Ly * thickness)``.

    Raises
    ------
    ValueError
        If the thickness or density is negative, the extent not positive, or the density too
        high to be reached with ``min_distance`` (the message gives both).

    References
    ----------
    .. [1] J. Robertson, "Diamond-like amorphous carbon", Materials Science and Engineering R 37,
       129-281 (2002), section 4.
    """
    from scipy.spatial import cKDTree

    lx, ly = (float(v) for v in extent_xy)
    if not (lx > 0 and ly > 0):
        raise ValueError(f"extent must be positive, got {(lx, ly)} Å")
    if thickness < 0 or density < 0:
        raise ValueError(f"thickness and density must be >= 0, got {thickness} Å and {density} g/cm³")
    n_target = int(round(carbon_number_density(density) * lx * ly * thickness))
    if n_target == 0:
        return np.zeros((0, 3))
    # z is not periodic: a box length of thickness + 2 min_distance never wraps a close pair.
    box = np.array([lx, ly, thickness + 2 * min_distance])
    accepted = np.zeros((0, 3))
    for _ in range(max_rounds):
        need = n_target - len(accepted)
        if need <= 0:
            break
        candidates = rng.uniform(0, 1, (2 * need + 16, 3)) * [lx, ly, thickness]
        candidates[:, :2] %= [lx, ly]  # guards against uniform() returning exactly the upper end
        if len(accepted):
            d, _ = cKDTree(accepted, boxsize=box).query(candidates, k=1)
            candidates = candidates[d >= min_distance]
        pairs = cKDTree(candidates, boxsize=box).query_pairs(min_distance, output_type="ndarray")
        keep = np.ones(len(candidates), bool)
        for i, j in pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]:  # sequential: earlier candidates win
            if keep[i] and keep[j]:
                keep[j] = False
        accepted = np.concatenate([accepted, candidates[keep][:need]])
    if len(accepted) < n_target:
        raise ValueError(
            f"cannot place {n_target} C atoms at {density} g/cm³ with a minimum distance of {min_distance} Å "
            f"(placed {len(accepted)})"
        )
    return accepted


def patch_mask(
    extent_xy: tuple[float, float],
    fraction: float,
    rng: np.random.Generator,
    *,
    correlation_length: float = 8.0,
    pixel: float = 0.5,
):
    """An irregular, periodic patch pattern covering ``fraction`` of the cell.

    A white-noise field on a grid of ``pixel`` Å is smoothed by a periodic Gaussian of
    standard deviation ``correlation_length`` Å and cut at its ``1 - fraction`` quantile.

    Parameters
    ----------
    extent_xy : (float, float)
        ``(Lx, Ly)`` in Å.
    fraction : float
        Covered fraction of the cell area, in ``[0, 1]``.
    rng : numpy.random.Generator
        Source of randomness.
    correlation_length : float
        Typical patch size in Å (standard deviation of the smoothing Gaussian).
    pixel : float
        Grid spacing of the field in Å.

    Returns
    -------
    callable
        ``inside(xy)``: for an ``(n, 2)`` array of ``(x, y)`` positions in Å (any values;
        wrapped into the cell), an ``(n,)`` bool array, True inside a patch.

    Raises
    ------
    ValueError
        If ``fraction`` is outside ``[0, 1]`` or a length is not positive.
    """
    from scipy.ndimage import gaussian_filter

    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    if not (correlation_length > 0 and pixel > 0):
        raise ValueError(f"correlation_length and pixel must be > 0 Å, got {correlation_length}, {pixel}")
    lx, ly = (float(v) for v in extent_xy)
    nx, ny = max(int(np.ceil(lx / pixel)), 1), max(int(np.ceil(ly / pixel)), 1)
    field = gaussian_filter(rng.normal(size=(nx, ny)), correlation_length / pixel, mode="wrap")
    if fraction >= 1:
        covered = np.ones((nx, ny), bool)
    elif fraction <= 0:
        covered = np.zeros((nx, ny), bool)
    else:
        covered = field > np.quantile(field, 1 - fraction)

    def inside(xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, float).reshape(-1, 2)
        i = np.floor(np.mod(xy[:, 0], lx) / lx * nx).astype(int) % nx
        j = np.floor(np.mod(xy[:, 1], ly) / ly * ny).astype(int) % ny
        return covered[i, j]

    return inside


def contamination_layer(
    extent_xy: tuple[float, float],
    thickness: float,
    coverage: float,
    rng: np.random.Generator,
    *,
    density: float = AMORPHOUS_CARBON_DENSITY,
    min_distance: float = MIN_CC_DISTANCE,
    correlation_length: float = 8.0,
) -> np.ndarray:
    """An amorphous-carbon layer covering part of the field in irregular patches.

    :func:`amorphous_carbon` of ``thickness`` Å over the whole cell, kept inside a
    :func:`patch_mask` of ``coverage``.

    Parameters
    ----------
    extent_xy : (float, float)
        ``(Lx, Ly)`` in Å.
    thickness : float
        Layer thickness in Å.
    coverage : float
        Covered fraction of the field, in ``[0, 1]``.
    rng : numpy.random.Generator
        Source of randomness.
    density, min_distance : float
        See :func:`amorphous_carbon` (g/cm³, Å).
    correlation_length : float
        Patch size in Å (:func:`patch_mask`).

    Returns
    -------
    numpy.ndarray
        ``(n, 3)`` positions ``(x, y, z)`` in Å with z in ``[0, thickness]``.

    Raises
    ------
    ValueError
        As :func:`amorphous_carbon` and :func:`patch_mask`.

    References
    ----------
    .. [1] J. Robertson, "Diamond-like amorphous carbon", Materials Science and Engineering R 37,
       129-281 (2002).
    """
    inside = patch_mask(extent_xy, coverage, rng, correlation_length=correlation_length)
    if thickness <= 0 or coverage <= 0:
        return np.zeros((0, 3))
    carbon = amorphous_carbon(extent_xy, thickness, rng, density=density, min_distance=min_distance)
    return carbon[inside(carbon[:, :2])]
