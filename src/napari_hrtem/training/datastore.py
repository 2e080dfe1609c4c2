"""Simulated datasets in one zarr store, computed as dask tasks, resumable after interruption.

``napari-hrtem simulate-dataset`` (:func:`generate_dataset`) makes ``structures`` independent
samples. Each sample is one dask task (a local ``dask.distributed`` cluster by default, or any
scheduler given by address): a random structure (thesis recipe,
:func:`~napari_hrtem.simulation.structures.random_sample`), its multislice exit wave
(:func:`~napari_hrtem.simulation.imaging.exit_wave`), ``image_epochs`` focal series made from that wave with
fresh microscope parameters each (the thesis' "image epochs"), and its labels. The client writes
each finished sample into the store as it arrives.

Store layout (zarr v3, a directory)::

    DATA.zarr/                     attrs: format, version, recipe (every setting, seed, config),
                                          structures (the number asked for)
      samples/000000/              attrs: index, sampling (Å/px), sample (structure parameters),
                                          exit_wave (temperature K, phonon configurations, ...),
                                          microscope (list of E parameter dicts, abTEM defocus
                                          sign), seconds (wall) and cpu_seconds (of the worker
                                          process), worker, pid, completed_at (UTC ISO), complete
        exit_wave   (Hw, Ww)          complex64, at the full wave sampling (attrs sampling Å)
        sites       (n, 2)            float64, ground-truth columns (y, x) in Å
        site_classes (n,)             uint8, codes of CLASSES (Mo, S2, S)
        images      (E, N, H, W)      float32 raw intensities (vacuum ≈ 1), increasing defocus
        labels/disk      (H, W)       uint8 class map, disks of radius ``width`` Å
        labels/gaussian  (C, H, W)    float32, one channel per class, Gaussians of standard
                                      deviation ``width`` Å (peak 1, overlapping ones: maximum)
      partial/                     samples being written (never read)

Atomicity: a sample is written completely into ``partial/<index>-<token>`` with ``complete``
set last, then the directory is renamed to ``samples/<index>`` (an atomic rename on one file
system). A run that is killed leaves at most debris in ``partial/`` (cleared by the next run),
never a half-written sample; a second run computes only the missing samples. Readers take only
samples whose ``complete`` attribute is true.

Every sample draws from its own generator ``numpy.random.default_rng([seed, index])``, so a
sample is the same whichever worker computes it, in whatever order, in whichever run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

FORMAT = "napari-hrtem dataset"
VERSION = 1
LABEL_TYPES = ("disk", "gaussian")
_SAMPLE_NAME = re.compile(r"^\d{6}$")
#: Slice thickness (Å) of stores whose recipe does not record one (made before it was a setting).
OLD_SLICE_THICKNESS = 0.5


def gaussian_map(
    sites: np.ndarray,
    classes: np.ndarray,
    shape: tuple[int, int],
    sampling: float,
    width: float = 0.35,
    n_classes: int | None = None,
) -> np.ndarray:
    """Gaussian labels: one channel per class with a Gaussian of peak 1 at each of its sites.

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
    width : float
        Standard deviation σ of the Gaussians in Å; values are cut off beyond 4 σ. Where two
        Gaussians of one class overlap the map takes the larger value.
    n_classes : int, optional
        Number of channels (default: :data:`~napari_hrtem.simulation.structures.CLASSES`).

    Returns
    -------
    numpy.ndarray
        ``(C, H, W)`` float32 in [0, 1].
    """
    from napari_hrtem.simulation.structures import CLASSES

    if width <= 0:
        raise ValueError(f"Gaussian label width must be positive, got {width} Å")
    n_classes = len(CLASSES) if n_classes is None else n_classes
    out = np.zeros((n_classes, *shape), dtype=np.float32)
    s_px = width / sampling
    k = int(np.ceil(4 * s_px))
    dy, dx = np.mgrid[-k : k + 1, -k : k + 1]
    for (y, x), c in zip(np.asarray(sites, dtype=float) / sampling, classes):
        iy, ix = int(round(y)), int(round(x))
        rr, cc = iy + dy, ix + dx
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        g = np.exp(-((rr - y) ** 2 + (cc - x) ** 2) / (2 * s_px**2)).astype(np.float32)
        rr, cc, g = rr[ok], cc[ok], g[ok]
        np.maximum.at(out[int(c)], (rr, cc), g)
    return out


def parse_labels(specs) -> dict[str, float]:
    """``["disk:0.45", "gaussian:0.35"]`` -> ``{"disk": 0.45, "gaussian": 0.35}`` (widths in Å).

    Raises
    ------
    ValueError
        On an unknown type, a missing or non-positive width, or a type given twice.
    """
    out: dict[str, float] = {}
    for spec in specs:
        kind, sep, width = str(spec).partition(":")
        kind = kind.strip().lower()
        if kind not in LABEL_TYPES or not sep:
            raise ValueError(
                f"label {spec!r}: expected TYPE:WIDTH_A with TYPE one of {', '.join(LABEL_TYPES)}, "
                "e.g. disk:0.45 or gaussian:0.35"
            )
        try:
            w = float(width)
        except ValueError:
            raise ValueError(f"label {spec!r}: width {width!r} is not a number (Å)") from None
        if not w > 0:
            raise ValueError(f"label {spec!r}: width must be positive (Å)")
        if kind in out:
            raise ValueError(f"label type {kind!r} given twice")
        out[kind] = w
    if not out:
        raise ValueError("at least one label type is needed (disk:WIDTH or gaussian:WIDTH)")
    return out


def read_config(path) -> dict:
    """Read a parameter file (YAML or JSON) over the thesis defaults.

    Thin wrapper of :func:`napari_hrtem.simulation.imaging.load_parameter_ranges`: the result holds every
    section (``microscope``, ``simulation``, ``vibrations``, ``sample``), the file's entries
    replacing the thesis Table 1 defaults.

    Raises
    ------
    ValueError
        If the file cannot be read or parsed or has an unknown entry (the message names the file).
    """
    from napari_hrtem.simulation.parameters import load_parameter_ranges

    try:
        return load_parameter_ranges(path)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the parameter file ({exc.strerror or exc})") from None


def _draw_parameters(rng: np.random.Generator, n_images: int, config: dict | None):
    """Microscope parameters of one focal series; the one place where ``--config`` enters.

    ``config`` is the ``--config`` parameter file read over the thesis defaults (:func:`read_config`),
    or None for the thesis' Table 1 ranges; it is recorded in the store's recipe.
    """
    from napari_hrtem.simulation.imaging import draw_microscope_parameters

    return draw_microscope_parameters(rng, n_images, ranges=config)


def _jsonable(obj):
    """Plain-JSON copy (numpy scalars and arrays to Python)."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def simulate_sample(index: int, recipe: dict) -> dict:
    """Compute one sample of a dataset (the dask task): structure, exit wave, images, labels.

    Parameters
    ----------
    index : int
        Sample number; with ``recipe["seed"]`` it seeds the sample's generator
        ``default_rng([seed, index])``.
    recipe : dict
        Settings (see :func:`generate_dataset`): ``shape``, ``sampling_range`` (Å/px),
        ``n_images``, ``image_epochs``, ``phonon_configs``, ``temperature_range`` (K),
        ``wave_sampling`` (largest wave sampling, Å), ``slice_thickness`` (Å; 0.5 Å for stores
        made before it was recorded), ``energy`` (eV), ``graphene_layers``,
        ``labels`` ({type: width Å}), ``config``, ``seed``.

    Returns
    -------
    dict
        Arrays (``exit_wave``, ``sites``, ``site_classes``, ``images``, ``labels``) and
        ``attrs`` (JSON-able metadata of the sample).
    """
    import socket

    import dask

    from napari_hrtem.simulation.imaging import exit_wave, focal_series
    from napari_hrtem.simulation.structures import random_sample
    from napari_hrtem.simulation.vibrations import _pair, coordination_table_setting, debye_temperature_setting
    from napari_hrtem.training.labels import class_map

    t0, c0 = time.perf_counter(), time.process_time()
    rng = np.random.default_rng([int(recipe["seed"]), int(index)])
    shape = tuple(recipe["shape"])
    sampling = float(rng.uniform(*recipe["sampling_range"]))
    config = recipe.get("config")
    sample = random_sample(
        (shape[0] * sampling, shape[1] * sampling), rng, graphene_layers=recipe.get("graphene_layers"), ranges=config
    )
    # a parameter file's entry is a [low, high] range or one fixed number (as every entry of the file)
    temperature_range = _pair(config["vibrations"]["temperature"]) if config else recipe["temperature_range"]
    temperature = float(rng.uniform(*temperature_range))
    # abTEM computes with dask inside this task: keep it in this thread (no nested cluster use)
    with dask.config.set(scheduler="synchronous"):
        wave = exit_wave(
            sample,
            shape,
            sampling,
            energy=float(recipe["energy"]),
            max_wave_sampling=float(recipe["wave_sampling"]),
            slice_thickness=float(recipe.get("slice_thickness", OLD_SLICE_THICKNESS)),
            phonon_configs=int(recipe["phonon_configs"]),
            temperature=temperature,
            seed=int(rng.integers(2**31)),
            debye_temperature=debye_temperature_setting(config),  # the file's per-element table, else 580 K
            vibrations=coordination_table_setting(config),  # vibrations.coordination_table, else None (Debye)
        )
        images, params = [], []
        for _ in range(int(recipe["image_epochs"])):
            p = _draw_parameters(rng, int(recipe["n_images"]), config)
            p.energy = wave.energy  # the recipe's: the exit wave's energy images it
            images.append(focal_series(wave, p, shape, rng=rng))
            params.append(p.to_dict())
    labels = {}
    for kind, width in recipe["labels"].items():
        if kind == "disk":
            labels[kind] = class_map(sample.sites, sample.classes, shape, sampling, radius=width)
        else:
            labels[kind] = gaussian_map(sample.sites, sample.classes, shape, sampling, width=width)
    attrs = dict(
        index=int(index),
        sampling=sampling,
        sample=sample.params,
        counts=sample.counts(),
        exit_wave=dict(wave.params, sampling=wave.sampling, energy=wave.energy, shape=list(wave.array.shape)),
        microscope=params,
        labels=recipe["labels"],
        seconds=round(time.perf_counter() - t0, 3),
        cpu_seconds=round(time.process_time() - c0, 3),
        worker=socket.gethostname(),
        pid=os.getpid(),
    )
    return dict(
        exit_wave=wave.array,
        sites=np.asarray(sample.sites, dtype=np.float64),
        site_classes=np.asarray(sample.classes, dtype=np.uint8),
        images=np.stack(images),
        labels=labels,
        attrs=_jsonable(attrs),
    )


