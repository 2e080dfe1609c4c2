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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrtem.analysis.combiner import Combiner, choose_rule, fit_combiner
from napari_hrtem.analysis.comparison import disagreements
from napari_hrtem.analysis.consensus import consensus
from napari_hrtem.analysis.specimen import SpecimenMask  # numpy only
from napari_hrtem.analysis.sublattice import sublattice_conflicts  # numpy only (scipy when called)
from napari_hrtem.io.focal_series import FocalSeries, read_focal_series
from napari_hrtem.io.sites import Sites
from napari_hrtem.models.card import ModelCard
from napari_hrtem.models.registry import (
    DEFAULT_ENERGY_KV,
    Network,
    NetworkSet,
    available_networks,
    energy_range_label,
    load_network,
    network_sets,
    shipped_networks,
)
from napari_hrtem.records import (
    BatchResult,
    BatchRow,
    Prediction,
    PreparedSeries,
    Progress,
    SeriesSource,
    Simulation,
    Steps,
    TrainingResult,
    drive,
)
from napari_hrtem.simulation.imaging import MicroscopeParameters  # no abTEM until a job runs

# training and fine-tuning: the jobs of `napari-hrtem train` and the Train widget (no torch until they run)
from napari_hrtem.training.jobs import (
    SimulatedSet,
    fine_tune,
    interpolate_networks,
    iter_fine_tune,
    iter_train,
    parse_settings,
    train,
)
from napari_hrtem.training.trainer import TrainingSettings

__all__ = [
    "BatchResult",
    "BatchRow",
    "Combiner",
    "FocalSeries",
    "MicroscopeParameters",
    "ModelCard",
    "Network",
    "NetworkSet",
    "Prediction",
    "PreparedSeries",
    "Progress",
    "SeriesSource",
    "Simulation",
    "Sites",
    "SimulatedSet",
    "TrainingResult",
    "TrainingSettings",
    "available_networks",
    "check_networks",
    "check_prediction_folder",
    "check_series",
    "consensus",
    "describe_network",
    "disagreements",
    "evaluate_network",
    "find_focal_series",
    "fine_tune",
    "fit_combiner",
    "inspect_site",
    "interpolate_networks",
    "iter_fine_tune",
    "iter_predict_batch",
    "iter_predict_consensus",
    "iter_simulate",
    "iter_train",
    "load_network",
    "network_sets",
    "parse_settings",
    "predict",
    "predict_batch",
    "predict_consensus",
    "prepare_focal_series",
    "read_focal_series",
    "score",
    "score_files",
    "shipped_networks",
    "simulate",
    "sublattice_conflicts",
    "train",
    "write_prediction",
]

#: Largest tile edge in px for large images (bounds memory; halved on CUDA out-of-memory).
DEFAULT_TILE = 2560

NetworkLike = Network | str | os.PathLike[str]


# --- networks ----------------------------------------------------------------------------------


_NO_ENERGY_NOTE = (
    "no beam energy known (the file records none; give it: energy=, --energy, Load's beam energy): "
    "ran the shipped networks for {kv:g} kV ({names})"
)


def _networks(networks: NetworkLike | Iterable[NetworkLike] | None, energy: float | None = None) -> list[Network]:
    if networks is None:  # the shipped set for the beam energy (eV): a user's own network runs only when named
        return shipped_networks(energy)
    if isinstance(networks, (Network, str, os.PathLike)):
        networks = [networks]
    return [load_network(n) for n in networks]


def check_networks(
    networks: NetworkLike | Iterable[NetworkLike] | None = None, *, energy: float | None = None
) -> list[Network]:
    """The networks, checked before any work is done.

    Each network is found and loaded once on the CPU (its weights' SHA-256 matches its model
    card, and the weights fit the card's architecture, input length and classes); several
    networks must label the same classes (a consensus compares classes site by site).

    Parameters
    ----------
    networks : Network or str or path-like, or a sequence of them, or None
        Names, card paths or :class:`Network` (see :func:`load_network`); None: the shipped
        set for ``energy`` (:func:`napari_hrtem.models.registry.shipped_networks`; a user's own
        networks run only when named).
    energy : float, optional
        Beam energy in eV that chooses the shipped set when ``networks`` is None (None: 50 kV).

    Returns
    -------
    list of Network
        The networks, in the order given.

    Raises
    ------
    NetworkError
        If a network is unknown (the message lists the available ones), none is available, or
        a card does not fit its weights (the message names the weight file).
    ValueError
        If the networks label different classes (the message lists each network's classes).
    """
    from napari_hrtem.analysis.inference import check_same_classes
    from napari_hrtem.names import check_network_name

    nets = _networks(networks, energy)
    for net in nets:  # a name becomes <name>.csv: checked before any work (napari_hrtem.names)
        check_network_name(net.name)
    check_same_classes(nets, hint="choose networks that label the same classes")
    for net in nets:
        net.load("cpu")  # a few MB each; raises NetworkError naming the weight file
    return nets


def describe_network(network: NetworkLike) -> str:
    """One line of a network's key facts from its model card.

    Origin (``shipped``, ``user`` or ``folder``; a user card with a shipped network's name says
    so: :func:`~napari_hrtem.models.registry.scan_networks` lists it as ``<name>-user``),
    architecture, number of parameters, classes, focal series length, sampling (Å/px), training
    beam energy (kV) when the card says, the validation atomic F1 per class (``n/a`` when the card
    records none) and the weight file. :func:`~napari_hrtem.models.registry.network_info` gives
    these facts as a record.
    """
    from napari_hrtem.models.registry import network_info

    net = load_network(network)
    card = net.card
    info = network_info(net)
    scores = (card.validation or {}).get("scores", {})
    f1 = " ".join(f"{k} {v['f1']:.3f}" for k, v in scores.items() if isinstance(v, dict))
    origin = info.origin + (f" (its card names it {info.renamed_from!r}, a shipped name)" if info.renamed_from else "")
    energy = "" if info.energy_range is None else f", trained at {energy_range_label(info.energy_range)}"
    return (
        f"{origin}, {card.architecture} {'?' if card.parameters is None else card.parameters} parameters, classes "
        f"{'/'.join(card.classes)}, {card.n_images} images, {card.sampling} Å/px{energy}, validation atomic F1 "
        f"{f1 or 'n/a'}  [{net.weights}]"
    )


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


def _where(series: FocalSeries) -> str:
    return ", ".join(Path(p).name for p in series.sources) or "focal series"


# --- focal series ------------------------------------------------------------------------------


def check_series(
    series: FocalSeries | np.ndarray,
    networks: NetworkLike | Iterable[NetworkLike] | None = None,
    *,
    sampling: float | None = None,
    where: str | None = None,
) -> np.ndarray:
    """Check that a focal series fits the networks, before any work is done.

    Parameters
    ----------
    series : FocalSeries or numpy.ndarray
        ``(N, H, W)`` images ordered by increasing defocus.
    networks : Network or str, or a sequence of them, or None
        The networks (see :func:`load_network`); None: the shipped networks (a user's own
        networks run only when named).
    sampling : float, optional
        Å/px; needed for a bare array, overrides the series' own.
    where : str, optional
        Names the series in error messages (default: its file names).

    Returns
    -------
    numpy.ndarray
        The images as ``(N, H, W)`` float32.

    Raises
    ------
    ValueError
        Naming ``where`` and the problem: not a focal series of the networks' length
        (``n_images`` of their cards), no or an implausible sampling, images too small for the
        networks, NaN/Inf pixels or constant frames.
    """
    from napari_hrtem.io.validation import check_focal_series

    nets = _networks(networks)
    if isinstance(series, FocalSeries):
        images = series.images
        sampling = series.sampling if sampling is None else sampling
        where = where or _where(series)
    else:
        images = series
    return check_focal_series(images, sampling, {n.card.n_images for n in nets}, where=where or "focal series")


