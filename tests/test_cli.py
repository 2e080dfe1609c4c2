import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from napari_hrtem.cli import main

from .conftest import REALDATA, needs_realdata


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "series.npz"
    assert (
        main(
            [
                "simulate",
                str(out),
                "--size",
                "192",
                "--graphene-layers",
                "2",
                "--rotation",
                "7",
                "--dose",
                "20000",
                "--seed",
                "11",
            ]
        )
        == 0
    )
    return out


def test_predict_then_evaluate_simulated(simulated, tmp_path, capsys):
    from napari_hrtem.models.registry import shipped_networks

    names = [n.name for n in shipped_networks(50e3)]  # the set for the simulated series' 50 kV
    assert main(["predict", str(simulated), "--out", str(tmp_path)]) == 0
    for name in names + ["consensus"]:
        rows = _rows(tmp_path / f"{name}.csv")
        assert rows and set(rows[0]) >= {"y", "x", "class", "confidence"}
        assert {r["class"] for r in rows} <= {"Mo", "S2", "S"}
    assert "votes" in _rows(tmp_path / "consensus.csv")[0]
    sidecar = json.loads((tmp_path / "predict.json").read_text())
    assert sidecar["sampling"] == pytest.approx(0.22) and set(sidecar["networks"]) == set(names)
    capsys.readouterr()
    truth = simulated.with_suffix(".truth.csv")
    assert main(["evaluate", str(tmp_path / "consensus.csv"), str(truth), "--radius", "0.5"]) == 0
    table = capsys.readouterr().out
    overall = [line for line in table.splitlines() if line.startswith("overall")][0]
    f1 = float(overall.split()[-2])
    assert f1 >= 0.95, table


@needs_realdata
def test_predict_real_dm3_focal_series(tmp_path, capsys):
    files = [str(REALDATA / f"focal_series_img0{i}.dm3") for i in (7, 8, 9)]
    assert main(["predict", *files, "--out", str(tmp_path)]) == 0
    sidecar = json.loads((tmp_path / "predict.json").read_text())
    assert sidecar["sampling"] == pytest.approx(0.2842, rel=1e-3)
    assert sidecar["shape"] == [3, 1024, 1024]
    for name in list(sidecar["networks"]) + ["consensus"]:
        rows = _rows(tmp_path / f"{name}.csv")
        yx = np.array([[float(r["y"]), float(r["x"])] for r in rows]).reshape(-1, 2)
        # positions in Å inside the 1024 px * 0.2842 Å/px field
        assert np.all((yx >= -1) & (yx <= 1024 * 0.2842 + 1))
    # the file's 300 kV picks the shipped set trained nearest to it
    from napari_hrtem.models.registry import shipped_networks

    assert sorted(sidecar["networks"]) == sorted(n.name for n in shipped_networks(300e3))
    assert sidecar["energy_kv"] == 300 and all(len(_rows(tmp_path / f"{n}.csv")) > 0 for n in sidecar["networks"])
    # not MoS2: the networks' own labels put like columns side by side (the sublattice check), and say so
    marked = {
        n: sum(float(r["sublattice_conflict"]) for r in _rows(tmp_path / f"{n}.csv")) for n in sidecar["networks"]
    }
    assert max(marked.values()) > 0, marked
    out = capsys.readouterr().out
    for name, n in marked.items():
        assert ("in sublattice conflict in " in next(x for x in out.splitlines() if x.startswith(f"{name}:"))) == (
            n > 0
        )
    assert sidecar["consensus"]["sublattice_conflicts"] == sum(
        float(r["sublattice_conflict"]) for r in _rows(tmp_path / "consensus.csv")
    )


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.dm3"
    bad.write_bytes(b"\x00" * 100)
    assert main(["predict", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.dm3" in err[0]
    np.save(tmp_path / "one.npy", np.ones((64, 64), np.float32))
    assert main(["predict", str(tmp_path / "one.npy"), "--out", str(tmp_path / "out")]) == 2
    assert "--sampling" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "one.npy"), "--sampling", "0.2", "--out", str(tmp_path / "out")]) == 2
    assert "focal series of 3 images" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "one.npy"), "--networks", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown network" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_console_script_lists_networks():
    out = subprocess.run(
        [sys.executable, "-m", "napari_hrtem.cli", "networks"], capture_output=True, text=True, check=True
    ).stdout
    assert "unet" in out and "validation atomic F1" in out
    assert "shipped set for 50-80 kV: msdnet, unet, unetpp (learned consensus consensus.json)" in out  # the sets