#: Debris of :func:`write_sample` in ``partial/`` (cleared by the next run; nothing else there is touched).
_PARTIAL_NAME = re.compile(r"^\d{6}-[0-9a-f]{8}$")


def _check_store(path: Path) -> bool:
    """Whether ``path`` is a store this module made (True: resume it) or is free (False: create it).

    Reads only. A store is recognised by its marker, the root attributes ``format`` ("napari-hrtem
    dataset"), ``version`` and ``recipe``, written in one piece when the store is created; its
    ``samples`` and ``partial`` must be groups.

    Raises
    ------
    ValueError
        If ``path`` exists and is anything else (a file, a folder, a zarr store this module did not
        make, a newer format): such a path is never written to.
    """
    from napari_hrtem.io.files import LOCK_NAME

    if not str(path).strip():
        raise ValueError("the dataset store is an empty name: give a path such as DATA.zarr")
    if not path.exists():
        return False
    if path.is_dir() and os.listdir(path) == [LOCK_NAME]:
        return False  # made and locked by a run that died before it wrote the store
    if not (path / "zarr.json").is_file():
        raise ValueError(f"{path}: exists and is not a zarr store; choose another --out (it is left untouched)")
    try:
        meta = json.loads((path / "zarr.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: its zarr.json cannot be read ({exc}); the store is left untouched") from None
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    if (
        not isinstance(attrs, dict)
        or meta.get("node_type") != "group"
        or attrs.get("format") != FORMAT
        or not isinstance(attrs.get("recipe"), dict)
    ):
        raise ValueError(
            f"{path}: a zarr store that napari-hrtem simulate-dataset did not make (no {FORMAT!r} format "
            "marker); it is left untouched: choose another --out"
        )
    version = attrs.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(f"{path}: a dataset store of format version {version!r}; this napari-hrtem writes {VERSION}")
    for name in ("samples", "partial"):
        node = path / name
        if not node.exists():
            continue
        try:
            kind = json.loads((node / "zarr.json").read_text(encoding="utf-8")).get("node_type")
        except (OSError, ValueError, AttributeError, RecursionError):
            kind = None
        if not node.is_dir() or kind != "group":
            raise ValueError(f"{path}: its {name!r} is not a group of samples; the store is left untouched")
    return True


def _open_root(path: Path, recipe: dict, structures: int):
    """Create the store or check that an existing one was made with the same recipe."""
    import zarr

    if not _check_store(path):  # a new store: its marker and recipe are written in one piece
        attrs = dict(format=FORMAT, version=VERSION, recipe=recipe, structures=int(structures))
        root = zarr.open_group(str(path), mode="a", attributes=attrs)
    else:
        root = zarr.open_group(str(path), mode="a")
    old = root.attrs.get("recipe")
    if old is None:
        raise ValueError(f"{path}: not a napari-hrtem dataset store")
    else:
        if root.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: not a napari-hrtem dataset store")
        old = dict(old)
        old.setdefault("slice_thickness", OLD_SLICE_THICKNESS)  # stores made before it was recorded
        diff = sorted(k for k in set(old) | set(recipe) if old.get(k) != recipe.get(k))
        if diff:
            raise ValueError(
                f"{path}: was made with other settings ({', '.join(f'{k}: {old.get(k)} -> {recipe.get(k)}' for k in diff)}); "
                "use a new --out to make a different dataset"
            )
        root.attrs["structures"] = max(int(root.attrs.get("structures", 0)), int(structures))
    root.require_group("samples")
    root.require_group("partial")
    return root


def completed_samples(path) -> list[int]:
    """Indices of the complete samples of a store (sorted); incomplete ones are ignored."""

    path = Path(path)
    if not (path / "samples").is_dir():
        return []
    return [
        int(name)
        for name in sorted(os.listdir(path / "samples"))
        if _SAMPLE_NAME.match(name) and _is_complete(path / "samples" / name)
    ]


def _is_complete(group_path: Path) -> bool:
    import zarr

    if not (group_path / "zarr.json").exists():
        return False
    try:
        return zarr.open_group(str(group_path), mode="r").attrs.get("complete") is True
    except Exception:
        return False


def write_sample(path, result: dict) -> bool:
    """Write one computed sample (:func:`simulate_sample`) atomically into the store at ``path``.

    Written into ``partial/`` with ``complete`` and ``completed_at`` set last, then renamed to
    ``samples/<index>``. Returns False (and writes nothing) if the sample is already complete.
    """
    import datetime

    import zarr

    path = Path(path)
    index = int(result["attrs"]["index"])
    final = path / "samples" / f"{index:06d}"
    if final.exists():
        if _is_complete(final):
            return False
        shutil.rmtree(final)  # an incomplete sample (not from this module's writer) is replaced
    tmp = path / "partial" / f"{index:06d}-{uuid.uuid4().hex[:8]}"
    g = zarr.open_group(str(tmp), mode="w")
    for name in ("exit_wave", "sites", "site_classes", "images"):
        a = np.asarray(result[name])
        g.create_array(name, data=a, chunks=a.shape if a.size else None)
    g["exit_wave"].attrs.update(dict(sampling=result["attrs"]["exit_wave"]["sampling"], units="Å", axes=["y", "x"]))
    g["images"].attrs.update(
        dict(axes=["epoch", "image", "y", "x"], units="incident beam intensity", sampling=result["attrs"]["sampling"])
    )
    lab = g.create_group("labels")
    widths = result["attrs"].get("labels", {})
    for kind, arr in result["labels"].items():
        lab.create_array(kind, data=arr, chunks=arr.shape)
        lab[kind].attrs.update(
            dict(
                width=widths.get(kind),
                units="Å",
                meaning="disk radius" if kind == "disk" else "Gaussian standard deviation",
            )
        )
    attrs = dict(result["attrs"])
    attrs["completed_at"] = datetime.datetime.now(datetime.UTC).isoformat()
    g.attrs.update(attrs)
    g.attrs["complete"] = True  # last: marks the sample as whole
    os.replace(tmp, final)
    return True


def make_recipe(
    *,
    image_epochs: int = 8,
    n_images: int = 3,
    shape: tuple[int, int] = (128, 128),
    sampling_range: tuple[float, float] = (0.215, 0.235),
    phonon_configs: int | None = None,
    temperature_range: tuple[float, float] = (100.0, 600.0),
    wave_sampling: float | None = None,
    energy: float | None = None,
    slice_thickness: float | None = None,
    graphene_layers: int | None = None,
    labels: dict[str, float] | None = None,
    config: dict | None = None,
    seed: int = 0,
) -> dict:
    """The JSON recipe of a dataset (the settings of :func:`generate_dataset`, which see), checked.

    The beam energy and multislice settings are resolved by
    :func:`napari_hrtem.simulation.parameters.simulation_settings` (explicit value, else the
    ``config`` file's, else the code's defaults) and recorded as numbers; an explicit value is
    also written into the recorded ``config``.

    Raises
    ------
    ValueError
        On counts below 1, a non-positive multislice setting or energy, or a non-positive or
        decreasing sampling range.
    """
    from napari_hrtem.simulation.parameters import simulation_settings

    settings, config = simulation_settings(
        config,
        energy=energy,
        phonon_configs=phonon_configs,
        wave_sampling=wave_sampling,
        slice_thickness=slice_thickness,
    )
    phonon_configs, wave_sampling = settings["phonon_configs"], settings["wave_sampling"]
    energy, slice_thickness = settings["energy"], settings["slice_thickness"]
    if image_epochs < 1 or n_images < 1 or phonon_configs < 1:
        raise ValueError("--image-epochs, images per series and phonon configurations must be ≥ 1")
    if not 0 < sampling_range[0] <= sampling_range[1]:
        raise ValueError(f"sampling range {tuple(sampling_range)} Å/px must be positive and increasing")
    if not wave_sampling > 0:
        raise ValueError(f"wave sampling {wave_sampling} Å must be positive")
    from napari_hrtem.io.limits import MAX_GRAPHENE_LAYERS
    from napari_hrtem.io.validation import check_simulation_request

    for side in shape:  # image size, exit-wave grid and layers bounded before anything is allocated
        check_simulation_request(
            int(side), float(sampling_range[1]), wave_sampling=wave_sampling, graphene_layers=graphene_layers
        )
    drawn = ((config or {}).get("sample") or {}).get("graphene_layers", 0)
    if max(np.ravel(np.asarray(drawn, dtype=float)), default=0) > MAX_GRAPHENE_LAYERS:
        raise ValueError(f"config sample.graphene_layers {drawn!r}: more than {MAX_GRAPHENE_LAYERS} layers")
    labels = dict(labels or {"disk": 0.45, "gaussian": 0.35})
    return _jsonable(
        dict(
            shape=list(shape),
            sampling_range=list(sampling_range),
            n_images=n_images,
            image_epochs=image_epochs,
            phonon_configs=phonon_configs,
            temperature_range=list(temperature_range),
            wave_sampling=wave_sampling,
            slice_thickness=slice_thickness,
            energy=energy,
            graphene_layers=graphene_layers,
            labels=labels,
            config=config,
            seed=seed,
            defocus_sign="abTEM: defocus = -C10, positive = underfocus",
        )
    )


def generate_dataset(
    out,
    structures: int,
    *,
    image_epochs: int = 8,
    n_images: int = 3,
    shape: tuple[int, int] = (128, 128),
    sampling_range: tuple[float, float] = (0.215, 0.235),
    phonon_configs: int | None = None,
    temperature_range: tuple[float, float] = (100.0, 600.0),
    wave_sampling: float | None = None,
    energy: float | None = None,
    slice_thickness: float | None = None,
    graphene_layers: int | None = None,
    labels: dict[str, float] | None = None,
    config: dict | None = None,
    seed: int = 0,
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Simulate a dataset into a zarr store with dask, skipping the samples already there.

    Parameters
    ----------
    out : str or Path
        The store (a directory, conventionally ``*.zarr``); created if missing. An existing
        store must have been made with the same settings (only ``structures`` may grow).
    structures : int
        Number of samples (structures, each with one exit wave).
    image_epochs : int
        Focal series per exit wave, each with fresh microscope parameters (thesis: 10).
    n_images : int
        Images per focal series.
    shape : (int, int)
        ``(H, W)`` of the images, px.
    sampling_range : (float, float)
        Image sampling drawn uniformly per sample, Å/px.
    phonon_configs : int, optional
        Frozen-phonon configurations per exit wave.
    temperature_range : (float, float)
        Temperature drawn uniformly per sample, K (thesis Table 1: 100-600 K; a ``config`` file's
        ``vibrations.temperature`` replaces it).
    wave_sampling : float, optional
        Largest exit-wave sampling, Å (0.05 Å in M. H. L. Larsen et al., "Reconstructing the exit
        wave in high-resolution transmission electron microscopy using machine learning").
    energy : float, optional
        Beam energy, eV: of the exit waves and of their images.
    slice_thickness : float, optional
        Multislice slice thickness, Å.

        For these four, None takes the ``config`` file's value (``microscope.energy``,
        ``simulation.phonon_configs``, ``.wave_sampling``, ``.slice_thickness``; thesis Table 1:
        10, 0.1 Å, 50 keV, 0.25 Å), or without a file the code's defaults (4, 0.05 Å, 50 keV,
        0.5 Å). An explicit value wins over the file's and is written into the recorded config
        (:func:`napari_hrtem.simulation.parameters.simulation_settings`).
    graphene_layers : int, optional
        Fixed number of graphene layers (default: the thesis recipe's draw).
    labels : dict, optional
        Label types and widths in Å (default ``{"disk": 0.45, "gaussian": 0.35}``).
    config : dict, optional
        Content of the ``--config`` parameter file; recorded in the recipe and handed to the
        microscope-parameter draw.
    seed : int
        Seed of the whole dataset.
    client : distributed.Client, optional
        Use this client. Otherwise ``scheduler`` (an address such as ``tcp://host:8786``) is
        connected to, or a local cluster of ``workers`` single-threaded worker processes
        (default: the number of CPU cores) is started and shut down at the end; ``workers=0``
        computes in this process, one sample after another, without dask.
    progress : callable, optional
        ``progress(done, total)`` after each written sample (``done`` counts samples already in
        the store).

    Returns
    -------
    dict
        ``computed`` (indices computed in this run), ``skipped`` (already complete),
        ``seconds``, ``recipe``, ``notes`` (e.g. the lock of a dead run taken over).

    Raises
    ------
    ValueError
        On bad settings, a store made with other settings, a path that is not a store this
        function made (never written to: :func:`_check_store`), or a store another run is
        writing (its lock file ``.napari-hrtem.lock``, :class:`napari_hrtem.io.files.RunLock`).
    """
    if not str(out).strip():
        raise ValueError("the dataset store is an empty name: give a path such as DATA.zarr")
    path = Path(out)
    from napari_hrtem.arguments import check_number, check_seed

    check_number(structures, "structures", low=1, integer=True)
    check_seed(seed)
    if workers is not None:
        from napari_hrtem.io.validation import check_simulation_request

        check_simulation_request(int(shape[0]), workers=workers)  # a bad --workers hung the local cluster
    recipe = make_recipe(
        image_epochs=image_epochs,
        n_images=n_images,
        shape=shape,
        sampling_range=sampling_range,
        phonon_configs=phonon_configs,
        temperature_range=temperature_range,
        wave_sampling=wave_sampling,
        energy=energy,
        slice_thickness=slice_thickness,
        graphene_layers=graphene_layers,
        labels=labels,
        config=config,
        seed=seed,
    )
    _check_store(path)  # before anything is written: a path it did not make is refused
    from napari_hrtem.io.files import RunLock

    with RunLock(path, "simulate-dataset") as lock:  # one run at a time per store
        result = _run_dataset(path, structures, recipe, seed, client, scheduler, workers, progress)
    result["notes"] = [lock.note] if lock.note else []
    return result


def _run_dataset(path: Path, structures: int, recipe: dict, seed, client, scheduler, workers, progress) -> dict:
    """The body of :func:`generate_dataset`, run under the store's lock."""
    _open_root(path, recipe, structures)
    for debris in (path / "partial").iterdir():  # samples of an interrupted run; nothing else
        if debris.is_dir() and _PARTIAL_NAME.match(debris.name):
            shutil.rmtree(debris, ignore_errors=True)
    done = set(completed_samples(path))
    todo = [i for i in range(structures) if i not in done]
    skipped = sorted(done & set(range(structures)))
    t0 = time.perf_counter()
    n_done = len(skipped)
    if progress:
        progress(n_done, structures)
    if todo and client is None and not scheduler and workers == 0:
        for i in todo:  # no cluster: one sample after another in this process
            write_sample(path, simulate_sample(i, recipe))
            n_done += 1
            if progress:
                progress(n_done, structures)
    elif todo:
        from distributed import Client, LocalCluster, as_completed

        cluster = None
        own_client = client is None
        if client is None:
            if scheduler:
                client = Client(scheduler)
            else:
                cluster = LocalCluster(
                    n_workers=workers or os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
                client = Client(cluster)
        try:
            futures = [
                client.submit(simulate_sample, i, recipe, key=f"napari-hrtem-sample-{seed}-{i}", pure=False)
                for i in todo
            ]
            for future, result in as_completed(futures, with_results=True):
                write_sample(path, result)
                future.release()
                n_done += 1
                if progress:
                    progress(n_done, structures)
        finally:
            if own_client:
                client.close()
            if cluster is not None:
                cluster.close()
    return dict(computed=todo, skipped=skipped, seconds=time.perf_counter() - t0, recipe=recipe)


def _open_samples(path, label: str):
    """``(root group, iterator of (index, sample group))`` over the complete samples of a store.

    Raises
    ------
    ValueError
        If ``path`` is not a dataset store or holds no complete sample; while iterating, if a
        sample lacks the ``label`` type.
    """
    import zarr

    path = Path(path)
    if not (path / "zarr.json").exists():
        raise ValueError(f"{path}: not a zarr dataset store (no zarr.json)")
    root = zarr.open_group(str(path), mode="r")
    if root.attrs.get("format") != FORMAT:
        raise ValueError(f"{path}: not a napari-hrtem dataset store")
    indices = completed_samples(path)
    if not indices:
        raise ValueError(f"{path}: holds no complete sample")

    def samples():
        for i in indices:
            g = zarr.open_group(str(path / "samples" / f"{i:06d}"), mode="r")
            if label not in g["labels"]:
                raise ValueError(
                    f"{path}: sample {i} has no {label!r} labels (has {', '.join(g['labels'].array_keys())})"
                )
            yield i, g

    return root, samples()


def load_zarr_dataset(path, *, label: str = "disk", preprocessed: bool = True) -> dict:
    """Read the complete samples of a store into the dict of :func:`~napari_hrtem.training.datasets.load_dataset`.

    Every focal series is one item: ``images`` ``(M, N, H, W)`` float32 (preprocessed as the
    networks see them unless ``preprocessed=False``: support filter, local normalization),
    ``labels`` (``(M, H, W)`` uint8 for ``label="disk"``, ``(M, C, H, W)`` float32 for
    ``"gaussian"``), ``sites`` ``(K, 2)`` Å and ``site_classes`` ``(K,)`` concatenated with
    ``site_index`` ``(M + 1,)``, ``sampling`` ``(M,)`` Å/px, ``params`` (list of the M
    microscope dicts), ``sample`` ``(M,)`` (the sample index of each item) and ``recipe``.

    Raises
    ------
    ValueError
        If ``path`` is not a dataset store, holds no complete sample, or lacks the label type.
    """
    from napari_hrtem.analysis.filters import preprocess

    root, samples = _open_samples(path, label)
    images, labels, sites, classes, counts, sampling, params, owner = [], [], [], [], [], [], [], []
    for i, g in samples:
        s = float(g.attrs["sampling"])
        raw = np.asarray(g["images"][...], dtype=np.float32)
        lab = np.asarray(g["labels"][label][...])
        st, cl = np.asarray(g["sites"][...]), np.asarray(g["site_classes"][...])
        for e in range(raw.shape[0]):
            images.append(preprocess(raw[e], s) if preprocessed else raw[e])
            labels.append(lab)
            sites.append(st)
            classes.append(cl)
            counts.append(len(st))
            sampling.append(s)
            params.append(g.attrs["microscope"][e])
            owner.append(i)
    return dict(
        images=np.stack(images).astype(np.float32),
        labels=np.stack(labels),
        sites=np.concatenate(sites).reshape(-1, 2),
        site_classes=np.concatenate(classes).astype(np.int64),
        site_index=np.concatenate([[0], np.cumsum(counts)]),
        sampling=np.array(sampling),
        params=params,
        sample=np.array(owner),
        recipe=dict(root.attrs["recipe"]),
    )


def load_exit_waves(path, *, label: str = "disk", cutoff: float | None = None) -> list[dict]:
    """The exit waves of a store's complete samples, band-limited, with their class maps: a bank
    for :func:`napari_hrtem.training.trainer.exit_wave_bank` (fresh microscope parameters every batch).

    Parameters
    ----------
    path : str or Path
        A store written by :func:`simulate_dataset`.
    label : str
        ``"disk"`` (class maps, for cross-entropy training).
    cutoff : float, optional
        Storage cut-off in Å⁻¹ (:func:`napari_hrtem.simulation.synthesis.band_limit`; default: where the
        temporal envelope of the smallest focal spread is below 1e-6): about 12× less memory
        than the full wave.

    Returns
    -------
    list of dict
        ``{"wave": BandLimitedWave, "labels": (H, W) uint8, "sampling": Å/px of the images,
        "sample": index in the store, "ranges": the parameter ranges the store was made with (its
        recorded ``config``; None: thesis Table 1)}``, so that the bank images each wave with the
        microscope ranges of its own store.

    Raises
    ------
    ValueError
        If ``path`` is not a dataset store, holds no complete sample, or lacks the label type.
    """
    from napari_hrtem.simulation.imaging import ExitWave
    from napari_hrtem.simulation.synthesis import band_limit

    root, samples = _open_samples(path, label)
    ranges = dict(root.attrs["recipe"]).get("config")
    bank = []
    for i, g in samples:
        attrs = dict(g.attrs["exit_wave"])
        wave = ExitWave(
            array=np.asarray(g["exit_wave"][...], dtype=np.complex64),
            sampling=float(attrs["sampling"]),
            energy=float(attrs["energy"]),
            params=attrs,
        )
        bank.append(
            dict(
                wave=band_limit(wave, cutoff),
                labels=np.asarray(g["labels"][label][...]),
                sampling=float(g.attrs["sampling"]),
                sample=i,
                ranges=ranges,
            )
        )
    return bank