def prepare_focal_series(
    series: FocalSeries | np.ndarray,
    networks: NetworkLike | Iterable[NetworkLike] | None = None,
    *,
    sampling: float | None = None,
    frames: str | Sequence[int] | None = None,
    defocus: Sequence[float] | None = None,
    defocus_convention: str = "auto",
    align: bool = False,
    energy: float | None = None,
) -> PreparedSeries:
    """Make a focal series as read from files ready for the networks.

    Frames are chosen and ordered by increasing defocus in abTEM's sign convention (defocus =
    -C10 in Å, positive = underfocus, the convention the networks were trained in); a series
    longer than the networks' with known defocus and no ``frames`` gets the frames whose
    defocus steps are closest to the networks' ``defocus_step`` (their model cards). With
    ``networks``, the result is checked to fit them (:func:`check_series`). With ``align``, the
    frames' drift is registered (sub-pixel phase correlation on the lattice band) and the series
    cropped to the area common to all frames.

    Parameters
    ----------
    series : FocalSeries or numpy.ndarray
        ``(N, H, W)`` as read by :func:`read_focal_series` (or a bare array with ``sampling``).
    networks : Network or str, or a sequence of them, optional
        The networks the series is for; None: no frame choice by defocus step and no check.
    sampling : float, optional
        Å/px; needed when the series carries none.
    frames : str or sequence of int, optional
        0-based frames to keep, e.g. ``[3, 4, 5]``, ``"3,4,5"`` or ``"3-5"``; default all (or
        chosen by defocus step, see above).
    defocus : sequence of float, optional
        Defocus of each frame (or of each chosen frame), Å; default the file's values.
    defocus_convention : {"auto", "microscope", "abtem"}
        Sign convention of the defocus values: "abtem" or "microscope" (the opposite, e.g.
        TIA/Velox/MacTempas); "auto": "abtem" for given values and .npy/.npz files, else
        "microscope".
    align : bool
        Register and correct the frames' drift; the crop keeps the area common to all frames.
    energy : float, optional
        Beam energy in eV, for a file that records none (or a wrong one); it replaces the
        file's (``metadata["energy_source"]`` says which) and is checked against the networks'
        training domain (:func:`napari_hrtem.analysis.domain.domain_warnings`).

    Returns
    -------
    PreparedSeries
        ``series`` (float32 ``(n, H', W')``; ``metadata["frames"]``, ``["defocus_convention"]``
        and, aligned, ``["alignment"]``), ``notes`` (what was chosen or assumed, one line each;
        the alignment's shifts per frame in Å and px) and ``alignment`` (or None).

    Raises
    ------
    ValueError
        (:class:`~napari_hrtem.io.focal_series.FocalSeriesError`) If the series has no pixel
        size, frames or defocus values are wrong, its length does not fit the networks (the
        message names the files), or it does not pass :func:`check_series`.
    napari_hrtem.analysis.alignment.AlignmentError
        If the frames cannot be aligned.

    References
    ----------
    .. [1] J. Madsen, T. Susi, "The abTEM code: transmission electron microscopy from first
       principles", Open Research Europe 1, 24 (2021) (defocus sign convention).
    .. [2] M. Guizar-Sicairos, S. T. Thurman, J. R. Fienup, "Efficient subpixel image
       registration algorithms", Optics Letters 33, 156-158 (2008) (drift registration).
    """
    from napari_hrtem.io.focal_series import FocalSeriesError, assemble_focal_series, parse_frames

    if not isinstance(series, FocalSeries):
        series = FocalSeries(np.asarray(series), sampling)
    elif sampling is not None:
        series = FocalSeries(series.images, sampling, series.energy, series.defocus, series.sources, series.metadata)
    where = _where(series)
    if series.sampling is None:
        raise FocalSeriesError(
            f"{where}: no pixel size in the file; give the sampling in Å/px (--sampling on the command line)"
        )
    energy_notes: list[str] = []
    if energy is not None:
        if not (np.isfinite(energy) and 0 < energy <= 3e6):
            raise FocalSeriesError(
                f"{where}: the beam energy must be a finite number > 0 and <= 3e6 (eV), got {energy!r}"
            )
        recorded = series.energy
        series = FocalSeries(
            series.images,
            series.sampling,
            float(energy),
            series.defocus,
            series.sources,
            {**series.metadata, "energy_source": "given"},
        )
        if recorded is not None and abs(recorded - energy) > 1e-3 * energy:
            energy_notes.append(f"beam energy {energy / 1e3:g} kV given; the file records {recorded / 1e3:g} kV")
    elif series.energy is not None:
        series = FocalSeries(
            series.images,
            series.sampling,
            series.energy,
            series.defocus,
            series.sources,
            {**series.metadata, "energy_source": "file"},
        )
    nets = [] if networks is None else _networks(networks)
    chosen = parse_frames(frames)
    notes: list[str] = energy_notes
    cards = {(net.card.n_images, float(net.card.defocus_step)) for net in nets}
    n: int | None = None
    step: float | None = None
    known_defocus = series.defocus is not None and bool(np.all(np.isfinite(series.defocus)))  # NaN: ignored
    if chosen is None and len(cards) == 1 and (known_defocus or defocus is not None):
        (n_images, defocus_step), *_ = cards
        if series.images.shape[0] > n_images:
            n, step = n_images, defocus_step
    series = assemble_focal_series(series, chosen, defocus=defocus, convention=defocus_convention, n=n, step=step)
    if n is not None:
        notes.append(
            f"chose {n} of the frames, defocus steps closest to {step:g} Å (choose others with frames, "
            "--frames on the command line)"
        )
    known = "not recorded" if series.defocus is None else f"{[round(d, 1) for d in series.defocus]} Å"
    notes.append(
        f"frames {series.metadata['frames']} (0-based), defocus {known}; {series.metadata['defocus_convention']}"
    )
    if nets:
        needed = {net.card.n_images for net in nets}
        if series.images.shape[0] not in needed:
            raise FocalSeriesError(
                f"{where}: holds {series.images.shape[0]} image(s) of shape {series.images.shape[1:]}; the "
                f"networks need a focal series of {'/'.join(map(str, sorted(needed)))} images (one file holding "
                "them, or one file per image in order of increasing defocus; choose frames of a longer series "
                "with frames, --frames on the command line)"
            )
        check_series(series, nets)
    alignment = None
    if align:
        from napari_hrtem.analysis.alignment import align_series

        images, alignment = align_series(series.images, series.sampling)
        notes.append(
            "drift alignment (sites are reported in the reference frame's coordinates):\n" + alignment.report()
        )
        series = FocalSeries(
            images,
            sampling=series.sampling,
            energy=series.energy,
            defocus=series.defocus,
            sources=series.sources,
            metadata={**series.metadata, "alignment": alignment.to_dict()},
        )
    return PreparedSeries(series, notes, alignment)


def _alignment_offset(series: FocalSeries) -> np.ndarray | None:
    """``(2,)`` Å from the crop of an aligned series to its reference frame; None when not aligned."""
    aligned = series.metadata.get("alignment")
    return None if not aligned else np.asarray(aligned["origin_px"], float) * float(series.sampling or 0)


def _to_reference(sites: Sites, offset: np.ndarray) -> Sites:
    """Sites found on an aligned, cropped series -> Å in the reference frame of the input."""
    import dataclasses

    yx = np.asarray(sites.yx, float).reshape(-1, 2) + offset
    return dataclasses.replace(sites, yx=yx, meta={**sites.meta, "frame": "alignment reference"})


# --- prediction --------------------------------------------------------------------------------


