"""Training data: class maps from ground-truth sites and simulated focal-series datasets.

A dataset is an ``.npz`` file with ``images`` ``(M, N, H, W)`` float32 (preprocessed as the
networks see them: support filter, then local normalization), ``labels`` ``(M, H, W)`` uint8
class maps (codes of :data:`~napari_hrtem.simulation.structures.CLASSES`, background last), ``sites`` and
``site_classes`` (ground truth, concatenated, with ``site_index`` giving each sample's slice),
``sampling`` ``(M,)`` Å/px and ``recipe`` (JSON text).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from napari_hrtem.analysis.filters import preprocess
from napari_hrtem.training.labels import class_map


def simulate_dataset(
    n_samples: int,
    *,
    shape: tuple[int, int] = (128, 128),
    images_per_sample: int = 8,
    sampling_range: tuple[float, float] | None = None,
    phonon_configs: int | None = None,
    seed: int = 0,
    ranges: dict | None = None,
    energy: float | None = None,
    wave_sampling: float | None = None,
    slice_thickness: float | None = None,
) -> Iterator[dict]:
    """Simulate focal series for training, yielding one dict per focal series.

    Each sample (thesis recipe, :func:`~napari_hrtem.simulation.structures.random_sample`: bare or on 1-6
    graphene layers) gets one exit wave (temperature uniform in 100-600 K, thesis Table 1) and
    ``images_per_sample`` focal series with fresh microscope parameters drawn from Table 1 (the
    thesis' "image epochs"), all at one beam energy. The sampling of each sample is drawn from
    ``sampling_range``.

    Parameters
    ----------
    n_samples : int
        Samples (exit waves).
    shape : (int, int)
        ``(H, W)`` of the images, px.
    images_per_sample : int
        Focal series per exit wave.
    sampling_range : (float, float), optional
        Image sampling drawn per sample, Å/px (default: the ranges' ``microscope.sampling``,
        Table 1: 0.215-0.235).
    phonon_configs, energy, wave_sampling, slice_thickness : optional
        Frozen-phonon configurations, beam energy (eV), largest wave sampling (Å) and slice thickness
        (Å) of the exit waves; None: from ``ranges`` when given, else the code's defaults (4, 50 keV,
        0.05 Å, 0.5 Å: what the shipped networks were trained on); see
        :func:`napari_hrtem.simulation.parameters.simulation_settings`. The focal series are imaged at
        the exit waves' energy.
    seed : int
        Seed of the whole dataset.
    ranges : dict, optional
        Parameter ranges (:func:`~napari_hrtem.simulation.parameters.load_parameter_ranges`) for the
        structures, temperatures, microscopes and (see above) the multislice; None: thesis Table 1 for
        the draws and the code's multislice defaults.

    Yields
    ------
    dict
        ``images`` (preprocessed, ``(3, H, W)`` float32), ``raw`` (the intensities), ``labels``
        ``(H, W)`` uint8, ``sites`` ``(n, 2)`` Å, ``classes`` ``(n,)``, ``sampling`` Å/px,
        ``params`` (the microscope's, with the simulated ``energy`` in eV), ``sample`` (index of the
        exit wave).

    Raises
    ------
    ValueError
        If a multislice setting is not positive.
    """
    from dataclasses import replace

    from napari_hrtem.simulation.imaging import draw_microscope_parameters, exit_wave, focal_series
    from napari_hrtem.simulation.parameters import load_parameter_ranges, simulation_settings
    from napari_hrtem.simulation.structures import random_sample
    from napari_hrtem.simulation.vibrations import coordination_table_setting, debye_temperature_setting

    settings, ranges = simulation_settings(
        ranges,
        energy=energy,
        phonon_configs=phonon_configs,
        wave_sampling=wave_sampling,
        slice_thickness=slice_thickness,
    )
    draws = load_parameter_ranges() if ranges is None else ranges
    if sampling_range is None:
        s = draws["microscope"]["sampling"]
        sampling_range = (float(s), float(s)) if np.isscalar(s) else (float(s[0]), float(s[1]))
    t = draws["vibrations"]["temperature"]
    temperature_range = (float(t), float(t)) if np.isscalar(t) else (float(t[0]), float(t[1]))
    table = coordination_table_setting(draws)
    rng = np.random.default_rng(seed)
    for index in range(n_samples):
        sampling = float(rng.uniform(*sampling_range))
        sample = random_sample((shape[0] * sampling, shape[1] * sampling), rng, ranges=ranges)
        wave = exit_wave(
            sample,
            shape,
            sampling,
            energy=settings["energy"],
            max_wave_sampling=settings["wave_sampling"],
            slice_thickness=settings["slice_thickness"],
            phonon_configs=settings["phonon_configs"],
            temperature=float(rng.uniform(*temperature_range)),
            seed=int(rng.integers(2**31)),
            debye_temperature=debye_temperature_setting(draws),  # per element where the file gives a table
            vibrations=table,  # vibrations.coordination_table of the file, else None (the Debye model)
        )
        labels = class_map(sample.sites, sample.classes, shape, sampling)
        for _ in range(images_per_sample):
            params = replace(draw_microscope_parameters(rng, ranges=ranges), energy=wave.energy)
            raw = focal_series(wave, params, shape, rng=rng)
            yield dict(
                images=preprocess(raw, sampling),
                raw=raw,
                labels=labels,
                sites=sample.sites,
                classes=sample.classes,
                sampling=sampling,
                params=params.to_dict(),
                sample=index,
            )


def stack_items(items: Iterable[dict]) -> dict:
    """A dataset dict (as :func:`load_dataset` returns) from the items of :func:`simulate_dataset`
    (``images``, ``labels``, ``sites``, ``classes``, ``sampling``), held in memory; what
    :func:`write_dataset` stores and fine-tuning trains on."""
    items = list(items)
    if not items:
        raise ValueError("no focal series to make a dataset of")
    counts = [len(it["sites"]) for it in items]
    return dict(
        images=np.stack([it["images"] for it in items]).astype(np.float32),
        labels=np.stack([it["labels"] for it in items]),
        sites=np.concatenate([np.asarray(it["sites"], float).reshape(-1, 2) for it in items]),
        site_classes=np.concatenate([np.asarray(it["classes"], int) for it in items]),
        site_index=np.concatenate([[0], np.cumsum(counts)]).astype(int),
        sampling=np.array([float(it["sampling"]) for it in items]),
    )


def write_dataset(path, n_samples: int, *, progress: Callable[[int, int], None] | None = None, **kwargs) -> dict:
    """Simulate a dataset (:func:`simulate_dataset`) and store it as ``.npz`` at ``path``.

    The file is written to a temporary name and renamed, so an interrupted run leaves no
    half-written dataset. Returns the recipe (the keyword arguments and the seed, with the beam
    energy in eV and the multislice settings that were simulated).
    """
    from pathlib import Path

    from napari_hrtem.arguments import check_number, check_seed

    check_number(n_samples, "samples", low=1, integer=True)
    if kwargs.get("seed") is not None:
        check_seed(kwargs["seed"])
    from napari_hrtem.simulation.parameters import simulation_settings

    settings, ranges = simulation_settings(
        kwargs.get("ranges"),
        **{k: kwargs.get(k) for k in ("energy", "phonon_configs", "wave_sampling", "slice_thickness")},
    )
    recipe = dict(n_samples=n_samples, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()})
    recipe.update(settings)  # what is simulated: energy (eV), phonon_configs, wave_sampling and slice_thickness (Å)
    if ranges is not None:
        recipe["ranges"] = ranges  # with the explicit values written in
    items = []
    total = n_samples * kwargs.get("images_per_sample", 8)
    for i, item in enumerate(simulate_dataset(n_samples, **kwargs)):
        items.append(item)
        if progress:
            progress(i + 1, total)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        tmp, **stack_items(items), params=json.dumps([it["params"] for it in items]), recipe=json.dumps(recipe)
    )
    tmp.replace(path)
    return recipe


def load_dataset(path) -> dict:
    """Read a dataset written by :func:`write_dataset` into a dict of arrays (no pickles).

    A zarr store from ``napari-hrtem simulate-dataset`` (a directory) is read with
    :func:`napari_hrtem.training.datastore.load_zarr_dataset` (disk labels) into the same form.
    """
    from pathlib import Path

    if Path(path).is_dir():
        from napari_hrtem.training.datastore import load_zarr_dataset

        return load_zarr_dataset(path)
    with np.load(path, allow_pickle=False) as data:
        out = {k: data[k] for k in data.files}
    out["recipe"] = json.loads(str(out["recipe"]))
    out["params"] = json.loads(str(out["params"]))
    return out


def dataset_sites(data: dict, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth ``(sites, classes)`` of sample ``i`` of a loaded dataset."""
    a, b = data["site_index"][i], data["site_index"][i + 1]
    return data["sites"][a:b], data["site_classes"][a:b]


