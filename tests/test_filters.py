from pathlib import Path

import numpy as np
import pytest

from napari_hrtem.analysis.filters import (
    _spot_positions,
    local_normalize,
    resample,
    support_filter,
)


def _spot_power(image, sampling, spots, radius=0.02):
    f = np.abs(np.fft.fft2(image - image.mean())) ** 2
    qy = np.fft.fftfreq(image.shape[0], sampling)[:, None]
    qx = np.fft.fftfreq(image.shape[1], sampling)[None, :]
    mask = np.zeros(image.shape, bool)
    for sy, sx in spots:
        mask |= np.hypot(qy - sy, qx - sx) < radius
    return f[mask].sum()


def test_support_filter_removes_graphene_keeps_mos2():
    from napari_hrtem.simulation.imaging import MicroscopeParameters, exit_wave, focal_series
    from napari_hrtem.simulation.structures import make_mos2_sample

    sample = make_mos2_sample(256 * 0.22, graphene_layers=2, rotation=0.0, seed=3, flake_fraction=1.4)
    wave = exit_wave(sample, (256, 256), 0.22, phonon_configs=1)
    images = focal_series(wave, MicroscopeParameters(), (256, 256), noise=False)
    result = support_filter(images, 0.22)
    assert result.filtered and len(result.domains) == 1
    filtered = result.images
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


@pytest.mark.parametrize(
    "shape, sigma",
    [((2, 40, 70), 10.0), ((3, 128, 128), 60.0), ((1, 97, 300), 150.0), ((1, 600, 520), 30.0), ((1, 600, 520), 3.0)],
)
def test_gaussian_blur_matches_scipy(shape, sigma):
    from scipy.ndimage import gaussian_filter

    from napari_hrtem.analysis.filters import gaussian_blur

    x = np.random.default_rng(0).normal(size=shape) + np.linspace(0, 5, shape[2])
    expected = gaussian_filter(x, (0, sigma, sigma), mode="reflect")
    np.testing.assert_allclose(gaussian_blur(x, sigma), expected, atol=5e-4)
    # float32 in, float32 out (the local normalization of large images), to float32 rounding
    got32 = gaussian_blur(x.astype(np.float32), sigma)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, atol=5e-4)


@pytest.fixture(scope="module")
def two_domain_series():
    """MoS2 on two graphene layers rotated 17° from each other (two six-fold spot sets), 256² px."""
    from ase import Atoms

    from napari_hrtem.simulation.imaging import MicroscopeParameters, exit_wave, focal_series
    from napari_hrtem.simulation.structures import _graphene_layers, make_mos2_sample

    sample = make_mos2_sample(256 * 0.22, graphene_layers=1, rotation=7.0, seed=5, flake_fraction=1.4)
    extent = sample.extent[::-1]
    second = (sample.params["support_rotation"] + 17.0) % 60
    carbon = _graphene_layers(1, extent, second, margin=0.5)
    z_top = sample.atoms.positions[np.array(sample.atoms.get_chemical_symbols()) == "C", 2].max()
    carbon[:, 2] = z_top + 3.35  # one layer below the first along the beam
    atoms = sample.atoms + Atoms("C" * len(carbon), positions=carbon)
    atoms.cell[2, 2] = max(atoms.cell[2, 2], carbon[0, 2] + 4.0)
    sample.atoms = atoms
    wave = exit_wave(sample, (256, 256), 0.22, phonon_configs=1)
    images = focal_series(wave, MicroscopeParameters(), (256, 256), noise=False)
    return images, [sample.params["support_rotation"], second], sample.params["rotation"]


def _angle_error(a, b):
    """Distance of two six-fold directions in degrees (mod 60°)."""
    d = (a - b) % 60
    return min(d, 60 - d)


def test_support_filter_two_rotated_graphene_layers(two_domain_series):
    """Both rotated layers are found and filtered (issue 5: >= 99 % removed, >= 95 % kept)."""
    from napari_hrtem.analysis.filters import detect_support_domains

    images, support_angles, mos2_angle = two_domain_series
    domains = detect_support_domains(images, 0.22)
    assert len(domains) == 2
    found = sorted(d.angle for d in domains)
    expected = sorted((a + 30) % 60 for a in support_angles)
    for f in found:
        assert min(_angle_error(f, e) for e in expected) < 1.0  # a frequency pixel is 2.2° here
    assert _angle_error(found[0], found[1]) > 10
    result = support_filter(images, 0.22)
    filtered = result.images
    assert len(result.angles) == 2 and result.mask is not None and result.mask.shape == (256, 256)
    q1 = 2 / (np.sqrt(3) * 2.46)
    graphene = np.concatenate([_spot_positions(np.radians(a + 30), q1) for a in support_angles])
    mos2 = _spot_positions(np.radians(mos2_angle + 30), 2 / (np.sqrt(3) * 3.16))
    for k in range(len(images)):
        removed = 1 - _spot_power(filtered[k], 0.22, graphene) / _spot_power(images[k], 0.22, graphene)
        kept = _spot_power(filtered[k], 0.22, mos2) / _spot_power(images[k], 0.22, mos2)
        assert removed >= 0.99, (k, removed)
        assert kept >= 0.95, (k, kept)


