"""Predict dock widget: run the chosen networks -> Points per class per network + consensus, and
(optionally) the ``disagreement`` layer of the sites the networks dispute and an image layer of
each network's column probability.

The network list shows each network's origin (shipped / user), validation atomic F1, training
beam energy and sampling (:func:`napari_hrtem.models.registry.network_info`), its model card on
hover. The shipped networks are ticked; a user network (one just trained, or one found later) is
never ticked by itself. The consensus Points carry the ensemble's per-site figures as features
(each network's column probability, ``p_column_mean``, ``p_column_std``, ...;
:mod:`napari_hrtem.analysis.uncertainty`); the status line gives the stage and the seconds spent
while running, then the unanimous, majority and disputed counts. Cancel stops a run within a few
seconds (:data:`CANCEL_GRACE_S`) and changes no layer.
"""

from __future__ import annotations

import threading
import time
import weakref

import numpy as np
from magicgui.widgets import CheckBox, FloatSpinBox, PushButton, Select, SpinBox

from napari_hrtem.plugin.widgets._common import WorkerWidget

#: Seconds Cancel waits for the run to stop between two networks before it ends the compute
#: process. A network cannot be interrupted inside (one PyTorch call per tile; a 2048² series is
#: one tile). Measured (``benchmarks/bench_predict_cancel.py``, 2 CPU cores, one thread, U-Net +
#: U-Net++): waiting for the network ended the run 1.8 s (1024²) / 9.5 s (2048²) after Cancel,
#: ending the process 1.3 s / 1.2 s; the next run then starts a new process (first network running
#: after 2.6-3.2 s instead of 0.1 s).
CANCEL_GRACE_S = 1.0


def _layer_tuples(prediction, sampling: float, disagreement: bool = False) -> list[tuple]:
    """Points layer tuples: every network (hidden) and the consensus, and its sites in conflict with
    the lattice (``sublattice conflicts``: :func:`napari_hrtem.api.predict_consensus` marks them;
    empty and hidden when there are none); with ``disagreement`` the
    ``disagreement`` layer (:func:`napari_hrtem.analysis.comparison.disagreements`, as the
    Compare widget shows it); the translucent ``specimen mask`` Labels layer when the prediction
    has one (first, so that the points lie over it); each network's column probability image
    (:func:`napari_hrtem.plugin.layers.probability_layer_data`; the first one shown) when the
    prediction has them (below the points)."""
    from napari_hrtem.plugin.layers import (
        disagreement_layer_data,
        points_layer_data,
        probability_layer_data,
        specimen_layer_data,
        sublattice_conflict_layer_data,
    )

    tuples = [] if getattr(prediction, "specimen", None) is None else [specimen_layer_data(prediction.specimen)]
    samplings = {net.name: float(net.card.sampling) for net in getattr(prediction, "networks", None) or []}
    columns = getattr(prediction, "column_probability", None) or {}
    for i, (name, column) in enumerate(columns.items()):
        tuples.append(probability_layer_data(column, samplings.get(name, sampling), name, visible=i == 0))
    for name, sites in prediction.results.items():
        tuples += points_layer_data(sites, sampling, name, visible=False)
    tuples += points_layer_data(prediction.consensus, sampling, "consensus")
    tuples.append(sublattice_conflict_layer_data(prediction.consensus, sampling))
    if disagreement:
        from napari_hrtem.analysis.comparison import disagreements

        radius = float(prediction.consensus.meta.get("radius", 0.5))
        tuples.append(disagreement_layer_data(*disagreements(prediction.results, radius=radius), sampling))
    return tuples


def _result(prediction) -> dict:
    """The widget's record of a run: ``{"results", "consensus", "seconds", "prediction"}``."""
    return dict(
        results=prediction.results,
        consensus=prediction.consensus,
        seconds=prediction.seconds,
        prediction=prediction,
    )


