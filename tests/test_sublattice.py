"""The sublattice check: like columns closer than the MoS2 lattice allows are marked."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import napari_hrtem as hrtem
from napari_hrtem.analysis.sublattice import (
    mark_sublattice_conflicts,
    material_of,
    sublattice_conflicts,
    sublattice_distance,
    sublattices,
)
from napari_hrtem.io.sites import Sites, read_csv
from napari_hrtem.simulation.structures import make_mos2_sample, make_mx2_sample


@pytest.fixture(scope="module")
def flake():
    """A bare MoS2 sheet (no support) with its ground truth: vacancies, no holes."""
    return make_mos2_sample(40.0, graphene_layers=0, seed=11)


def _sites(yx, classes, class_names=("Mo", "S2", "S")):
    return Sites(yx, classes, np.ones(len(classes)), class_names=class_names)


def test_the_true_lattice_has_no_conflict(flake):
    assert (flake.classes == 2).any()  # single-S columns (vacancies) lie on the chalcogen sublattice
    assert not sublattice_conflicts(_sites(flake.sites, flake.classes)).any()
    for formula in ("WSe2", "MoTe2"):  # other 2H-MX2 materials and their own lattice constants
        sample = make_mx2_sample(30.0, formula=formula, graphene_layers=0, seed=2)
        assert not sublattice_conflicts(_sites(sample.sites, sample.classes, sample.class_names), formula).any()


def test_a_swapped_patch_is_marked_along_its_edge(flake):
    """Mo and S2 swapped in a disc: the marks lie on the disc's edge, on both sides of it, and nowhere else."""
    yx, classes = flake.sites, flake.classes.copy()
    centre = yx.mean(axis=0)
    r = np.linalg.norm(yx - centre, axis=1)
    inside = (r < 8.0) & (classes < 2)
    classes[inside] = 1 - classes[inside]
    flag = sublattice_conflicts(_sites(yx, classes))
    assert flag[inside].any() and flag[~inside].any()  # both members of a pair
    assert np.all(np.abs(r[flag] - 8.0) < 2 * sublattice_distance(3.16))  # on the edge only
    assert not flag[r < 8.0 - 2 * 3.16].any() and not flag[r > 8.0 + 2 * 3.16].any()
    # a column labelled Mo in a hexagon's centre (opposite a Mo column's S2 neighbour) is marked
    mo = yx[flake.classes == 0][np.argmin(np.linalg.norm(yx[flake.classes == 0] - centre, axis=1))]
    s2 = yx[flake.classes > 0][np.argmin(np.linalg.norm(yx[flake.classes > 0] - mo, axis=1))]
    assert np.linalg.norm(s2 - mo) == pytest.approx(3.16 / np.sqrt(3), abs=0.01)
    added = _sites(np.vstack([yx, 2 * mo - s2]), np.append(flake.classes, 0))
    assert sublattice_conflicts(added)[-1]


def test_the_distance_and_errors():
    assert sublattice_distance(3.16) == pytest.approx(0.5 * (3.16 / np.sqrt(3) + 3.16))
    assert sublattices("MoS2") == (3.16, (("Mo",), ("S2", "S")))
    assert sublattices("WSe2")[1] == (("W",), ("Se2", "Se"))
    pair = _sites([[0.0, 0.0], [0.0, 2.0]], [0, 0])
    assert sublattice_conflicts(pair).all()  # two Mo 2 Å apart
    assert material_of(("W", "Se2", "Se")) == "WSe2" and material_of(("Au", "C", "X")) is None
    with pytest.raises(ValueError, match="no 2H-MX2 material has the classes Au/C/X"):
        sublattice_conflicts(_sites([[0.0, 0.0]], [0], ("Au", "C", "X")))
    assert not sublattice_conflicts(pair, distance=1.5).any()
    assert not sublattice_conflicts(_sites([[0.0, 0.0], [0.0, 2.0]], [0, 1])).any()  # Mo next to S2: the lattice
    assert sublattice_conflicts(_sites([[0.0, 0.0], [0.0, 2.0]], [1, 2])).all()  # S2 next to S: one sublattice
    assert not sublattice_conflicts(_sites(np.zeros((0, 2)), [])).any()
    assert mark_sublattice_conflicts(pair) == 2 and pair.meta["sublattice_conflicts"] == 2
    np.testing.assert_array_equal(pair.extra["sublattice_conflict"], [1.0, 1.0])
    other = _sites([[0.0, 0.0], [0.0, 2.0]], [0, 0], ("Au", "C", "X"))
    assert mark_sublattice_conflicts(other) is None and not other.extra and not other.meta  # not checked
    with pytest.raises(ValueError, match="no lattice known for material 'Au'"):
        sublattice_conflicts(pair, "Au")
    with pytest.raises(ValueError, match="finite number"):
        sublattice_conflicts(pair, distance=float("nan"))


