import numpy as np
import pytest

from napari_hrtem.simulation.structures import CLASSES, make_mos2_sample, random_sample


def test_site_counts_match_atoms(tiny_sample):
    symbols = np.array(tiny_sample.atoms.get_chemical_symbols())
    counts = tiny_sample.counts()
    assert counts["Mo"] == np.sum(symbols == "Mo")
    assert 2 * counts["S2"] + counts["S"] == np.sum(symbols == "S")
    assert np.sum(symbols == "C") > 0  # the graphene support
    assert counts["Mo"] > 20 and counts["S2"] > 20


def test_sites_sit_on_their_columns(tiny_sample):
    """Every site has the right atoms under it: (y, x) of the site = (y, x) of the atoms."""
    pos = tiny_sample.atoms.get_positions()
    symbols = np.array(tiny_sample.atoms.get_chemical_symbols())
    for (y, x), code in zip(tiny_sample.sites, tiny_sample.classes):
        d = np.hypot(pos[:, 1] - y, pos[:, 0] - x)
        under = symbols[d < 0.05]
        expected = {"Mo": ["Mo"], "S2": ["S", "S"], "S": ["S"]}[CLASSES[code]]
        assert sorted(under) == expected


def test_vacancies_and_holes_and_seed():
    a = make_mos2_sample(40.0, vacancy_fraction=0.3, hole_fraction=0.0, seed=3)
    b = make_mos2_sample(40.0, vacancy_fraction=0.3, hole_fraction=0.0, seed=3)
    assert a.counts()["S"] > 0
    np.testing.assert_array_equal(a.sites, b.sites)
    full = make_mos2_sample(40.0, vacancy_fraction=0.0, hole_fraction=0.0, rotation=0.0, seed=4)
    holey = make_mos2_sample(40.0, vacancy_fraction=0.0, hole_fraction=0.3, rotation=0.0, seed=4)
    assert full.counts()["S"] == 0
    assert len(holey.sites) < 0.85 * len(full.sites)


def test_sites_inside_cell_and_random_recipe():
    rng = np.random.default_rng(0)
    for _ in range(4):
        s = random_sample((30.0, 40.0), rng)
        assert s.extent == (30.0, 40.0)
        assert np.all(s.sites >= 0) and np.all(s.sites[:, 0] < 30.0) and np.all(s.sites[:, 1] < 40.0)
        assert 0 <= s.params["graphene_layers"] <= 6


@pytest.mark.parametrize("kwargs", [dict(vacancy_fraction=2.0), dict(graphene_layers=-1), dict(flake_fraction=0)])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        make_mos2_sample(30.0, **kwargs)


def test_lattice_constants():
    """MoS2 a = 3.16 Å; graphene a = 2.46 Å, AB (Bernal) stacked with layer distance c/2 = 3.35 Å."""
    from scipy.spatial import cKDTree

    s = make_mos2_sample(
        40.0, graphene_layers=3, rotation=0.0, vacancy_fraction=0, hole_fraction=0, stacking_distance=4.0, seed=2
    )
    pos = s.atoms.get_positions()
    symbols = np.array(s.atoms.get_chemical_symbols())
    mo = pos[symbols == "Mo"]
    d, _ = cKDTree(mo).query(mo, k=2)
    assert np.median(d[:, 1]) == pytest.approx(3.16, abs=1e-6)
    carbon = pos[symbols == "C"]
    planes = np.unique(np.round(carbon[:, 2], 6))
    assert len(planes) == 3 and np.allclose(np.diff(planes), 3.35)
    s_bottom = pos[symbols == "S", 2].max()
    assert planes[0] - s_bottom == pytest.approx(4.0)  # stacking distance
    top, second = (carbon[np.isclose(carbon[:, 2], z)][:, :2] for z in planes[:2])
    d, _ = cKDTree(top).query(top, k=2)
    assert np.median(d[:, 1]) == pytest.approx(2.46 / np.sqrt(3), abs=1e-6)  # C-C bond 1.42 Å
    # AB stacking: half of the second layer's atoms sit on top of first-layer atoms, half over hexagon centres.
    d, _ = cKDTree(top).query(second)
    inner = np.all((second > 5) & (second < 35), axis=1)
    assert np.mean(d[inner] < 0.01) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("formula,a", [("WS2", 3.153), ("MoSe2", 3.288)])
