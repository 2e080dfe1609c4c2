"""GUI: the Load widget's frame choice, defocus convention and drift alignment (run under Xvfb)."""

import numpy as np
import pytest
from scipy.ndimage import fourier_shift, gaussian_filter

napari = pytest.importorskip("napari")


def _wait(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def test_load_choose_frames_and_align(make_napari_viewer, qtbot, tmp_path):
    from napari_hrtem.plugin.widgets.load import LoadWidget

    base = gaussian_filter(np.random.default_rng(0).normal(size=(96, 96)), 2.0)
    shifts = [(0.0, 0.0), (2.5, -1.5), (0.0, 0.0), (-3.25, 4.0), (0.0, 0.0)]
    stack = np.stack([np.fft.ifft2(fourier_shift(np.fft.fft2(base), s)).real for s in shifts]).astype(np.float32)
    # abTEM defocus (a .npz: "auto" reads it as abTEM); frames 1, 2, 3 = -50, 0, +50 Å
    np.savez(tmp_path / "series.npz", images=stack, sampling=0.2, defocus=[-100.0, 50.0, 0.0, -50.0, 100.0])
    viewer = make_napari_viewer()
    load = LoadWidget(viewer)
    load.files.value = [str(tmp_path / "series.npz")]
    load.frames.value = "1-3"
    load.align.value = True
    load.start()
    _wait(qtbot, load)
    layer = viewer.layers["series aligned"]
    meta = layer.metadata
    assert meta["frames"] == [3, 2, 1] and meta["defocus"] == [-50.0, 0.0, 50.0]
    assert "positive = underfocus" in meta["defocus_convention"]
    al = meta["alignment"]
    # frame order 3, 2, 1: drifts relative to the middle frame (2), in Å
    np.testing.assert_allclose(al["shifts_angstrom"], np.array([(-3.25, 4.0), (0, 0), (2.5, -1.5)]) * 0.2, atol=0.01)
    assert al["origin_px"] == [4, 2] and layer.data.shape == (3, *al["shape"])
    assert tuple(layer.translate[-2:]) == pytest.approx((0.8, 0.4))  # over the reference frame, in Å
    assert "Drift (dy, dx) Å relative to frame 1" in load.status.value


def test_load_without_sampling_asks_for_it(make_napari_viewer, qtbot, tmp_path):
    from napari_hrtem.plugin.widgets.load import LoadWidget

    np.save(tmp_path / "raw.npy", np.ones((3, 16, 16), np.float32))
    viewer = make_napari_viewer()
    load = LoadWidget(viewer)
    load.files.value = [str(tmp_path / "raw.npy")]
    load.start()
    _wait(qtbot, load)
    assert "raw.npy: no pixel size" in load.status.value and len(viewer.layers) == 0
    load.sampling.value = 0.25
    load.frames.value = "0,2"
    load.start()
    _wait(qtbot, load)
    assert viewer.layers["raw"].data.shape == (2, 16, 16)
    assert "unknown" in viewer.layers["raw"].metadata["defocus_convention"]


def test_predict_on_aligned_series_lies_over_the_reference_frame(make_napari_viewer, qtbot, tmp_path, tiny_series):
    from scipy.spatial import cKDTree

    from napari_hrtem.plugin.widgets.load import LoadWidget
    from napari_hrtem.plugin.widgets.predict import PredictWidget

    images, sampling, sample = tiny_series
    true = [(-4.6, 3.3), (0.0, 0.0), (2.2, -5.7)]  # px, frame 1 = reference
    moved = np.stack([np.fft.ifft2(fourier_shift(np.fft.fft2(im), s)).real for im, s in zip(images, true)])
    np.savez(tmp_path / "drift.npz", images=moved.astype(np.float32), sampling=sampling)
    viewer = make_napari_viewer()
    load = LoadWidget(viewer)
    load.files.value = [str(tmp_path / "drift.npz")]
    load.align.value = True
    load.start()
    _wait(qtbot, load)
    pred = PredictWidget(viewer)
    pred.networks.value = ["unet"]
    pred.layer.reset_choices()
    pred.layer.value = "drift aligned"
    pred.start()
    _wait(qtbot, pred)
    points = viewer.layers["consensus Mo"]
    assert tuple(points.translate) == pytest.approx(tuple(viewer.layers["drift aligned"].translate[-2:]))
    world = np.concatenate([viewer.layers[f"consensus {c}"].data for c in ("Mo", "S2", "S")]) * sampling + np.asarray(
        points.translate
    )
    distance, _ = cKDTree(sample.sites).query(world)  # truth in the reference frame's Å
    assert len(world) > 0.6 * len(sample.sites) and np.mean(distance < 0.5) > 0.95