def predict_layers(
    networks,
    images: np.ndarray,
    sampling: float,
    k: int,
    radius: float,
    threshold: float,
    disagreement: bool = False,
    specimen_mask: bool = True,
):
    """Generator: :class:`~napari_hrtem.records.Progress` events of
    :func:`napari_hrtem.api.iter_predict_consensus`, then Points layer tuples for every network and
    the consensus (and the disagreement layer), with the run's record."""
    from napari_hrtem.api import iter_predict_consensus

    prediction = yield from iter_predict_consensus(
        networks, images, sampling=sampling, k=k, radius=radius, threshold=threshold, specimen_mask=specimen_mask
    )
    return _layer_tuples(prediction, sampling, disagreement), _result(prediction)


def predict_layers_in_process(
    networks,
    images: np.ndarray,
    sampling: float,
    k: int,
    radius: float,
    threshold: float,
    disagreement: bool = False,
    specimen_mask: bool = True,
    column_probability: bool = False,
    stop: threading.Event | None = None,
    test_time_augmentation: bool = False,
):
    """:func:`predict_layers` with the networks run in the compute process (napari stays
    responsive: see :func:`._common.in_process`).

    ``column_probability``: also an image layer of each network's column probability (sent back
    as float16). ``test_time_augmentation``: each network averaged over the 8 symmetries of the
    pixel grid. ``stop``: when set, the run ends between two networks, else after
    :data:`CANCEL_GRACE_S` by ending the compute process; then None is returned (no layers).
    """
    from napari_hrtem.plugin.widgets._common import Cancelled, in_process
    from napari_hrtem.records import Progress

    yield Progress("starting the compute process (the first run loads PyTorch)", 0, len(networks))
    try:
        prediction = yield from in_process(
            _predict_consensus,
            networks,
            images,
            sampling,
            k,
            radius,
            threshold,
            specimen_mask,
            column_probability,
            test_time_augmentation,
            _stop=stop,
            _end_after=None if stop is None else CANCEL_GRACE_S,
        )
    except Cancelled:
        return None
    if prediction is None or (stop is not None and stop.is_set()):
        return None
    return _layer_tuples(prediction, sampling, disagreement), _result(prediction)


def _predict_consensus(
    networks,
    images,
    sampling,
    k,
    radius,
    threshold,
    specimen_mask=True,
    column_probability=False,
    test_time_augmentation=False,
    stop=None,
):
    """In the compute process: :func:`napari_hrtem.api.iter_predict_consensus`, returning the
    :class:`~napari_hrtem.records.Prediction` without its images (they need not travel back), or
    None when ``stop`` (an Event) is set between two of its steps."""
    import dataclasses

    from napari_hrtem.api import check_networks, iter_predict_consensus

    check_networks(networks)  # every card fits its weights, the same classes: before any work
    steps = iter_predict_consensus(
        networks,
        images,
        sampling=sampling,
        k=k,
        radius=radius,
        threshold=threshold,
        specimen_mask=specimen_mask,
        column_probability=column_probability,
        test_time_augmentation=test_time_augmentation,
    )
    try:
        while True:
            if stop is not None and stop.is_set():
                return None
            try:
                event = next(steps)
            except StopIteration as end:
                prediction = end.value
                break
            yield event
    finally:
        steps.close()
    if stop is not None and stop.is_set():
        return None
    return dataclasses.replace(prediction, series=None)


def layer_energy(layer) -> float | None:
    """The beam energy (eV) a layer's metadata records (a file's, a simulation's), or None."""
    meta = dict(getattr(layer, "metadata", None) or {})
    energy = meta.get("energy") or (meta.get("microscope") or {}).get("energy")
    try:
        return None if energy is None else float(energy)
    except (TypeError, ValueError):
        return None


def layer_series(layer, images: np.ndarray, sampling: float):
    """A layer's images as a :class:`~napari_hrtem.io.focal_series.FocalSeries` with what its
    metadata says about the input: beam energy (eV), defocus per frame (Å; abTEM's convention for
    a simulated or loaded series, of unknown sign as a reader recorded it) and the file names (else
    the layer's name), for the networks' domain check
    (:func:`napari_hrtem.analysis.domain.domain_warnings`)."""
    from napari_hrtem.io.focal_series import ABTEM_CONVENTION, FocalSeries

    meta = dict(getattr(layer, "metadata", None) or {})
    energy = layer_energy(layer)
    defocus = meta.get("defocus")
    if defocus is None or len(defocus) != images.shape[0]:
        defocus = None
    convention = meta.get("defocus_convention") or (
        ABTEM_CONVENTION if meta.get("source") == "simulated" else "as recorded in the file (sign unknown)"
    )
    return FocalSeries(
        images,
        sampling,
        energy,
        None if defocus is None else [float(d) for d in defocus],
        list(meta.get("sources") or [layer.name]),
        {"defocus_convention": convention},
    )


