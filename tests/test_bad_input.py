"""Bad input corpus: every reader and entry point (library, CLI) on broken files, arrays, CSVs, model cards.

Each bad input must give a clear error naming the file (or layer) and the problem: the library raises
FocalSeriesError / ValueError / NetworkError, the CLI exits with status 2 and prints exactly one line and
writes nothing. The GUI side (notification, layers untouched) is in tests/gui/test_bad_input_gui.py.

A new file format is added to the corpus by one entry in ``VALID_MAKERS`` (extension -> function writing a
small valid file of that format).
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

from napari_hrtem.cli import main
from napari_hrtem.io.focal_series import FocalSeriesError, read_focal_series, read_image_file
from napari_hrtem.io.sites import Sites, read_csv
from napari_hrtem.io.validation import check_focal_series
from napari_hrtem.models.registry import (
    NetworkError,
    available_networks,
    read_network,
    sha256,
)

from .conftest import REALDATA

#: Real microscope files (../shared/realdata); a worktree may point to them with NAPARI_HRTEM_REALDATA.
REAL = REALDATA if REALDATA.is_dir() else Path(os.environ.get("NAPARI_HRTEM_REALDATA", "/nonexistent"))


def _real(name):
    def make(path: Path):
        if not (REAL / name).is_file():
            pytest.skip(f"{REAL / name} not present (real microscope files)")
        shutil.copyfile(REAL / name, path)

    return make


def _npy(path):
    np.save(path, np.random.default_rng(1).random((3, 32, 32)).astype(np.float32))


def _npz(path):
    np.savez(path, images=np.random.default_rng(1).random((3, 32, 32)).astype(np.float32), sampling=0.2)


def _tif(path):
    import tifffile

    tifffile.imwrite(path, np.random.default_rng(1).random((4, 32, 32)).astype(np.float32), photometric="minisblack")


def _mrc(path):
    import mrcfile

    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.random.default_rng(1).random((3, 32, 32)).astype(np.float32))
        mrc.voxel_size = 2.0  # Å


#: extension -> writer of a small valid file of that format
VALID_MAKERS = {
    ".npy": _npy,
    ".npz": _npz,
    ".tif": _tif,
    ".dm3": _real("test_dm_image_um_unit.dm3"),
    ".ser": _real("128x128-TEM_search_1.ser"),
    ".emd": _real("fei_example_tem_stack.emd"),
    ".mrc": _mrc,
}
EXTS = list(VALID_MAKERS)


_CHECKED: set = set()


def _valid_bytes(ext, tmp_path) -> bytes:
    path = tmp_path / f"valid{ext}"
    VALID_MAKERS[ext](path)
    if ext not in _CHECKED:  # once per format (an .emd read starts a process)
        read_image_file(path)  # the corpus starts from a file the reader accepts
        _CHECKED.add(ext)
    return path.read_bytes()


def _damage(data: bytes, how: str) -> bytes:
    rng = np.random.default_rng(zlib.crc32(how.encode()))  # the same bytes in every run
    if how == "empty":
        return b""
    if how == "8 bytes":
        return data[:8]
    if how == "half":
        return data[: len(data) // 2]
    if how == "last byte cut":
        return data[:-1]
    if how == "header zeroed":
        return bytes(64) + data[64:]
    if how == "header scrambled":
        b = bytearray(data)
        for i in rng.integers(0, min(len(b), 512), 32):
            b[i] = int(rng.integers(0, 256))
        return bytes(b)
    if how == "random bytes":
        return rng.bytes(len(data))
    raise AssertionError(how)


DAMAGES = ["empty", "8 bytes", "half", "last byte cut", "header zeroed", "header scrambled", "random bytes"]
MUST_FAIL = {"empty", "8 bytes", "half", "random bytes"}


def _assert_valid_or_clear(path: Path, must_fail: bool):
    """Either a valid FocalSeries or a FocalSeriesError that starts with the file's name and says more."""
    try:
        series = read_focal_series(path)
    except FocalSeriesError as err:
        msg = str(err)
        assert msg.startswith(path.name + ":") and len(msg) > len(path.name) + 10, msg
        return msg
    assert not must_fail, f"{path.name} was read although damaged"
    assert series.images.dtype == np.float32 and series.images.ndim == 3
    assert np.all(np.isfinite(series.images))
    return None


def _cli_one_line_error(capsys, argv, *names, out: Path | None = None):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("napari-hrtem: error: "), err
    for name in names:
        assert name in err, err
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), "the CLI wrote output for bad input"
    return err


# ------------------------------------------------------------------------------------------------ files


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("ext", EXTS)
def test_damaged_file(tmp_path, capsys, ext, how):
    bad = tmp_path / f"damaged{ext}"
    bad.write_bytes(_damage(_valid_bytes(ext, tmp_path), how))
    msg = _assert_valid_or_clear(bad, how in MUST_FAIL)
    if msg is not None:  # the CLI says the same in one line and writes nothing
        out = tmp_path / "out"
        _cli_one_line_error(capsys, ["predict", str(bad), "--out", str(out)], bad.name, out=out)


