"""Thermal vibrations for frozen-phonon simulations: Debye amplitudes and coordination tables.

Two models give the per-direction standard deviation σ of each atom's displacement, handed to
abTEM's ``FrozenPhonons`` (σ² = <u²> along one direction):

* **Debye model** (:func:`debye_msd`, :func:`debye_sigmas`): one amplitude per element from its
  mass, the Debye temperature θ_D and the temperature T, thesis [1]_ eq. 2.1.25. The temperature is drawn per sample (100-600 K, thesis Table 1,
  :func:`draw_temperature`).
* **Coordination table** (:class:`CoordinationTable`, [2]_): amplitudes that
  depend on each atom's element *and coordination number*, so that edge and surface atoms
  vibrate more than atoms inside a flake or a particle. The table is extracted from any
  molecular-dynamics trajectory (an ASE trajectory file or a list of ``Atoms``) by
  :func:`coordination_table_from_trajectory`: the mean over atoms of the standard deviation of
  each atom's position, grouped by element and coordination number.

Lengths in Å, temperatures in K, masses in u.

References
----------
.. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
   two-dimensional materials", Bachelor project, DTU (2024).
.. [2] M. H. L. Larsen, W. B. Lomholdt, A. S. Dreisig, S. Helveg, O. Winther, T. Hansen,
   J. Schiøtz, "Superior neural network for distinguishing between atomic species",
   Microscopy and Microanalysis (conference abstract).
.. [3] V. K. Tewary, B. Yang, "Singularity in the Debye-Waller factor of graphene",
   Physical Review B 79, 125416 (2009).
.. [4] B. Shevitski, M. Mecklenburg, W. A. Hubbard, E. R. White, B. Dawson, M. S. Lodge, M. Ishigami,
   B. C. Regan, "Dark-field transmission electron microscopy and the Debye-Waller factor of graphene",
   Physical Review B 87, 045417 (2013).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HBAR = 1.054571817e-34  # J s
KB = 1.380649e-23  # J/K
AMU = 1.66053906660e-27  # kg

#: Debye temperatures θ_D in K per element, with sources (opt-in: the thesis used 580 K for every element).
#: Mo and S: MoS2, thesis [1]_ Table 1 (one θ_D for the compound; the elements differ by mass).
#: C: graphene, in-plane modes, 2312 K (out-of-plane 1287 K), Tewary and Yang [3]_; the in-plane value because the
#: image sees the projected (in-plane) displacement; the Debye-Waller factor measured on monolayer graphene by dark-field
#: TEM agrees with the Debye model (Shevitski et al. [4]_). Amorphous-carbon contamination gets the same value (no
#: better-founded single number; its atoms are not columns to find).
DEBYE_TEMPERATURES: dict[str, float] = {"Mo": 580.0, "S": 580.0, "C": 2312.0}

#: Coordination tables shipped with the package (``simulation/data``), by the name a parameter file's
#: ``vibrations.coordination_table`` (or ``simulate(vibration_table=...)``) may give instead of a path.
#: ``mos2-chgnet``: CHGNet molecular dynamics of MoS2 flakes at 300 K, bare and on graphene (issue 17,
#: ``recipes/md_vibrations``; :func:`packaged_table`).
PACKAGED_TABLES: dict[str, str] = {"mos2-chgnet": "mos2_vibrations_chgnet_300K.json"}

#: Default ratio of the neighbour cut-off to the sum of ASE's covalent radii (``natural_cutoffs``).
CUTOFF_MULT = 1.2


def debye_msd(mass_amu: float, temperature: float, debye_temperature: float = 580.0) -> float:
    """Mean-square displacement <u²> (Å², per direction) of an atom in the Debye model.

    ``<u²> = 3 ħ² / (2 m k_B θ_D) (1/4 + T/θ_D)``, thesis [1]_ eq. 2.1.25.
    With θ_D = 580 K and the S mass (32.06 u) it gives 0.0030 Å² at 300 K.

    Parameters
    ----------
    mass_amu : float
        Atomic mass in u.
    temperature : float
        Temperature T in K.
    debye_temperature : float
        Debye temperature θ_D in K (580 K for MoS2, thesis Table 1).

    Returns
    -------
    float
        <u²> in Å².

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), eq. 2.1.25, Table 1.
    """
    m = mass_amu * AMU
    msd = 3 * HBAR**2 / (2 * m * KB * debye_temperature) * (0.25 + temperature / debye_temperature)
    return msd * 1e20


def debye_sigmas(symbols, temperature: float, debye_temperature: float | Mapping = 580.0) -> dict[str, float]:
    """Debye-model standard deviation σ = sqrt(<u²>) in Å for each element of ``symbols``.

    Parameters
    ----------
    symbols : iterable of str
        Chemical symbols (e.g. ``atoms.get_chemical_symbols()``).
    temperature : float
        T in K.
    debye_temperature : float or mapping
        θ_D in K (:func:`debye_msd`): one number for every element (the thesis: 580 K), or
        ``{element: θ_D}`` per element (e.g. :data:`DEBYE_TEMPERATURES`), where the key
        ``"default"`` serves the elements not named.

    Returns
    -------
    dict
        ``{symbol: σ}``, the form abTEM's ``FrozenPhonons(sigmas=...)`` takes.

    Raises
    ------
    KeyError
        If ``debye_temperature`` is a mapping that has neither the element nor ``"default"``.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), eq. 2.1.25, Table 1.
    .. [2] V. K. Tewary, B. Yang, "Singularity in the Debye-Waller factor of graphene",
       Physical Review B 79, 125416 (2009) (θ_D of graphene, :data:`DEBYE_TEMPERATURES`).
    """
    from ase.data import atomic_masses, atomic_numbers

    sigmas = {}
    for el in sorted(set(symbols)):
        theta = element_debye_temperature(debye_temperature, el)
        sigmas[el] = float(np.sqrt(debye_msd(atomic_masses[atomic_numbers[el]], temperature, theta)))
    return sigmas


def element_debye_temperature(debye_temperature: float | Mapping, element: str) -> float:
    """θ_D in K of ``element``: the number itself, or the mapping's entry (or its ``"default"``).

    Raises
    ------
    KeyError
        If the mapping has neither ``element`` nor ``"default"``.
    """
    if not isinstance(debye_temperature, Mapping):
        return float(debye_temperature)
    if element in debye_temperature:
        return float(debye_temperature[element])
    if "default" in debye_temperature:
        return float(debye_temperature["default"])
    raise KeyError(f"no Debye temperature for {element!r} (have {sorted(debye_temperature)}; add it or 'default')")


def debye_temperature_setting(ranges: dict | None = None) -> float | dict[str, float]:
    """The ``debye_temperature`` argument of :func:`frozen_phonon_sigmas` (and of
    :func:`napari_hrtem.simulation.imaging.exit_wave`) from a parameter file.

    ``vibrations.debye_temperature`` (thesis: 580 K) alone when ``vibrations.debye_temperatures``
    is empty (the packaged default: the thesis' simulations); otherwise
    ``{"default": debye_temperature, **debye_temperatures}``.

    Parameters
    ----------
    ranges : dict, optional
        Parameter ranges (:func:`napari_hrtem.simulation.parameters.load_parameter_ranges`);
        ``None`` uses the packaged file.

    Returns
    -------
    float or dict
        θ_D in K, or ``{element or "default": θ_D}``.
    """
    from napari_hrtem.simulation.parameters import load_parameter_ranges

    v = (load_parameter_ranges() if ranges is None else ranges)["vibrations"]
    per_element = v.get("debye_temperatures") or {}
    if not per_element:
        return float(v["debye_temperature"])
    return {"default": float(v["debye_temperature"]), **{str(k): float(t) for k, t in per_element.items()}}


def draw_temperature(rng: np.random.Generator, ranges: dict | None = None) -> float:
    """Draw the phonon temperature of one sample in K, uniform in the parameter file's range.

    The default range is thesis Table 1: 100-600 K (``vibrations.temperature`` in
    :func:`napari_hrtem.simulation.imaging.load_parameter_ranges`).
    """
    from napari_hrtem.simulation.parameters import load_parameter_ranges

    ranges = load_parameter_ranges() if ranges is None else ranges
    lo, hi = _pair(ranges["vibrations"]["temperature"])
    return float(rng.uniform(lo, hi))


def _pair(value) -> tuple[float, float]:
    if np.isscalar(value):
        return float(value), float(value)
    lo, hi = value
    return float(lo), float(hi)


def coordination_numbers(atoms, mult: float = CUTOFF_MULT) -> np.ndarray:
    """Number of neighbours of each atom within ``mult`` times the sum of covalent radii.

    Two atoms are neighbours when their distance (minimum image for periodic cells) is below
    ``mult * (r_i + r_j)`` with ASE's covalent radii (``ase.neighborlist.natural_cutoffs``).
    The default 1.2 counts the first shell of fcc metals (Au: 3.26 Å cut-off, first shell
    2.88 Å, second 4.08 Å), Mo-S bonds in MoS2 and C-C bonds in graphene.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure (its ``pbc`` and cell are respected).
    mult : float
        Cut-off scale.

    Returns
    -------
    numpy.ndarray
        ``(n_atoms,)`` int64.
    """
    from ase.data import covalent_radii

    n = len(atoms)
    if n == 0:
        return np.zeros(0, np.int64)
    radii = covalent_radii[atoms.numbers] * mult
    pbc = np.asarray(atoms.pbc, bool)
    if pbc.any() and not (pbc.all() and atoms.cell.orthorhombic):
        from ase.neighborlist import neighbor_list  # general cells: ASE (slower)

        i = neighbor_list("i", atoms, list(radii), self_interaction=False)
        return np.bincount(i, minlength=n).astype(np.int64)
    from scipy.spatial import cKDTree

    pos = atoms.get_positions()
    box = None
    if pbc.all():  # orthorhombic periodic cell: cKDTree's periodic box
        box = atoms.cell.lengths()
        pos = np.mod(pos, box)
        pos[pos >= box] = 0.0
    pairs = cKDTree(pos, boxsize=box).query_pairs(2 * radii.max(), output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    delta = pos[i] - pos[j]
    if box is not None:
        delta -= box * np.round(delta / box)
    close = np.linalg.norm(delta, axis=1) < radii[i] + radii[j]
    return (np.bincount(i[close], minlength=n) + np.bincount(j[close], minlength=n)).astype(np.int64)


@dataclass
class CoordinationTable:
    """Vibration amplitudes per element and coordination number [1]_.

    Attributes
    ----------
    sigmas : dict
        ``{element: {coordination number: σ}}``, σ the mean per-direction standard deviation
        of the atoms' positions in Å.
    counts : dict
        ``{element: {coordination number: number of atoms averaged}}``.
    temperature : float or None
        Temperature of the molecular dynamics in K, if known; used to rescale σ to other
        temperatures (classical harmonic atoms: σ² ∝ T).
    cutoff_mult : float
        Cut-off scale of :func:`coordination_numbers` used for the table; the same is used
        when the table is applied, so the coordination numbers agree.
    source : str
        Where the table came from (e.g. the trajectory file).
    provenance : dict
        How the table was made (for the packaged tables: the molecular dynamics, the potential and
        the package versions; :func:`packaged_table`); empty if not recorded.

    References
    ----------
    .. [1] M. H. L. Larsen, W. B. Lomholdt, A. S. Dreisig, S. Helveg, O. Winther, T. Hansen,
       J. Schiøtz, "Superior neural network for distinguishing between atomic species",
       Microscopy and Microanalysis (conference abstract).
    """

    sigmas: dict[str, dict[int, float]]
    counts: dict[str, dict[int, int]] = field(default_factory=dict)
    temperature: float | None = None
    cutoff_mult: float = CUTOFF_MULT
    source: str = ""
    provenance: dict = field(default_factory=dict)

    def sigma(self, element: str, coordination: int) -> float:
        """σ in Å of an atom; a coordination number missing from the table takes the nearest one.

        Raises
        ------
        KeyError
            If the element is not in the table.
        """
        if element not in self.sigmas:
            raise KeyError(f"element {element!r} is not in the vibration table (has {sorted(self.sigmas)})")
        row = self.sigmas[element]
        cns = np.array(sorted(row))
        nearest = int(cns[np.argmin(np.abs(cns - coordination) + 1e-3 * (cns > coordination))])
        return row[nearest]

    def atom_sigmas(
        self,
        atoms,
        temperature: float | None = None,
        *,
        fallback_debye_temperature: float | Mapping = 580.0,
    ) -> np.ndarray:
        """Per-atom σ in Å for a structure, from its coordination numbers.

        Parameters
        ----------
        atoms : ase.Atoms
            The structure.
        temperature : float, optional
            Temperature in K. If it and the table's temperature are known, σ is scaled by
            ``sqrt(T / T_table)``. Elements missing from the table get the Debye amplitude at
            ``temperature`` (300 K if not given) with θ_D = ``fallback_debye_temperature`` (a
            number, or ``{element: θ_D}`` as in :func:`debye_sigmas`).

        Returns
        -------
        numpy.ndarray
            ``(n_atoms,)`` float64, the per-atom form of abTEM's ``FrozenPhonons(sigmas=...)``.
        """
        symbols = atoms.get_chemical_symbols()
        cn = coordination_numbers(atoms, self.cutoff_mult)
        scale = 1.0
        if temperature is not None and self.temperature:
            scale = float(np.sqrt(temperature / self.temperature))
        debye = debye_sigmas(
            [s for s in set(symbols) if s not in self.sigmas],
            300.0 if temperature is None else temperature,
            fallback_debye_temperature,
        )
        symbols = np.array(symbols)
        out = np.empty(len(symbols))
        for el in np.unique(symbols):
            is_el = symbols == el
            if el not in self.sigmas:
                out[is_el] = debye[el]
                continue
            for c in np.unique(cn[is_el]):
                out[is_el & (cn == c)] = self.sigma(el, int(c)) * scale
        return out

    def describe(self) -> str:
        """One line per element: σ (Å) and the number of atoms averaged, per coordination number."""
        return "\n".join(
            f"{element}: "
            + ", ".join(
                f"CN {cn}: {sigma:.4f} Å ({self.counts.get(element, {}).get(cn, 0)} atoms)" for cn, sigma in row.items()
            )
            for element, row in self.sigmas.items()
        )

    def to_dict(self) -> dict:
        """Plain-JSON dict (coordination numbers as string keys)."""
        extra = {"provenance": self.provenance} if self.provenance else {}
        return {
            "sigmas": {el: {str(k): v for k, v in row.items()} for el, row in self.sigmas.items()},
            "counts": {el: {str(k): v for k, v in row.items()} for el, row in self.counts.items()},
            "temperature": self.temperature,
            "cutoff_mult": self.cutoff_mult,
            "source": self.source,
            "units": {"sigma": "Å (per direction)", "temperature": "K"},
            **extra,
        }

    @classmethod
    def from_dict(cls, d: dict) -> CoordinationTable:
        """Inverse of :meth:`to_dict`."""
        return cls(
            sigmas={el: {int(k): float(v) for k, v in row.items()} for el, row in d["sigmas"].items()},
            counts={el: {int(k): int(v) for k, v in row.items()} for el, row in d.get("counts", {}).items()},
            temperature=d.get("temperature"),
            cutoff_mult=float(d.get("cutoff_mult", CUTOFF_MULT)),
            source=d.get("source", ""),
            provenance=dict(d.get("provenance") or {}),
        )

    def save(self, path) -> None:
        """Write the table as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path) -> CoordinationTable:
        """Read a table written by :meth:`save`.

        Raises
        ------
        ValueError
            If the file is not such a table (the message names the file).
        """
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ValueError(f"{path}: not a vibration table ({err})") from err


