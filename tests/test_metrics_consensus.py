import numpy as np
import pytest

from napari_hrtem.analysis.consensus import class_probabilities, consensus
from napari_hrtem.analysis.metrics import atomic_f1, match_sites
from napari_hrtem.io.sites import Sites, read_csv


def test_matching_is_one_to_one():
    truth = np.array([[0.0, 0.0], [0.0, 1.0]])
    pred = np.array([[0.0, 0.45]])  # within 0.5 Å of both: may count once only
    ia, ib = match_sites(pred, truth, 0.5)
    assert len(ia) == 1
    s = atomic_f1(pred, [0], truth, [0, 0], radius=0.5)
    assert (s["Mo"]["tp"], s["Mo"]["fp"], s["Mo"]["fn"]) == (1, 0, 1)
    assert s["Mo"]["f1"] == pytest.approx(1 / (1 + 0.5))


def test_f1_per_class_and_wrong_class():
    truth = np.array([[0, 0], [0, 3], [3, 0], [3, 3]], float)
    classes = np.array([0, 1, 1, 2])
    pred = truth + 0.1
    s = atomic_f1(pred, [0, 1, 2, 2], truth, classes, radius=0.5)
    assert s["Mo"]["f1"] == 1.0
    assert (s["S2"]["tp"], s["S2"]["fn"]) == (1, 1)
    assert (s["S"]["tp"], s["S"]["fp"]) == (1, 1)
    assert (s["overall"]["tp"], s["overall"]["fp"], s["overall"]["fn"]) == (3, 1, 1)
    assert s["Mo"]["rms"] == pytest.approx(np.sqrt(0.02))
    assert atomic_f1(pred, classes, truth, classes, radius=0.1)["overall"]["f1"] == 0.0
    with pytest.raises(ValueError, match="unknown class"):
        atomic_f1(pred, ["Mo", "W", "S", "S"], truth, classes)


def test_consensus_votes():
    base = np.array([[0, 0], [0, 3], [3, 0], [3, 3]], float)
    a = Sites(base, [0, 1, 1, 0], [0.9, 0.8, 0.7, 0.6])
    b = Sites(base + 0.1, [0, 1, 2, 0], [0.9, 0.8, 0.6, 0.6])
    c = Sites(np.vstack([base[:2] - 0.1, [[9, 9]]]), [0, 1, 0], [1, 1, 1])
    cons = consensus({"a": a, "b": b, "c": c}, k=2, radius=0.5)
    assert cons.meta == dict(k=2, n=3, radius=0.5, rule="sum")
    got = {(round(y), round(x), int(k), int(v)) for (y, x), k, v in zip(cons.yx, cons.classes, cons.votes)}
    # (3, 0): found by a (S2, 0.7) and b (S, 0.6): kept, the more confident class; (9, 9) by c only
    assert got == {(0, 0, 0, 3), (0, 3, 1, 3), (3, 0, 1, 2), (3, 3, 0, 2)}
    at = {(round(y), round(x)): i for i, (y, x) in enumerate(cons.yx)}
    assert cons.extra["class_votes"][at[3, 0]] == 1 and cons.extra["class_votes"][at[0, 0]] == 3
    assert cons.confidence[at[3, 0]] == pytest.approx(0.35)  # mean S2 probability of a (0.7) and b (0)
    assert set(cons.networks[at[3, 3]].split(";")) == {"a", "b"}
    assert len(consensus({"a": a, "b": b, "c": c}, k=1)) == 5  # every distinct place
    # the same-class rule: (3, 0) is left out, S2 by a and S by b
    strict = consensus({"a": a, "b": b, "c": c}, k=2, rule="same-class")
    got = {(round(y), round(x), int(k), int(v)) for (y, x), k, v in zip(strict.yx, strict.classes, strict.votes)}
    assert got == {(0, 0, 0, 3), (0, 3, 1, 3), (3, 3, 0, 2)} and strict.meta["rule"] == "same-class"
    assert np.array_equal(strict.extra["class_votes"], strict.votes)
    assert len(consensus({"a": a, "b": b, "c": c}, k=1, rule="same-class")) == 6  # every distinct (place, class)
    with pytest.raises(ValueError, match="unknown consensus rule"):
        consensus({"a": a}, rule="majority")
    with pytest.raises(ValueError):
        consensus({"a": a}, k=2)


