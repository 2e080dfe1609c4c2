"""Uncertainty from the ensemble: per-site figures of every network at the consensus sites, the
agreement counts, their CSV columns, the command line's predict.json and the Predict widget."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from napari_hrtem.analysis.inference import ProbabilityMaps
from napari_hrtem.analysis.uncertainty import agreement_counts, describe_agreement, site_uncertainty
from napari_hrtem.io.sites import Sites, read_csv

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
needs_realdata = pytest.mark.skipif(
    not (REALDATA / "focal_series_img07.dm3").is_file(),
    reason="../shared/realdata (the real focal series img07-09) not present: a user's clone has no ../shared",
)


@pytest.fixture(scope="module")
def simulation():
    import napari_hrtem as hrtem

    return hrtem.simulate(size=128, sampling=0.22, graphene_layers=1, seed=0)


@pytest.fixture(scope="module")
def prediction(simulation):
    import napari_hrtem as hrtem

    return hrtem.predict_consensus(None, simulation.series)


def test_per_site_figures_present_and_consistent(prediction):
    cons = prediction.consensus
    names = list(prediction.results)
    n = cons.meta["n"]
    assert len(cons) > 20 and n == len(names)
    columns = np.stack([cons.extra[f"p_column_{name}"] for name in names])
    assert list(cons.extra)[: len(names) + 3] == ["class_votes"] + [f"p_column_{name}" for name in names] + [
        "p_column_mean",
        "p_column_std",
    ]
    assert np.all(cons.extra["class_votes"] <= cons.votes)
    np.testing.assert_allclose(cons.extra["p_column_mean"], columns.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(cons.extra["p_column_std"], columns.std(axis=0), atol=1e-12)
    classes = np.stack([cons.extra[f"p_{c}_mean"] for c in cons.class_names])
    np.testing.assert_allclose(classes.sum(axis=0), cons.extra["p_column_mean"], atol=2e-3)  # float16 maps
    for key, values in cons.extra.items():
        if key == "class_votes":
            continue
        assert np.all(np.isfinite(values)) and np.all(values >= -1e-6) and np.all(values <= 1 + 1e-6)
    # a consensus site is a column: the networks that voted for it see one there
    assert np.all(cons.extra["p_column_mean"] > 0.3)
    # the counts
    assert cons.meta["unanimous"] == int(np.sum((cons.votes == n) & (cons.extra["class_votes"] == n)))
    assert cons.meta["unanimous"] + cons.meta["majority"] == len(cons)
    assert np.all(cons.votes[cons.votes == n] == n) and np.all(cons.votes >= cons.meta["k"])
    assert cons.meta["disputed"] >= cons.meta["majority"] - len(cons)  # an integer count
    assert cons.meta["p_column_std_mean"] == pytest.approx(float(np.mean(cons.extra["p_column_std"])), abs=1e-4)
    assert prediction.probabilities is None  # the maps are dropped once read


def test_line_of_counts(prediction):
    cons = prediction.consensus
    line = describe_agreement(cons)
    assert line == (
        f"consensus of {cons.meta['n']} (≥{cons.meta['k']} votes): {len(cons)} sites (unanimous "
        f"{cons.meta['unanimous']}, majority {cons.meta['majority']}); disputed {cons.meta['disputed']} sites"
    )


def _sites(yx, classes, **kw):
    return Sites(np.array(yx, float), np.array(classes, int), np.ones(len(classes)), **kw)


def test_agreement_counts_of_a_known_case():
    from napari_hrtem.api import consensus

    results = {
        "a": _sites([[5, 5], [10, 10], [15, 15]], [0, 1, 2]),
        "b": _sites([[5, 5], [10, 10.1], [15, 15]], [0, 1, 1]),  # (15, 15): S2, not S
        "c": _sites([[5.1, 5], [20, 20]], [0, 1]),  # misses (10, 10), (15, 15); alone at (20, 20)
    }
    cons = consensus(results, k=2, radius=0.5)
    counts = agreement_counts(cons, results, 0.5)
    # (5, 5) unanimous; (10, 10) by a and b; (15, 15) by a and b, classes differ: kept, not
    # unanimous; (20, 20) c only
    assert counts == dict(unanimous=1, majority=2, disputed=3)


def test_site_uncertainty_reads_each_network_bilinearly_with_offset():
    maps = ProbabilityMaps()
    h = w = 8
    yy, xx = np.mgrid[:h, :w].astype(float)
    background_a = np.clip(yy / 10, 0, 1)  # linear in y: bilinear reading is exact
    background_b = np.full((h, w), 0.5)
    for name, bg, sampling in (("a", background_a, 0.5), ("b", background_b, 0.25)):
        mo = (1 - bg) * 0.75
        maps.add(name, np.stack([mo, (1 - bg) * 0.25, np.zeros_like(bg), bg]).astype(np.float32), sampling)
    offset = np.array([1.0, -1.0])
    sites = _sites(np.array([[1.0 + 1.25, 0.5 - 1.0]]), [0])  # frame of the series: (1.25, 0.5) Å
    out = site_uncertainty(sites, maps, offset)
    # network a: 0.5 Å/px, pixel (2.5, 1): background 0.25; network b: 0.5 everywhere
    assert out["p_column_a"][0] == pytest.approx(0.75, abs=1e-3)
    assert out["p_column_b"][0] == pytest.approx(0.5, abs=1e-3)
    assert out["p_column_mean"][0] == pytest.approx(0.625, abs=1e-3)
    assert out["p_column_std"][0] == pytest.approx(0.125, abs=1e-3)
    assert out["p_Mo_mean"][0] == pytest.approx(0.75 * 0.625, abs=1e-3)
    assert out["p_class_std"][0] == pytest.approx(0.75 * 0.125, abs=1e-3)
    maps.close()


def test_large_maps_go_to_a_temporary_file_and_read_the_same():
    rng = np.random.default_rng(0)
    prob = rng.random((4, 40, 50)).astype(np.float32)
    small, large = ProbabilityMaps(), ProbabilityMaps(spill_bytes=0)
    small.add("n", prob, 0.2)
    large.add("n", prob, 0.2)
    assert isinstance(large.maps["n"], np.memmap) and not isinstance(small.maps["n"], np.memmap)
    folder = Path(large._folder.name)
    assert folder.is_dir()
    yx = rng.random((30, 2)) * [7.8, 9.8]
    np.testing.assert_array_equal(small.sample("n", yx), large.sample("n", yx))
    # at pixel centres the reading is the map (float16)
    np.testing.assert_allclose(small.sample("n", [[0.4, 0.6]])[:, 0], prob[:, 2, 3], atol=1e-3)
    large.close()
    assert not folder.exists() and not large.maps


def test_csv_round_trip_and_old_files(tmp_path, prediction):
    cons = prediction.consensus
    path = cons.write_csv(tmp_path / "consensus.csv")
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
    assert header[:6] == ["y", "x", "class", "confidence", "votes", "networks"]
    assert header[6:] == list(cons.extra)
    back = read_csv(path)
    assert list(back.extra) == list(cons.extra)
    for key, values in cons.extra.items():
        np.testing.assert_allclose(back.extra[key], values, atol=6e-5)
    np.testing.assert_array_equal(back.votes, cons.votes)
    assert back.take(back.votes == cons.meta["n"]).extra["p_column_mean"].shape == (cons.meta["unanimous"],)
    # an old consensus file (no per-site figures) still reads, with its votes
    old = tmp_path / "old.csv"
    old.write_text("y,x,class,confidence,votes,networks\n1.0,2.0,Mo,0.9,3,unet;unetpp;msdnet\n3.0,4.0,S,0.5,2,a;b\n")
    sites = read_csv(old)
    assert len(sites) == 2 and sites.extra == {} and list(sites.votes) == [3, 2]
    # a hand-made table: a text column is ignored, a numeric one kept (empty cells NaN)
    made = tmp_path / "made.csv"
    made.write_text("y,x,class,comment,p_column_mean\n1,2,Mo,looks odd,0.5\n3,4,S2,,\n")
    sites = read_csv(made)
    assert list(sites.extra) == ["p_column_mean"] and sites.extra["p_column_mean"][0] == 0.5
    assert np.isnan(sites.extra["p_column_mean"][1]) and sites.votes is None


def test_points_layers_carry_the_figures(prediction):
    from napari_hrtem.plugin.layers import points_layer_data
    from napari_hrtem.plugin.widgets.predict import _layer_tuples

    cons = prediction.consensus
    tuples = points_layer_data(cons, 0.22, "consensus")
    for data, kwargs, _ in tuples:
        assert set(cons.extra) <= set(kwargs["features"])
        assert all(len(v) == len(data) for v in kwargs["features"].values())
    names = [kw["name"] for _, kw, _ in _layer_tuples(prediction, 0.22, disagreement=True)]
    assert names[-1] == "disagreement" and "disagreement" not in [
        kw["name"] for _, kw, _ in _layer_tuples(prediction, 0.22)
    ]


def test_cli_prints_and_records_the_counts(tmp_path, capsys):
    from napari_hrtem.cli import main

    series = tmp_path / "series.npz"
    assert main(["simulate", str(series), "--size", "128", "--graphene-layers", "1", "--seed", "3"]) == 0
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["predict", str(series), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    sidecar = json.loads((out / "predict.json").read_text())
    counts = sidecar["consensus"]
    assert {"k", "n", "radius", "unanimous", "majority", "disputed", "p_column_std_mean"} <= set(counts)
    rows = list(csv.DictReader(open(out / "consensus.csv", newline="")))
    assert counts["unanimous"] + counts["majority"] == len(rows)
    assert counts["unanimous"] == sum(int(r["votes"]) == counts["n"] for r in rows)
    assert f"(unanimous {counts['unanimous']}, majority {counts['majority']}); disputed {counts['disputed']}" in printed
    assert {f"p_column_{name}" for name in sidecar["networks"]} | {"p_column_mean", "p_column_std"} <= set(rows[0])
    assert read_csv(out / "consensus.csv").extra["p_column_std"].shape == (len(rows),)


@needs_realdata
def test_real_series_counts_and_spread():
    """On real frames (300 kV, not MoS2: outside the networks' experience) the networks disagree."""
    from napari_hrtem import api

    nets = api.check_networks(None)
    files = [REALDATA / f"focal_series_img0{i}.dm3" for i in (7, 8, 9)]
    prepared = api.prepare_focal_series(api.read_focal_series(files), nets)
    cons = api.predict_consensus(nets, prepared).consensus
    meta = cons.meta
    assert meta["unanimous"] + meta["majority"] == len(cons) > 0
    assert meta["disputed"] > len(cons)  # far more disputed columns than agreed ones
    assert np.all(np.isfinite(cons.extra["p_column_std"]))
    assert meta["p_column_std_mean"] > 0.05  # in-domain simulated series: < 0.01


def test_predict_widget_status_and_disagreement_layer(make_napari_viewer, qtbot, simulation):
    napari = pytest.importorskip("napari")
    from napari_hrtem.plugin.widgets.demo import add_widgets

    viewer = make_napari_viewer()
    s = simulation.series.sampling
    viewer.add_image(simulation.series.images, name="focal series", scale=(1, s, s), metadata={"sampling": s})
    widgets = add_widgets(viewer)
    pred = widgets["Predict"]
    pred.layer.reset_choices()
    pred.layer.value = "focal series"
    assert pred.disagreement.value
    pred.start()
    qtbot.waitUntil(lambda: pred.worker is None, timeout=180_000)
    cons = pred.last_event["consensus"]
    status = pred.status.value
    assert re.fullmatch(
        r"consensus of \d+ \(≥\d+ votes\): \d+ sites \(unanimous \d+, majority \d+\); disputed \d+ sites: "
        r"see the disagreement layer; done in \d+ s",
        status,
    ), status
    assert f"unanimous {cons.meta['unanimous']}, majority {cons.meta['majority']}" in status
    layer = viewer.layers["disagreement"]
    assert isinstance(layer, napari.layers.Points) and len(layer.data) == cons.meta["disputed"]
    assert {"kind", "says"} <= set(layer.features.columns)
    features = viewer.layers["consensus Mo"].features
    assert {"p_column_mean", "p_column_std", "votes"} <= set(features.columns)
    # the shipped set: the learned rule; Compare, with the same networks, recomputes the same consensus
    assert cons.meta["rule"] == "learned"
    compare = widgets["Compare"]
    compare.networks.reset_choices()
    compare.start()
    qtbot.waitUntil(lambda: compare.worker is None, timeout=60_000)
    assert "learned rule" in compare.status.value, compare.status.value
    again = compare.consensus
    assert again.meta["rule"] == "learned" and len(again) == len(cons)
    assert np.array_equal(np.bincount(again.classes, minlength=3), np.bincount(cons.classes, minlength=3))