def _read_frames(trajectory):
    if isinstance(trajectory, (str, Path)):
        from ase.io import read

        try:
            frames = read(str(trajectory), index=":")
        except Exception as err:  # ASE raises many types for bad files
            raise ValueError(f"{trajectory}: cannot read a trajectory ({err})") from err
        return frames, str(trajectory)
    return list(trajectory), "trajectory"


def _kabsch(moving: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rotation matrix R minimising |moving @ R - reference| (both centred, (n, 3))."""
    u, _, vt = np.linalg.svd(moving.T @ reference)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def coordination_table_from_trajectory(
    trajectory,
    *,
    skip: int = 0,
    cutoff_mult: float = CUTOFF_MULT,
    temperature: float | None = None,
    align: str = "auto",
) -> CoordinationTable:
    """Extract vibration amplitudes per element and coordination number from an MD trajectory.

    The method of Larsen et al. [1]_: the standard deviation of each atom's position over
    the trajectory, averaged over all atoms of the same element and coordination number.

    Steps: frames after ``skip`` are unwrapped (periodic cells: minimum-image steps between
    frames) and aligned (``align``); each atom's per-direction σ is
    ``sqrt(mean over x, y, z of var(position))``; coordination numbers
    (:func:`coordination_numbers`) are those of the time-averaged structure; σ is averaged per
    (element, coordination number).

    Parameters
    ----------
    trajectory : str, pathlib.Path or sequence of ase.Atoms
        An ASE-readable trajectory (``.traj``, ``.xyz``, ...) or its frames; all frames must
        hold the same atoms in the same order.
    skip : int
        Frames discarded at the start (equilibration).
    cutoff_mult : float
        Neighbour cut-off scale (:func:`coordination_numbers`).
    temperature : float, optional
        MD temperature in K, stored in the table for rescaling.
    align : {"auto", "rigid", "translation", "none"}
        Removal of overall motion: ``"rigid"`` removes the centre-of-mass drift and the
        rotation of every frame (Kabsch fit to the mean structure; for free clusters),
        ``"translation"`` only the drift; ``"auto"`` uses rigid for non-periodic and
        translation for periodic systems.

    Returns
    -------
    CoordinationTable

    Raises
    ------
    ValueError
        Fewer than 2 frames after ``skip``, frames with different atoms, an unknown ``align``
        or an unreadable file (the message names it).

    References
    ----------
    .. [1] M. H. L. Larsen, W. B. Lomholdt, A. S. Dreisig, S. Helveg, O. Winther, T. Hansen,
       J. Schiøtz, "Superior neural network for distinguishing between atomic species",
       Microscopy and Microanalysis (conference abstract).
    """
    from napari_hrtem.arguments import check_number, check_optional

    skip = check_number(skip, "skip", low=0, integer=True, unit="frames")  # the arguments before the file
    check_number(cutoff_mult, "cutoff_mult", low=0.5, high=3.0, unit="(times the sum of covalent radii)")
    check_optional(temperature, "temperature", low=0, low_open=True, high=5000, unit="K")
    frames, source = _read_frames(trajectory)
    frames = frames[skip:]
    if len(frames) < 2:
        raise ValueError(f"{source}: need at least 2 frames after skipping {skip}, got {len(frames)}")
    first = frames[0]
    symbols = first.get_chemical_symbols()
    if any(f.get_chemical_symbols() != symbols for f in frames):
        raise ValueError(f"{source}: the frames do not hold the same atoms in the same order")
    if align not in ("auto", "rigid", "translation", "none"):
        raise ValueError(f"align must be auto, rigid, translation or none, got {align!r}")
    periodic = bool(np.any(first.pbc))
    if align == "auto":
        align = "translation" if periodic else "rigid"

    pos = np.stack([f.get_positions() for f in frames])  # (T, n, 3)
    if periodic:  # unwrap: minimum-image steps between consecutive frames
        cell = first.cell.array
        inv = np.linalg.pinv(cell)
        steps = np.diff(pos, axis=0)
        frac = steps @ inv
        frac -= np.round(frac) * first.pbc
        pos = np.concatenate([pos[:1], pos[:1] + np.cumsum(frac @ cell, axis=0)])
    masses = first.get_masses()
    if align in ("translation", "rigid"):
        com = (pos * masses[None, :, None]).sum(axis=1, keepdims=True) / masses.sum()
        pos = pos - com
    if align == "rigid":
        reference = pos[0]
        for _ in range(3):  # align to the first frame, then twice to the mean
            pos = np.stack([p @ _kabsch(p, reference) for p in pos])
            reference = pos.mean(axis=0)
    sigma_atom = np.sqrt(pos.var(axis=0).mean(axis=1))  # (n,) per-direction σ in Å

    mean_structure = first.copy()
    mean_structure.set_positions(pos.mean(axis=0) + (0 if align == "none" else first.get_center_of_mass()))
    cn = coordination_numbers(mean_structure, cutoff_mult)
    sigmas: dict[str, dict[int, float]] = {}
    counts: dict[str, dict[int, int]] = {}
    for el in sorted(set(symbols)):
        is_el = np.array(symbols) == el
        for c in sorted(set(cn[is_el].tolist())):
            members = is_el & (cn == c)
            sigmas.setdefault(el, {})[int(c)] = float(sigma_atom[members].mean())
            counts.setdefault(el, {})[int(c)] = int(members.sum())
    return CoordinationTable(
        sigmas=sigmas, counts=counts, temperature=temperature, cutoff_mult=cutoff_mult, source=source
    )


def frozen_phonon_sigmas(
    atoms, temperature: float, *, table: CoordinationTable | None = None, debye_temperature: float | Mapping = 580.0
):
    """The ``sigmas`` argument of abTEM's ``FrozenPhonons`` for a structure.

    Parameters
    ----------
    atoms : ase.Atoms
        The structure.
    temperature : float
        Temperature in K.
    table : CoordinationTable, optional
        Coordination-dependent amplitudes; ``None`` uses the Debye model per element.
    debye_temperature : float or mapping
        θ_D in K of the Debye model (and of the fallback for elements missing from ``table``):
        one number (thesis: 580 K for all), or ``{element: θ_D}`` with an optional ``"default"``
        (:data:`DEBYE_TEMPERATURES`, :func:`debye_temperature_setting`).

    Returns
    -------
    dict or numpy.ndarray
        ``{element: σ}`` (Debye) or ``(n_atoms,)`` per-atom σ in Å (table).
    """
    if table is None:
        return debye_sigmas(atoms.get_chemical_symbols(), temperature, debye_temperature)
    return table.atom_sigmas(atoms, temperature, fallback_debye_temperature=debye_temperature)


def packaged_table(name: str = "mos2-chgnet") -> CoordinationTable:
    """A coordination table shipped with the package.

    ``mos2-chgnet``: vibration amplitudes of MoS2 (Mo, S) and graphene (C) per coordination number
    from Langevin molecular dynamics at 300 K with the CHGNet universal machine-learned potential
    [1]_ (pretrained weights of the ``chgnet`` package): a 2H-MoS2 flake of about 17 Å with single S
    vacancies, bare and on a graphene sheet (``recipes/md_vibrations``; the recipe, the versions and
    the run settings are in the table's ``provenance``, docs/measurements/vibrations.md). Mo and S:
    the mean of the two runs' σ per coordination number (a training set is about half bare, half
    supported); C: the supported run. Edge atoms (low coordination) vibrate more than those inside
    the flake, as found by Larsen et al. [2]_: at 300 K Mo σ = 0.065 Å inside (12 neighbours: 6 S,
    6 Mo) to 0.095 Å at the edge (8), S 0.085 Å inside (3 Mo) and 0.16-0.17 Å at the edge (1-2 Mo),
    C 0.067 Å; the Debye model (θ_D = 580 K) gives Mo 0.032 Å and S 0.055 Å. σ scales as sqrt(T / 300 K) when applied
    at another temperature (:meth:`CoordinationTable.atom_sigmas`; classical harmonic atoms).

    Parameters
    ----------
    name : str
        A key of :data:`PACKAGED_TABLES`.

    Returns
    -------
    CoordinationTable
        σ in Å (per direction), per element and coordination number; ``temperature`` 300 K.

    Raises
    ------
    KeyError
        If ``name`` is not a packaged table (the message lists them).

    References
    ----------
    .. [1] B. Deng, P. Zhong, K. Jun, J. Riebesell, K. Han, C. J. Bartel, G. Ceder, "CHGNet as a
       pretrained universal neural network potential for charge-informed atomistic modelling",
       Nature Machine Intelligence 5, 1031 (2023).
    .. [2] M. H. L. Larsen, W. B. Lomholdt, A. S. Dreisig, S. Helveg, O. Winther, T. Hansen,
       J. Schiøtz, "Superior neural network for distinguishing between atomic species",
       Microscopy and Microanalysis (conference abstract).
    """
    if name not in PACKAGED_TABLES:
        raise KeyError(f"no packaged vibration table {name!r} (have {', '.join(sorted(PACKAGED_TABLES))})")
    return CoordinationTable.load(Path(__file__).parent / "data" / PACKAGED_TABLES[name])


def load_coordination_table(spec) -> CoordinationTable:
    """A coordination table by packaged name (:data:`PACKAGED_TABLES`) or from a JSON file.

    Parameters
    ----------
    spec : str or pathlib.Path
        ``"mos2-chgnet"`` (:func:`packaged_table`; also as a path, e.g. from a file field, unless such a
        file exists) or the path of a table written by
        :meth:`CoordinationTable.save` (e.g. by ``napari-hrtem vibration-table``).

    Returns
    -------
    CoordinationTable

    Raises
    ------
    ValueError
        If the file cannot be read or is not such a table (the message names it).
    """
    if str(spec) in PACKAGED_TABLES and not Path(spec).is_file():  # a name (a file of that name wins)
        return packaged_table(str(spec))
    try:
        return CoordinationTable.load(spec)
    except OSError as err:
        known = ", ".join(sorted(PACKAGED_TABLES))
        raise ValueError(
            f"{spec}: cannot read the vibration table ({err.strerror or err}); packaged: {known}"
        ) from None


def coordination_table_setting(ranges: dict | None = None) -> CoordinationTable | None:
    """The ``vibrations`` argument of :func:`napari_hrtem.simulation.imaging.exit_wave` from a parameter file.

    ``vibrations.coordination_table`` of the file: empty (the packaged default) keeps the Debye model
    (``None``); a packaged name (``mos2-chgnet``, :func:`packaged_table`) or the path of a table
    JSON (relative paths from the working folder) gives coordination-dependent amplitudes, with
    the Debye model of ``vibrations.debye_temperature(s)`` for elements missing from the table.

    Parameters
    ----------
    ranges : dict, optional
        Parameter ranges (:func:`napari_hrtem.simulation.parameters.load_parameter_ranges`);
        ``None`` uses the packaged file.

    Returns
    -------
    CoordinationTable or None

    Raises
    ------
    ValueError
        If the named file cannot be read or is not a table.
    """
    from napari_hrtem.simulation.parameters import load_parameter_ranges

    v = (load_parameter_ranges() if ranges is None else ranges)["vibrations"]
    spec = v.get("coordination_table") or ""
    return load_coordination_table(spec) if str(spec).strip() else None
