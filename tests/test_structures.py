import numpy as np
import pytest

from napari_hrtem.structures import CLASSES, make_mos2_sample, random_sample


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
