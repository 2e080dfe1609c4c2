"""Simulation parameter ranges: thesis Table 1 as a packaged YAML file, and user files over it.

References
----------
.. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of two-dimensional
   materials", Bachelor project, Technical University of Denmark (2024), Table 1.
.. [2] M. H. L. Larsen, F. Dahl, L. P. Hansen, B. Barton, C. Kisielowski, S. Helveg, O. Winther,
   T. W. Hansen, J. Schiøtz, "Reconstructing the exit wave of 2D materials in high-resolution transmission electron
   microscopy using machine learning", Ultramicroscopy 243, 113641 (2023): the MTF shape
   parameters (its Table 1).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

#: The packaged parameter file: thesis Table 1 as ranges.
PARAMETER_FILE = Path(__file__).parent / "data" / "table1.yaml"

#: A second packaged parameter file: wider ranges than the thesis' for networks meant for other microscopes
#: (not a description of the thesis; see its comments).
WIDE_PARAMETER_FILE = Path(__file__).parent / "data" / "wide.yaml"

#: Multislice settings used when no parameter file drives a simulation: what the shipped networks' training
#: data were made with (``exit_wave``'s defaults). Thesis Table 1 (the packaged file's ``simulation`` section)
#: differs: 0.1 Å wave sampling, 0.25 Å slices, 10 configurations; docs/measurements/simulation-settings.md
#: measures the difference.
CODE_SIMULATION_DEFAULTS = dict(energy=50e3, phonon_configs=4, wave_sampling=0.05, slice_thickness=0.5)

#: Entries a parameter file may add that the packaged file leaves out (absent: the behaviour before they
#: existed), with the type their value must have; so configs recorded before them (a dataset store's recipe)
#: still compare equal. ``vibrations.coordination_table``: a packaged table name or a path
#: (:func:`napari_hrtem.simulation.vibrations.coordination_table_setting`).
OPTIONAL_ENTRIES: dict[tuple[str, str], object] = {("vibrations", "coordination_table"): ""}

_DEFAULT_RANGES: dict | None = None  # the packaged file, parsed once


def load_parameter_ranges(path=None) -> dict:
    """Read simulation parameter ranges from a YAML or JSON file, over the thesis defaults.

    The packaged file (:data:`PARAMETER_FILE`, ``data/table1.yaml``) holds every parameter of
    thesis Table 1 [1]_ with its range, the MTF shape ranges of the exit-wave paper [2]_ (its
    Table 1) and the sample recipe (thesis section 3.1), with units in its comments.
    A user file needs only the entries it changes; they replace the defaults.

    Sections and entries (``[low, high]`` drawn uniformly, a number fixed): ``microscope``
    (energy eV, n_images, defocus Å, defocus_step Å, Cs Å, C12 Å, C21 Å, focal_spread Å, blur Å,
    log10_dose log10(e/Å²), mtf_c1, mtf_c2, mtf_c3, readout, gain_noise, dark_noise, sampling Å/px), ``simulation``
    (wave_sampling Å, slice_thickness Å, phonon_configs, image_epochs, ...), ``vibrations``
    (debye_temperature K, debye_temperatures {element: K}, temperature K, coordination_table: a packaged
    name or a path, :func:`napari_hrtem.simulation.vibrations.coordination_table_setting`) and ``sample`` (see
    :func:`napari_hrtem.simulation.structures.random_sample`).

    Parameters
    ----------
    path : str or pathlib.Path, optional
        ``.yaml``/``.yml`` or ``.json`` file; ``None`` gives the packaged defaults.

    Returns
    -------
    dict
        ``{section: {name: value}}``, a fresh copy.

    Raises
    ------
    ValueError
        If the file cannot be read or parsed, has an unknown section or entry, or a range whose
        low end exceeds its high end; the message names the file and the entry.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), Table 1 and section 3.1.
    .. [2] M. H. L. Larsen, F. Dahl, L. P. Hansen, B. Barton, C. Kisielowski, S. Helveg,
       O. Winther, T. W. Hansen, J. Schiøtz, "Reconstructing the exit wave of 2D materials in high-resolution
       transmission electron microscopy using machine learning", Ultramicroscopy 243,
       113641 (2023), Table 1.
    """
    import yaml

    from napari_hrtem.io.limits import check_text_file, load_json_limited, load_yaml_limited

    def read(file):
        try:
            text = check_text_file(file, "parameter file")  # size, then no alias bombs or deep nesting
            data = (
                load_json_limited(text, str(file)) if str(file).lower().endswith(".json") else load_yaml_limited(text)
            )
        except (OSError, ValueError, yaml.YAMLError, RecursionError) as err:
            raise ValueError(f"{file}: cannot read the parameter file ({err})") from err
        if not isinstance(data, dict):
            raise ValueError(f"{file}: a parameter file must map sections to entries")
        return data

    global _DEFAULT_RANGES
    if _DEFAULT_RANGES is None:
        _DEFAULT_RANGES = read(PARAMETER_FILE)
    ranges = copy.deepcopy(_DEFAULT_RANGES)
    if path is None:
        return ranges
    user = read(path) or {}
    for section, entries in user.items():
        if section not in ranges:
            raise ValueError(f"{path}: unknown section {section!r} (known: {', '.join(ranges)})")
        if not isinstance(entries, dict):
            raise ValueError(f"{path}: section {section!r} must map names to values")
        for name, value in entries.items():
            optional = (section, name) in OPTIONAL_ENTRIES
            if name not in ranges[section] and not optional:
                known = [*ranges[section], *(n for (sec, n) in OPTIONAL_ENTRIES if sec == section)]
                raise ValueError(f"{path}: unknown entry {section}.{name} (known: {', '.join(known)})")
            default = ranges[section][name] if name in ranges[section] else OPTIONAL_ENTRIES[(section, name)]
            if name == "contamination_sides":
                if value not in ("both", "top", "bottom"):
                    raise ValueError(f"{path}: {section}.{name} must be both, top or bottom, got {value!r}")
            elif isinstance(default, dict):  # e.g. vibrations.debye_temperatures: {element: K}
                if not (
                    isinstance(value, dict)
                    and all(isinstance(k, str) and isinstance(v, (int, float)) and v > 0 for k, v in value.items())
                ):
                    raise ValueError(f"{path}: {section}.{name} must map element symbols to numbers > 0, got {value!r}")
            elif name == "rotation_choices":  # a list of angles, not a range
                if not (isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value)):
                    raise ValueError(f"{path}: {section}.{name} must be a list of angles in degrees, got {value!r}")
            elif isinstance(default, (list, tuple)):
                ok = isinstance(value, (int, float)) or (
                    isinstance(value, (list, tuple))
                    and len(value) == 2
                    and all(isinstance(v, (int, float)) for v in value)
                    and value[0] <= value[1]
                )
                if not ok:
                    raise ValueError(
                        f"{path}: {section}.{name} must be a number or [low, high] with low <= high, got {value!r}"
                    )
            elif isinstance(default, (int, float)) and not isinstance(value, (int, float)):
                raise ValueError(f"{path}: {section}.{name} must be a number, got {value!r}")
            elif isinstance(default, str) and not isinstance(value, str):  # e.g. vibrations.coordination_table
                raise ValueError(f"{path}: {section}.{name} must be text (a name or a path), got {value!r}")
            ranges[section][name] = value
    return ranges


def parameter_file_text(path=None) -> str:
    """The parameter ranges as YAML text.

    Parameters
    ----------
    path : str or pathlib.Path, optional
        A user parameter file; ``None`` gives the packaged file itself, with the units in its
        comments.

    Returns
    -------
    str
        The packaged file, or the ranges of ``path`` merged over it (:func:`load_parameter_ranges`).

    Raises
    ------
    ValueError
        If ``path`` cannot be read or holds an unknown or bad entry.
    """
    import yaml

    if path is None:
        return PARAMETER_FILE.read_text(encoding="utf-8")
    return yaml.safe_dump(load_parameter_ranges(path), sort_keys=False, allow_unicode=True)


def write_parameter_file(out, path=None) -> Path:
    """Write the parameter ranges to ``out`` (a template to edit), YAML or JSON by its suffix.

    Parameters
    ----------
    out : str or pathlib.Path
        ``.yaml``/``.yml`` or ``.json`` file to write.
    path : str or pathlib.Path, optional
        A user parameter file merged over the defaults; ``None``: the defaults (to a YAML file:
        the packaged file itself, with the units in its comments).

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ValueError
        If ``path`` cannot be read or holds an unknown or bad entry.
    """
    out = Path(out)
    if path is None and out.suffix.lower() in (".yaml", ".yml"):
        out.write_text(PARAMETER_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    else:
        save_parameter_ranges(load_parameter_ranges(path), out)
    return out


def save_parameter_ranges(ranges: dict, path) -> None:
    """Write parameter ranges (:func:`load_parameter_ranges`) as YAML or JSON (by the suffix)."""
    import yaml

    path = Path(path)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(ranges, indent=1, ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(ranges, sort_keys=False, allow_unicode=True), encoding="utf-8")


def simulation_settings(
    ranges: dict | None = None,
    *,
    energy: float | None = None,
    phonon_configs: int | None = None,
    wave_sampling: float | None = None,
    slice_thickness: float | None = None,
) -> tuple[dict, dict | None]:
    """The beam energy and multislice settings of a dataset, from a parameter file and explicit values.

    One rule for every dataset path (``napari-hrtem dataset``, ``simulate-dataset``): an explicit
    value (a command-line option or keyword argument, not None) wins; otherwise the parameter file's
    entry (``microscope.energy``, ``simulation.phonon_configs``, ``simulation.wave_sampling``,
    ``simulation.slice_thickness``) is used when a file is given; otherwise the code's defaults
    (:data:`CODE_SIMULATION_DEFAULTS`, what the shipped networks were trained on). An explicit value
    that differs from the file's is written into the returned copy of the ranges, so that the
    recorded parameter file always describes what was simulated.

    Parameters
    ----------
    ranges : dict, optional
        Parameter ranges (:func:`load_parameter_ranges`); None: no parameter file.
    energy : float, optional
        Beam energy, eV (> 0).
    phonon_configs : int, optional
        Frozen-phonon configurations (≥ 1).
    wave_sampling : float, optional
        Largest exit-wave sampling, Å (> 0).
    slice_thickness : float, optional
        Multislice slice thickness, Å (> 0).

    Returns
    -------
    settings : dict
        ``energy`` (eV, float), ``phonon_configs`` (int), ``wave_sampling`` (Å), ``slice_thickness`` (Å).
    ranges : dict or None
        A copy of ``ranges`` with the explicit values written in (None when ``ranges`` is None).

    Raises
    ------
    ValueError
        If a value is not a finite number > 0 (``phonon_configs``: an integer ≥ 1); the message
        names the parameter-file entry.
    """
    explicit = dict(
        energy=energy, phonon_configs=phonon_configs, wave_sampling=wave_sampling, slice_thickness=slice_thickness
    )
    where = {
        "energy": ("microscope", "energy"),
        "phonon_configs": ("simulation", "phonon_configs"),
        "wave_sampling": ("simulation", "wave_sampling"),
        "slice_thickness": ("simulation", "slice_thickness"),
    }
    ranges = None if ranges is None else copy.deepcopy(ranges)
    settings = {}
    for name, value in explicit.items():
        section, key = where[name]
        if value is None:
            value = CODE_SIMULATION_DEFAULTS[name] if ranges is None else ranges[section][key]
        elif ranges is not None:
            ranges[section][key] = value
        value = float(value)
        counted = name == "phonon_configs"
        if not (math.isfinite(value) and value > 0 and (not counted or value == int(value))):
            need = "an integer >= 1" if counted else "a finite number > 0"
            raise ValueError(f"{section}.{key} must be {need}, got {value:g}")
        settings[name] = int(value) if counted else value
    return settings, ranges
