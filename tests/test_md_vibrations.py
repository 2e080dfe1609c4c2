"""The packaged CHGNet vibration table (issue 17, item 2) and the parameter-file setting that uses it.

Fast: no molecular dynamics and no chgnet; the table was made by recipes/md_vibrations.
"""

from pathlib import Path

import numpy as np
import pytest

from napari_hrtem.simulation.parameters import load_parameter_ranges
from napari_hrtem.simulation.vibrations import (
    PACKAGED_TABLES,
    CoordinationTable,
    coordination_table_setting,
    debye_sigmas,
    frozen_phonon_sigmas,
    load_coordination_table,
    packaged_table,
)


def test_packaged_table_loads_with_plausible_amplitudes_and_provenance():
    table = packaged_table()
    assert set(PACKAGED_TABLES) == {"mos2-chgnet"}
    assert {"Mo", "S", "C"} <= set(table.sigmas)
    assert table.temperature == 300.0
    for el, row in table.sigmas.items():
        assert row, el
        for cn, sigma in row.items():
            assert 0.03 < sigma < 0.2, (el, cn, sigma)  # Å at 300 K
            assert table.counts[el][cn] > 0
    md = table.provenance["runs"]
    assert set(md) == {"bare", "supported"}
    for run in md.values():
        assert run["md"]["potential"]["name"] == "CHGNet"
        assert run["md"]["dynamics"]["temperature_K"] == 300.0
        assert run["md"]["versions"]["chgnet"]
    assert "Nature Machine Intelligence 5, 1031" in table.provenance["potential_reference"]
    # the round trip keeps the provenance
    assert CoordinationTable.from_dict(table.to_dict()).provenance == table.provenance
    with pytest.raises(KeyError, match="mos2-chgnet"):
        packaged_table("nope")


def test_edge_atoms_vibrate_more_than_bulk():
    """Larsen et al.: low coordination, larger amplitude. Mo inside a flake has 6 S + 6 Mo neighbours
    (cut-off 1.2 × covalent radii), S inside has 3 Mo."""
    table = packaged_table()
    mo, s = table.sigmas["Mo"], table.sigmas["S"]
    assert max(mo) == 12 and max(s) == 3  # the bulk rows
    assert mo[min(mo)] > mo[12]
    assert s[min(s)] > s[3]
    # and heavier Mo vibrates less than S inside the flake, as in the Debye model
    assert mo[12] < s[3]


def test_table_differs_from_debye_on_a_small_flake():
    from napari_hrtem.simulation.structures import make_mos2_sample

    sample = make_mos2_sample(20.0, graphene_layers=1, seed=1)
    atoms = sample.atoms
    symbols = np.array(atoms.get_chemical_symbols())
    debye = frozen_phonon_sigmas(atoms, 300.0)
    table = frozen_phonon_sigmas(atoms, 300.0, table=packaged_table())
    assert isinstance(debye, dict) and table.shape == (len(atoms),)
    for el in ("Mo", "S"):
        assert not np.allclose(table[symbols == el], debye[el], rtol=0.05)
    assert np.ptp(table[symbols == "S"]) > 0  # coordination-dependent: edge S differ from inner S
    # 600 K: classical scaling sqrt(T / 300 K)
    hot = frozen_phonon_sigmas(atoms, 600.0, table=packaged_table())
    np.testing.assert_allclose(hot, table * np.sqrt(2.0))
    # Debye at 300 K, θ_D 580 K, for reference (the table is larger: MD sees the soft modes of a flake)
    assert debye == pytest.approx(debye_sigmas(["Mo", "S", "C"], 300.0))


def test_parameter_file_setting(tmp_path):
    assert "coordination_table" not in load_parameter_ranges()["vibrations"]  # absent: Debye, old configs unchanged
    assert coordination_table_setting() is None
    path = tmp_path / "p.yaml"
    path.write_text("vibrations:\n  coordination_table: mos2-chgnet\n", encoding="utf-8")
    ranges = load_parameter_ranges(path)
    assert coordination_table_setting(ranges).sigmas == packaged_table().sigmas
    own = tmp_path / "own.json"
    CoordinationTable(sigmas={"Mo": {12: 0.05}, "S": {3: 0.06}}, source="own").save(own)
    path.write_text(f"vibrations:\n  coordination_table: {own}\n", encoding="utf-8")
    assert coordination_table_setting(load_parameter_ranges(path)).source == "own"
    assert load_coordination_table(str(own)).sigmas["S"] == {3: 0.06}
    assert load_coordination_table(Path("mos2-chgnet")).sigmas == packaged_table().sigmas  # a file field's value
    path.write_text("vibrations:\n  coordination_table: 3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="coordination_table"):
        load_parameter_ranges(path)
    path.write_text("vibrations:\n  coordination_tables: x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown entry vibrations.coordination_tables"):
        load_parameter_ranges(path)
    with pytest.raises(ValueError, match="missing.json"):
        load_coordination_table(str(tmp_path / "missing.json"))


def test_store_sample_honours_the_setting():
    """simulate_sample: the config's coordination_table reaches the exit wave; the rest of the draw is the same."""
    from napari_hrtem.training.datastore import make_recipe, simulate_sample

    debye = load_parameter_ranges()
    chgnet = load_parameter_ranges()
    chgnet["vibrations"]["coordination_table"] = "mos2-chgnet"
    results = []
    for config in (debye, chgnet):
        recipe = make_recipe(image_epochs=1, shape=(32, 32), config=config, phonon_configs=2)
        results.append(simulate_sample(0, recipe))
    plain, table = results
    assert plain["attrs"]["exit_wave"]["vibrations"] == "Debye"
    assert "CHGNet" in table["attrs"]["exit_wave"]["vibrations"]
    np.testing.assert_array_equal(plain["sites"], table["sites"])  # same structure
    assert np.abs(plain["exit_wave"] - table["exit_wave"]).max() > 1e-3  # other vibrations