def test_support_filter_bare_mos2_finds_no_support():
    """Without graphene no domain is found; the image comes back unchanged."""
    from napari_hrtem.analysis.filters import detect_support_domains

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256] * 0.22
    q = 2 / (np.sqrt(3) * 3.16)
    image = sum(np.cos(2 * np.pi * q * (np.cos(a) * x + np.sin(a) * y)) for a in np.radians([10, 70, 130]))
    image = image + rng.normal(0, 0.5, image.shape)
    assert detect_support_domains(image, 0.22) == []
    result = support_filter(image, 0.22)
    assert not result.filtered and result.domains == () and result.mask is None
    assert result.message == "no support lattice found: images unchanged"
    np.testing.assert_array_equal(result.images, image.astype(np.float32))


def test_support_filter_mask_is_friedel_symmetric_and_matches_dense():
    """The windowed half-plane mask equals the dense full-plane product of Fermi masks."""
    from napari_hrtem.analysis.filters import _fermi_mask_half, _full_mask

    h, w, s = 200, 181, 0.2
    spots = _spot_positions(0.3, 0.47)
    half = _fermi_mask_half((h, w), s, spots, 0.04, 0.01)
    full = _full_mask(half, w)
    qy = np.fft.fftfreq(h, s)[:, None]
    qx = np.fft.fftfreq(w, s)[None, :]
    dense = np.ones((h, w))
    for sy, sx in spots:
        dense *= 1 - 1 / (1 + np.exp(np.clip((np.hypot(qy - sy, qx - sx) - 0.04) / 0.01, -50, 50)))
    np.testing.assert_allclose(full, dense, atol=1e-6)


def test_filter_widget_layers_show_diffractogram_mask_and_domains():
    """The Support filter widget's work: filtered series, diffractogram | mask | filtered, status line."""
    from napari_hrtem.plugin.widgets.filter import PANEL_GAP, filter_layers, filter_status

    y, x = np.mgrid[0:200, 0:200] * 0.2
    q1 = 2 / (np.sqrt(3) * 2.46)
    image = np.zeros_like(x)
    for rotation in (5.0, 25.0):  # two graphene domains: first-order spots at 35° and 55°
        for order, offset in ((1.0, 0.0), (np.sqrt(3), 30.0)):  # and second-order spots, 30° on
            for a in np.radians(rotation + 30 + offset + np.array([0, 60, 120])):
                image += np.cos(2 * np.pi * order * q1 * (np.cos(a) * x + np.sin(a) * y))
    # with a little noise: the ring's background and spread are then the noise's, not the leakage's
    noisy = np.stack([image, image, image]) + np.random.default_rng(0).normal(0, 1, (3, 200, 200))
    series = noisy.astype(np.float32) + 5
    tuples = filter_layers(series, 0.2, 2.46, 0.04, "series", {"sampling": 0.2})
    (filtered, meta, kind), (stack, stack_meta, _) = tuples
    assert filtered.shape == (3, 200, 200) and kind == "image"
    # one 2D layer in Å⁻¹: before | mask | after side by side
    assert stack.shape == (200, 3 * 200 + 2 * PANEL_GAP) and "mask" in stack_meta["name"]
    assert "(Å⁻¹)" in stack_meta["name"] and stack_meta["metadata"]["space"] == "reciprocal"
    assert stack_meta["scale"] == pytest.approx((1 / (200 * 0.2), 1 / (200 * 0.2)))
    mask = stack[:, 200 + PANEL_GAP : 400 + PANEL_GAP]
    # the mask is ~0 at the spots of both domains (the middle panel is the fftshifted mask, 200x200 px)
    for a in np.radians([35.0, 55.0, 95.0, 115.0]):
        row, col = 100 + q1 * np.sin(a) * 0.2 * 200, 100 + q1 * np.cos(a) * 0.2 * 200
        assert mask[round(row), round(col)] < 0.25  # nearest pixel, up to 0.7 px off the spot
    assert np.std(filtered[0]) < 0.8 * np.std(image)  # (the cosines leak: they are not periodic in the frame)
    status = filter_status(meta["metadata"]["support_filter"])
    assert status.startswith("filtered 2 graphene domains: ") and "35.0° (a = 2.46 Å, " in status
    assert "55.0° (a = 2.46 Å, " in status and meta["metadata"]["support_filter"]["filtered"]
    # a series without a support lattice: unchanged, said so, the mask all ones
    noise = np.random.default_rng(1).normal(5, 1, (3, 200, 200)).astype(np.float32)
    (unchanged, meta, _), (stack, _, _) = filter_layers(noise, 0.2, 2.46, 0.04, "noise", {"sampling": 0.2})
    np.testing.assert_array_equal(unchanged, noise)
    assert np.all(stack[:, 200 + PANEL_GAP : 400 + PANEL_GAP] == 1)
    assert filter_status(meta["metadata"]["support_filter"]) == "no support lattice found: images unchanged"


