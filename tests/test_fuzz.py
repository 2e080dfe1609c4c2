"""Fuzzing the readers, the site CSV parser and the focal-series checks with hypothesis.

Every generated input must give either a valid result or the documented error naming the file:
FocalSeriesError for microscope files, ValueError for CSVs and arrays; never another exception, a hang
or a crash. The fast run (always) tries a few thousand inputs, derandomized so CI is reproducible; the
``slow`` variants (``pytest -m slow tests/test_fuzz.py``) try 20 times as many, freshly random each
run. ``NAPARI_HRTEM_FUZZ_SCALE=10`` multiplies both (e.g. an overnight run).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_hrtem.io.focal_series import FocalSeries, FocalSeriesError, read_image_file
from napari_hrtem.io.sites import Sites, read_csv
from napari_hrtem.io.validation import check_focal_series

from .test_bad_input import VALID_MAKERS

SCALE = float(os.environ.get("NAPARI_HRTEM_FUZZ_SCALE", "1"))
LONG = 20
SCALES = [pytest.param(1, id="fast"), pytest.param(LONG, id="long", marks=pytest.mark.slow)]


def _run(test, n: int, scale: int, **strategies) -> int:
    """Run ``test`` on ``n * scale * SCALE`` generated inputs; return how many were tried."""
    count = [0]

    def counted(**kwargs):
        count[0] += 1
        test(**kwargs)

    total = max(1, int(n * scale * SCALE))
    config = settings(
        max_examples=total,
        deadline=None,
        derandomize=scale == 1,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    config(given(**strategies)(counted))()
    print(f"{test.__name__}: {count[0]} generated inputs")
    assert count[0] >= min(total, 50)
    return count[0]


# ------------------------------------------------------------------------------------------ readers


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("valid")
    out = {}
    for ext, make in VALID_MAKERS.items():
        path = folder / f"valid{ext}"
        try:
            make(path)
        except pytest.skip.Exception:
            continue
        out[ext] = path.read_bytes()
    return out


def _mutations(size: int):
    head = min(size, 4096) - 1 if size else 0
    pos = st.one_of(st.integers(0, max(head, 0)), st.integers(0, max(size - 1, 0)))
    op = st.one_of(
        st.tuples(st.just("cut"), st.floats(0, 1)),
        st.tuples(st.just("set"), pos, st.integers(0, 255)),
        st.tuples(st.just("set4"), pos, st.sampled_from([0, 1, 2**31 - 1, 2**32 - 1, 2**16, 255])),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), pos, st.integers(1, 64)),
        st.tuples(st.just("zero"), pos, st.integers(1, 256)),
    )
    return st.lists(op, min_size=1, max_size=6)


def _apply(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op in ops:
        kind = op[0]
        if kind == "cut":
            del b[int(len(b) * op[1]) :]
        elif not b:
            continue
        elif kind == "set":
            b[min(op[1], len(b) - 1)] = op[2]
        elif kind == "set4":
            i = min(op[1], len(b) - 1)
            b[i : i + 4] = int(op[2]).to_bytes(4, "little")
        elif kind == "insert":
            b[op[1] : op[1]] = op[2]
        elif kind == "delete":
            del b[op[1] : op[1] + op[2]]
        elif kind == "zero":
            b[op[1] : op[1] + op[2]] = bytes(len(b[op[1] : op[1] + op[2]]))
    return bytes(b)


READER_EXAMPLES = 170


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("ext", list(VALID_MAKERS))
def test_fuzz_reader(valid_files, ext, scale):
    if ext not in valid_files:
        pytest.skip(f"no valid {ext} file to start from (real microscope files not present)")
    # .emd (HDF5) files are read in a child process with a time limit (a damaged one can hang h5py's C
    # code: REPORT_reliab.md, tests/test_bad_input.py::test_hdf5_file_that_hangs_h5py). Starting it costs
    # ~0.5 s a file, so the fast run (derandomized examples known not to hang) reads in this process and
    # the long one goes through the child with a 30 s limit, on 4x (not 20x) the examples.
    timeout = {1: math.inf}.get(scale, 30.0) if ext == ".emd" else None
    n_examples = READER_EXAMPLES * 4 // scale if ext == ".emd" and scale > 1 else READER_EXAMPLES
    data = valid_files[ext]
    folder = Path(tempfile.mkdtemp())
    path = folder / f"fuzzed{ext}"

    def check(ops):
        path.write_bytes(_apply(data, ops))
        try:
            series = read_image_file(path, timeout=timeout)
        except FocalSeriesError as err:
            assert str(err).startswith(path.name + ":"), str(err)
            return
        assert series.images.dtype == np.float32 and series.images.ndim == 3
        assert min(series.images.shape[1:]) >= 2 and np.all(np.isfinite(series.images))
        assert series.sampling is None or (np.isfinite(series.sampling) and series.sampling > 0)

    _run(check, n_examples, scale, ops=_mutations(len(data)))


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_npy_arrays(scale):
    """Any array saved as .npy reads as a valid series or gives a FocalSeriesError naming the file."""
    path = Path(tempfile.mkdtemp()) / "fuzzed.npy"
    dtypes = st.sampled_from([np.float32, np.float64, np.float16, np.int8, np.uint16, np.int64, np.bool_, np.complex64])

    def check(array):
        np.save(path, array)
        try:
            series = read_image_file(path)
        except FocalSeriesError as err:
            assert str(err).startswith("fuzzed.npy:"), str(err)
            return
        assert series.images.ndim == 3 and np.all(np.isfinite(series.images))

    arrays = dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4, max_side=6)))
    _run(check, 250, scale, array=arrays)


# ------------------------------------------------------------------------------------------------ CSV

CELLS = st.one_of(
    st.sampled_from(
        [
            "y",
            "x",
            "class",
            "confidence",
            "votes",
            "networks",
            "Mo",
            "S2",
            "S",
            "W",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "",
            " ",
            '"',
            '""',
            "1",
            "0.5",
            "-3.25",
            "2",
            "unet;msdnet",
            "\x00",
            "é",
        ]
    ),
    st.integers(-(10**6), 10**6).map(str),
    st.text(alphabet="0123456789.e-+nafiMoSW,;\"' \t\r\n\x00é", max_size=6),
)


@st.composite
def csv_texts(draw):
    sep = draw(st.sampled_from([",", ",", ",", ";", "\t"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    header = draw(
        st.one_of(
            st.just(["y", "x", "class", "confidence"]),
            st.just(["y", "x", "class", "confidence", "votes", "networks"]),
            st.permutations(["y", "x", "class", "confidence"]),
            st.lists(CELLS, max_size=6),
        )
    )
    rows = draw(st.lists(st.lists(CELLS, max_size=7), max_size=8))
    lines = [sep.join(header)] + [sep.join(r) for r in rows]
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"])), errors="replace")


def _check_csv(path: Path, content: bytes):
    path.write_bytes(content)
    try:
        sites = read_csv(path)
    except ValueError as err:
        assert str(err).startswith(path.name), str(err)
        return
    assert sites.yx.shape == (len(sites), 2) and np.all(np.isfinite(sites.yx))
    assert np.all((sites.confidence >= 0) & (sites.confidence <= 1))
    assert np.all((sites.classes >= 0) & (sites.classes < len(sites.class_names)))


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_csv_text(scale):
    path = Path(tempfile.mkdtemp()) / "fuzzed.csv"
    _run(lambda content: _check_csv(path, content), 500, scale, content=csv_texts())


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_csv_bytes(scale):
    path = Path(tempfile.mkdtemp()) / "fuzzed.csv"
    good = b"y,x,class,confidence\n1.0,2.0,Mo,0.5\n3,4,S2,1\n"
    content = st.one_of(st.binary(max_size=400), _mutations(len(good)).map(lambda ops: _apply(good, ops)))
    _run(lambda content: _check_csv(path, content), 400, scale, content=content)


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_csv_round_trip(scale):
    """What write_csv writes, read_csv reads back (positions to 1e-4 Å, classes, confidence, votes)."""
    path = Path(tempfile.mkdtemp()) / "sites.csv"
    site = st.tuples(
        st.floats(-1e4, 1e4),
        st.floats(-1e4, 1e4),
        st.integers(0, 2),
        st.floats(0, 1),
        st.integers(1, 5),
        st.sampled_from(["", "unet", "unet;msdnet", "a b,c"]),
    )

    def check(rows, with_votes):
        a = np.array([r[:4] for r in rows], float).reshape(-1, 4)
        sites = Sites(
            a[:, :2],
            a[:, 2].astype(int),
            a[:, 3],
            votes=np.array([r[4] for r in rows], int) if with_votes else None,
            networks=[r[5] for r in rows] if with_votes else None,
        )
        sites.write_csv(path)
        back = read_csv(path)
        assert len(back) == len(sites)
        np.testing.assert_allclose(back.yx, sites.yx, atol=6e-5, rtol=0)
        np.testing.assert_allclose(back.confidence, sites.confidence, atol=6e-5, rtol=0)
        assert np.array_equal(back.classes, sites.classes)
        if with_votes and len(rows):
            assert np.array_equal(back.votes, sites.votes) and back.networks == sites.networks
        assert [p.name for p in path.parent.iterdir()] == ["sites.csv"]  # no temporary file left

    _run(check, 150, scale, rows=st.lists(site, max_size=20), with_votes=st.booleans())


# --------------------------------------------------------------------------------------------- arrays


@pytest.mark.parametrize("scale", SCALES)
def test_fuzz_focal_series_checks(scale):
    """check_focal_series and FocalSeries take any array and sampling without crashing."""
    dtypes = st.sampled_from([np.float32, np.float64, np.int16, np.uint8, np.bool_, np.complex64])
    shapes = st.one_of(
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=24),
        hnp.array_shapes(min_dims=4, max_dims=4, max_side=3),
    )
    arrays = dtypes.flatmap(lambda dt: hnp.arrays(dt, shapes))
    samplings = st.one_of(
        st.none(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-5, 5),
        st.sampled_from(["0.2", b"x", [0.2]]),
    )

    def check(array, sampling, n_images):
        try:
            out = check_focal_series(array, sampling, n_images, where="layer")
        except ValueError as err:
            assert str(err).startswith("layer:"), str(err)
        else:
            assert out.dtype == np.float32 and out.ndim == 3 and np.all(np.isfinite(out))
            assert min(out.shape[1:]) >= 8 and all(frame.min() < frame.max() for frame in out)
        try:
            FocalSeries(array, sampling=sampling, sources=["x.npy"])
        except FocalSeriesError as err:
            assert str(err).startswith("x.npy:"), str(err)

    _run(check, 300, scale, array=arrays, sampling=samplings, n_images=st.one_of(st.none(), st.integers(1, 4)))


def test_fuzz_finds_stay_fixed(valid_files, tmp_path):
    """Inputs the fuzzing found, kept as regression cases."""
    if ".tif" in valid_files:  # a NUL inserted in the TIFF header gave an empty (0, 8192) array -> reshape error
        path = tmp_path / "found.tif"
        path.write_bytes(_apply(valid_files[".tif"], [("insert", 15, b"\x00")]))
        with pytest.raises(FocalSeriesError, match="found.tif: "):
            read_image_file(path)
    if ".ser" in valid_files:  # a frame width set to 0: an empty (128, 0) array
        path = tmp_path / "found.ser"
        path.write_bytes(_apply(valid_files[".ser"], [("set4", 128, 1)]))
        with pytest.raises(FocalSeriesError, match="found.ser: "):
            read_image_file(path)
    path = tmp_path / "found.csv"  # a blank first line, then a row: DictReader had no field names -> TypeError
    path.write_bytes(b"\ny")
    with pytest.raises(ValueError, match="found.csv: no header row"):
        read_csv(path)
