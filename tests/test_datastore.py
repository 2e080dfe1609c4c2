"""simulate-dataset: zarr store, dask tasks, atomic samples, resuming after SIGKILL, loader."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# tiny samples: 96 px at ~0.25 Å/px (24 Å), static lattice, 0.1 Å wave sampling
TINY = dict(image_epochs=2, shape=(96, 96), sampling_range=(0.245, 0.255), phonon_configs=1, wave_sampling=0.1)
TINY_CLI = [
    "--image-epochs",
    "2",
    "--size",
    "96",
    "--sampling-range",
    "0.245",
    "0.255",
    "--phonon-configs",
    "1",
    "--wave-sampling",
    "0.1",
]


def _attrs(path, i):
    import zarr

    return dict(zarr.open_group(str(Path(path) / "samples" / f"{i:06d}"), mode="r").attrs)


def _run_cli(argv):
    from napari_hrtem.cli import main

    sys.exit(main(argv))


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


def test_gaussian_and_disk_labels():
    from napari_hrtem.training.datasets import class_map
    from napari_hrtem.training.datastore import gaussian_map, parse_labels

    sites = np.array([[5.0, 5.0], [5.0, 10.0]])
    classes = np.array([0, 2])
    g = gaussian_map(sites, classes, (64, 64), 0.25, width=0.5)
    assert g.shape == (3, 64, 64) and g.dtype == np.float32
    assert g[0, 20, 20] == pytest.approx(1.0) and g[2, 20, 40] == pytest.approx(1.0)
    assert g[1].max() == 0
    # one σ (0.5 Å = 2 px) away: exp(-1/2)
    assert g[0, 22, 20] == pytest.approx(np.exp(-0.5), rel=1e-5)
    d = class_map(sites, classes, (64, 64), 0.25, radius=0.5)
    assert d[20, 20] == 0 and d[20, 40] == 2 and d[0, 0] == 3
    assert parse_labels(["disk:0.45", "gaussian:0.3"]) == {"disk": 0.45, "gaussian": 0.3}
    for bad in (["ring:1"], ["disk"], ["disk:-1"], ["disk:x"], ["disk:1", "disk:2"]):
        with pytest.raises(ValueError):
            parse_labels(bad)


def test_dask_cluster_writes_store_and_loader(tmp_path, client):
    import zarr

    from napari_hrtem.training.datasets import dataset_sites, load_dataset
    from napari_hrtem.training.datastore import completed_samples, generate_dataset, read_config, simulate_sample

    out = tmp_path / "d.zarr"
    params = tmp_path / "params.yaml"
    params.write_text("microscope:\n  log10_dose: 4.0\n")  # a user's parameter file: fixed dose
    config = read_config(params)
    seen = []
    res = generate_dataset(
        out, 2, client=client, seed=3, config=config, progress=lambda d, t: seen.append((d, t)), **TINY
    )
    assert sorted(res["computed"]) == [0, 1] and seen[-1] == (2, 2)
    assert completed_samples(out) == [0, 1]
    root = zarr.open_group(str(out), mode="r")
    recorded = dict(config, simulation=dict(config["simulation"], phonon_configs=1))  # the explicit value, recorded
    assert root.attrs["recipe"]["config"] == recorded and root.attrs["structures"] == 2
    assert root.attrs["recipe"]["slice_thickness"] == 0.25 and root.attrs["recipe"]["energy"] == 50e3  # the file's
    g = root["samples/000001"]
    a = dict(g.attrs)
    assert a["complete"] is True and len(a["microscope"]) == 2 and a["sample"]["graphene_layers"] in range(7)
    assert all(m["dose"] == pytest.approx(1e4) for m in a["microscope"])  # drawn from the --config file
    assert g["images"].shape == (2, 3, 96, 96) and g["images"].dtype == np.float32
    assert g["exit_wave"].dtype == np.complex64 and g["exit_wave"].shape == (288, 288)  # 96 px x 3 at ≤ 0.1 Å
    assert g["labels/disk"].shape == (96, 96) and g["labels/gaussian"].shape == (3, 96, 96)
    assert g["labels/disk"].attrs["width"] == 0.45
    # the sample is the same wherever it is computed
    direct = simulate_sample(1, root.attrs["recipe"])
    np.testing.assert_array_equal(direct["images"], g["images"][...])
    np.testing.assert_array_equal(direct["exit_wave"], g["exit_wave"][...])
    # the trainer's loader reads the directory into load_dataset's form: one item per focal series
    data = load_dataset(out)
    assert data["images"].shape == (4, 3, 96, 96) and data["images"].dtype == np.float32
    assert data["labels"].shape == (4, 96, 96) and data["labels"].dtype == np.uint8
    assert list(data["sample"]) == [0, 0, 1, 1] and len(data["params"]) == 4
    sites, classes = dataset_sites(data, 3)
    np.testing.assert_array_equal(sites, g["sites"][...])
    np.testing.assert_array_equal(classes, g["site_classes"][...])
    assert abs(float(data["images"][0].mean())) < 0.2  # locally normalized
    # a store made with other settings is refused, nothing recomputed
    with pytest.raises(ValueError, match="other settings"):
        generate_dataset(out, 3, client=client, seed=4, config=config, **TINY)
    assert completed_samples(out) == [0, 1]

    # the exit waves as a bank: band-limited, with their class maps ...
    from napari_hrtem.training.datastore import load_exit_waves

    bank = load_exit_waves(out)
    assert [b["sample"] for b in bank] == [0, 1]
    assert bank[1]["wave"].extent == pytest.approx((288 * g["exit_wave"].attrs["sampling"],) * 2)
    assert bank[1]["wave"].spectrum.size < 288 * 288 / 4 and bank[1]["sampling"] == a["sampling"]
    np.testing.assert_array_equal(bank[1]["labels"], g["labels/disk"][...])
    # ... that `train --bank` trains on with fresh microscopes, here starting from a shipped network
    from napari_hrtem.cli import main

    nets = tmp_path / "nets"
    assert (
        main(
            [
                "train",
                "--bank",
                str(out),
                "--init",
                "unet",
                "--steps",
                "2",
                "--batch-size",
                "1",
                "--validate-every",
                "0",
                "--threads",
                "1",
                "--name",
                "unet-bank",
                "--out",
                str(nets),
            ]
        )
        == 0
    )
    card = json.loads((nets / "unet-bank.json").read_text())
    assert card["training"]["exit_wave_banks"] == [dict(store="d.zarr", exit_waves=2)]
    assert card["training"]["initialized_from"]["name"] == "unet" and card["training"]["datasets"] == []
    assert card["sampling"] == pytest.approx(np.mean([b["sampling"] for b in bank]), abs=1e-4)
    # its domain is what the store was made with (its recorded ranges: here a fixed dose), not Table 1
    assert bank[0]["ranges"] == recorded
    assert card["domain"]["dose"] == pytest.approx([1e4, 1e4]) and card["domain"]["energy"] == [50.0, 50.0]
    assert "d.zarr" in card["domain"]["recipe"]["parameters"]
    # with a dataset too: half of every batch from each
    assert (
        main(
            [
                "train",
                "--bank",
                str(out),
                "--dataset",
                str(out),
                "--steps",
                "1",
                "--batch-size",
                "2",
                "--set",
                "base_channels=4",
                "--set",
                "depth=2",
                "--validate-every",
                "0",
                "--name",
                "mixed",
                "--out",
                str(nets),
            ]
        )
        == 0
    )
    card = json.loads((nets / "mixed.json").read_text())
    assert card["training"]["bank_fraction"] == 0.5 and card["training"]["datasets"][0]["file"] == "d.zarr"
    assert card["domain"]["dose"] == pytest.approx([1e4, 1e4])  # the store's ranges, read as a set too


def test_sigkill_then_resume(tmp_path, client):
    """issue 7: a run killed with SIGKILL mid-run completes on a second run without recomputing."""
    from napari_hrtem.training.datastore import completed_samples, generate_dataset, load_zarr_dataset

    out = tmp_path / "k.zarr"
    argv = ["simulate-dataset", "--out", str(out), "--structures", "8", "--workers", "0", "--seed", "5", *TINY_CLI]
    ctx = multiprocessing.get_context("fork")  # the child inherits the warmed-up abTEM
    proc = ctx.Process(target=_run_cli, args=(argv,))
    proc.start()
    deadline = time.time() + 300
    while len(completed_samples(out)) < 2 and time.time() < deadline and proc.is_alive():
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert proc.exitcode == -signal.SIGKILL
    done = completed_samples(out)
    assert 2 <= len(done) < 7 and 7 not in done, "the run should be killed mid-way"
    stamps = {i: _attrs(out, i)["completed_at"] for i in done}
    # an incomplete sample (complete attribute false) is never read, and is recomputed
    fake = out / "samples" / "000007"
    shutil.copytree(out / "samples" / f"{done[0]:06d}", fake)
    meta = json.loads((fake / "zarr.json").read_text())
    meta["attributes"]["complete"] = False
    (fake / "zarr.json").write_text(json.dumps(meta))
    assert 7 not in completed_samples(out)

    res = generate_dataset(out, 8, client=client, seed=5, **TINY)
    assert sorted(res["skipped"]) == done and sorted(res["computed"]) == sorted(set(range(8)) - set(done))
    assert completed_samples(out) == list(range(8))
    assert _attrs(out, 7)["index"] == 7
    assert {i: _attrs(out, i)["completed_at"] for i in done} == stamps  # not recomputed
    assert not [p for p in (out / "partial").iterdir() if p.is_dir()]  # the killed run's debris is gone
    data = load_zarr_dataset(out)
    assert data["images"].shape == (16, 3, 96, 96) and np.isfinite(data["images"]).all()
    assert len(data["site_index"]) == 17
    # running again does nothing
    assert generate_dataset(out, 8, client=client, seed=5, **TINY)["computed"] == []


def test_cli_errors_write_nothing(tmp_path, capsys):
    from napari_hrtem.cli import main

    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    out = tmp_path / "x.zarr"
    assert main(["simulate-dataset", "--out", str(out), "--structures", "1", "--config", str(bad)]) == 2
    assert "p.json" in capsys.readouterr().err
    assert main(["simulate-dataset", "--out", str(out), "--structures", "1", "--labels", "ring:1"]) == 2
    assert not out.exists()
    notstore = tmp_path / "folder"
    notstore.mkdir()
    assert main(["simulate-dataset", "--out", str(notstore), "--structures", "1", "--workers", "0"]) == 2
    assert "not a zarr store" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_subprocess_sigkill_with_local_cluster(tmp_path):
    """The real command with its own local dask cluster, killed (whole process group) and rerun."""
    from napari_hrtem.training.datastore import completed_samples

    out = tmp_path / "s.zarr"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "napari_hrtem.cli",
        "simulate-dataset",
        "--out",
        str(out),
        "--structures",
        "6",
        "--workers",
        "1",
        "--seed",
        "9",
        *TINY_CLI,
    ]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while len(completed_samples(out)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its cluster's worker processes
    proc.wait()
    done = completed_samples(out)
    assert 2 <= len(done) < 6
    stamps = {i: _attrs(out, i)["completed_at"] for i in done}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert f"{6 - len(done)} sample(s) computed" in run.stdout and f"{len(done)} already complete" in run.stdout
    assert completed_samples(out) == list(range(6))
    assert {i: _attrs(out, i)["completed_at"] for i in done} == stamps