@pytest.mark.parametrize(("ext", "other"), [(e, o) for e in EXTS for o in EXTS if e != o])
def test_wrong_extension(tmp_path, ext, other):
    bad = tmp_path / f"renamed{other}"
    bad.write_bytes(_valid_bytes(ext, tmp_path))
    with pytest.raises(FocalSeriesError) as info:
        read_focal_series(bad)
    msg = str(info.value)
    assert msg.startswith(f"{bad.name}:"), msg
    assert "wrong extension" in msg or "not a" in msg, msg


@pytest.mark.parametrize("name", ["image.xyz", "image", "image.jpg", "image.dm5", "image.tif.bak"])
def test_unsupported_extension(tmp_path, capsys, name):
    bad = tmp_path / name
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(FocalSeriesError, match="unsupported extension"):
        read_focal_series(bad)
    _cli_one_line_error(
        capsys,
        ["predict", str(bad), "--out", str(tmp_path / "out")],
        name,
        "unsupported extension",
        out=tmp_path / "out",
    )


def test_missing_file_and_empty_directory(tmp_path, capsys):
    _cli_one_line_error(
        capsys,
        ["predict", str(tmp_path / "nothere.dm3"), "--out", str(tmp_path / "o")],
        "nothere.dm3",
        "not found",
        out=tmp_path / "o",
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(FocalSeriesError, match="empty: directory holds no supported file"):
        read_focal_series(tmp_path / "empty")


# ----------------------------------------------------------------------------------------------- arrays

RNG = np.random.default_rng(3)
GOOD = RNG.random((3, 64, 64)).astype(np.float32)


def _with(value, where=(0, 5, 5)):
    a = GOOD.copy()
    a[where] = value
    return a


#: (id, array, sampling, words the message must hold)
BAD_ARRAYS = [
    ("nan pixel", _with(np.nan), 0.22, "NaN/Inf"),
    ("inf pixel", _with(np.inf), 0.22, "NaN/Inf"),
    ("all nan", np.full((3, 64, 64), np.nan, np.float32), 0.22, "NaN/Inf"),
    ("float32 overflow", GOOD.astype(np.float64) * 1e300, 0.22, "NaN/Inf"),
    ("constant", np.ones((3, 64, 64), np.float32), 0.22, "constant"),
    ("zeros", np.zeros((3, 64, 64), np.uint16), 0.22, "constant"),
    ("one constant frame", np.concatenate([GOOD[:2], np.full((1, 64, 64), 7.0, np.float32)]), 0.22, "3 of 3"),
    ("1x1", RNG.random((3, 1, 1)), 0.22, "too small"),
    ("2x2", RNG.random((3, 2, 2)), 0.22, "too small"),
    ("3x100000", RNG.random((3, 3, 100000)).astype(np.float32), 0.22, "too small"),
    ("100000x3", RNG.random((3, 100000, 3)).astype(np.float32), 0.22, "too small"),
    ("single 2-D image", GOOD[0], 0.22, "single 2-D image"),
    ("2 frames", GOOD[:2], 0.22, "holds 2 image"),
    ("5 frames", np.concatenate([GOOD, GOOD[:2]]), 0.22, "holds 5 image"),
    ("4-D", GOOD[None], 0.22, "expected a focal series"),
    ("1-D", GOOD.ravel(), 0.22, "expected a focal series"),
    ("complex", GOOD.astype(np.complex64), 0.22, "real numbers"),
    ("strings", np.full((3, 8, 8), "a"), 0.22, "real numbers"),
    ("sampling 0", GOOD, 0.0, "> 0"),
    ("sampling negative", GOOD, -0.2, "> 0"),
    ("sampling nan", GOOD, float("nan"), "> 0"),
    ("sampling inf", GOOD, float("inf"), "> 0"),
    ("sampling 1e4 (m taken as Å?)", GOOD, 1e4, "outside the range"),
    ("sampling 52.6 (nm taken as Å?)", GOOD, 52.6, "outside the range"),
    ("sampling 1e-6", GOOD, 1e-6, "outside the range"),
    ("sampling text", GOOD, "0.22", "number"),
    ("sampling missing", GOOD, None, "no sampling"),
    ("sampling array", GOOD, np.array([0.2, 0.2]), "number"),
]


@pytest.mark.parametrize(("array", "sampling", "words"), [pytest.param(*c[1:], id=c[0]) for c in BAD_ARRAYS])
def test_bad_array_library(array, sampling, words):
    from napari_hrtem.analysis.inference import predict_sites

    with pytest.raises(ValueError, match="layer X") as info:
        check_focal_series(array, sampling, 3, where="layer X")
    assert words in str(info.value), str(info.value)
    net = available_networks()["msdnet"]
    with pytest.raises(ValueError) as info:  # checked before the network is loaded or run
        predict_sites(net, array, sampling)
    assert words in str(info.value), str(info.value)


#: not as files: a 4-D file is a valid stack (leading axes flattened into frames); the rest cannot be a --sampling
CLI_ARRAYS = [
    c for c in BAD_ARRAYS if c[0] not in ("sampling text", "sampling array", "strings", "sampling missing", "4-D")
]


@pytest.mark.parametrize(("array", "sampling", "words"), [pytest.param(*c[1:], id=c[0]) for c in CLI_ARRAYS])
def test_bad_array_cli(tmp_path, capsys, array, sampling, words):
    path = tmp_path / "series.npy"
    np.save(path, array)
    out = tmp_path / "out"
    argv = ["predict", str(path), "--out", str(out), "--networks", "msdnet", "--sampling", str(sampling)]
    err = _cli_one_line_error(capsys, argv, out=out)
    assert "series.npy" in err or "--sampling" in err, err


def test_missing_sampling_cli(tmp_path, capsys):
    np.save(tmp_path / "series.npy", GOOD)
    _cli_one_line_error(
        capsys,
        ["predict", str(tmp_path / "series.npy"), "--out", str(tmp_path / "o")],
        "series.npy",
        "--sampling",
        out=tmp_path / "o",
    )


def test_frames_of_different_shapes_cli(tmp_path, capsys):
    for i, shape in enumerate([(64, 64), (64, 64), (64, 63)]):
        np.save(tmp_path / f"f{i}.npy", RNG.random(shape))
    files = [str(tmp_path / f"f{i}.npy") for i in range(3)]
    with pytest.raises(FocalSeriesError, match="f2.npy: frames have different shapes"):
        read_focal_series(files)
    _cli_one_line_error(
        capsys,
        ["predict", *files, "--sampling", "0.22", "--out", str(tmp_path / "o")],
        "f2.npy",
        "different shapes",
        out=tmp_path / "o",
    )


def test_2d_image_where_a_series_is_needed_cli(tmp_path, capsys):
    np.save(tmp_path / "one.npy", GOOD[0])
    _cli_one_line_error(
        capsys,
        ["predict", str(tmp_path / "one.npy"), "--sampling", "0.22", "--out", str(tmp_path / "o")],
        "one.npy",
        "focal series of 3 images",
        out=tmp_path / "o",
    )


def test_filters_refuse_bad_arrays():
    from napari_hrtem.analysis.filters import local_normalize, resample, support_filter

    for fn, args in ((support_filter, (0.22,)), (local_normalize, (0.22,)), (resample, (0.22, 0.3))):
        with pytest.raises(ValueError, match="NaN or Inf"):
            fn(_with(np.nan), *args)
        with pytest.raises(ValueError):
            fn(GOOD, *([-1.0] + list(args[1:])))
        with pytest.raises(ValueError, match="expected an"):
            fn(GOOD.ravel(), *args)


# ------------------------------------------------------------------------------------------------- CSV

HEADER = "y,x,class,confidence\n"
#: (id, file content, words the message must hold); None content = 0 bytes
BAD_CSVS = [
    ("empty file", b"", "empty file"),
    ("blank lines", b"\n\n\n", "empty file"),
    ("no class column", b"y,x,confidence\n1,2,0.5\n", "needs the columns"),
    ("no x column header only", b"y,class\n", "needs the columns"),
    ("semicolons", b"y;x;class\n1;2;Mo\n", "needs the columns"),
    ("unknown class", (HEADER + "1,2,W,0.5\n").encode(), "unknown class 'W'"),
    ("lower-case class", (HEADER + "1,2,mo,0.5\n").encode(), "unknown class 'mo'"),
    ("empty class", (HEADER + "1,2,,0.5\n").encode(), "unknown class ''"),
    ("text position", (HEADER + "one,2,Mo,0.5\n").encode(), "must be numbers"),
    ("nan position", (HEADER + "nan,2,Mo,0.5\n").encode(), "not finite"),
    ("inf position", (HEADER + "1,-inf,Mo,0.5\n").encode(), "not finite"),
    ("short row", (HEADER + "1\n").encode(), "must be numbers"),
    ("confidence 2", (HEADER + "1,2,Mo,2\n").encode(), "in [0, 1]"),
    ("confidence nan", (HEADER + "1,2,Mo,nan\n").encode(), "in [0, 1]"),
    ("confidence text", (HEADER + "1,2,Mo,high\n").encode(), "must be numbers"),
    ("votes text", b"y,x,class,confidence,votes,networks\n1,2,Mo,0.5,two,unet\n", "votes must be a whole number"),
    ("binary garbage", bytes(range(256)) * 4, "cannot be read as CSV"),
    ("NUL bytes", b"y,x,class\n1,2,M\x00o\n", "line"),
    ("latin-1", "y,x,class\n1,2,Mö\n".encode("latin-1"), "cannot be read as CSV"),
    ("huge field", b'y,x,class\n1,2,"' + b"a" * 200_000 + b'"\n', "cannot be read as CSV"),
    ("bad line after good", (HEADER + "1,2,Mo,0.5\n" * 50 + "1,2,Xx,0.5\n").encode(), "line 52"),
]


@pytest.mark.parametrize(("content", "words"), [pytest.param(*c[1:], id=c[0]) for c in BAD_CSVS])
def test_bad_csv(tmp_path, capsys, content, words):
    bad = tmp_path / "sites.csv"
    bad.write_bytes(content)
    with pytest.raises(ValueError) as info:
        read_csv(bad)
    msg = str(info.value)
    assert msg.startswith("sites.csv") and words in msg, msg
    good = tmp_path / "truth.csv"
    Sites(np.zeros((1, 2)), [0], [1.0]).write_csv(good)
    _cli_one_line_error(capsys, ["evaluate", str(bad), str(good)], "sites.csv")
    _cli_one_line_error(capsys, ["evaluate", str(good), str(bad)], "sites.csv")


@pytest.mark.parametrize(
    ("content", "n"),
    [
        pytest.param(b"y,x,class\n", 0, id="header only"),
        pytest.param(b"\xef\xbb\xbfy,x,class\r\n1,2,Mo\r\n", 1, id="Excel BOM and CRLF"),
        pytest.param(b" y , x ,class\n1,2,S2\n\n", 1, id="blanks in header, blank line"),
        pytest.param(b"y,x,class,extra\n1,2,S,zz\n", 1, id="extra column"),
    ],
)
def test_acceptable_csv_variants(tmp_path, content, n):
    path = tmp_path / "ok.csv"
    path.write_bytes(content)
    assert len(read_csv(path)) == n


def test_missing_csv_cli(tmp_path, capsys):
    _cli_one_line_error(capsys, ["evaluate", str(tmp_path / "a.csv"), str(tmp_path / "b.csv")], "a.csv")


# ---------------------------------------------------------------------------------------- model cards


@pytest.fixture()
def net_dir(tmp_path):
    """A copy of the shipped MSD-net (card + weights) to break."""
    src = available_networks()["msdnet"]
    folder = tmp_path / "nets"
    folder.mkdir()
    shutil.copyfile(src.weights, folder / "net.pt")
    card = dict(src.card.to_dict(), name="net")
    (folder / "net.json").write_text(json.dumps(card))
    read_network(folder / "net.json").load("cpu")  # valid before we break it
    return folder


def _edit(folder, **changes):
    card = json.loads((folder / "net.json").read_text())
    for key, value in changes.items():
        if value is _DROP:
            card.pop(key)
        else:
            card[key] = value
    (folder / "net.json").write_text(json.dumps(card))


_DROP = object()
#: (id, card changes, words in the NetworkError) -- checked by read_network, before any weight is read
BAD_CARDS = [
    ("no architecture", dict(architecture=_DROP), "lacks ['architecture']"),
    ("no sha256", dict(sha256=_DROP), "lacks ['sha256']"),
    ("no classes", dict(classes=_DROP), "lacks ['classes']"),
    ("unknown architecture", dict(architecture="resnet"), "unknown architecture 'resnet'"),
    ("classes empty", dict(classes=[]), "classes must be"),
    ("classes duplicate", dict(classes=["Mo", "Mo", "S"]), "classes must be"),
    ("classes string", dict(classes="Mo,S2,S"), "classes must be"),
    ("n_images 0", dict(n_images=0), "n_images must be"),
    ("n_images text", dict(n_images="3"), "n_images must be"),
    ("n_images float", dict(n_images=2.5), "n_images must be"),
    ("sampling negative", dict(sampling=-0.2), "sampling must be"),
    ("sampling text", dict(sampling="0.22"), "sampling must be"),
    ("sampling NaN", dict(sampling=float("nan")), "sampling must be"),
    ("normalization 0", dict(normalization_distance=0), "normalization_distance must be"),
    ("config list", dict(config=[1, 2]), "config must be"),
    ("unknown config key", dict(config=dict(widht=2)), "unknown settings for msdnet: ['widht']"),
    ("sha256 short", dict(sha256="abc"), "sha256 must be"),
]


@pytest.mark.parametrize(("changes", "words"), [pytest.param(*c[1:], id=c[0]) for c in BAD_CARDS])
def test_bad_model_card(net_dir, changes, words):
    _edit(net_dir, **changes)
    with pytest.raises(NetworkError) as info:
        read_network(net_dir / "net.json")
    msg = str(info.value)
    assert msg.startswith("net.json") and words in msg, msg


#: (id, card changes, words) -- the card reads but does not fit the weights
MISMATCHED_CARDS = [
    ("other architecture", dict(architecture="unet", config={}), "do not match"),
    ("more classes", dict(classes=["Mo", "S2", "S", "W"]), "4 classes + background"),
    ("fewer classes", dict(classes=["Mo", "S"]), "do not match"),
    ("more images", dict(n_images=5), "5 images"),
    ("other config", dict(config=dict(width=4, depth=24, kernel_size=3, max_dilation=10)), "do not match"),
    ("hash of other weights", dict(sha256="0" * 64), "SHA-256"),
]


@pytest.mark.parametrize(("changes", "words"), [pytest.param(*c[1:], id=c[0]) for c in MISMATCHED_CARDS])
def test_card_does_not_match_weights(net_dir, changes, words):
    _edit(net_dir, **changes)
    net = read_network(net_dir / "net.json")
    with pytest.raises(NetworkError) as info:
        net.load("cpu")
    msg = str(info.value)
    assert msg.startswith("net.pt") and words in msg, msg


def test_card_does_not_match_the_input(net_dir):
    from napari_hrtem.analysis.inference import predict_sites

    net = read_network(net_dir / "net.json")
    with pytest.raises(ValueError, match="holds 2 image"):
        predict_sites(net, GOOD[:2], 0.22)


def test_networks_with_different_classes_give_no_consensus(net_dir):
    from napari_hrtem.analysis.consensus import consensus

    a = Sites(np.zeros((1, 2)), [0], [1.0])
    b = Sites(np.zeros((1, 2)), [0], [1.0], class_names=("Mo", "W"))
    with pytest.raises(ValueError, match="different classes"):
        consensus({"a": a, "b": b})


def test_predict_all_refuses_networks_with_different_classes_before_any_work():
    """The widget and the CLI both go through predict_all: the first event is the error, nothing has run."""
    from dataclasses import replace

    from napari_hrtem.analysis.inference import predict_all
    from napari_hrtem.models.registry import available_networks

    shipped = available_networks()["msdnet"]
    other = replace(shipped, name="tungsten", card=replace(shipped.card, classes=["W", "S2", "S"]))
    events = predict_all([shipped, other], GOOD, 0.22)
    with pytest.raises(ValueError, match=r"different classes \(msdnet: Mo, S2, S; tungsten: W, S2, S\)"):
        next(events)


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b"\xff\xfe\x00garbage", b"null"])
def test_unreadable_card(net_dir, content):
    (net_dir / "net.json").write_bytes(content)
    with pytest.raises(NetworkError, match="net.json"):
        read_network(net_dir / "net.json")
    assert "net" not in available_networks([net_dir])  # skipped in the list, not a crash


