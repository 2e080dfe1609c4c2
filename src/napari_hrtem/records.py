"""Typed records shared by the API, the command line and the napari widgets.

The records of the data themselves live with the code that makes them and are re-exported at
the package top level: :class:`~napari_hrtem.io.focal_series.FocalSeries` (images with their
calibration), :class:`~napari_hrtem.io.sites.Sites` (atomic-column sites in Å),
:class:`~napari_hrtem.models.card.ModelCard` and :class:`~napari_hrtem.models.registry.Network`.
This module holds the records of the jobs: progress events and results.

Long jobs are generators of :class:`Progress` events whose return value is the result
(``iter_*`` functions of :mod:`napari_hrtem.api`); :func:`drive` runs one to the end, passing
each event to a callback. napari's ``GeneratorWorker`` emits the return value as ``returned``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import numpy as np

    from napari_hrtem.analysis.alignment import Alignment
    from napari_hrtem.analysis.specimen import SpecimenMask
    from napari_hrtem.io.focal_series import FocalSeries
    from napari_hrtem.io.sites import Sites
    from napari_hrtem.models.card import ModelCard
    from napari_hrtem.simulation.imaging import MicroscopeParameters
    from napari_hrtem.simulation.structures import Sample

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long job.

    Attributes
    ----------
    stage : str
        What is being done, in words (e.g. ``"unet done"``, ``"multislice exit wave"``).
    done, total : int
        Steps done of ``total`` (``total`` 0: unknown).
    info : dict
        Job-specific figures: for training ``step``, ``steps``, ``seconds``, ``loss``, ``lr``,
        ``validation`` (atomic F1 per class) and ``checkpoint``; for prediction ``network``.
    """

    stage: str
    done: int = 0
    total: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        """``done / total`` in [0, 1], or None when the total is unknown."""
        return None if self.total <= 0 else min(1.0, self.done / self.total)


#: A job's steps: a generator of :class:`Progress` events returning the job's result.
Steps = Generator[Progress, None, T]


def drive(steps: Generator[Progress, None, T], progress: Callable[[Progress], object] | None = None) -> T:
    """Run a job's generator to the end and return its result.

    Parameters
    ----------
    steps : generator of Progress
        An ``iter_*`` job of :mod:`napari_hrtem.api`.
    progress : callable, optional
        Called with every :class:`Progress` event (e.g. to update a progress bar).

    Returns
    -------
    The generator's return value (the job's result).
    """
    while True:
        try:
            event = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event)


