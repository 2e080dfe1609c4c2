from pathlib import Path

import numpy as np
import pytest

from napari_hrtem.simulation.imaging import (
    MicroscopeParameters,
    debye_msd,
    draw_microscope_parameters,
    exit_wave,
    focal_series,
    mtf,
)


def test_debye_amplitude_of_sulphur():
    # thesis eq. 2.1.25 with θ_D = 580 K and the S mass: 0.0030 Å² at 300 K
    assert debye_msd(32.06, 300.0) == pytest.approx(0.0030, abs=5e-5)
    assert debye_msd(32.06, 600.0) > debye_msd(32.06, 100.0)


def test_focal_series_shape_and_order(tiny_series):
    images, sampling, _ = tiny_series
    assert images.shape == (3, 128, 128) and images.dtype == np.float32
    assert np.all(np.isfinite(images))
    assert 0.8 < images.mean() < 1.2  # in units of the incident beam
    params = MicroscopeParameters(defocus=-100.0, defocus_steps=(50.0, 50.0))
    np.testing.assert_allclose(params.defoci, [-100.0, -50.0, 0.0])


def test_axes_are_y_x():
    """A single Mo column at (y, x) = (6, 20) Å shows up at row 6/s, column 20/s, not transposed."""
    from ase import Atoms

    from napari_hrtem.simulation.structures import Sample

    s = 0.25
    atoms = Atoms("Mo", positions=[[20.0, 6.0, 2.0]], cell=[32.0, 32.0, 4.0], pbc=True)
    sample = Sample(atoms=atoms, sites=np.array([[6.0, 20.0]]), classes=np.array([0]), extent=(32.0, 32.0))
    wave = exit_wave(sample, (128, 128), s, phonon_configs=1)
    assert wave.array.shape == (640, 640) and wave.sampling <= 0.05
    from scipy.ndimage import center_of_mass

    scattered = np.abs(wave.array - 1) ** 2
    r, c = center_of_mass(scattered)
    assert (r * wave.sampling, c * wave.sampling) == pytest.approx((6.0, 20.0), abs=0.05)
    # Near focus the column is dark in the noise-free image.
    image = focal_series(
        wave, MicroscopeParameters(defocus=0.0, defocus_steps=(), focal_spread=0, blur=0), (128, 128), noise=False
    )[0]
    r, c = np.unravel_index(np.argmax(np.abs(image - 1)), image.shape)
    assert (r * s, c * s) == pytest.approx((6.0, 20.0), abs=2 * s)


def test_dose_noise_scales(tiny_wave):
    low = MicroscopeParameters(dose=10**2.5, readout=0, mtf_c1=1.0)  # flat MTF: noise only
    high = MicroscopeParameters(dose=1e5, readout=0, mtf_c1=1.0)
    clean = focal_series(tiny_wave, high, (128, 128), noise=False)
    err_low = np.std(focal_series(tiny_wave, low, (128, 128), rng=np.random.default_rng(1)) - clean)
    err_high = np.std(focal_series(tiny_wave, high, (128, 128), rng=np.random.default_rng(1)) - clean)
    assert err_low > 5 * err_high


def test_table1_ranges_and_mtf():
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = draw_microscope_parameters(rng)
        assert -150 <= p.defocus <= 50 and all(49 <= d <= 51 for d in p.defocus_steps)
        assert abs(p.Cs) <= 1.5e5 and 0 <= p.C12 <= 25 and 0 <= p.C21 <= 600
        assert 10**2.5 <= p.dose <= 1e5 and 5 <= p.focal_spread <= 10
    m = mtf((64, 64), 0.4, 0.15, 1.2)
    assert m[0, 0] == pytest.approx(1.0) and m.min() > 0.4 and m[0, 32] < m[0, 1]


SIMULATE_AND_HASH = """
import hashlib, json
from napari_hrtem.simulation.imaging import simulate_focal_series
from napari_hrtem.simulation.structures import make_mos2_sample
sample = make_mos2_sample(64 * 0.22, graphene_layers=1, seed=5)
images, params = simulate_focal_series(sample, (64, 64), 0.22, seed=9, phonon_configs=2)
print(json.dumps([hashlib.sha256(sample.sites.tobytes()).hexdigest(),
                  hashlib.sha256(images.tobytes()).hexdigest(), params.to_dict()]))
"""