def test_missing_or_damaged_weights(net_dir):
    data = (net_dir / "net.pt").read_bytes()
    for damaged in (b"", data[: len(data) // 2], b"\x00" * len(data)):
        (net_dir / "net.pt").write_bytes(damaged)
        _edit(net_dir, sha256=sha256(net_dir / "net.pt"))  # the hash fits: the loader itself must refuse
        with pytest.raises(NetworkError, match="net.pt: could not be loaded as weights"):
            read_network(net_dir / "net.json").load("cpu")
    (net_dir / "net.pt").unlink()
    with pytest.raises(NetworkError, match="weight file net.pt not found"):
        read_network(net_dir / "net.json")


# --------------------------------------------------------------------------------------- safe loading


class _Payload:
    """Unpickling this runs ``os.system(...)`` (the classic pickle exploit)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _payloads(marker: Path):
    """Weight files that run code when unpickled without weights_only."""
    import pickle
    import zipfile

    import torch

    yield "plain pickle", pickle.dumps({"conv.weight": _Payload(marker)})
    path = marker.with_name("torch_zip.pt")
    torch.save({"conv.weight": _Payload(marker)}, path)  # a real torch zip archive with the payload inside
    yield "torch.save archive", path.read_bytes()
    # a genuine state dict with the payload appended to data.pkl's objects
    state = torch.nn.Conv2d(1, 1, 1).state_dict()
    torch.save({**state, "extra": _Payload(marker)}, path)
    yield "state dict + payload", path.read_bytes()
    with zipfile.ZipFile(path) as z:
        assert any(n.endswith("data.pkl") for n in z.namelist())


def test_pickle_payload_is_refused_and_not_run(net_dir):
    marker = net_dir / "pwned"
    tried = 0
    for what, payload in _payloads(marker):
        (net_dir / "net.pt").write_bytes(payload)
        _edit(net_dir, sha256=sha256(net_dir / "net.pt"))  # even with a matching hash
        with pytest.raises(NetworkError, match="net.pt: could not be loaded as weights"):
            read_network(net_dir / "net.json").load("cpu")
        assert not marker.exists(), f"{what}: the payload ran"
        tried += 1
    assert tried == 3
    # Sanity check of the test itself: unpickling without weights_only does run the payload.
    import pickle

    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


def test_weights_tampered_after_the_card_are_refused(net_dir):
    data = bytearray((net_dir / "net.pt").read_bytes())
    data[-100] ^= 0xFF  # one flipped bit in the weights
    (net_dir / "net.pt").write_bytes(bytes(data))
    with pytest.raises(NetworkError, match="net.pt: SHA-256 of the weights does not match its model card"):
        read_network(net_dir / "net.json").load("cpu")


def test_shipped_cards_pass_the_checks():
    from napari_hrtem.models.registry import WEIGHTS_DIR, check_card

    cards = sorted(WEIGHTS_DIR.glob("*.json"))
    assert cards
    for card in cards:
        check_card(json.loads(card.read_text()), card.name)
        net = read_network(card)
        assert sha256(net.weights) == net.card.sha256


# ----------------------------------------------------------------------------------- training sets


def _dataset(path, **changes):
    arrays = dict(
        images=RNG.random((2, 3, 16, 16)).astype(np.float32),
        labels=np.zeros((2, 16, 16), np.int64),
        sites=np.zeros((0, 2)),
        site_classes=np.zeros(0, int),
        site_index=np.zeros(3, int),
        sampling=np.array([0.22, 0.22]),
        params=json.dumps([]),
        recipe=json.dumps({}),
    )
    for key, value in changes.items():
        if value is _DROP:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return path


BAD_DATASETS = [
    ("no labels", dict(labels=_DROP), "lacks labels"),
    ("no recipe", dict(recipe=_DROP), "lacks recipe"),
    ("recipe not JSON", dict(recipe="{oops"), "not a readable dataset"),
    ("NaN image", dict(images=np.full((2, 3, 16, 16), np.nan, np.float32)), "finite floats"),
    ("float labels", dict(labels=np.zeros((2, 16, 16))), "integer class codes"),
    ("labels of other size", dict(labels=np.zeros((2, 8, 8), int)), "do not fit"),
    ("3-D images", dict(images=np.zeros((2, 16, 16), np.float32)), "do not fit"),
    ("negative sampling", dict(sampling=np.array([0.22, -1.0])), "sampling must be"),
    ("one sampling too few", dict(sampling=np.array([0.22])), "do not fit"),
]


@pytest.mark.parametrize(("changes", "words"), [pytest.param(*c[1:], id=c[0]) for c in BAD_DATASETS])
def test_bad_training_set(tmp_path, capsys, changes, words):
    from napari_hrtem.training.datasets import load_dataset_checked

    assert load_dataset_checked(_dataset(tmp_path / "ok.npz"))["images"].shape == (2, 3, 16, 16)
    bad = _dataset(tmp_path / "train.npz", **changes)
    with pytest.raises(ValueError) as info:
        load_dataset_checked(bad)
    msg = str(info.value)
    assert msg.startswith("train.npz:") and words in msg, msg
    _cli_one_line_error(
        capsys,
        ["train", "--dataset", str(bad), "--steps", "1", "--out", str(tmp_path / "o")],
        "train.npz",
        words,
        out=tmp_path / "o",
    )


@pytest.mark.parametrize("how", ["empty", "half", "header zeroed", "random bytes", "missing", "a TIFF"])
def test_damaged_training_set_file(tmp_path, capsys, how):
    bad = tmp_path / "train.npz"
    if how == "a TIFF":
        _tif(bad)
    elif how != "missing":
        bad.write_bytes(_damage(_dataset(tmp_path / "ok.npz").read_bytes(), how))
    _cli_one_line_error(
        capsys,
        ["train", "--dataset", str(bad), "--steps", "1", "--out", str(tmp_path / "o")],
        "train.npz",
        out=tmp_path / "o",
    )
    _cli_one_line_error(
        capsys,
        [
            "train",
            "--dataset",
            str(_dataset(tmp_path / "ok.npz")),
            "--validation",
            str(bad),
            "--steps",
            "1",
            "--out",
            str(tmp_path / "o"),
        ],
        "train.npz",
        out=tmp_path / "o",
    )


# ---------------------------------------------------------------------------------- simulation CLI


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["simulate", "{out}", "--size", "0"], "--size"),
        (["simulate", "{out}", "--size", "1"], "--size"),
        (["simulate", "{out}", "--size", "100000"], "--size"),
        (["simulate", "{out}", "--sampling", "0"], "--sampling"),
        (["simulate", "{out}", "--sampling", "-1"], "--sampling"),
        (["simulate", "{out}", "--sampling", "nan"], "--sampling"),
        (["simulate", "{out}", "--sampling", "100"], "outside the range"),
        (["simulate", "{out}", "--dose", "0"], "--dose"),
        (["simulate", "{out}", "--dose", "-5"], "--dose"),
        (["dataset", "{out}", "--samples", "0"], "--samples"),
        (["dataset", "{out}", "--images-per-sample", "0"], "--images-per-sample"),
        (["dataset", "{out}", "--size", "8"], "--size"),
    ],
    ids=lambda v: " ".join(v[2:]) if isinstance(v, list) else None,
)
def test_bad_simulation_options(tmp_path, capsys, argv, words):
    out = tmp_path / "out" / "sim.npz"
    out.parent.mkdir()
    _cli_one_line_error(capsys, [a.format(out=out) for a in argv], words, out=out.parent)


def test_cli_error_is_one_line_without_library_warnings(tmp_path):
    """A real terminal: tifffile logs a warning about the damaged file before failing; the CLI keeps
    the libraries' loggers quiet so the user sees one line (pytest's log capture hides this in-process)."""
    import subprocess
    import sys

    bad = tmp_path / "damaged.tif"
    bad.write_bytes(_valid_bytes(".tif", tmp_path)[:8])
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    run = subprocess.run(
        [sys.executable, "-m", "napari_hrtem.cli", "predict", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [run.stderr.strip()] and run.stderr.startswith(
        "napari-hrtem: error: damaged.tif:"
    )


# ------------------------------------------------------------------------ a file that hangs the reader

VELOX = "fei_example_tem_stack.emd"
needs_velox = pytest.mark.skipif(
    not (REAL / VELOX).is_file(), reason="../shared/realdata not present (a user's clone has no ../shared)"
)


def _hanging_emd(folder: Path) -> Path:
    """The Velox stack with 200 bytes zeroed at offset 6900 (inside an HDF5 global heap of metadata
    strings): h5py's C code then loops for > 15 min on the first string it reads (found by fuzzing)."""
    data = bytearray((REAL / VELOX).read_bytes())
    data[6900:7100] = bytes(200)
    path = folder / "damaged_heap.emd"
    path.write_bytes(bytes(data))
    return path


@needs_velox
def test_hdf5_file_that_hangs_h5py(tmp_path, capsys, monkeypatch):
    """Library (``timeout=``, ``NAPARI_HRTEM_READ_TIMEOUT``) and CLI (``--read-timeout``) stop the read
    after the limit with one clear error naming the file; no reader process is left behind."""
    import subprocess
    import time

    bad = _hanging_emd(tmp_path)
    limit = 2.0
    # Not a speed target (those live in benchmarks/): only proof that the read was stopped rather than
    # left to hang for > 15 min, with room for a loaded machine (a 7.6 s stop was seen under load).
    stopped = limit + 120
    t0 = time.monotonic()
    with pytest.raises(FocalSeriesError, match=r"^damaged_heap\.emd: reading it as EMD .* took more than 2 s"):
        read_image_file(bad, timeout=limit)
    assert time.monotonic() - t0 < stopped  # not the > 15 min hang
    monkeypatch.setenv("NAPARI_HRTEM_READ_TIMEOUT", str(limit))
    t0 = time.monotonic()
    with pytest.raises(FocalSeriesError, match=r"damaged_heap\.emd: .*took more than 2 s"):
        read_focal_series([bad])
    assert time.monotonic() - t0 < stopped  # not the > 15 min hang
    monkeypatch.delenv("NAPARI_HRTEM_READ_TIMEOUT")
    out = tmp_path / "out"
    t0 = time.monotonic()
    _cli_one_line_error(
        capsys,
        ["predict", str(bad), "--out", str(out), "--read-timeout", str(limit)],
        "damaged_heap.emd",
        "took more than 2 s",
        out=out,
    )
    assert time.monotonic() - t0 < stopped  # not the > 15 min hang
    ps = subprocess.run(["ps", "-o", "args=", "--ppid", str(os.getpid())], capture_output=True, text=True).stdout
    assert "_child_main" not in ps, ps


@needs_velox
def test_hdf5_read_in_a_child_process_equals_the_direct_read(tmp_path):
    """The child process gives the same images, calibration, energy and defocus as reading in-process."""
    path = tmp_path / VELOX
    shutil.copyfile(REAL / VELOX, path)
    child, direct = read_image_file(path, timeout=30), read_image_file(path, timeout=float("inf"))
    assert np.array_equal(child.images, direct.images) and child.images.dtype == np.float32
    assert (child.sampling, child.energy, child.defocus) == (direct.sampling, direct.energy, direct.defocus)
    assert child.sampling == pytest.approx(0.0817, rel=1e-3) and child.energy == 300e3
    assert child.metadata["original_metadata"].keys() == direct.metadata["original_metadata"].keys()


@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
def test_bad_read_timeout(tmp_path, monkeypatch, value):
    path = tmp_path / "x.emd"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    monkeypatch.setenv("NAPARI_HRTEM_READ_TIMEOUT", value)
    with pytest.raises(FocalSeriesError, match=r"x\.emd: NAPARI_HRTEM_READ_TIMEOUT: .*seconds > 0"):
        read_image_file(path)


def test_child_process_results_are_unpickled_safely(tmp_path):
    """The reader child's metadata come back as builtins and numeric arrays; anything else is refused
    (a pickle that would run code does not run)."""
    import pickle

    from napari_hrtem.io.focal_series import _plain, _PlainUnpickler

    meta = _plain(
        {
            "scale": np.float64(0.1),
            "frames": np.arange(3, dtype=np.int16),
            "names": np.array(["a", "b"]),
            "nested": {"z": (1, 2j, b"x", None)},
            "odd": object(),
        }
    )
    back = _PlainUnpickler.loads(pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL))
    assert back["scale"] == 0.1 and back["frames"].dtype == np.int16 and back["names"] == ["a", "b"]
    assert back["nested"] == {"z": (1, 2j, b"x", None)} and back["odd"].startswith("<object")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        _PlainUnpickler.loads(pickle.dumps({"x": Payload()}, protocol=pickle.HIGHEST_PROTOCOL))
    assert not marker.exists()


