import numpy as np
import pytest

from napari_hrtem.filters import _spot_positions, local_normalize, resample, support_filter


def _spot_power(image, sampling, spots, radius=0.02):
    f = np.abs(np.fft.fft2(image - image.mean())) ** 2
    qy = np.fft.fftfreq(image.shape[0], sampling)[:, None]
    qx = np.fft.fftfreq(image.shape[1], sampling)[None, :]
    mask = np.zeros(image.shape, bool)
    for sy, sx in spots:
        mask |= np.hypot(qy - sy, qx - sx) < radius
    return f[mask].sum()


def test_support_filter_removes_graphene_keeps_mos2():
    from napari_hrtem.imaging import MicroscopeParameters, exit_wave, focal_series
    from napari_hrtem.structures import make_mos2_sample

    sample = make_mos2_sample(256 * 0.22, graphene_layers=2, rotation=0.0, seed=3, flake_fraction=1.4)
    wave = exit_wave(sample, (256, 256), 0.22, phonon_configs=1)
    images = focal_series(wave, MicroscopeParameters(), (256, 256), noise=False)
    filtered, info = support_filter(images, 0.22)
    # first-order spots of a lattice rotated by θ lie at θ + 30°
    graphene = _spot_positions(np.radians(sample.params["support_rotation"] + 30), 2 / (np.sqrt(3) * 2.46))
    mos2 = _spot_positions(np.radians(30), 2 / (np.sqrt(3) * 3.16))
    removed = 1 - _spot_power(filtered[1], 0.22, graphene) / _spot_power(images[1], 0.22, graphene)
    kept = _spot_power(filtered[1], 0.22, mos2) / _spot_power(images[1], 0.22, mos2)
    assert removed >= 0.99
    assert kept >= 0.95


def test_local_normalize():
    rng = np.random.default_rng(0)
    images = rng.normal(5.0, 2.0, (3, 96, 96)) + np.linspace(0, 10, 96)[None, None, :]
    out = local_normalize(images, 0.2, 12.0)
    assert out.shape == images.shape and out.dtype == np.float32
    assert abs(out.mean()) < 0.1 and 0.8 < out.std() < 1.2
    with pytest.raises(ValueError, match="NaN"):
        local_normalize(np.full((3, 8, 8), np.nan), 0.2)


def test_resample_keeps_origin():
    y, x = np.mgrid[0:100, 0:100] * 0.3
    image = np.exp(-((y - 12.0) ** 2 + (x - 18.0) ** 2) / 2.0)
    out = resample(image, 0.3, 0.2)
    r, c = np.unravel_index(np.argmax(out), out.shape)
    assert (r * 0.2, c * 0.2) == pytest.approx((12.0, 18.0), abs=0.2)
    assert out.shape == (int(99 * 0.3 / 0.2) + 1,) * 2


@pytest.mark.parametrize("shape, sigma", [((2, 40, 70), 10.0), ((1, 600, 520), 30.0), ((1, 600, 520), 3.0)])
def test_gaussian_blur_matches_scipy(shape, sigma):
    from scipy.ndimage import gaussian_filter

    from napari_hrtem.filters import gaussian_blur

    x = np.random.default_rng(0).normal(size=shape) + np.linspace(0, 5, shape[2])
    expected = gaussian_filter(x, (0, sigma, sigma), mode="reflect")
    np.testing.assert_allclose(gaussian_blur(x, sigma), expected, atol=5e-4)
