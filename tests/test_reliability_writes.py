"""Reliability of the writers (issue 13, items 3, 7, 10, 11): never overwrite what we did not make,
old state or complete new state after a full disk or a kill, locks and unique temporary names for
concurrent runs, outputs checked before the work.

Full-disk faults are injected as ``OSError(ENOSPC)`` at the write, fsync and rename of one file
(:func:`_full_disk`); kills reuse the harness of tests/test_interrupt.py. Each case checks the
files on disk afterwards (nothing lost, nothing half-written, no stray temporary file) and, through
the CLI, that the error is one line naming the file.
"""

from __future__ import annotations

import builtins
import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from napari_hrtem.cli import main
from napari_hrtem.io import files as files_module
from napari_hrtem.io import sites as sites_module
from napari_hrtem.io.files import LOCK_NAME, TEMPORARY, RunLock, WriteError, temporary_path, write_atomic
from napari_hrtem.io.sites import Sites, labels_sidecar_path, read_labels, write_labels

from .test_interrupt import FORK, _hook_renames_and_fsyncs, _run_child

POINTS = ("write", "fsync", "replace")


# ------------------------------------------------------------------------------------------ helpers


class _FullFile:
    """A file whose writes stop half-way with ENOSPC (a disk that fills up while writing)."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        self._fh.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def _full_disk(monkeypatch, point: str, match: Callable[[str], bool]) -> None:
    """Make the ``point`` ("write", "fsync" or "replace") of the files whose name ``match``es fail with ENOSPC.

    write: the writers' ``open`` (napari_hrtem.io.files and .sites) hands out a file that fills up;
    fsync: by the file name behind the descriptor; replace: by the destination name.
    """
    full = OSError(errno.ENOSPC, "No space left on device")
    if point == "write":
        real_open = builtins.open

        def fake_open(file, mode="r", *args, **kwargs):
            fh = real_open(file, mode, *args, **kwargs)
            if isinstance(file, (str, os.PathLike)) and set(mode) & set("wxa") and match(Path(file).name):
                return _FullFile(fh)
            return fh

        for module in (files_module, sites_module):
            monkeypatch.setattr(module, "open", fake_open, raising=False)
    elif point == "fsync":
        real_fsync = os.fsync

        def fsync(fd):
            try:
                name = Path(os.readlink(f"/proc/self/fd/{fd}")).name
            except OSError:
                name = ""
            if match(name):
                raise full
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
    else:
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            if match(Path(dst).name):
                raise full
            real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``: relative path -> content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_temporaries(folder: Path) -> None:
    stray = [p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name == LOCK_NAME]
    assert not stray, stray


def _one_line(capsys, argv, *names, after_progress: bool = False) -> str:
    """Exit status 2 and one error line naming ``names`` (``after_progress``: the last line, after the
    progress lines of work that ran, e.g. a disk that fills up at the end)."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    if after_progress:
        err = err.splitlines()[-1]
    assert err.count("\n") == 0 and err.startswith("napari-hrtem: error: "), err
    for name in names:
        assert str(name) in err, err
    return err


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(folder: Path, pid: int) -> Path:
    import socket

    lock = folder / LOCK_NAME
    lock.write_text(json.dumps(dict(pid=pid, host=socket.gethostname(), what="predict", command="test")))
    return lock


@pytest.fixture(scope="module")
def series_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "series.npy"
    np.save(path, (np.random.default_rng(0).random((3, 96, 96)) + 1).astype(np.float32))
    return path


def _predict(series_file, out, *more) -> list[str]:
    return ["predict", str(series_file), "--sampling", "0.22", "--networks", "unet", *more, "--out", str(out)]


@pytest.fixture(scope="module")
def prediction(series_file):
    """A real prediction of two networks (unet, msdnet) on a small series."""
    from napari_hrtem import api

    nets = api.check_networks(["unet", "msdnet"])
    prepared = api.prepare_focal_series(api.read_focal_series([series_file], sampling=0.22), nets)
    return api.predict_consensus(nets, prepared)


def _fresh(prediction):
    return dataclasses.replace(prediction, notes=[])