def predict(
    network: NetworkLike,
    series: FocalSeries | PreparedSeries | np.ndarray,
    *,
    sampling: float | None = None,
    threshold: float | None = None,
    device: str | None = None,
    tile: int = DEFAULT_TILE,
    specimen_mask: bool = True,
    precision: str = "auto",
    test_time_augmentation: bool = False,
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
    series : FocalSeries or PreparedSeries or numpy.ndarray
        ``(N, H, W)`` images ordered by increasing defocus; N must be the card's ``n_images``
        (see :func:`prepare_focal_series`).
    sampling : float, optional
        Å/px; needed for a bare array, overrides the series' own.
    threshold : float, optional
        Column probability threshold in (0, 1); default: the network's own (its model card).
    device : str, optional
        ``"cuda"`` or ``"cpu"``; default CUDA when available.
    tile : int
        Largest tile edge in px for large images.
    specimen_mask : bool
        Keep only the sites on the specimen (:func:`napari_hrtem.analysis.specimen.specimen_mask`:
        not in vacuum, not on amorphous material); ``meta["specimen"]`` says how many were
        dropped and the fraction of the field on the specimen.
    precision : str
        ``"auto"`` (bfloat16 where the CPU or GPU computes it natively, else float32),
        ``"float32"`` or ``"bfloat16"`` (:func:`napari_hrtem.models.fast.choose_precision`;
        bfloat16 sites agree with float32's within :data:`napari_hrtem.models.fast.BF16_TOLERANCE`).
    test_time_augmentation : bool
        Average each network over the 8 symmetries of the pixel grid (rotations by 90° and
        mirror images; :func:`napari_hrtem.models.fast.symmetrized`): 8 passes per network.

    Returns
    -------
    Sites
        ``(y, x)`` in Å in the input's frame (of a drift-aligned series: in its reference
        frame), classes (the card's class names) and confidence; ``meta["precision"]`` is the
        precision used; ``meta["warnings"]`` lists
        where the input lies outside the network's training domain and whether sites contradict
        the lattice (as :attr:`Prediction.warnings`; each is also issued as a :class:`UserWarning`);
        ``extra["sublattice_conflict"]`` and ``meta["sublattice_conflicts"]`` mark the sites with a
        neighbour of their own sublattice closer than the lattice allows
        (:mod:`napari_hrtem.analysis.sublattice`).

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
    import warnings

    from napari_hrtem.analysis.domain import domain_warnings
    from napari_hrtem.analysis.inference import predict_sites

    net = load_network(network)
    if isinstance(series, PreparedSeries):
        series = series.series
    s = _series(series, sampling)
    sites, _ = predict_sites(
        net,
        s.images,
        float(s.sampling or 0),
        device=device,
        threshold=threshold,
        tile=tile,
        precision=precision,
        test_time_augmentation=test_time_augmentation,
    )
    offset = _alignment_offset(s)
    if offset is not None:
        sites = _to_reference(sites, offset)
    if specimen_mask:
        mask = _specimen(s)
        keep = mask.contains(sites.yx)
        sites = sites.take(keep)
        sites.meta["specimen"] = {**mask.to_dict(), "dropped": int((~keep).sum())}
    sites.meta["warnings"] = domain_warnings(s, [net], device=device)
    conflicts = _mark_sublattices(sites, str(getattr(net.card, "material", "")), net.name)
    if conflicts:
        sites.meta["warnings"].append(conflicts)
    for text in sites.meta["warnings"]:
        warnings.warn(text, UserWarning, stacklevel=2)
    return sites


#: Largest tile edge, px (tiles bound the memory of large images; more than any detector's side).
MAX_TILE = 65536


def check_prediction_settings(
    *,
    k: int | None = None,
    n_networks: int | None = None,
    radius: float = 0.5,
    threshold: float | None = None,
    tile: int = DEFAULT_TILE,
) -> float:
    """Check the settings of :func:`predict_consensus` before anything is read or run; returns
    ``radius`` as a float.

    ``k`` a whole number in ``1..n_networks`` (or None: a majority), ``radius`` finite, > 0 and
    at most :data:`~napari_hrtem.arguments.MAX_RADIUS` Å, ``threshold`` in (0, 1) or None,
    ``tile`` a whole number of px in ``1..MAX_TILE``.

    Raises
    ------
    ValueError
        (:class:`~napari_hrtem.arguments.ArgumentError`) One line naming the setting, its value
        and the allowed range.
    """
    from napari_hrtem.arguments import check_number, check_optional, check_radius

    check_optional(
        k, "k", low=1, high=n_networks, integer=True, unit="" if n_networks is None else f"(of {n_networks} networks)"
    )
    value = check_radius(radius)
    check_optional(threshold, "threshold", low=0, high=1, low_open=True, high_open=True, unit="(column probability)")
    check_number(tile, "tile", low=1, high=MAX_TILE, integer=True, unit="px")
    return value


def iter_predict_consensus(
    networks: NetworkLike | Iterable[NetworkLike] | None,
    series: FocalSeries | PreparedSeries | np.ndarray,
    *,
    sampling: float | None = None,
    k: int | None = None,
    radius: float = 0.5,
    threshold: float | None = None,
    device: str | None = None,
    tile: int = DEFAULT_TILE,
    specimen_mask: bool = True,
    column_probability: bool = False,
    precision: str = "auto",
    test_time_augmentation: bool = False,
    rule: str = "auto",
) -> Steps[Prediction]:
    """:func:`predict_consensus` as a generator: a :class:`Progress` event before each network
    (stage ``"running <name>"``, ``done`` the networks finished, ``info`` ``{"network": name,
    "running": True}``) and after it (stage ``"<name> done"``); returns the :class:`Prediction`.

    The series and the networks are checked at the first step, before any network runs. Closing
    the generator between two events stops the work there (nothing is returned).
    """
    from napari_hrtem.analysis.inference import predict_all

    radius = check_prediction_settings(radius=radius, tile=tile, threshold=threshold)  # before any network
    notes: list[str] = []
    if isinstance(series, PreparedSeries):
        notes = list(series.notes)
        series = series.series
    s = _series(series, sampling)
    nets = _networks(networks, s.energy)  # None: the shipped set for the series' beam energy
    check_prediction_settings(k=k, n_networks=len(nets))
    if networks is None and s.energy is None:
        notes.append(_NO_ENERGY_NOTE.format(kv=DEFAULT_ENERGY_KV, names=", ".join(n.name for n in nets)))
    check_series(s, nets)
    rule, combiner = choose_rule(nets, rule, threshold)  # an unknown rule fails before any network runs
    offset = _alignment_offset(s)  # sites go back to the reference frame of the input
    result: dict[str, Any] = {}
    n = len(nets)
    yield Progress(f"running {nets[0].name}", 0, n, {"network": nets[0].name, "running": True})
    for event in predict_all(
        nets,
        s.images,
        float(s.sampling or 0),
        k=k,
        radius=radius,
        threshold=threshold,
        device=device,
        tile=tile,
        keep_probabilities=True,  # read at the consensus sites by _add_uncertainty, then dropped
        precision=precision,
        test_time_augmentation=test_time_augmentation,
        rule=rule,
    ):
        if "results" in event:
            result = event
        else:
            yield Progress(f"{event['network']} done", event["done"], event["total"], {"network": event["network"]})
            if event["done"] < n:
                following = nets[event["done"]].name
                yield Progress(f"running {following}", event["done"], n, {"network": following, "running": True})
    results, agreed = result["results"], result["consensus"]
    if offset is not None:
        results = {name: _to_reference(sites, offset) for name, sites in results.items()}
        agreed = _to_reference(agreed, offset)
    prediction = Prediction(results, agreed, result["seconds"], series=s, notes=notes, networks=nets)
    used = sorted({str(sites.meta.get("precision")) for sites in results.values()})
    prediction.notes.append(f"networks ran in {', '.join(used)} (precision {precision})")
    if test_time_augmentation:
        prediction.notes.append(
            "each network averaged over the 8 symmetries of the pixel grid (test-time augmentation)"
        )
    prediction.notes.append(
        f"consensus: the learned rule (combiner {combiner.name!r}, trained with these networks)"
        if combiner is not None
        else f"consensus: the {rule} rule"
    )
    prediction.probabilities = result.get("probabilities")
    if column_probability and prediction.probabilities is not None:
        maps = prediction.probabilities.maps
        prediction.column_probability = {
            name: np.clip(1.0 - np.asarray(maps[name][-1], np.float32), 0.0, 1.0).astype(np.float16)
            for name in results
            if name in maps
        }
    # Honesty about the input: each step adds to prediction.warnings / notes or refines the sites.
    _check_domain(prediction)
    _restrict_to_specimen(prediction, enabled=specimen_mask)
    _add_uncertainty(prediction)
    _check_sublattices(prediction)
    return prediction


def _check_domain(prediction: Prediction) -> None:
    """Warnings where the input lies outside what a network was trained for (energy, sampling,
    defocus steps and order, ...): appended to ``prediction.warnings``.

    :func:`napari_hrtem.analysis.domain.domain_warnings` against each network's model card
    ``domain``; without recorded defocus the frame order is checked with the networks on a
    central crop (what it measured goes to ``prediction.notes``).
    """
    from napari_hrtem.analysis.domain import domain_warnings

    if prediction.series is not None:
        prediction.warnings += domain_warnings(prediction.series, prediction.networks, notes=prediction.notes)


def _specimen(series: FocalSeries) -> SpecimenMask:
    """The specimen mask of a series, placed in the frame of its sites (an aligned series' reference frame)."""
    from napari_hrtem.analysis.specimen import specimen_mask

    offset = _alignment_offset(series)
    origin = (0.0, 0.0) if offset is None else (float(offset[0]), float(offset[1]))
    return specimen_mask(series.images, float(series.sampling or 0), origin=origin)


def _restrict_to_specimen(prediction: Prediction, enabled: bool = True) -> None:
    """Drop the sites outside the specimen (vacuum, no lattice); say how many in ``prediction.notes``.

    The mask (:func:`napari_hrtem.analysis.specimen.specimen_mask` of the series the networks
    saw, its ``origin`` at the crop origin of an aligned series) is kept as
    ``prediction.specimen``; ``prediction.specimen.params["dropped"]`` holds the sites dropped per
    network and ``"consensus"``. ``enabled`` False: nothing is dropped, the notes say so.
    """
    if not enabled or prediction.series is None:
        if not enabled:
            prediction.notes.append("specimen mask off: sites in vacuum or on amorphous material are kept")
        return
    mask = _specimen(prediction.series)
    dropped: dict[str, int] = {}
    for name, sites in list(prediction.results.items()):
        keep = mask.contains(sites.yx)
        dropped[name] = int((~keep).sum())
        prediction.results[name] = sites.take(keep)
    keep = mask.contains(prediction.consensus.yx)
    dropped["consensus"] = int((~keep).sum())
    prediction.consensus = prediction.consensus.take(keep)
    mask.params["dropped"] = dropped
    prediction.specimen = mask
    counts = ", ".join(f"{n} {name} sites" for name, n in dropped.items())
    prediction.notes.append(
        f"dropped {counts} outside the specimen (vacuum or no lattice): {100 * (1 - mask.fraction):.0f} % of the field"
    )


def _add_uncertainty(prediction: Prediction) -> None:
    """Per-site figures of the ensemble (each network's probabilities, their mean and spread).

    ``consensus.extra`` gets each network's column probability at every consensus site, their
    mean and spread, the mean class probabilities and the spread of the site's class
    (:func:`napari_hrtem.analysis.uncertainty.site_uncertainty`, read from the probability maps
    the networks made, which are then dropped); ``consensus.meta`` gets the agreement counts
    ``unanimous``, ``majority``, ``disputed`` (:func:`~napari_hrtem.analysis.uncertainty.agreement_counts`)
    and ``p_column_std_mean``, the mean spread over the consensus sites.
    """
    from napari_hrtem.analysis.uncertainty import agreement_counts, site_uncertainty

    cons = prediction.consensus
    maps, prediction.probabilities = prediction.probabilities, None
    try:
        if maps is not None:
            series = prediction.series  # sites back in the frame of the series the networks saw:
            offset = None if series is None else _alignment_offset(series)
            names = [name for name in prediction.results if name in maps.maps]
            cons.extra = {**cons.extra, **site_uncertainty(cons, maps, offset, names)}
    finally:
        if maps is not None:
            maps.close()
    cons.meta.update(agreement_counts(cons, prediction.results, float(cons.meta.get("radius", 0.5))))
    spread = cons.extra.get("p_column_std")
    cons.meta["p_column_std_mean"] = (
        round(float(np.nanmean(spread)), 4) if spread is not None and np.isfinite(spread).any() else None
    )


def _check_sublattices(prediction: Prediction) -> None:
    """Mark the sites with a neighbour of their own sublattice closer than the lattice allows.

    Every network's sites and the consensus are marked
    (:func:`napari_hrtem.analysis.sublattice.mark_sublattice_conflicts`); consensus sites in
    conflict add a warning (:func:`_mark_sublattices`). Networks of different materials are not checked.
    """
    from napari_hrtem.analysis.sublattice import mark_sublattice_conflicts

    materials = {str(getattr(net.card, "material", "")) for net in prediction.networks}
    if len(materials) != 1:
        return
    material = materials.pop()
    for sites in prediction.results.values():
        mark_sublattice_conflicts(sites, material)
    warning = _mark_sublattices(prediction.consensus, material, "consensus")
    if warning:
        prediction.warnings.append(warning)


def _mark_sublattices(sites: Sites, material: str, who: str) -> str | None:
    """Marks ``sites`` (:func:`napari_hrtem.analysis.sublattice.mark_sublattice_conflicts`: a material
    without a known lattice is not checked) and returns the warning about ``who``'s sites when any
    is in conflict, else None."""
    from napari_hrtem.analysis.sublattice import (
        SUBLATTICE_CONFLICTS,
        mark_sublattice_conflicts,
        sublattice_distance,
        sublattices,
    )

    n = mark_sublattice_conflicts(sites, material)
    if not n:
        return None
    a, groups = sublattices(material)
    like = " or ".join("/".join(g) for g in groups)
    first, second = groups[0][0], groups[1][0]
    layer = f", layer '{SUBLATTICE_CONFLICTS}'" if who == "consensus" else ""  # Predict shows the consensus' only
    return (
        f"{n} {who} site(s) have a neighbour of their own sublattice ({like}) closer than "
        f"{sublattice_distance(a):.2f} Å, which the {material} lattice does not allow: most likely the edge of a "
        f"patch of swapped labels ({first} called {second} and {second} {first}), or a defect with a bond between "
        f"like atoms; look there (column sublattice_conflict{layer})"
    )


def predict_consensus(
    networks: NetworkLike | Iterable[NetworkLike] | None,
    series: FocalSeries | PreparedSeries | np.ndarray,
    *,
    sampling: float | None = None,
    k: int | None = None,
    radius: float = 0.5,
    threshold: float | None = None,
    device: str | None = None,
    tile: int = DEFAULT_TILE,
    progress: Callable[[Progress], object] | None = None,
    specimen_mask: bool = True,
    column_probability: bool = False,
    precision: str = "auto",
    test_time_augmentation: bool = False,
    rule: str = "auto",
) -> Prediction:
    """Run several networks on a focal series and find where they agree.

    Each network labels every atomic column (see :func:`predict`); the consensus keeps a column
    that at least ``k`` networks find within ``radius`` Å of each other (one-to-one matching,
    whatever class each gives it), at the mean position, with the class of the largest summed
    class probability over those networks (the sum rule [2]_,
    :func:`napari_hrtem.analysis.consensus.consensus`), the number of votes, how many of them gave
    that class (``extra["class_votes"]``) and the networks. For the shipped sets a combiner trained
    on simulated series weighs the networks instead (the learned rule [3]_,
    :mod:`napari_hrtem.analysis.combiner`): it gives each column its class and drops columns it
    judges not real. Networks trained differently make
    errors that are less correlated, so their consensus is more reliable than any one of them [1]_.

    Parameters
    ----------
    networks : sequence of Network or str, or None
        The networks (names, paths or :class:`Network`); None: the shipped set for the series'
        beam energy (:func:`napari_hrtem.models.registry.shipped_networks`; the set for 50 kV when
        the energy is unknown, with a note). A user's own networks run only when named.
    series : FocalSeries or PreparedSeries or numpy.ndarray
        ``(N, H, W)`` images ordered by increasing defocus (see :func:`prepare_focal_series`
        for files: frame choice, defocus order, drift alignment).
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
        Called with a :class:`Progress` event before and after each network.
    specimen_mask : bool
        Drop the sites of every network and of the consensus outside the specimen (vacuum,
        amorphous material: :func:`napari_hrtem.analysis.specimen.specimen_mask`); the mask is
        ``prediction.specimen`` and ``prediction.notes`` says how many were dropped.
    column_probability : bool
        Keep each network's column probability map ``1 - P(background)`` (float16, at the
        network's sampling) in ``prediction.column_probability``.
    precision : str
        ``"auto"`` (bfloat16 where the CPU or GPU computes it natively, else float32),
        ``"float32"`` or ``"bfloat16"`` (see :func:`predict`); ``prediction.notes`` names the
        precision used, and each network's ``Sites.meta["precision"]``.
    test_time_augmentation : bool
        Average each network over the 8 symmetries of the pixel grid (rotations by 90° and
        mirror images; :func:`napari_hrtem.models.fast.symmetrized`): 8 passes per network.
    rule : str
        Consensus rule: ``"auto"`` (the learned rule where a shipped combiner was trained with
        exactly these networks and no ``threshold`` is given, else the sum rule), ``"sum"``,
        ``"same-class"`` or ``"learned"``; ``prediction.notes`` says which was used.

    Returns
    -------
    Prediction
        ``results`` (network name -> Sites), ``consensus`` (Sites with votes; ``meta`` has
        ``k``, ``n``, ``radius`` and ``rule``), ``seconds``, ``series``, ``networks``, ``notes`` (those
        of a :class:`PreparedSeries`) and ``warnings``. Every network's sites and the consensus
        carry ``extra["sublattice_conflict"]`` (1 for a site with a neighbour of its own
        sublattice closer than the lattice allows: two Mo columns, or two S2/S columns, closer
        than 2.49 Å; :mod:`napari_hrtem.analysis.sublattice`) and their number in
        ``meta["sublattice_conflicts"]``; consensus sites in conflict add a warning. Positions
        are ``(y, x)`` in Å with the origin at the centre of pixel (0, 0) of the input; for a
        drift-aligned series, of its reference frame.

    Raises
    ------
    ValueError
        Before any work, if no network is given, the networks label different classes, the
        series does not fit them (:func:`check_series`) or the rule is unknown or, for
        ``"learned"``, has no combiner for these networks.

    References
    ----------
    .. [1] J. Schiøtz, J. Madsen, B. J. G. Østergaard, A. S. Dreisig, P. Liu, S. Helveg, O. Winther,
       J. Kling, J. B. Wagner, T. W. Hansen, "Using neural networks to identify atoms in HRTEM
       images", Microscopy and Microanalysis 25 (S2),
       216-217 (2019).
    .. [2] J. Kittler, M. Hatef, R. P. W. Duin, J. Matas, "On combining classifiers", IEEE
       Transactions on Pattern Analysis and Machine Intelligence 20 (3), 226-239 (1998), eq. 11.
    .. [3] D. H. Wolpert, "Stacked generalization", Neural Networks 5 (2), 241-259 (1992).
    """
    steps = iter_predict_consensus(
        networks,
        series,
        sampling=sampling,
        k=k,
        radius=radius,
        threshold=threshold,
        device=device,
        tile=tile,
        specimen_mask=specimen_mask,
        column_probability=column_probability,
        precision=precision,
        test_time_augmentation=test_time_augmentation,
        rule=rule,
    )
    return drive(steps, progress)


def check_prediction_folder(out_folder: str | os.PathLike[str] | None, overwrite: bool = False) -> Path:
    """Check an output folder for :func:`write_prediction` before the work starts; returns it.

    New, empty, or holding only the files of an earlier prediction (``predict.json`` lists them);
    other files are refused unless ``overwrite``. See
    :func:`napari_hrtem.io.predictions.check_prediction_folder`.

    Raises
    ------
    ValueError
        One line naming the folder: an empty name, a file, not creatable or writable, or (without
        ``overwrite``) holding files a prediction did not write.
    """
    from napari_hrtem.io.predictions import check_prediction_folder as check

    return check(out_folder, overwrite=overwrite)


def write_prediction(
    prediction: Prediction, out_folder: str | os.PathLike[str], overwrite: bool = False
) -> dict[str, Path]:
    """Write a prediction as ``napari-hrtem predict`` does.

    Files in ``out_folder`` (made if needed; each written atomically): ``<network>.csv`` for
    every network and ``consensus.csv`` (columns ``y, x`` in Å with the origin at the centre of
    pixel (0, 0), ``class``, ``confidence``; the consensus adds ``votes`` and ``networks``) and
    ``predict.json``: ``inputs``, ``sampling`` (Å/px), ``shape`` ``(N, H, W)`` of the series the
    networks saw, ``consensus`` (``k``, ``n``, ``radius`` Å), ``networks`` (name -> ``sha256``,
    ``sampling``, ``threshold``, ``seconds``), ``units``, ``origin``, ``frames``, ``defocus``
    (Å, abTEM convention), ``defocus_convention`` and, for a drift-aligned series,
    ``alignment``.

    Parameters
    ----------
    prediction : Prediction
        From :func:`predict_consensus` (it records its series and networks).
    out_folder : path-like
        The output folder (checked by :func:`check_prediction_folder`, locked while written).
    overwrite : bool
        Write into a folder holding other files too (only the prediction's own files are replaced).

    ``predict.json`` is written last (atomically) and lists the files of the run (``files``);
    files of an earlier run into the folder that this one did not rewrite are removed (a note in
    ``prediction.notes`` names them).

    Returns
    -------
    dict of str to pathlib.Path
        Network name, ``"consensus"`` and ``"predict.json"`` -> the file written.

    Raises
    ------
    ValueError
        If the prediction does not record its focal series, or the folder is refused (see
        :func:`check_prediction_folder`; or another run holds its lock).
    OSError
        If a file cannot be written (:class:`napari_hrtem.io.files.WriteError`, naming the file;
        the files already there are left whole).
    """
    from napari_hrtem.io.predictions import write_prediction_files

    return write_prediction_files(prediction, out_folder, overwrite=overwrite)


# --- many focal series: the warm batch path ----------------------------------------------------


@dataclass(eq=False)
class _WarmNetwork(Network):
    """A :class:`Network` that keeps its loaded model per device: a batch loads each network once."""

    models: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, network: Network) -> _WarmNetwork:
        import dataclasses

        if isinstance(network, cls):
            return network
        return cls(**{f.name: getattr(network, f.name) for f in dataclasses.fields(Network) if f.init})

    def load(self, device=None):
        from napari_hrtem.models.registry import select_device

        key = str(select_device(device))
        if key not in self.models:
            self.models[key] = super().load(device)
        return self.models[key]


def find_focal_series(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[SeriesSource]:
    """The focal series of a batch: what each input item stands for.

    Each item is one of:

    * a file holding a multi-frame focal series ``(N, H, W)`` (any format of
      :func:`read_focal_series`): one series;
    * a folder of single-image files: the frames of one series, in name order (as
      :func:`read_focal_series` reads a folder);
    * a folder of multi-frame files: one series per file;
    * a folder of folders: one series per subfolder holding supported files (its frames, one
      image per file in name order);
    * a glob pattern (``"data/*.emd"``, ``"run*/"``; quote it in a shell): each match as above.

    Hidden files and folders (name starting with ``.``) are skipped.

    Parameters
    ----------
    inputs : path-like or str, or a sequence of them
        Files, folders and glob patterns.

    Returns
    -------
    list of SeriesSource
        In the order given (a folder's and a pattern's entries sorted by name), each with a safe,
        unique name (from the file's stem or the folder's name; characters other than letters,
        digits and ``. _ - +`` become ``_``; a repeated name gets ``-2``, ``-3``...) that names
        its output folder.

    Raises
    ------
    ValueError
        One line naming the input when it is ambiguous or empty: a single-image file given as
        a series (in a batch each file is one series: put the frames of one series in a folder),
        a folder holding both single images and multi-frame files, or both image files and
        folders of them; a path that does not exist, a pattern matching nothing, an unsupported
        extension, the same series given twice.

    Notes
    -----
    A file's frame count is read from its header where the format allows (.npy, TIFF), else by
    reading it; a file that cannot be read is taken as one series, whose error is reported when
    the batch reaches it.
    """
    from napari_hrtem.io.predictions import find_series_sources

    return find_series_sources(inputs)


def _stopped(stop: Any) -> bool:
    """``stop`` asks to stop: a callable returning True, or an Event (``is_set()``) that is set."""
    if stop is None:
        return False
    is_set = getattr(stop, "is_set", None)
    return bool(is_set() if callable(is_set) else stop())


def iter_predict_batch(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str] | SeriesSource],
    out: str | os.PathLike[str],
    networks: NetworkLike | Iterable[NetworkLike] | None = None,
    *,
    sampling: float | None = None,
    frames: str | Sequence[int] | None = None,
    defocus: Sequence[float] | None = None,
    defocus_convention: str = "auto",
    align: bool = False,
    energy: float | None = None,
    k: int | None = None,
    radius: float = 0.5,
    threshold: float | None = None,
    device: str | None = None,
    tile: int = DEFAULT_TILE,
    specimen_mask: bool = True,
    precision: str = "auto",
    test_time_augmentation: bool = False,
    rule: str = "auto",
    overwrite: bool = False,
    read_timeout: float | None = None,
    stop: Any = None,
) -> Steps[BatchResult]:
    """:func:`predict_batch` as a generator of :class:`Progress` events; returns the :class:`BatchResult`.

    Events: ``"series i/n: <name>"`` before each series (``done`` counts networks run over the
    whole batch, ``total`` = series × networks), then those of :func:`iter_predict_consensus`
    (before and after each network: ``"series i/n: <name>, <network> (j/m)"``, ``"..., <network>
    done"``) and one after the series; ``info`` holds ``series`` (name), ``index`` (0-based),
    ``count`` (series), ``network`` and ``running`` (during a series), ``elapsed`` (s since the
    batch started) and, after a series, its ``row`` (:class:`BatchRow`). Everything is checked at
    the first step, before any network runs.
    """
    import time

    from napari_hrtem.analysis.inference import check_same_classes
    from napari_hrtem.io.files import RunLock, check_output_path
    from napari_hrtem.io.predictions import check_summary_file, write_batch_summary
    from napari_hrtem.names import check_network_name

    start = time.perf_counter()
    radius = check_prediction_settings(radius=radius, tile=tile, threshold=threshold)
    if sampling is not None:
        from napari_hrtem.io.validation import check_sampling

        check_sampling(sampling, "sampling")
    if read_timeout is not None:
        from napari_hrtem.io.focal_series import read_timeout as check_timeout

        check_timeout(read_timeout)
    items = list(sources) if not isinstance(sources, (str, os.PathLike)) else [sources]
    found = [s for s in items if isinstance(s, SeriesSource)]
    series_list = found if found and len(found) == len(items) else find_focal_series(items)  # type: ignore[arg-type]
    nets = [_WarmNetwork.of(n) for n in _networks(networks, energy)]
    # networks=None: each series runs the shipped set for its own beam energy (loaded once per batch)
    warm = {net.name: net for net in nets}
    if networks is None:
        shipped = (n for n in available_networks().values() if n.origin == "shipped")
        warm = {n.name: warm.get(n.name) or _WarmNetwork.of(n) for n in shipped}
    for net in warm.values():  # a name becomes <name>.csv: checked before any work (napari_hrtem.names)
        check_network_name(net.name)
    check_same_classes(list(warm.values()), hint="choose networks that label the same classes")
    check_prediction_settings(k=k, n_networks=len(nets))
    out = check_output_path(out, "output folder")
    summary_path = check_summary_file(out, overwrite=overwrite)
    classes = list(nets[0].card.classes)
    n, m = len(series_list), len(nets)
    rows = [BatchRow(s.name, [str(p) for p in s.paths], status="cancelled", message="not run") for s in series_list]
    result = BatchResult(out, rows, None, [net.name for net in nets])
    used: list[str] = []
    with RunLock(out, "predict batch"):
        for net in nets:  # once for the whole batch (NetworkError names the weight file)
            net.load(device)
        for i, source in enumerate(series_list):
            info = dict(series=source.name, index=i, count=n)
            if _stopped(stop):
                result.cancelled = True
                break
            yield Progress(f"series {i + 1}/{n}: {source.name}", i * m, n * m, {**info, "elapsed": _since(start)})
            row, t0 = rows[i], time.perf_counter()
            row.message = ""
            try:
                folder = check_prediction_folder(out / source.name, overwrite=overwrite)
                series = read_focal_series(list(source.paths), sampling=sampling, timeout=read_timeout)
                prepared = prepare_focal_series(
                    series,
                    nets,
                    frames=frames,
                    defocus=defocus,
                    defocus_convention=defocus_convention,
                    align=align,
                    energy=energy,
                )
                s = prepared.series
                row.frames, row.sampling = int(s.images.shape[0]), s.sampling
                row.energy_kv = None if s.energy is None else round(s.energy / 1e3, 3)
                chosen = _chosen(networks, s.energy, warm, nets)
                used += [net.name for net in chosen if net.name not in used]
                result.networks = list(used)
                steps = iter_predict_consensus(
                    chosen,
                    prepared,
                    k=k,
                    radius=radius,
                    threshold=threshold,
                    device=device,
                    tile=tile,
                    specimen_mask=specimen_mask,
                    precision=precision,
                    test_time_augmentation=test_time_augmentation,
                    rule=rule,
                )
                while True:
                    try:
                        event = next(steps)
                    except StopIteration as done:
                        prediction = done.value
                        break
                    running = bool(event.info.get("running"))  # before a network, else after it
                    yield Progress(
                        f"series {i + 1}/{n}: {source.name}, {event.stage}",
                        i * m + event.done,
                        n * m,
                        {**info, "network": event.info.get("network"), "running": running, "elapsed": _since(start)},
                    )
                    if (running or event.done < m) and _stopped(stop):  # not after the last: it is written
                        steps.close()
                        raise _Cancelled()
                write_prediction(prediction, folder, overwrite=overwrite)
                counts = prediction.consensus.counts()
                row.sites = {c: int(counts.get(c, 0)) for c in classes}
                row.warnings = len(prediction.warnings)
                row.folder, row.status = folder, "ok"
            except _Cancelled:
                row.status, row.message = "cancelled", "stopped while running; nothing written"
                result.cancelled = True
            except (ValueError, OSError, MemoryError, RuntimeError) as exc:  # this series only; the batch goes on
                row.status, row.message = "error", " ".join(str(exc).split()) or type(exc).__name__
            row.seconds = time.perf_counter() - t0
            result.summary = write_batch_summary(rows, classes, summary_path)  # after each series: never lost
            yield Progress(
                f"series {i + 1}/{n}: {source.name} {row.status}",
                (i + 1) * m,
                n * m,
                {**info, "row": row, "elapsed": _since(start)},
            )
            if result.cancelled:
                break
        for row in rows:
            if row.status == "cancelled" and row.message == "not run":
                row.message = "not run: the batch was cancelled"
        result.summary = write_batch_summary(rows, classes, summary_path)
    result.seconds = time.perf_counter() - start
    return result


