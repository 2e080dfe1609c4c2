"""GUI tests of the workbench: Train (finish, appear in Predict; Stop), Labels (class keys,
undo, save/load round trip, close guard), Compare and Evaluate on a simulated series with known
truth. Run under Xvfb (see README)."""

import json

import numpy as np
import pytest

napari = pytest.importorskip("napari")


def _wait(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """The user networks folder (platformdirs) in a temporary place."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    from napari_hrtem.models.registry import user_networks_dir

    return user_networks_dir()


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, tiny_series):
    """A one-series training set (.npz as ``napari-hrtem dataset`` writes) from the tiny series."""
    from napari_hrtem.analysis.filters import preprocess
    from napari_hrtem.training.datasets import class_map

    images, sampling, sample = tiny_series
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(
        path,
        images=preprocess(images, sampling)[None],
        labels=class_map(sample.sites, sample.classes, (128, 128), sampling)[None],
        sites=sample.sites,
        site_classes=sample.classes,
        site_index=np.array([0, len(sample.sites)]),
        sampling=np.array([sampling]),
        params=json.dumps([{}]),
        recipe=json.dumps(dict(test="tiny")),
    )
    return path


@pytest.fixture
def viewer_with_series(make_napari_viewer, tiny_series):
    """A viewer with the tiny focal series and its truth as the Simulate widget shows them."""
    from napari_hrtem.io.sites import Sites
    from napari_hrtem.plugin.layers import image_layer_data, points_layer_data
    from napari_hrtem.plugin.widgets._common import add_layer_tuples

    images, sampling, sample = tiny_series
    viewer = make_napari_viewer()
    truth = Sites(sample.sites, sample.classes, np.ones(len(sample.sites)))
    add_layer_tuples(
        viewer,
        [
            image_layer_data(images, sampling, "focal series"),
            *points_layer_data(truth, sampling, "truth", visible=False),
        ],
    )
    return viewer, truth


def test_train_finishes_and_appears_in_predict(make_napari_viewer, qtbot, user_dir, tiny_dataset):
    from napari_hrtem.plugin.widgets.predict import PredictWidget
    from napari_hrtem.plugin.widgets.train import SOURCES, TrainWidget

    viewer = make_napari_viewer()
    predict = PredictWidget(viewer)
    train = TrainWidget(viewer)
    assert "my-unet" not in predict.networks.choices
    train.source.value = SOURCES[1]
    train.dataset.value = [str(tiny_dataset)]
    train.validation.value = 0
    train.steps.value, train.batch.value = 6, 2
    train.settings.value = "base_channels=4, depth=2"
    worker = train.start()
    assert worker is not None and not train.run.enabled and train.stop_button.enabled
    _wait(qtbot, train)
    assert train.result and not train.result.get("stopped"), train.status.value
    card = json.loads((user_dir / "my-unet.json").read_text())
    assert card["config"] == {"base_channels": 4, "depth": 2} and card["training"]["steps"] == 6
    assert "my-unet" in predict.networks.choices and "my-unet" not in predict.networks.value  # never ticked by itself
    assert train.plot.steps[-1] == 6 and len(train.plot.losses) == len(train.plot.steps)
    assert train.run.enabled and "Predict" in train.status.value


def test_train_stop_mid_run(make_napari_viewer, qtbot, user_dir, tiny_dataset):
    from napari_hrtem.plugin.widgets.train import SOURCES, TrainWidget

    viewer = make_napari_viewer()
    train = TrainWidget(viewer)
    train.source.value = SOURCES[1]
    train.dataset.value = [str(tiny_dataset)]
    train.validation.value = 0
    train.steps.value, train.batch.value = 2000, 1  # a checkpoint every 200 steps, an event every 10
    train.settings.value = "base_channels=4, depth=2"
    train.start()
    qtbot.waitUntil(lambda: len(train.plot.steps) >= 2 and train.plot.steps[-1] >= 210, timeout=120_000)
    train.stop_button.changed.emit(True)
    _wait(qtbot, train, timeout=30_000)
    assert train.result["stopped"] and 210 <= train.result["step"] < 2000
    assert "stopped" in train.status.value and "checkpoint" in train.status.value
    assert not (user_dir / "my-unet.json").exists()
    from napari_hrtem.training.trainer import read_checkpoint

    kept = read_checkpoint(user_dir / "my-unet.checkpoint")  # Stop keeps the last checkpoint
    assert kept is not None and kept["step"] >= 200 and kept["step"] % 200 == 0


def test_labels_keys_undo_save_load_roundtrip(viewer_with_series, qtbot, tmp_path):
    from qtpy.QtCore import Qt

    from napari_hrtem.io.sites import read_labels
    from napari_hrtem.plugin.layers import CLASS_COLOURS
    from napari_hrtem.plugin.widgets.labels import LabelsWidget

    viewer, truth = viewer_with_series
    widget = LabelsWidget(viewer)
    widget.start_from.reset_choices()
    assert widget.start_from.choices[0] == "truth"
    widget.start_from.value = "truth"
    layer = widget.new_layer()
    assert len(layer.data) == len(truth) and not widget.dirty
    # class reassignment by key press on the canvas, with the labels layer active
    layer.selected_data = {0, 1}
    viewer.layers.selection.active = layer
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_3)
    assert list(layer.features["class"][:2]) == ["S", "S"]
    assert np.allclose(layer.face_color[0, :3], [1.0, 0x30 / 255, 0x30 / 255], atol=0.01)
    assert layer.features["made_by"][0].endswith("class set by hand") and widget.dirty
    qtbot.keyClick(canvas, Qt.Key.Key_1)
    assert list(layer.features["class"][:2]) == ["Mo", "Mo"]
    widget.undo()
    assert list(layer.features["class"][:2]) == ["S", "S"]
    # a site deleted with napari's own tool, then undone
    n = len(layer.data)
    layer.selected_data = {5}
    layer.remove_selected()
    assert len(layer.data) == n - 1
    widget.undo()
    assert len(layer.data) == n
    # a site added with the add tool takes the current class
    widget.set_class("S2")
    layer.add(np.array([[10.0, 10.0]]))
    assert layer.features["class"].iloc[-1] == "S2" and layer.features["made_by"].iloc[-1] == "manual"
    assert np.allclose(layer.face_color[-1, :3], [1.0, 0xD7 / 255, 0.0], atol=0.01), CLASS_COLOURS
    # save, then load into a fresh layer: identical sites
    before, made_before = widget.current_sites()
    path = tmp_path / "labels.csv"
    assert widget.save(path) and not widget.dirty
    _, made_by, sidecar = read_labels(path)
    assert sidecar["sampling"] == pytest.approx(0.22) and sidecar["image"] == "focal series"
    assert made_by == made_before and sidecar["counts"] == before.counts()
    assert path.read_text().splitlines()[0].startswith("y,x,class")
    layer.data = layer.data[:3]
    widget.dirty = False
    loaded = widget.load(path)
    after, made_after = widget.current_sites()
    assert np.allclose(after.yx, before.yx, atol=1e-4) and np.array_equal(after.classes, before.classes)
    assert made_after == made_before and loaded is layer and not widget.dirty


def test_labels_check_lattice_rings_a_relabelled_column_and_follows_edits(viewer_with_series, tmp_path):
    from napari_hrtem.analysis.sublattice import sublattice_conflicts
    from napari_hrtem.plugin.widgets.labels import LATTICE_LAYER, LabelsWidget

    viewer, truth = viewer_with_series
    widget = LabelsWidget(viewer)
    assert widget.check_lattice() is None and "first" in widget.status.value  # no labels layer yet
    widget.start_from.reset_choices()
    widget.start_from.value = "truth"
    layer = widget.new_layer()
    assert widget.check_lattice() == 0 and "no sublattice conflict" in widget.status.value
    rings = viewer.layers[LATTICE_LAYER]
    assert len(rings.data) == 0 and not rings.visible and viewer.layers.selection.active is layer
    # one Mo column labelled S2: it and its three S2 neighbours (1.82 Å) contradict the lattice
    mo = int(np.flatnonzero(layer.features["class"].to_numpy() == "Mo")[len(truth) // 6])
    layer.selected_data = {mo}
    widget.set_class("S2")
    sites, _ = widget.current_sites()
    expected = int(sublattice_conflicts(sites).sum())
    assert expected >= 2  # the relabelled column and at least one neighbour (fewer at the edge)
    assert len(rings.data) == expected and rings.visible  # the rings follow the edit without a click
    assert f"{expected} in sublattice conflict" in widget.counts.value
    assert widget.check_lattice() == expected and "label error or a defect" in widget.status.value
    ringed = rings.data * rings.scale[-1]
    assert np.min(np.linalg.norm(ringed - sites.yx[mo], axis=1)) < 1e-6
    assert widget.save(tmp_path / "labels.csv") and f"{expected} in sublattice conflict" in widget.status.value
    widget.undo()  # back to the truth: no ring left
    assert len(rings.data) == 0 and "in sublattice conflict" not in widget.status.value.split(";")[0]
    assert "0 in sublattice conflict" in widget.counts.value


def test_unsaved_labels_ask_before_close(viewer_with_series, qtbot, monkeypatch):
    from qtpy.QtGui import QCloseEvent

    from napari_hrtem.plugin.widgets.labels import LabelsWidget

    viewer, _ = viewer_with_series
    labels = LabelsWidget(viewer)
    viewer.window.add_dock_widget(labels, name="Labels")
    labels.start_from.value = "truth"
    layer = labels.new_layer()
    layer.selected_data = {0}
    labels.set_class("S")
    asked = []
    # patched on the class: magicgui containers treat instance attributes as their widgets
    monkeypatch.setattr(LabelsWidget, "ask_unsaved", lambda self, action: asked.append(action) or "cancel")
    event = QCloseEvent()
    window = viewer.window._qt_window
    assert labels._guard.filter.eventFilter(window, event) is True and not event.isAccepted()
    assert asked == ["closing napari"]
    monkeypatch.setattr(LabelsWidget, "ask_unsaved", lambda self, action: "discard")
    event = QCloseEvent()
    assert labels._guard.filter.eventFilter(window, event) is False
    labels.dirty = False


def test_predict_compare_evaluate_on_known_truth(viewer_with_series, qtbot):
    from napari_hrtem.plugin.widgets.compare import CompareWidget
    from napari_hrtem.plugin.widgets.evaluate import EvaluateWidget
    from napari_hrtem.plugin.widgets.predict import PredictWidget

    viewer, truth = viewer_with_series
    predict = PredictWidget(viewer)
    predict.layer.reset_choices()
    predict.layer.value = "focal series"
    predict.start()
    _wait(qtbot, predict)
    names = list(predict.networks.value)
    assert len(names) >= 2
    compare = CompareWidget(viewer)
    compare._refresh_networks()
    assert set(compare.networks.choices) == set(names)
    compare.layer.value = "focal series"
    predicted = {c: np.array(viewer.layers[f"consensus {c}"].data) for c in ("Mo", "S2", "S")}
    # toggling a network off recomputes the consensus of the others
    compare.networks.value = names[:1]
    _wait(qtbot, compare)
    assert compare.consensus.meta["n"] == 1
    assert len(viewer.layers["consensus Mo"].data) == int(np.sum(predict.last_event["results"][names[0]].classes == 0))
    compare.networks.value = names
    _wait(qtbot, compare)
    assert compare.consensus.meta["n"] == len(names)
    # the same consensus as Predict's: the layers carry the class probabilities the sum rule weighs
    for c, data in predicted.items():
        again = np.array(viewer.layers[f"consensus {c}"].data)
        assert again.shape == data.shape and np.allclose(np.sort(again, axis=0), np.sort(data, axis=0), atol=1e-3), c
    assert "disagreement" in viewer.layers and "kind" in viewer.layers["disagreement"].features
    conflicts = viewer.layers["sublattice conflicts"]  # recomputed with the consensus
    assert len(conflicts.data) == int(compare.consensus.extra["sublattice_conflict"].sum())
    # what every network says at a truth Mo column
    mo = truth.of_class(0)
    centre = mo[np.argmin(np.hypot(*(mo - 14.0).T))]
    compare.inspect_at(centre)
    qtbot.waitUntil(lambda: compare._inspect_worker is None, timeout=60_000)
    _, answers = compare.inspected
    assert set(answers) == set(names)
    for ans in answers.values():
        assert sum(ans["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert max(answers.values(), key=lambda a: a["probabilities"]["Mo"])["probabilities"]["Mo"] > 0.5
    assert compare.table.shape[0] == len(names)

    evaluate = EvaluateWidget(viewer)
    evaluate.reference.reset_choices()
    evaluate.reference.value = "truth"
    evaluate.candidate.reset_choices()
    evaluate.candidate.value = "consensus"
    evaluate.show_matches.value = True
    evaluate.radius.value = 0.6
    evaluate.start()
    _wait(qtbot, evaluate)
    assert set(evaluate.scores) == {*names, "consensus"}
    assert evaluate.scores["consensus"]["overall"]["f1"] > 0.8
    assert evaluate.table.shape == ((len(names) + 1) * 4, 7)
    assert "consensus Mo" in evaluate.table.row_headers and evaluate.table.column_headers[2] == "F1"
    s = evaluate.scores["consensus"]["overall"]
    assert len(viewer.layers["consensus matched"].data) == s["tp"]
    assert len(viewer.layers["consensus missed"].data) == s["fn"]
    assert len(viewer.layers["consensus extra"].data) == s["fp"]


def test_fine_tune_on_labels_makes_a_new_network(viewer_with_series, qtbot, user_dir):
    from napari_hrtem.plugin.widgets.labels import LabelsWidget
    from napari_hrtem.plugin.widgets.predict import PredictWidget
    from napari_hrtem.plugin.widgets.train import MODES, TrainWidget

    viewer, truth = viewer_with_series
    labels = LabelsWidget(viewer)
    labels.start_from.value = "truth"
    labels.new_layer()
    predict = PredictWidget(viewer)
    train = TrainWidget(viewer)
    train.mode.value = MODES[1]
    assert not train.finetune_box.native.isHidden() and train.architecture.native.isHidden()
    train.base.value = "unet"
    train.series.value = "focal series"
    train.labels_layer.reset_choices()
    train.labels_layer.value = "labels"
    train.samples.value, train.validation.value = 0, 0  # no simulation in the test (slow); mixing: test_labels_io
    train.steps.value, train.batch.value = 3, 2
    assert train.net_name.value == "unet-finetuned"
    train.start()
    _wait(qtbot, train)
    assert train.result and not train.result.get("stopped"), train.status.value
    card = json.loads((user_dir / "unet-finetuned.json").read_text())
    assert card["architecture"] == "unet" and card["training"]["fine_tuned_from"]["name"] == "unet"
    assert card["training"]["labelled"]["sites"] == len(truth)
    assert "unet-finetuned" in predict.networks.choices
    labels.dirty = False
