"""Batched torch synthesis against abTEM and the numpy per-image path, on the project's tiny wave."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_hrtem.simulation.imaging import (
    ExitWave,
    MicroscopeParameters,
    draw_microscope_parameters,
    focal_series,
)
from napari_hrtem.simulation.synthesis import (
    WaveBank,
    band_limit,
    draw_batch,
    envelope_cutoff,
    synthesize,
)

#: Every aberration of the model switched on, the smallest focal spread of Table 1.
ABERRATED = MicroscopeParameters(
    defocus=-80.0,
    defocus_steps=(51.0,),
    Cs=-1.2e5,
    C12=20.0,
    phi12=0.7,
    C21=500.0,
    phi21=2.1,
    focal_spread=5.0,
    blur=0.0,
)


def rel_error(a, b) -> float:
    """Largest deviation relative to the largest reference value."""
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.fixture(scope="module")
def band_limited(tiny_wave):
    return band_limit(tiny_wave)


def test_noise_free_matches_abtem_apply_ctf_intensity(tiny_wave, band_limited):
    """abTEM's own Waves.apply_ctf(CTF).intensity() on the same wave, every aberration + focal spread."""
    import abtem

    waves = abtem.Waves(tiny_wave.array.T, energy=tiny_wave.energy, sampling=tiny_wave.sampling)  # abTEM: (x, y)
    ref = []
    for defocus in ABERRATED.defoci:
        ctf = abtem.CTF(
            energy=tiny_wave.energy,
            focal_spread=ABERRATED.focal_spread,
            aberration_coefficients={
                "C10": -defocus,
                "C12": ABERRATED.C12,
                "phi12": ABERRATED.phi12,
                "C21": ABERRATED.C21,
                "phi21": ABERRATED.phi21,
                "C30": ABERRATED.Cs,
            },
        )
        ref.append(np.asarray(waves.apply_ctf(ctf).intensity().compute(progress_bar=False).array).T)
    ref = np.stack(ref)
    shape = tiny_wave.array.shape  # images on the simulation grid itself: no blur, no resampling
    for wave in (band_limit(tiny_wave, np.inf), band_limited):
        out = synthesize(
            wave.spectrum[None],
            [tiny_wave.sampling],
            [ABERRATED],
            shape,
            energy=wave.energy,
            cutoff=wave.cutoff,
            noise=False,
            device="cpu",
        )[0].numpy()
        assert out.shape == ref.shape and out.dtype == np.float32
        assert rel_error(out, ref) < 1e-3
        assert rel_error(out, ref) < 1e-5  # in fact float32 round-off
    # the aberrations matter: a wrong sign of any of them would be seen
    for field in ("phi12", "phi21", "Cs"):
        flipped = dataclasses.replace(ABERRATED, **{field: -getattr(ABERRATED, field)})
        out = synthesize(
            band_limited.spectrum[None],
            [tiny_wave.sampling],
            [flipped],
            shape,
            energy=tiny_wave.energy,
            noise=False,
            device="cpu",
        )[0].numpy()
        assert rel_error(out, ref) > 1e-2, field


def test_noise_free_matches_numpy_focal_series(tiny_wave, band_limited):
    """The whole noise-free chain (CTF, blur, resampling) as imaging.focal_series."""
    params = [dataclasses.replace(ABERRATED, blur=0.15, defocus_steps=(49.5, 50.5)), MicroscopeParameters()]
    bank = WaveBank([band_limited], (128, 128), device="cpu")
    out = bank.synthesize([0, 0], params, noise=False).numpy()
    assert out.shape == (2, 3, 128, 128)
    for item, p in zip(out, params):
        ref = focal_series(tiny_wave, p, (128, 128), noise=False)
        assert item.shape == ref.shape
        assert rel_error(item, ref) < 1e-3


def test_band_limited_agrees_with_full_grid(tiny_wave, band_limited):
    """Table-1 microscopes: the default storage cut-off changes nothing visible."""
    full = band_limit(tiny_wave, np.inf)
    assert band_limited.spectrum.size * 10 < tiny_wave.array.size  # 167² vs 640²
    assert band_limited.cutoff == pytest.approx(envelope_cutoff(50e3, 5.0, 1e-6))
    rng = np.random.default_rng(5)
    params = [draw_microscope_parameters(rng) for _ in range(3)]
    args = {"energy": tiny_wave.energy, "noise": False, "device": "cpu"}
    a = synthesize(np.repeat(full.spectrum[None], 3, 0), [0.22] * 3, params, (128, 128), **args).numpy()
    b = synthesize(
        np.repeat(band_limited.spectrum[None], 3, 0), [0.22] * 3, params, (128, 128), cutoff=band_limited.cutoff, **args
    ).numpy()
    assert rel_error(b, a) < 1e-4
    # the kept coefficients are the wave's own
    back = band_limited.to_exit_wave(tiny_wave.array.shape)
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(640, 0.044), np.fft.fftfreq(640, 0.044), indexing="ij"))
    inside = k < band_limited.cutoff - 0.05
    kept, own = np.fft.fft2(back.array)[inside], np.fft.fft2(tiny_wave.array)[inside]
    np.testing.assert_allclose(kept, own, rtol=0, atol=1e-6 * np.abs(own).max())  # complex64 round-off