def test_local_normalize_large_float32_matches_float64_reference():
    """Above 1024² px the normalization runs in float32, one image at a time: same result."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    images = (rng.normal(5.0, 2.0, (2, 1100, 1030)) + np.linspace(0, 10, 1030)).astype(np.float32)
    out = local_normalize(images, 1.0, 12.0)
    x = images.astype(np.float64)
    mean = gaussian_filter(x, (0, 12, 12), mode="reflect")
    scale = np.sqrt(gaussian_filter((x - mean) ** 2, (0, 12, 12), mode="reflect")).mean(axis=0)
    expected = (x - mean.mean(axis=0)) / scale
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=2e-3)


# tests/ is in <clone>/tests and the shared data in <clone>/../shared/realdata (or further up, for a worktree)
REALDATA = next(
    (p / "shared" / "realdata" for p in Path(__file__).resolve().parents if (p / "shared" / "realdata").is_dir()),
    Path(__file__).resolve().parents[2] / "shared" / "realdata",
)
needs_realdata = pytest.mark.skipif(
    not REALDATA.is_dir(), reason="../shared/realdata not present (a user's clone has no ../shared)"
)


@needs_realdata
@pytest.mark.parametrize("name", ["focal_series_img07.dm3", "focal_series_img08.dm3", "focal_series_img09.dm3"])
def test_support_filter_real_crystal_without_graphene_is_unchanged(name):
    """A real 300 kV crystal with a vacuum region and no graphene: no domain, bit-identical images."""
    from napari_hrtem.io.focal_series import read_image_file

    fs = read_image_file(REALDATA / name)
    result = support_filter(fs.images, fs.sampling)
    assert not result.filtered and result.domains == ()
    assert result.message == "no support lattice found: images unchanged"
    np.testing.assert_array_equal(result.images, fs.images)
    # its reflections near the graphene ring are candidates, but none is six-fold and confirmed
    assert result.rejected


@needs_realdata
def test_support_filter_real_graphene_80kv():
    """Real monolayer graphene (80 kV, 0.1195 Å/px from the DM tags): one domain, a within 1 %."""
    from napari_hrtem.io.focal_series import read_image_file

    fs = read_image_file(REALDATA / "graphene_80kv_etem.tif")
    assert fs.sampling == pytest.approx(0.1195, rel=1e-3)
    result = support_filter(fs.images, fs.sampling)
    assert result.filtered and len(result.domains) == 1
    domain = result.domains[0]
    assert domain.lattice_constant == pytest.approx(2.46, rel=0.01)
    assert domain.significance > 50 and domain.confirmation > 50


def test_support_filter_pure_noise_is_unchanged():
    rng = np.random.default_rng(3)
    for images, sampling in ((rng.normal(size=(3, 256, 256)), 0.22), (rng.normal(size=(512, 512)), 0.2842)):
        images = images.astype(np.float32)
        result = support_filter(images, sampling)
        assert not result.filtered and result.domains == ()
        np.testing.assert_array_equal(result.images, images)
        assert result.images is not images  # a copy, not the caller's array


@pytest.mark.parametrize(("layers", "seed"), [(0, 1), (1, 2), (2, 2), (4, 1), (6, 2)])
def test_support_filter_simulated_graphene_layers(layers, seed):
    """MoS2 on 1-6 AB-stacked graphene layers (one rotation, ``support_rotation``): one domain at
    the right angle (±1°) with a = 2.46 Å (±1 %); bare MoS2: none, unchanged. Seeds 2 of 1 and 2
    layers have their first-order graphene spots in a CTF gap: found on the second order."""
    import napari_hrtem

    sim = napari_hrtem.simulate(
        size=256, sampling=0.22, graphene_layers=layers, seed=100 * layers + seed, phonon_configs=1
    )
    images = np.asarray(sim.series.images)
    result = support_filter(images, 0.22)
    if layers == 0:
        assert not result.filtered and result.domains == ()
        np.testing.assert_array_equal(result.images, images.astype(np.float32))
        return
    assert result.filtered and len(result.domains) == 1, result.message
    domain = result.domains[0]
    expected = (sim.sample.params["support_rotation"] + 30) % 60  # first-order spots at θ + 30°
    assert _angle_error(domain.angle, expected) < 1.0
    assert domain.lattice_constant == pytest.approx(2.46, rel=0.01)
    assert domain.significance >= 10 and domain.confirmation >= 10
    assert result.message.startswith("filtered 1 graphene domain: ")


def test_preprocess_leaves_support_free_series_to_normalization():
    """preprocess without a support lattice = local normalization of the raw series."""
    from napari_hrtem.analysis.filters import preprocess

    images = np.random.default_rng(4).normal(10, 1, (3, 128, 128)).astype(np.float32)
    np.testing.assert_array_equal(preprocess(images, 0.22), local_normalize(images, 0.22))