#: Every open Predict widget, so that a newly trained network appears in them (:func:`refresh_networks`).
_OPEN = weakref.WeakSet()


def refresh_networks():
    """Re-read the available networks (shipped + user folder) in every open Predict widget."""
    for widget in list(_OPEN):
        try:
            widget.refresh_networks()
        except RuntimeError:  # its Qt widget was deleted with a closed viewer
            _OPEN.discard(widget)


def network_choices(available) -> list[tuple[str, str]]:
    """``(label, name)`` of each network: its origin, validation F1, beam energy and sampling."""
    from napari_hrtem.models.registry import network_info

    return [(network_info(net).label, name) for name, net in available.items()]


def compact_list(select, rows: int = 5) -> None:
    """Show a network list ``rows`` rows high (it scrolls beyond), not half the dock."""
    native = select.native
    row = max(native.sizeHintForRow(0), native.fontMetrics().height() + 2)  # -1 while the list is empty
    native.setMaximumHeight(row * rows + 2 * native.frameWidth() + 18)  # + a horizontal scroll bar


def shipped_names(available, energy: float | None = None) -> list[str]:
    """The names of the shipped set for a beam energy (eV; None: 50 kV), ticked by default (a user's
    own network only when the user ticks it): the set trained nearest to the energy
    (:func:`napari_hrtem.models.registry.shipped_networks`)."""
    from napari_hrtem.models.registry import NetworkError, shipped_networks

    try:
        return [net.name for net in shipped_networks(energy, available)]
    except NetworkError:  # no shipped network installed: nothing ticked (the list says what there is)
        return []


