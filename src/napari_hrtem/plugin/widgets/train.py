"""Train dock widget: train a new network, or fine-tune one on corrected labels, in a worker.

The worker runs the training job :func:`napari_hrtem.training.jobs.iter_train` (or
:func:`~napari_hrtem.training.jobs.iter_fine_tune`) in a child process and forwards its progress
events: a progress bar and a live plot of the training loss and the validation atomic F1. Stop breaks out of the trainer at its next event. A finished network is
saved with its model card to the user networks folder and appears in the Predict widget at once.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)

from napari_hrtem.plugin.widgets._common import WorkerWidget

MODES = ("train a new network", "fine-tune on labels")
SOURCES = ("simulate on the fly", "dataset file(s) (.npz)")


def _settings(steps: int, batch_size: int, lr: float, device: str | None, seed: int, threads: int, **more):
    """The widget's :class:`~napari_hrtem.training.trainer.TrainingSettings`: four validations per
    run, the rest (progress events, checkpoints) in ``more``."""
    from napari_hrtem.training.trainer import TrainingSettings

    return TrainingSettings(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device or None,
        validate_every=max(steps // 4, 1),
        validation_limit=None,
        threads=threads,
        **more,
    )


def _summary(result) -> dict:
    """What the widget shows of a :class:`~napari_hrtem.records.TrainingResult` (picklable: no model)."""
    return dict(
        card=result.card_path,
        validation=result.validation,
        threshold=result.threshold,
        seconds=result.seconds,
        stopped=result.stopped,
        step=result.step,
        checkpoint=None if result.checkpoint is None else str(result.checkpoint),
    )


def train_network(
    architecture: str,
    config: dict,
    source: str,
    n_samples: int,
    size: int,
    paths,
    n_validation: int,
    steps: int,
    batch_size: int,
    lr: float,
    device: str | None,
    seed: int,
    name: str,
    stop: threading.Event,
    threads: int = 1,
    out_dir: str | None = None,
    overwrite: bool = False,
):
    """Worker generator (in the training process): :func:`napari_hrtem.training.jobs.iter_train`
    on simulated focal series or dataset files, validated (and its column probability threshold
    calibrated) on ``n_validation`` simulated series; saved in ``out_dir`` (default: the user
    networks folder).

    Yields the job's :class:`~napari_hrtem.records.Progress` events; returns :func:`_summary`.
    """
    from napari_hrtem.training.jobs import SimulatedSet, iter_train

    if source == SOURCES[0]:
        data = [SimulatedSet(n_samples, size, images_per_sample=1, phonon_configs=2, seed=seed)]
    else:
        if not paths:
            raise ValueError("choose one or more dataset files (.npz, from `napari-hrtem dataset`)")
        data = list(paths)
    validation = SimulatedSet(n_validation, size, 1, 2, seed + 10_000) if n_validation else None
    settings = _settings(
        steps,
        batch_size,
        lr,
        device,
        seed,
        threads,
        log_every=max(1, min(10, steps // 20)),
        checkpoint_every=max(1, steps // 10),
    )
    result = yield from iter_train(
        architecture,
        data,
        validation=validation,
        config=config,
        settings=settings,
        name=name,
        out=out_dir,
        overwrite=overwrite,
        record=dict(made_with="napari-hrtem Train widget"),
        stop=stop.is_set,
    )
    return _summary(result)


def fine_tune_network(
    network,
    images: np.ndarray,
    sampling: float,
    labels,
    made_from: dict,
    n_samples: int,
    simulated_fraction: float,
    n_validation: int,
    steps: int,
    batch_size: int,
    lr: float,
    device: str | None,
    seed: int,
    name: str,
    stop: threading.Event,
    threads: int = 1,
    out_dir: str | None = None,
    overwrite: bool = False,
):
    """Worker generator (in the training process): :func:`napari_hrtem.training.jobs.iter_fine_tune`
    on the labelled series mixed with ``n_samples`` simulated series.

    ``labels`` are :class:`~napari_hrtem.io.sites.Sites` (Å); ``made_from`` (image file, labels
    file, …) goes into the new model card.
    """
    from napari_hrtem.training.jobs import SimulatedSet, iter_fine_tune

    result = yield from iter_fine_tune(
        network,
        images,
        labels,
        sampling=sampling,
        simulated=SimulatedSet(n_samples, None, 1, 2, seed) if n_samples else None,
        simulated_fraction=simulated_fraction,
        validation=SimulatedSet(n_validation, None, 1, 2, seed + 10_000) if n_validation else None,
        settings=_settings(steps, batch_size, lr, device, seed, threads, log_every=max(1, min(5, steps // 20))),
        name=name,
        out=out_dir,
        overwrite=overwrite,
        made_from=made_from,
        record=dict(made_with="napari-hrtem Train widget (fine-tuning)"),
        stop=stop.is_set,
    )
    return _summary(result)


class LossPlot:
    """A small matplotlib canvas: training loss (left axis) and validation F1 (right axis) vs step.

    The axes, labels and lines are made once and drawn at once (the figure's first draw loads
    fonts and lays out text: measured 0.3 s on a loaded machine, which a pending ``draw_idle``
    put into the first turn of the event loop after Train was pressed); a new run only empties
    the lines, and the canvas is redrawn at most every 2 s (:meth:`add`): a ~20 ms draw.
    """

    def __init__(self):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        # fixed margins: a constrained layout would redo the layout at every draw (slow)
        self.figure = Figure(figsize=(3.2, 2.0), dpi=90)
        self.figure.subplots_adjust(left=0.15, right=0.85, bottom=0.2, top=0.95)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(170)
        self.loss_axes = self.figure.add_subplot()
        self.f1_axes = self.loss_axes.twinx()
        (self.loss_line,) = self.loss_axes.plot([], [], color="#1f77b4", lw=1.2, label="loss")
        (self.f1_line,) = self.f1_axes.plot([], [], "o-", color="#d62728", ms=3, lw=1.2, label="val F1")
        self.loss_axes.set_xlabel("step", fontsize=8)
        self.loss_axes.set_ylabel("training loss", color="#1f77b4", fontsize=8)
        self.f1_axes.yaxis.tick_right()
        self.f1_axes.yaxis.set_label_position("right")
        self.f1_axes.set_ylabel("validation F1", color="#d62728", fontsize=8)
        self.f1_axes.set_ylim(0, 1.02)
        for ax in (self.loss_axes, self.f1_axes):
            ax.tick_params(labelsize=7)
        self.steps, self.losses, self.val_steps, self.f1 = [], [], [], []
        self.canvas.draw()
        self._drawn = 0.0

    def clear(self):
        """Empty the plot for a new run (no redraw when it is empty already)."""
        had_data = bool(self.steps or self.val_steps)
        self.steps, self.losses, self.val_steps, self.f1 = [], [], [], []
        if had_data:
            self.redraw()

    def add(self, event: dict, force: bool = False):
        """Add a trainer event; redraw at most every 2 s (a draw costs ~20 ms of the GUI thread on an
        idle machine, more under load)."""
        if "loss" in event:
            self.steps.append(event["step"])
            self.losses.append(event["loss"])
        if event.get("validation"):
            self.val_steps.append(event["step"])
            self.f1.append(event["validation"]["overall"]["f1"])
        if force or time.perf_counter() - self._drawn > 2.0:
            self.redraw()

    def redraw(self):
        self.loss_line.set_data(self.steps, self.losses)
        self.f1_line.set_data(self.val_steps, self.f1)
        self.loss_axes.relim()
        self.loss_axes.autoscale_view()
        self.loss_axes.set_xlim(0, max(self.steps[-1] if self.steps else 1, 1) * 1.02)
        self.canvas.draw_idle()
        self._drawn = time.perf_counter()


def _device_text() -> tuple[list[str], str]:
    """``(device choices, text)``; imports torch, so it runs in the training process
    (:func:`_device_text_in_process`)."""
    import torch

    if torch.cuda.is_available():
        return ["auto", "cuda", "cpu"], f"CUDA: yes ({torch.cuda.get_device_name(0)})"
    return ["auto", "cpu"], "CUDA: not available, training on the CPU"


def _device_text_in_process() -> tuple[list[str], str]:
    """Worker function: :func:`_device_text` asked of the training process (started here).

    napari's process never imports torch: its ~190k objects would double the time of Python's
    full garbage collections there (measured: 0.14-0.17 s -> 0.31 s; each one a stall of the GUI).
    """
    from napari_hrtem.plugin.widgets._common import _main_hidden, _pool

    executor = _pool("training")[0]
    with _main_hidden():
        future = executor.submit(_device_text)
    return future.result()


def _free_name(base: str) -> str:
    """``base`` or the first free ``base-2``, ... in the user networks folder (never a shipped name)."""
    from napari_hrtem.training.jobs import free_name

    try:
        return free_name(base)
    except ValueError:
        return base


class TrainWidget(WorkerWidget):
    """Train a network on simulated focal series, or fine-tune one on corrected labels."""

    def __init__(self, napari_viewer):
        from napari_hrtem.models.registry import ARCHITECTURES

        self.viewer = napari_viewer
        self.mode = ComboBox(label="mode", choices=list(MODES), value=MODES[0])
        # new network
        self.architecture = ComboBox(label="architecture", choices=list(ARCHITECTURES), value="unet")
        self.settings = LineEdit(label="settings", value="")
        self.source = ComboBox(label="data", choices=list(SOURCES), value=SOURCES[0])
        self.dataset = FileEdit(mode="rm", label="dataset(s)", filter="*.npz", visible=False)
        # fine-tuning
        self.base = ComboBox(label="start from", choices=self._network_names)
        self.series = self._image_layer_choice(series_only=True)
        self.labels_layer = ComboBox(label="labels layer", choices=self._labels_layers)
        self.share = FloatSpinBox(value=0.5, min=0.0, max=0.9, step=0.1, label="simulated share")
        self.finetune_box = Container(
            widgets=[self.base, self.series, self.labels_layer, self.share], labels=True, visible=False
        )
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda e: self.labels_layer.reset_choices())
        # common
        self.samples = SpinBox(value=32, min=0, max=100_000, label="simulated focal series")
        self.size = SpinBox(value=128, min=64, max=512, step=32, label="size (px)")
        self.validation = SpinBox(value=4, min=0, max=1000, label="validation series")
        self.steps = SpinBox(value=500, min=1, max=1_000_000, step=100, label="steps")
        self.batch = SpinBox(value=8, min=1, max=256, label="batch size")
        self.lr = FloatSpinBox(value=2e-3, min=1e-6, max=1.0, step=1e-4, label="learning rate")
        self.lr.native.setDecimals(6)
        # CUDA is asked of the training process (napari's process does not import torch)
        devices, text = ["auto", "cpu"], "CUDA: checking…"
        self.device = ComboBox(label="device", choices=devices, value="auto")
        self.cuda = Label(value=text)
        self.seed = SpinBox(value=0, min=0, max=2**31 - 1, label="seed")
        self.net_name = LineEdit(
            label="new network name",
            value="my-unet",
            tooltip="a free name is proposed; a shipped network's name is refused, and replacing one of your "
            "networks asks first",
        )
        self.run = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        buttons = Container(widgets=[self.run, self.stop_button], layout="horizontal", labels=False)
        super().__init__(
            napari_viewer,
            widgets=[
                self.mode,
                self.architecture,
                self.settings,
                self.source,
                self.dataset,
                self.finetune_box,
                self.samples,
                self.size,
                self.validation,
                self.steps,
                self.batch,
                self.lr,
                self.device,
                self.cuda,
                self.seed,
                self.net_name,
                buttons,
            ],
        )
        self.plot = LossPlot()
        self.extend([self.progress, self.status])
        self.native.layout().addWidget(self.plot.canvas)
        self.stop_event = threading.Event()
        self.result = None
        self.mode.changed.connect(self._mode_changed)
        self.architecture.changed.connect(self._architecture_changed)
        self.base.changed.connect(
            lambda v: (
                setattr(self.net_name, "value", _free_name(f"{v}-finetuned"))
                if self.mode.value == MODES[1] and v
                else None
            )
        )
        self.source.changed.connect(lambda v: setattr(self.dataset, "visible", v == SOURCES[1]))
        self.run.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self._architecture_changed(self.architecture.value)
        self._ask_device()
        from napari_hrtem.plugin.widgets._common import collect_after_imports

        collect_after_imports()  # after matplotlib's first import (the loss plot)

    def _ask_device(self):
        from napari.qt.threading import create_worker

        def answer(result):
            devices, text = result
            try:
                self.device.choices = devices
                self.cuda.value = text
            except RuntimeError:  # the widget was closed meanwhile
                pass

        def failed(exc):
            try:
                self.cuda.value = f"CUDA: could not tell ({exc}); training on the CPU"
            except RuntimeError:
                pass

        worker = create_worker(_device_text_in_process, _start_thread=False)
        worker.returned.connect(answer)
        worker.errored.connect(failed)
        self._device_worker = worker
        worker.start()

    # choices ---------------------------------------------------------------------------------
    def _network_names(self, *_):
        from napari_hrtem.models.registry import available_networks

        return list(available_networks())

    def _labels_layers(self, *_):
        import napari.layers

        return [
            layer.name
            for layer in self.viewer.layers
            if isinstance(layer, napari.layers.Points) and "class" in layer.features.columns
        ]

    def _architecture_changed(self, arch):
        from napari_hrtem.models.registry import ARCHITECTURES

        self.settings.value = ", ".join(f"{k}={v}" for k, v in ARCHITECTURES[arch][2].items())
        if self.mode.value == MODES[0]:
            self.net_name.value = _free_name(f"my-{arch}")

    def _mode_changed(self, mode):
        tune = mode == MODES[1]
        for widget in (self.architecture, self.settings, self.source):
            widget.visible = not tune
        self.dataset.visible = not tune and self.source.value == SOURCES[1]
        self.finetune_box.visible = tune
        self.samples.label = "simulated focal series" + (" (mixed in)" if tune else "")
        if tune:
            self.base.reset_choices()
            self.series.reset_choices()
            self.labels_layer.reset_choices()
            self.lr.value, self.steps.value = 2e-4, 200
            self.net_name.value = _free_name(f"{self.base.value or 'network'}-finetuned")
        else:
            self.lr.value, self.steps.value = 2e-3, 500
            self._architecture_changed(self.architecture.value)

    # running ---------------------------------------------------------------------------------
    def start(self):
        """Start training (or fine-tuning) in a worker thread; returns the worker or None."""
        from napari_hrtem.plugin.layers import sites_from_points

        if self.worker is not None:
            self.status.value = "a training run is going on: stop it first"
            return None
        name = self.net_name.value.strip()
        from napari_hrtem.models.registry import user_networks_dir
        from napari_hrtem.plugin.widgets._common import in_process
        from napari_hrtem.training.jobs import check_network_target, network_exists

        folder = user_networks_dir()
        try:  # the same check as train --name (napari_hrtem.names): safe, not reserved, not a shipped name
            check_network_target(name, name, folder, overwrite=True)
        except ValueError as exc:
            self.status.value = str(exc)
            return None
        overwrite = network_exists(folder, name)
        if overwrite and not self.confirm_overwrite(name, folder):
            self.status.value = f"not started: a network named {name!r} exists; choose another name"
            return None

        self._t0 = time.perf_counter()
        # training runs in its own child process (holding no GIL of napari's), started by the
        # worker thread; Stop sets this Event, which in_process passes on to a manager Event that
        # crosses the process boundary
        self.stop_event = threading.Event()
        self.result = None
        self.plot.clear()
        device = None if self.device.value == "auto" else self.device.value
        common = dict(
            steps=self.steps.value,
            batch_size=self.batch.value,
            lr=self.lr.value,
            device=device,
            seed=self.seed.value,
            name=name,
            _stop=self.stop_event,
            out_dir=str(folder),
            overwrite=overwrite,
        )
        if self.mode.value == MODES[0]:
            try:
                from napari_hrtem.training.jobs import parse_settings

                config = parse_settings(self.settings.value)
            except ValueError as exc:
                self.status.value = str(exc)
                return None
            paths = [str(p) for p in (self.dataset.value or []) if str(p) not in ("", ".")]
            worker = self._start(
                in_process,
                train_network,
                self.architecture.value,
                config,
                self.source.value,
                self.samples.value,
                self.size.value,
                paths,
                self.validation.value,
                **common,
                _pool_name="training",
                on_yield=self._event,
                on_return=self._done,
                busy="preparing the data…",
            )
        else:
            from napari_hrtem.models.registry import available_networks

            networks = available_networks()
            if self.base.value not in networks:
                self.status.value = "choose a network to start from"
                return None
            self.layer = self.series
            chosen = self._chosen_series()
            if chosen is None:
                return None
            if not self.labels_layer.value or self.labels_layer.value not in self.viewer.layers:
                self.status.value = "choose a labels layer (Labels widget: New labels)"
                return None
            series, sampling = chosen
            lab = self.viewer.layers[self.labels_layer.value]
            try:
                sites = sites_from_points(lab.data, lab.scale, {k: lab.features[k].to_numpy() for k in lab.features})
            except ValueError as exc:
                self.status.value = str(exc)
                return None
            made_from = dict(
                image=series.metadata.get("sources") or series.name,
                sampling=sampling,
                labels=lab.metadata.get("path") or lab.name,
            )
            worker = self._start(
                in_process,
                fine_tune_network,
                networks[self.base.value],
                np.asarray(series.data, np.float32),
                sampling,
                sites,
                made_from,
                self.samples.value,
                self.share.value,
                self.validation.value,
                **common,
                _pool_name="training",
                on_yield=self._event,
                on_return=self._done,
                busy="preparing the data…",
            )
        self.run.enabled, self.stop_button.enabled = False, True
        worker.finished.connect(self._ended)
        return worker

    def confirm_overwrite(self, name: str, folder) -> bool:
        """Ask whether to replace the user's network ``name`` (in ``folder``); True to replace it."""
        from qtpy.QtWidgets import QMessageBox

        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(
            self.native,
            "Replace network",
            f"A network named {name!r} exists in {folder}. Replace it with the new one?",
            buttons.Yes | buttons.No,
            buttons.No,
        )
        return answer == buttons.Yes

    def stop(self):
        """Ask the run to stop at the trainer's next event."""
        if self.worker is not None:
            self.stop_event.set()
            self.status.value = "stopping…"

    def _event(self, progress):
        """Show a job's :class:`~napari_hrtem.records.Progress` event."""
        if progress.stage != "training":
            self.progress.max = progress.total
            self.progress.value = progress.done
            if not self.stop_event.is_set():
                self.status.value = (
                    f"{progress.stage} ({progress.done}/{progress.total})" if progress.total else progress.stage
                ) + f", {time.perf_counter() - getattr(self, '_t0', time.perf_counter()):.0f} s"
            return
        event = progress.info
        self.progress.max = event["steps"]
        self.progress.value = event["step"]
        self.plot.add(event)
        text = f"step {event['step']}/{event['steps']}, {event['seconds']:.0f} s"
        if "loss" in event:
            text += f", loss {event['loss']:.3f}"
        if event.get("validation"):
            text += f", validation F1 {event['validation']['overall']['f1']:.3f}"
        if not self.stop_event.is_set():
            self.status.value = text

    def _done(self, result):
        self.result = result
        self.plot.redraw()
        if result.get("stopped"):
            kept = result.get("checkpoint")
            spent = time.perf_counter() - getattr(self, "_t0", time.perf_counter())
            self.status.value = f"stopped at step {result.get('step', 0)} after {spent:.0f} s: no network saved" + (
                f"; the last checkpoint is kept in {kept} (napari-hrtem train --resume --checkpoint-dir continues it)"
                if kept
                else ""
            )
            return
        from napari_hrtem.plugin.widgets.predict import refresh_networks

        refresh_networks()
        self.base.reset_choices()
        f1 = (result.get("validation") or {}).get("overall", {}).get("f1")
        self.status.value = (
            f"saved {result['card'].stem} ({result['seconds']:.0f} s"
            + (f", validation F1 {f1:.3f}" if f1 is not None else "")
            + f") to {result['card'].parent}: it is now in the Predict widget (not ticked: tick it to use it)"
        )
        if self.mode.value == MODES[0]:  # the next run gets a free name again
            self.net_name.value = _free_name(f"my-{self.architecture.value}")

    def _ended(self):
        self.run.enabled, self.stop_button.enabled = True, False