# -------------------------------------------- the remaining cases of the list (entry points)

TIA = ("128x128-TEM_search.emi", "128x128-TEM_search_1.ser")
needs_tia = pytest.mark.skipif(
    not all((REAL / n).is_file() for n in TIA),
    reason="../shared/realdata not present (a user's clone has no ../shared)",
)


@needs_tia
@pytest.mark.parametrize("how", DAMAGES)
def test_damaged_emi_beside_its_ser(tmp_path, how):
    """A damaged .emi (TIA metadata): read directly it gives a clear error or its image; its .ser still
    reads (alone, without the .emi's metadata)."""
    shutil.copyfile(REAL / TIA[1], tmp_path / "scan_1.ser")
    (tmp_path / "scan.emi").write_bytes(_damage((REAL / TIA[0]).read_bytes(), how))
    _assert_valid_or_clear(tmp_path / "scan.emi", how in MUST_FAIL)
    _assert_valid_or_clear(tmp_path / "scan_1.ser", False)


@needs_tia
def test_emi_without_its_ser(tmp_path, capsys):
    shutil.copyfile(REAL / TIA[0], tmp_path / "scan.emi")
    with pytest.raises(FocalSeriesError, match=r"^scan\.emi: no image read: .*scan_1\.ser.* missing"):
        read_focal_series(tmp_path / "scan.emi")
    _cli_one_line_error(
        capsys,
        ["predict", str(tmp_path / "scan.emi"), "--out", str(tmp_path / "o")],
        "scan.emi",
        "missing",
        out=tmp_path / "o",
    )