@pytest.fixture(scope="module")
def prediction(tiny_series):
    images, sampling, _ = tiny_series
    return hrtem.predict_consensus(["unet", "unetpp"], images, sampling=sampling)


def test_predict_consensus_marks_the_conflicts(prediction, tmp_path):
    for sites in (*prediction.results.values(), prediction.consensus):
        flag = sites.extra["sublattice_conflict"]
        assert flag.shape == (len(sites),) and set(np.unique(flag)) <= {0.0, 1.0}
        assert sites.meta["sublattice_conflicts"] == int(flag.sum())
        np.testing.assert_array_equal(flag > 0, sublattice_conflicts(sites))
    n = prediction.consensus.meta["sublattice_conflicts"]
    assert any("sublattice" in w for w in prediction.warnings) == (n > 0)
    hrtem.write_prediction(prediction, tmp_path)  # a CSV column, read back as a per-site figure
    written = read_csv(tmp_path / "consensus.csv")
    np.testing.assert_array_equal(
        written.extra["sublattice_conflict"], prediction.consensus.extra["sublattice_conflict"]
    )


def test_predict_marks_the_conflicts_of_one_network(tiny_series):
    images, sampling, _ = tiny_series
    sites = hrtem.predict("unetpp", images, sampling=sampling)
    flag = sites.extra["sublattice_conflict"]
    np.testing.assert_array_equal(flag > 0, sublattice_conflicts(sites))
    assert sites.meta["sublattice_conflicts"] == int(flag.sum())
    assert any("own sublattice" in w for w in sites.meta["warnings"]) == bool(flag.any())


def test_a_swap_made_by_every_network_gives_a_warning(prediction, tiny_series):
    """The consensus of networks that agree on a swapped patch: marked, with a warning and a layer."""
    from napari_hrtem.api import _check_sublattices
    from napari_hrtem.plugin.layers import sublattice_conflict_layer_data

    prediction = copy.deepcopy(prediction)
    sampling = tiny_series[1]
    cons = prediction.consensus
    centre = np.median(cons.yx, axis=0)
    inside = (np.linalg.norm(cons.yx - centre, axis=1) < 6.0) & (cons.classes < 2)
    cons.classes[inside] = 1 - cons.classes[inside]  # as if both networks had swapped the patch
    prediction.warnings.clear()
    _check_sublattices(prediction)
    n = cons.meta["sublattice_conflicts"]
    assert n > 0
    assert len(prediction.warnings) == 1 and f"{n} consensus site(s) have a neighbour" in prediction.warnings[0]
    assert "2.49 Å" in prediction.warnings[0] and "Mo called S2" in prediction.warnings[0]
    data, kwargs, kind = sublattice_conflict_layer_data(cons, sampling)
    assert kind == "points" and kwargs["name"] == "sublattice conflicts" and kwargs["visible"]
    assert len(data) == n and len(kwargs["features"]["site_class"]) == n
    cons.extra["sublattice_conflict"][:] = 0
    data, kwargs, _ = sublattice_conflict_layer_data(cons, sampling)
    assert len(data) == 0 and not kwargs["visible"]  # still made: it replaces an earlier run's layer