def _chosen(networks: Any, energy: float | None, warm: dict, nets: list) -> list:
    """The networks of one series of a batch: as given, or the shipped set for its beam energy (eV)."""
    if networks is not None:
        return nets
    return [warm[n.name] for n in shipped_networks(energy)]


class _Cancelled(Exception):
    """A batch stopped between two networks of a series."""


def _since(start: float) -> float:
    import time

    return round(time.perf_counter() - start, 1)


def predict_batch(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str] | SeriesSource],
    out: str | os.PathLike[str],
    networks: NetworkLike | Iterable[NetworkLike] | None = None,
    *,
    sampling: float | None = None,
    frames: str | Sequence[int] | None = None,
    defocus: Sequence[float] | None = None,
    defocus_convention: str = "auto",
    align: bool = False,
    energy: float | None = None,
    k: int | None = None,
    radius: float = 0.5,
    threshold: float | None = None,
    device: str | None = None,
    tile: int = DEFAULT_TILE,
    specimen_mask: bool = True,
    precision: str = "auto",
    test_time_augmentation: bool = False,
    rule: str = "auto",
    overwrite: bool = False,
    read_timeout: float | None = None,
    stop: Any = None,
    progress: Callable[[Progress], object] | None = None,
) -> BatchResult:
    """Run the networks on many focal series in one process, each network loaded once.

    The series are found by :func:`find_focal_series` (files, folders, glob patterns); each is
    read (:func:`read_focal_series`), prepared (:func:`prepare_focal_series`: frames, defocus
    order, alignment, beam energy) and predicted (:func:`predict_consensus`) with the same
    networks, whose weights are read once for the whole batch, and written as
    :func:`write_prediction` writes one prediction, into ``out/<series name>/``. After each
    series ``out/summary.csv`` is rewritten (atomically): one row per series
    (:func:`napari_hrtem.io.predictions.write_batch_summary`: status, sources, frames, sampling
    Å/px, energy kV, consensus sites per class, warnings, seconds). A series that fails (a
    corrupt file, a wrong number of frames, a size the networks cannot take, its output folder
    holding other files...) gets status ``error`` and its message; the batch goes on.

    Parameters
    ----------
    sources : path-like or str, or a sequence of them or of SeriesSource
        Files, folders and glob patterns (see :func:`find_focal_series`), or the series it found.
    out : path-like
        The output folder (made if needed): ``<series>/`` per series and ``summary.csv``.
    networks : Network or str, or a sequence of them, or None
        The networks (see :func:`load_network`); None: the shipped networks (a user's own
        networks run only when named).
    sampling : float, optional
        Å/px of every series, overriding the files' calibration (for files without one).
    frames, defocus, defocus_convention, align, energy :
        As :func:`prepare_focal_series`, for every series (``energy`` in eV).
    k, radius, threshold, device, tile, specimen_mask, precision, test_time_augmentation :
        As :func:`predict_consensus` (``radius`` in Å).
    overwrite : bool
        Write into series folders (and over a ``summary.csv``) holding files a prediction did not
        write (only the prediction's own files are replaced). Without it such a series fails
        (status ``error``) and the others go on. A folder of an earlier prediction is replaced
        as :func:`write_prediction` does.
    read_timeout : float, optional
        Seconds an HDF5-based file (.emd) may take to read (see :func:`read_focal_series`).
    stop : callable or threading.Event, optional
        Checked before each series and between networks: when it returns True (is set) the
        batch stops, nothing more is written for the series it was in, and ``summary.csv`` lists
        the series done and those ``cancelled``.
    progress : callable, optional
        Called with each :class:`Progress` event (see :func:`iter_predict_batch`).

    Returns
    -------
    BatchResult
        ``out``, ``rows`` (one :class:`BatchRow` per series, in order), ``summary`` (the path of
        ``summary.csv``), ``networks``, ``cancelled`` and ``seconds``.

    Raises
    ------
    ValueError
        Before any work: the input is ambiguous or finds no series (:func:`find_focal_series`),
        a network is unknown or the networks label different classes, a setting is out of range,
        ``out`` cannot be written, holds a ``summary.csv`` not written by a batch, or another run
        holds its lock.
    NetworkError
        If a network's weights cannot be loaded.
    """
    steps = iter_predict_batch(
        sources,
        out,
        networks,
        sampling=sampling,
        frames=frames,
        defocus=defocus,
        defocus_convention=defocus_convention,
        align=align,
        energy=energy,
        k=k,
        radius=radius,
        threshold=threshold,
        device=device,
        tile=tile,
        specimen_mask=specimen_mask,
        precision=precision,
        test_time_augmentation=test_time_augmentation,
        rule=rule,
        overwrite=overwrite,
        read_timeout=read_timeout,
        stop=stop,
    )
    return drive(steps, progress)


