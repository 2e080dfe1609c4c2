"""Size before allocation, bounded work (issue 13, items 4 and 5): files, parameter files, weights and
settings that declare gigabytes or combinatorial work are refused before anything is allocated.

Every CLI case runs in a child process under a memory ceiling (:func:`run_capped`: ``RLIMIT_AS`` of
:data:`CEILING`, i.e. 2 GiB of work over the ~0.65 GiB that an idle ``import torch, napari_hrtem`` maps)
and a 60 s time limit, so that a blow-up or a hang fails the test instead of the machine; it must exit
with status 2 and one line naming the file or option and the limit.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from napari_hrtem.io.focal_series import FocalSeries, FocalSeriesError, assemble_focal_series, read_image_file
from napari_hrtem.io.limits import LimitError, check_array_size, json_depth, load_json_limited, load_yaml_limited

SRC = str(Path(__file__).resolve().parents[1] / "src")
#: Address-space ceiling of a child CLI process: an idle `import torch, napari_hrtem` maps ~0.65 GiB.
CEILING = 3 * 2**30
TIME_LIMIT = 60


def _cap() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CEILING, CEILING))


def run_capped(*args: str, cwd=None, env: dict | None = None) -> subprocess.CompletedProcess:
    """``napari-hrtem ARGS`` in a child process under :data:`CEILING` and :data:`TIME_LIMIT`."""
    full_env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1", MALLOC_ARENA_MAX="2", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "napari_hrtem.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=TIME_LIMIT,
        preexec_fn=_cap,
        check=False,
    )


def assert_refused(out: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2 with exactly one error line holding ``words``."""
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("napari-hrtem: error: "), out.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# --- bombs: files that declare far more than they hold -------------------------------------------------


def _tiff_bomb(path: Path) -> None:
    """A deflate TIFF declaring one 32768 x 32768 uint8 image (1 Gpx, 4 GiB as float32) in ~1 MB."""
    import tifffile

    tile = np.zeros((1024, 1024), np.uint8)
    tifffile.imwrite(
        path,
        (tile for _ in range(32 * 32)),
        shape=(32768, 32768),
        dtype=np.uint8,
        tile=(1024, 1024),
        compression="zlib",
        photometric="minisblack",
    )