@dataclass
class Prediction:
    """Sites found by several networks and their consensus.

    Attributes
    ----------
    results : dict of str to Sites
        Network name -> its sites (Å, in the input's frame: origin at the centre of pixel (0, 0)).
    consensus : Sites
        Columns that at least ``consensus.meta["k"]`` of the ``consensus.meta["n"]`` networks
        find within ``consensus.meta["radius"]`` Å, each with the class the networks make most
        probable (the rule in ``consensus.meta["rule"]``), with ``votes``, ``class_votes`` and
        ``networks``.
    seconds : dict of str to float
        Network name -> wall-clock seconds it took.
    series : FocalSeries or None
        The focal series the networks saw (after frame choice and drift alignment).
    notes : list of str
        What was assumed about the input (frames chosen, defocus order, alignment).
    warnings : list of str
        Where the input lies outside what a network was trained for, and where the consensus
        labels contradict the lattice (like columns side by side:
        :mod:`napari_hrtem.analysis.sublattice`).
    networks : list of Network
        The networks that ran, in order (their model cards: SHA-256, sampling, threshold).
    probabilities : ProbabilityMaps or None
        Every network's probability maps (:class:`~napari_hrtem.analysis.inference.ProbabilityMaps`),
        held only while :func:`~napari_hrtem.api.predict_consensus` reads them at the consensus
        sites (the per-site figures in ``consensus.extra``); None afterwards.
    specimen : SpecimenMask or None
        Where the images show a specimen with a lattice
        (:func:`~napari_hrtem.analysis.specimen.specimen_mask`); the sites outside it were
        dropped (None: the mask was turned off).
    column_probability : dict
        Network name -> its column probability map ``1 - P(background)``, ``(H', W')`` float16 in
        [0, 1] at the network's sampling (its card's, Å/px; axes (y, x), origin at the centre of
        pixel (0, 0) of ``series``), when asked for (``column_probability=True`` of
        :func:`~napari_hrtem.api.predict_consensus`); else empty.

    With a drift-aligned series (:func:`~napari_hrtem.api.prepare_focal_series` with
    ``align=True``) the sites are in Å in the alignment's reference frame of the input (origin at
    the centre of its pixel (0, 0)), not on the cropped series, and ``series.metadata["alignment"]``
    holds the alignment.
    """

    results: dict[str, Sites]
    consensus: Sites
    seconds: dict[str, float] = field(default_factory=dict)
    series: FocalSeries | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    networks: list[Any] = field(default_factory=list)
    probabilities: Any = field(default=None, repr=False, compare=False)
    specimen: SpecimenMask | None = None
    column_probability: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class PreparedSeries:
    """A focal series made ready for the networks (:func:`~napari_hrtem.api.prepare_focal_series`).

    Attributes
    ----------
    series : FocalSeries
        ``(N, H, W)`` float32 frames ordered by increasing defocus (abTEM sign convention,
        defocus in Å), ``metadata["frames"]`` their 0-based indices in the input,
        ``metadata["defocus_convention"]`` what was assumed; drift-aligned and cropped to the
        common area when ``alignment`` is not None (``metadata["alignment"]`` its summary).
    notes : list of str
        What was chosen or assumed (frames, defocus order and sign, drift), one line each.
    alignment : Alignment or None
        The drift alignment (shifts in px, reference frame, crop origin), or None.
    """

    series: FocalSeries
    notes: list[str] = field(default_factory=list)
    alignment: Alignment | None = None


@dataclass
class Simulation:
    """A simulated focal series with its ground truth.

    Attributes
    ----------
    series : FocalSeries
        ``(N, H, W)`` float32 images ordered by increasing defocus (abTEM sign convention:
        defocus = -C10 in Å, positive = underfocus), with ``sampling`` (Å/px), ``energy`` (eV)
        and ``defocus`` (Å) per frame.
    truth : Sites
        True atomic-column sites, ``(y, x)`` in Å with origin at the centre of pixel (0, 0).
    microscope : MicroscopeParameters
        The microscope and detector parameters used.
    sample : Sample
        The atomic structure (ASE ``Atoms``) and its recipe.
    metadata : dict
        Every parameter drawn, as JSON-able records (``microscope``, ``image_records``,
        ``sample``, ``exit_wave``).
    """

    series: FocalSeries
    truth: Sites
    microscope: MicroscopeParameters
    sample: Sample
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingResult:
    """A trained (or fine-tuned) network, saved with its model card.

    Attributes
    ----------
    card_path : pathlib.Path or None
        The saved model card (``<name>.json``; the weights are ``<name>.pt`` beside it); None
        when training was stopped before the end.
    validation : dict or None
        Validation atomic F1 per class (at the calibrated column probability threshold).
    threshold : float or None
        The calibrated column probability threshold (None without a validation set).
    seconds : float
        Wall-clock training time.
    stopped : bool
        True if training was stopped before its last step (nothing saved).
    model : object
        The trained ``torch.nn.Module`` (None when stopped).
    step : int
        The last step trained.
    checkpoint : pathlib.Path or None
        The checkpoint kept when training was stopped (``checkpoint.pt``; resumable).
    card : ModelCard or None
        The saved model card.
    f1_by_threshold : dict of float to float or None
        Validation overall atomic F1 at each column probability threshold tried.
    processes, rank : int
        Processes of a ``torchrun`` training and this one's rank (only rank 0 saves).
    replicas_identical : bool or None
        Under ``torchrun``: whether every process ended with the same weights.
    """

    card_path: Path | None
    validation: dict[str, Any] | None = None
    threshold: float | None = None
    seconds: float = 0.0
    stopped: bool = False
    model: Any = None
    step: int = 0
    checkpoint: Path | None = None
    card: ModelCard | None = None
    f1_by_threshold: dict[float, float] | None = None
    processes: int = 1
    rank: int = 0
    replicas_identical: bool | None = None


