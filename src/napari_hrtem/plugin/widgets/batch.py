"""Batch dock widget: run the chosen networks on every focal series in a folder.

A thin shell over :func:`napari_hrtem.api.iter_predict_batch`: the work runs in the compute process
(:func:`._common.in_process`; napari's process never imports torch), the networks are loaded once
for the whole folder, each series gets an output folder (``<network>.csv``, ``consensus.csv``,
``predict.json``, ...) and ``summary.csv`` lists every series (status, sites per class, warnings,
seconds), shown here as a table. Cancel stops the batch before the next series or network; the
summary then lists what was done. No layer of the viewer is changed.
"""

from __future__ import annotations

import threading
from pathlib import Path

from magicgui.widgets import CheckBox, Container, FileEdit, Label, PushButton, Select, Table

from napari_hrtem.plugin.widgets._common import WorkerWidget


def batch_in_process(inputs, out, networks, stop=None):
    """Worker generator: :func:`run_batch` in the compute process, with ``stop`` forwarded (see
    :func:`._common.in_process`)."""
    from napari_hrtem.plugin.widgets._common import in_process
    from napari_hrtem.records import Progress

    yield Progress("starting the compute process", 0, 0)
    return (yield from in_process(run_batch, inputs, out, networks, _stop=stop))


def run_batch(inputs, out, networks, stop=None):
    """In the compute process: :func:`napari_hrtem.api.iter_predict_batch` over ``inputs`` into ``out``."""
    from napari_hrtem.api import iter_predict_batch

    return (yield from iter_predict_batch(inputs, out, networks, stop=stop))


def summary_table(result) -> dict:
    """The rows of a :class:`~napari_hrtem.records.BatchResult` for a Table: ``{"data", "index",
    "columns"}`` (one row per series, named by the series; the columns of ``summary.csv`` but its paths)."""
    from napari_hrtem.io.predictions import summary_columns

    classes = list(next((r.sites for r in result.rows if r.sites), {}))
    columns = [c for c in summary_columns(classes) if c not in ("series", "sources", "folder")]
    data = []
    for r in result.rows:
        ok = r.status == "ok"
        data.append(
            [
                r.status,
                r.message,
                "" if r.frames is None else r.frames,
                "" if r.sampling is None else round(r.sampling, 4),
                "" if r.energy_kv is None else r.energy_kv,
                *(r.sites.get(c, "") if ok else "" for c in classes),
                sum(r.sites.values()) if ok else "",
                r.warnings if ok else "",
                round(r.seconds, 1),
            ]
        )
    return {"data": data, "index": [r.series for r in result.rows], "columns": columns}


class BatchWidget(WorkerWidget):
    """Predict every focal series in a folder: one output folder per series and a summary table."""

    def __init__(self, napari_viewer):
        from napari_hrtem.api import available_networks
        from napari_hrtem.plugin.widgets.predict import compact_list, network_choices, shipped_names

        self.available = available_networks()  # the Predict widget's choices and defaults
        self.inputs = FileEdit(
            mode="d",
            label="input folder",
            tooltip="a folder of focal series: multi-frame files (one series each), folders of single images (one "
            "series each), or the single images of one series",
        )
        self.networks = Select(
            label="networks",
            choices=network_choices(self.available),
            value=shipped_names(self.available),
            tooltip="shipped networks are ticked; tick your own to add them",
            enabled=False,
        )
        compact_list(self.networks)
        self.by_energy = CheckBox(
            value=True,
            text="shipped set picked by each series' beam energy",
            tooltip="each series runs the shipped set trained nearest to its beam energy (the file's; the set for 50 kV "
            "when unknown); untick to run the networks ticked above on every series",
        )
        self.by_energy.changed.connect(lambda checked: setattr(self.networks, "enabled", not checked))
        self.out = FileEdit(
            mode="d",
            label="output folder",
            tooltip="one folder per series (<network>.csv, consensus.csv with sites in Å, predict.json) and "
            "summary.csv",
        )
        self.run = PushButton(text="Run batch")
        self.cancel = PushButton(text="Cancel", enabled=False)
        buttons = Container(widgets=[self.run, self.cancel], layout="horizontal", labels=False)
        self.table = Table(visible=False)
        self.summary = Label(value="")
        super().__init__(napari_viewer, widgets=[self.inputs, self.by_energy, self.networks, self.out, buttons])
        self.extend([self.progress, self.status, self.table, self.summary])
        self.stop_event = threading.Event()
        self.result = None  # the BatchResult of the last run
        self.run.changed.connect(self.start)
        self.cancel.changed.connect(self.stop)

    def start(self):
        """Run the chosen networks on every series of the input folder (in the compute process)."""
        if self.worker is not None:
            self.status.value = "a batch is running: cancel it first"
            return None
        inputs, out = str(self.inputs.value or "").strip(), str(self.out.value or "").strip()
        if not inputs or inputs == "." or not Path(inputs).is_dir():
            self._errored(ValueError(f"{inputs or 'input folder'}: choose a folder of focal series"))
            return None
        if not out or out == ".":
            self._errored(ValueError("choose an output folder"))
            return None
        chosen = None if self.by_energy.value else [self.available[n] for n in self.networks.value]
        if chosen is not None and not chosen:
            self.status.value = "choose at least one network"
            return None
        self.stop_event = threading.Event()
        self.result = None
        self.table.visible = False
        self.summary.value = ""
        self.run.enabled, self.cancel.enabled = False, True
        return self._start(
            batch_in_process,
            [inputs],
            out,
            chosen,
            self.stop_event,
            on_yield=self._progress,
            on_return=self._done,
            busy=f"starting: {'the shipped set for each series' if chosen is None else f'{len(chosen)} network(s)'} "
            f"on the series of {Path(inputs).name}…",
        )

    def stop(self):
        """Ask the batch to stop before its next series or network."""
        if self.worker is not None:
            self.stop_event.set()
            self.status.value = "cancelling after the running network…"

    def _progress(self, event):
        self.progress.max = event.total
        self.progress.value = event.done
        if self.stop_event.is_set():
            return
        elapsed = event.info.get("elapsed")
        self.status.value = event.stage + ("" if elapsed is None else f", {elapsed:.0f} s")

    def _done(self, result):
        self.result = result
        self.table.value = summary_table(result)
        self.table.visible = True
        done, n = len(result.ok), len(result.rows)
        failed = len(result.failed)
        self.status.value = (
            f"{'cancelled: ' if result.cancelled else ''}{done} of {n} series done"
            + (f", {failed} failed (see the table)" if failed else "")
            + f" in {result.seconds:.0f} s"
        )
        self.summary.value = f"summary: {result.summary}"

    def _finished(self):
        super()._finished()
        self.run.enabled, self.cancel.enabled = True, False
