"""Issue 15, items 1, 6 and 7 (Predict): user networks are safe and visible; Predict has Cancel,
honest progress and optional probability-map layers. Run under Xvfb (see README)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ..test_network_names import install, shipped_files

napari = pytest.importorskip("napari")


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """The user networks folder (platformdirs) in a temporary place, empty."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    from napari_hrtem.models.registry import user_networks_dir

    folder = user_networks_dir()
    folder.mkdir(parents=True)
    return folder


def _labels(widget) -> dict[str, str]:
    """Network name -> the text and tooltip of its row in the list."""
    native = widget.networks.native
    return {
        name: (native.item(row).text(), native.item(row).toolTip()) for row, name in enumerate(widget.networks.choices)
    }


def test_user_network_named_like_a_shipped_one_leaves_it_intact(make_napari_viewer, user_dir):
    """A 2-step network saved as ``unet`` by an older version: the shipped U-Net is still ``unet``
    (card and weights unchanged, ticked); the user's is listed as ``unet-user``, with its origin and
    its F1 of 0.024, and not ticked."""
    from napari_hrtem.models.registry import WEIGHTS_DIR, load_network
    from napari_hrtem.plugin.widgets.predict import PredictWidget

    before = shipped_files()
    install(user_dir, "unet", f1=0.024)
    predict = PredictWidget(make_napari_viewer())
    shipped = {name for name, net in predict.available.items() if net.origin == "shipped"}
    assert {"unet", "unetpp", "msdnet"} <= shipped and set(predict.networks.choices) == shipped | {"unet-user"}
    assert sorted(predict.networks.value) == ["msdnet", "unet", "unetpp"]  # the set for 50 kV; the user's is not ticked
    assert predict.available["unet"].weights == WEIGHTS_DIR / "unet.pt"
    assert load_network("unet").weights == WEIGHTS_DIR / "unet.pt" and shipped_files() == before
    rows = _labels(predict)
    f1 = load_network("unet").card.validation["scores"]["overall"]["f1"]
    assert rows["unet"][0] == f"unet — shipped, F1 {f1:.3f}, 50-80 kV, 0.225 Å/px"  # fine-tuned at 50 and 80 kV
    assert rows["unet-user"][0].startswith("unet-user — user (its card says 'unet'), F1 0.024, ")
    assert "validation atomic F1 0.024" in rows["unet-user"][1] and str(user_dir) in rows["unet-user"][1]
    assert "unet.pt" in rows["unet"][1] and "architecture unet" in rows["unet"][1]


def test_new_user_network_is_listed_but_not_ticked(make_napari_viewer, user_dir):
    from napari_hrtem.plugin.widgets.predict import PredictWidget, refresh_networks

    predict = PredictWidget(make_napari_viewer())
    predict.networks.value = ["unet", "unetpp"]  # the user's choice
    install(user_dir, "mine", f1=0.024)  # e.g. just trained
    refresh_networks()
    assert "mine" in predict.networks.choices and sorted(predict.networks.value) == ["unet", "unetpp"]
    assert _labels(predict)["mine"][0].startswith("mine — user, F1 0.024")


def test_train_refuses_a_shipped_name_proposes_free_names_and_asks_before_replacing(
    make_napari_viewer, user_dir, monkeypatch
):
    from napari_hrtem.plugin.widgets.train import TrainWidget

    install(user_dir, "my-unet")
    before = shipped_files()
    train = TrainWidget(make_napari_viewer())
    assert train.net_name.value == "my-unet-2"  # a free name, never a shipped one
    train.architecture.value = "msdnet"
    assert train.net_name.value == "my-msdnet"
    # a shipped network's name: refused at once, with a free name suggested; nothing written
    train.net_name.value = "unet"
    assert train.start() is None and train.worker is None
    assert "shipped network's name" in train.status.value and "'unet-2'" in train.status.value
    assert shipped_files() == before and sorted(p.name for p in user_dir.iterdir()) == ["my-unet.json", "my-unet.pt"]
    # one of the user's networks: asked first; "no" starts nothing and keeps it
    asked = []
    monkeypatch.setattr(TrainWidget, "confirm_overwrite", lambda self, name, folder: asked.append(name) or False)
    card = (user_dir / "my-unet.json").read_bytes()
    train.net_name.value = "my-unet"
    assert train.start() is None and train.worker is None and asked == ["my-unet"]
    assert "not started" in train.status.value and (user_dir / "my-unet.json").read_bytes() == card


