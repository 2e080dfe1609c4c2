"""Evaluate dock widget: score every network and the consensus against reference labels.

Atomic precision, recall and F1 per class and the RMS position error of the matched sites
(:func:`napari_hrtem.analysis.metrics.atomic_f1`, thesis section 4), with a settable matching radius; the
matched, missed and extra sites of one candidate can be shown as Points layers.

The reference defaults to the user's labels (a Points layer with a ``class`` feature, ``labels``
first), else the simulation's truth, never a network: a network stays choosable, and the result
then says so as a warning (scores against a network say how alike two networks are, not how right
they are). The line under the reference says what it is; *Export table…* writes the table as CSV
(:func:`napari_hrtem.io.tables.write_scores_csv`).
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, PushButton, Table

from napari_hrtem.plugin.layers import MARKER_CANVAS_LIMITS
from napari_hrtem.plugin.widgets._common import WorkerWidget, csv_path, set_layer, site_sources, sites_of

COLUMNS = ("precision", "recall", "F1", "RMS Å", "TP", "FP", "FN")

#: Layers of the matched / missed / extra sites (not candidates themselves).
MATCH_SUFFIXES = (" matched", " missed", " extra")


def reference_kind(name: str, layers) -> str:
    """What a site source is: ``"labels"`` (a Points layer with a ``class`` feature: hand-made or
    corrected sites), ``"truth"`` (a simulation's), ``"consensus"`` or ``"network"``."""
    if any("class" in layer.features.columns for layer in layers):
        return "labels"
    return name if name in ("truth", "consensus") else "network"


def describe_reference(name: str, kind: str) -> str:
    """The reference in words, with a warning when it is not labels or the truth."""
    return {
        "labels": f"{name} (your labels)",
        "truth": f"{name} (the simulation's true sites)",
        "consensus": f"{name} (the networks' consensus, not labels: scores say how alike, not how right)",
    }.get(kind, f"{name} (a network, not labels: scores say how alike two networks are, not how right)")


def score_all(candidates: dict, reference, radius: float) -> dict:
    """``{candidate: scores}`` of every candidate :class:`Sites` against ``reference``
    (:func:`napari_hrtem.api.score`)."""
    from napari_hrtem.api import score

    return {name: score(s, reference, radius) for name, s in candidates.items()}


def match_layers(candidate, reference, radius: float, sampling: float, name: str) -> list[tuple]:
    """Layer tuples of the matched (candidate position), missed (reference) and extra sites.

    A site counts as matched only with the same class within ``radius`` Å (as in the scores);
    a site found with the wrong class is therefore both missed and extra.
    """
    from napari_hrtem.analysis.metrics import split_matches

    sites = split_matches(candidate, reference, radius)
    style = dict(
        scale=(sampling, sampling),
        size=0.9 / sampling,
        canvas_size_limits=MARKER_CANVAS_LIMITS,
        border_width=0.2,
        face_color="transparent",
        metadata=dict(sampling=sampling, marker_size=0.9),
    )
    return [
        (sites["matched"] / sampling, dict(name=f"{name} matched", border_color="#30d030", **style), "points"),
        (
            sites["missed"] / sampling,
            dict(name=f"{name} missed", border_color="#ff00ff", symbol="square", **style),
            "points",
        ),
        (
            sites["extra"] / sampling,
            dict(name=f"{name} extra", border_color="#00ffff", symbol="cross", **style),
            "points",
        ),
    ]


class EvaluateWidget(WorkerWidget):
    """Score every network and the consensus against labels (or the simulation's truth)."""

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.reference = ComboBox(label="reference", choices=self._reference_choices, nullable=True)
        self.reference_note = Label(value="")
        self.reference_note.native.setWordWrap(True)
        self.radius = FloatSpinBox(value=0.5, min=0.05, max=3.0, step=0.05, label="matching radius (Å)")
        self.show_matches = CheckBox(value=False, text="show matched / missed / extra of")
        self.candidate = ComboBox(label="candidate", choices=self._candidate_choices)
        self.run = PushButton(text="Evaluate")
        self.export_button = PushButton(text="Export table…")
        self.export_button.tooltip = "write the table as CSV: one row per candidate and class, with the reference"
        self.table = Table(value={"data": [], "columns": list(COLUMNS)})
        self.table.native.setMinimumHeight(260)
        from qtpy.QtWidgets import QStyledItemDelegate

        self.table.native.setItemDelegate(QStyledItemDelegate(self.table.native))  # text as written, 3 decimals
        super().__init__(
            napari_viewer,
            widgets=[
                self.reference,
                self.reference_note,
                self.radius,
                self.show_matches,
                self.candidate,
                self.run,
                self.table,
                self.export_button,
            ],
        )
        self.extend([self.status])
        self._reference_chosen = False  # the user picked a reference: keep it; else follow the default
        self.scores = None
        self.scored: dict = {}  # the reference and radius of self.scores
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda e: self._refresh_choices())
        self.reference.changed.connect(self._reference_changed)
        self.run.changed.connect(self.start)
        self.export_button.changed.connect(lambda *_: self.export_table())
        self._refresh_choices()

    def _sources(self) -> dict:
        return {n: layers for n, layers in site_sources(self.viewer).items() if not n.endswith(MATCH_SUFFIXES)}

    def _reference_choices(self, *_):
        sources = self._sources()
        rank = {"labels": 0, "truth": 1, "consensus": 2, "network": 3}
        return sorted(sources, key=lambda n: (rank[reference_kind(n, sources[n])], n != "labels", n))

    def default_reference(self) -> str | None:
        """The user's labels (``labels`` first), else the truth; never a network (None then)."""
        sources = self._sources()
        for name in self._reference_choices():
            if reference_kind(name, sources[name]) in ("labels", "truth"):
                return name
        return None

    def _refresh_choices(self):
        with self.reference.changed.blocked():
            value = self.reference.value
            self.reference.native.clear()  # reset_choices keeps the old order: labels and truth first
            self.reference.reset_choices()
            if not self._reference_chosen or value not in self.reference.choices:
                value = self.default_reference()
                self._reference_chosen = False
            self.reference.value = value
        self.candidate.reset_choices()
        self._describe_reference()

    def _reference_changed(self, *_):
        self._reference_chosen = True
        self.candidate.reset_choices()
        self._describe_reference()
        if self.scores is not None and self.scored.get("reference") != self.reference.value:
            self.status.value = (
                f"the table is against {self.scored.get('reference')}; press Evaluate to score against "
                f"{self.reference.value}"
            )

    def _describe_reference(self):
        name = self.reference.value
        sources = self._sources()
        if not name or name not in sources:
            self.reference_note.value = (
                "no labels or truth to score against: make labels (Labels widget) or simulate; "
                "a network can be chosen as the reference"
                if sources
                else "no sites yet: run Predict, make labels or simulate"
            )
            return
        kind = reference_kind(name, sources[name])
        self.reference_note.value = f"{'warning: ' if kind in ('network', 'consensus') else ''}reference: " + (
            describe_reference(name, kind)
        )

    def _candidate_choices(self, *_):
        return [n for n in self._sources() if n != self.reference.value]

    def start(self):
        """Score all candidates against the reference (in a worker); returns the worker."""
        sources = site_sources(self.viewer)
        ref_name = self.reference.value
        if not ref_name or ref_name not in sources:
            self.status.value = "choose the reference labels (a labels layer, or truth)"
            return None
        try:
            reference = sites_of(sources[ref_name])
            candidates = {
                n: sites_of(layers) for n, layers in sources.items() if n != ref_name and not n.endswith(MATCH_SUFFIXES)
            }
        except ValueError as exc:
            self.status.value = str(exc)
            return None
        if not candidates:
            self.status.value = "no networks to score: run Predict first"
            return None
        sampling = float(sources[ref_name][0].scale[-1])
        shown = self.candidate.value if self.show_matches.value and self.candidate.value in candidates else None
        self.scored = dict(
            reference=ref_name, kind=reference_kind(ref_name, sources[ref_name]), radius=float(self.radius.value)
        )
        return self._start(
            self._work,
            candidates,
            reference,
            self.radius.value,
            sampling,
            shown,
            on_return=self._done,
            busy=f"scoring {len(candidates)} against {ref_name}…",
        )

    @staticmethod
    def _work(candidates, reference, radius, sampling, shown):
        scores = score_all(candidates, reference, radius)
        layers = match_layers(candidates[shown], reference, radius, sampling, shown) if shown else []
        return scores, layers

    def _done(self, result):
        scores, layers = result
        self.scores = scores
        rows, headers = [], []
        for name, per_class in scores.items():
            for cls, s in per_class.items():
                headers.append(f"{name} {cls}")
                absent = not (s["tp"] or s["fp"] or s["fn"])  # nothing to find, none found: no score
                rows.append(
                    [
                        "absent" if absent else f"{s['precision']:.3f}",
                        "-" if absent else f"{s['recall']:.3f}",
                        "-" if absent else f"{s['f1']:.3f}",
                        "-" if np.isnan(s["rms"]) else f"{s['rms']:.3f}",
                        s["tp"],
                        s["fp"],
                        s["fn"],
                    ]
                )
        self.table.value = {"data": rows, "index": headers, "columns": list(COLUMNS)}
        self.table.native.resizeColumnsToContents()
        for data, kwargs, kind in layers:
            set_layer(self.viewer, data, kwargs, kind)
        best = max(scores, key=lambda n: np.nan_to_num(scores[n]["overall"]["f1"], nan=-1.0))
        ref, kind = self.scored.get("reference", self.reference.value), self.scored.get("kind", "labels")
        self.status.value = (
            f"{'warning: ' if kind in ('network', 'consensus') else ''}reference: {describe_reference(ref, kind)}; "
            f"best: {best}, F1 {scores[best]['overall']['f1']:.3f} at {self.scored.get('radius', 0.0):.2f} Å"
        )

    def export_table(self, path=None):
        """Write the table (the last scores) as CSV; returns the path, or None.

        ``path``: the file; None asks with a file dialog."""
        from napari_hrtem.io.tables import write_scores_csv

        if not self.scores:
            self.status.value = "nothing to export: press Evaluate first"
            return None
        path = csv_path(path, self._ask_path)
        if path is None:
            self.status.value = "export cancelled"
            return None
        try:
            written = write_scores_csv(
                path, self.scores, reference=self.scored.get("reference"), radius=self.scored.get("radius")
            )
        except (OSError, ValueError) as exc:
            self._errored(exc)
            return None
        self.status.value = f"wrote the scores against {self.scored.get('reference')} to {written}"
        return written

    def _ask_path(self) -> str:
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, "Export the scores", "scores.csv", "CSV (*.csv)")
        return path
