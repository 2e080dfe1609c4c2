"""Evaluate dock widget: score every network and the consensus against reference labels.

Atomic precision, recall and F1 per class and the RMS position error of the matched sites
(:func:`napari_hrtem.analysis.metrics.atomic_f1`, thesis section 4), with a settable matching radius; the
matched, missed and extra sites of one candidate can be shown as Points layers.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, PushButton, Table

from napari_hrtem.plugin.widgets._common import WorkerWidget, set_layer, site_sources, sites_of

COLUMNS = ("precision", "recall", "F1", "RMS Å", "TP", "FP", "FN")


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
    style = dict(scale=(sampling, sampling), size=0.9 / sampling, border_width=0.2, face_color="transparent")
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
        self.reference = ComboBox(label="reference", choices=self._reference_choices)
        self.radius = FloatSpinBox(value=0.5, min=0.05, max=3.0, step=0.05, label="matching radius (Å)")
        self.show_matches = CheckBox(value=False, text="show matched / missed / extra of")
        self.candidate = ComboBox(label="candidate", choices=self._candidate_choices)
        self.run = PushButton(text="Evaluate")
        self.table = Table(value={"data": [], "columns": list(COLUMNS)})
        self.table.native.setMinimumHeight(260)
        from qtpy.QtWidgets import QStyledItemDelegate

        self.table.native.setItemDelegate(QStyledItemDelegate(self.table.native))  # text as written, 3 decimals
        super().__init__(
            napari_viewer,
            widgets=[self.reference, self.radius, self.show_matches, self.candidate, self.run, self.table],
        )
        self.extend([self.status])
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda e: (self.reference.reset_choices(), self.candidate.reset_choices()))
        self.run.changed.connect(self.start)
        self.scores = None

    def _reference_choices(self, *_):
        names = list(site_sources(self.viewer))
        names.sort(key=lambda n: (n not in ("labels", "truth"), n))
        return names

    def _candidate_choices(self, *_):
        return [n for n in site_sources(self.viewer) if n != self.reference.value]

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
                n: sites_of(layers)
                for n, layers in sources.items()
                if n != ref_name and not n.endswith((" matched", " missed", " extra"))
            }
        except ValueError as exc:
            self.status.value = str(exc)
            return None
        if not candidates:
            self.status.value = "no networks to score: run Predict first"
            return None
        sampling = float(sources[ref_name][0].scale[-1])
        shown = self.candidate.value if self.show_matches.value and self.candidate.value in candidates else None
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
        self.status.value = (
            f"best: {best}, F1 {scores[best]['overall']['f1']:.3f} at {self.radius.value:.2f} Å "
            f"against {self.reference.value}"
        )
