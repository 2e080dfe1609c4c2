"""The warm batch path: many focal series in one process, each network loaded once.

:func:`napari_hrtem.api.find_focal_series` (what one series is), :func:`napari_hrtem.api.predict_batch`
(one folder per series, ``summary.csv``, a bad series does not stop the batch, cancel) and
``napari-hrtem predict --batch``, on the project's own tiny simulated series.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import napari_hrtem as hrtem
from napari_hrtem.cli import main
from napari_hrtem.models import registry

NETWORKS = ["unet", "unetpp"]


def _write_series(path: Path, images: np.ndarray, sampling: float) -> Path:
    """A focal series as .npz with its sampling (Å/px), beam energy (eV) and defocus (Å, abTEM sign)."""
    np.savez(path, images=images, sampling=sampling, energy=50e3, defocus=np.array([-50.0, 0.0, 50.0]))
    return path


@pytest.fixture
def series_folder(tmp_path, tiny_series):
    """Three series: two good ones (the second with a little more noise) and a corrupt file."""
    images, sampling, _ = tiny_series
    folder = tmp_path / "series"
    folder.mkdir()
    rng = np.random.default_rng(3)
    _write_series(folder / "a.npz", images, sampling)
    noisy = (images * (1 + 0.02 * rng.standard_normal(images.shape))).astype(np.float32)
    _write_series(folder / "b.npz", noisy, sampling)
    (folder / "c.npz").write_bytes(b"PK\x03\x04 not a zip archive")
    return folder


@pytest.fixture
def count_loads(monkeypatch):
    """Counts the weights read by :meth:`Network.load` (the real loads, by network name)."""
    counts: dict[str, int] = {}
    original = registry.Network.load

    def load(self, device=None):
        counts[self.name] = counts.get(self.name, 0) + 1
        return original(self, device)

    monkeypatch.setattr(registry.Network, "load", load)
    return counts


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# --- what one series is ------------------------------------------------------------------------


def test_find_focal_series_forms(tmp_path, tiny_series):
    images, sampling, _ = tiny_series
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    for name in ("run 1.npz", "run_1.npz", "z.npz"):  # "run 1" -> run_1, then run_1-2
        _write_series(stacks / name, images, sampling)
    (stacks / ".hidden.npz").write_bytes(b"skipped")
    found = hrtem.find_focal_series(stacks)
    assert [s.name for s in found] == ["run_1", "run_1-2", "z"]
    assert [s.paths for s in found] == [(stacks / "run 1.npz",), (stacks / "run_1.npz",), (stacks / "z.npz",)]

    frames = tmp_path / "frames"  # single images: the frames of one series, in name order
    frames.mkdir()
    for i, image in enumerate(images):
        np.save(frames / f"f{i}.npy", image)
    (one,) = hrtem.find_focal_series([frames])
    assert one.name == "frames" and [p.name for p in one.paths] == ["f0.npy", "f1.npy", "f2.npy"]

    nested = tmp_path / "nested"  # a folder of series folders
    for name in ("s1", "s2"):
        (nested / name).mkdir(parents=True)
        for i, image in enumerate(images):
            np.save(nested / name / f"f{i}.npy", image)
    assert [s.name for s in hrtem.find_focal_series(nested)] == ["s1", "s2"]

    globbed = hrtem.find_focal_series([str(stacks / "*.npz"), str(nested / "s*")])
    assert [s.name for s in globbed] == ["run_1", "run_1-2", "z", "s1", "s2"]
    assert hrtem.read_focal_series(list(one.paths)).images.shape == images.shape


@pytest.mark.parametrize(
    "layout, message",
    [
        ("single file", "holds one image"),
        ("mixed folder", "ambiguous"),
        ("files and folders", "ambiguous"),
        ("missing", "no such file or folder"),
        ("empty glob", "matches no supported file"),
        ("twice", "given twice"),
        ("empty folder", "holds no supported file"),
    ],
)
def test_find_focal_series_refuses_ambiguous_input(tmp_path, tiny_series, layout, message):
    images, sampling, _ = tiny_series
    folder = tmp_path / "in"
    folder.mkdir()
    if layout == "single file":
        np.save(folder / "f0.npy", images[0])
        given = [folder / "f0.npy"]
    elif layout == "mixed folder":
        np.save(folder / "f0.npy", images[0])
        _write_series(folder / "stack.npz", images, sampling)
        given = [folder]
    elif layout == "files and folders":
        _write_series(folder / "stack.npz", images, sampling)
        (folder / "sub").mkdir()
        _write_series(folder / "sub" / "stack.npz", images, sampling)
        given = [folder]
    elif layout == "missing":
        given = [folder / "nothing.npz"]
    elif layout == "empty glob":
        given = [str(folder / "*.dm3")]
    elif layout == "twice":
        _write_series(folder / "stack.npz", images, sampling)
        given = [folder / "stack.npz", folder]
    else:
        given = [folder]
    with pytest.raises(ValueError, match=message):
        hrtem.find_focal_series(given)


def test_outputs_inside_the_input_are_not_series(series_folder):
    results = series_folder / "results"
    hrtem.predict_batch([series_folder / "a.npz"], results, ["unet"])  # results/a/specimen_mask.tif is a .tif
    assert [s.name for s in hrtem.find_focal_series(series_folder)] == ["a", "b", "c"]
    assert [s.name for s in hrtem.find_focal_series(str(series_folder / "*"))] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="output folder"):
        hrtem.find_focal_series(results)


# --- the batch ---------------------------------------------------------------------------------


def test_batch_writes_what_single_predict_writes_and_loads_networks_once(tmp_path, series_folder, count_loads):
    out = tmp_path / "out"
    events = []
    result = hrtem.predict_batch(series_folder, out, NETWORKS, progress=events.append)
    assert count_loads == {"unet": 1, "unetpp": 1}  # three series, each network's weights read once
    assert [r.series for r in result.rows] == ["a", "b", "c"]
    assert [r.status for r in result.rows] == ["ok", "ok", "error"]
    assert "c.npz" in result.rows[2].message  # the corrupt file: named, and the batch went on
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "summary.csv"]
    rows = _rows(out / "summary.csv")
    assert [r["series"] for r in rows] == ["a", "b", "c"] and rows[2]["status"] == "error"
    assert rows[0]["frames"] == "3" and float(rows[0]["sampling_A_per_px"]) == pytest.approx(0.22)
    assert rows[0]["energy_kV"] == "50"
    assert int(rows[0]["sites_total"]) == sum(int(rows[0][f"sites_{c}"]) for c in ("Mo", "S2", "S")) > 0
    assert rows[0]["sources"] == str(series_folder / "a.npz")
    assert events[-1].done == events[-1].total == 3 * len(NETWORKS)

    # the same series through the single-series path: the same files
    single = tmp_path / "single"
    nets = hrtem.check_networks(NETWORKS)
    prepared = hrtem.prepare_focal_series(hrtem.read_focal_series(series_folder / "b.npz"), nets)
    hrtem.write_prediction(hrtem.predict_consensus(nets, prepared), single)
    for name in ("unet.csv", "unetpp.csv", "consensus.csv", "specimen_mask.tif"):
        assert (out / "b" / name).read_bytes() == (single / name).read_bytes(), name
    batch_json = json.loads((out / "b" / "predict.json").read_text())
    single_json = json.loads((single / "predict.json").read_text())
    for record in (batch_json, single_json):
        for net in record["networks"].values():
            net.pop("seconds")
    assert batch_json == single_json


def test_batch_goes_on_after_bad_series_and_keeps_foreign_folders(tmp_path, series_folder, tiny_series):
    images, sampling, _ = tiny_series
    _write_series(series_folder / "d.npz", images[:, :20, :20], sampling)  # too small for the networks
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "notes.txt").write_text("mine")  # a folder the batch did not write: not overwritten
    result = hrtem.predict_batch([series_folder], out, ["unet"])
    status = {r.series: (r.status, r.message) for r in result.rows}
    assert status["b"] == ("ok", "")
    assert status["a"][0] == status["c"][0] == status["d"][0] == "error"
    assert "did not write" in status["a"][1]
    assert (out / "a" / "notes.txt").read_text() == "mine" and sorted(p.name for p in (out / "a").iterdir()) == [
        "notes.txt"
    ]
    assert not (out / "d").exists()
    # a second run replaces the batch's own outputs (as predict does with its folder)
    again = hrtem.predict_batch([series_folder / "b.npz"], out, ["unet"])
    assert [r.status for r in again.rows] == ["ok"] and [r["series"] for r in _rows(out / "summary.csv")] == ["b"]


def test_batch_stops_between_series_and_between_networks(tmp_path, series_folder):
    out = tmp_path / "out"
    seen = []

    def stop():  # after the first series is done
        return any(event.info.get("row") is not None for event in seen)

    result = hrtem.predict_batch(series_folder, out, ["unet"], stop=stop, progress=seen.append)
    assert result.cancelled and [r.status for r in result.rows] == ["ok", "cancelled", "cancelled"]
    assert sorted(p.name for p in out.iterdir()) == ["a", "summary.csv"]
    assert [r["status"] for r in _rows(out / "summary.csv")] == ["ok", "cancelled", "cancelled"]

    out2, seen2 = tmp_path / "out2", []  # stopped after the first of two networks: nothing written for it
    result = hrtem.predict_batch(
        series_folder, out2, NETWORKS, stop=lambda: any("network" in e.info for e in seen2), progress=seen2.append
    )
    assert result.cancelled and [r.status for r in result.rows] == ["cancelled"] * 3
    assert "stopped while running" in result.rows[0].message
    assert sorted(p.name for p in out2.iterdir()) == ["summary.csv"]


def test_batch_checks_everything_before_any_work(tmp_path, series_folder):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.csv").write_text("my,own,table\n")
    with pytest.raises(ValueError, match="not written by a napari-hrtem batch"):
        hrtem.predict_batch(series_folder, out, ["unet"])
    with pytest.raises(ValueError, match="unknown network"):
        hrtem.predict_batch(series_folder, tmp_path / "o2", ["nonet"])
    with pytest.raises(ValueError, match="radius"):
        hrtem.predict_batch(series_folder, tmp_path / "o3", ["unet"], radius=-1)
    assert (out / "summary.csv").read_text() == "my,own,table\n"
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_cli_predict_batch(tmp_path, series_folder, capsys):
    out = tmp_path / "out"
    rc = main(["predict", "--batch", str(series_folder / "*.npz"), "--out", str(out), "--networks", "unet"])
    captured = capsys.readouterr()
    assert rc == 1  # c.npz failed: listed, the others done
    assert "2 of 3 series done" in captured.out and "c: error" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "summary.csv"]
    assert (out / "a" / "unet.csv").is_file() and (out / "a" / "predict.json").is_file()

    np.save(series_folder / "single.npy", np.zeros((8, 8), np.float32))  # now ambiguous: one line, status 2
    rc = main(["predict", "--batch", str(series_folder), "--out", str(tmp_path / "o2"), "--networks", "unet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("napari-hrtem: error:") and "ambiguous" in err[-1]
    assert not (tmp_path / "o2").exists()
