"""Labels dock widget: correct the sites by hand and save them as CSV (Å) with a JSON sidecar.

The labels are one Points layer, ``"labels"``, with the features ``class`` and ``made_by`` (who
or what made each site). Add, delete and move sites with napari's own Points tools; keys
``1`` / ``2`` / ``3`` (or the buttons) set the class of the selected sites to Mo / S2 / S;
``Ctrl+Z`` (or Undo) undoes the last change. Closing napari with unsaved changes asks first.
*Check lattice* rings the sites whose label contradicts the lattice (two Mo, or two S2/S columns,
closer than the lattice allows: :func:`napari_hrtem.analysis.sublattice.sublattice_conflicts`) in the
layer ``"labels: sublattice conflicts"``, which then follows every edit; saving says how many there are.

*Start from* defaults to the consensus when there is one (else the simulation's truth, else a
network; ``empty`` only when there are no sites at all) until the user picks another start. The
count line says "(unsaved changes)" exactly while the layer differs from what was last saved or
loaded; the status line says what the last action did.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton

from napari_hrtem.plugin.layers import CLASS_COLOURS, MARKER_CANVAS_LIMITS
from napari_hrtem.plugin.widgets._common import WorkerWidget, notify_error, site_sources, sites_of
from napari_hrtem.simulation.structures import CLASSES

LAYER = "labels"
#: Layer of the labels' sites in sublattice conflict (made by *Check lattice*).
LATTICE_LAYER = "labels: sublattice conflicts"
EMPTY, FILE = "empty", "a file (below)"
KEYS = {"1": "Mo", "2": "S2", "3": "S"}
HISTORY = 100
#: Marker diameter of the labels, Å (a little wider than the networks' sites it is drawn over).
MARKER = 0.7


def made_by_of(layers) -> list[str]:
    """Who made each site of per-class layers (in :func:`~._common.sites_of` order)."""
    out = []
    for layer in layers:
        source = layer.metadata.get("source", layer.name)
        if "votes" in layer.features.columns and "networks" in layer.features.columns and len(layer.features):
            out += [f"{source}: {v} votes ({n})" for v, n in zip(layer.features["votes"], layer.features["networks"])]
        elif "made_by" in layer.features.columns:
            out += [str(m) for m in layer.features["made_by"]]
        else:
            out += [source] * len(layer.data)
    return out


class _CloseGuard:
    """Qt event filter on napari's main window: asks before closing with unsaved labels."""

    def __init__(self, widget):
        from qtpy.QtCore import QEvent, QObject

        class Filter(QObject):
            def eventFilter(self, obj, event):
                if event.type() == QEvent.Type.Close and widget.dirty and not widget.confirm_close():
                    event.ignore()
                    return True
                return False

        self.filter = Filter()