def _npz_bomb(path: Path) -> None:
    """An .npz whose deflated member holds 6 GiB of declared zeros in a few MB (header + stream)."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (6, 16384, 16384)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("images.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            chunk = bytes(2**24)
            for _ in range(6 * 16384 * 16384 * 4 // len(chunk) // 64):  # 1/64 written: enough to be refused
                fh.write(chunk)


def _npy_bomb(path: Path) -> None:
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (100, 65536, 65536)})
        fh.write(bytes(64))


def _mrc_bomb(path: Path) -> None:
    import mrcfile

    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.zeros((2, 8, 8), np.float32))
    raw = bytearray(path.read_bytes())
    raw[0:12] = np.array([65536, 65536, 64], "<i4").tobytes()  # nx, ny, nz: 1 TiB declared
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("name", "make"),
    [("bomb.tif", _tiff_bomb), ("bomb.npz", _npz_bomb), ("bomb.npy", _npy_bomb), ("bomb.mrc", _mrc_bomb)],
)
def test_a_file_declaring_gigabytes_is_refused_before_it_is_decoded(tmp_path, name, make):
    path = tmp_path / name
    make(path)
    assert path.stat().st_size < 40 * 2**20
    with pytest.raises(FocalSeriesError, match=rf"^{name}.*(limit|memory available|holds only)"):
        read_image_file(path, sampling=0.2)
    out = run_capped("predict", str(path), "--out", str(tmp_path / "out"), "--sampling", "0.2")
    assert_refused(out, name)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_big_machine_raises_the_limits_with_environment_variables(tmp_path, monkeypatch):
    check_array_size((4, 4096, 4096), np.float32, "x.tif")  # the default limit takes real series
    monkeypatch.setenv("NAPARI_HRTEM_MAX_PIXELS", "1000")
    with pytest.raises(LimitError, match=r"x.tif: .*over the limit of 1,000 pixels.*NAPARI_HRTEM_MAX_PIXELS"):
        check_array_size((4, 32, 32), np.float32, "x.tif")
    np.save(tmp_path / "small.npy", np.random.default_rng(0).random((3, 32, 32)).astype(np.float32))
    with pytest.raises(FocalSeriesError, match="small.npy: .*limit"):
        read_image_file(tmp_path / "small.npy", sampling=0.2)
    monkeypatch.setenv("NAPARI_HRTEM_MAX_PIXELS", "abc")
    with pytest.raises(LimitError, match="NAPARI_HRTEM_MAX_PIXELS"):
        check_array_size((4, 32, 32), np.float32, "x.tif")


def test_valid_small_files_still_read(tmp_path):
    import tifffile

    images = np.random.default_rng(1).random((3, 32, 32)).astype(np.float32)
    tifffile.imwrite(tmp_path / "ok.tif", images, compression="zlib", photometric="minisblack")
    np.savez_compressed(tmp_path / "ok.npz", images=images, sampling=0.2, defocus=[0.0, 50.0, 100.0])
    assert read_image_file(tmp_path / "ok.tif", 0.2).images.shape == (3, 32, 32)
    series = read_image_file(tmp_path / "ok.npz")
    assert series.images.shape == (3, 32, 32) and series.defocus == [0.0, 50.0, 100.0]


def test_a_truncated_npz_member_is_named(tmp_path):
    header = {"descr": "<f4", "fortran_order": False, "shape": (3, 64, 64)}
    with zipfile.ZipFile(tmp_path / "short.npz", "w") as zf:
        with zf.open("images.npy", "w") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            fh.write(bytes(100))
    with pytest.raises(FocalSeriesError, match=r"short.npz: array .images.: declares .* holds only"):
        read_image_file(tmp_path / "short.npz", 0.2)


# --- parameter files ---------------------------------------------------------------------------------------

LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    + ["microscope: {energy: *i}"]
)


def test_a_yaml_billion_laughs_is_refused(tmp_path):
    assert len(LAUGHS) < 600
    with pytest.raises(Exception, match="expand to more than"):
        load_yaml_limited(LAUGHS)
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    out = run_capped("parameters", "--file", str(path))
    assert_refused(out, "laughs.yaml", "alias")
    out = run_capped("simulate-dataset", "--out", str(tmp_path / "d.zarr"), "--structures", "1", "--config", str(path))
    assert_refused(out, "laughs.yaml", "alias")
    assert not (tmp_path / "d.zarr").exists()


def test_yaml_anchors_within_the_limit_still_work():
    data = load_yaml_limited("r: &r [1, 2]\nmicroscope: {defocus: *r, blur: *r}")
    assert data["microscope"] == {"defocus": [1, 2], "blur": [1, 2]}


def test_deeply_nested_yaml_and_json_are_refused(tmp_path):
    with pytest.raises(Exception, match="nested more than"):
        load_yaml_limited("a: " + "[" * 5000 + "]" * 5000)
    deep = "[" * 100000 + "]" * 100000
    assert json_depth(deep) == 100000
    assert json_depth('{"a": "[[[[[[", "b": [1, [2]]}') == 3  # brackets in strings do not count
    with pytest.raises(LimitError, match="nested 100000 levels deep"):
        load_json_limited(deep, "p.json")
    (tmp_path / "deep.json").write_text('{"microscope": ' + deep + "}")
    assert_refused(run_capped("parameters", "--file", str(tmp_path / "deep.json")), "deep.json", "nested")
    (tmp_path / "big.yaml").write_text("# " + "x" * (2 * 2**20))
    assert_refused(run_capped("parameters", "--file", str(tmp_path / "big.yaml")), "big.yaml", "limit")


# --- weights ---------------------------------------------------------------------------------------------


def test_weights_larger_than_the_card_model_are_refused_before_torch_load(tmp_path):
    from napari_hrtem.models.registry import NetworkError, available_networks, check_weight_file, read_network, sha256

    shipped = available_networks()["msdnet"]
    card = json.loads(shipped.weights.with_suffix(".json").read_text())
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:  # a deflated 64 MiB storage
        with zipfile.ZipFile(shipped.weights) as real:
            for info in real.infolist():
                zf.writestr(info.filename, real.read(info))
        zf.writestr("archive/data/999", bytes(64 * 2**20))
    assert bomb.stat().st_size < 2**20
    card["sha256"] = sha256(bomb)  # whoever writes the card writes the weights
    (tmp_path / "bomb.json").write_text(json.dumps(card))
    net = read_network(tmp_path / "bomb.json")
    with pytest.raises(NetworkError, match=r"bomb.pt: holds 64.* more than .* the model of its card can need"):
        net.load("cpu")
    check_weight_file(shipped.weights, 50_000)  # the shipped file fits its own model


# --- settings --------------------------------------------------------------------------------------------


def test_a_training_batch_that_cannot_fit_is_refused_before_allocation():
    import torch

    from napari_hrtem.training.trainer import BatchTooLargeError, check_batch_fits

    check_batch_fits("unet", {}, (3, 128, 128), 8, torch.device("cpu"))
    with pytest.raises(BatchTooLargeError, match=r"batch of 20000 .* the largest batch that fits is (\d+)") as err:
        check_batch_fits("unet", {}, (3, 128, 128), 20000, torch.device("cpu"))
    fits = int(str(err.value).split("largest batch that fits is ")[1].split()[0])
    assert 1 <= fits < 20000
    with pytest.raises(BatchTooLargeError, match="batch of 20000"):  # MSDNet's own autograd function
        check_batch_fits("msdnet", {}, (3, 128, 128), 20000, torch.device("cpu"))


_MSDNET_STEP = """
import json, sys, torch
torch.set_num_threads(1)
from napari_hrtem.models.registry import build_model
depth, batch, size = (int(a) for a in sys.argv[1:4])
model = build_model("msdnet", n_images=3, n_classes=4, depth=depth)
torch.nn.functional.cross_entropy(model(torch.randn(1, 3, 32, 32)), torch.zeros(1, 32, 32, dtype=torch.long)).backward()
x, y = torch.randn(batch, 3, size, size), torch.randint(0, 4, (batch, size, size))
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))
with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM): a child inherits its parent's ru_maxrss
    f.write("5")
