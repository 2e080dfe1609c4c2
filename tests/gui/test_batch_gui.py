"""GUI test of the Batch widget: every focal series of a folder, one output folder each, and Cancel."""

from __future__ import annotations

import csv

import numpy as np
import pytest

napari = pytest.importorskip("napari")


def _wait(qtbot, widget, timeout=300_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def _series_folder(folder, tiny_series, n: int):
    """``n`` small focal series as .npz (sampling Å/px, energy eV, defocus Å) in ``folder``."""
    images, sampling, _ = tiny_series
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        noisy = (images * (1 + 0.01 * rng.standard_normal(images.shape))).astype(np.float32)
        np.savez(folder / f"series{i}.npz", images=noisy, sampling=sampling, energy=50e3, defocus=[-50.0, 0.0, 50.0])
    return folder


def _statuses(path):
    with open(path, encoding="utf-8", newline="") as fh:
        return [row["status"] for row in csv.DictReader(fh)]


def test_batch_widget_writes_one_folder_per_series_and_cancels(make_napari_viewer, qtbot, tmp_path, tiny_series):
    from napari_hrtem.plugin.widgets.batch import BatchWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 4)), name="mine")
    widget = BatchWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Batch")
    from napari_hrtem.models.registry import shipped_networks

    # by default each series' beam energy picks the shipped set (the list is then greyed out)
    assert widget.by_energy.value and not widget.networks.enabled
    assert sorted(widget.networks.value) == sorted(n.name for n in shipped_networks(None))

    widget.start()  # no input folder: says so, starts nothing
    assert widget.worker is None and "folder" in widget.status.value

    folder = _series_folder(tmp_path / "in", tiny_series, 3)
    widget.inputs.value = folder
    widget.out.value = tmp_path / "by energy"
    widget.start()  # the series record no energy: the 50 kV set runs on each
    _wait(qtbot, widget)
    assert widget.result is not None and _statuses(tmp_path / "by energy" / "summary.csv") == ["ok"] * 3
    assert sorted(widget.result.networks) == sorted(n.name for n in shipped_networks(None))
    widget.by_energy.value = False  # the ticked networks on every series
    assert widget.networks.enabled
    widget.out.value = tmp_path / "out"
    widget.networks.value = ["unet"]
    widget.start()
    assert not widget.run.enabled and widget.cancel.enabled
    _wait(qtbot, widget)
    result = widget.result
    assert result is not None and not result.cancelled, widget.status.value
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["series0", "series1", "series2", "summary.csv"]
    for i in range(3):
        assert (out / f"series{i}" / "unet.csv").is_file() and (out / f"series{i}" / "consensus.csv").is_file()
    assert _statuses(out / "summary.csv") == ["ok"] * 3
    assert not widget.table.native.isHidden() and widget.table.shape[0] == 3
    assert list(widget.table.row_headers) == ["series0", "series1", "series2"]
    assert widget.table.data.to_list()[0][0] == "ok"
    assert str(out / "summary.csv") in widget.summary.value
    assert "3 of 3 series done" in widget.status.value
    assert widget.run.enabled and not widget.cancel.enabled

    images, sampling, _ = tiny_series
    np.save(folder / "one frame.npy", images[0])  # now ambiguous: an error in the status line, nothing written
    widget.out.value = tmp_path / "refused"
    widget.start()
    _wait(qtbot, widget)
    assert "ambiguous" in widget.status.value and not (tmp_path / "refused").exists()

    many = _series_folder(tmp_path / "many", tiny_series, 8)
    widget.inputs.value = many
    widget.out.value = tmp_path / "out2"
    widget.start()
    widget.stop()  # Cancel at once: the batch stops before its next series
    _wait(qtbot, widget)
    result = widget.result
    assert result.cancelled and len(result.ok) < 8
    statuses = _statuses(tmp_path / "out2" / "summary.csv")
    assert len(statuses) == 8 and "cancelled" in statuses
    done = sorted(p.name for p in (tmp_path / "out2").iterdir() if p.is_dir())
    assert done == [r.series for r in result.ok]
    assert widget.status.value.startswith("cancelled")
    assert [layer.name for layer in viewer.layers] == ["mine"]  # no layer changed
