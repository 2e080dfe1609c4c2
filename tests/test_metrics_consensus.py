import numpy as np
import pytest

from napari_hrtem.analysis.consensus import consensus
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
    b = Sites(base + 0.1, [0, 1, 2, 0], [0.9, 0.8, 0.7, 0.6])
    c = Sites(np.vstack([base[:2] - 0.1, [[9, 9]]]), [0, 1, 0], [1, 1, 1])
    cons = consensus({"a": a, "b": b, "c": c}, k=2, radius=0.5)
    assert cons.meta == dict(k=2, n=3, radius=0.5)
    got = {(round(y), round(x), int(k), int(v)) for (y, x), k, v in zip(cons.yx, cons.classes, cons.votes)}
    # (3, 0): S2 by a, S by b -> no agreement; (9, 9) by c only
    assert got == {(0, 0, 0, 3), (0, 3, 1, 3), (3, 3, 0, 2)}
    assert set(cons.networks[list(cons.votes).index(2)].split(";")) == {"a", "b"}
    assert len(consensus({"a": a, "b": b, "c": c}, k=1)) == 6  # every distinct (place, class)
    with pytest.raises(ValueError):
        consensus({"a": a}, k=2)


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