before = status("VmRSS")
torch.nn.functional.cross_entropy(model(x), y).backward()
print(json.dumps(status("VmHWM") - before))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="measures the peak memory with Linux's /proc")
def test_the_msdnet_training_memory_estimate_covers_a_measured_step():
    """The MSD-net's own autograd function cannot run on the meta device: its estimate (feature buffer,
    gradient, input gradient, tap maps) must still cover a real training step's peak, measured in a child
    process (1 thread, glibc's mmap threshold at 64 kB so that freed tensors leave the resident set)."""
    from napari_hrtem.training.trainer import training_memory

    depth, batch, size = 64, 2, 192
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(
        [sys.executable, "-c", _MSDNET_STEP, str(depth), str(batch), str(size)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    per_series, fixed = training_memory("msdnet", {"depth": depth}, (3, size, size))
    # The measured peak also holds the batch's images and labels, which per_series counts.
    assert per_series * batch >= measured, (per_series * batch, measured)
    assert per_series * batch < 3 * measured  # not so cautious that it refuses batches that fit


def test_train_batch_size_20000_fails_cleanly_under_the_ceiling(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "set.npz"
    from napari_hrtem.training.datasets import write_dataset  # noqa: F401  (the format's writer)

    images = rng.normal(size=(4, 3, 64, 64)).astype(np.float32)
    np.savez(
        data,
        images=images,
        labels=rng.integers(0, 4, (4, 64, 64)),
        sites=np.zeros((0, 2)),
        site_classes=np.zeros(0, int),
        site_index=np.zeros(5, int),
        sampling=np.full(4, 0.22),
        params=json.dumps([{}] * 4),
        recipe=json.dumps({}),
    )
    out = run_capped(
        "train", "--dataset", str(data), "--batch-size", "20000", "--steps", "2", "--out", str(tmp_path / "nets")
    )
    if out.returncode == 2 and "batch of 20000" not in out.stderr:
        pytest.skip(f"the dataset stand-in is not accepted here: {out.stderr.strip()[-300:]}")
    assert_refused(out, "batch of 20000", "largest batch that fits")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--size", "100000"], ["--size", "100000"]),
        (["--wave-sampling", "0.0005"], ["--wave-sampling", "limit"]),
        (["--workers", "-1"], ["--workers", "-1"]),
        (["--workers", "100000"], ["--workers"]),
        (["--graphene-layers", "1000"], ["--graphene-layers", "1000"]),
    ],
)
def test_simulate_dataset_settings_are_refused_before_any_work(tmp_path, args, words):
    store = tmp_path / "d.zarr"
    out = run_capped("simulate-dataset", "--out", str(store), "--structures", "1", *args)
    assert_refused(out, *words)
    assert not store.exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--size", "100000"], ["--size"]),
        (["--size", "4096"], ["limit"]),  # 4096 px at 0.22 Å/px: a 20480 px exit wave
        (["--graphene-layers", "1000"], ["--graphene-layers", "1000"]),
        (["--graphene-layers", "-1"], ["--graphene-layers"]),
    ],
)
def test_simulate_settings_are_refused_before_any_work(tmp_path, args, words):
    out = run_capped("simulate", str(tmp_path / "s.npz"), *args)
    assert_refused(out, *words)
    assert not (tmp_path / "s.npz").exists()


