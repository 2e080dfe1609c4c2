import numpy as np
import pytest

from napari_hrtem.simulation.vibrations import (
    CoordinationTable,
    coordination_numbers,
    coordination_table_from_trajectory,
    debye_msd,
    debye_sigmas,
    frozen_phonon_sigmas,
)


def test_debye_value_and_reexport():
    from napari_hrtem.simulation.imaging import debye_msd as reexported

    # thesis eq. 2.1.25, θ_D = 580 K, S mass: 0.0030 Å² at 300 K
    assert debye_msd(32.06, 300.0, 580.0) == pytest.approx(0.0030, abs=5e-5)
    assert reexported is debye_msd
    s = debye_sigmas(["S", "Mo", "S"], 300.0)
    assert set(s) == {"Mo", "S"} and s["S"] == pytest.approx(np.sqrt(debye_msd(32.06, 300.0)), rel=1e-3)
    assert s["Mo"] < s["S"]  # heavier atoms vibrate less


@pytest.fixture(scope="module")
def gold_md(tmp_path_factory):
    """A short Langevin MD run (EMT) of a 55-atom gold icosahedron at 300 K, as an ASE trajectory file."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.cluster import Icosahedron
    from ase.io.trajectory import Trajectory
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = Icosahedron("Au", noshells=3)
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    path = tmp_path_factory.mktemp("md") / "au55.traj"
    dyn = Langevin(atoms, 5 * units.fs, temperature_K=300, friction=0.02, fixcm=False, rng=np.random.default_rng(1))
    dyn.run(60)  # equilibrate
    with Trajectory(str(path), "w", atoms) as traj:
        dyn.attach(traj.write, interval=4)
        dyn.run(240)
    return path, atoms


def test_gold_cluster_surface_vibrates_more_than_bulk(gold_md, tmp_path):
    path, atoms = gold_md
    table = coordination_table_from_trajectory(path, temperature=300.0)
    row = table.sigmas["Au"]
    assert 12 in row and sum(table.counts["Au"].values()) == 55
    assert table.counts["Au"][12] == 13  # the centre and the first shell
    surface = [cn for cn in row if cn < 12]
    assert surface
    for cn in surface:
        assert row[cn] > row[12]
    assert 0.03 < row[12] < 0.2  # Å: a plausible room-temperature amplitude
    # Round trip through JSON, and per-atom amplitudes for a structure.
    table.save(tmp_path / "au.json")
    again = CoordinationTable.load(tmp_path / "au.json")
    assert again.sigmas == table.sigmas and again.temperature == 300.0
    sig = frozen_phonon_sigmas(atoms, 300.0, table=again)
    cn = coordination_numbers(atoms)
    from ase.neighborlist import natural_cutoffs, neighbor_list

    np.testing.assert_array_equal(
        cn, np.bincount(neighbor_list("i", atoms, natural_cutoffs(atoms, mult=1.2)), minlength=55)
    )
    assert sig.shape == (55,) and sig[cn < 12].mean() > sig[cn == 12].mean()
    # Classical scaling to another temperature; unknown elements fall back to Debye.
    assert again.atom_sigmas(atoms, 600.0) == pytest.approx(np.sqrt(2) * sig)


def test_table_applied_to_a_sample_and_bad_input(tmp_path):
    from napari_hrtem.simulation.structures import make_mos2_sample

    sample = make_mos2_sample(20.0, graphene_layers=1, seed=1)
    from ase.neighborlist import natural_cutoffs, neighbor_list

    ase_cn = np.bincount(
        neighbor_list("i", sample.atoms, natural_cutoffs(sample.atoms, mult=1.2)), minlength=len(sample.atoms)
    )
    np.testing.assert_array_equal(coordination_numbers(sample.atoms), ase_cn)  # the fast path agrees with ASE
    table = CoordinationTable(sigmas={"Mo": {6: 0.05, 12: 0.04}, "S": {3: 0.07}}, temperature=300.0)
    sig = table.atom_sigmas(sample.atoms, 300.0)
    symbols = np.array(sample.atoms.get_chemical_symbols())
    assert np.all(sig[symbols == "S"] == 0.07) and set(np.round(sig[symbols == "Mo"], 3)) <= {0.05, 0.04}
    assert sig[symbols == "C"] == pytest.approx(debye_sigmas(["C"], 300.0)["C"])
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        CoordinationTable.load(bad)
    with pytest.raises(ValueError, match="missing.traj"):
        coordination_table_from_trajectory(tmp_path / "missing.traj")


def test_exit_wave_with_coordination_table():
    """Per-atom amplitudes reach abTEM's FrozenPhonons: zero amplitudes give the static exit wave."""
    from napari_hrtem.simulation.imaging import exit_wave
    from napari_hrtem.simulation.structures import make_mos2_sample

    sample = make_mos2_sample(32 * 0.22, seed=3)
    static = exit_wave(sample, (32, 32), 0.22, phonon_configs=1, max_wave_sampling=0.11)
    still = CoordinationTable(sigmas={"Mo": {6: 0.0}, "S": {3: 0.0}}, source="still")
    frozen = exit_wave(sample, (32, 32), 0.22, phonon_configs=2, seed=4, vibrations=still, max_wave_sampling=0.11)
    np.testing.assert_allclose(frozen.array, static.array, atol=1e-5)
    shaky = CoordinationTable(sigmas={"Mo": {6: 0.1}, "S": {3: 0.3}}, source="shaky")
    moved = exit_wave(sample, (32, 32), 0.22, phonon_configs=2, seed=4, vibrations=shaky, max_wave_sampling=0.11)
    assert np.abs(moved.array - static.array).max() > 0.05
    assert "shaky" in moved.params["vibrations"]