# --- comparing networks ------------------------------------------------------------------------


def inspect_site(
    networks: NetworkLike | Iterable[NetworkLike] | None,
    series: FocalSeries | np.ndarray,
    yx: tuple[float, float],
    *,
    sampling: float | None = None,
    window: float = 24.0,
) -> dict[str, dict[str, Any]]:
    """What every network says at one place: its class probabilities there and its nearest site.

    Each network runs (with its model card's preprocessing) on a window of ``2 * window`` Å
    around ``yx`` only, so the answer comes in a fraction of a second on any image size.

    Parameters
    ----------
    networks : Network or str, or a sequence of them, or None
        The networks (see :func:`load_network`); None: the shipped networks (a user's own
        networks run only when named).
    series : FocalSeries or numpy.ndarray
        ``(N, H, W)`` focal series ordered by increasing defocus.
    yx : (float, float)
        The place ``(y, x)``, Å, origin at the centre of pixel (0, 0).
    sampling : float, optional
        Å/px; needed for a bare array.
    window : float
        Half-size of the analysed window, Å.

    Returns
    -------
    dict
        Network name -> ``{"probabilities": {class or "background": P}, "site": None or
        {"yx", "class", "distance" (Å)}}``.

    Raises
    ------
    ValueError
        If the series has no sampling or does not fit a network.
    """
    from napari_hrtem.analysis.comparison import probabilities_at

    s = _series(series, sampling)
    images = np.asarray(s.images, np.float32)
    return {
        net.name: probabilities_at(net, images, float(s.sampling or 0), yx, window=window)
        for net in _networks(networks)
    }


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