def test_the_api_refuses_too_many_graphene_layers():
    from napari_hrtem.api import simulate
    from napari_hrtem.simulation.structures import make_mos2_sample

    with pytest.raises(ValueError, match="--graphene-layers: 1000 is outside 0-10"):
        simulate(64, 0.22, graphene_layers=1000)
    with pytest.raises(ValueError, match="graphene_layers must lie in 0-10"):
        make_mos2_sample(20.0, graphene_layers=11)


# --- bounded work: frame choice ------------------------------------------------------------------------

CHOOSE_300 = """
import numpy as np
from napari_hrtem.io.focal_series import FocalSeries, assemble_focal_series
rng = np.random.default_rng(3)
defocus = np.arange(300) * 20.0 - 3000.0
perm = rng.permutation(300)
series = FocalSeries(rng.random((300, 8, 8)).astype(np.float32), sampling=0.2, defocus=defocus[perm].tolist())
out = assemble_focal_series(series, convention="abtem", n=3, step=60.0)
print(out.metadata["frames"], out.defocus)
"""


def test_choosing_3_of_300_frames_finishes():
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", CHOOSE_300], capture_output=True, text=True, env=env, timeout=TIME_LIMIT, check=True
    )
    frames, defocus = out.stdout.strip().split("] [")
    values = [float(v) for v in defocus.strip("[]").split(",")]
    # 300 values 20 Å apart: every third one (steps of exactly 60 Å), the closest to the middle (-10 Å)
    assert np.diff(values).tolist() == [60.0, 60.0] and abs(np.mean(values) + 10.0) <= 10.0


def _old_choice(defocus, n, step):
    from itertools import combinations

    order = np.argsort(defocus, kind="stable")
    best, best_cost = None, np.inf
    middle = np.median(defocus)
    for combo in combinations(order.tolist(), n):
        d = np.sort(defocus[list(combo)])
        cost = (np.abs(np.diff(d) - step).sum(), abs(d.mean() - middle))
        if best is None or cost < best_cost:
            best, best_cost = list(combo), cost
    return best


def test_frame_choice_is_the_exhaustive_choice_including_ties():
    from napari_hrtem.io.focal_series import _choose_frames

    rng = np.random.default_rng(0)
    for trial in range(300):
        total = int(rng.integers(1, 12))
        n = int(rng.integers(1, min(total, 4) + 1))
        kind = trial % 3
        defocus = (
            rng.normal(0, 100, total)
            if kind == 0
            else rng.choice([-100.0, -50.0, 0.0, 50.0, 100.0], total)
            if kind == 1
            else np.round(rng.normal(0, 100, total) / 50) * 50
        )
        step = float(rng.choice([50.0, 25.0, 33.3]))
        assert _choose_frames(defocus, n, step) == _old_choice(defocus, n, step), (defocus, n, step)


def test_frame_choice_with_repeated_defocus_is_fast_and_keeps_the_first_frames():
    series = FocalSeries(
        np.random.default_rng(0).random((300, 8, 8)).astype(np.float32),
        sampling=0.2,
        defocus=np.repeat([-100.0, 0.0, 100.0], 100).tolist(),
    )
    out = assemble_focal_series(series, convention="abtem", n=3, step=100.0)
    assert out.metadata["frames"] == [0, 100, 200]