def test_cli_vibration_table_and_parameters(gold_md, tmp_path, capsys):
    from napari_hrtem.cli import main

    path, _ = gold_md
    out = tmp_path / "au.json"
    assert main(["vibration-table", str(path), "--out", str(out), "--temperature", "300"]) == 0
    assert "CN 12" in capsys.readouterr().out
    assert CoordinationTable.load(out).temperature == 300.0
    assert main(["parameters", "--out", str(tmp_path / "p.yaml")]) == 0
    assert "log10_dose" in (tmp_path / "p.yaml").read_text()


def test_per_element_debye_temperatures(tmp_path):
    """Graphene's θ_D (2312 K, Tewary & Yang 2009) instead of MoS2's 580 K: carbon vibrates about 3x less."""
    from napari_hrtem.simulation.parameters import load_parameter_ranges
    from napari_hrtem.simulation.vibrations import DEBYE_TEMPERATURES, debye_temperature_setting

    thesis = debye_sigmas(["Mo", "S", "C"], 300.0, 580.0)
    sourced = debye_sigmas(["Mo", "S", "C"], 300.0, DEBYE_TEMPERATURES)
    assert sourced["Mo"] == thesis["Mo"] and sourced["S"] == thesis["S"]  # MoS2: the thesis' 580 K
    assert sourced["C"] == pytest.approx(np.sqrt(debye_msd(12.011, 300.0, 2312.0)), rel=1e-3)
    assert sourced["C"] == pytest.approx(0.0315, abs=5e-4) and thesis["C"] == pytest.approx(0.0895, abs=5e-4)
    assert debye_sigmas(["C", "Au"], 300.0, {"default": 580.0, "C": 2312.0})["Au"] == debye_sigmas(["Au"], 300.0)["Au"]
    with pytest.raises(KeyError, match="Au"):
        debye_sigmas(["Au"], 300.0, {"C": 2312.0})
    # The packaged parameter file keeps the thesis (one θ_D); a file may give per-element values.
    assert debye_temperature_setting() == 580.0
    path = tmp_path / "debye.yaml"
    path.write_text("vibrations:\n  debye_temperatures: {C: 2312.0}\n", encoding="utf-8")
    setting = debye_temperature_setting(load_parameter_ranges(path))
    assert setting == {"default": 580.0, "C": 2312.0}
    bad = tmp_path / "bad.yaml"
    bad.write_text("vibrations:\n  debye_temperatures: {C: -1}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="debye_temperatures"):
        load_parameter_ranges(bad)


def test_exit_wave_with_per_element_debye_temperatures():
    """The mapping reaches abTEM's FrozenPhonons: stiffer carbon keeps the support's exit wave closer to the static one."""
    from napari_hrtem.simulation.imaging import exit_wave
    from napari_hrtem.simulation.structures import make_mos2_sample
    from napari_hrtem.simulation.vibrations import DEBYE_TEMPERATURES

    sample = make_mos2_sample(32 * 0.22, graphene_layers=1, flake_fraction=0.2, seed=3)
    kwargs = dict(phonon_configs=3, seed=4, temperature=600.0, max_wave_sampling=0.11)
    static = exit_wave(sample, (32, 32), 0.22, phonon_configs=1, max_wave_sampling=0.11)
    soft = exit_wave(sample, (32, 32), 0.22, debye_temperature=580.0, **kwargs)
    stiff = exit_wave(sample, (32, 32), 0.22, debye_temperature=DEBYE_TEMPERATURES, **kwargs)
    assert np.abs(stiff.array - static.array).mean() < 0.6 * np.abs(soft.array - static.array).mean()
    assert stiff.params["debye_temperature"]["C"] == 2312.0