def score_files(
    predicted: str | os.PathLike[str],
    truth: str | os.PathLike[str],
    radius: float = 0.5,
    network: str = "consensus",
) -> dict[str, Any]:
    """Score predicted site tables (CSV) against true ones: one pair of files, or folders of samples.

    Parameters
    ----------
    predicted, truth : path-like
        Two CSV files with ``y, x`` (Å) and ``class``, or two folders: each ``NAME.truth.csv``
        (or ``NAME.csv``) of ``truth`` is paired with ``NAME.csv`` or ``NAME/<network>.csv`` of
        ``predicted`` (the layout of ``napari-hrtem predict --out PREDICTED/NAME``).
    radius : float
        Matching radius, Å.
    network : str
        Which ``NAME/<network>.csv`` of a predictions folder to score.

    Returns
    -------
    dict
        :func:`napari_hrtem.analysis.metrics.summarize` of the per-sample :func:`score`: per
        class and ``"overall"`` TP, FP, FN, precision, recall, F1 and RMS (Å) pooled over the
        samples; ``f1_p10`` (10th percentile of the per-sample overall F1) and ``samples``.

    Raises
    ------
    ValueError
        If the inputs are not two files or two folders, a sample has no prediction, or a file
        cannot be read as a site table.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), section 4 (atomic F1).
    """
    from napari_hrtem.analysis.metrics import summarize
    from napari_hrtem.arguments import check_radius
    from napari_hrtem.io.predictions import evaluation_pairs
    from napari_hrtem.io.sites import read_csv

    radius = check_radius(radius)  # before any file is read
    pairs = evaluation_pairs(predicted, truth, network)
    return summarize([score(read_csv(p), read_csv(t), radius) for _, p, t in pairs])


