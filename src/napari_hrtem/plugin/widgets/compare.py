"""Compare dock widget: the networks' consensus from the chosen networks, where they disagree,
a review of the disputed sites one by one, and what every network says at a clicked place.

It works on the Points layers the Predict widget made (``"<network> <class>"``): choosing
networks recomputes the consensus layers (:func:`napari_hrtem.api.consensus`, the size of
a site grows with its votes) and the ``disagreement`` layer (sites some networks miss, or give
different classes, :func:`napari_hrtem.api.disagreements`).

Review: *Previous* / *Next disputed* (keys ``Shift+N`` / ``N``) step through the disagreement
layer in reading order or most disputed first (:func:`napari_hrtem.io.tables.review_order`),
centre and zoom the view on the site, ring it and say what every network says there; *Export
disputed sites…* writes the list as CSV (:func:`napari_hrtem.io.tables.write_disagreements_csv`,
positions in Å). *Marker size* sets the diameter in Å of the markers of every Points layer of
the plugin (they never shrink below a few screen pixels, so they stay visible at full view).

*Inspect on click* is a mode, off by default: while it is on, a click on the image runs every
chosen network on a small window around the place, in the compute process (napari's process never
imports torch), and lists its class probabilities there (:func:`napari_hrtem.api.inspect_site`).
It turns itself off when the widget is hidden (another tab chosen) or closed, and a click
while a layer is being edited (a Points layer in add or select mode) asks nothing.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, PushButton, Select, SpinBox, Table

from napari_hrtem.io.tables import ORDERS
from napari_hrtem.plugin.layers import DISAGREEMENT, MARKER_SIZE, disagreement_layer_data
from napari_hrtem.plugin.widgets._common import WorkerWidget, add_layer_tuples, csv_path, site_sources, sites_of

NOT_NETWORKS = ("consensus", "truth", "labels", DISAGREEMENT)

#: Name of the layer that rings the disputed site under review.
CURRENT = "disputed site"

#: Keys of the review (not used by napari's own shortcuts nor by the Labels widget's class keys).
NEXT_KEY, PREVIOUS_KEY = "N", "Shift-N"


def compare_layers(
    results: dict, k: int | None, radius: float, sampling: float, combiner=None
) -> tuple[list[tuple], object]:
    """Consensus Points per class, the disagreement layer and the consensus sites in conflict with
    the lattice (``sublattice conflicts``, for classes of a known 2H-MX2 material), as layer tuples.
    The consensus is the learned rule with ``combiner`` (that of the chosen networks,
    :func:`combiner_of`), else the sum rule, as Predict's."""
    from napari_hrtem.analysis.sublattice import mark_sublattice_conflicts
    from napari_hrtem.api import consensus, disagreements
    from napari_hrtem.plugin.layers import points_layer_data, sublattice_conflict_layer_data

    rule = "learned" if combiner is not None else "sum"
    cons = consensus(results, k=k, radius=radius, rule=rule, combiner=combiner)
    yx, kind, says = disagreements(results, radius=radius)
    mark_sublattice_conflicts(cons)  # the material of its class names
    tuples = points_layer_data(cons, sampling, "consensus")
    tuples.append(disagreement_layer_data(yx, kind, says, sampling))
    tuples.append(sublattice_conflict_layer_data(cons, sampling))
    return tuples, cons


def combiner_of(names: list[str]):
    """The shipped combiner of exactly these networks (by name, as Predict's layers are named), or None:
    Compare's consensus is then Predict's (:func:`napari_hrtem.analysis.combiner.choose_rule`)."""
    from napari_hrtem.analysis.combiner import shipped_combiner
    from napari_hrtem.models.registry import available_networks

    known = available_networks()
    if not names or any(name not in known for name in names):
        return None
    return shipped_combiner([known[name] for name in names])