class LabelsWidget(WorkerWidget):
    """Correct sites by hand: start from the consensus (or empty, or a file), save as CSV."""

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.start_from = ComboBox(label="start from", choices=self._start_choices)
        self.series = self._image_layer_choice(series_only=False)
        self.series.label = "image"
        self.path = FileEdit(mode="w", label="labels file", filter="*.csv")
        self.new = PushButton(text="New labels layer")
        self.class_buttons = {c: PushButton(text=f"{k}: {c}") for k, c in KEYS.items()}
        self.undo_button = PushButton(text="Undo (Ctrl+Z)")
        self.check_button = PushButton(
            text="Check lattice",
            tooltip="Ring the sites whose label contradicts the lattice: two Mo, or two S2/S columns, too close",
        )
        self.save_button, self.load_button = PushButton(text="Save CSV"), PushButton(text="Load CSV")
        self.counts = Label(value="")
        classes = Container(
            widgets=list(self.class_buttons.values()), layout="horizontal", labels=False, label="set class of selected"
        )
        files = Container(
            widgets=[self.save_button, self.load_button, self.undo_button], layout="horizontal", labels=False
        )
        super().__init__(
            napari_viewer,
            widgets=[self.start_from, self.series, self.new, classes, self.path, files, self.check_button, self.counts],
        )
        self.extend([self.status])
        self.help = Label(
            value="Points tools add (P), select (S) and delete (Del); drag to move. Keys 1 / 2 / 3 set Mo / S2 / S."
        )
        self.help.native.setWordWrap(True)
        self.append(self.help)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda e: self._refresh_start())
        self._start_chosen = False  # the user picked a start: keep it; else follow the default
        self.start_from.changed.connect(lambda *_: setattr(self, "_start_chosen", True))
        self._dirty = False
        self.history: list[tuple[np.ndarray, object]] = []
        self._restoring = False
        self._guard = None
        self.new.changed.connect(self.new_layer)
        for cls, button in self.class_buttons.items():
            button.changed.connect(lambda *_, c=cls: self.set_class(c))
        self.undo_button.changed.connect(self.undo)
        self.check_button.changed.connect(self.check_lattice)
        self.save_button.changed.connect(lambda *_: self.save())
        self.load_button.changed.connect(lambda *_: self.load())

    # layer ------------------------------------------------------------------------------------
    def _start_choices(self, *_):
        names = [n for n in site_sources(self.viewer) if n != LAYER]
        names.sort(key=lambda n: (n != "consensus", n != "truth", n))
        return [*names, EMPTY, FILE]

    def _refresh_start(self):
        """New choices; the default start (the first: the consensus when there is one) unless the
        user picked one that still exists."""
        with self.start_from.changed.blocked():
            value = self.start_from.value
            self.start_from.native.clear()  # reset_choices keeps the old order: the default first
            self.start_from.reset_choices()
            choices = list(self.start_from.choices)
            if choices and (not self._start_chosen or value not in choices):
                value = choices[0]
                self._start_chosen = False
            if choices:
                self.start_from.value = value

    @property
    def dirty(self) -> bool:
        """Whether the labels changed since they were made, saved or loaded (the count line says so)."""
        return self._dirty

    @dirty.setter
    def dirty(self, value: bool):
        self._dirty = bool(value)
        self._update_counts()

    @property
    def layer(self):
        """The labels Points layer, or None."""
        import napari.layers

        if LAYER in self.viewer.layers and isinstance(self.viewer.layers[LAYER], napari.layers.Points):
            return self.viewer.layers[LAYER]
        return None

    @layer.setter
    def layer(self, value):  # WorkerWidget sets a layer chooser; the labels widget has its own
        pass

    def _sampling(self):
        from napari_hrtem.plugin.widgets._common import layer_sampling

        name = self.series.value
        if name and name in self.viewer.layers:
            return layer_sampling(self.viewer.layers[name])
        return None

    def new_layer(self, *_):
        """Make the labels layer from the chosen start (asks nothing: unsaved labels are kept
        unless they were saved, see :meth:`confirm_discard`)."""
        if self.dirty and not self.confirm_discard():
            return None
        start = self.start_from.value
        if start == FILE:
            return self.load()
        sampling = self._sampling()
        if start == EMPTY or start is None:
            if sampling is None:
                self.status.value = "choose an image with a sampling (Å/px) for empty labels"
                return None
            yx, classes, made_by = np.zeros((0, 2)), [], []
        else:
            layers = site_sources(self.viewer).get(start, [])
            sites = sites_of(layers)
            sampling = sampling or float(layers[0].scale[-1]) if layers else sampling
            yx, classes, made_by = sites.yx, [sites.class_names[c] for c in sites.classes], made_by_of(layers)
        layer = self._set_data(yx, classes, made_by, sampling, source=start)
        self.status.value = f"labels started from {start}: {len(yx)} sites"
        return layer

    def _set_data(self, yx, classes, made_by, sampling, **metadata):
        import pandas as pd

        data = np.asarray(yx, float).reshape(-1, 2) / sampling
        features = pd.DataFrame(
            {"class": pd.Series(list(classes), dtype=object), "made_by": pd.Series(list(made_by), dtype=object)}
        )
        layer = self.layer
        self._restoring = True
        try:
            if layer is None:
                layer = self.viewer.add_points(
                    data,
                    name=LAYER,
                    scale=(sampling, sampling),
                    features=features,
                    size=MARKER / sampling,
                    canvas_size_limits=MARKER_CANVAS_LIMITS,
                    border_color="white",
                    border_width=0.15,
                    metadata=dict(sampling=sampling, marker_size=MARKER, **metadata),
                )
                self._connect(layer)
            else:
                layer.scale = (sampling, sampling)
                layer.data = data
                layer.features = features
                marker = float(layer.metadata.get("marker_size") or MARKER)
                layer.size = marker / sampling
                layer.current_size = marker / sampling
                layer.metadata = dict(layer.metadata, sampling=sampling, marker_size=marker, **metadata)
        finally:
            self._restoring = False
        layer.feature_defaults = dict(**{"class": "Mo"}, made_by="manual")
        self.history.clear()
        self.dirty = False
        self._recolour()
        self._install_guard()
        self.viewer.layers.selection.active = layer
        return layer

    def _connect(self, layer):
        layer.events.data.connect(self._data_event)
        for key, cls in KEYS.items():
            layer.bind_key(key, lambda _layer, c=cls: self.set_class(c), overwrite=True)
        layer.bind_key("Control-Z", lambda _layer: self.undo(), overwrite=True)

    def _install_guard(self):
        window = self.native.window()
        if self._guard is None and window is not self.native:
            self._guard = _CloseGuard(self)
            window.installEventFilter(self._guard.filter)

    # edits ------------------------------------------------------------------------------------
    def _snapshot(self):
        layer = self.layer
        self.history.append((np.array(layer.data, copy=True), layer.features.copy()))
        del self.history[:-HISTORY]

    def _data_event(self, event):
        if self._restoring:
            return
        action = str(getattr(event, "action", ""))
        if action in ("adding", "removing", "changing"):
            self._snapshot()
        elif action in ("added", "removed", "changed"):
            layer = self.layer
            n = len(getattr(event, "data_indices", ()) or ())
            if action == "changed" and event.data_indices:
                idx = [i for i in event.data_indices if 0 <= i < len(layer.data)]
                made = np.array(layer.features["made_by"].tolist(), dtype=object)
                made[idx] = [m if m.endswith("moved by hand") else f"{m}, moved by hand" for m in made[idx]]
                layer.features["made_by"] = made
            self.dirty = True
            self._recolour()
            if action == "added":
                cls = layer.feature_defaults["class"].iloc[0] if len(layer.feature_defaults) else "?"
                self.status.value = f"added {n} site(s) ({cls}); Ctrl+Z undoes"
            else:
                self.status.value = f"{'deleted' if action == 'removed' else 'moved'} {n} site(s); Ctrl+Z undoes"

    def set_class(self, cls: str):
        """Set the class of the selected sites of the labels layer (undoable)."""
        layer = self.layer
        if layer is None:
            self.status.value = "make a labels layer first"
            return
        selected = sorted(layer.selected_data)
        layer.feature_defaults = dict(**{"class": cls}, made_by="manual")
        if not selected:
            self.status.value = f"new sites will be {cls}; select sites to change their class"
            return
        self._snapshot()
        classes = np.array(layer.features["class"].tolist(), dtype=object)
        made = np.array(layer.features["made_by"].tolist(), dtype=object)
        for i in selected:
            if classes[i] != cls:
                made[i] = made[i] if made[i].endswith("class set by hand") else f"{made[i]}, class set by hand"
                classes[i] = cls
        layer.features["class"] = classes
        layer.features["made_by"] = made
        self.dirty = True
        self._recolour()
        self.status.value = f"{len(selected)} site(s) set to {cls}"

    def undo(self, *_):
        """Undo the last add, delete, move or class change."""
        layer = self.layer
        if layer is None or not self.history:
            self.status.value = "nothing to undo"
            return
        data, features = self.history.pop()
        self._restoring = True
        try:
            layer.selected_data = set()
            layer.data = data
            layer.features = features
        finally:
            self._restoring = False
        self.dirty = True
        self._recolour()
        self.status.value = f"undone ({len(self.history)} more step(s) to undo)"

    def _recolour(self):
        layer = self.layer
        if layer is None:
            return
        classes = layer.features["class"].astype(str).to_numpy() if len(layer.data) else np.zeros(0, str)
        if len(classes):
            layer.face_color = [CLASS_COLOURS.get(c, "#ffffff") for c in classes]
        if LATTICE_LAYER in self.viewer.layers:  # checked once: the rings follow every edit
            self._lattice_conflicts(show=True)
        self._update_counts()

    def _lattice_conflicts(self, show: bool):
        """``(number of sites in sublattice conflict, sites, material)`` of the labels layer, the
        number None for classes of no known 2H-MX2 material; ``show`` updates the rings layer."""
        from napari_hrtem.analysis.sublattice import mark_sublattice_conflicts, material_of

        sites, _ = self.current_sites()
        material = material_of(sites.class_names)
        n = mark_sublattice_conflicts(sites, material) if material else None
        if show and n is not None:
            from napari_hrtem.plugin.layers import sublattice_conflict_layer_data
            from napari_hrtem.plugin.widgets._common import set_layer

            set_layer(self.viewer, *sublattice_conflict_layer_data(sites, float(self.layer.scale[-1]), LATTICE_LAYER))
        return n, sites, material

    def check_lattice(self, *_) -> int | None:
        """Ring the labels' sites in sublattice conflict (layer ``"labels: sublattice conflicts"``).

        Seen along [001], a column's nearest neighbours belong to the other sublattice; two Mo
        columns, or two S2/S columns, closer than
        :func:`~napari_hrtem.analysis.sublattice.sublattice_distance` (2.49 Å for MoS2) are a label
        error (often a patch of swapped Mo/S2 labels) or a defect with a bond between like atoms
        (:func:`~napari_hrtem.analysis.sublattice.sublattice_conflicts`). Once made, the layer
        follows every edit, undo and load.

        Returns
        -------
        int or None
            The number of sites in conflict; None when there is no labels layer or its classes
            are no known 2H-MX2 material's.
        """
        from napari_hrtem.analysis.sublattice import sublattice_distance, sublattices

        layer = self.layer
        if layer is None:
            self.status.value = "make a labels layer first"
            return None
        n, sites, material = self._lattice_conflicts(show=True)
        if n is None:
            self.status.value = (
                f"the classes {'/'.join(sites.class_names)} are no known 2H-MX2 material's: no lattice to check"
            )
            return None
        self.viewer.layers.selection.active = layer  # keep editing the labels
        a, groups = sublattices(str(material))
        limit = sublattice_distance(a)
        self._update_counts()
        self.status.value = (
            f"{n} of {len(sites)} sites in sublattice conflict (two {'/'.join(groups[0])} or two "
            f"{'/'.join(groups[1])} columns closer than {limit:.2f} Å): a label error or a defect; "
            "cyan rings mark them"
            if n
            else f"no sublattice conflict among {len(sites)} sites ({material} lattice)"
        )
        return n

    def _update_counts(self):
        """The count line: sites per class, and "(unsaved changes)" while :attr:`dirty`."""
        layer = self.layer
        if layer is None:
            self.counts.value = ""
            return
        classes = layer.features["class"].astype(str).to_numpy() if len(layer.data) else np.zeros(0, str)
        counts = {c: int(np.sum(classes == c)) for c in CLASSES}
        conflicts = ""
        if LATTICE_LAYER in self.viewer.layers and len(classes):
            conflicts = f"; {len(self.viewer.layers[LATTICE_LAYER].data)} in sublattice conflict"
        self.counts.value = (
            f"{len(classes)} sites: "
            + ", ".join(f"{c} {n}" for c, n in counts.items())
            + conflicts
            + ("  (unsaved changes)" if self._dirty else "")
        )

    # files ------------------------------------------------------------------------------------
    def current_sites(self):
        """``(Sites, made_by)`` of the labels layer (positions in Å)."""
        from napari_hrtem.plugin.layers import sites_from_points

        layer = self.layer
        features = {k: layer.features[k].to_numpy() for k in layer.features}
        sites = sites_from_points(layer.data, layer.scale, features)
        return sites, [str(m) for m in features.get("made_by", ["unknown"] * len(sites))]

    def save(self, path=None) -> bool:
        """Save the labels as CSV + JSON sidecar; True when saved."""
        from napari_hrtem.io.sites import write_labels

        layer = self.layer
        if layer is None:
            self.status.value = "no labels layer to save"
            return False
        path = str(path or self.path.value or "")
        if path in ("", "."):
            path = self._ask_path(save=True)
            if not path:
                return False
        if not path.lower().endswith(".csv"):
            path += ".csv"
        image = None
        if self.series.value in self.viewer.layers:
            meta = self.viewer.layers[self.series.value].metadata
            image = meta.get("sources") or self.series.value
        try:
            sites, made_by = self.current_sites()
            write_labels(
                path,
                sites,
                made_by,
                image=image,
                sampling=float(layer.scale[-1]),
                started_from=layer.metadata.get("source"),
            )
        except (OSError, ValueError) as exc:
            self.status.value = f"not saved: {exc}"
            notify_error(exc)
            return False
        layer.metadata = dict(layer.metadata, path=path)
        self.path.value = path
        self.dirty = False
        self._recolour()
        self.status.value = f"saved {len(sites)} sites to {path}"
        conflicts = self._lattice_conflicts(show=False)[0]
        if conflicts:
            self.status.value += f"; {conflicts} in sublattice conflict (Check lattice rings them)"
        return True

    def load(self, path=None):
        """Load labels from a CSV (+ sidecar) into the labels layer."""
        from napari_hrtem.io.sites import read_labels

        path = str(path or self.path.value or "")
        if path in ("", "."):
            path = self._ask_path(save=False)
            if not path:
                return None
        try:
            sites, made_by, sidecar = read_labels(path)
        except (OSError, ValueError) as exc:
            self.status.value = f"not loaded: {exc}"
            notify_error(exc)
            return None
        sampling = sidecar.get("sampling") or self._sampling()
        if not sampling:
            self.status.value = "the file has no sidecar with the sampling: choose the image first"
            return None
        layer = self._set_data(
            sites.yx,
            [sites.class_names[c] for c in sites.classes],
            made_by,
            float(sampling),
            source=f"file {path}",
            path=path,
        )
        self.path.value = path
        self.status.value = f"loaded {len(sites)} sites from {path}"
        if sidecar.get("mismatch"):  # the CSV was replaced without its sidecar (an interrupted save)
            self.status.value += f"; {sidecar['mismatch']}"
        return layer

    def _ask_path(self, save: bool) -> str:
        from qtpy.QtWidgets import QFileDialog

        if save:
            path, _ = QFileDialog.getSaveFileName(self.native, "Save labels", "labels.csv", "CSV (*.csv)")
        else:
            path, _ = QFileDialog.getOpenFileName(self.native, "Load labels", "", "CSV (*.csv)")
        return path

    # unsaved changes --------------------------------------------------------------------------
    def ask_unsaved(self, action: str) -> str:
        """Ask what to do with unsaved labels: ``"save"``, ``"discard"`` or ``"cancel"``."""
        from qtpy.QtWidgets import QMessageBox

        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self.native,
            "Unsaved labels",
            f"The labels have unsaved changes. Save them before {action}?",
            buttons.Save | buttons.Discard | buttons.Cancel,
            buttons.Save,
        )
        return {buttons.Save: "save", buttons.Discard: "discard"}.get(answer, "cancel")

    def confirm_close(self) -> bool:
        """True when napari may close (labels saved, or discarded by the user)."""
        answer = self.ask_unsaved("closing napari")
        return answer == "discard" or (answer == "save" and self.save())

    def confirm_discard(self) -> bool:
        """True when the labels layer may be replaced."""
        answer = self.ask_unsaved("replacing them")
        return answer == "discard" or (answer == "save" and self.save())