def evaluate_network(
    network: NetworkLike,
    dataset: str | os.PathLike[str],
    radius: float = 0.5,
    threshold: float | None = None,
    limit: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Score a network on a dataset with known truth: atomic and pixel F1.

    Parameters
    ----------
    network : Network or str or path-like
        The network (see :func:`load_network`).
    dataset : path-like
        A dataset ``.npz`` (``napari-hrtem dataset``): preprocessed focal series, class maps and
        true sites.
    radius : float
        Matching radius, Å.
    threshold : float, optional
        Column probability threshold in (0, 1); default the network's own (its model card).
    limit : int, optional
        Score only the first ``limit`` samples.
    device : str, optional
        ``"cuda"`` or ``"cpu"``; default CUDA when available.

    Returns
    -------
    dict
        As :func:`score_files`, with ``pixel_f1`` and ``pixel_f1_no_background`` (pooled pixel
        F1 with and without the background class) and their 10th percentiles, and
        ``threshold``, the column probability threshold used.

    Raises
    ------
    ValueError
        If the dataset's focal series length differs from the network's, the threshold is not
        in (0, 1), or the dataset cannot be read.
    NetworkError
        If the network cannot be loaded.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), section 4 and Table 5 (pixel F1
       with and without background).
    """
    from napari_hrtem.analysis.inference import network_threshold
    from napari_hrtem.arguments import check_limit, check_optional, check_radius
    from napari_hrtem.training.datasets import load_dataset_checked
    from napari_hrtem.training.trainer import evaluate_model

    radius, limit = check_radius(radius), check_limit(limit)  # before the network and the data are read
    check_optional(threshold, "threshold", low=0, high=1, low_open=True, high_open=True, unit="(column probability)")
    net = load_network(network)
    data = load_dataset_checked(dataset)
    if data["images"].shape[1] != net.card.n_images:
        raise ValueError(
            f"{dataset}: focal series of {data['images'].shape[1]} images; {net.name} needs {net.card.n_images}"
        )
    value = network_threshold(net.card, threshold)
    scores = dict(evaluate_model(net.load(device), data, radius=radius, threshold=value, limit=limit))
    scores["threshold"] = value
    return scores


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
    energy: float | None = None,
) -> Steps[Simulation]:
    """:func:`simulate` as a generator of :class:`Progress` events; returns the :class:`Simulation`.

    The arguments are checked at the first step, before anything is simulated. Events: the
    sample, then one per frozen-phonon configuration of the multislice (``info``:
    ``configuration``, ``configurations``), then the focal series; ``total`` is
    ``phonon_configs + 2``. A caller may stop between two events (close the generator).
    """
    from napari_hrtem.arguments import MAX_DEFOCUS, check_number, check_optional, check_seed
    from napari_hrtem.io.validation import check_simulation_request
    from napari_hrtem.simulation.imaging import draw_microscope_parameters, focal_series, iter_exit_wave
    from napari_hrtem.simulation.parameters import load_parameter_ranges
    from napari_hrtem.simulation.structures import make_mos2_sample
    from napari_hrtem.simulation.vibrations import (
        coordination_table_setting,
        debye_temperature_setting,
        draw_temperature,
        load_coordination_table,
    )

    check_simulation_request(
        size,
        sampling,
        None if microscope is None or draw_microscope else microscope.dose,
        wave_sampling=0.05,  # exit_wave's default largest wave sampling, Å
        graphene_layers=graphene_layers,
    )
    if seed is not None:
        check_seed(seed)
    check_optional(rotation, "rotation", low=-360, high=360, unit="degrees")
    check_number(graphene_layers, "graphene_layers", low=0, integer=True)
    check_number(phonon_configs, "phonon_configs", low=1, integer=True)
    check_optional(temperature, "temperature", low=0, low_open=True, high=5000, unit="K")
    check_optional(energy, "energy", low=0, low_open=True, high=3e6, unit="eV")
    if microscope is not None and not draw_microscope:
        check_number(microscope.defocus, "defocus", low=-MAX_DEFOCUS, high=MAX_DEFOCUS, unit="Å")
        for step in microscope.defocus_steps:
            check_number(step, "defocus_steps", low=-MAX_DEFOCUS, high=MAX_DEFOCUS, unit="Å")
    rng = np.random.default_rng(seed)
    ranges = load_parameter_ranges(parameter_file or None)
    # a table given here, else the parameter file's vibrations.coordination_table, else None (the Debye model)
    table = load_coordination_table(vibration_table) if vibration_table else coordination_table_setting(ranges)
    total = int(phonon_configs) + 2
    yield Progress("building the sample", 0, total)
    sample = make_mos2_sample(
        size * sampling, rotation=rotation, graphene_layers=graphene_layers, seed=seed, **(sample_options or {})
    )
    if draw_microscope:
        params = draw_microscope_parameters(rng, n_images, ranges)
        if temperature is None:
            temperature = draw_temperature(rng, ranges)
    else:  # the azimuths not given are the first two draws of the seed
        params = (microscope if microscope is not None else MicroscopeParameters()).with_azimuths(rng)
    if energy is not None:  # the beam energy given replaces the microscope's (or the drawn one)
        from dataclasses import replace

        params = replace(params, energy=float(energy))
    temperature = 300.0 if temperature is None else float(temperature)
    about = f"{len(sample.atoms)} atoms at {temperature:.0f} K, {params.energy / 1e3:g} kV"
    yield Progress(
        f"multislice exit wave: frozen-phonon configuration 1 of {phonon_configs} ({about})",
        1,
        total,
        {"configuration": 0, "configurations": int(phonon_configs)},
    )
    steps = iter_exit_wave(
        sample,
        (size, size),
        sampling,
        seed=seed,
        energy=params.energy,
        phonon_configs=phonon_configs,
        temperature=temperature,
        vibrations=table,
        debye_temperature=debye_temperature_setting(ranges),
    )
    while True:
        try:
            done, _ = next(steps)
        except StopIteration as stop:
            wave = stop.value
            break
        if done < phonon_configs:
            yield Progress(
                f"multislice exit wave: frozen-phonon configuration {done + 1} of {phonon_configs} ({about})",
                1 + done,
                total,
                {"configuration": done, "configurations": int(phonon_configs)},
            )
    yield Progress("focal series", total - 1, total)
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
    energy: float | None = None,
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
        50 keV, first defocus -50 Å, steps of 50 Å, 10⁴ e/Å². The astigmatism and coma
        azimuths ``phi12``, ``phi21`` (rad) not given are drawn uniformly in [0, 2π) from the
        seed (:meth:`MicroscopeParameters.with_azimuths`). Its defocus steps set the number of
        images.
    draw_microscope : bool
        Draw every microscope parameter from the parameter ranges (thesis Table 1) instead.
    n_images : int
        Images in the focal series (only with ``draw_microscope``).
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
        A coordination-number vibration table (JSON) replacing the Debye model, or the name of a
        packaged one (``"mos2-chgnet"``, :func:`napari_hrtem.simulation.vibrations.packaged_table`);
        default: the parameter file's ``vibrations.coordination_table``, else the Debye model.
    seed : int or None
        Seed of every random draw (same seed, same series).
    progress : callable, optional
        Called with a :class:`Progress` event before each stage (and each frozen-phonon
        configuration of the multislice).
    energy : float, optional
        Beam energy in eV for the multislice and the microscope (CTF); replaces the energy of
        ``microscope`` or the drawn one (default: theirs, 50 keV in thesis Table 1).

    Returns
    -------
    Simulation
        ``series`` (:class:`FocalSeries`, float32 ``(N, size, size)``), ``truth`` (:class:`Sites`),
        ``microscope``, ``sample`` and ``metadata``.

    Raises
    ------
    ValueError
        Before anything is simulated: for a size outside 16-4096 px, a sampling outside
        0.01-1 Å/px, a dose that is not finite and > 0, or a bad parameter file.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), sections 3.1-3.2, Table 1.
    .. [2] J. Madsen, T. Susi, "The abTEM code: transmission electron microscopy from first
       principles", Open Research Europe 1, 24 (2021).
    .. [3] M. H. L. Larsen, F. Dahl, L. P. Hansen, B. Barton, C. Kisielowski, S. Helveg,
       O. Winther, T. W. Hansen, J. Schiøtz, "Reconstructing the exit wave of 2D materials in high-resolution
       transmission electron microscopy using machine learning", Ultramicroscopy 243,
       113641 (2023).
    """
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
        energy=energy,
    )
    return drive(steps, progress)
