"""Tests of napari_hrtem.analysis.alignment: drift registration of focal series (simulated and real)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import fourier_shift, gaussian_filter

from napari_hrtem.analysis.alignment import (
    Alignment,
    AlignmentError,
    align_series,
    apply_alignment,
    register_pair,
    register_series,
)

REALDATA = next(
    (p / "shared" / "realdata" for p in Path(__file__).resolve().parents if (p / "shared" / "realdata").is_dir()),
    Path("/nonexistent"),
)
needs_realdata = pytest.mark.skipif(not REALDATA.is_dir(), reason="../shared/realdata not present")


def _shifted(images, shifts):
    """Frame i moved so that the content at p is at p + shifts[i] (exact, periodic Fourier shift)."""
    return np.stack([np.fft.ifft2(fourier_shift(np.fft.fft2(im), s)).real for im, s in zip(images, shifts)]).astype(
        np.float32
    )


@pytest.mark.parametrize("sequential", [True, False])
def test_known_subpixel_shifts_through_focus(tiny_series, sequential):
    """Simulated MoS2 on graphene at -50/0/+50 Å (contrast changes through focus), known drifts."""
    images, sampling, _ = tiny_series
    true = np.array([[2.37, -9.62], [0.0, 0.0], [-6.71, 4.45]])
    al = register_series(_shifted(images, true), sampling, sequential=sequential)
    assert al.reference == 1 and al.sampling == sampling
    assert np.abs(al.shifts - true).max() <= 0.1
    np.testing.assert_allclose(al.shifts_angstrom, al.shifts * sampling)
    assert min(al.peaks) > 0.5
    assert "frame 0: dy +0.52 Å" in al.report() and "(reference)" in al.report()


def test_inverted_contrast_and_other_reference(tiny_series):
    images, sampling, _ = tiny_series
    true = np.array([[0.0, 0.0], [3.3, 1.1], [-1.45, 7.8]])
    moved = _shifted(images, true)
    moved[2] = 2.0 - moved[2]  # contrast inverted (overfocus vs underfocus)
    al = register_series(moved, sampling, reference=0)
    assert np.abs(al.shifts - true).max() <= 0.1


def test_apply_alignment_crop_and_mapping_back():
    rng = np.random.default_rng(3)
    base = gaussian_filter(rng.normal(size=(96, 112)), 2.0).astype(np.float32)
    true = np.array([[1.5, -4.25], [0.0, 0.0], [-3.75, 2.5]])
    frames = _shifted(np.stack([base] * 3), true)
    aligned, al = align_series(frames, 0.2)
    assert np.abs(al.shifts - true).max() < 0.05
    # reference pixel p is valid in every frame for -min(shift) <= p <= size-1-max(shift)
    assert al.origin == (4, 5)  # ceil(3.75), ceil(4.25)
    assert aligned.shape == (3, 90, 104) and al.shape == aligned.shape[1:]  # rows 4..93, cols 5..108
    np.testing.assert_array_equal(aligned[1], frames[1][4:94, 5:109])  # reference frame: a pure crop
    inner = (slice(3, -3), slice(3, -3))  # the periodic Fourier shift wraps at the edges
    for i in (0, 2):
        assert np.abs(aligned[i][inner] - aligned[1][inner]).max() < 0.02 * np.ptp(base)
    # a site at q Å on the aligned series is at q + origin * sampling in the reference frame
    q = np.array([[1.0, 2.0], [10.4, 0.0]])
    np.testing.assert_allclose(al.to_reference(q), q + np.array([4, 5]) * 0.2)
    np.testing.assert_allclose(al.to_reference(q, frame=2), q + (np.array([4, 5]) + al.shifts[2]) * 0.2)
    np.testing.assert_allclose(al.origin_angstrom, [0.8, 1.0])
    d = al.to_dict()
    assert d["origin_px"] == [4, 5] and len(d["shifts_angstrom"]) == 3
    full, al_full = apply_alignment(frames, al, crop=False)
    assert full.shape == frames.shape and al_full.origin == (0, 0)


def test_pixels_without_sampling():
    rng = np.random.default_rng(4)
    base = gaussian_filter(rng.normal(size=(64, 64)), 1.5)
    shift, peak = register_pair(base, _shifted(base[None], [(0.3, -2.6)])[0])
    np.testing.assert_allclose(shift, (0.3, -2.6), atol=0.05)
    assert peak > 0.9
    al = register_series(np.stack([base, base]))
    assert al.sampling is None and "px" in al.report()
    with pytest.raises(AlignmentError, match="no sampling"):
        al.to_reference([[0.0, 0.0]])


def test_errors():
    with pytest.raises(AlignmentError, match="one shape"):
        register_pair(np.zeros((32, 32)), np.zeros((32, 30)))
    bad = np.ones((2, 32, 32))
    bad[1, 3, 3] = np.nan
    with pytest.raises(AlignmentError, match="NaN"):
        register_series(bad, 0.2)
    with pytest.raises(AlignmentError, match="out of range"):
        register_series(np.ones((2, 32, 32)), 0.2, reference=2)
    with pytest.raises(AlignmentError, match="too narrow"):
        register_series(np.ones((2, 16, 16)), 0.2)  # 3.2 Å field of view: no band between 2 Å and 0.8 Å
    with pytest.raises(AlignmentError, match="below 2 px"):
        register_series(np.ones((2, 64, 64)), 0.5, min_period=0.8)
    al = Alignment(shifts=np.array([[0.0, 0.0], [40.0, 0.0]]), reference=0, sampling=0.2)
    with pytest.raises(AlignmentError, match="no common area"):
        apply_alignment(np.ones((2, 32, 32)), al)


@needs_realdata
def test_real_dm3_focal_series_drift():
    """The real JEOL frames drift ~14 px per frame; no ground truth, so check consistency."""
    from napari_hrtem.io.focal_series import read_focal_series

    fs = read_focal_series([REALDATA / f"focal_series_img0{i}.dm3" for i in (7, 8, 9)])
    al = register_series(fs.images, fs.sampling)
    assert al.reference == 1 and min(al.peaks) > 0.5
    step = np.linalg.norm(al.shifts, axis=1)
    assert 12 < step[0] < 16 and 13 < step[2] < 17  # px between consecutive frames
    # chained 7 -> 8 -> 9 agrees with 7 -> 9 directly, and a coarser band agrees
    direct, _ = register_pair(fs.images[0], fs.images[2], fs.sampling)
    np.testing.assert_allclose(direct, al.shifts[2] - al.shifts[0], atol=1.0)  # measured: 0.52 px
    coarse = register_series(fs.images, fs.sampling, min_period=5.0)
    np.testing.assert_allclose(coarse.shifts, al.shifts, atol=0.5)
    # the aligned frames agree better than the raw ones (on the common area)
    aligned, al = apply_alignment(fs.images, al)
    assert aligned.shape[1] < 1024 and aligned.shape[2] < 1024

    def corr(a, b):
        a, b = gaussian_filter(a, 8.0), gaussian_filter(b, 8.0)
        return abs(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    (y0, x0), (h, w) = al.origin, al.shape
    raw = [corr(fs.images[i][y0 : y0 + h, x0 : x0 + w], fs.images[1][y0 : y0 + h, x0 : x0 + w]) for i in (0, 2)]
    assert all(corr(aligned[i], aligned[1]) > r for i, r in zip((0, 2), raw))


# ------------------------------------------- resampling to the network and back, drift end to end


@pytest.mark.parametrize("input_sampling", [0.15, 0.3])
def test_sites_come_back_in_the_input_angstrom_frame(tiny_series, input_sampling):
    """The network runs at its card's sampling (about 0.225 Å/px); sites come back in the input's Å."""
    from scipy.spatial import cKDTree

    from napari_hrtem.analysis.filters import resample
    from napari_hrtem.analysis.inference import predict_sites
    from napari_hrtem.models.registry import available_networks

    images, sampling, sample = tiny_series
    net = available_networks()["unet"]
    resampled = resample(images, sampling, input_sampling)  # the same specimen, other pixel size
    sites, probabilities = predict_sites(net, resampled, input_sampling)
    assert probabilities.shape[1] == pytest.approx(
        (resampled.shape[1] - 1) * input_sampling / net.card.sampling + 1, abs=1
    )
    distance, _ = cKDTree(sample.sites).query(sites.yx)
    assert len(sites) >= 0.95 * len(sample.sites)
    assert np.median(distance) < 0.15 and np.mean(distance < 0.5) > 0.95  # Å


def test_cli_predict_align_maps_sites_to_the_reference_frame(tiny_series, tmp_path, capsys):
    import json

    from scipy.spatial import cKDTree

    from napari_hrtem.cli import main
    from napari_hrtem.io.sites import read_csv

    images, sampling, sample = tiny_series
    true = np.array([[-5.4, 7.3], [0.0, 0.0], [6.2, -3.7]])  # px; frame 1 (the reference) unmoved
    np.savez(tmp_path / "drift.npz", images=_shifted(images, true), sampling=sampling, defocus=[-50.0, 0.0, 50.0])
    assert (
        main(["predict", str(tmp_path / "drift.npz"), "--networks", "unet", "--align", "--out", str(tmp_path / "out")])
        == 0
    )
    err = capsys.readouterr().err
    assert "abTEM" in err and "frame 0: dy -1.18 Å" in err
    sidecar = json.loads((tmp_path / "out" / "predict.json").read_text())
    np.testing.assert_allclose(sidecar["alignment"]["shifts_angstrom"], true * sampling, atol=0.1 * sampling)
    assert sidecar["alignment"]["origin_px"] == [6, 4] and sidecar["frames"] == [0, 1, 2]
    sites = read_csv(tmp_path / "out" / "unet.csv")
    distance, _ = cKDTree(sample.sites).query(sites.yx)  # truth in the reference frame's Å
    assert len(sites) > 0.6 * len(sample.sites)  # the crop drops the edge columns
    assert np.median(distance) < 0.15 and np.mean(distance < 0.5) > 0.95


@pytest.mark.slow
@needs_realdata
def test_cli_predict_align_real_dm3(tmp_path, capsys):
    import json

    from napari_hrtem.cli import main
    from napari_hrtem.io.sites import read_csv

    files = [str(REALDATA / f"focal_series_img0{i}.dm3") for i in (7, 8, 9)]
    assert main(["predict", *files, "--networks", "unet", "--align", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "no defocus recorded" in err and "drift alignment" in err
    sidecar = json.loads((tmp_path / "predict.json").read_text())
    al = sidecar["alignment"]
    assert al["reference"] == 1 and "frame 1 of the input" in sidecar["origin"]
    assert 3.4 < np.hypot(*al["shifts_angstrom"][2]) < 4.8  # ~15 px at 0.2842 Å/px
    h, w = al["shape"]
    assert sidecar["shape"] == [3, h, w] and h < 1024 and w < 1024
    yx = read_csv(tmp_path / "unet.csv").yx
    lo = np.asarray(al["origin_angstrom"])
    assert len(yx) > 0 and np.all(yx >= lo - 1) and np.all(yx <= lo + np.array([h, w]) * 0.2842 + 1)


def test_cli_predict_chooses_frames_of_a_longer_series(tiny_series, tmp_path, capsys):
    import json

    from napari_hrtem.cli import main

    images, sampling, _ = tiny_series
    # 5 frames: the 3 real ones (abTEM -50, 0, 50 Å) plus two far off, in shuffled order
    stack = np.stack([images[2], images[0] * 0 + 1, images[0], images[1], images[1] * 0 + 2])
    np.savez(tmp_path / "long.npz", images=stack, sampling=sampling, defocus=[50.0, 400.0, -50.0, 0.0, -300.0])
    assert main(["predict", str(tmp_path / "long.npz"), "--networks", "unet", "--out", str(tmp_path / "out")]) == 0
    assert "chose 3 of the frames" in capsys.readouterr().err
    sidecar = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert sidecar["frames"] == [2, 3, 0] and sidecar["defocus"] == [-50.0, 0.0, 50.0]
    assert (
        main(
            [
                "predict",
                str(tmp_path / "long.npz"),
                "--networks",
                "unet",
                "--frames",
                "2,3,0",
                "--out",
                str(tmp_path / "out2"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "out2" / "predict.json").read_text())["frames"] == [2, 3, 0]
    np.save(tmp_path / "nodefocus.npy", stack)
    assert (
        main(
            [
                "predict",
                str(tmp_path / "nodefocus.npy"),
                "--sampling",
                "0.22",
                "--networks",
                "unet",
                "--out",
                str(tmp_path / "out3"),
            ]
        )
        == 2
    )
    assert "--frames" in capsys.readouterr().err
