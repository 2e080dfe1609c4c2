"""Kill tests: a writer killed with SIGKILL at any point leaves the old file intact or the new one
complete under the final name, never a partial file.

Writers: the site CSV (:meth:`napari_hrtem.io.sites.Sites.write_csv`) and a network's weights + model card
(:func:`napari_hrtem.training.trainer.save_network`). Each writer runs in a forked child process that is killed
either at a chosen step (hooks on the child's own file operations: after k bytes, before fsync, before or
after each rename) or, asynchronously, by the parent while it writes a big file. The ``slow`` variants
kill at 20 random moments each.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from napari_hrtem.io.sites import Sites, read_csv

FORK = multiprocessing.get_context("fork")


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _hook_renames_and_fsyncs(point):
    """Make this (child) process kill itself at ``point``: ("before_replace"|"after_replace"|"before_fsync", n)."""
    calls = {"replace": 0, "fsync": 0}
    orig_replace, orig_fsync = os.replace, os.fsync

    def replace(src, dst, **kw):
        calls["replace"] += 1
        if point == ("before_replace", calls["replace"]):
            _die()
        orig_replace(src, dst, **kw)
        if point == ("after_replace", calls["replace"]):
            _die()

    def fsync(fd):
        calls["fsync"] += 1
        if point == ("before_fsync", calls["fsync"]):
            _die()
        orig_fsync(fd)

    os.replace, os.fsync = replace, fsync


class _KillAfter:
    """A file wrapper that writes the first ``limit`` bytes, flushes them, then kills the process."""

    def __init__(self, fh, limit):
        self.fh, self.limit, self.written = fh, limit, 0

    def write(self, text):
        if self.written + len(text) >= self.limit:
            self.fh.write(text[: self.limit - self.written])
            self.fh.flush()
            _die()
        self.written += len(text)
        return self.fh.write(text)


def _run_child(target, *args, kill_when=None, timeout=60.0):
    """Run ``target(*args)`` in a forked process; ``kill_when()`` (polled) triggers SIGKILL from here.

    Returns (exitcode, killed_by_parent).
    """
    proc = FORK.Process(target=target, args=args)
    proc.start()
    killed = False
    t0 = time.monotonic()
    while proc.is_alive() and time.monotonic() - t0 < timeout:
        if kill_when is not None and kill_when():
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.0005)
    proc.join(timeout)
    assert proc.exitcode is not None, "the child hung"
    return proc.exitcode, killed


# ----------------------------------------------------------------------------------------- site CSV

N_ROWS = 150_000


def _sites(n, seed):
    rng = np.random.default_rng(seed)
    return Sites(rng.random((n, 2)) * 1e3, rng.integers(0, 3, n), rng.random(n))


def _csv_child(path, n, seed, point):
    from napari_hrtem.io import sites as sites_module

    if point and point[0] == "bytes":
        orig = sites_module.csv.writer
        sites_module.csv.writer = lambda fh: orig(_KillAfter(fh, point[1]))
    elif point:
        _hook_renames_and_fsyncs(point)
    _sites(n, seed).write_csv(path)
    os._exit(0)


@pytest.fixture()
def old_csv(tmp_path):
    path = tmp_path / "sites.csv"
    _sites(100, 1).write_csv(path)
    return path, path.read_bytes()


def _expected_new_csv(tmp_path, n, seed) -> bytes:
    ref = tmp_path / "ref" / "sites.csv"
    ref.parent.mkdir(exist_ok=True)
    _sites(n, seed).write_csv(ref)
    return ref.read_bytes()


def _only_old_or_new(path: Path, old: bytes, new: bytes) -> str:
    names = [p.name for p in path.parent.iterdir() if p.name != "ref"]
    assert path.name in names, "the file is gone"
    others = [n for n in names if n != path.name]
    assert all(n.startswith(f".{path.name}.") and n.endswith(".tmp") for n in others), others
    data = path.read_bytes()
    assert data in (old, new), f"partial file under the final name ({len(data)} bytes)"
    read_csv(path)  # and it reads
    return "old" if data == old else "new"


N_SMALL = 2_000
#: deterministic kill points of the CSV writer and the file expected after each
CSV_POINTS = [
    (("bytes", 0), "old"),  # the temporary file exists, empty
    (("bytes", 10), "old"),
    (("bytes", 1000), "old"),
    (("bytes", 28_000), "old"),  # about half of the 2000 rows (56,919 bytes)
    (("bytes", 56_918), "old"),  # all but the last byte
    (("before_fsync", 1), "old"),
    (("before_replace", 1), "old"),
    (("after_replace", 1), "new"),
]


@pytest.mark.parametrize(
    ("point", "expected"), CSV_POINTS, ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else v
)
def test_csv_writer_killed_at_a_step(tmp_path, old_csv, point, expected):
    path, old = old_csv
    new = _expected_new_csv(tmp_path, N_SMALL, 2)
    code, _ = _run_child(_csv_child, path, N_SMALL, 2, point)
    assert code == -signal.SIGKILL
    assert _only_old_or_new(path, old, new) == expected
    # the next write succeeds and leaves no temporary file of its own; the file keeps the usual permissions
    before = {p.name for p in path.parent.iterdir()}
    _sites(N_SMALL, 2).write_csv(path)
    assert path.read_bytes() == new and {p.name for p in path.parent.iterdir()} == before
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def _tmp_size(folder: Path, prefix: str) -> int:
    sizes = [p.stat().st_size for p in folder.glob(prefix + "*.tmp") if p.exists()]
    return max(sizes, default=-1)


def _async_csv_kill(tmp_path, path, old, threshold):
    new = _expected_new_csv(tmp_path, N_ROWS, 3)

    def kill_when():
        try:
            return _tmp_size(path.parent, f".{path.name}.") >= threshold
        except FileNotFoundError:
            return False

    code, killed = _run_child(_csv_child, path, N_ROWS, 3, None, kill_when=kill_when)
    state = _only_old_or_new(path, old, new)
    assert (state == "old") if killed else (code == 0 and state == "new")
    return killed


@pytest.mark.parametrize("threshold", [1, 300_000, 2_000_000])
def test_csv_writer_killed_while_writing_a_big_file(tmp_path, old_csv, threshold):
    path, old = old_csv
    assert _async_csv_kill(tmp_path, path, old, threshold), "the kill came too late to test a partial write"


@pytest.mark.slow
def test_csv_writer_killed_at_random_moments(tmp_path, old_csv):
    path, old = old_csv
    rng = np.random.default_rng()
    killed = sum(_async_csv_kill(tmp_path, path, old, int(rng.integers(1, 4_000_000))) for _ in range(20))
    print(f"{killed} of 20 random kills hit the CSV writer mid-write")
    assert killed >= 10


# ------------------------------------------------------------------------------- weights and card

CARD = dict(
    architecture="unet",
    config=dict(base_channels=4, depth=2),
    classes=["Mo", "S2", "S"],
    n_images=3,
    sampling=0.22,
    normalization_distance=12.0,
)


def _model(seed, **config):
    import torch

    from napari_hrtem.models.registry import build_model

    torch.manual_seed(seed)
    return build_model("unet", **(config or CARD["config"]))


def _hook_torch_save(point):
    """Arrange to die at a kill point: ``("bytes", k)`` after torch.save wrote k bytes (negative: from
    the end), else at a rename or fsync (:func:`_hook_renames_and_fsyncs`)."""
    import torch

    if point and point[0] == "bytes":
        orig = torch.save

        def save(obj, fh, *a, **kw):
            buf = io.BytesIO()
            orig(obj, buf, *a, **kw)
            data = buf.getvalue()
            k = point[1] if point[1] >= 0 else len(data) + point[1]
            fh.write(data[:k])
            fh.flush()
            _die()

        torch.save = save
    elif point:
        _hook_renames_and_fsyncs(point)


def _net_child(folder, seed, point, config):

    from napari_hrtem.training.trainer import save_network

    model = _model(seed, **config)
    _hook_torch_save(point)
    save_network(model, folder, "net", dict(CARD, config=config or CARD["config"]))
    os._exit(0)


@pytest.fixture()
def old_network(tmp_path):
    from napari_hrtem.training.trainer import save_network

    folder = tmp_path / "nets"
    save_network(_model(1), folder, "net", CARD)
    return folder, {p.name: p.read_bytes() for p in folder.iterdir()}


def _network_state(folder: Path, old_files: dict, new_state: dict, config=None) -> str:
    """'old' or 'new': the network under the final names loads and is the old or the new one, complete."""
    import torch

    from napari_hrtem.models.registry import read_network

    names = sorted(p.name for p in folder.iterdir())
    assert {"net.pt", "net.json"} <= set(names), names
    assert all(n in ("net.pt", "net.json", ".net.pt.tmp", ".net.json.tmp") for n in names), names
    net = read_network(folder / "net.json")  # finishes a save killed between its two renames
    state = net.load("cpu").state_dict()
    if all((folder / n).read_bytes() == data for n, data in old_files.items()):
        return "old"
    assert set(state) == set(new_state) and all(torch.equal(state[k], new_state[k]) for k in state), (
        "the network under the final names is neither the old nor the new one"
    )
    return "new"


#: deterministic kill points of save_network (weights, then card) and the network expected after each
NET_POINTS = [
    (("bytes", 0), "old"),
    (("bytes", 1000), "old"),
    (("bytes", 20_000), "old"),
    (("bytes", -1), "old"),
    (("before_fsync", 1), "old"),  # weights complete in .net.pt.tmp, not yet synced
    (("before_fsync", 2), "old"),  # card complete in .net.json.tmp, not yet synced
    (("before_replace", 1), "old"),  # both temporaries complete
    (("after_replace", 1), "new"),  # new weights in place, the card not yet: read_network finishes the save
    (("after_replace", 2), "new"),
]


@pytest.mark.parametrize(
    ("point", "expected"), NET_POINTS, ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else v
)
def test_save_network_killed_at_a_step(old_network, point, expected):
    folder, old_files = old_network
    new_state = _model(2).state_dict()
    code, _ = _run_child(_net_child, folder, 2, point, {})
    assert code == -signal.SIGKILL
    assert _network_state(folder, old_files, new_state) == expected
    card = json.loads((folder / "net.json").read_text())
    assert card["sha256"] and card["name"] == "net"


BIG = dict(base_channels=24, depth=4)  # ~11 M parameters, ~44 MB of weights


def _async_net_kill(folder, old_files, threshold, new_state):
    def kill_when():
        return _tmp_size(folder, ".net.pt") >= threshold

    code, killed = _run_child(_net_child, folder, 3, None, BIG, kill_when=kill_when)
    state = _network_state(folder, old_files, new_state)
    assert (state == "old") if killed else (code == 0 and state == "new")
    return killed


@pytest.mark.parametrize("threshold", [1, 10_000_000])
def test_save_network_killed_while_writing_big_weights(old_network, threshold):
    folder, old_files = old_network
    assert _async_net_kill(folder, old_files, threshold, _model(3, **BIG).state_dict()), (
        "the kill came too late to test a partial write"
    )


@pytest.mark.slow
def test_save_network_killed_at_random_moments(old_network):
    folder, old_files = old_network
    new_state = _model(3, **BIG).state_dict()
    rng = np.random.default_rng()
    killed = 0
    for _ in range(20):
        if _async_net_kill(folder, old_files, int(rng.integers(1, 44_000_000)), new_state):
            killed += 1
        else:  # the save finished: put the old network back for the next round
            for name, data in old_files.items():
                (folder / name).write_bytes(data)
    print(f"{killed} of 20 random kills hit save_network mid-write")
    assert killed >= 5


# ------------------------------------------------------------------------------ training checkpoint


def _checkpoint(step):
    model = _model(step)
    return dict(step=step, model=model.state_dict(), running=[0.1 * step], seconds=float(step))


def _ckpt_child(folder, step, point):

    from napari_hrtem.training.trainer import CHECKPOINT_NAME, _write_atomic

    obj = _checkpoint(step)
    _hook_torch_save(point)
    _write_atomic(obj, Path(folder) / CHECKPOINT_NAME)
    os._exit(0)


#: kill points of the training checkpoint writer (training._write_atomic) and the checkpoint expected after each
CKPT_POINTS = [
    (("bytes", 0), "old"),
    (("bytes", 1000), "old"),
    (("bytes", -1), "old"),  # all but the last byte
    (("before_fsync", 1), "old"),  # complete in .checkpoint.pt.tmp, not yet synced
    (("before_replace", 1), "old"),
    (("after_replace", 1), "new"),
    (("before_fsync", 2), "new"),  # renamed, the folder not yet synced
]


@pytest.mark.parametrize(
    ("point", "expected"), CKPT_POINTS, ids=lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else v
)
def test_checkpoint_writer_killed_at_a_step(tmp_path, point, expected):
    """A training killed while it writes its checkpoint resumes from the previous or the new checkpoint,
    complete (the SIGKILL of a whole training run is tests/test_training.py)."""
    import torch

    from napari_hrtem.training.trainer import CHECKPOINT_NAME, _write_atomic, read_checkpoint

    _write_atomic(_checkpoint(3), tmp_path / CHECKPOINT_NAME)
    code, _ = _run_child(_ckpt_child, tmp_path, 6, point)
    assert code == -signal.SIGKILL
    names = {p.name for p in tmp_path.iterdir()}
    # debris of the kill: only the writer's own temporary file (unique name: .<name>.<pid>-<random>.tmp)
    assert all(n == CHECKPOINT_NAME or (n.startswith(f".{CHECKPOINT_NAME}.") and n.endswith(".tmp")) for n in names)
    state = read_checkpoint(tmp_path)  # loads: never a partial file under the final name
    step = {"old": 3, "new": 6}[expected]
    ref = _checkpoint(step)
    assert state["step"] == step and state["running"] == ref["running"]
    assert all(torch.equal(state["model"][k], ref["model"][k]) for k in ref["model"])
    _write_atomic(_checkpoint(9), tmp_path / CHECKPOINT_NAME)  # the next save succeeds beside the debris
    assert read_checkpoint(tmp_path)["step"] == 9
    assert {p.name for p in tmp_path.iterdir()} - names <= {CHECKPOINT_NAME}
