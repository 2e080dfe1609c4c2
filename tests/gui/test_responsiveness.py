"""Responsiveness: napari's event loop keeps running while a network trains or predicts.

A 10 ms QTimer on the Qt event loop records when it fires; the longest gap between two ticks,
less the interval, is the longest stall of the GUI. Required: <= 250 ms while training and while
predicting on a 1024x1024 focal series (the tiny simulated series tiled 8x8), beyond the longest
stall of an idle napari measured by the same meter in the same run (other load on the machine).
It takes ~40 s (two predictions, one of them starting the compute process, and 40 training
steps), so it runs in the default suite.
"""

import json
import time

import numpy as np
import pytest

napari = pytest.importorskip("napari")

MAX_STALL = 0.250


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


def test_spread_makes_the_same_layers_as_adding_them_at_once(make_napari_viewer, qtbot):
    """add_layer_tuples_spread (new visible layers added hidden, shown a step later, pauses
    between steps) ends with the layers add_layer_tuples makes: names, order, visibility, data,
    features, colours, sizes, scale, translate, and the last one selected."""
    from napari_hrtem.io.sites import Sites
    from napari_hrtem.plugin.layers import points_layer_data
    from napari_hrtem.plugin.widgets._common import add_layer_tuples, add_layer_tuples_spread

    rng = np.random.default_rng(0)
    yx = rng.uniform(0, 50, (300, 2))
    net = Sites(yx, rng.integers(0, 3, 300), rng.uniform(0.5, 1, 300))
    cons = Sites(
        yx[:200], net.classes[:200], net.confidence[:200], votes=rng.integers(1, 4, 200), networks=["a;b"] * 200
    )
    tuples = points_layer_data(net, 0.2, "a", visible=False) + points_layer_data(cons, 0.2, "consensus")
    tuples = [(d, {**k, "translate": (1.0, 2.0)}, t) for d, k, t in tuples]
    at_once, spread = make_napari_viewer(), make_napari_viewer()
    add_layer_tuples(at_once, tuples)
    done = []
    for _ in range(2):  # new layers, then an update of the same layers
        add_layer_tuples_spread(spread, tuples, then=lambda: done.append(True))
        qtbot.waitUntil(lambda: len(done) == 1, timeout=10_000)
        done.clear()
    assert [la.name for la in spread.layers] == [la.name for la in at_once.layers]
    assert spread.layers.selection.active.name == at_once.layers.selection.active.name == "consensus S"
    for a, b in zip(at_once.layers, spread.layers):
        assert a.visible == b.visible and a.metadata == b.metadata
        np.testing.assert_array_equal(a.data, b.data)
        for attr in ("face_color", "border_color", "border_width", "size", "scale", "translate"):
            np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr), err_msg=f"{a.name} {attr}")
        assert a.features.equals(b.features)


def test_gui_stays_responsive_while_predicting_and_training(
    make_napari_viewer, qtbot, tiny_series, tmp_path, monkeypatch
):
    from napari_hrtem.analysis.filters import preprocess
    from napari_hrtem.plugin.layers import image_layer_data
    from napari_hrtem.plugin.widgets._common import add_layer_tuples
    from napari_hrtem.plugin.widgets.predict import PredictWidget
    from napari_hrtem.plugin.widgets.train import SOURCES, TrainWidget
    from napari_hrtem.training.datasets import class_map

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    images, sampling, sample = tiny_series
    big = np.tile(images, (1, 8, 8))
    viewer = make_napari_viewer(show=True)
    add_layer_tuples(viewer, [image_layer_data(big, sampling, "big series")])
    predict = PredictWidget(viewer)
    predict.layer.reset_choices()
    predict.layer.value = "big series"
    predict.networks.value = ["unet"]
    meter = StallMeter()
    # The same meter over an idle napari first: what the machine's other load does to the event
    # loop, measured side by side (a shared 2-core machine shows stalls of 0.1-0.5 s doing nothing).
    meter.start()
    qtbot.wait(5000)
    idle, _ = meter.stop()
    stalls, collected = [], []
    for _ in range(2):  # the first run also starts the compute process
        meter.start()
        t0 = time.perf_counter()
        predict.start()
        qtbot.waitUntil(lambda: predict.worker is None, timeout=300_000)
        stalls.append(meter.stop()[0])
        collected.append(meter.gc_text())
        seconds = time.perf_counter() - t0
    predicting = max(stalls)
    assert len(viewer.layers["consensus Mo"].data) > 100

    path = tmp_path / "tiny.npz"
    np.savez(
        path,
        images=preprocess(images, sampling)[None],
        labels=class_map(sample.sites, sample.classes, (128, 128), sampling)[None],
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
    train.start()
    qtbot.waitUntil(lambda: train.worker is None, timeout=300_000)
    training, _ = meter.stop()
    assert train.result and not train.result.get("stopped")
    print(
        f"\nlongest stall: idle {idle * 1000:.0f} ms; predicting 1024x1024 (second run {seconds:.1f} s) "
        f"{', '.join(f'{s * 1000:.0f}' for s in stalls)} ms, "
        f"training {training * 1000:.0f} ms; during them: {', '.join(collected)}, {meter.gc_text()}"
    )
    assert predicting <= MAX_STALL + idle and training <= MAX_STALL + idle