@dataclass(frozen=True)
class SeriesSource:
    """One focal series of a batch (:func:`~napari_hrtem.api.find_focal_series`).

    Attributes
    ----------
    name : str
        A safe, unique name (letters, digits and ``. _ - +``; :mod:`napari_hrtem.names`) derived
        from the file or folder: the name of its output folder in the batch.
    paths : tuple of pathlib.Path
        What :func:`~napari_hrtem.api.read_focal_series` reads for it: one multi-frame file, or
        the files of a folder holding the frames of the series (one image per file, in name order).
    """

    name: str
    paths: tuple[Path, ...]


#: Status of a series in a batch: done, failed (the message says why), or not run / stopped by a cancel.
BATCH_STATUSES = ("ok", "error", "cancelled")


@dataclass
class BatchRow:
    """One series of a batch prediction: one row of its ``summary.csv``.

    Attributes
    ----------
    series : str
        The series' name (:attr:`SeriesSource.name`), the name of its output folder.
    sources : list of str
        The file(s) or folder it was read from.
    folder : pathlib.Path or None
        Its output folder (``<network>.csv``, ``consensus.csv``, ``predict.json``, ...); None
        when nothing was written.
    frames : int or None
        Images in the focal series the networks saw.
    sampling : float or None
        Å/px of the series.
    energy_kv : float or None
        Beam energy, kV (None when neither the file nor the settings give one).
    sites : dict of str to int
        Consensus sites per class (e.g. ``{"Mo": 120, "S2": 230, "S": 4}``).
    warnings : int
        Warnings about the input (outside the networks' training domain) and the result (labels
        that contradict the lattice); in ``predict.json``.
    seconds : float
        Wall-clock seconds spent on the series (reading, networks, writing).
    status : str
        ``"ok"``, ``"error"`` or ``"cancelled"`` (:data:`BATCH_STATUSES`).
    message : str
        Why the series failed or was not run (empty when ``ok``).
    """

    series: str
    sources: list[str]
    folder: Path | None = None
    frames: int | None = None
    sampling: float | None = None
    energy_kv: float | None = None
    sites: dict[str, int] = field(default_factory=dict)
    warnings: int = 0
    seconds: float = 0.0
    status: str = "ok"
    message: str = ""


@dataclass
class BatchResult:
    """A batch prediction over many focal series (:func:`~napari_hrtem.api.predict_batch`).

    Attributes
    ----------
    out : pathlib.Path
        The output folder: one folder per series and ``summary.csv``.
    rows : list of BatchRow
        One per series, in the order of the input (series not run after a cancel included).
    summary : pathlib.Path or None
        ``summary.csv`` (None when not written).
    networks : list of str
        The networks that ran, in order.
    cancelled : bool
        True when the batch was stopped before its last series.
    seconds : float
        Wall-clock seconds of the whole batch (the networks loaded once included).
    """

    out: Path
    rows: list[BatchRow] = field(default_factory=list)
    summary: Path | None = None
    networks: list[str] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> list[BatchRow]:
        """The rows of the series done."""
        return [r for r in self.rows if r.status == "ok"]

    @property
    def failed(self) -> list[BatchRow]:
        """The rows of the series that failed (bad file, wrong size, ...)."""
        return [r for r in self.rows if r.status == "error"]
