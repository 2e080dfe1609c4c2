"""Issue 17, item 1 (microscope and data pipeline): the beam energy applied everywhere, the parameter
file's multislice settings, one MTF form, the camera's fixed pattern, the wide parameter file."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_hrtem.simulation.imaging import (
    MicroscopeParameters,
    draw_microscope_parameters,
    exit_wave,
    fixed_pattern,
    focal_series,
    mtf,
)
from napari_hrtem.simulation.parameters import (
    CODE_SIMULATION_DEFAULTS,
    WIDE_PARAMETER_FILE,
    load_parameter_ranges,
    simulation_settings,
)

SIZE = 64  # px: a ~14 Å cell, one static configuration, 0.1 Å wave grid: a fraction of a second per wave
FAST = dict(phonon_configs=1, wave_sampling=0.1)


def _direct_item(seed: int, energy: float) -> tuple[np.ndarray, MicroscopeParameters]:
    """simulate_dataset's first focal series, made step by step with exit_wave and focal_series."""
    from napari_hrtem.simulation.structures import random_sample

    rng = np.random.default_rng(seed)
    sampling = float(rng.uniform(0.215, 0.235))
    sample = random_sample((SIZE * sampling, SIZE * sampling), rng)
    wave = exit_wave(
        sample,
        (SIZE, SIZE),
        sampling,
        energy=energy,
        max_wave_sampling=0.1,
        slice_thickness=0.5,
        phonon_configs=1,
        temperature=float(rng.uniform(100, 600)),
        seed=int(rng.integers(2**31)),
    )
    params = dataclasses.replace(draw_microscope_parameters(rng), energy=energy)
    return focal_series(wave, params, (SIZE, SIZE), rng=rng), params


def test_dataset_item_is_simulated_at_the_asked_energy():
    """An 80 kV item equals exit_wave + focal_series at 80 kV with the same seed, differs from 50 kV,
    records 80 kV; a parameter file's microscope.energy is what is simulated."""
    from napari_hrtem.training.datasets import simulate_dataset

    item = next(simulate_dataset(1, shape=(SIZE, SIZE), images_per_sample=1, seed=3, energy=80e3, **FAST))
    direct, params = _direct_item(3, 80e3)
    np.testing.assert_allclose(item["raw"], direct, rtol=1e-6, atol=1e-6)
    assert item["params"]["energy"] == 80e3 == params.energy
    at50 = next(simulate_dataset(1, shape=(SIZE, SIZE), images_per_sample=1, seed=3, **FAST))
    assert at50["params"]["energy"] == 50e3
    assert np.abs(at50["raw"] - item["raw"]).max() > 0.05  # another wavelength: other images
    # the energy of a parameter file (no explicit one): the same 80 kV item
    ranges = load_parameter_ranges()
    ranges["microscope"]["energy"] = 80e3
    from_file = next(
        simulate_dataset(1, shape=(SIZE, SIZE), images_per_sample=1, seed=3, ranges=ranges, slice_thickness=0.5, **FAST)
    )
    np.testing.assert_array_equal(from_file["raw"], item["raw"])


def test_focal_series_refuses_another_energy_than_the_wave(tiny_wave):
    with pytest.raises(ValueError, match="80 kV differs from the exit wave's 50 kV"):
        focal_series(tiny_wave, MicroscopeParameters(energy=80e3), (128, 128), noise=False)


def test_simulation_settings_rule():
    """Explicit value > parameter file > the code's defaults; the explicit one is written into the record."""
    assert simulation_settings() == (CODE_SIMULATION_DEFAULTS, None)
    table = load_parameter_ranges()
    settings, recorded = simulation_settings(table)
    assert settings == dict(energy=50e3, phonon_configs=10, wave_sampling=0.1, slice_thickness=0.25)  # Table 1
    assert recorded == table and recorded is not table
    table["microscope"]["energy"] = 80e3
    settings, recorded = simulation_settings(table, energy=200e3, phonon_configs=2)
    assert settings["energy"] == 200e3 and settings["phonon_configs"] == 2 and settings["slice_thickness"] == 0.25
    assert recorded["microscope"]["energy"] == 200e3 and recorded["simulation"]["phonon_configs"] == 2
    assert table["microscope"]["energy"] == 80e3  # the caller's ranges are not changed
    with pytest.raises(ValueError, match="slice_thickness"):
        simulation_settings(slice_thickness=0.0)


