"""The responsiveness scenario shared by the test (behaviour) and the benchmark (stall figures).

A 10 ms QTimer on the Qt event loop records when it fires; the longest gap between two ticks,
less the interval, is the longest stall of the GUI. The scenario measures it on an idle napari,
while the Predict widget runs U-Net on a 1024x1024 focal series (twice: the first run also
starts the compute process) and while the Train widget trains 40 steps.
"""

import json
import time

import numpy as np


class StallMeter:
    """Ticks of a 10 ms QTimer; ``stop()`` returns the longest stall (s) since ``start`` and the
    number of ticks. ``collections`` lists the durations (s) of CPython's full (generation 2)
    garbage collections meanwhile: each holds the GUI thread (0.15-0.55 s in napari's process),
    printed so that a failure caused by one can be told apart."""

    def __init__(self, interval_ms=10):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.ticks = []
        self.collections = []
        self._gc_start = None
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def _gc(self, phase, info):
        if info["generation"] == 2:
            if phase == "start":
                self._gc_start = time.perf_counter()
            elif self._gc_start is not None:
                self.collections.append(time.perf_counter() - self._gc_start)

    def start(self):
        import gc

        self.ticks, self.collections = [time.perf_counter()], []
        gc.callbacks.append(self._gc)
        self.timer.start()

    def stop(self):
        import gc

        self.timer.stop()
        gc.callbacks.remove(self._gc)
        self.ticks.append(time.perf_counter())
        gaps = np.diff(self.ticks)
        return float(gaps.max() - self.interval), len(self.ticks)

    def gc_text(self):
        return f"{len(self.collections)} full gc" + (
            f" (longest {max(self.collections) * 1000:.0f} ms)" if self.collections else ""
        )


def run_scenario(viewer, qtbot, images, sampling, sample, tmp_path, idle_ms=5000):
    """Idle, predicting (twice) and training with a :class:`StallMeter` on ``viewer``'s event loop.

    ``images`` is a small (3, H, W) focal series, tiled 8x8 for the prediction; ``sample`` its
    simulated sample (ground truth for the training set). Returns a dict of the longest stalls (s),
    tick counts, seconds and full garbage collections, and the widgets.
    """
    from napari_hrtem.analysis.filters import preprocess
    from napari_hrtem.plugin.layers import image_layer_data
    from napari_hrtem.plugin.widgets._common import add_layer_tuples
    from napari_hrtem.plugin.widgets.predict import PredictWidget
    from napari_hrtem.plugin.widgets.train import SOURCES, TrainWidget
    from napari_hrtem.training.datasets import class_map

    big = np.tile(images, (1, 8, 8))
    add_layer_tuples(viewer, [image_layer_data(big, sampling, "big series")])
    predict = PredictWidget(viewer)
    predict.layer.reset_choices()
    predict.layer.value = "big series"
    predict.networks.value = ["unet"]
    meter = StallMeter()
    # The same meter over an idle napari first: what the machine's other load does to the event loop.
    meter.start()
    qtbot.wait(idle_ms)
    idle, idle_ticks = meter.stop()
    out = dict(idle=idle, idle_ticks=idle_ticks, predicting=[], predicting_ticks=[], seconds=[], collected=[])
    for _ in range(2):  # the first run also starts the compute process
        meter.start()
        t0 = time.perf_counter()
        predict.start()
        qtbot.waitUntil(lambda: predict.worker is None, timeout=300_000)
        stall, ticks = meter.stop()
        out["predicting"].append(stall)
        out["predicting_ticks"].append(ticks)
        out["seconds"].append(time.perf_counter() - t0)
        out["collected"].append(meter.gc_text())

    path = tmp_path / "tiny.npz"
    h, w = images.shape[1:]
    np.savez(
        path,
        images=preprocess(images, sampling)[None],
        labels=class_map(sample.sites, sample.classes, (h, w), sampling)[None],
        sites=sample.sites,
        site_classes=sample.classes,
        site_index=np.array([0, len(sample.sites)]),
        sampling=np.array([sampling]),
        params=json.dumps([{}]),
        recipe=json.dumps({}),
    )
    train = TrainWidget(viewer)
    train.source.value = SOURCES[1]
    train.dataset.value = [str(path)]
    train.validation.value = 0
    train.steps.value, train.batch.value = 40, 4
    meter.start()
    t0 = time.perf_counter()
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=300_000)
    out["training"], out["training_ticks"] = meter.stop()
    out["training_seconds"] = time.perf_counter() - t0
    out["collected"].append(meter.gc_text())
    out["predict"], out["train"] = predict, train
    return out


def report(figures) -> str:
    """One line of the stall figures (ms)."""
    return (
        f"longest stall: idle {figures['idle'] * 1000:.0f} ms; predicting 1024x1024 "
        f"{', '.join(f'{s * 1000:.0f}' for s in figures['predicting'])} ms "
        f"(runs of {', '.join(f'{s:.1f}' for s in figures['seconds'])} s); training "
        f"{figures['training'] * 1000:.0f} ms; full garbage collections: {', '.join(figures['collected'])}"
    )
