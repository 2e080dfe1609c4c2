"""The public Python API: one function per job.

Every job the command line and the napari widgets offer is a function here; the shells only
collect parameters, call it, and show or write the result. Long jobs come in two forms: an
``iter_*`` generator of :class:`~napari_hrtem.records.Progress` events that returns the result
(for a GUI worker), and a plain function taking an optional ``progress`` callback.

Conventions: arrays are ``(y, x)`` = napari ``(row, col)``; positions in Å with the origin at
the centre of pixel (0, 0); sampling in Å/px; defocus in Å in abTEM's sign convention
(defocus = -C10, positive = underfocus); focal series ordered by increasing defocus; dose in
e/Å²; beam energy in eV.

Heavy libraries (torch, abTEM, ASE) are imported inside the functions that need them, so
``import napari_hrtem`` stays light.

References
----------
.. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of two-dimensional
   materials", Bachelor project, Technical University of Denmark (2024).
.. [2] J. Madsen, T. Susi, "The abTEM code: transmission electron microscopy from first
   principles", Open Research Europe 1, 24 (2021).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_hrtem.io.focal_series import FocalSeries, read_focal_series
from napari_hrtem.io.sites import Sites
from napari_hrtem.models.card import ModelCard, NetworkError
from napari_hrtem.models.registry import Network, available_networks
from napari_hrtem.records import Prediction, Progress, Simulation, Steps, drive

if TYPE_CHECKING:
    from napari_hrtem.simulation.imaging import MicroscopeParameters

__all__ = [
    "FocalSeries",
    "ModelCard",
    "Network",
    "Prediction",
    "Progress",
    "Simulation",
    "Sites",
    "available_networks",
    "iter_predict_consensus",
    "iter_simulate",
    "load_network",
    "predict",
    "predict_consensus",
    "read_focal_series",
    "score",
    "simulate",
]

#: Largest tile edge in px for large images (bounds memory; halved on CUDA out-of-memory).
DEFAULT_TILE = 2560

NetworkLike = Network | str | os.PathLike[str]


# --- networks ----------------------------------------------------------------------------------


def load_network(name_or_path: NetworkLike, *, extra_dirs: Sequence[str | os.PathLike[str]] = ()) -> Network:
    """A shipped or user network, by name or by path.

    Parameters
    ----------
    name_or_path : str or path-like or Network
        A network name (see :func:`available_networks`: the shipped ``"unet"``, ``"unetpp"``,
        ``"msdnet"`` and the user's own), a model card ``<name>.json``, its weights
        ``<name>.pt``, or a folder holding exactly one model card. A :class:`Network` is
        returned as it is.
    extra_dirs : sequence of path-like
        More folders to search for a name.

    Returns
    -------
    Network
        The network's name, model card (:class:`ModelCard`) and weight file. The weights are
        read (``torch.load(weights_only=True)``, after their SHA-256 is checked against the
        card) by :meth:`Network.load`.

    Raises
    ------
    NetworkError
        If no network has that name (the message lists the available ones), or the card or
        weights are missing, unreadable or do not fit.
    """
    from napari_hrtem.models.registry import read_network

    if isinstance(name_or_path, Network):
        return name_or_path
    text = os.fspath(name_or_path)
    path = Path(text)
    looks_like_path = path.suffix in (".json", ".pt") or os.sep in text or path.is_dir()
    if looks_like_path:
        if path.is_dir():
            cards = sorted(p for p in path.glob("*.json") if not p.name.startswith("."))
            if len(cards) != 1:
                raise NetworkError(
                    f"{path}: holds {len(cards)} model cards (*.json); give the card's path"
                    + (f", one of {', '.join(c.name for c in cards)}" if cards else "")
                )
            path = cards[0]
        if not path.with_suffix(".json").is_file():
            raise NetworkError(f"{path}: no model card {path.with_suffix('.json').name} found")
        return read_network(path.with_suffix(".json"))
    networks = available_networks(extra_dirs)
    if text not in networks:
        raise NetworkError(
            f"unknown network {text!r}; available: {', '.join(networks) or 'none (the shipped weights are missing)'}"
        )
    return networks[text]


def _networks(networks: NetworkLike | Iterable[NetworkLike] | None) -> list[Network]:
    if networks is None:
        found = list(available_networks().values())
        if not found:
            raise NetworkError("no networks found (the shipped weights are missing from the installation)")
        return found
    if isinstance(networks, (Network, str, os.PathLike)):
        networks = [networks]
    return [load_network(n) for n in networks]


def _series(series: FocalSeries | np.ndarray, sampling: float | None) -> FocalSeries:
    if isinstance(series, FocalSeries):
        if sampling is not None:
            series = FocalSeries(
                series.images, sampling, series.energy, series.defocus, series.sources, series.metadata
            )
    else:
        series = FocalSeries(np.asarray(series), sampling)
    if series.sampling is None:
        where = ", ".join(Path(p).name for p in series.sources) or "focal series"
        raise ValueError(f"{where}: no pixel size known; give sampling= (Å/px)")
    return series


# --- prediction --------------------------------------------------------------------------------


def predict(
    network: NetworkLike,
    series: FocalSeries | np.ndarray,
    *,
    sampling: float | None = None,
    threshold: float | None = None,
    device: str | None = None,
    tile: int = DEFAULT_TILE,
) -> Sites:
    """Find and classify the atomic columns of a focal series with one network.

    The series is preprocessed as the network's model card says (resampling to its sampling,
    support filter, local normalization [1]_ eq. 3.3.1), the network gives per-pixel class
    probabilities, and sites are the local maxima of the column probability above the threshold,
    refined to sub-pixel positions.

    Parameters
    ----------
    network : Network or str or path-like
        The network (see :func:`load_network`).
    series : FocalSeries or numpy.ndarray
        ``(N, H, W)`` images ordered by increasing defocus; N must be the card's ``n_images``.
    sampling : float, optional
        Å/px; needed for a bare array, overrides the series' own.
    threshold : float, optional
        Column probability threshold in (0, 1); default: the network's own (its model card).
    device : str, optional
        ``"cuda"`` or ``"cpu"``; default CUDA when available.
    tile : int
        Largest tile edge in px for large images.

    Returns
    -------
    Sites
        ``(y, x)`` in Å in the input's frame, classes (the card's class names) and confidence.

    Raises
    ------
    ValueError
        If the series does not fit the network (length, NaN/Inf, constant frames, implausible
        sampling) or the threshold is not in (0, 1).
    NetworkError
        If the network cannot be loaded.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024).
    """
    from napari_hrtem.analysis.inference import predict_sites

    net = load_network(network)
    s = _series(series, sampling)
    sites, _ = predict_sites(net, s.images, float(s.sampling or 0), device=device, threshold=threshold, tile=tile)
    return sites


def iter_predict_consensus(
    networks: NetworkLike | Iterable[NetworkLike] | None,
    series: FocalSeries | np.ndarray,
    *,
    sampling: float | None = None,
    k: int | None = None,
    radius: float = 0.5,
    threshold: float | None = None,
    device: str | None = None,
    tile: int = DEFAULT_TILE,
) -> Steps[Prediction]:
    """:func:`predict_consensus` as a generator: a :class:`Progress` event after each network;
    returns the :class:`Prediction`."""
    from napari_hrtem.analysis.inference import predict_all

    nets = _networks(networks)
    s = _series(series, sampling)
    result: dict[str, Any] = {}
    for event in predict_all(
        nets, s.images, float(s.sampling or 0), k=k, radius=radius, threshold=threshold, device=device, tile=tile
    ):
        if "results" in event:
            result = event
        else:
            yield Progress(f"{event['network']} done", event["done"], event["total"], {"network": event["network"]})
    return Prediction(result["results"], result["consensus"], result["seconds"], series=s)


def predict_consensus(
    networks: NetworkLike | Iterable[NetworkLike] | None,
    series: FocalSeries | np.ndarray,
    *,
    sampling: float | None = None,
    k: int | None = None,
    radius: float = 0.5,
    threshold: float | None = None,
    device: str | None = None,
    tile: int = DEFAULT_TILE,
    progress: Callable[[Progress], object] | None = None,
) -> Prediction:
    """Run several networks on a focal series and find where they agree.

    Each network labels every atomic column (see :func:`predict`); the consensus keeps a site
    where at least ``k`` networks find a site of the same class within ``radius`` Å (one-to-one
    matching), at the mean position, with the number of votes and the agreeing networks. Networks
    trained differently make errors that are less correlated, so their consensus is more
    reliable than any one of them [1]_.

    Parameters
    ----------
    networks : sequence of Network or str, or None
        The networks (names, paths or :class:`Network`); None: every available network.
    series : FocalSeries or numpy.ndarray
        ``(N, H, W)`` images ordered by increasing defocus.
    sampling : float, optional
        Å/px; needed for a bare array, overrides the series' own.
    k : int, optional
        Least number of agreeing networks (default: a majority).
    radius : float
        Agreement radius, Å.
    threshold : float, optional
        Column probability threshold of every network; default: each network's own.
    device : str, optional
        ``"cuda"`` or ``"cpu"``; default CUDA when available.
    tile : int
        Largest tile edge in px for large images.
    progress : callable, optional
        Called with a :class:`Progress` event after each network.

    Returns
    -------
    Prediction
        ``results`` (network name -> Sites), ``consensus`` (Sites with votes) and ``seconds``.

    Raises
    ------
    ValueError
        Before any work, if no network is given, the networks label different classes, or the
        series does not fit them.

    References
    ----------
    .. [1] J. Schiøtz, J. Madsen, B. J. G. Østergaard, A. S. Dreisig, P. Liu, S. Helveg, O. Winther,
       J. Kling, J. B. Wagner, T. W. Hansen, "Using neural networks to identify atoms in HRTEM
       images", Microscopy and Microanalysis (abstract).
    """
    steps = iter_predict_consensus(
        networks, series, sampling=sampling, k=k, radius=radius, threshold=threshold, device=device, tile=tile
    )
    return drive(steps, progress)


# --- scoring -----------------------------------------------------------------------------------


def score(predicted: Sites, truth: Sites, radius: float = 0.5) -> dict[str, dict[str, float]]:
    """Atomic precision, recall, F1 and RMS position error of predicted sites against true ones.

    Sites are matched one-to-one within ``radius`` Å, class by class (linear sum assignment); a
    site found with the wrong class counts as a false positive of its class and a false negative
    of the true one.

    Parameters
    ----------
    predicted, truth : Sites
        Positions in Å in the same frame, with the same class names.
    radius : float
        Matching radius, Å (the thesis used 3 px, about 0.6 Å).

    Returns
    -------
    dict
        ``{class name: {"tp", "fp", "fn", "precision", "recall", "f1", "rms"}, "overall": {...}}``;
        ``rms`` in Å (NaN when nothing matched). A class absent from both sides has F1 NaN.

    Raises
    ------
    ValueError
        If the two tables use different class names.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), section 4 (atomic F1).
    """
    from napari_hrtem.analysis.metrics import atomic_f1

    if tuple(predicted.class_names) != tuple(truth.class_names):
        raise ValueError(f"different class names: {predicted.class_names} and {truth.class_names}")
    return atomic_f1(
        predicted.yx, predicted.classes, truth.yx, truth.classes, radius=radius, classes=tuple(truth.class_names)
    )


# --- simulation --------------------------------------------------------------------------------


def iter_simulate(
    size: int = 256,
    sampling: float = 0.22,
    *,
    graphene_layers: int = 0,
    rotation: float | None = None,
    microscope: MicroscopeParameters | None = None,
    draw_microscope: bool = False,
    n_images: int = 3,
    sample_options: dict[str, Any] | None = None,
    phonon_configs: int = 4,
    temperature: float | None = 300.0,
    parameter_file: str | os.PathLike[str] | None = None,
    vibration_table: str | os.PathLike[str] | None = None,
    seed: int | None = 0,
) -> Steps[Simulation]:
    """:func:`simulate` as a generator of :class:`Progress` events; returns the :class:`Simulation`."""
    from napari_hrtem.simulation.imaging import (
        MicroscopeParameters,
        draw_microscope_parameters,
        exit_wave,
        focal_series,
    )
    from napari_hrtem.simulation.parameters import load_parameter_ranges
    from napari_hrtem.simulation.structures import make_mos2_sample
    from napari_hrtem.simulation.vibrations import CoordinationTable, draw_temperature

    rng = np.random.default_rng(seed)
    ranges = load_parameter_ranges(parameter_file or None)
    table = CoordinationTable.load(vibration_table) if vibration_table else None
    yield Progress("building the sample", 0, 3)
    sample = make_mos2_sample(
        size * sampling, rotation=rotation, graphene_layers=graphene_layers, seed=seed, **(sample_options or {})
    )
    if draw_microscope:
        params = draw_microscope_parameters(rng, n_images, ranges)
        if temperature is None:
            temperature = draw_temperature(rng, ranges)
    else:
        params = microscope if microscope is not None else MicroscopeParameters()
    temperature = 300.0 if temperature is None else float(temperature)
    yield Progress(
        f"multislice exit wave ({len(sample.atoms)} atoms, {phonon_configs} frozen phonons at {temperature:.0f} K)",
        1,
        3,
    )
    wave = exit_wave(
        sample,
        (size, size),
        sampling,
        seed=seed,
        energy=params.energy,
        phonon_configs=phonon_configs,
        temperature=temperature,
        vibrations=table,
        debye_temperature=float(ranges["vibrations"]["debye_temperature"]),
    )
    yield Progress("focal series", 2, 3)
    images = focal_series(wave, params, (size, size), rng=np.random.default_rng(seed))
    truth = Sites(sample.sites, sample.classes, np.ones(len(sample.sites)), class_names=sample.class_names)
    metadata = dict(
        microscope=params.to_dict(),
        image_records=params.image_records(),
        sample=sample.params,
        exit_wave=wave.params,
        source="simulated",
    )
    series = FocalSeries(
        images,
        sampling=sampling,
        energy=params.energy,
        defocus=[float(d) for d in params.defoci],
        metadata={**metadata, "defocus_convention": "abTEM: defocus = -C10 in Å, positive = underfocus"},
    )
    return Simulation(series=series, truth=truth, microscope=params, sample=sample, metadata=metadata)


def simulate(
    size: int = 256,
    sampling: float = 0.22,
    *,
    graphene_layers: int = 0,
    rotation: float | None = None,
    microscope: MicroscopeParameters | None = None,
    draw_microscope: bool = False,
    n_images: int = 3,
    sample_options: dict[str, Any] | None = None,
    phonon_configs: int = 4,
    temperature: float | None = 300.0,
    parameter_file: str | os.PathLike[str] | None = None,
    vibration_table: str | os.PathLike[str] | None = None,
    seed: int | None = 0,
    progress: Callable[[Progress], object] | None = None,
) -> Simulation:
    """Simulate a MoS2 sample and its HRTEM focal series, with the true atomic columns.

    The sample is a 2H-MoS2 flake (ASE) with sulphur vacancies and holes, bare or on graphene
    (thesis section 3.1 [1]_); its exit wave is computed by multislice with frozen phonons
    (abTEM [2]_); the focal series applies the microscope: CTF with aberrations and partial
    coherence (focal spread), blur, dose (Poisson) noise, detector MTF and readout noise
    (thesis section 3.2, exit-wave paper [3]_).

    Parameters
    ----------
    size : int
        Image edge, px (square images).
    sampling : float
        Å/px; the cell is ``size * sampling`` Å wide.
    graphene_layers : int
        Number of graphene layers under the flake (0: bare MoS2).
    rotation : float, optional
        Flake rotation, degrees (default: drawn as in the thesis).
    microscope : MicroscopeParameters, optional
        Defocus of the first image and steps (Å, abTEM sign), Cs, C12, C21 (Å), focal spread,
        blur (Å), dose (e/Å²), MTF, readout, energy (eV). Default ``MicroscopeParameters()``:
        50 keV, first defocus -50 Å, steps of 50 Å, 10⁴ e/Å².
    draw_microscope : bool
        Draw every microscope parameter from the parameter ranges (thesis Table 1) instead.
    n_images : int
        Images in the focal series (with ``draw_microscope``).
    sample_options : dict, optional
        More options of :func:`napari_hrtem.simulation.structures.make_mos2_sample`
        (``vacancy_fraction``, ``hole_fraction``, ``formula``, ``tilt``, ``jitter``, ...).
    phonon_configs : int
        Frozen-phonon configurations averaged in the exit wave.
    temperature : float or None
        K, for the thermal vibrations (None with ``draw_microscope``: drawn).
    parameter_file : path-like, optional
        YAML/JSON parameter ranges over thesis Table 1.
    vibration_table : path-like, optional
        A coordination-number vibration table (JSON) replacing the Debye model.
    seed : int or None
        Seed of every random draw (same seed, same series).
    progress : callable, optional
        Called with a :class:`Progress` event before each stage.

    Returns
    -------
    Simulation
        ``series`` (:class:`FocalSeries`, float32 ``(N, size, size)``), ``truth`` (:class:`Sites`),
        ``microscope``, ``sample`` and ``metadata``.

    Raises
    ------
    ValueError
        For sizes, samplings or doses out of range, or a bad parameter file.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), sections 3.1-3.2, Table 1.
    .. [2] J. Madsen, T. Susi, "The abTEM code: transmission electron microscopy from first
       principles", Open Research Europe 1, 24 (2021).
    .. [3] M. H. L. Larsen, F. Dahl, L. P. Hansen, B. Barton, C. Kisielowski, S. Helveg,
       O. Winther, T. W. Hansen, J. Schiøtz, "Reconstructing the exit wave in high-resolution
       transmission electron microscopy using machine learning", preprint submitted to
       Ultramicroscopy.
    """
    from napari_hrtem.io.validation import check_simulation_request

    check_simulation_request(size, sampling, None if microscope is None else microscope.dose)
    steps = iter_simulate(
        size,
        sampling,
        graphene_layers=graphene_layers,
        rotation=rotation,
        microscope=microscope,
        draw_microscope=draw_microscope,
        n_images=n_images,
        sample_options=sample_options,
        phonon_configs=phonon_configs,
        temperature=temperature,
        parameter_file=parameter_file,
        vibration_table=vibration_table,
        seed=seed,
    )
    return drive(steps, progress)
