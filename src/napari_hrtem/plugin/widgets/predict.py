"""Predict dock widget: run the chosen networks -> Points per class per network + consensus, and
(optionally) the ``disagreement`` layer of the sites the networks dispute.

The consensus Points carry the ensemble's per-site figures as features (each network's column
probability, ``p_column_mean``, ``p_column_std``, ...; :mod:`napari_hrtem.analysis.uncertainty`);
the status line gives the unanimous, majority and disputed counts.
"""

from __future__ import annotations

import weakref

import numpy as np
from magicgui.widgets import CheckBox, FloatSpinBox, PushButton, Select, SpinBox

from napari_hrtem.plugin.widgets._common import WorkerWidget


def _layer_tuples(prediction, sampling: float, disagreement: bool = False) -> list[tuple]:
    """Points layer tuples: every network (hidden) and the consensus; with ``disagreement`` the
    ``disagreement`` layer (:func:`napari_hrtem.analysis.comparison.disagreements`, as the
    Compare widget shows it); the translucent ``specimen mask`` Labels layer when the prediction
    has one (first, so that the points lie over it)."""
    from napari_hrtem.plugin.layers import disagreement_layer_data, points_layer_data, specimen_layer_data

    tuples = [] if getattr(prediction, "specimen", None) is None else [specimen_layer_data(prediction.specimen)]
    for name, sites in prediction.results.items():
        tuples += points_layer_data(sites, sampling, name, visible=False)
    tuples += points_layer_data(prediction.consensus, sampling, "consensus")
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
):
    """:func:`predict_layers` with the networks run in the compute process (napari stays
    responsive: see :func:`._common.in_process`)."""
    from napari_hrtem.plugin.widgets._common import in_process
    from napari_hrtem.records import Progress

    yield Progress("starting the compute process", 0, len(networks))
    prediction = yield from in_process(
        _predict_consensus, networks, images, sampling, k, radius, threshold, specimen_mask
    )
    return _layer_tuples(prediction, sampling, disagreement), _result(prediction)


def _predict_consensus(networks, images, sampling, k, radius, threshold, specimen_mask=True):
    """In the compute process: :func:`napari_hrtem.api.iter_predict_consensus`, returning the
    :class:`~napari_hrtem.records.Prediction` without its images (they need not travel back)."""
    import dataclasses

    from napari_hrtem.api import check_networks, iter_predict_consensus

    check_networks(networks)  # every card fits its weights, the same classes: before any work
    prediction = yield from iter_predict_consensus(
        networks, images, sampling=sampling, k=k, radius=radius, threshold=threshold, specimen_mask=specimen_mask
    )
    return dataclasses.replace(prediction, series=None)


def layer_series(layer, images: np.ndarray, sampling: float):
    """A layer's images as a :class:`~napari_hrtem.io.focal_series.FocalSeries` with what its
    metadata says about the input: beam energy (eV), defocus per frame (Å; abTEM's convention for
    a simulated or loaded series, of unknown sign as a reader recorded it) and the file names (else
    the layer's name), for the networks' domain check
    (:func:`napari_hrtem.analysis.domain.domain_warnings`)."""
    from napari_hrtem.io.focal_series import ABTEM_CONVENTION, FocalSeries

    meta = dict(getattr(layer, "metadata", None) or {})
    energy = meta.get("energy") or (meta.get("microscope") or {}).get("energy")
    defocus = meta.get("defocus")
    if defocus is None or len(defocus) != images.shape[0]:
        defocus = None
    convention = meta.get("defocus_convention") or (
        ABTEM_CONVENTION if meta.get("source") == "simulated" else "as recorded in the file (sign unknown)"
    )
    return FocalSeries(
        images,
        sampling,
        None if energy is None else float(energy),
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


class PredictWidget(WorkerWidget):
    """Label every atomic column Mo / S2 / S with several networks and show where they agree."""

    def __init__(self, napari_viewer):
        from napari_hrtem.api import available_networks

        self.available = available_networks()
        self.networks = Select(label="networks", choices=list(self.available), value=list(self.available))
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
        self.run = PushButton(text="Run networks")
        super().__init__(
            napari_viewer,
            widgets=[self.networks, self.k, self.radius, self.threshold, self.disagreement, self.specimen, self.run],
            layer_choice="series",
        )
        self.extend([self.progress, self.status])
        self.run.changed.connect(self.start)
        self.last_event = None  # {"results", "consensus", "seconds", "prediction"} of the last run
        self.prediction = None  # its napari_hrtem.records.Prediction
        _OPEN.add(self)
        import pandas  # noqa: F401 - napari's Points layers need it: imported at docking, not with the results

        from napari_hrtem.plugin.widgets._common import collect_after_imports

        collect_after_imports()

    def refresh_networks(self):
        """Re-read the networks (a new one is chosen; the current choice is kept)."""
        from napari_hrtem.api import available_networks

        old, chosen = set(self.available), set(self.networks.value)
        self.available = available_networks()
        self.networks.choices = list(self.available)
        self.networks.value = [n for n in self.available if n in chosen or n not in old]

    def start(self):
        """Run the chosen networks on the chosen focal series in a worker thread."""
        series = self._chosen_series()
        if series is None:
            return None
        chosen = [self.available[n] for n in self.networks.value]
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
        return self._start(
            predict_layers_in_process,
            chosen,
            images,
            sampling,
            self.k.value or None,
            self.radius.value,
            (self.threshold.value or None),
            bool(self.disagreement.value),
            bool(self.specimen.value),
            on_yield=self._progress,
            on_return=self._done,
            busy=f"running {len(chosen)} network(s)…",
        )

    def _finished(self):
        if getattr(self, "_adding", False):
            self.progress.visible = False
            return
        super()._finished()

    def _progress(self, event):
        self.progress.max = event.total
        self.progress.value = event.done
        self.status.value = f"{event.stage}…" if event.done == 0 else f"{event.stage} ({event.done}/{event.total})"

    def _done(self, result):
        from napari_hrtem.plugin.widgets._common import add_layer_tuples_spread

        tuples, event = result
        translate = getattr(self, "_series_translate", (0.0, 0.0))
        if any(translate):  # sites lie over the series they were found on (an aligned series' reference frame)
            tuples = [(data, {**kwargs, "translate": translate}, kind) for data, kwargs, kind in tuples]
        self.last_event = event
        self.prediction = event["prediction"]
        self._adding = True  # busy (self.worker kept) until the layers are in

        def added():
            self._adding = False
            super(PredictWidget, self)._finished()

        add_layer_tuples_spread(self.viewer, tuples, then=added)
        from napari_hrtem.analysis.uncertainty import describe_agreement
        from napari_hrtem.plugin.layers import DISAGREEMENT

        shown = any(kwargs.get("name") == DISAGREEMENT for _, kwargs, _ in tuples)
        self.status.value = describe_agreement(event["consensus"]) + (": see the disagreement layer" if shown else "")
        self._warn(list(getattr(self.prediction, "warnings", None) or []))

    def _warn(self, warnings: list[str]):
        """Input outside the networks' training domain: in the status line and as napari notifications."""
        if not warnings:
            return
        from napari.utils.notifications import show_warning

        self.status.value = "\n".join([self.status.value, *(f"warning: {w}" for w in warnings)])
        for text in warnings:
            show_warning(text)