def test_bank_with_mixed_cells_matches_single_waves(tiny_wave):
    """Waves of different cells (so image samplings) padded into one bank give the same images."""
    other = ExitWave(tiny_wave.array, 0.046, tiny_wave.energy, {})  # same array, 5 % larger cell
    waves = [band_limit(tiny_wave), band_limit(other)]
    bank = WaveBank(waves, (128, 128), device="cpu")
    assert bank.samplings.tolist() == pytest.approx([0.22, 0.23])
    params = [MicroscopeParameters(), MicroscopeParameters()]
    together = bank.synthesize([0, 1], params, noise=False).numpy()
    for i, wave in enumerate(waves):
        alone = synthesize(
            wave.spectrum[None],
            [bank.samplings[i].item()],
            params[:1],
            (128, 128),
            energy=wave.energy,
            noise=False,
            device="cpu",
        )[0].numpy()
        assert rel_error(together[i], alone) < 1e-5


def test_poisson_counts_have_dose_times_pixel_area_mean():
    """Vacuum (|ψ|² = 1): counts per pixel are Poisson with mean dose × pixel area."""
    vacuum = band_limit(ExitWave(np.ones((80, 80), np.complex64), 0.1, 50e3, {}))
    dose, sampling = 1000.0, 0.2  # 40 e⁻ per 0.2 × 0.2 Å² pixel
    p = MicroscopeParameters(dose=dose, readout=0.0, mtf_c1=1.0)  # MTF ≡ 1, no readout: bare counts
    g = torch.Generator().manual_seed(0)
    images = synthesize(
        np.repeat(vacuum.spectrum[None], 8, 0),
        [sampling] * 8,
        [p] * 8,
        (40, 40),
        energy=50e3,
        generator=g,
        device="cpu",
    ).numpy()
    counts = images * dose * sampling**2
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)
    expected = dose * sampling**2
    n = counts.size
    assert abs(counts.mean() - expected) < 5 * np.sqrt(expected / n)
    assert counts.var() == pytest.approx(expected, rel=0.05)
    # with the MTF and readout the mean intensity stays the vacuum's
    p = MicroscopeParameters(dose=dose)
    images = synthesize(
        np.repeat(vacuum.spectrum[None], 8, 0),
        [sampling] * 8,
        [p] * 8,
        (40, 40),
        energy=50e3,
        generator=g,
        device="cpu",
    ).numpy()
    assert images.mean() == pytest.approx(1.0, abs=5 / np.sqrt(expected * n))


def test_draw_batch_is_deterministic_with_a_seed(band_limited):
    bank = WaveBank([band_limited], (128, 128), device="cpu")
    a, ia, pa = draw_batch(bank, np.random.default_rng(3), 4)
    b, ib, pb = draw_batch(bank, np.random.default_rng(3), 4)
    c, _, _ = draw_batch(bank, np.random.default_rng(4), 4)
    assert a.shape == (4, 3, 128, 128) and a.dtype == torch.float32
    assert torch.equal(a, b) and np.array_equal(ia, ib) and pa == pb
    assert not torch.equal(a, c)
    assert len({p.defocus for p in pa}) == 4  # fresh microscope per item
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(bank.synthesize([0], pa[:1], generator=g1), bank.synthesize([0], pa[:1], generator=g2))


def test_clear_errors(band_limited):
    bank = WaveBank([band_limited], (128, 128), device="cpu")
    with pytest.raises(ValueError, match="focal spread"):
        bank.synthesize([0], [MicroscopeParameters(focal_spread=1.0)])
    with pytest.raises(ValueError, match="energy"):
        bank.synthesize([0], [MicroscopeParameters(energy=80e3)])
    with pytest.raises(ValueError, match="different lengths"):
        bank.synthesize([0, 0], [MicroscopeParameters(), MicroscopeParameters(defocus_steps=(50.0,))])
    with pytest.raises(ValueError, match="does not fit"):
        WaveBank([band_limited], (128, 100), device="cpu")