DATASET_KEYS = ("images", "labels", "sites", "site_classes", "site_index", "sampling", "params", "recipe")


def load_dataset_checked(path) -> dict:
    """:func:`napari_hrtem.training.datasets.load_dataset` with clear errors for a bad file (a zarr store
    directory is read by :func:`napari_hrtem.training.datastore.load_zarr_dataset`, whose errors name it).

    Raises
    ------
    ValueError
        Naming the file and the problem: missing, not an .npz archive, truncated or corrupt, missing
        arrays, unreadable recipe/params, or images and labels that do not fit each other
        (images ``(S, N, H, W)`` float, labels ``(S, H, W)`` int, one sampling per series, finite).
    """
    import zipfile
    from pathlib import Path

    path = Path(path)
    if path.is_dir():  # a zarr store of `napari-hrtem simulate-dataset`; its loader names the problem
        return load_dataset(path)
    if not path.is_file():
        raise ValueError(f"{path.name}: dataset file not found ({path})")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in DATASET_KEYS if k not in data.files]
        if missing:
            raise ValueError(f"{path.name}: not a dataset from `napari-hrtem dataset` (lacks {', '.join(missing)})")
        out = load_dataset(path)
    except ValueError as exc:
        if str(exc).startswith(path.name):
            raise
        raise ValueError(f"{path.name}: not a readable dataset (.npz from `napari-hrtem dataset`): {exc}") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, MemoryError) as exc:
        raise ValueError(
            f"{path.name}: not a readable dataset (truncated or corrupt?): {type(exc).__name__}: {exc}"
        ) from None
    images, labels, sampling = out["images"], out["labels"], np.asarray(out["sampling"])
    if (
        images.ndim != 4
        or labels.ndim != 3
        or len(images) != len(labels)
        or images.shape[2:] != labels.shape[1:]
        or len(sampling) != len(images)
    ):
        raise ValueError(
            f"{path.name}: images {images.shape}, labels {labels.shape} and sampling {sampling.shape} "
            "do not fit ((S, N, H, W), (S, H, W), (S,))"
        )
    if not (np.issubdtype(images.dtype, np.floating) and np.all(np.isfinite(images))):
        raise ValueError(f"{path.name}: images must be finite floats (dtype {images.dtype})")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path.name}: labels must be integer class codes (dtype {labels.dtype})")
    if not (np.all(np.isfinite(sampling)) and np.all(sampling > 0)):
        raise ValueError(f"{path.name}: sampling must be finite and > 0 Å/px")
    return out