# --------------------------------------------------------- predict --out: never overwrite what we did not make


def test_predict_refuses_a_folder_holding_other_files(series_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "unet.csv").write_text("y,x,class\n1,2,Mo\n")  # the user's own file of that name
    before = _tree(out)
    _one_line(capsys, _predict(series_file, out), out, "notes.txt", "--overwrite")
    assert _tree(out) == before
    _no_temporaries(out)


def test_predict_overwrite_replaces_only_its_own_files(series_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(_predict(series_file, out, "--overwrite")) == 0
    assert (out / "notes.txt").read_text() == "mine"
    side = json.loads((out / "predict.json").read_text())
    assert "notes.txt" not in side["files"] and {"unet.csv", "consensus.csv", "predict.json"} <= set(side["files"])
    _no_temporaries(out)


def test_predict_rerun_with_fewer_networks_removes_the_stale_csv(series_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(_predict(series_file, out, "--networks", "unet", "msdnet")) == 0
    assert (out / "msdnet.csv").is_file()
    capsys.readouterr()
    assert main(_predict(series_file, out)) == 0  # into its own folder: no --overwrite needed
    err = capsys.readouterr().err
    assert not (out / "msdnet.csv").exists() and "removed msdnet.csv" in err, err
    side = json.loads((out / "predict.json").read_text())
    assert set(side["networks"]) == {"unet"} and "msdnet.csv" not in side["files"]
    assert {p.name for p in out.iterdir()} == set(side["files"])


def test_predict_out_is_a_file(series_file, tmp_path, capsys):
    out = tmp_path / "result.csv"
    out.write_text("keep")
    _one_line(capsys, _predict(series_file, out), out, "is a file")
    assert out.read_text() == "keep"


def test_predict_out_empty_is_an_error_not_the_current_folder(series_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line(capsys, _predict(series_file, ""), "empty name")
    assert list(tmp_path.iterdir()) == []


def test_predict_out_not_creatable_fails_before_the_networks_run(series_file, tmp_path, capsys, monkeypatch):
    from napari_hrtem import api

    def never(*args, **kwargs):
        raise AssertionError("the networks ran before the output folder was checked")

    monkeypatch.setattr(api, "predict_consensus", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line(capsys, _predict(series_file, blocker / "out"), blocker / "out", "cannot be created")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_predict_read_only_out_fails_before_the_networks_run(series_file, tmp_path, capsys, monkeypatch):
    from napari_hrtem import api

    monkeypatch.setattr(api, "predict_consensus", lambda *a, **k: pytest.fail("the networks ran"))
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        _one_line(capsys, _predict(series_file, out), out, "not writable")
    finally:
        out.chmod(0o755)


def test_write_prediction_never_overwrites_an_input(prediction, tmp_path):
    from napari_hrtem import api

    out = tmp_path / "out"
    out.mkdir()
    source = out / "consensus.csv"
    source.write_text("y,x,class\n")
    pred = dataclasses.replace(prediction, series=dataclasses.replace(prediction.series, sources=[str(source)]))
    with pytest.raises(ValueError, match="is an input file"):
        api.write_prediction(pred, out, overwrite=True)
    assert source.read_text() == "y,x,class\n"


# ------------------------------------------------------------------------- evaluate --json: not an input


@pytest.mark.parametrize("which", ["truth", "predicted"])
def test_evaluate_json_refuses_an_input_file(tmp_path, capsys, which):
    sites = Sites(np.array([[1.0, 2.0]]), np.array([0]), np.array([1.0]))
    files = {"truth": tmp_path / "truth.csv", "predicted": tmp_path / "pred.csv"}
    for path in files.values():
        sites.write_csv(path)
    before = _tree(tmp_path)
    argv = ["evaluate", str(files["predicted"]), str(files["truth"]), "--json", str(files[which])]
    _one_line(capsys, argv, files[which].name, "input file")
    assert _tree(tmp_path) == before


def test_evaluate_json_written_atomically(tmp_path, capsys):
    sites = Sites(np.array([[1.0, 2.0]]), np.array([0]), np.array([1.0]))
    sites.write_csv(tmp_path / "a.csv")
    sites.write_csv(tmp_path / "b.csv")
    assert main(["evaluate", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["radius"] == 0.5
    _no_temporaries(tmp_path)


# ------------------------------------------------------------------- predict.json: full disk, old or new


@pytest.mark.parametrize("point", POINTS)
def test_predict_json_full_disk_keeps_the_old_file(prediction, tmp_path, monkeypatch, point):
    from napari_hrtem import api

    out = tmp_path / "out"
    api.write_prediction(_fresh(prediction), out)
    old = (out / "predict.json").read_bytes()
    (out / "predict.json").write_bytes(old.replace(b'"origin"', b'"origin_old"'))  # mark the old file
    old = (out / "predict.json").read_bytes()
    _full_disk(monkeypatch, point, lambda n: "predict.json" in n)
    with pytest.raises(OSError) as info:
        api.write_prediction(_fresh(prediction), out)
    assert info.value.errno == errno.ENOSPC and "predict.json" in str(info.value) and "\n" not in str(info.value)
    assert (out / "predict.json").read_bytes() == old  # never 0 bytes, never half
    json.loads(old)
    _no_temporaries(out)


def test_predict_cli_full_disk_is_one_line_naming_predict_json(series_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    _full_disk(monkeypatch, "fsync", lambda n: "predict.json" in n)
    _one_line(capsys, _predict(series_file, out), "predict.json", "No space left", after_progress=True)
    assert not (out / "predict.json").exists()
    _no_temporaries(out)


@pytest.mark.parametrize("point", POINTS)
def test_site_csv_full_disk_names_the_file(tmp_path, monkeypatch, point):
    path = tmp_path / "s.csv"
    Sites(np.array([[1.0, 2.0]]), np.array([0]), np.array([1.0])).write_csv(path)
    old = path.read_bytes()
    _full_disk(monkeypatch, point, lambda n: "s.csv" in n)
    with pytest.raises(WriteError, match="s.csv"):
        Sites(np.zeros((5, 2)), np.zeros(5, int), np.ones(5)).write_csv(path)
    assert path.read_bytes() == old
    _no_temporaries(tmp_path)


# ------------------------------------------------------------------------------ simulate: the .npz


def _fake_simulate(*args, **kwargs):
    from types import SimpleNamespace

    micro = SimpleNamespace(defoci=np.array([-50.0, 0.0, 50.0]), energy=50e3, to_dict=lambda: {"defocus": -50.0})
    return SimpleNamespace(
        series=SimpleNamespace(images=np.ones((3, 64, 64), np.float32)),
        microscope=micro,
        truth=Sites(np.array([[1.0, 2.0]]), np.array([0]), np.array([1.0])),
        sample=SimpleNamespace(counts=lambda: {"Mo": 1}),
    )


@pytest.mark.parametrize("point", POINTS)
def test_simulate_npz_full_disk_keeps_the_old_file(tmp_path, capsys, monkeypatch, point):
    from napari_hrtem import api

    monkeypatch.setattr(api, "simulate", _fake_simulate)
    out = tmp_path / "s.npz"
    assert main(["simulate", str(out)]) == 0
    old = out.read_bytes()
    np.load(out)["images"]
    _full_disk(monkeypatch, point, lambda n: n == "s.npz" or n.startswith(".s.npz."))
    _one_line(capsys, ["simulate", str(out), "--seed", "3"], "s.npz", "No space left")
    assert out.read_bytes() == old  # never a truncated .npz
    _no_temporaries(tmp_path)


def test_simulate_npz_name_and_unwritable_folder(tmp_path, capsys, monkeypatch):
    from napari_hrtem import api

    monkeypatch.setattr(api, "simulate", _fake_simulate)
    assert main(["simulate", str(tmp_path / "s")]) == 0  # numpy's naming: s -> s.npz
    assert (tmp_path / "s.npz").is_file() and (tmp_path / "s.truth.csv").is_file()
    monkeypatch.setattr(api, "simulate", lambda *a, **k: pytest.fail("simulated before the output was checked"))
    _one_line(capsys, ["simulate", str(tmp_path / "nowhere" / "s.npz")], "does not exist")
    _one_line(capsys, ["simulate", str(tmp_path)], "is a folder")


# --------------------------------------------------------------------------- labels: CSV + sidecar as a pair


def _labels(n, seed):
    rng = np.random.default_rng(seed)
    return Sites(rng.random((n, 2)) * 20, rng.integers(0, 3, n), rng.random(n))


@pytest.fixture()
def old_labels(tmp_path):
    path = tmp_path / "l.csv"
    write_labels(path, _labels(4, 1), made_by=["manual"] * 4, sampling=0.2)
    return path, path.read_bytes(), labels_sidecar_path(path).read_bytes()


LABEL_FAULTS = [
    ("write", "csv"),
    ("fsync", "csv"),
    ("write", "sidecar"),
    ("fsync", "sidecar"),
    ("replace", "csv"),
    ("replace", "sidecar"),  # the CSV is already renamed: it is put back
]


@pytest.mark.parametrize(("point", "which"), LABEL_FAULTS)
def test_write_labels_full_disk_keeps_the_old_pair(tmp_path, monkeypatch, old_labels, point, which):
    path, csv_bytes, side_bytes = old_labels

    def match(name):
        if point == "replace":
            return name == ("l.csv" if which == "csv" else "l.csv.json")
        return "l.csv" in name and ((".json" in name) == (which == "sidecar"))

    _full_disk(monkeypatch, point, match)
    with pytest.raises(OSError) as info:
        write_labels(path, _labels(7, 2), made_by=["manual"] * 7, sampling=0.2)
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC and "\n" not in message
    assert (labels_sidecar_path(path).name if which == "sidecar" else path.name) in message, message
    assert path.read_bytes() == csv_bytes and labels_sidecar_path(path).read_bytes() == side_bytes
    _no_temporaries(tmp_path)
    monkeypatch.undo()
    sites, made_by, sidecar = read_labels(path)
    assert len(sites) == 4 and made_by == ["manual"] * 4 and "mismatch" not in sidecar


def _labels_child(path, point):
    _hook_renames_and_fsyncs(point)
    write_labels(path, _labels(7, 2), made_by=["new"] * 7, sampling=0.2)
    os._exit(0)


#: kill points of write_labels: fsyncs 1 the CSV, 2 the sidecar, 3 the folder (after both renames);
#: renames 1 (the CSV's own temporary), 2 the CSV into place, 3 the sidecar into place
LABEL_KILLS = [
    (("before_fsync", 1), "old"),
    (("before_fsync", 2), "old"),
    (("before_fsync", 3), "new"),
    (("before_replace", 2), "old"),
    (("after_replace", 2), "mismatch"),  # new CSV, old sidecar: read_labels says so
    (("before_replace", 3), "mismatch"),
    (("after_replace", 3), "new"),
]


@pytest.mark.parametrize(("point", "expected"), LABEL_KILLS, ids=lambda v: "-".join(map(str, v)))
def test_write_labels_killed_gives_old_new_or_a_detected_mismatch(tmp_path, old_labels, point, expected):
    path, csv_bytes, side_bytes = old_labels
    code, _ = _run_child(_labels_child, path, point)
    assert code == -signal.SIGKILL
    sites, made_by, sidecar = read_labels(path)
    if expected == "old":
        assert path.read_bytes() == csv_bytes and labels_sidecar_path(path).read_bytes() == side_bytes
        assert made_by == ["manual"] * 4
    elif expected == "new":
        assert len(sites) == 7 and made_by == ["new"] * 7 and "mismatch" not in sidecar
    else:
        assert len(sites) == 7 and "does not belong" in sidecar["mismatch"] and made_by == ["file l.csv"] * 7
    write_labels(path, _labels(3, 5), made_by=["again"] * 3)  # the next save succeeds over the debris
    assert read_labels(path)[1] == ["again"] * 3


def test_labels_widget_says_when_the_sidecar_does_not_match(tmp_path, old_labels):
    """The core's mismatch message is what the widget shows (tests/gui covers the widget itself)."""
    path, _, _ = old_labels
    _labels(9, 3).write_csv(path)  # the CSV replaced without its sidecar
    sites, made_by, sidecar = read_labels(path)
    assert len(sites) == 9 and made_by == ["file l.csv"] * 9
    assert "l.csv.json does not belong to this l.csv" in sidecar["mismatch"]


# ----------------------------------------------------------------- checkpoints: unique temporary names


def test_temporary_names_are_unique_per_process_and_call(tmp_path):
    a, b = temporary_path(tmp_path / "checkpoint.pt"), temporary_path(tmp_path / "checkpoint.pt")
    assert a != b and f".{os.getpid()}-" in a.name and TEMPORARY.match(a.name)


def _checkpoint_writer(folder, seed):
    from napari_hrtem.training.trainer import CHECKPOINT_NAME, _write_atomic

    for step in range(15):
        _write_atomic(
            dict(step=step, seed=seed, weights=np.full(20_000, seed, np.float32)), Path(folder) / CHECKPOINT_NAME
        )
    os._exit(0)


def test_two_trainings_sharing_a_checkpoint_folder_do_not_collide(tmp_path):
    import torch

    from napari_hrtem.training.trainer import CHECKPOINT_NAME

    procs = [FORK.Process(target=_checkpoint_writer, args=(tmp_path, s)) for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=False)
    assert state["step"] == 14 and np.all(state["weights"] == state["seed"])  # one whole checkpoint
    assert {p.name for p in tmp_path.iterdir()} == {CHECKPOINT_NAME}


@pytest.mark.parametrize("point", ["fsync", "replace"])
def test_checkpoint_full_disk_keeps_the_old_checkpoint(tmp_path, monkeypatch, point):
    from napari_hrtem.training.trainer import CHECKPOINT_NAME, _write_atomic

    path = tmp_path / CHECKPOINT_NAME
    _write_atomic(dict(step=1, model={}, settings={}), path)
    old = path.read_bytes()
    _full_disk(monkeypatch, point, lambda n: CHECKPOINT_NAME in n)
    with pytest.raises(OSError, match=CHECKPOINT_NAME):
        _write_atomic(dict(step=2, model={}, settings={}), path)
    monkeypatch.undo()
    assert path.read_bytes() == old and {p.name for p in tmp_path.iterdir()} == {CHECKPOINT_NAME}


# --------------------------------------------------------------------------------- locks: predict --out


def test_predict_refused_while_another_run_holds_the_folder(series_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = _write_lock(out, other.pid)
        _one_line(capsys, _predict(series_file, out), out, f"process {other.pid}")
        assert [p.name for p in out.iterdir()] == [LOCK_NAME] and lock.is_file()  # nothing written, lock kept
    finally:
        other.kill()
        other.wait()


def test_predict_takes_over_the_lock_of_a_dead_run(series_file, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    pid = _dead_pid()
    _write_lock(out, pid)
    capsys.readouterr()
    assert main(_predict(series_file, out)) == 0
    assert f"took over the lock of an earlier predict run (process {pid}" in capsys.readouterr().err
    _no_temporaries(out)  # and the lock is released


def test_run_lock_is_exclusive_between_processes_and_reentrant_within_one(tmp_path):
    folder = tmp_path / "new"
    with RunLock(folder, "predict"):
        with RunLock(folder, "predict"):  # the same process: re-entrant
            pass
        assert (folder / LOCK_NAME).is_file()
        code, _ = _run_child(_lock_child, folder)
        assert code == 3  # the other process is refused
    assert not folder.exists()  # made by the lock and left empty: removed


def _lock_child(folder):
    try:
        with RunLock(folder, "predict"):
            os._exit(0)
    except ValueError as exc:
        os._exit(3 if "another napari-hrtem predict" in str(exc) else 4)


def test_write_atomic_failure_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    write_atomic(target, "old")
    _full_disk(monkeypatch, "write", lambda n: "x.json" in n)
    with pytest.raises(WriteError, match=r"x.json: cannot be written \(No space left on device\)"):
        write_atomic(target, "new" * 1000)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


# --------------------------------------------------------------- simulate-dataset: stores it did not make

TINY = dict(image_epochs=1, shape=(64, 64), sampling_range=(0.245, 0.255), phonon_configs=1, wave_sampling=0.1)
TINY_CLI = ["--workers", "0", "--image-epochs", "1", "--size", "64", "--sampling-range", "0.245", "0.255"]
TINY_CLI += ["--phonon-configs", "1", "--wave-sampling", "0.1", "--structures", "1"]


def _foreign_store(path: Path) -> None:
    import zarr

    root = zarr.open_group(str(path), mode="w")
    root.attrs["owner"] = "someone else"
    root.create_array("samples", data=np.arange(6))  # an array named like our group
    part = root.create_group("partial")
    part.create_array("precious", data=np.ones(4))


def test_simulate_dataset_refuses_a_foreign_zarr_store_untouched(tmp_path, capsys):
    store = tmp_path / "user.zarr"
    _foreign_store(store)
    before = _tree(store)
    _one_line(capsys, ["simulate-dataset", "--out", str(store), *TINY_CLI], store, "did not make")
    assert _tree(store) == before  # no attribute rewritten, partial/ and its array kept
    assert not (store / LOCK_NAME).exists()


def test_simulate_dataset_refuses_our_format_with_an_array_named_samples(tmp_path):
    import zarr

    from napari_hrtem.training.datastore import FORMAT, VERSION, generate_dataset

    store = tmp_path / "odd.zarr"
    root = zarr.open_group(str(store), mode="w", attributes=dict(format=FORMAT, version=VERSION, recipe={}))
    root.create_array("samples", data=np.arange(3))
    before = _tree(store)
    with pytest.raises(ValueError, match="'samples' is not a group"):
        generate_dataset(store, 1, workers=0, **TINY)
    assert _tree(store) == before


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_simulate_dataset_refuses_an_existing_path(tmp_path, capsys, kind):
    path = tmp_path / "x.zarr"
    if kind == "file":
        path.write_text("keep")
    else:
        path.mkdir()
        (path / "mine.txt").write_text("keep")
    before = path.read_bytes() if kind == "file" else _tree(path)
    _one_line(capsys, ["simulate-dataset", "--out", str(path), *TINY_CLI], path, "not a zarr store")
    assert (path.read_bytes() if kind == "file" else _tree(path)) == before


def test_simulate_dataset_out_empty(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _one_line(capsys, ["simulate-dataset", "--out", "", *TINY_CLI], "empty name")
    assert list(tmp_path.iterdir()) == []


def test_simulate_dataset_resume_lock_and_stale_lock(tmp_path, capsys):
    """Our own store resumes; a live run's lock refuses a second run; a dead run's lock is taken over;
    what is not our debris in partial/ is kept."""
    from napari_hrtem.training.datastore import completed_samples

    store = tmp_path / "d.zarr"
    assert main(["simulate-dataset", "--out", str(store), *TINY_CLI]) == 0
    assert completed_samples(store) == [0] and not (store / LOCK_NAME).exists()
    keep = store / "partial" / "notes"
    keep.mkdir()
    debris = store / "partial" / "000003-0123abcd"
    debris.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(store, other.pid)
        before = _tree(store)
        _one_line(capsys, ["simulate-dataset", "--out", str(store), *TINY_CLI], store, f"process {other.pid}")
        assert _tree(store) == before
    finally:
        other.kill()
        other.wait()
    _write_lock(store, _dead_pid())
    capsys.readouterr()
    t0 = time.perf_counter()
    assert main(["simulate-dataset", "--out", str(store), *TINY_CLI]) == 0
    captured = capsys.readouterr()
    assert "took over the lock" in captured.err and "0 sample(s) computed" in captured.out
    assert time.perf_counter() - t0 < 30
    assert keep.is_dir() and not debris.exists() and not (store / LOCK_NAME).exists()