def test_consensus_class_by_summed_probability():
    """The sum rule: one confident network outweighs two uncertain ones; a column's class probabilities
    come from ``extra["p_<class>"]`` (what find_sites writes)."""

    def net(p_mo, p_s2):
        p = dict(p_Mo=[p_mo], p_S2=[p_s2], p_S=[0.0])
        return Sites(np.zeros((1, 2)), [int(p_s2 > p_mo)], [max(p_mo, p_s2)], extra=p)

    cons = consensus({"unet": net(0.95, 0.03), "unetpp": net(0.40, 0.55), "msdnet": net(0.42, 0.50)})
    assert list(cons.classes) == [0] and cons.votes[0] == 3 and cons.extra["class_votes"][0] == 1
    assert cons.confidence[0] == pytest.approx((0.95 + 0.40 + 0.42) / 3)
    # without the probabilities only each site's own class counts: two S2 votes win
    plain = {
        name: Sites(s.yx, s.classes, s.confidence)
        for name, s in (("a", net(0.95, 0.0)), ("b", net(0.4, 0.55)), ("c", net(0.42, 0.5)))
    }
    assert list(consensus(plain).classes) == [1]
    probabilities = class_probabilities(plain["a"])
    assert probabilities.shape == (1, 3) and probabilities[0].tolist() == [0.95, 0.0, 0.0]


def test_sites_csv_round_trip(tmp_path):
    s = Sites(
        np.array([[1.25, 2.5], [3.0, 4.0]]), [0, 2], [0.5, 0.25], votes=np.array([2, 3]), networks=["a;b", "a;b;c"]
    )
    path = s.write_csv(tmp_path / "c.csv")
    assert path.read_text().splitlines()[0] == "y,x,class,confidence,votes,networks"
    back = read_csv(path)
    np.testing.assert_allclose(back.yx, s.yx)
    assert list(back.classes) == [0, 2] and list(back.votes) == [2, 3] and back.networks == ["a;b", "a;b;c"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("y,x\n1,2\n", "needs the columns"),
        ("y,x,class\n1,2,W\n", "unknown class"),
        ("y,x,class\n1,two,Mo\n", "must be numbers"),
        ("y,x,class\nnan,2,Mo\n", "not finite"),
    ],
)
def test_bad_csv(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_csv(path)
    assert "bad.csv" in str(info.value)


def test_empty_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")  # a 0-byte file is an error (e.g. a broken copy), not "no sites"
    with pytest.raises(ValueError, match="empty.csv: no header row"):
        read_csv(path)
    path.write_text("y,x,class\n")  # a header only: no sites
    assert len(read_csv(path)) == 0


def test_points_layers_carry_the_class_probabilities_to_the_consensus():
    """Compare recomputes the consensus from Predict's Points layers: they must hand the sum rule
    the same class probabilities (the features ``p_<class>``) as the network's sites."""
    from napari_hrtem.plugin.layers import points_layer_data, sites_from_points

    p = dict(p_Mo=[0.9, 0.1, 0.2], p_S2=[0.05, 0.8, 0.1], p_S=[0.0, 0.05, 0.6])
    sites = Sites(np.array([[1.0, 1.0], [1.0, 3.0], [3.0, 2.0]]), [0, 1, 2], [0.9, 0.8, 0.6], extra=p)
    layers = points_layer_data(sites, 0.2, "unet")
    back = [sites_from_points(data, kw["scale"], kw["features"], kw["metadata"]) for data, kw, _ in layers]
    for part in back:
        assert set(part.extra) == {"p_Mo", "p_S2", "p_S"}
    restored = {tuple(np.round(y, 6)): class_probabilities(s)[i] for s in back for i, y in enumerate(s.yx)}
    for y, row in zip(sites.yx, class_probabilities(sites)):
        np.testing.assert_allclose(restored[tuple(np.round(y, 6))], row)
    # a layer without them (a hand-made file) gives none: the consensus then counts each site's own class
    data, kw, _ = layers[0]
    plain = sites_from_points(data, kw["scale"], {"confidence": kw["features"]["confidence"]}, kw["metadata"])
    assert plain.extra == {}
