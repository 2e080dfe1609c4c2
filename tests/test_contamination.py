"""Specimen realism of issue 17: amorphous-carbon contamination, aligned supports, tilt, vacuum holes."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from napari_hrtem.simulation.contamination import (
    amorphous_carbon,
    carbon_number_density,
    contamination_layer,
    patch_mask,
)
from napari_hrtem.simulation.structures import CONTAMINATION_GAP, make_mos2_sample, random_sample


def test_amorphous_carbon_density_and_minimum_distance():
    rng = np.random.default_rng(0)
    c = amorphous_carbon((20.0, 25.0), 8.0, rng, density=2.0, min_distance=1.3)
    assert carbon_number_density(2.0) == pytest.approx(0.1003, abs=2e-4)  # atoms/Å³
    assert len(c) == round(0.10028 * 20 * 25 * 8)
    assert np.all((c[:, 0] >= 0) & (c[:, 0] < 20) & (c[:, 1] >= 0) & (c[:, 1] < 25))
    assert np.all((c[:, 2] >= 0) & (c[:, 2] <= 8))
    # no two atoms closer than 1.3 Å, across the periodic x, y boundaries too
    d, _ = cKDTree(c, boxsize=[20.0, 25.0, 100.0]).query(c, k=2)
    assert d[:, 1].min() >= 1.3
    # amorphous: nearest neighbours spread over a range, no lattice
    assert 1.3 <= np.median(d[:, 1]) < 2.0 and np.std(d[:, 1]) > 0.05
    with pytest.raises(ValueError, match="cannot place"):
        amorphous_carbon((10.0, 10.0), 5.0, rng, density=3.5, min_distance=2.0)


def test_patch_mask_covers_the_fraction_irregularly():
    rng = np.random.default_rng(1)
    inside = patch_mask((40.0, 30.0), 0.3, rng)
    grid = np.stack(np.meshgrid(np.arange(0, 40, 0.25), np.arange(0, 30, 0.25), indexing="ij"), -1).reshape(-1, 2)
    covered = inside(grid)
    assert covered.mean() == pytest.approx(0.3, abs=0.02)
    assert np.array_equal(inside(grid + [40.0, -30.0]), covered)  # periodic
    assert inside(grid).reshape(160, 120)[::8, ::8].std() > 0.3  # patches, not all or nothing
    assert not patch_mask((10.0, 10.0), 0.0, rng)(grid).any() and patch_mask((10.0, 10.0), 1.0, rng)(grid).all()
    with pytest.raises(ValueError):
        patch_mask((10.0, 10.0), 1.5, rng)


def test_contamination_leaves_the_truth_and_sits_on_the_surfaces():
    kwargs = dict(graphene_layers=1, stacking_distance=4.0, seed=4)
    clean = make_mos2_sample(40.0, **kwargs)
    dirty = make_mos2_sample(40.0, contamination_thickness=6.0, contamination_coverage=0.5, **kwargs)
    np.testing.assert_array_equal(dirty.sites, clean.sites)  # contamination atoms are not columns
    np.testing.assert_array_equal(dirty.classes, clean.classes)
    symbols = np.array(dirty.atoms.get_chemical_symbols())
    pos = dirty.atoms.get_positions()
    n_extra = dirty.params["contamination_atoms"]
    assert np.sum(symbols == "C") == np.sum(np.array(clean.atoms.get_chemical_symbols()) == "C") + n_extra
    # two layers, each half-covering 40 x 40 x 6 Å³ at 0.1003 atoms/Å³
    assert n_extra == pytest.approx(2 * 0.5 * 0.1003 * 40 * 40 * 6, rel=0.15)
    s_z = pos[symbols == "S", 2]
    flake_top, support_bottom = s_z.min(), pos[: len(clean.atoms)][symbols[: len(clean.atoms)] == "C", 2].max()
    contamination = pos[len(clean.atoms) :]
    above = contamination[contamination[:, 2] < flake_top]
    below = contamination[contamination[:, 2] > support_bottom]
    assert len(above) + len(below) == n_extra and len(above) > 0.3 * n_extra and len(below) > 0.3 * n_extra
    assert flake_top - above[:, 2].max() >= CONTAMINATION_GAP - 1e-9 and np.ptp(above[:, 2]) <= 6.0
    assert below[:, 2].min() - support_bottom >= CONTAMINATION_GAP - 1e-9
    assert pos[:, 2].min() == pytest.approx(4.0)  # the vacuum above the specimen is kept
    top_only = make_mos2_sample(40.0, contamination_thickness=3.0, contamination_sides="top", **kwargs)
    assert top_only.params["contamination_atoms"] > 0
    assert np.all(
        top_only.atoms.get_positions()[len(clean.atoms) :, 2] < top_only.atoms.get_positions()[:, 2].min() + 3.01
    )
    with pytest.raises(ValueError, match="contamination_sides"):
        make_mos2_sample(20.0, contamination_thickness=3.0, contamination_sides="left")


def test_contamination_layer_partial_coverage():
    rng = np.random.default_rng(2)
    full = contamination_layer((30.0, 30.0), 4.0, 1.0, np.random.default_rng(2))
    part = contamination_layer((30.0, 30.0), 4.0, 0.25, rng)
    assert len(part) == pytest.approx(0.25 * len(full), rel=0.2)
    assert len(contamination_layer((30.0, 30.0), 0.0, 1.0, rng)) == 0


def _bond_angles(xy: np.ndarray, bond: float) -> np.ndarray:
    """Directions (degrees, mod 60) of the nearest-neighbour vectors of 2D points about ``bond`` Å apart."""
    tree = cKDTree(xy)
    pairs = tree.query_pairs(bond * 1.05, output_type="ndarray")
    d = xy[pairs[:, 1]] - xy[pairs[:, 0]]
    return np.degrees(np.arctan2(d[:, 1], d[:, 0])) % 60


def _angle_gap(a, b):
    g = np.abs((np.asarray(a) - b) % 60)
    return np.minimum(g, 60 - g)


def test_aligned_support_puts_lattices_in_registry():
    """aligned_fraction=1: graphene's lattice vectors are parallel to the flake's (0° or 60° apart)."""
    for seed in range(4):
        s = make_mos2_sample(30.0, graphene_layers=1, aligned_fraction=1.0, seed=seed)
        assert s.params["aligned"] and _angle_gap(s.params["support_rotation"], s.params["rotation"]) < 1e-9
        symbols = np.array(s.atoms.get_chemical_symbols())
        pos = s.atoms.get_positions()
        mo = _bond_angles(pos[symbols == "Mo", :2], 3.16)  # Mo-Mo: along the lattice vectors
        cc = _bond_angles(pos[symbols == "C", :2], 1.42)  # C-C bonds: 30° from graphene's lattice vectors
        assert np.all(_angle_gap(mo, s.params["rotation"]) < 1e-6)
        assert np.all(_angle_gap(cc, s.params["rotation"] + 30) < 1e-6)
    # aligned_fraction 0.5: about half of the supports aligned; default 0: relative rotation uniform
    rng = np.random.default_rng(0)
    aligned = [
        make_mos2_sample(12.0, graphene_layers=1, aligned_fraction=0.5, seed=int(rng.integers(2**31)))
        for _ in range(80)
    ]
    assert 0.35 < np.mean([s.params["aligned"] for s in aligned]) < 0.65
    free = [make_mos2_sample(12.0, graphene_layers=1, seed=int(rng.integers(2**31))) for _ in range(80)]
    gaps = np.array([_angle_gap(s.params["support_rotation"], s.params["rotation"]) for s in free])
    assert not any(s.params["aligned"] for s in free) and np.mean(gaps < 1.0) < 0.1
    fixed = make_mos2_sample(12.0, graphene_layers=1, support_rotation=7.0, rotation=7.0, seed=1)
    assert fixed.params["support_rotation"] == 7.0


def test_tilt_separates_the_atoms_of_a_column_by_thickness_sin_tilt():
    """A 2H dimer column tilted by t about x: its two S atoms project 3.19 Å x sin t apart, along y."""
    for tilt in (2.0, 5.0):
        s = make_mos2_sample(
            24.0, tilt=tilt, tilt_azimuth=0.0, rotation=0.0, vacancy_fraction=0, hole_fraction=0, seed=3
        )
        pos = s.atoms.get_positions()
        sulphur = pos[np.array(s.atoms.get_chemical_symbols()) == "S"]
        top, bottom = (
            sulphur[sulphur[:, 2] < np.median(sulphur[:, 2])],
            sulphur[sulphur[:, 2] >= np.median(sulphur[:, 2])],
        )
        d, j = cKDTree(bottom[:, :2]).query(top[:, :2])
        offset = bottom[j, :2] - top[:, :2]
        assert np.allclose(np.abs(offset[:, 1]), 3.19 * np.sin(np.radians(tilt)), atol=1e-6)
        assert np.allclose(offset[:, 0], 0, atol=1e-6)


def test_tilt_lowers_the_projected_potential_of_dimer_columns():
    """abTEM's projected potential: tilting spreads each S2 column, its peak at the site drops."""
    import abtem

    peaks = {}
    for tilt in (0.0, 6.0):
        s = make_mos2_sample(
            16.0, tilt=tilt, tilt_azimuth=30.0, rotation=0.0, vacancy_fraction=0, hole_fraction=0, seed=2
        )
        potential = abtem.Potential(s.atoms, sampling=0.04, projection="infinite", parametrization="kirkland")
        projected = potential.project().compute(progress_bar=False).array  # (x, y)
        sampling = np.array(potential.sampling)
        dimers = s.sites[s.classes == 1]
        ix = np.round(dimers[:, 1] / sampling[0]).astype(int) % projected.shape[0]
        iy = np.round(dimers[:, 0] / sampling[1]).astype(int) % projected.shape[1]
        peaks[tilt] = float(np.mean(projected[ix, iy]))
    assert peaks[6.0] < 0.9 * peaks[0.0]


