"""Compare dock widget: the networks' consensus from the chosen networks, where they disagree,
and what every network says at a clicked place.

It works on the Points layers the Predict widget made (``"<network> <class>"``): choosing
networks recomputes the consensus layers (:func:`napari_hrtem.api.consensus`, the size of
a site grows with its votes) and the ``disagreement`` layer (sites some networks miss, or give
different classes, :func:`napari_hrtem.api.disagreements`). With *inspect* on, a click on
the image runs every network on a small window around the place and lists its class
probabilities there (:func:`napari_hrtem.api.inspect_site`).
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, FloatSpinBox, PushButton, Select, SpinBox, Table

from napari_hrtem.plugin.layers import DISAGREEMENT, disagreement_layer_data
from napari_hrtem.plugin.widgets._common import WorkerWidget, add_layer_tuples, site_sources, sites_of

NOT_NETWORKS = ("consensus", "truth", "labels", DISAGREEMENT)


def compare_layers(results: dict, k: int | None, radius: float, sampling: float) -> tuple[list[tuple], object]:
    """Consensus Points per class and the disagreement layer, as layer tuples."""
    from napari_hrtem.api import consensus, disagreements
    from napari_hrtem.plugin.layers import points_layer_data

    cons = consensus(results, k=k, radius=radius)
    yx, kind, says = disagreements(results, radius=radius)
    tuples = points_layer_data(cons, sampling, "consensus")
    tuples.append(disagreement_layer_data(yx, kind, says, sampling))
    return tuples, cons


def what_networks_say(networks, images: np.ndarray, sampling: float, yx) -> dict:
    """``{network: {"probabilities", "site"}}`` at a place ``yx`` (Å): :func:`napari_hrtem.api.inspect_site`."""
    from napari_hrtem.api import inspect_site

    return inspect_site(networks, images, yx, sampling=sampling)


class CompareWidget(WorkerWidget):
    """Choose the networks of the consensus, see where they disagree, inspect a site."""

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.networks = Select(label="networks", choices=self._network_choices)
        self.k = SpinBox(value=0, min=0, max=20, label="votes needed (0 = majority)")
        self.radius = FloatSpinBox(value=0.5, min=0.05, max=3.0, step=0.05, label="agreement radius (Å)")
        self.run = PushButton(text="Update consensus")
        self.inspect = CheckBox(value=True, text="click a place to see what every network says")
        self.table = Table(value={"data": [], "columns": ["Mo", "S2", "S", "bg", "nearest site"]})
        self.table.native.setMinimumHeight(150)
        from qtpy.QtWidgets import QStyledItemDelegate

        self.table.native.setItemDelegate(QStyledItemDelegate(self.table.native))  # text as written, 3 decimals
        super().__init__(
            napari_viewer, widgets=[self.networks, self.k, self.radius, self.run, self.inspect], layer_choice="series"
        )
        self.extend([self.table, self.progress, self.status])
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda e: self._refresh_networks())
        self.networks.changed.connect(lambda *_: self.start())
        self.run.changed.connect(self.start)
        self.viewer.mouse_drag_callbacks.append(self._on_click)
        self.consensus = None
        self.inspected = None
        self._inspect_worker = None

    def _network_choices(self, *_):
        return [
            n
            for n, layers in site_sources(self.viewer).items()
            if n not in NOT_NETWORKS and all(layer.metadata.get("site_class") for layer in layers)
        ]

    def _refresh_networks(self):
        old = set(self.networks.choices)
        chosen = set(self.networks.value)
        with self.networks.changed.blocked():
            self.networks.reset_choices()
            self.networks.value = [n for n in self.networks.choices if n in chosen or n not in old]

    def start(self):
        """Recompute the consensus and the disagreements of the chosen networks (worker)."""
        sources = site_sources(self.viewer)
        names = [n for n in self.networks.value if n in sources]
        if not names:
            self.status.value = "choose at least one network (run Predict first)"
            return None
        if self.worker is not None:
            self.worker.returned.connect(lambda *_: self.start())  # run again with the new choice
            return None
        k = self.k.value or None
        if k is not None and k > len(names):
            self.status.value = f"votes needed ({k}) is more than the {len(names)} chosen network(s)"
            return None
        results = {n: sites_of(sources[n]) for n in names}
        sampling = float(sources[names[0]][0].scale[-1])
        return self._start(
            compare_layers,
            results,
            k,
            self.radius.value,
            sampling,
            on_return=self._done,
            busy=f"consensus of {len(names)} network(s)…",
        )

    def _done(self, result):
        tuples, cons = result
        add_layer_tuples(self.viewer, tuples)
        self.consensus = cons
        n_dis = len(tuples[-1][0])
        self.status.value = (
            f"consensus of {cons.meta['n']} (≥{cons.meta['k']} votes): {len(cons)} sites; "
            f"{n_dis} disputed (orange: missed by some, magenta: class differs)"
        )

    # inspecting -------------------------------------------------------------------------------
    def _on_click(self, viewer, event):
        if not self.inspect.value or event.type != "mouse_press":
            return
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if not dragged:
            self.inspect_at(np.asarray(event.position)[-2:])

    def inspect_at(self, yx):
        """Run every chosen network around ``yx`` (Å) and list its class probabilities there."""
        from napari.qt.threading import create_worker

        from napari_hrtem.api import available_networks

        if self._inspect_worker is not None:
            return None
        chosen = self._chosen_series()
        if chosen is None:
            return None
        layer, sampling = chosen
        available = available_networks()
        nets = [available[n] for n in (self.networks.value or self.networks.choices) if n in available]
        if not nets:
            self.status.value = "none of the chosen networks is available to run"
            return None
        self.status.value = f"asking {len(nets)} network(s) about ({yx[0]:.1f}, {yx[1]:.1f}) Å…"
        worker = create_worker(
            what_networks_say,
            nets,
            np.asarray(layer.data, np.float32),
            sampling,
            tuple(map(float, yx)),
            _start_thread=False,
        )

        def done(answers):
            self.inspected = (tuple(map(float, yx)), answers)
            rows = []
            for ans in answers.values():
                p, site = ans["probabilities"], ans["site"]
                rows.append(
                    [f"{p.get(c, float('nan')):.2f}" for c in ("Mo", "S2", "S", "background")]
                    + ["-" if site is None else f"{site['class']} at {site['distance']:.2f} Å"]
                )
            self.table.value = {
                "data": rows,
                "index": list(answers),
                "columns": ["Mo", "S2", "S", "bg", "nearest site"],
            }
            self.table.native.resizeColumnsToContents()
            self.status.value = f"what the networks say at ({yx[0]:.1f}, {yx[1]:.1f}) Å"

        def failed(exc):
            self.status.value = f"could not inspect: {exc}"

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(lambda: setattr(self, "_inspect_worker", None))
        self._inspect_worker = worker
        worker.start()
        return worker