def what_networks_say(networks, images: np.ndarray, sampling: float, yx) -> dict:
    """``{network: {"probabilities", "site"}}`` at a place ``yx`` (Å): :func:`napari_hrtem.api.inspect_site`."""
    from napari_hrtem.api import inspect_site

    return inspect_site(networks, images, yx, sampling=sampling)


def _what_networks_say_here(networks, images, sampling, yx):
    """In the compute process: :func:`what_networks_say` as the generator :func:`._common.in_process` runs."""
    return what_networks_say(networks, images, sampling, yx)
    yield  # a generator function (no events)


def what_networks_say_in_process(networks, images: np.ndarray, sampling: float, yx):
    """Worker generator: :func:`what_networks_say` run in the compute process (torch stays out of
    napari's process; see :func:`._common.in_process`)."""
    from napari_hrtem.plugin.widgets._common import in_process

    return (yield from in_process(_what_networks_say_here, networks, images, sampling, yx))


def plugin_points_layers(viewer) -> list:
    """The Points layers the plugin made (those with ``metadata["marker_size"]``, Å)."""
    import napari.layers

    return [
        layer
        for layer in viewer.layers
        if isinstance(layer, napari.layers.Points) and layer.metadata.get("marker_size")
    ]


def set_marker_size(layer, size: float) -> None:
    """Markers of one plugin Points layer at ``size`` Å (the default :data:`MARKER_SIZE`); the
    layer's markers keep their sizes relative to each other (a consensus: by votes) and to the
    other layers (a disagreement ring stays wider than the sites it rings)."""
    meta = dict(layer.metadata)
    current = float(meta["marker_size"])
    default = float(meta.get("marker_default", current))
    new = size * default / MARKER_SIZE
    if np.isclose(new, current):
        return
    sampling = float(layer.scale[-1])
    if len(layer.data):
        layer.size = np.asarray(layer.size, float) * (new / current)
    layer.current_size = new / sampling
    layer.metadata = dict(meta, marker_size=new, marker_default=default)


def _camera(viewer):
    scene = getattr(viewer, "scene", None)  # napari >= 0.9; viewer.camera before
    return scene.camera if scene is not None else viewer.camera