def test_store_sample_uses_the_config_energy_and_multislice(tmp_path):
    """simulate-dataset: the --config file's energy and simulation.* are simulated and recorded;
    an explicit --energy replaces the file's, in the record too."""
    from napari_hrtem.training.datastore import make_recipe, simulate_sample

    ranges = load_parameter_ranges()
    ranges["microscope"]["energy"] = 80e3
    recipe = make_recipe(image_epochs=1, shape=(SIZE, SIZE), config=ranges, phonon_configs=1)
    assert recipe["energy"] == 80e3 and recipe["slice_thickness"] == 0.25 and recipe["wave_sampling"] == 0.1
    assert recipe["config"]["simulation"]["phonon_configs"] == 1  # the explicit value, recorded
    result = simulate_sample(0, recipe)
    assert result["attrs"]["exit_wave"]["energy"] == 80e3
    assert result["attrs"]["exit_wave"]["slice_thickness"] == 0.25
    assert [m["energy"] for m in result["attrs"]["microscope"]] == [80e3]
    explicit = make_recipe(shape=(SIZE, SIZE), config=ranges, energy=200e3)
    assert explicit["energy"] == 200e3 and explicit["config"]["microscope"]["energy"] == 200e3
    plain = make_recipe(shape=(SIZE, SIZE))  # no file: what the shipped networks were trained on
    assert (plain["energy"], plain["phonon_configs"], plain["wave_sampling"], plain["slice_thickness"]) == (
        50e3,
        4,
        0.05,
        0.5,
    )


def test_cli_dataset_energy_option(tmp_path):
    from napari_hrtem.cli import main
    from napari_hrtem.training.datasets import load_dataset

    out = tmp_path / "d.npz"
    argv = ["dataset", str(out), "--samples", "1", "--images-per-sample", "1", "--size", str(SIZE)]
    assert main([*argv, "--phonon-configs", "1", "--energy", "80"]) == 0
    data = load_dataset(out)
    assert data["recipe"]["energy"] == 80e3 and [p["energy"] for p in data["params"]] == [80e3]
    assert main([*argv, "--energy", "-3"]) == 2


def test_wave_bank_images_at_the_bank_energy():
    """draw_batch images an 80 kV bank at 80 kV (Table 1 draws say 50 kV) as focal_series does."""
    import torch

    from napari_hrtem.simulation.structures import make_mos2_sample
    from napari_hrtem.simulation.synthesis import WaveBank, band_limit, draw_batch

    sample = make_mos2_sample(SIZE * 0.22, graphene_layers=0, seed=2)
    wave = exit_wave(sample, (SIZE, SIZE), 0.22, energy=80e3, phonon_configs=1)
    bank = WaveBank([band_limit(wave)], (SIZE, SIZE), device="cpu")
    images, _, params = draw_batch(bank, np.random.default_rng(0), 2, noise=False)
    assert all(p.energy == 80e3 for p in params)
    for item, p in zip(images.numpy(), params):
        ref = focal_series(wave, p, (SIZE, SIZE), noise=False)
        assert np.abs(item - ref).max() / np.abs(ref).max() < 1e-3
    assert isinstance(images, torch.Tensor)


@pytest.mark.parametrize("c1,c2,c3", [(0.4, 0.15, 1.2), (0.2, 0.1, 1.8), (0.6, 0.2, 0.6)])
def test_mtf_limits(c1, c2, c3):
    """MTF(0) = 1, MTF(q_N) = (1 - c1)/(1 + (2 c2)^-c3) + c1, MTF → c1 far beyond Nyquist, monotone."""
    m = mtf((64, 64), c1, c2, c3)
    assert m[0, 0] == pytest.approx(1.0)
    at_nyquist = (1 - c1) / (1 + (1 / (2 * c2)) ** c3) + c1
    assert m[0, 32] == pytest.approx(at_nyquist) and m[32, 0] == pytest.approx(at_nyquist)
    assert np.all(np.diff(m[0, :33]) < 0) and m.min() > c1
    # half-way between 1 and c1 at q = 2 c2 q_N = c2 cycles/px (on the grid for c2 = 0.125: column 8 of 64)
    assert mtf((64, 64), c1, 0.125, c3)[0, 8] == pytest.approx((1 + c1) / 2)
    assert np.allclose(mtf((64, 64), 1.0, c2, c3), 1.0)  # c1 = 1: a perfect detector


def test_camera_fixed_pattern_is_the_same_in_every_frame(tiny_wave):
    """A 5 % gain map and a 0.02 offset map: the same in the three images, of the asked size."""
    shape = (128, 128)
    ideal = dict(dose=1e12, readout=0.0, mtf_c1=1.0)  # no visible shot noise, flat MTF: only the pattern
    clean = focal_series(tiny_wave, MicroscopeParameters(**ideal), shape, noise=False)
    gained = focal_series(
        tiny_wave, MicroscopeParameters(**ideal, gain_noise=0.05), shape, rng=np.random.default_rng(1)
    )
    gain = gained / clean  # (3, H, W): the gain map seen in each frame
    assert np.abs(gain[1] - gain[0]).max() < 1e-3 and np.abs(gain[2] - gain[0]).max() < 1e-3
    assert gain[0].mean() == pytest.approx(1.0, abs=0.01) and gain[0].std() == pytest.approx(0.05, rel=0.05)
    dark = focal_series(tiny_wave, MicroscopeParameters(**ideal, dark_noise=0.02), shape, rng=np.random.default_rng(1))
    offset = dark - clean
    assert np.abs(offset[2] - offset[0]).max() < 1e-3 and offset[0].std() == pytest.approx(0.02, rel=0.05)
    # a new series gets a new pattern
    again = focal_series(tiny_wave, MicroscopeParameters(**ideal, gain_noise=0.05), shape, rng=np.random.default_rng(2))
    assert np.corrcoef((again[0] / clean[0]).ravel(), gain[0].ravel())[0, 1] < 0.1
    # off (the default): nothing drawn, so every seeded series is as before
    rng = np.random.default_rng(4)
    state = rng.bit_generator.state
    assert fixed_pattern(shape, MicroscopeParameters(), rng) == (None, None) and rng.bit_generator.state == state
    with pytest.raises(ValueError, match="gain_noise"):
        fixed_pattern(shape, MicroscopeParameters(gain_noise=-0.1), rng)