def test_simulation_is_bit_identical_with_a_seed_across_processes():
    """The same seed in two fresh processes gives the same bits (abTEM's default FFTW planning,
    FFTW_MEASURE, chooses algorithms by timing and changed the last bits from run to run)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    runs = [
        subprocess.run(
            [sys.executable, "-c", SIMULATE_AND_HASH], capture_output=True, text=True, env=env, check=True, timeout=600
        )
        .stdout.strip()
        .splitlines()[-1]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_parameter_file_round_trip_and_draws_in_range(tmp_path):
    from napari_hrtem.simulation.imaging import (
        draw_sampling,
        load_parameter_ranges,
        save_parameter_ranges,
    )
    from napari_hrtem.simulation.vibrations import draw_temperature

    table = load_parameter_ranges()
    m = table["microscope"]  # thesis Table 1 defaults
    assert m["energy"] == 50e3 and m["defocus"] == [-150.0, 50.0] and m["log10_dose"] == [2.5, 5.0]
    assert m["Cs"] == [-1.5e5, 1.5e5] and m["sampling"] == [0.215, 0.235] and m["mtf_c1"] == [0.2, 0.6]
    assert table["vibrations"] == {"debye_temperature": 580.0, "debye_temperatures": {}, "temperature": [100.0, 600.0]}
    from napari_hrtem.simulation.imaging import exit_wave_settings

    assert exit_wave_settings(table) == {
        "energy": 50e3,
        "max_wave_sampling": 0.1,
        "slice_thickness": 0.25,
        "phonon_configs": 10,
        "debye_temperature": 580.0,
    }
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"ranges{suffix}"
        save_parameter_ranges(table, path)
        assert load_parameter_ranges(path) == table
    # A partial user file changes only its entries; draws stay in its ranges, for any number of images.
    (tmp_path / "narrow.yaml").write_text("microscope:\n  defocus: [10, 20]\n  C12: 5\n  log10_dose: [3, 3.5]\n")
    narrow = load_parameter_ranges(tmp_path / "narrow.yaml")
    assert narrow["microscope"]["blur"] == m["blur"]
    rng = np.random.default_rng(1)
    for n in (1, 3, 5):
        p = draw_microscope_parameters(rng, n, narrow)
        assert len(p.defoci) == n and 10 <= p.defocus <= 20 and p.C12 == 5 and 1e3 <= p.dose <= 10**3.5
        records = p.image_records()
        assert [r["defocus_image"] for r in records] == pytest.approx(p.defoci) and records[0]["dose"] == p.dose
    for _ in range(50):
        p = draw_microscope_parameters(rng, 4, table)
        d = p.to_dict()
        for name in ("Cs", "C12", "C21", "focal_spread", "blur", "mtf_c1", "mtf_c2", "mtf_c3", "readout"):
            lo, hi = m[name]
            assert lo <= d[name] <= hi, name
        assert all(49 <= s <= 51 for s in p.defocus_steps) and 10**2.5 <= p.dose <= 1e5
        assert 0 <= p.phi12 <= 2 * np.pi and 0 <= p.phi21 <= 2 * np.pi
        assert 0.215 <= draw_sampling(rng, table) <= 0.235 and 100 <= draw_temperature(rng, table) <= 600


@pytest.mark.parametrize(
    "text,match",
    [
        ("microscope:\n  defocus: [50, -150]\n", "low <= high"),
        ("microscope:\n  defocus_typo: 3\n", "unknown entry"),
        ("optics: {}\n", "unknown section"),
        ("microscope: [1, 2\n", "cannot read"),
    ],
)
def test_bad_parameter_file(tmp_path, text, match):
    from napari_hrtem.simulation.parameters import load_parameter_ranges

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        load_parameter_ranges(path)
    assert "bad.yaml" in str(err.value)