class CompareWidget(WorkerWidget):
    """Choose the networks of the consensus, review where they disagree, inspect a site."""

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.networks = Select(label="networks", choices=self._network_choices)
        from napari_hrtem.plugin.widgets.predict import compact_list

        compact_list(self.networks)
        self.k = SpinBox(value=0, min=0, max=20, label="votes needed (0 = majority)")
        self.radius = FloatSpinBox(value=0.5, min=0.05, max=3.0, step=0.05, label="agreement radius (Å)")
        self.run = PushButton(text="Update consensus")
        # review of the disputed sites
        self.order = ComboBox(label="disputed sites", choices=list(ORDERS), value=ORDERS[0])
        self.order.tooltip = "the order of Previous / Next: reading order (top to bottom), or most disputed first"
        self.field = FloatSpinBox(value=30.0, min=5.0, max=1000.0, step=5.0, label="zoom to field (Å)")
        self.previous_button = PushButton(text="◀ Previous")
        self.next_button = PushButton(text="Next ▶")
        self.previous_button.tooltip = "previous disputed site: centre and zoom the view on it (key Shift+N)"
        self.next_button.tooltip = "next disputed site: centre and zoom the view on it (key N)"
        self.export_button = PushButton(text="Export disputed sites…")
        self.export_button.tooltip = "write the disputed sites as CSV: position (Å) and what every network says"
        steps = Container(
            widgets=[self.previous_button, self.next_button],
            layout="horizontal",
            labels=False,
            label="review (keys Shift+N / N)",
        )
        self.marker = FloatSpinBox(value=MARKER_SIZE, min=0.1, max=10.0, step=0.1, label="marker size (Å)")
        self.marker.tooltip = (
            "diameter of the site markers of every napari-hrtem Points layer (never under 5 screen px)"
        )
        # inspection: a mode, off by default
        self.inspect = PushButton(text="Inspect on click")
        self.inspect.native.setCheckable(True)
        self.inspect.tooltip = (
            "while on, a click on the image asks every chosen network what it sees there "
            "(in the compute process); off by default, and off again when this widget is hidden"
        )
        self.table = Table(value={"data": [], "columns": ["Mo", "S2", "S", "bg", "nearest site"]})
        self.table.native.setMinimumHeight(150)
        from qtpy.QtWidgets import QStyledItemDelegate

        self.table.native.setItemDelegate(QStyledItemDelegate(self.table.native))  # text as written, 3 decimals
        super().__init__(
            napari_viewer,
            widgets=[
                self.networks,
                self.k,
                self.radius,
                self.run,
                self.order,
                self.field,
                steps,
                self.export_button,
                self.marker,
                self.inspect,
            ],
            layer_choice="series",
        )
        self.extend([self.table, self.progress, self.status])
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda e: self._refresh_networks())
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.networks.changed.connect(lambda *_: self.start())
        self.run.changed.connect(self.start)
        self.previous_button.changed.connect(lambda *_: self.step_disputed(-1))
        self.next_button.changed.connect(lambda *_: self.step_disputed(1))
        self.export_button.changed.connect(lambda *_: self.export_disputed())
        self.order.changed.connect(lambda *_: self._reset_review())
        self.marker.changed.connect(lambda *_: self.apply_marker_size())
        self.inspect.native.toggled.connect(self._set_inspecting)
        self._bind_keys()
        self._watch_visibility()
        self.consensus = None
        self.inspected = None
        self._inspect_worker = None
        self._review: dict = {}

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
            combiner_of(names),
            on_return=self._done,
            busy=f"consensus of {len(names)} network(s)…",
        )

    def _done(self, result):
        tuples, cons = result
        add_layer_tuples(self.viewer, tuples)
        self.apply_marker_size()
        self.consensus = cons
        n_dis = len(tuples[-1][0])
        self.status.value = (
            f"consensus of {cons.meta['n']} (≥{cons.meta['k']} votes, {cons.meta['rule']} rule): {len(cons)} sites; "
            f"{n_dis} disputed (orange: missed by some, magenta: class differs); "
            f"Next ▶ (key N) steps through them"
        )

    # marker size ------------------------------------------------------------------------------
    def apply_marker_size(self, size: float | None = None):
        """Set the marker diameter (Å) of every Points layer of the plugin (the *marker size* control)."""
        if size is not None:
            with self.marker.changed.blocked():
                self.marker.value = float(size)
        for layer in plugin_points_layers(self.viewer):
            set_marker_size(layer, float(self.marker.value))

    def _on_inserted(self, event):
        layer = getattr(event, "value", None)
        if layer is not None and layer in plugin_points_layers(self.viewer):
            set_marker_size(layer, float(self.marker.value))

    # review of the disputed sites -------------------------------------------------------------
    def _disagreement_layer(self):
        import napari.layers

        layer = self.viewer.layers[DISAGREEMENT] if DISAGREEMENT in self.viewer.layers else None
        if not isinstance(layer, napari.layers.Points) or "says" not in layer.features.columns:
            return None
        return layer

    def disputed_sites(self):
        """``(yx Å, kind, says, layer)`` of the ``disagreement`` layer (positions as
        :func:`._common.sites_of` reads them), or None when there is no such layer."""
        layer = self._disagreement_layer()
        if layer is None:
            return None
        yx = np.asarray(layer.data, float).reshape(-1, 2)[:, -2:] * np.asarray(layer.scale, float)[-2:]
        kind = [str(k) for k in layer.features["kind"]] if "kind" in layer.features.columns else [""] * len(yx)
        says = [str(s) for s in layer.features["says"]]
        return yx, kind, says, layer

    def _review_order(self, yx, says, layer):
        """The review order, recomputed when the disputed sites or the order changed."""
        from napari_hrtem.io.tables import review_order

        key = (id(layer), len(yx), float(np.sum(yx)) if len(yx) else 0.0, self.order.value)
        if self._review.get("key") != key:
            self._review = dict(key=key, order=review_order(yx, says, self.order.value), position=None)
        return self._review["order"]

    def _reset_review(self):
        self._review = {}

    def step_disputed(self, step: int = 1):
        """Go to the next (``step=1``) or previous (``-1``) disputed site: centre and zoom the view
        on it, ring it, select it in the disagreement layer and say what each network says there.

        Returns its index in the disagreement layer, or None when there is none."""
        from napari_hrtem.io.tables import describe_disputed

        found = self.disputed_sites()
        if found is None or not len(found[0]):
            self.status.value = (
                "no disputed sites: run Predict with 'show where the networks disagree', or Update consensus"
                if found is None
                else "no disputed sites: the chosen networks agree everywhere"
            )
            return None
        yx, kind, says, layer = found
        order = self._review_order(yx, says, layer)
        position = self._review.get("position")
        position = (0 if step > 0 else len(order) - 1) if position is None else (position + step) % len(order)
        self._review["position"] = position
        i = int(order[position])
        world = yx[i] + np.asarray(layer.translate, float)[-2:]
        self._show_site(world, layer)
        layer.selected_data = {i}
        try:
            words = describe_disputed(says[i])
        except ValueError:
            words = says[i]
        self.status.value = (
            f"site {position + 1} / {len(order)}: {words} ({kind[i]}) at ({yx[i][0]:.1f}, {yx[i][1]:.1f}) Å"
        )
        return i

    def _show_site(self, world, layer):
        camera = _camera(self.viewer)
        camera.center = (*tuple(camera.center)[:-2], float(world[0]), float(world[1]))
        canvas = getattr(getattr(self.viewer, "canvas", None), "size", None) or (600, 800)
        camera.zoom = float(min(canvas)) / float(self.field.value)
        sampling = float(layer.scale[-1])
        data = np.asarray(world, float)[None] / sampling
        if CURRENT in self.viewer.layers:
            ring = self.viewer.layers[CURRENT]
            ring.scale = (sampling, sampling)
            ring.data = data
            ring.visible = True
            return
        active = self.viewer.layers.selection.active
        self.viewer.add_points(
            data,
            name=CURRENT,
            scale=(sampling, sampling),
            size=2.5 / sampling,
            symbol="ring",
            face_color="white",
            border_width=0,
            canvas_size_limits=(14, 10000),
        )
        if active is not None:  # the ring does not take the keys from the layer being edited
            self.viewer.layers.selection.active = active

    def export_disputed(self, path=None):
        """Write the disputed sites (in the review order) as CSV; returns the path, or None."""
        from napari_hrtem.io.tables import write_disagreements_csv

        found = self.disputed_sites()
        if found is None:
            self.status.value = "no disagreement layer to export: run Predict or Update consensus first"
            return None
        yx, kind, says, layer = found
        path = csv_path(path, lambda: self._ask_path("Export disputed sites", "disputed_sites.csv"))
        if path is None:
            self.status.value = "export cancelled"
            return None
        try:
            written = write_disagreements_csv(path, yx, kind, says, self._review_order(yx, says, layer))
        except (OSError, ValueError) as exc:
            self._errored(exc)
            return None
        self.status.value = f"wrote {len(yx)} disputed sites ({self.order.value} order) to {written}"
        return written

    def _ask_path(self, title: str, default: str) -> str:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, title, default, "CSV (*.csv)")
        return path

    def _bind_keys(self):
        import weakref

        me = weakref.ref(self)

        def stepper(step):
            def key(_viewer):
                widget = me()
                if widget is not None:
                    try:
                        widget.step_disputed(step)
                    except RuntimeError:  # its Qt widget was deleted
                        pass

            return key

        self.viewer.bind_key(NEXT_KEY, stepper(1), overwrite=True)
        self.viewer.bind_key(PREVIOUS_KEY, stepper(-1), overwrite=True)

    # inspecting -------------------------------------------------------------------------------
    @property
    def inspecting(self) -> bool:
        """Whether *inspect on click* is on."""
        return bool(self.inspect.native.isChecked())

    def _set_inspecting(self, on: bool):
        callbacks = self.viewer.mouse_drag_callbacks
        if on:
            if self._on_click not in callbacks:
                callbacks.append(self._on_click)
            self.status.value = (
                "inspect on click: click a place on the image to ask every chosen network what it sees there "
                "(a click while a layer is in add or select mode asks nothing)"
            )
        else:
            while self._on_click in callbacks:
                callbacks.remove(self._on_click)
            self.status.value = "inspect on click is off"

    def _watch_visibility(self):
        """Inspection off when the widget is hidden (another tab of its dock area or of a tab widget
        chosen) or closed."""
        from qtpy.QtCore import QEvent, QObject
        from qtpy.QtWidgets import QDockWidget

        widget, docks = self, []

        def off(*_):
            if widget.inspecting:
                widget.inspect.native.setChecked(False)

        class Filter(QObject):
            def eventFilter(self, obj, event):
                kind = event.type()
                if kind == QEvent.Type.Hide and not event.spontaneous():
                    off()
                elif kind in (QEvent.Type.Show, QEvent.Type.ParentChange):
                    # a tabified dock's tab unselected: its QDockWidget says so (it is not hidden)
                    parent = obj.parentWidget()
                    while parent is not None and not isinstance(parent, QDockWidget):
                        parent = parent.parentWidget()
                    if parent is not None and all(parent is not d for d in docks):
                        docks.append(parent)
                        parent.visibilityChanged.connect(lambda visible: None if visible else off())
                return False

        self._visibility_filter = Filter(self.native)
        self.native.installEventFilter(self._visibility_filter)
        callbacks, on_click = self.viewer.mouse_drag_callbacks, self._on_click

        def destroyed(*_):
            while on_click in callbacks:
                callbacks.remove(on_click)

        self.native.destroyed.connect(destroyed)

    def _on_click(self, viewer, event):
        if not self.inspecting or event.type != "mouse_press":
            return
        active = viewer.layers.selection.active
        mode = str(getattr(active, "mode", "pan_zoom"))
        if mode not in ("pan_zoom", "transform"):  # a layer is being edited: the click is for it
            return
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if not dragged:
            self.inspect_at(np.asarray(event.position)[-2:])

    def inspect_at(self, yx):
        """Run every chosen network around ``yx`` (Å) in the compute process and list its class
        probabilities there; returns the worker, or None when nothing was started."""
        from napari.qt.threading import create_worker

        from napari_hrtem.api import available_networks

        if self._inspect_worker is not None:
            self.status.value = "still asking the networks about the last place…"
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
        yx = tuple(float(v) for v in yx)
        self.status.value = f"asking {len(nets)} network(s) about ({yx[0]:.1f}, {yx[1]:.1f}) Å in the compute process…"
        worker = create_worker(
            what_networks_say_in_process,
            nets,
            np.asarray(layer.data, np.float32),
            sampling,
            yx,
            _start_thread=False,
        )

        def done(answers):
            self.inspected = (yx, answers)
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
            self.status.value = f"what the networks say at ({yx[0]:.1f}, {yx[1]:.1f}) Å" + (
                "; click another place, or Inspect on click to stop" if self.inspecting else ""
            )

        def failed(exc):
            self.status.value = f"could not inspect: {exc}"

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.finished.connect(lambda: setattr(self, "_inspect_worker", None))
        self._inspect_worker = worker
        worker.start()
        return worker