@pytest.fixture
def viewer_with_series(make_napari_viewer, tiny_series):
    from napari_hrtem.plugin.layers import image_layer_data
    from napari_hrtem.plugin.widgets._common import add_layer_tuples

    images, sampling, _ = tiny_series
    viewer = make_napari_viewer()
    add_layer_tuples(viewer, [image_layer_data(images, sampling, "focal series")])
    # a 1024² series (the tiny one tiled 8x8): each network runs for seconds, long enough to cancel
    big = np.tile(images, (1, 8, 8))
    add_layer_tuples(viewer, [image_layer_data(big, sampling, "big series")])
    return viewer


def _snapshot(viewer):
    return [(layer.name, type(layer).__name__, id(layer.data), layer.visible) for layer in viewer.layers]


def test_predict_cancel_changes_nothing_then_runs_with_probability_maps(viewer_with_series, qtbot, user_dir):
    """Cancel during a run: the run stops, the status says after how long, no layer is added or
    changed. The next run (a new compute process if the old one was ended) works, and with "show
    probability maps" adds one image layer per network over the series."""
    from napari_hrtem.models.registry import load_network
    from napari_hrtem.plugin.widgets.predict import PredictWidget

    viewer = viewer_with_series
    predict = PredictWidget(viewer)
    predict.layer.reset_choices()
    predict.layer.value = "big series"
    predict.probability_maps.value = True
    predict.networks.value = ["unet", "unetpp"]
    before = _snapshot(viewer)
    worker = predict.start()
    assert worker is not None and predict.cancel.enabled and not predict.run.enabled
    assert predict.status.value.startswith("starting the compute process (the first run loads PyTorch)")
    qtbot.waitUntil(lambda: predict.status.value.startswith("running "), timeout=120_000)
    assert predict.status.value.startswith("running unet (1/2)")
    predict.cancel.changed.emit(True)
    qtbot.waitUntil(lambda: predict.worker is None, timeout=60_000)
    assert predict.status.value.startswith("cancelled after ") and "no layer changed" in predict.status.value
    assert _snapshot(viewer) == before and predict.prediction is None
    assert predict.run.enabled and not predict.cancel.enabled

    # the next run: two networks on the small series, with their column probability maps
    predict.layer.value = "focal series"
    seen = []  # the status line after each progress event (the widget's own slot runs first)
    predict.start().yielded.connect(lambda event: seen.append(predict.status.value))
    qtbot.waitUntil(lambda: predict.worker is None, timeout=180_000)
    assert "done in" in predict.status.value, predict.status.value
    assert any(text.startswith("running unetpp (2/2)") for text in seen), seen
    for name, visible in (("unet", True), ("unetpp", False)):
        layer = viewer.layers[f"{name} column probability"]
        sampling = load_network(name).card.sampling
        assert isinstance(layer, napari.layers.Image) and layer.visible == visible
        assert tuple(layer.scale) == pytest.approx((sampling, sampling))
        assert layer.data.dtype == np.float32 and 0 <= layer.data.min() and layer.data.max() <= 1
        assert layer.data.shape == predict.prediction.column_probability[name].shape
    assert "consensus Mo" in viewer.layers
    json.dumps(viewer.layers["unet column probability"].metadata)  # plain metadata


def test_train_simulating_on_the_fly_shows_time_and_stops(make_napari_viewer, qtbot, user_dir):
    """Training data simulated on the fly: the status counts the focal series with the seconds spent,
    and Stop ends the run there (no network saved)."""
    import re

    from napari_hrtem.plugin.widgets.train import SOURCES, TrainWidget

    train = TrainWidget(make_napari_viewer())
    assert train.source.value == SOURCES[0]
    train.samples.value, train.size.value, train.validation.value = 1000, 64, 0
    train.settings.value = "base_channels=4, depth=2"
    train.start()
    qtbot.waitUntil(lambda: re.search(r"simulating .*\(1/1000\), \d+ s$", train.status.value), timeout=180_000)
    train.stop_button.changed.emit(True)
    qtbot.waitUntil(lambda: train.worker is None, timeout=120_000)
    assert train.result["stopped"] and train.result["step"] == 0
    assert re.match(r"stopped at step 0 after \d+ s: no network saved", train.status.value), train.status.value
    assert not any(p.suffix in (".json", ".pt") for p in user_dir.iterdir())