def test_vacuum_regions_remove_specimen_and_truth():
    kwargs = dict(graphene_layers=1, flake_fraction=1.5, hole_fraction=0, vacancy_fraction=0, seed=5)
    full = make_mos2_sample(40.0, **kwargs)
    holey = make_mos2_sample(40.0, vacuum_fraction=0.3, contamination_thickness=3.0, **kwargs)
    assert 0.6 < len(holey.sites) / len(full.sites) < 0.8
    symbols = np.array(holey.atoms.get_chemical_symbols())
    counts = holey.counts()
    assert counts["Mo"] == np.sum(symbols == "Mo") and 2 * counts["S2"] == np.sum(symbols == "S")
    # the sites left are columns of the full flake (nothing moved)
    d, _ = cKDTree(full.sites).query(holey.sites)
    assert d.max() < 1e-9

    def empty_fraction(sample):  # 2 Å cells of the field without any atom
        xy = sample.atoms.get_positions()[:, :2]
        occupied = np.zeros((20, 20), bool)
        occupied[tuple(np.clip((xy // 2).astype(int), 0, 19).T)] = True
        return 1 - occupied.mean()

    assert empty_fraction(full) < 0.05 and empty_fraction(holey) > 0.2


def test_random_sample_draws_the_new_features_from_the_parameter_file(tmp_path):
    from napari_hrtem.simulation.parameters import load_parameter_ranges

    path = tmp_path / "dirty.yaml"
    path.write_text(
        "sample:\n  bare_fraction: 0.0\n  contamination_thickness: [2, 10]\n  contamination_coverage: [0.2, 0.8]\n"
        "  vacuum_fraction: [0.1, 0.2]\n  aligned_fraction: 1.0\n  max_tilt: 3.0\n",
        encoding="utf-8",
    )
    ranges = load_parameter_ranges(path)
    rng = np.random.default_rng(3)
    for _ in range(2):
        s = random_sample(24.0, rng, ranges=ranges)
        p = s.params
        assert 2 <= p["contamination_thickness"] <= 10 and 0.2 <= p["contamination_coverage"] <= 0.8
        assert 0.1 <= p["vacuum_fraction"] <= 0.2 and p["aligned"] and 0 < p["tilt"] <= 3
        assert p["contamination_atoms"] > 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("sample:\n  contamination_sides: left\n", encoding="utf-8")
    with pytest.raises(ValueError, match="contamination_sides"):
        load_parameter_ranges(bad)


def test_simulate_takes_the_specimen_features_and_the_debye_table(tmp_path):
    """The public simulate: contamination through sample_options, per-element θ_D through the parameter file."""
    import napari_hrtem as hrtem
    from napari_hrtem.plugin.simulate import describe_parameters

    path = tmp_path / "debye.yaml"
    path.write_text("vibrations:\n  debye_temperatures: {C: 2312.0}\n", encoding="utf-8")
    clean = hrtem.simulate(32, 0.22, graphene_layers=1, phonon_configs=2, seed=1, parameter_file=path)
    sim = hrtem.simulate(
        32,
        0.22,
        graphene_layers=1,
        phonon_configs=2,
        seed=1,
        parameter_file=path,
        sample_options={"contamination_thickness": 4.0, "contamination_coverage": 0.6},
    )
    assert sim.sample.params["contamination_atoms"] > 0
    np.testing.assert_array_equal(sim.sample.sites, clean.sample.sites)  # the truth ignores the contamination
    assert sim.metadata["exit_wave"]["debye_temperature"] == {"default": 580.0, "C": 2312.0}
    assert "θ_D default 580, C 2312 K" in describe_parameters(sim.metadata)
    assert not np.allclose(sim.series.images, clean.series.images)
