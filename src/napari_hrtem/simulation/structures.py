"""Specimens with ground truth: MoS2 flakes, optionally on a graphene support.

A :class:`Sample` holds the atoms handed to the multislice simulation together with the
ground-truth *sites* of the flake: one site per atomic column seen along the beam (z), with a
class ``Mo`` (one Mo atom), ``S2`` (the sulphur dimer column: an S atom above and one below the
Mo plane) or ``S`` (a single sulphur: a column that has lost one of its two S atoms, a vacancy).

Conventions: positions in Å, in ``(y, x)`` order = napari ``(row, col)``;
the cell spans ``[0, Lx) x [0, Ly)`` and an image of sampling ``s`` has pixel ``(i, j)`` centred
at ``(y, x) = (i*s, j*s)``, so the origin is the centre of pixel ``(0, 0)``.

The recipe follows the thesis ([1]_, section 3.1): an ``ase.build.mx2`` sheet is
cut to an irregular flake, S vacancies (up to 5 % of S atoms) and holes (whole columns removed)
are made, the flake is rotated about z, and it is stacked 3.3-7 Å above 0-6 AB-stacked graphene
layers (a = 2.46 Å, interlayer distance 3.35 Å).

References
----------
.. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
   two-dimensional materials", Bachelor project, DTU (2024), section 3.1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms

#: Class names of the MoS2 preset, in the order of the integer codes used in arrays.
CLASSES: tuple[str, ...] = ("Mo", "S2", "S")
#: Code of the background class in class maps (after the site classes).
BACKGROUND = len(CLASSES)

MOS2_A = 3.16  # Å, in-plane lattice constant of 2H-MoS2
MOS2_THICKNESS = 3.19  # Å, S-S distance across the layer
#: In-plane lattice constant a and X-X distance across the layer (Å) of 2H-MX2 materials:
#: approximate experimental bulk values (MoS2 as used since the first version of the package).
MX2_LATTICE: dict[str, tuple[float, float]] = {
    "MoS2": (MOS2_A, MOS2_THICKNESS),
    "WS2": (3.153, 3.14),
    "MoSe2": (3.288, 3.34),
    "WSe2": (3.282, 3.35),
    "MoTe2": (3.519, 3.60),
    "WTe2": (3.56, 3.62),
}
GRAPHENE_A = 2.46  # Å
GRAPHITE_C = 6.70  # Å, so the layer distance is c / 2 = 3.35 Å
#: Å, gap between a contamination layer and the specimen's outer atom plane (about a van der Waals distance).
CONTAMINATION_GAP = 3.0


@dataclass
class Sample:
    """A simulated specimen and its ground truth.

    Attributes
    ----------
    atoms : ase.Atoms
        All atoms (flake and support) in an orthogonal cell ``(Lx, Ly, Lz)`` in Å; the beam
        travels along +z.
    sites : numpy.ndarray
        ``(n, 2)`` float64, ground-truth column positions ``(y, x)`` in Å.
    classes : numpy.ndarray
        ``(n,)`` int64 codes into :data:`CLASSES`.
    extent : tuple of float
        ``(Ly, Lx)`` in Å, the cell size in the image plane.
    params : dict
        The parameters the sample was drawn with (rotation in degrees, number of graphene
        layers, stacking distance in Å, numbers of vacancies and holes, seed).
    class_names : tuple of str
        Names of the class codes: metal, dimer column, single chalcogen (:data:`CLASSES` for
        MoS2, e.g. ``("W", "Se2", "Se")`` for WSe2).
    """

    atoms: Atoms
    sites: np.ndarray
    classes: np.ndarray
    extent: tuple[float, float]
    params: dict = field(default_factory=dict)
    class_names: tuple[str, ...] = CLASSES

    def counts(self) -> dict[str, int]:
        """Number of ground-truth sites per class name."""
        return {name: int(np.sum(self.classes == i)) for i, name in enumerate(self.class_names)}


def mx2_classes(formula: str) -> tuple[str, str, str]:
    """Class names of a 2H-MX2 material: ``(M, X2, X)``, e.g. ``("Mo", "S2", "S")`` for MoS2.

    Raises
    ------
    ValueError
        If ``formula`` is not of the form MX2.
    """
    metal, chalcogen = _mx2_elements(formula)
    return (metal, f"{chalcogen}2", chalcogen)


def _mx2_elements(formula: str) -> tuple[str, str]:
    from ase.formula import Formula

    try:
        count = Formula(formula).count()
    except ValueError as err:
        raise ValueError(f"not a chemical formula: {formula!r}") from err
    symbols = list(count)
    if len(symbols) != 2 or count[symbols[0]] != 1 or count[symbols[1]] != 2:
        raise ValueError(f"formula must be of the form MX2 (e.g. MoS2, WSe2), got {formula!r}")
    return symbols[0], symbols[1]


def _sheet_columns(size: float, formula: str = "MoS2", a: float = MOS2_A, thickness: float = MOS2_THICKNESS):
    """Columns of a large 2H-MX2 sheet centred on the origin.

    Returns the xy positions of metal columns and of chalcogen columns (each holds a top and a
    bottom X atom at the same xy), taken from ``ase.build.mx2``.
    """
    from ase.build import mx2

    metal, chalcogen = _mx2_elements(formula)
    n = int(np.ceil(2 * size / a)) + 4
    sheet = mx2(formula, kind="2H", a=a, thickness=thickness, size=(n, n, 1), vacuum=0.0)
    pos = sheet.get_positions()
    symbols = np.array(sheet.get_chemical_symbols())
    mo_xy = pos[symbols == metal, :2]
    s_pos = pos[symbols == chalcogen]
    # Pair the S atoms that share an xy position (top and bottom of the layer).
    from scipy.spatial import cKDTree

    tree = cKDTree(s_pos[:, :2])
    pairs = np.array(sorted(tree.query_pairs(0.05)))
    s_xy = s_pos[pairs[:, 0], :2]
    centre = mo_xy.mean(axis=0)
    return mo_xy - centre, s_xy - centre


def _flake_outline(rng: np.random.Generator) -> np.ndarray:
    """Random harmonics ``(k, amplitude, phase)`` of an irregular flake outline."""
    return np.array([(k, rng.uniform(0, 0.12), rng.uniform(0, 2 * np.pi)) for k in range(2, 6)])


def _flake_mask(xy: np.ndarray, centre: np.ndarray, radius: float, outline: np.ndarray) -> np.ndarray:
    """Points inside the flake: a radius that varies smoothly with the polar angle."""
    d = xy - centre
    r = np.hypot(d[:, 0], d[:, 1])
    phi = np.arctan2(d[:, 1], d[:, 0])
    scale = 1 + sum(a * np.cos(k * phi + p) for k, a, p in outline)
    return r <= radius * scale


def _inside(xy: np.ndarray, lx: float, ly: float, margin: float) -> np.ndarray:
    """The rows of ``xy`` (x, y in Å) at least ``margin`` Å inside the cell."""
    keep = (xy[:, 0] >= margin) & (xy[:, 0] < lx - margin) & (xy[:, 1] >= margin) & (xy[:, 1] < ly - margin)
    return xy[keep]


def _graphene_layers(n_layers: int, extent_xy, angle: float, margin: float):
    """AB-stacked graphene layers covering the cell, rotated by ``angle`` degrees about z.

    Returns an ``(m, 3)`` array of C positions with z = 0 for the top layer and negative z below.
    """
    if n_layers == 0:
        return np.zeros((0, 3))
    a = GRAPHENE_A
    a1 = np.array([a, 0.0])
    a2 = np.array([a / 2, a * np.sqrt(3) / 2])
    basis = [np.zeros(2), (a1 + a2) / 3]
    lx, ly = extent_xy
    n = int(np.ceil(np.hypot(lx, ly) / a)) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    lattice = i.reshape(-1, 1) * a1 + j.reshape(-1, 1) * a2
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    rot = np.array([[c, -s], [s, c]])
    centre = np.array([lx / 2, ly / 2])
    layers = []
    for layer in range(n_layers):
        shift = (a1 + a2) / 3 if layer % 2 else np.zeros(2)  # AB (Bernal) stacking
        xy = np.concatenate([lattice + b + shift for b in basis]) @ rot.T + centre
        xy = _inside(xy, lx, ly, margin)
        z = np.full((len(xy), 1), -layer * GRAPHITE_C / 2)
        layers.append(np.hstack([xy, z]))
    return np.concatenate(layers)


def make_mos2_sample(
    extent: float | tuple[float, float] = 28.16,
    *,
    rotation: float | None = None,
    graphene_layers: int = 0,
    stacking_distance: float | None = None,
    vacancy_fraction: float = 0.03,
    hole_fraction: float = 0.02,
    flake_fraction: float = 0.9,
    vacuum: float = 4.0,
    seed: int | None = None,
    formula: str = "MoS2",
    lattice_constant: float | None = None,
    thickness: float | None = None,
    carbon_vacancy_fraction: float = 0.0,
    tilt: float = 0.0,
    tilt_azimuth: float | None = None,
    jitter: float = 0.0,
    rotation_choices: tuple[float, ...] = (0.0, 15.0, 30.0),
    rotation_range: tuple[float, float] = (0.0, 90.0),
    stacking_range: tuple[float, float] = (3.3, 7.0),
    support_rotation: float | None = None,
    aligned_fraction: float = 0.0,
    contamination_thickness: float = 0.0,
    contamination_coverage: float = 1.0,
    contamination_sides: str = "both",
    contamination_density: float = 2.0,
    vacuum_fraction: float = 0.0,
) -> Sample:
    """Build a MoS2 (or other 2H-MX2) flake, optionally on graphene, with defects and ground truth.

    Parameters
    ----------
    extent : float or (float, float)
        Cell size ``(Ly, Lx)`` in Å (one number: square). Use ``n_px * sampling`` so that the
        image grid covers the cell exactly.
    rotation : float, optional
        In-plane rotation of the flake in degrees. ``None`` draws it as in the thesis
        (section 3.1): 0°, 15°, 30° or uniform in 0-90°, each a quarter of the cases.
    graphene_layers : int
        Number of AB-stacked graphene layers under the flake (0 = bare MoS2). The support has its
        own random rotation.
    stacking_distance : float, optional
        Distance in Å between the top graphene layer and the bottom S plane; ``None`` draws it
        uniformly in 3.3-7 Å (thesis section 3.1).
    vacancy_fraction : float
        Upper bound of the fraction of S atoms removed singly (a vacancy leaves an ``S`` column);
        the fraction used is drawn uniformly in ``[0, vacancy_fraction]``.
    hole_fraction : float
        Fraction of columns (Mo or S2) removed entirely.
    flake_fraction : float
        Flake radius as a fraction of half the smaller cell side (irregular outline).
    vacuum : float
        Vacuum in Å added above and below the specimen along z.
    seed : int, optional
        Seed of the random generator; the same seed gives the same sample.
    formula : str
        A 2H-MX2 material of ``ase.build.mx2`` (MoS2, WS2, MoSe2, WSe2, MoTe2, WTe2, or any
        MX2 with ``lattice_constant`` and ``thickness`` given). The sample's class names are
        ``(M, X2, X)`` (:func:`mx2_classes`); ``vacancy_fraction`` then applies to X atoms.
    lattice_constant, thickness : float, optional
        In-plane lattice constant a and X-X distance across the layer in Å; default from
        :data:`MX2_LATTICE`.
    carbon_vacancy_fraction : float
        Upper bound of the fraction of support C atoms removed (thesis: up to 5 % of the C or
        S atoms); the fraction used is drawn uniformly in ``[0, carbon_vacancy_fraction]``.
    tilt : float
        Specimen tilt in degrees: flake and support are rotated together about an in-plane
        axis through the cell centre at the metal plane (not in the thesis; a few degrees at
        most are realistic). The sites are the projected column centres after the tilt.
    tilt_azimuth : float, optional
        Direction of the tilt axis in degrees from x; ``None`` draws it uniformly.
    jitter : float
        Standard deviation in Å of a static Gaussian displacement of every atom (positional
        disorder); each site follows the mean of its column's atoms.
    rotation_choices, rotation_range : tuple of float
        The rotation recipe when ``rotation`` is None: each choice (degrees) and a uniform draw
        in ``rotation_range`` are equally likely (thesis: 0°, 15°, 30°, 0-90°).
    stacking_range : (float, float)
        Range in Å of the drawn ``stacking_distance`` (thesis: 3.3-7 Å).
    support_rotation : float, optional
        Rotation of the graphene support about z in degrees; ``None`` draws it (below).
    aligned_fraction : float
        Probability that a drawn support rotation is *aligned* with the flake: equal to the
        flake's rotation or 60° more (both put the flake's lattice vectors parallel to
        graphene's), so that MoS2 columns sit on top of carbon rows, as in van der Waals
        heterostructures grown or transferred in registry. Otherwise, and by default (0), the
        support rotation is uniform in 0-60°, so the relative rotation is uniform. (The thesis'
        script kept graphite unrotated, so its relative rotation followed the flake recipe:
        0° in a quarter of the cases.)
    contamination_thickness : float
        Thickness in Å of amorphous-carbon contamination layers (0 = none, the default;
        realistic 2-10 Å), built by :func:`napari_hrtem.simulation.contamination.contamination_layer`
        at ``contamination_density`` g/cm³ with a 1.3 Å minimum C-C distance, 3 Å (van der
        Waals gap) above the top chalcogen plane and/or below the lowest plane of the specimen.
        Contamination atoms are not ground-truth sites.
    contamination_coverage : float
        Fraction of the field each layer covers, in irregular patches (``[0, 1]``).
    contamination_sides : {"both", "top", "bottom"}
        Which surfaces carry a layer (each its own patches).
    contamination_density : float
        Mass density of the contamination in g/cm³ (amorphous carbon 1.8-2.2 g/cm³, Robertson,
        Mater. Sci. Eng. R 37, 129 (2002)).
    vacuum_fraction : float
        Fraction of the field, in irregular patches, where flake, support and contamination are
        all removed (vacuum regions and holes through the specimen); the sites inside are
        removed from the ground truth.

    Returns
    -------
    Sample

    Raises
    ------
    ValueError
        If a fraction is outside ``[0, 1]``, the extent is not positive, the layer count or
        tilt or jitter is negative, the formula is not an MX2 with known lattice constants, the
        contamination thickness is outside 0-50 Å or its density outside (0, 3.6] g/cm³, or
        ``contamination_sides`` is not ``both``, ``top`` or ``bottom``.

    Notes
    -----
    The draws of the support alignment, the contamination and the vacuum patches come from a
    generator spawned from the sample's (``numpy.random.Generator.spawn``), so switching them
    on leaves the flake, its defects and the support of the same seed as they were.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), section 3.1 (the recipe).
    .. [2] J. Robertson, "Diamond-like amorphous carbon", Materials Science and Engineering R 37,
       129-281 (2002) (density of amorphous carbon).
    """
    from ase import Atoms

    ly, lx = (float(extent), float(extent)) if np.isscalar(extent) else map(float, extent)
    if not (lx > 0 and ly > 0):
        raise ValueError(f"extent must be positive, got {(ly, lx)} Å")
    for name, value in (
        ("vacancy_fraction", vacancy_fraction),
        ("hole_fraction", hole_fraction),
        ("carbon_vacancy_fraction", carbon_vacancy_fraction),
        ("aligned_fraction", aligned_fraction),
        ("contamination_coverage", contamination_coverage),
        ("vacuum_fraction", vacuum_fraction),
    ):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must lie in [0, 1], got {value}")
    if not 0 < flake_fraction <= 1.5:
        raise ValueError(f"flake_fraction must lie in (0, 1.5], got {flake_fraction}")
    from napari_hrtem.io.limits import MAX_GRAPHENE_LAYERS

    if not 0 <= graphene_layers <= MAX_GRAPHENE_LAYERS:
        raise ValueError(f"graphene_layers must lie in 0-{MAX_GRAPHENE_LAYERS} (thesis: 0-6), got {graphene_layers}")
    if not 0 <= tilt <= 45:
        raise ValueError(f"tilt must lie in [0, 45] degrees, got {tilt}")
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0 Å, got {jitter}")
    if not 0 <= contamination_thickness <= 50:
        raise ValueError(f"contamination_thickness must lie in [0, 50] Å, got {contamination_thickness}")
    if not 0 < contamination_density <= 3.6:
        raise ValueError(f"contamination_density must lie in (0, 3.6] g/cm³, got {contamination_density}")
    if contamination_sides not in ("both", "top", "bottom"):
        raise ValueError(f"contamination_sides must be both, top or bottom, got {contamination_sides!r}")
    metal, chalcogen = _mx2_elements(formula)
    if lattice_constant is None or thickness is None:
        if formula not in MX2_LATTICE:
            raise ValueError(
                f"no lattice constants known for {formula!r} (known: {', '.join(MX2_LATTICE)}); "
                "give lattice_constant and thickness in Å"
            )
        a_default, t_default = MX2_LATTICE[formula]
        lattice_constant = a_default if lattice_constant is None else lattice_constant
        thickness = t_default if thickness is None else thickness
    rng = np.random.default_rng(seed)
    # The new specimen features draw from a spawned generator: the flake's stream stays as it was.
    extra = rng.spawn(1)[0]
    holes = None
    if vacuum_fraction > 0:
        from napari_hrtem.simulation.contamination import patch_mask

        holes = patch_mask((lx, ly), vacuum_fraction, extra)
    if rotation is None:
        options = tuple(float(r) for r in rotation_choices)
        choice = rng.integers(len(options) + 1)
        rotation = (*options, float(rng.uniform(*rotation_range)))[choice]
    if stacking_distance is None:
        stacking_distance = float(rng.uniform(*stacking_range))

    mo_xy, s_xy = _sheet_columns(max(lx, ly), formula, lattice_constant, thickness)
    c, s = np.cos(np.radians(rotation)), np.sin(np.radians(rotation))
    rot = np.array([[c, -s], [s, c]])
    centre = np.array([lx / 2, ly / 2]) + rng.uniform(-1, 1, 2) * 0.05 * min(lx, ly)
    shift = rng.uniform(0, lattice_constant, 2)
    mo_xy = (mo_xy + shift) @ rot.T + centre
    s_xy = (s_xy + shift) @ rot.T + centre
    radius = flake_fraction * min(lx, ly) / 2
    outline = _flake_outline(rng)  # one outline for the Mo and the S columns
    mo_xy = mo_xy[_flake_mask(mo_xy, centre, radius, outline)]
    s_xy = s_xy[_flake_mask(s_xy, centre, radius, outline)]
    # Keep a margin from the cell border so that no column wraps around the periodic cell.
    mo_xy, s_xy = _inside(mo_xy, lx, ly, 1.0), _inside(s_xy, lx, ly, 1.0)

    # Holes: whole columns removed.
    mo_xy = mo_xy[rng.random(len(mo_xy)) >= hole_fraction]
    s_xy = s_xy[rng.random(len(s_xy)) >= hole_fraction]
    # Vacancies: one of the two S atoms of a column removed (top or bottom at random).
    n_vac = int(round(rng.uniform(0, vacancy_fraction) * 2 * len(s_xy)))
    vac = np.zeros(len(s_xy), dtype=bool)
    vac[rng.choice(len(s_xy), size=min(n_vac, len(s_xy)), replace=False)] = True
    keep_top = ~vac | (rng.random(len(s_xy)) < 0.5)
    keep_bottom = ~vac | ~keep_top
    if holes is not None:  # vacuum regions: no columns, no sites
        mo_xy = mo_xy[~holes(mo_xy)]
        open_s = ~holes(s_xy)
        s_xy, vac, keep_top, keep_bottom = s_xy[open_s], vac[open_s], keep_top[open_s], keep_bottom[open_s]

    z_mo = vacuum  # the top S plane; the beam (+z) meets the flake first, then the support
    z_mo += thickness / 2
    positions = [
        np.column_stack([mo_xy, np.full(len(mo_xy), z_mo)]),
        np.column_stack([s_xy[keep_top], np.full(int(keep_top.sum()), z_mo - thickness / 2)]),
        np.column_stack([s_xy[keep_bottom], np.full(int(keep_bottom.sum()), z_mo + thickness / 2)]),
    ]
    symbols = [metal] * len(mo_xy) + [chalcogen] * int(keep_top.sum() + keep_bottom.sum())
    # The ground-truth column of every flake atom (-1: support).
    column = [np.arange(len(mo_xy)), len(mo_xy) + np.flatnonzero(keep_top), len(mo_xy) + np.flatnonzero(keep_bottom)]
    support_angle = float(rng.uniform(0, 60))
    aligned = False
    if support_rotation is not None:
        support_angle = float(support_rotation)
    elif aligned_fraction > 0 and extra.random() < aligned_fraction:
        aligned = True
        support_angle = float(rotation) + 60.0 * int(extra.integers(2))
    n_carbon_vacancies = 0
    if graphene_layers:
        carbon = _graphene_layers(graphene_layers, (lx, ly), support_angle, margin=0.5)
        # Top graphene layer sits stacking_distance below the bottom S plane (beam along +z:
        # the flake is hit first, then the support).
        carbon[:, 2] = z_mo + thickness / 2 + stacking_distance - carbon[:, 2]
        if carbon_vacancy_fraction > 0:  # C vacancies (thesis: up to 5 % of the C atoms)
            n_carbon_vacancies = round(rng.uniform(0, carbon_vacancy_fraction) * len(carbon))
            gone = rng.choice(len(carbon), size=n_carbon_vacancies, replace=False)
            carbon = np.delete(carbon, gone, axis=0)
        if holes is not None:
            carbon = carbon[~holes(carbon[:, :2])]
        positions.append(carbon)
        symbols += ["C"] * len(carbon)
        column.append(np.full(len(carbon), -1))
    n_contamination = 0
    if contamination_thickness > 0 and contamination_coverage > 0:
        from napari_hrtem.simulation.contamination import contamination_layer

        z_top = z_mo - thickness / 2  # the top chalcogen plane
        z_bottom = max([z_mo + thickness / 2] + [p[:, 2].max() for p in positions[3:] if len(p)])
        for side in ("top", "bottom"):
            if contamination_sides not in (side, "both"):
                continue
            layer = contamination_layer(
                (lx, ly), contamination_thickness, contamination_coverage, extra, density=contamination_density
            )
            if holes is not None:
                layer = layer[~holes(layer[:, :2])]
            if side == "top":  # the beam (+z) meets it first
                layer[:, 2] = z_top - CONTAMINATION_GAP - layer[:, 2]
            else:
                layer[:, 2] = z_bottom + CONTAMINATION_GAP + layer[:, 2]
            positions.append(layer)
            symbols += ["C"] * len(layer)
            column.append(np.full(len(layer), -1))
            n_contamination += len(layer)
    positions = np.concatenate(positions)
    column = np.concatenate(column)
    if n_contamination and positions[:, 2].min() < vacuum:
        lift = vacuum - positions[:, 2].min()
        positions[:, 2] += lift
        z_mo += lift  # the metal plane stays the tilt pivot
    sites_xy = np.concatenate([mo_xy, s_xy])
    tilt_axis = None
    if jitter > 0:
        positions = positions + rng.normal(0, jitter, positions.shape)
    if tilt > 0:
        tilt_axis = float(rng.uniform(0, 360)) if tilt_azimuth is None else float(tilt_azimuth)
        positions = _tilt(positions, tilt, tilt_axis, np.array([lx / 2, ly / 2, z_mo]))
        positions[:, 2] += vacuum - positions[:, 2].min()
        keep = (column >= 0) | (
            (positions[:, 0] >= 0.5)
            & (positions[:, 0] < lx - 0.5)
            & (positions[:, 1] >= 0.5)
            & (positions[:, 1] < ly - 0.5)
        )
        positions, column = positions[keep], column[keep]
        symbols = [sym for sym, k in zip(symbols, keep) if k]
    if jitter > 0 or tilt > 0:  # sites: projected centre of each column's atoms
        flake = column >= 0
        n_sites = len(sites_xy)
        count = np.bincount(column[flake], minlength=n_sites)
        sites_xy = np.column_stack(
            [np.bincount(column[flake], positions[flake, k], minlength=n_sites) / count for k in (0, 1)]
        )
    lz = positions[:, 2].max() + vacuum
    atoms = Atoms(symbols=symbols, positions=positions, cell=[lx, ly, lz], pbc=True)

    classes = np.concatenate([np.zeros(len(mo_xy), int), np.where(vac, CLASSES.index("S"), CLASSES.index("S2"))])
    return Sample(
        atoms=atoms,
        sites=sites_xy[:, ::-1].copy(),
        classes=classes,
        extent=(ly, lx),
        params=dict(
            rotation=float(rotation),
            graphene_layers=int(graphene_layers),
            support_rotation=support_angle if graphene_layers else None,
            aligned=aligned if graphene_layers else None,
            stacking_distance=float(stacking_distance),
            vacancies=int(vac.sum()),
            seed=seed,
            formula=formula,
            lattice_constant=float(lattice_constant),
            thickness=float(thickness),
            carbon_vacancies=n_carbon_vacancies,
            tilt=float(tilt),
            tilt_azimuth=tilt_axis,
            jitter=float(jitter),
            contamination_thickness=float(contamination_thickness),
            contamination_coverage=float(contamination_coverage) if contamination_thickness > 0 else 0.0,
            contamination_atoms=int(n_contamination),
            vacuum_fraction=float(vacuum_fraction),
        ),
        class_names=mx2_classes(formula),
    )


def make_mx2_sample(extent: float | tuple[float, float] = 28.16, formula: str = "MoS2", **kwargs) -> Sample:
    """A 2H-MX2 flake (WS2, MoSe2, ...) with ground truth: :func:`make_mos2_sample` with ``formula``."""
    return make_mos2_sample(extent, formula=formula, **kwargs)


def _tilt(positions: np.ndarray, angle: float, azimuth: float, pivot: np.ndarray) -> np.ndarray:
    """Rotate ``(n, 3)`` positions by ``angle`` degrees about the in-plane axis at ``azimuth`` degrees."""
    from scipy.spatial.transform import Rotation

    axis = np.array([np.cos(np.radians(azimuth)), np.sin(np.radians(azimuth)), 0.0])
    rot = Rotation.from_rotvec(np.radians(angle) * axis)
    return rot.apply(positions - pivot) + pivot


def random_sample(
    extent: float | tuple[float, float],
    rng: np.random.Generator,
    graphene_layers: int | None = None,
    *,
    ranges: dict | None = None,
    formula: str | None = None,
) -> Sample:
    """Draw a sample from the thesis' recipe (section 3.1, Table 1).

    Half of the samples are bare MoS2, half sit on 1-6 graphene layers (thesis: up to 6), with
    up to 5 % S vacancies, up to 5 % C vacancies, 5 % holes, the rotation recipe of
    :func:`make_mos2_sample` and a stacking distance in 3.3-7 Å. All of it comes from the
    ``sample`` section of the parameter file (:func:`napari_hrtem.simulation.imaging.load_parameter_ranges`),
    which also sets a tilt range and positional jitter (both 0 by default: not in the thesis), and
    the specimen features of issue 17, all off by default: ``aligned_fraction`` (probability of a
    support aligned with the flake), ``contamination_thickness`` (Å), ``contamination_coverage``,
    ``contamination_sides``, ``contamination_density`` (g/cm³) and ``vacuum_fraction`` (see
    :func:`make_mos2_sample`); ``[low, high]`` entries are drawn uniformly per sample, from a
    generator spawned from ``rng`` only when contamination or vacuum is on, so the thesis recipe
    draws what it drew before.

    Parameters
    ----------
    extent : float or (float, float)
        Cell size in Å (see :func:`make_mos2_sample`).
    rng : numpy.random.Generator
        Source of randomness; the sample's own seed is drawn from it.
    graphene_layers : int, optional
        A fixed number of support layers instead of the recipe's draw.
    ranges : dict, optional
        Parameter ranges; ``None`` uses the packaged thesis defaults.
    formula : str, optional
        A 2H-MX2 material instead of the parameter file's (default MoS2).
    """
    from napari_hrtem.simulation.parameters import load_parameter_ranges

    recipe = (load_parameter_ranges() if ranges is None else ranges)["sample"]

    def pair(value):
        return (float(value), float(value)) if np.isscalar(value) else (float(value[0]), float(value[1]))

    if graphene_layers is None:
        lo, hi = pair(recipe["graphene_layers"])
        layers = 0 if rng.random() < float(recipe["bare_fraction"]) else int(rng.integers(int(lo), int(hi) + 1))
    else:
        layers = graphene_layers
    flake_fraction = float(rng.uniform(*pair(recipe["flake_fraction"])))
    seed = int(rng.integers(2**31))
    max_tilt = float(recipe["max_tilt"])
    tilt = float(rng.uniform(0, max_tilt)) if max_tilt > 0 else 0.0
    # Issue-17 specimen features: drawn from a spawned generator, and only when switched on, so that
    # the thesis recipe (all off) draws exactly what it drew before.
    extras = {}
    thickness_range = pair(recipe.get("contamination_thickness", 0.0))
    vacuum_range = pair(recipe.get("vacuum_fraction", 0.0))
    aligned_fraction = float(recipe.get("aligned_fraction", 0.0))
    if thickness_range[1] > 0 or vacuum_range[1] > 0:
        extra = rng.spawn(1)[0]
        if thickness_range[1] > 0:
            extras.update(
                contamination_thickness=float(extra.uniform(*thickness_range)),
                contamination_coverage=float(extra.uniform(*pair(recipe.get("contamination_coverage", 1.0)))),
                contamination_density=float(extra.uniform(*pair(recipe.get("contamination_density", 2.0)))),
                contamination_sides=str(recipe.get("contamination_sides", "both")),
            )
        if vacuum_range[1] > 0:
            extras["vacuum_fraction"] = float(extra.uniform(*vacuum_range))
    return make_mos2_sample(
        extent,
        graphene_layers=layers,
        vacancy_fraction=float(recipe["vacancy_fraction"]),
        hole_fraction=float(recipe["hole_fraction"]),
        flake_fraction=flake_fraction,
        seed=seed,
        formula=formula or recipe["formula"],
        carbon_vacancy_fraction=float(recipe["carbon_vacancy_fraction"]),
        tilt=tilt,
        jitter=float(recipe["jitter"]),
        stacking_distance=None,
        rotation_choices=tuple(recipe["rotation_choices"]),
        rotation_range=pair(recipe["rotation_range"]),
        stacking_range=pair(recipe["stacking_distance"]),
        aligned_fraction=aligned_fraction,
        **extras,
    )
