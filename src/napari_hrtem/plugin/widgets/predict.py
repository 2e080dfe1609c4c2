"""Predict dock widget: run the chosen networks -> Points per class per network + consensus."""

from __future__ import annotations

import weakref

import numpy as np
from magicgui.widgets import FloatSpinBox, PushButton, Select, SpinBox

from napari_hrtem.plugin.widgets._common import WorkerWidget


def _layer_tuples(prediction, sampling: float) -> list[tuple]:
    """Points layer tuples: every network (hidden) and the consensus."""
    from napari_hrtem.plugin.layers import points_layer_data

    tuples = []
    for name, sites in prediction.results.items():
        tuples += points_layer_data(sites, sampling, name, visible=False)
    return tuples + points_layer_data(prediction.consensus, sampling, "consensus")


def _result(prediction) -> dict:
    """The widget's record of a run: ``{"results", "consensus", "seconds", "prediction"}``."""
    return dict(
        results=prediction.results,
        consensus=prediction.consensus,
        seconds=prediction.seconds,
        prediction=prediction,
    )


def predict_layers(networks, images: np.ndarray, sampling: float, k: int, radius: float, threshold: float):
    """Generator: :class:`~napari_hrtem.records.Progress` events of
    :func:`napari_hrtem.api.iter_predict_consensus`, then Points layer tuples for every network and
    the consensus, with the run's record."""
    from napari_hrtem.api import iter_predict_consensus

    prediction = yield from iter_predict_consensus(
        networks, images, sampling=sampling, k=k, radius=radius, threshold=threshold
    )
    return _layer_tuples(prediction, sampling), _result(prediction)


def predict_layers_in_process(networks, images: np.ndarray, sampling: float, k: int, radius: float, threshold: float):
    """:func:`predict_layers` with the networks run in the compute process (napari stays
    responsive: see :func:`._common.in_process`)."""
    from napari_hrtem.plugin.widgets._common import in_process
    from napari_hrtem.records import Progress

    yield Progress("starting the compute process", 0, len(networks))
    prediction = yield from in_process(_predict_consensus, networks, images, sampling, k, radius, threshold)
    return _layer_tuples(prediction, sampling), _result(prediction)


def _predict_consensus(networks, images, sampling, k, radius, threshold):
    """In the compute process: :func:`napari_hrtem.api.iter_predict_consensus`, returning the
    :class:`~napari_hrtem.records.Prediction` without its images (they need not travel back)."""
    import dataclasses

    from napari_hrtem.api import check_networks, iter_predict_consensus

    check_networks(networks)  # every card fits its weights, the same classes: before any work
    prediction = yield from iter_predict_consensus(
        networks, images, sampling=sampling, k=k, radius=radius, threshold=threshold
    )
    return dataclasses.replace(prediction, series=None)


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
        self.run = PushButton(text="Run networks")
        super().__init__(
            napari_viewer, widgets=[self.networks, self.k, self.radius, self.threshold, self.run], layer_choice="series"
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
        cons = event["consensus"]
        self.status.value = f"consensus of {cons.meta['n']} (≥{cons.meta['k']} votes): {len(cons)} sites " + ", ".join(
            f"{c} {n}" for c, n in cons.counts().items()
        )