def test_other_mx2_materials(formula, a):
    from scipy.spatial import cKDTree

    from napari_hrtem.simulation.structures import make_mx2_sample, mx2_classes

    s = make_mx2_sample(30.0, formula, vacancy_fraction=0.3, hole_fraction=0.05, seed=1)
    metal, dimer, single = mx2_classes(formula)
    assert s.class_names == (metal, dimer, single) and dimer == single + "2"
    symbols = np.array(s.atoms.get_chemical_symbols())
    counts = s.counts()
    assert counts[metal] == np.sum(symbols == metal) and counts[single] > 0
    assert 2 * counts[dimer] + counts[single] == np.sum(symbols == single)
    m = s.atoms.get_positions()[symbols == metal]
    assert np.median(cKDTree(m).query(m, k=2)[0][:, 1]) == pytest.approx(a, abs=1e-6)
    with pytest.raises(ValueError, match="MX2"):
        make_mx2_sample(30.0, "MoS3")


def test_site_counts_with_all_defects_tilt_and_jitter():
    """Counts of sites vs atoms after S and C vacancies and holes, in tilted, jittered, supported samples."""
    from napari_hrtem.simulation.parameters import load_parameter_ranges

    ranges = load_parameter_ranges()  # thesis defaults: up to 5 % S and C vacancies, 5 % holes
    ranges["sample"].update(bare_fraction=0.0, graphene_layers=[2, 2], max_tilt=3.0, jitter=0.02)
    rng = np.random.default_rng(7)
    full = make_mos2_sample(
        60.0, graphene_layers=2, vacancy_fraction=0, hole_fraction=0, flake_fraction=1.0, rotation=0.0, seed=11
    )
    for _ in range(3):
        s = random_sample(60.0, rng, ranges=ranges)
        p = s.params
        symbols = np.array(s.atoms.get_chemical_symbols())
        counts = s.counts()
        assert counts["Mo"] == np.sum(symbols == "Mo")
        assert 2 * counts["S2"] + counts["S"] == np.sum(symbols == "S")
        assert counts["S"] == p["vacancies"] <= 0.05 * np.sum(symbols == "S") + 1
        assert 0 < p["tilt"] <= 3.0 and p["jitter"] == 0.02 and p["graphene_layers"] == 2
        assert 0 <= p["carbon_vacancies"] <= 0.05 * (np.sum(symbols == "C") + p["carbon_vacancies"]) + 1
        # Each site is the projected centre of its column: within tilt and jitter of an atom of its class.
        pos = s.atoms.get_positions()
        for (y, x), code in zip(s.sites[:50], s.classes[:50]):
            d = np.hypot(pos[:, 1] - y, pos[:, 0] - x)
            assert d[symbols == ("Mo" if code == 0 else "S")].min() < 0.2
    # Holes: about 5 % of the columns are gone compared with the defect-free flake (same seed and outline).
    holey = make_mos2_sample(
        60.0, graphene_layers=2, vacancy_fraction=0, hole_fraction=0.05, flake_fraction=1.0, rotation=0.0, seed=11
    )
    assert 0.90 * len(full.sites) < len(holey.sites) < 0.99 * len(full.sites)


def test_tilt_moves_support_and_keeps_truth_on_columns():
    flat = make_mos2_sample(40.0, graphene_layers=2, tilt=0.0, rotation=0.0, seed=5)
    tilted = make_mos2_sample(40.0, graphene_layers=2, tilt=3.0, tilt_azimuth=0.0, rotation=0.0, seed=5)
    assert len(tilted.sites) == len(flat.sites)
    # Tilt about x by 3°: sites move in y by (z - z_metal) sin 3° (S2 columns centred on the metal plane).
    assert np.abs(tilted.sites - flat.sites).max() < 0.1
    pos = tilted.atoms.get_positions()
    symbols = np.array(tilted.atoms.get_chemical_symbols())
    flat_z = flat.atoms.get_positions()[np.array(flat.atoms.get_chemical_symbols()) == "S", 2]
    assert np.ptp(pos[symbols == "S", 2]) > np.ptp(flat_z) + 1.0  # a 40 Å flake tilted by 3°: ±1 Å in z


def test_rotation_recipe_quarters():
    rng = np.random.default_rng(0)
    rot = np.array([make_mos2_sample(12.0, seed=int(rng.integers(2**31))).params["rotation"] for _ in range(200)])
    for r in (0.0, 15.0, 30.0):
        assert 0.15 < np.mean(rot == r) < 0.35
    other = rot[~np.isin(rot, (0.0, 15.0, 30.0))]
    assert 0.15 < len(other) / 200 < 0.35 and np.all((other >= 0) & (other <= 90))
