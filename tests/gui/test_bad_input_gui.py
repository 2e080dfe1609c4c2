"""GUI side of the bad-input corpus: the widgets and the reader on bad files and layers.

Each bad input shows a napari notification and a status line naming the file or layer and the problem;
no layer is added, removed or changed. Run under Xvfb (see tests/gui/test_widgets.py).
"""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")

RNG = np.random.default_rng(5)


def _wait(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


@pytest.fixture()
def setup(make_napari_viewer):
    """A viewer with some layers (to be kept), the plugin's widgets, and a list of notifications."""
    from napari.utils.notifications import notification_manager

    from napari_hrtem.plugin.widgets.demo import add_widgets

    viewer = make_napari_viewer()
    good = RNG.random((3, 64, 64)).astype(np.float32)
    viewer.add_image(good, name="good", scale=(1, 0.22, 0.22), metadata=dict(sampling=0.22))
    viewer.add_points(np.array([[1.0, 2.0]]), name="sites")
    widgets = add_widgets(viewer)
    notes = []
    notification_manager.notification_ready.connect(notes.append)
    yield viewer, widgets, notes
    notification_manager.notification_ready.disconnect(notes.append)


def _snapshot(viewer):
    return [(layer.name, layer, np.array(layer.data, copy=True)) for layer in viewer.layers]


def _unchanged(viewer, before):
    after = list(viewer.layers)
    assert [layer.name for layer in after] == [name for name, _, _ in before], [layer.name for layer in after]
    for (name, layer, data), now in zip(before, after):
        assert now is layer and np.array_equal(np.asarray(now.data), data, equal_nan=True), f"layer {name} changed"


def _assert_reported(widget, notes, *words):
    assert widget.status.value.startswith("error:"), widget.status.value
    messages = [str(n.message) for n in notes]
    for word in words:
        assert word in widget.status.value, widget.status.value
        assert any(word in m for m in messages), messages


def _bad_files(tmp_path):
    """(list of paths, words the message must hold)"""
    trunc = tmp_path / "truncated.npy"
    np.save(trunc, RNG.random((3, 32, 32)))
    trunc.write_bytes(trunc.read_bytes()[:200])
    renamed = tmp_path / "really_npy.dm3"
    np.save(tmp_path / "x.npy", RNG.random((3, 32, 32)))
    renamed.write_bytes((tmp_path / "x.npy").read_bytes())
    nan = RNG.random((3, 32, 32))
    nan[1, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "uncalibrated.npy", RNG.random((3, 32, 32)))
    np.save(tmp_path / "a.npy", RNG.random((32, 32)))
    np.save(tmp_path / "b.npy", RNG.random((32, 31)))
    (tmp_path / "empty.tif").write_bytes(b"")
    return [
        ([trunc], ("truncated.npy",)),
        ([renamed], ("really_npy.dm3", "NumPy .npy")),
        ([tmp_path / "nan.npy"], ("nan.npy", "NaN")),
        ([tmp_path / "uncalibrated.npy"], ("uncalibrated.npy", "sampling")),
        ([tmp_path / "a.npy", tmp_path / "b.npy"], ("b.npy", "different shapes")),
        ([tmp_path / "empty.tif"], ("empty.tif",)),
        ([tmp_path / "missing.dm3"], ("missing.dm3", "not found")),
    ]


def test_load_widget_bad_files(setup, qtbot, tmp_path):
    viewer, widgets, notes = setup
    load = widgets["Load focal series"]
    before = _snapshot(viewer)
    cases = _bad_files(tmp_path)
    for paths, words in cases:
        notes.clear()
        load.files.value = [str(p) for p in paths]
        load.sampling.value = 0.0
        load.start()
        _wait(qtbot, load)
        _assert_reported(load, notes, *words)
        _unchanged(viewer, before)
    assert len(cases) == 7


BAD_LAYERS = [  # (what, data, sampling in the layer's metadata, words the message must hold)
    ("constant", np.ones((3, 64, 64), np.float32), 0.22, "constant"),
    (
        "nan",
        np.where(RNG.random((3, 64, 64)) > 0.99, np.nan, 1.0).astype(np.float32) + RNG.random((3, 64, 64)),
        0.22,
        "NaN",
    ),
    ("2 frames", RNG.random((2, 64, 64)), 0.22, "holds 2 image"),
    ("4x4", RNG.random((3, 4, 4)), 0.22, "too small"),
    ("3x4000", RNG.random((3, 3, 4000)), 0.22, "too small"),
    ("sampling 52.6", RNG.random((3, 64, 64)), 52.6, "outside the range"),
    ("no sampling", RNG.random((3, 64, 64)), None, "no sampling"),
]


def test_predict_widget_bad_layers(setup, qtbot):
    viewer, widgets, notes = setup
    pred = widgets["Predict"]
    for what, data, meta_sampling, words in BAD_LAYERS:
        name = f"bad {what}"
        viewer.add_image(
            data,
            name=name,
            scale=(1, meta_sampling or 1.0, meta_sampling or 1.0),
            metadata=dict(sampling=meta_sampling),
        )
        before = _snapshot(viewer)
        notes.clear()
        pred.layer.reset_choices()
        pred.layer.value = name
        pred.start()
        _wait(qtbot, pred)
        _assert_reported(pred, notes, name, words)
        _unchanged(viewer, before)
    # a 2-D image where a focal series is needed: not offered (the chooser lists (N, H, W) images only)
    viewer.add_image(RNG.random((64, 64)), name="bad 2-D image", scale=(0.22, 0.22), metadata=dict(sampling=0.22))
    pred.layer.reset_choices()
    assert "bad 2-D image" not in pred.layer.choices and "good" in pred.layer.choices


def test_filter_widget_and_reader(setup, qtbot, tmp_path):
    viewer, widgets, notes = setup
    data = RNG.random((3, 64, 64)).astype(np.float32)
    data[0, 0, 0] = np.inf
    viewer.add_image(data, name="inf", scale=(1, 0.22, 0.22), metadata=dict(sampling=0.22))
    before = _snapshot(viewer)
    filt = widgets["Support filter"]
    filt.layer.reset_choices()
    filt.layer.value = "inf"
    filt.start()
    _wait(qtbot, filt)
    _assert_reported(filt, notes, "NaN or Inf")
    _unchanged(viewer, before)
    # the npe2 reader (drag and drop, File > Open) on a broken file
    bad = tmp_path / "broken.dm3"
    bad.write_bytes(b"\x00\x00\x00\x03" + b"\x01" * 100)
    with pytest.raises(Exception, match="broken.dm3") as info:  # napari wraps the reader's error
        viewer.open(str(bad), plugin="napari-hrtem")
    assert "could not be read as DigitalMicrograph" in str(
        info.value
    ) or "could not be read as DigitalMicrograph" in str(info.value.__cause__)
    _unchanged(viewer, before)


def test_hdf5_file_that_hangs_h5py_gui(setup, qtbot, tmp_path, monkeypatch):
    """A damaged .emd that makes h5py loop forever: the Load widget and the npe2 reader (napari's main
    thread) give an error naming the file after the read time limit, and napari keeps painting meanwhile
    (a 10 ms timer keeps firing)."""
    import time

    from qtpy.QtCore import QTimer

    from ..test_bad_input import REAL, VELOX, _hanging_emd

    if not (REAL / VELOX).is_file():
        pytest.skip("../shared/realdata not present (a user's clone has no ../shared)")
    viewer, widgets, notes = setup
    bad = _hanging_emd(tmp_path)
    monkeypatch.setenv("NAPARI_HRTEM_READ_TIMEOUT", "2")
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(10)
    before = _snapshot(viewer)
    load = widgets["Load focal series"]
    load.files.value = [str(bad)]
    load.sampling.value = 0.0
    t0 = time.monotonic()
    load.start()
    _wait(qtbot, load, timeout=15_000)
    assert time.monotonic() - t0 < 7
    _assert_reported(load, notes, "damaged_heap.emd", "took more than 2 s")
    _unchanged(viewer, before)
    ticks.clear()
    t0 = time.monotonic()
    with pytest.raises(Exception, match=r"damaged_heap\.emd") as info:  # napari wraps the reader's error
        viewer.open(str(bad), plugin="napari-hrtem")
    elapsed = time.monotonic() - t0
    timer.stop()
    assert "took more than 2 s" in str(info.value) + str(info.value.__cause__)
    assert elapsed < 7
    gaps = np.diff([t0, *ticks])
    assert len(ticks) > 20 and gaps.max() < 1.0, (len(ticks), gaps.max())  # napari was not frozen
    _unchanged(viewer, before)


def test_labels_widget_bad_csv_files(setup, tmp_path):
    """Loading a bad labels CSV (each of the library corpus' bad CSVs, and a broken JSON sidecar) into
    the Labels widget: a notification naming the file, the labels being edited are kept as they are."""
    from napari_hrtem.io.sites import Sites, labels_sidecar_path

    from ..test_bad_input import BAD_CSVS

    viewer, widgets, notes = setup
    labels = widgets["Labels"]
    labels.series.reset_choices()
    labels.series.value = "good"
    labels.start_from.reset_choices()
    labels.start_from.value = labels.start_from.choices[-2]  # empty labels
    layer = labels.new_layer()
    layer.add(np.array([[3.0, 4.0], [5.0, 6.0]]))
    before = _snapshot(viewer)
    cases = [(f"bad_{i}.csv", content, words) for i, (_, content, words) in enumerate(BAD_CSVS)]
    good = tmp_path / "good.csv"
    Sites(np.zeros((1, 2)), [0], [1.0]).write_csv(good)
    side = tmp_path / "sidecar.csv"
    side.write_bytes(good.read_bytes())
    labels_sidecar_path(side).write_text("{not json")
    cases.append((side.name, side.read_bytes(), "not a readable JSON sidecar"))
    for name, content, words in cases:
        path = tmp_path / name
        if name != side.name:
            path.write_bytes(content)
        notes.clear()
        assert labels.load(path) is None
        assert labels.status.value.startswith("not loaded:") and words in labels.status.value, labels.status.value
        assert any(words in str(n.message) for n in notes), [str(n.message) for n in notes]
        assert name.split(".")[0] in labels.status.value, labels.status.value
        _unchanged(viewer, before)
    assert len(cases) == len(BAD_CSVS) + 1
    assert labels.dirty  # the unsaved edits are still marked unsaved
    labels.dirty = False  # else closing the viewer asks whether to save them


def test_predict_widget_network_that_does_not_match_its_card(setup, qtbot, tmp_path, monkeypatch):
    """A user network whose card does not fit its weights: a notification naming the weight file, no layer."""
    import json
    import shutil

    from napari_hrtem.models.registry import available_networks, user_networks_dir

    viewer, widgets, notes = setup
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    folder = user_networks_dir()
    folder.mkdir(parents=True)
    src = available_networks()["msdnet"]
    shutil.copyfile(src.weights, folder / "mine.pt")
    (folder / "mine.json").write_text(json.dumps(dict(src.card.to_dict(), name="mine", classes=["Mo", "S2", "S", "W"])))
    pred = widgets["Predict"]
    pred.refresh_networks()
    pred.networks.value = ["mine"]
    pred.layer.reset_choices()
    pred.layer.value = "good"
    before = _snapshot(viewer)
    notes.clear()
    pred.start()
    _wait(qtbot, pred)
    _assert_reported(pred, notes, "mine.pt", "do not match")
    _unchanged(viewer, before)


@pytest.mark.parametrize(
    ("sidecar", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ("[1, 2]", "must be a JSON object"),
        ('{"sampling": "abc"}', "sampling"),
        ('{"sampling": NaN}', "sampling"),
    ],
    ids=["nested 100000 deep", "a list", "sampling text", "sampling NaN"],
)
def test_labels_widget_bad_sidecar(setup, tmp_path, sidecar, words):
    """Issue 13: a labels sidecar nested 100000 levels deep (RecursionError before), a list or a bad
    sampling: the core raises a ValueError naming the sidecar, which the Labels widget reports; no layer
    changes."""
    from napari_hrtem.io.sites import Sites, labels_sidecar_path

    viewer, widgets, notes = setup
    labels = widgets["Labels"]
    before = _snapshot(viewer)
    path = tmp_path / "labels.csv"
    Sites(np.zeros((1, 2)), [0], [1.0]).write_csv(path)
    labels_sidecar_path(path).write_text(sidecar)
    notes.clear()
    assert labels.load(path) is None
    assert labels.status.value.startswith("not loaded:") and words in labels.status.value, labels.status.value
    assert labels_sidecar_path(path).name in labels.status.value
    assert any(words in str(n.message) for n in notes), [str(n.message) for n in notes]
    _unchanged(viewer, before)
