"""Tests of napari_hrtem.io.focal_series: real microscope files, round trips and bad input."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_hrtem.io.focal_series import (
    SUPPORTED_EXTENSIONS,
    FocalSeries,
    FocalSeriesError,
    read_focal_series,
    read_image_file,
    unit_to_angstrom,
)

# tests/ is in <clone>/tests and the shared data in <clone>/../shared/realdata (or further up, for a worktree)
REALDATA = next(
    (p / "shared" / "realdata" for p in Path(__file__).resolve().parents if (p / "shared" / "realdata").is_dir()),
    Path(__file__).resolve().parents[2] / "shared" / "realdata",
)
needs_realdata = pytest.mark.skipif(
    not REALDATA.is_dir(), reason="../shared/realdata not present (a user's clone has no ../shared)"
)
HAS_H5PY = importlib.util.find_spec("h5py") is not None

# file, (N, H, W), sampling Å/px (None = uncalibrated), beam energy eV (None = not checked)
REAL_FILES = [
    ("focal_series_img07.dm3", (1, 1024, 1024), 0.2842, 300e3),
    ("focal_series_img08.dm3", (1, 1024, 1024), 0.2842, 300e3),
    ("focal_series_img09.dm3", (1, 1024, 1024), 0.2842, 300e3),
    ("test_stackbuilder_imagestack.dm3", (3, 2, 16), 599.8, 200e3),
    ("test_dm_image_um_unit.dm3", (1, 68, 68), 1686.7, 200e3),
    ("128x128-TEM_search_1.ser", (1, 128, 128), 52.6, 200e3),
    ("128x128-TEM_search.emi", (1, 128, 128), 52.6, 200e3),
    ("16_STOimage_1.ser", (1, 1024, 1024), 0.1001, 80e3),
    ("16_STOimage.emi", (1, 1024, 1024), 0.1001, 80e3),
    ("graphene_defect_raw.tif", (1, 512, 512), None, None),
    ("graphene_flower_raw.tif", (1, 256, 256), None, None),
]


@needs_realdata
@pytest.mark.parametrize(("name", "shape", "sampling", "energy"), REAL_FILES)
def test_real_files(name, shape, sampling, energy):
    fs = read_image_file(REALDATA / name)
    assert fs.images.shape == shape
    assert fs.images.dtype == np.float32
    assert np.isfinite(fs.images).all() and fs.images.std() > 0
    if sampling is None:
        assert fs.sampling is None
    else:
        assert fs.sampling == pytest.approx(sampling, rel=1e-3)
    if energy is not None:
        assert fs.energy == pytest.approx(energy)
    assert fs.sources == [str(REALDATA / name)]


@needs_realdata
def test_real_tia_defocus_from_emi():
    # TIA stores the (relative) defocus readout in µm in the .emi: -0.002 µm = -20 Å
    assert read_image_file(REALDATA / "16_STOimage_1.ser").defocus == pytest.approx([-20.0])
    assert read_image_file(REALDATA / "128x128-TEM_search_1.ser").defocus == pytest.approx([0.0])
    for name in ("focal_series_img07.dm3", "test_dm_image_um_unit.dm3", "test_stackbuilder_imagestack.dm3"):
        assert read_image_file(REALDATA / name).defocus is None  # DM files here record none


@needs_realdata
def test_real_dm3_focal_series():
    paths = [REALDATA / f"focal_series_img0{i}.dm3" for i in (7, 8, 9)]
    fs = read_focal_series(paths)
    assert fs.images.shape == (3, 1024, 1024)
    assert fs.sampling == pytest.approx(0.2842, rel=1e-3)
    assert fs.energy == pytest.approx(300e3)
    assert fs.defocus is None  # not recorded in these files
    assert [Path(s).name for s in fs.sources] == [p.name for p in paths]
    single = read_image_file(paths[1]).images[0]
    np.testing.assert_array_equal(fs.images[1], single)


@needs_realdata
def test_real_sampling_override():
    fs = read_image_file(REALDATA / "graphene_flower_raw.tif", sampling=0.22)
    assert fs.sampling == pytest.approx(0.22)
    fs = read_image_file(REALDATA / "focal_series_img07.dm3", sampling=0.3)
    assert fs.sampling == pytest.approx(0.3)
    assert fs.metadata["file_sampling"] == pytest.approx(0.2842, rel=1e-3)


@needs_realdata
@pytest.mark.skipif(not HAS_H5PY, reason="h5py is not installed (needed for .emd)")
def test_real_velox_emd_stack():
    fs = read_image_file(REALDATA / "fei_example_tem_stack.emd")
    assert fs.images.shape == (2, 3, 3)  # Time axis flattened into N
    assert fs.sampling == pytest.approx(0.0817, rel=1e-2)
    assert fs.energy == pytest.approx(300e3)
    # Optics.Defocus of each frame is 3.02317e-08 m
    assert fs.defocus == pytest.approx([302.317, 302.317], rel=1e-4)


@needs_realdata
@pytest.mark.skipif(not HAS_H5PY, reason="h5py is not installed (needed for .emd)")
def test_real_berkeley_emd():
    fs = read_image_file(REALDATA / "Acquisition_18.emd")  # unit string 'n_m'
    assert fs.images.shape == (1, 1024, 1024)
    assert fs.sampling == pytest.approx(0.1225, rel=1e-3)
    assert fs.energy == pytest.approx(200e3)  # microscope/'high tension' 200 (kV)
    assert fs.defocus is None and "microscope.defocus" in fs.metadata["defocus_raw"]  # no unit stored: not used


@needs_realdata
@pytest.mark.skipif(HAS_H5PY, reason="only meaningful without h5py")
def test_emd_without_h5py_is_a_clear_error():
    with pytest.raises(FocalSeriesError, match="fei_example_tem_stack.emd.*h5py"):
        read_image_file(REALDATA / "fei_example_tem_stack.emd")


def _fake_emd_module(records):
    module = types.ModuleType("rsciio.emd")
    module.file_reader = lambda filename, **kwargs: records
    return module


def test_velox_like_records_without_h5py(tmp_path, monkeypatch):
    """The rsciio-record path for Velox output (Time axis, pm, mapping), faked so it runs without h5py."""
    axes = [
        {"name": "Time", "size": 2, "scale": 0.8, "units": "s", "navigate": True},
        {"name": "y", "size": 3, "scale": 8.17, "units": "pm", "navigate": False},
        {"name": "x", "size": 3, "scale": 8.17, "units": "pm", "navigate": False},
    ]
    record = {
        "data": np.arange(18, dtype=np.int16).reshape(2, 3, 3),
        "axes": axes,
        "metadata": {"General": {"title": "BM-Ceta"}},
        "original_metadata": {"Optics": {"AccelerationVoltage": "300000", "Defocus": "3.0e-08"}},
        "mapping": {"Optics.AccelerationVoltage": ("Acquisition_instrument.TEM.beam_energy", lambda x: float(x) / 1e3)},
    }
    monkeypatch.setitem(sys.modules, "rsciio.emd", _fake_emd_module([record]))
    monkeypatch.setenv("NAPARI_HRTEM_READ_TIMEOUT", "inf")  # read in this process, where the fake module is
    (tmp_path / "velox.emd").write_bytes(b"not really hdf5")
    fs = read_image_file(tmp_path / "velox.emd")
    assert fs.images.shape == (2, 3, 3) and fs.images.dtype == np.float32
    assert fs.sampling == pytest.approx(0.0817)
    assert fs.energy == pytest.approx(300e3)
    assert fs.defocus is None  # per-frame values need the real HDF5 file; frame 0 alone is not enough
    assert fs.metadata["defocus_raw"] == pytest.approx(3.0e-08)
    record["data"], record["axes"] = record["data"][0], axes[1:]
    assert read_image_file(tmp_path / "velox.emd").defocus == pytest.approx([300.0])


def test_berkeley_like_records_without_h5py(tmp_path, monkeypatch):
    axes = [
        {"name": "y", "size": 4, "scale": 0.01225, "units": "n_m"},
        {"name": "x", "size": 4, "scale": 0.01225, "units": "n_m"},
    ]
    record = {
        "data": np.ones((4, 4), np.uint16),
        "axes": axes,
        "metadata": {"General": {}},
        "original_metadata": {"microscope": {"high tension": np.float64(200.0), "defocus": 5.0}},
    }
    monkeypatch.setitem(sys.modules, "rsciio.emd", _fake_emd_module([record]))
    monkeypatch.setenv("NAPARI_HRTEM_READ_TIMEOUT", "inf")  # read in this process, where the fake module is
    (tmp_path / "ncem.emd").write_bytes(b"x")
    fs = read_image_file(tmp_path / "ncem.emd")
    assert fs.sampling == pytest.approx(0.1225) and fs.energy == pytest.approx(200e3)
    assert fs.defocus is None  # no unit recorded for 'defocus': kept raw in metadata only
    assert fs.metadata["defocus_raw"] == {"microscope.defocus": 5.0}
    monkeypatch.setitem(sys.modules, "rsciio.emd", _fake_emd_module([{**record, "data": np.ones((4, 4), complex)}]))
    with pytest.raises(FocalSeriesError, match="ncem.emd: holds no real-valued image"):
        read_image_file(tmp_path / "ncem.emd")


# ----------------------------------------------------------------- bad input


@needs_realdata
def test_truncated_dm3(tmp_path):
    bad = tmp_path / "truncated.dm3"
    bad.write_bytes((REALDATA / "focal_series_img07.dm3").read_bytes()[:1000])
    with pytest.raises(FocalSeriesError, match="truncated.dm3: could not be read as"):
        read_image_file(bad)


def test_garbage_tif(tmp_path):
    bad = tmp_path / "garbage.tif"
    bad.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(FocalSeriesError, match="garbage.tif: could not be read as TIFF"):
        read_image_file(bad)


def test_nan_pixels(tmp_path):
    a = np.ones((16, 16), np.float32)
    a[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", a)
    with pytest.raises(FocalSeriesError, match="nan.npy.*NaN"):
        read_image_file(tmp_path / "nan.npy")


def test_different_shapes(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((16, 16)))
    np.save(tmp_path / "b.npy", np.zeros((8, 16)))
    with pytest.raises(FocalSeriesError, match=r"a.npy, b.npy: frames have different shapes \(16, 16\) vs \(8, 16\)"):
        read_focal_series([tmp_path / "a.npy", tmp_path / "b.npy"])


def test_unknown_extension(tmp_path):
    f = tmp_path / "image.xyz"
    f.write_bytes(b"0" * 100)
    with pytest.raises(FocalSeriesError, match=r"image.xyz: unsupported extension.*\.dm3"):
        read_image_file(f)


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), "abc"])
def test_bad_sampling(tmp_path, bad):
    np.save(tmp_path / "img.npy", np.ones((8, 8)))
    with pytest.raises(FocalSeriesError, match="img.npy"):
        read_image_file(tmp_path / "img.npy", sampling=bad)
    with pytest.raises(FocalSeriesError, match="img.npy"):
        read_focal_series([tmp_path / "img.npy"], sampling=bad)
    with pytest.raises(FocalSeriesError, match="img.npy"):
        FocalSeries(np.ones((1, 8, 8)), sampling=bad, sources=[str(tmp_path / "img.npy")])


def test_missing_file(tmp_path):
    with pytest.raises(FocalSeriesError, match="nothere.dm3: file not found"):
        read_image_file(tmp_path / "nothere.dm3")


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.ones(16), "expected an image"),
        (np.ones((8, 8), complex), "complex"),
        (np.ones((1, 8, 1)), "H, W >= 2"),
    ],
)
def test_bad_arrays(tmp_path, array, match):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(FocalSeriesError, match=f"bad.npy.*{match}"):
        read_image_file(tmp_path / "bad.npy")


def test_stack_among_several_files(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 8, 8)))
    np.save(tmp_path / "b.npy", np.zeros((8, 8)))
    with pytest.raises(FocalSeriesError, match="a.npy: holds 2 frames"):
        read_focal_series([tmp_path / "a.npy", tmp_path / "b.npy"])


def test_sampling_disagreement(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((8, 8)), sampling=0.20)
    np.savez(tmp_path / "b.npz", images=np.zeros((8, 8)), sampling=0.21)
    np.savez(tmp_path / "c.npz", images=np.zeros((8, 8)), sampling=0.2005)
    with pytest.raises(FocalSeriesError, match="a.npz.*b.npz.*differs by more than 1 %"):
        read_focal_series([tmp_path / "a.npz", tmp_path / "b.npz"])
    fs = read_focal_series([tmp_path / "a.npz", tmp_path / "c.npz"])
    assert fs.sampling == pytest.approx(0.20025)
    fs = read_focal_series([tmp_path / "a.npz", tmp_path / "b.npz"], sampling=0.3)
    assert fs.sampling == 0.3


def test_mixed_calibrated_and_not(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((8, 8)), sampling=0.2)
    np.save(tmp_path / "b.npy", np.zeros((8, 8)))
    with pytest.raises(FocalSeriesError, match="b.npy: no calibration"):
        read_focal_series([tmp_path / "a.npz", tmp_path / "b.npy"])
    assert read_focal_series([tmp_path / "a.npz", tmp_path / "b.npy"], sampling=0.2).sampling == 0.2


def test_rgb_and_reciprocal_tif(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(FocalSeriesError, match="rgb.tif.*RGB"):
        read_image_file(tmp_path / "rgb.tif")
    tifffile.imwrite(
        tmp_path / "fft.tif", np.zeros((8, 8), np.float32), imagej=True, resolution=(4, 4), metadata={"unit": "1/nm"}
    )
    with pytest.raises(FocalSeriesError, match="fft.tif.*reciprocal"):
        read_image_file(tmp_path / "fft.tif")


def test_y_x_sampling_mismatch(tmp_path):
    tifffile.imwrite(
        tmp_path / "aniso.tif", np.zeros((8, 8), np.float32), imagej=True, resolution=(4, 5), metadata={"unit": "nm"}
    )
    with pytest.raises(FocalSeriesError, match="aniso.tif: y and x sampling differ"):
        read_image_file(tmp_path / "aniso.tif")


def test_focal_series_validation():
    with pytest.raises(FocalSeriesError, match="x.dm3.*3-D"):
        FocalSeries(np.ones((8, 8)), sources=["/d/x.dm3"])
    with pytest.raises(FocalSeriesError, match="x.dm3.*NaN/Inf"):
        FocalSeries(np.full((1, 8, 8), np.inf), sources=["/d/x.dm3"])
    with pytest.raises(FocalSeriesError, match="defocus"):
        FocalSeries(np.ones((2, 8, 8)), defocus=[1.0], sources=["/d/x.dm3"])
    fs = FocalSeries(np.ones((2, 4, 4), np.int16), sampling=1, defocus=[-50, 50])
    assert fs.images.dtype == np.float32 and fs.sampling == 1.0 and fs.defocus == [-50.0, 50.0]


# ----------------------------------------------------------------- round trips


def test_npy_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    stack = rng.normal(size=(3, 20, 30)).astype(np.float64)
    np.save(tmp_path / "stack.npy", stack)
    fs = read_image_file(tmp_path / "stack.npy")
    assert fs.images.shape == (3, 20, 30) and fs.images.dtype == np.float32
    np.testing.assert_allclose(fs.images, stack, rtol=1e-6)
    assert fs.sampling is None and fs.energy is None and fs.defocus is None
    np.save(tmp_path / "img.npy", np.arange(600, dtype=np.uint16).reshape(20, 30))
    fs = read_image_file(tmp_path / "img.npy", sampling=0.5)
    assert fs.images.shape == (1, 20, 30) and fs.images.dtype == np.float32 and fs.sampling == 0.5


def test_npz_round_trip(tmp_path):
    np.savez(
        tmp_path / "s.npz",
        other=np.zeros(3),
        images=np.ones((2, 8, 8)),
        sampling=0.25,
        energy=300e3,
        defocus=[-100.0, 100.0],
    )
    fs = read_image_file(tmp_path / "s.npz")
    assert fs.images.shape == (2, 8, 8) and fs.sampling == 0.25
    assert fs.energy == 300e3 and fs.defocus == [-100.0, 100.0]
    np.savez(tmp_path / "first.npz", np.ones((8, 8)))
    assert read_image_file(tmp_path / "first.npz").images.shape == (1, 8, 8)


@pytest.mark.parametrize(
    ("unit", "pixel", "expected"),
    [
        ("nm", 0.025, 0.25),
        ("angstrom", 0.3, 0.3),
        ("\\u00B5m", 2e-5, 0.2),
        ("micron", 2e-5, 0.2),
    ],
)
def test_imagej_tif_round_trip(tmp_path, unit, pixel, expected):
    stack = np.random.default_rng(2).normal(size=(3, 16, 24)).astype(np.float32)
    tifffile.imwrite(
        tmp_path / "s.tif",
        stack,
        imagej=True,
        resolution=(1 / pixel, 1 / pixel),
        metadata={"unit": unit, "axes": "ZYX"},
    )
    fs = read_image_file(tmp_path / "s.tif")
    assert fs.images.shape == (3, 16, 24)
    np.testing.assert_array_equal(fs.images, stack)
    assert fs.sampling == pytest.approx(expected, rel=1e-5)


def test_plain_tif_calibration(tmp_path):
    img = np.arange(64, dtype=np.uint16).reshape(8, 8)
    tifffile.imwrite(tmp_path / "none.tif", img)
    fs = read_image_file(tmp_path / "none.tif")
    assert fs.sampling is None and fs.images.dtype == np.float32
    np.testing.assert_array_equal(fs.images[0], img)
    tifffile.imwrite(tmp_path / "dpi.tif", img, resolution=(72, 72), resolutionunit="INCH")
    assert read_image_file(tmp_path / "dpi.tif").sampling is None  # print DPI, not a calibration
    tifffile.imwrite(tmp_path / "cm.tif", img, resolution=(1e7, 1e7), resolutionunit="CENTIMETER")
    assert read_image_file(tmp_path / "cm.tif").sampling == pytest.approx(10.0)  # 1 nm/px


def test_directory_and_single_path(tmp_path):
    for i, name in enumerate(["b.npy", "a.npy", "c.npy"]):
        np.save(tmp_path / name, np.full((8, 8), i, np.float32))
    (tmp_path / "notes.txt").write_text("ignored")
    fs = read_focal_series(tmp_path)
    assert [Path(s).name for s in fs.sources] == ["a.npy", "b.npy", "c.npy"]
    assert fs.images[:, 0, 0].tolist() == [1.0, 0.0, 2.0]
    assert read_focal_series(str(tmp_path / "a.npy")).images.shape == (1, 8, 8)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FocalSeriesError, match="empty: directory holds no supported"):
        read_focal_series([empty])
    with pytest.raises(FocalSeriesError, match="no files"):
        read_focal_series([])


@needs_realdata
def test_directory_skips_emi_with_its_ser(tmp_path):
    # symlinks, not copies, of the real files
    for name in ("16_STOimage.emi", "16_STOimage_1.ser"):
        (tmp_path / name).symlink_to(REALDATA / name)
    fs = read_focal_series(tmp_path)
    assert [Path(s).name for s in fs.sources] == ["16_STOimage_1.ser"]
    assert fs.energy == pytest.approx(80e3)


@pytest.mark.parametrize(
    ("unit", "factor"),
    [
        ("Å", 1.0),
        ("\u212b", 1.0),
        ("A", 1.0),
        ("angstrom", 1.0),
        ("nm", 10.0),
        ("n_m", 10.0),
        ("pm", 0.01),
        ("µm", 1e4),
        ("μm", 1e4),
        ("um", 1e4),
        ("m", 1e10),
        ("[nm]", 10.0),
    ],
)
def test_unit_to_angstrom(unit, factor):
    assert unit_to_angstrom(unit) == pytest.approx(factor)


@pytest.mark.parametrize("unit", ["1/nm", "nm^-1", "1 / Å", "", "furlong"])
def test_unit_to_angstrom_errors(unit):
    with pytest.raises(FocalSeriesError):
        unit_to_angstrom(unit)


def test_supported_extensions():
    expected = {".npy", ".npz", ".tif", ".tiff", ".dm3", ".dm4", ".ser", ".emi", ".emd", ".mrc"}
    assert expected <= set(SUPPORTED_EXTENSIONS)


# ----------------------------------------------------------------- MRC (mrcfile)


def test_mrc_round_trip(tmp_path):
    import mrcfile

    stack = np.random.default_rng(0).normal(size=(3, 16, 24)).astype(np.float32)
    with mrcfile.new(tmp_path / "s.mrc") as mrc:
        mrc.set_data(stack)
        mrc.voxel_size = 0.25  # Å
    fs = read_image_file(tmp_path / "s.mrc")
    assert fs.images.shape == (3, 16, 24) and fs.images.dtype == np.float32
    np.testing.assert_array_equal(fs.images, stack)
    assert fs.sampling == pytest.approx(0.25) and fs.energy is None and fs.defocus is None
    with mrcfile.new(tmp_path / "plain.mrcs") as mrc:
        mrc.set_data(stack[0].astype(np.int16))
    fs = read_image_file(tmp_path / "plain.mrcs")  # an all-zero cell: not calibrated
    assert fs.images.shape == (1, 16, 24) and fs.sampling is None


def test_mrc_fei_extended_header(tmp_path):
    import mrcfile
    from mrcfile.dtypes import get_ext_header_dtype

    ext = np.zeros(3, dtype=get_ext_header_dtype(b"FEI1"))
    ext["Metadata size"] = ext.dtype.itemsize
    ext["HT"], ext["Defocus"] = 300e3, [-1e-8, -0.5e-8, 0.0]  # V, m
    ext["Pixel size X"] = ext["Pixel size Y"] = 2.2e-11  # m
    with mrcfile.new(tmp_path / "epu.mrc") as mrc:
        mrc.set_data(np.ones((3, 8, 8), np.float32))
        mrc.set_extended_header(ext)
        mrc.header.exttyp = b"FEI1"
    fs = read_image_file(tmp_path / "epu.mrc")
    assert fs.sampling == pytest.approx(0.22) and fs.energy == pytest.approx(300e3)
    assert fs.defocus == pytest.approx([-100.0, -50.0, 0.0])  # Å, as stored


def test_bad_mrc(tmp_path):
    import mrcfile

    with mrcfile.new(tmp_path / "ok.mrc") as mrc:
        mrc.set_data(np.ones((4, 32, 32), np.float32))
    (tmp_path / "truncated.mrc").write_bytes((tmp_path / "ok.mrc").read_bytes()[:3000])
    with pytest.raises(FocalSeriesError, match="truncated.mrc: could not be read as MRC"):
        read_image_file(tmp_path / "truncated.mrc")
    with mrcfile.new(tmp_path / "fft.mrc") as mrc:
        mrc.set_data(np.ones((8, 8), np.complex64))
    with pytest.raises(FocalSeriesError, match="fft.mrc.*complex"):
        read_image_file(tmp_path / "fft.mrc")
    (tmp_path / "text.mrc").write_text("not an MRC file at all " * 100)
    with pytest.raises(FocalSeriesError, match="text.mrc: could not be read as MRC"):
        read_image_file(tmp_path / "text.mrc")


# ----------------------------------------------------------------- focal series assembly


def _numbered(defocus=None, n=5):
    return FocalSeries(
        np.arange(n, dtype=np.float32)[:, None, None] * np.ones((n, 4, 4)),
        sampling=0.2,
        defocus=defocus,
        sources=["/data/series.emd"],
    )


def test_assemble_orders_by_abtem_defocus():
    from napari_hrtem.io.focal_series import assemble_focal_series

    fs = _numbered([100.0, -50.0, 0.0, 50.0, -100.0])  # microscope sign: negative = underfocus
    out = assemble_focal_series(fs)
    assert out.defocus == [-100.0, -50.0, 0.0, 50.0, 100.0]  # abTEM sign, increasing
    assert out.metadata["frames"] == [0, 3, 2, 1, 4]
    assert out.images[:, 0, 0].tolist() == [0.0, 3.0, 2.0, 1.0, 4.0]
    assert "positive = underfocus" in out.metadata["defocus_convention"]
    assert "sign flipped" in out.metadata["defocus_convention"]
    assert out.metadata["defocus_steps"] == [50.0] * 4
    same = assemble_focal_series(fs, convention="abtem")
    assert same.metadata["frames"] == [4, 1, 2, 3, 0] and same.defocus[0] == -100.0


def test_assemble_chooses_frames():
    from napari_hrtem.io.focal_series import assemble_focal_series

    fs = _numbered([-120.0, -50.0, 0.0, 30.0, 50.0, 200.0], n=6)
    out = assemble_focal_series(fs, convention="abtem", n=3, step=50.0)
    assert out.metadata["frames"] == [1, 2, 4] and out.defocus == [-50.0, 0.0, 50.0]
    out = assemble_focal_series(fs, frames=[5, 0, 2], convention="abtem")
    assert out.metadata["frames"] == [0, 2, 5]
    # user-given defocus for the chosen frames only
    out = assemble_focal_series(_numbered(), frames=[4, 1], defocus=[-20.0, 30.0], convention="abtem")
    assert out.metadata["frames"] == [4, 1] and out.metadata["defocus_source"] == "given"


@needs_realdata
@pytest.mark.skipif(not HAS_H5PY, reason="h5py is not installed (needed for .emd)")
def test_assemble_real_velox_stack_of_equal_defocus():
    from napari_hrtem.io.focal_series import assemble_focal_series

    out = assemble_focal_series(read_image_file(REALDATA / "fei_example_tem_stack.emd"))  # a time series
    assert out.metadata["frames"] == [0, 1] and out.defocus == pytest.approx([-302.317, -302.317], rel=1e-4)
    assert "equal defocus kept in the given order" in out.metadata["defocus_convention"]


def test_assemble_without_defocus_keeps_order_and_says_so():
    from napari_hrtem.io.focal_series import assemble_focal_series

    out = assemble_focal_series(_numbered(), frames=[1, 2, 3])
    assert out.metadata["frames"] == [1, 2, 3] and out.defocus is None
    assert "unknown" in out.metadata["defocus_convention"]
    assert assemble_focal_series(_numbered(), frames=[1, 2, 3], reverse=True).metadata["frames"] == [3, 2, 1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frames": [0, 7]}, "series.emd: frames"),
        ({"frames": [1, 1]}, "distinct"),
        ({"defocus": [1.0, 2.0]}, "2 defocus values for 5 frames"),
        ({"n": 3, "step": 50.0}, "needs defocus"),
        ({"convention": "scherzer"}, "unknown defocus convention"),
    ],
)
def test_assemble_errors(kwargs, match):
    from napari_hrtem.io.focal_series import assemble_focal_series

    with pytest.raises(FocalSeriesError, match=match):
        assemble_focal_series(_numbered(), **kwargs)


# ----------------------------------------------------------------- npe2 reader


def test_reader_folder_and_uncalibrated_warning(tmp_path):
    from napari_hrtem.plugin.reader import get_reader

    for i in range(3):
        np.save(tmp_path / f"img{i}.npy", np.full((8, 8), i, np.float32))
    reader = get_reader(str(tmp_path))
    assert reader is not None and get_reader("notes.txt") is None
    with pytest.warns(UserWarning, match="img0.npy, img1.npy, img2.npy: no pixel size"):
        ((data, kwargs, kind),) = reader(str(tmp_path))
    assert data.shape == (3, 8, 8) and kind == "image" and kwargs["metadata"]["sampling"] is None
    np.savez(tmp_path / "cal.npz", images=np.ones((2, 8, 8)), sampling=0.25, defocus=[-10.0, 10.0])
    ((data, kwargs, _),) = get_reader(str(tmp_path / "cal.npz"))(str(tmp_path / "cal.npz"))
    assert kwargs["scale"] == (1.0, 0.25, 0.25) and kwargs["metadata"]["defocus"] == [-10.0, 10.0]


@needs_realdata
@pytest.mark.parametrize(
    "name",
    [
        "focal_series_img07.dm3",
        "test_stackbuilder_imagestack.dm3",
        "16_STOimage_1.ser",
        "128x128-TEM_search_1.ser",
        "fei_example_tem_stack.emd",
        "Acquisition_18.emd",
        "graphene_flower_raw.tif",
    ],
)
def test_truncated_real_files(tmp_path, name):
    raw = (REALDATA / name).read_bytes()
    (tmp_path / name).write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FocalSeriesError, match=f"{name}: could not be read as .*truncated,? or corrupt"):
        read_image_file(tmp_path / name)