@pytest.fixture()
def user_net(net_dir, tmp_path, monkeypatch):
    """The MSD-net copy of ``net_dir`` installed as the user's network 'net' (platformdirs folder)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    from napari_hrtem.models.registry import user_networks_dir

    folder = user_networks_dir()
    folder.mkdir(parents=True)
    for f in ("net.json", "net.pt"):
        shutil.copyfile(net_dir / f, folder / f)
    np.save(tmp_path / "series.npy", GOOD)
    return folder


@pytest.mark.parametrize(("changes", "words"), [pytest.param(*c[1:], id=c[0]) for c in MISMATCHED_CARDS])
def test_card_does_not_match_weights_cli(user_net, tmp_path, capsys, changes, words):
    """``predict --networks net`` with a user network whose card does not fit its weights: one line naming
    the weight file, nothing written."""
    _edit(user_net, **changes)
    out = tmp_path / "out"
    _cli_one_line_error(
        capsys,
        ["predict", str(tmp_path / "series.npy"), "--sampling", "0.22", "--networks", "net", "--out", str(out)],
        "net.pt",
        words,
        out=out,
    )


def test_card_does_not_match_the_input_or_classes_cli(user_net, tmp_path, capsys):
    """A user network for 3-image series given a 2-image one; two networks with different class names
    (refused before any network runs)."""
    out = tmp_path / "out"
    np.save(tmp_path / "two.npy", GOOD[:2])
    _cli_one_line_error(
        capsys,
        ["predict", str(tmp_path / "two.npy"), "--sampling", "0.22", "--networks", "net", "--out", str(out)],
        "two.npy",
        "holds 2 image",
        "3 images",
        out=out,
    )
    _edit(user_net, classes=["Mo", "S2", "W"])  # loads (3 classes), but votes cannot be compared
    _cli_one_line_error(
        capsys,
        [
            "predict",
            str(tmp_path / "series.npy"),
            "--sampling",
            "0.22",
            "--networks",
            "msdnet",
            "net",
            "--out",
            str(out),
        ],
        "different classes",
        "net: Mo, S2, W",
        out=out,
    )
