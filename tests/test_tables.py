"""Review tables: the disagreement list (order, words, CSV) and the score table (CSV)."""

import csv

import numpy as np
import pytest

from napari_hrtem.analysis.comparison import disagreements
from napari_hrtem.api import score
from napari_hrtem.io.files import WriteError
from napari_hrtem.io.sites import Sites
from napari_hrtem.io.tables import (
    SCORE_COLUMNS,
    describe_disputed,
    disputedness,
    parse_says,
    review_order,
    write_disagreements_csv,
    write_scores_csv,
)


def _results():
    """Three networks on a small lattice: unet misses one column, msdnet calls another S."""
    yx = np.array([[5.0, 5.0], [5.0, 40.0], [30.0, 10.0], [30.0, 2.0], [60.0, 20.0]])
    classes = np.array([0, 1, 0, 1, 1])
    unet = Sites(yx[1:], classes[1:], np.ones(4))
    msd_classes = classes.copy()
    msd_classes[4] = 2
    return {
        "unet": unet,
        "unetpp": Sites(yx, classes, np.ones(5)),
        "msdnet": Sites(yx + 0.05, msd_classes, np.ones(5)),
    }


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_says_in_words_and_disputedness():
    yx, kind, says = disagreements(_results(), radius=0.5)
    assert sorted(kind) == ["class differs", "missed by unet"]
    missed = says[kind.index("missed by unet")]
    assert parse_says(missed) == {"unet": "missed", "unetpp": "Mo", "msdnet": "Mo"}
    assert describe_disputed(missed) == "unet missed, unetpp Mo, msdnet Mo"
    assert disputedness(missed) == pytest.approx(1 / 3)
    assert disputedness("a: S; b: S2; c: -") == pytest.approx(2 / 3)
    assert disputedness("a: S; b: S") == 0.0
    with pytest.raises(ValueError, match="network: class"):
        parse_says("unet S2")


def test_review_order_by_position_and_by_dispute():
    yx = np.array([[50.0, 1.0], [2.0, 30.0], [3.0, 10.0], [25.0, 5.0]])
    says = ["a: S; b: S2; c: -", "a: S; b: S; c: -", "a: Mo; b: Mo; c: -", "a: S; b: Mo; c: S2"]
    # reading order: band by band of 20 Å from the top, left to right within a band
    assert review_order(yx, says).tolist() == [2, 1, 3, 0]
    # most disputed first (2/3: sites 0 and 3), then by position
    assert review_order(yx, says, "most disputed").tolist() == [3, 0, 2, 1]
    assert review_order(np.zeros((0, 2)), []).tolist() == []
    with pytest.raises(ValueError, match="unknown order"):
        review_order(yx, says, "random")
    with pytest.raises(ValueError, match="2 'says'"):
        review_order(yx, says[:2])


def test_disagreement_csv_positions_in_angstrom_and_what_each_network_says(tmp_path):
    yx, kind, says = disagreements(_results(), radius=0.5)
    order = review_order(yx, says)
    path = write_disagreements_csv(tmp_path / "disputed.csv", yx, kind, says, order)
    rows = _read(path)
    assert list(rows[0]) == ["site", "y", "x", "kind", "unet", "unetpp", "msdnet", "disputedness"]
    assert [r["site"] for r in rows] == ["1", "2"]
    first = rows[0]  # the column unet missed lies at (5, 5) Å: first in reading order
    assert float(first["y"]) == pytest.approx(5.025, abs=1e-3) and float(first["x"]) == pytest.approx(5.025, abs=1e-3)
    assert (first["kind"], first["unet"], first["unetpp"], first["msdnet"]) == ("missed by unet", "missed", "Mo", "Mo")
    second = rows[1]
    assert (second["unet"], second["unetpp"], second["msdnet"]) == ("S2", "S2", "S")
    assert float(second["y"]) == pytest.approx(60.0, abs=0.1)
    # an empty list still writes the header; bad input is refused before anything is written
    empty = write_disagreements_csv(tmp_path / "none.csv", np.zeros((0, 2)), [], [])
    assert empty.read_text().splitlines() == ["site,y,x,kind,disputedness"]
    with pytest.raises(ValueError, match="must match"):
        write_disagreements_csv(tmp_path / "bad.csv", yx, kind[:1], says)
    assert not (tmp_path / "bad.csv").exists()


def test_scores_csv_one_row_per_candidate_and_class(tmp_path):
    results = _results()
    truth = results["unetpp"]
    scores = {name: score(sites, truth, 0.5) for name, sites in results.items() if name != "unetpp"}
    path = write_scores_csv(tmp_path / "scores.csv", scores, reference="labels", radius=0.5)
    rows = _read(path)
    assert tuple(rows[0]) == SCORE_COLUMNS
    assert [(r["candidate"], r["class"]) for r in rows] == [
        (n, c) for n in ("unet", "msdnet") for c in ("Mo", "S2", "S", "overall")
    ]
    unet = {r["class"]: r for r in rows if r["candidate"] == "unet"}
    assert (unet["Mo"]["tp"], unet["Mo"]["fn"], unet["Mo"]["fp"]) == ("1", "1", "0")
    assert float(unet["overall"]["f1"]) == pytest.approx(scores["unet"]["overall"]["f1"], abs=1e-4)
    assert unet["S"]["f1"] == "" and unet["S"]["rms_A"] == ""  # nothing to find, nothing found: no score
    assert {r["reference"] for r in rows} == {"labels"} and {r["radius_A"] for r in rows} == {"0.500"}
    with pytest.raises(ValueError, match="evaluate first"):
        write_scores_csv(tmp_path / "e.csv", {})
    old = path.read_text()
    with pytest.raises(WriteError, match="no_such_folder"):
        write_scores_csv(tmp_path / "no_such_folder" / "s.csv", scores)
    assert path.read_text() == old