def test_torch_synthesis_fixed_pattern(tiny_wave):
    import torch

    from napari_hrtem.simulation.synthesis import WaveBank, band_limit

    bank = WaveBank([band_limit(tiny_wave)], (128, 128), device="cpu")
    ideal = MicroscopeParameters(dose=1e12, readout=0.0, mtf_c1=1.0)
    clean = bank.synthesize([0], [ideal], noise=False)[0].numpy()
    g = torch.Generator().manual_seed(0)
    out = bank.synthesize([0, 0], [dataclasses.replace(ideal, gain_noise=0.05)] * 2, generator=g).numpy()
    gain = out / clean
    assert np.abs(gain[0, 2] - gain[0, 0]).max() < 1e-3 and gain[0, 0].std() == pytest.approx(0.05, rel=0.05)
    assert np.corrcoef(gain[0, 0].ravel(), gain[1, 0].ravel())[0, 1] < 0.1  # one map per series


def test_table1_default_draws_have_no_fixed_pattern():
    rng = np.random.default_rng(0)
    ranges = load_parameter_ranges()
    assert ranges["microscope"]["gain_noise"] == [0.0, 0.0] == ranges["microscope"]["dark_noise"]
    p = draw_microscope_parameters(rng, 3, ranges)
    assert p.gain_noise == 0.0 and p.dark_noise == 0.0


def test_wide_parameter_file_loads_and_draws_in_range():
    wide = load_parameter_ranges(WIDE_PARAMETER_FILE)
    table = load_parameter_ranges()
    m = wide["microscope"]
    assert m["defocus_step"] == [30.0, 100.0] and m["energy"] == 80e3
    assert table["microscope"]["defocus_step"] == [49.0, 51.0] and table["microscope"]["energy"] == 50e3  # thesis
    assert simulation_settings(wide)[0]["energy"] == 80e3
    rng = np.random.default_rng(0)
    for _ in range(100):
        p = draw_microscope_parameters(rng, 3, wide)
        assert all(30 <= s <= 100 for s in p.defocus_steps) and -250 <= p.defocus <= 150
        assert 5 <= p.focal_spread <= 20 and 0.05 <= p.blur <= 0.5 and 10**2 <= p.dose <= 1e5
        assert 0 <= p.gain_noise <= 0.03 and 0 <= p.dark_noise <= 0.01 and p.energy == 80e3


def test_store_made_before_slice_thickness_was_recorded_resumes(tmp_path):
    """An older store's recipe has no slice_thickness: it was 0.5 Å, so the same command resumes it."""
    import zarr

    from napari_hrtem.training.datastore import _open_root, make_recipe

    old = make_recipe(shape=(SIZE, SIZE))
    _open_root(tmp_path / "d.zarr", old, 1)
    del old["slice_thickness"]
    zarr.open_group(str(tmp_path / "d.zarr"), mode="a").attrs["recipe"] = old  # as an older version wrote it
    _open_root(tmp_path / "d.zarr", make_recipe(shape=(SIZE, SIZE)), 1)  # no error: the same settings
    with pytest.raises(ValueError, match="slice_thickness"):
        _open_root(tmp_path / "d.zarr", make_recipe(shape=(SIZE, SIZE), slice_thickness=0.25), 1)


def test_wide_parameter_file_specimen_and_vibrations():
    """wide.yaml switches on the specimen features of issue 17 and graphene's own Debye temperature;
    the dataset paths hand that table to the multislice (exit_wave_settings)."""
    from napari_hrtem.simulation.imaging import exit_wave_settings
    from napari_hrtem.simulation.structures import random_sample

    wide = load_parameter_ranges(WIDE_PARAMETER_FILE)
    assert exit_wave_settings(wide)["debye_temperature"] == {"default": 580.0, "Mo": 580.0, "S": 580.0, "C": 2312.0}
    assert exit_wave_settings()["debye_temperature"] == 580.0  # the thesis' file: one θ_D for all
    rng = np.random.default_rng(3)
    thesis = random_sample(30.0, np.random.default_rng(3))
    samples = [random_sample(30.0, rng, ranges=wide) for _ in range(6)]
    carbon = [int(np.sum(s.atoms.numbers == 6)) for s in samples]
    assert max(carbon) > int(np.sum(thesis.atoms.numbers == 6))  # amorphous carbon on some samples
    for s in samples:  # contamination is never a site to find: the sites stay MoS2 columns
        assert set(np.unique(s.classes)) <= {0, 1, 2}