class PredictWidget(WorkerWidget):
    """Label every atomic column Mo / S2 / S with several networks and show where they agree."""

    def __init__(self, napari_viewer):
        from magicgui.widgets import Container

        from napari_hrtem.api import available_networks

        self.available = available_networks()
        shipped = shipped_names(self.available)
        self.networks = Select(
            label="networks",
            choices=network_choices(self.available),
            value=shipped,
            tooltip="shipped networks are ticked; tick your own to add them (hover: the model card)",
        )
        compact_list(self.networks)
        self.k = SpinBox(value=0, min=0, max=20, label="votes needed (0 = majority)")
        self.radius = FloatSpinBox(value=0.5, min=0.05, max=3.0, step=0.05, label="agreement radius (Å)")
        self.threshold = FloatSpinBox(
            value=0.0,
            min=0.0,
            max=0.99,
            step=0.05,
            label="column probability (0 = each network's own)",
            tooltip="threshold for calling a column; 0: each network's value from its model "
            "card, chosen on its validation set",
        )
        self.disagreement = CheckBox(
            value=True,
            text="show where the networks disagree",
            tooltip="the 'disagreement' layer: orange, sites some networks miss; magenta, sites given different "
            "classes (features 'kind' and 'says'); inspect them in the Compare widget",
        )
        self.specimen = CheckBox(
            value=True,
            text="only sites on the specimen",
            tooltip="drop the sites in vacuum and on amorphous material (no lattice); the mask is shown as the "
            "translucent 'specimen mask' layer",
        )
        self.probability_maps = CheckBox(
            value=False,
            text="show probability maps",
            tooltip="an image layer '<network> column probability' per network: 1 - P(background) in [0, 1] at the "
            "network's sampling (Å), over the focal series (the first one shown, the others hidden)",
        )
        self.symmetries = CheckBox(
            value=False,
            text="average over 8 symmetries (slower, more accurate)",
            tooltip="test-time augmentation: each network also sees the series rotated by 90° and mirrored, and "
            "its outputs are averaged; about 8x the network time, fewer misclassified columns (single S most)",
        )
        self.run = PushButton(text="Run networks")
        self.cancel = PushButton(text="Cancel", enabled=False)
        buttons = Container(widgets=[self.run, self.cancel], layout="horizontal", labels=False)
        super().__init__(
            napari_viewer,
            widgets=[
                self.networks,
                self.k,
                self.radius,
                self.threshold,
                self.disagreement,
                self.specimen,
                self.probability_maps,
                self.symmetries,
                buttons,
            ],
            layer_choice="series",
        )
        self.extend([self.progress, self.status])
        self.run.changed.connect(self.start)
        self.cancel.changed.connect(self.stop)
        self._energy_set: list[str] | None = None  # the shipped set last ticked for a series' energy
        self.layer.changed.connect(self._tick_for_energy)
        self._tick_for_energy()
        self.last_event = None  # {"results", "consensus", "seconds", "prediction"} of the last run
        self.prediction = None  # its napari_hrtem.records.Prediction
        self.stop_event = threading.Event()
        self._t0 = None  # time.perf_counter() at Run
        self._stage = ""
        from qtpy.QtCore import QTimer

        self._clock = QTimer(self.native)  # the status' seconds while a run goes on
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._tick)
        self._set_tooltips()
        _OPEN.add(self)
        import pandas  # noqa: F401 - napari's Points layers need it: imported at docking, not with the results

        from napari_hrtem.plugin.widgets._common import collect_after_imports

        collect_after_imports()

    def _set_tooltips(self):
        """Each network's model card (:attr:`~napari_hrtem.models.registry.NetworkInfo.details`) on hover."""
        from napari_hrtem.models.registry import network_info

        native = self.networks.native
        for row, name in enumerate(self.networks.choices):  # the rows' values, in order
            item = native.item(row)
            if item is not None and name in self.available:
                item.setToolTip(network_info(self.available[name]).details)

    def _tick_for_energy(self, *_):
        """Tick the shipped set for the chosen series' beam energy when it is another set than the
        last series' (so the user's own choice stays while the set does not change)."""
        from napari_hrtem.models.registry import DEFAULT_ENERGY_KV

        name = self.layer.value
        layer = self.viewer.layers[name] if name and name in self.viewer.layers else None
        energy = None if layer is None else layer_energy(layer)
        ticked = shipped_names(self.available, energy)
        if ticked == self._energy_set:
            return
        self._energy_set = ticked
        own = [n for n in self.networks.value if n in self.available and self.available[n].origin != "shipped"]
        self.networks.value = ticked + own
        if layer is not None and self.worker is None:
            kv = f"unknown ({DEFAULT_ENERGY_KV:g} kV networks)" if energy is None else f"{energy / 1e3:g} kV"
            self.status.value = f"beam energy {kv}: ticked {', '.join(ticked)}"

    def refresh_networks(self):
        """Re-read the networks; the current choice is kept, and a network that appeared (one just
        trained, a user card copied in) is listed but not ticked."""
        from napari_hrtem.api import available_networks

        chosen = set(self.networks.value)
        self.available = available_networks()
        self.networks.choices = network_choices(self.available)
        self.networks.value = [n for n in self.available if n in chosen]
        self._set_tooltips()

    def start(self):
        """Run the chosen networks on the chosen focal series in a worker thread."""
        if self.worker is not None:
            self.status.value = "a prediction is running: wait for it or cancel it first"
            return None
        series = self._chosen_series()
        if series is None:
            return None
        chosen = [self.available[n] for n in self.networks.value if n in self.available]
        if not chosen:
            self.status.value = "choose at least one network"
            return None
        layer, sampling = series
        self._series_translate = tuple(layer.translate[-2:])  # e.g. a drift-aligned, cropped series
        from napari_hrtem.api import check_series

        try:  # bad input: say so at once, name the layer, start nothing
            images = check_series(layer.data, chosen, sampling=sampling, where=layer.name)
            images = layer_series(layer, images, sampling)  # beam energy, defocus: checked against the networks
        except ValueError as exc:
            self._errored(exc)
            return None
        self.progress.max = len(chosen)
        self.stop_event = threading.Event()
        self._t0 = time.perf_counter()
        self._stage = "starting the compute process (the first run loads PyTorch)"
        worker = self._start(
            predict_layers_in_process,
            chosen,
            images,
            sampling,
            self.k.value or None,
            self.radius.value,
            (self.threshold.value or None),
            bool(self.disagreement.value),
            bool(self.specimen.value),
            bool(self.probability_maps.value),
            self.stop_event,
            bool(self.symmetries.value),
            on_yield=self._progress,
            on_return=self._done,
            busy=f"{self._stage}…",
        )
        worker.errored.connect(lambda exc: self._say_time(f"error: {exc}"))
        self.run.enabled, self.cancel.enabled = False, True
        self._clock.start()
        return worker

    def stop(self):
        """Cancel the run: it stops between two networks, else its compute process is ended after
        :data:`CANCEL_GRACE_S`; no layer is added or changed."""
        if self.worker is None or getattr(self, "_adding", False):
            return
        self.stop_event.set()
        self.cancel.enabled = False
        self._stage = "cancelling"
        self._tick()

    def _elapsed(self) -> float:
        return 0.0 if self._t0 is None else time.perf_counter() - self._t0

    def _tick(self):
        """The running stage with the seconds spent (every second while a run goes on)."""
        if self.worker is not None and self._stage and not getattr(self, "_adding", False):
            self.status.value = f"{self._stage}… {self._elapsed():.0f} s"

    def _say_time(self, text: str):
        self._stage = ""  # the clock no longer writes over the status
        self.status.value = f"{text} (after {self._elapsed():.0f} s)"

    def _errored(self, exc):
        self._stage = ""
        super()._errored(exc)
        if self.worker is not None:  # a failure returned by the run: say when
            self._say_time(self.status.value)

    def _finished(self):
        if getattr(self, "_adding", False):
            self.progress.visible = False
            return
        self._clock.stop()
        super()._finished()
        self.run.enabled, self.cancel.enabled = True, False

    def _progress(self, event):
        self.progress.max = event.total
        self.progress.value = event.done
        if self.stop_event.is_set():
            return
        if event.info.get("running"):  # "running unet": which of how many
            self._stage = f"{event.stage} ({event.done + 1}/{event.total})"
        elif event.info.get("network"):  # "<name> done": the next network's event follows, else the consensus
            self._stage = f"{event.stage} ({event.done}/{event.total}); consensus, specimen mask"
        else:
            self._stage = event.stage
        self._tick()

    def _done(self, result):
        from napari_hrtem.plugin.widgets._common import add_layer_tuples_spread

        seconds = self._elapsed()
        self._stage = ""  # the clock no longer writes over the status
        if result is None:  # cancelled: nothing came back, nothing is changed
            self.status.value = f"cancelled after {seconds:.0f} s; no layer changed"
            return
        tuples, event = result
        translate = getattr(self, "_series_translate", (0.0, 0.0))
        if any(translate):  # sites lie over the series they were found on (an aligned series' reference frame)
            tuples = [(data, {**kwargs, "translate": translate}, kind) for data, kwargs, kind in tuples]
        self.last_event = event
        self.prediction = event["prediction"]
        self._adding = True  # busy (self.worker kept) until the layers are in
        self.cancel.enabled = False  # the results are in: they are being shown

        def added():
            self._adding = False
            super(PredictWidget, self)._finished()
            self._clock.stop()
            self.run.enabled, self.cancel.enabled = True, False

        add_layer_tuples_spread(self.viewer, tuples, then=added)
        from napari_hrtem.analysis.uncertainty import describe_agreement
        from napari_hrtem.plugin.layers import DISAGREEMENT

        shown = any(kwargs.get("name") == DISAGREEMENT for _, kwargs, _ in tuples)
        self.status.value = (
            describe_agreement(event["consensus"])
            + (": see the disagreement layer" if shown else "")
            + f"; done in {seconds:.0f} s"
        )
        self._warn(list(getattr(self.prediction, "warnings", None) or []))

    def _warn(self, warnings: list[str]):
        """Input outside the networks' training domain: in the status line and as napari notifications."""
        if not warnings:
            return
        from napari.utils.notifications import show_warning

        self.status.value = "\n".join([self.status.value, *(f"warning: {w}" for w in warnings)])
        for text in warnings:
            show_warning(text)
