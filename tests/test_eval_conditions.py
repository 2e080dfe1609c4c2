"""benchmarks/eval_conditions.py: the held-out table of issue 17 (network × condition × class), in quick mode."""

import csv
import math
import re

import numpy as np
import pytest

from ._benchmarks import benchmark_modules


@pytest.fixture(scope="module")
def bench():
    with benchmark_modules("eval_conditions") as (module,):
        yield module


def test_quick_table_has_every_network_and_condition(bench, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "table.csv"
    cache = tmp_path / "cache"
    from napari_hrtem.models.registry import shipped_networks

    rows = bench.main(["--quick", "--csv", str(out), "--cache", str(cache)])
    conditions = list(bench.CONDITIONS)
    # the default set is the shipped one that predict picks for each condition's beam energy
    chosen = {c: [n.name for n in shipped_networks(bench.CONDITIONS[c].energy)] for c in conditions}
    expected = {(n, c) for c in conditions for n in [*chosen[c], "consensus"]}
    assert {(r["network"], r["condition"]) for r in rows} == expected and len(rows) == len(expected)
    assert rows[-1]["network"] == "consensus"
    for r in rows:
        assert r["series"] == 1
        for column in ("overall", *bench.CLASSES):
            assert math.isnan(r[column]) or 0.0 <= r[column] <= 1.0, r
        assert not math.isnan(r["overall"]), r  # every series has Mo and S2 columns
    # the done-when targets are marked where one applies: every network in table1-50kV, the consensus everywhere
    marked = {(r["network"], r["condition"]) for r in rows if r["targets"]}
    assert {("consensus", c) for c in conditions} | {(n, "table1-50kV") for n in chosen["table1-50kV"]} == marked
    marks = [mark for r in rows if r["targets"] for mark in r["targets"].split("; ")]
    assert all(re.fullmatch(r"(overall|Mo|S2|S)≥(best|[0-9.]+) (met|missed|no sites)", mark) for mark in marks), marks
    printed = capsys.readouterr().out
    assert all(f"| {n} | {c} |" in printed for n, c in expected)
    with open(out, newline="", encoding="utf-8") as f:
        written = list(csv.DictReader(f))
    assert [(r["network"], r["condition"]) for r in written] == [(r["network"], r["condition"]) for r in rows]
    assert list(written[0]) == ["network", "condition", "series", "overall", "Mo", "S2", "S", "targets"]
    # the cache holds one .npz per condition, and a second run scores the very same series
    assert len(list(cache.glob("*.npz"))) == len(conditions)
    net = chosen["80kV"][0]  # a network of the set that runs at 80 kV
    again = bench.main(["--quick", "--cache", str(cache), "--networks", net, "--conditions", "80kV"])
    assert [(r["network"], r["condition"]) for r in again] == [(net, "80kV"), ("consensus", "80kV")]
    first = next(r for r in rows if r["network"] == net and r["condition"] == "80kV")
    assert again[0]["overall"] == first["overall"]
    # two sets side by side on the same series: rows named "network (set)", each set with its consensus
    both = bench.main(
        ["--quick", "--cache", str(cache), "--conditions", "80kV", "--sets", f"a={net}", f"b=unetpp,{net}"]
    )
    assert [r["network"] for r in both] == [f"{net} (a)", "consensus (a)", "unetpp (b)", f"{net} (b)", "consensus (b)"]
    assert both[0]["overall"] == both[3]["overall"] == first["overall"]
    # both consensus rules on the same sites: the package's first, each marked against the targets
    rules = bench.main(["--quick", "--cache", str(cache), "--conditions", "80kV", "--rules", "sum", "same-class"])
    names = [r["network"] for r in rules]
    assert names[-2:] == ["consensus", "consensus, same-class rule"]
    assert next(r for r in rules if r["network"] == net)["overall"] == first["overall"]
    assert all(r["targets"].startswith("overall≥0.995") for r in rules[-2:])
    with pytest.raises(SystemExit, match="--sets takes"):
        bench.main(["--quick", "--cache", str(cache), "--sets", "nothing"])
    capsys.readouterr()
    bench.main(["--quick", "--cache", str(cache), "--conditions", "80kV", "--networks", "unet", "--bootstrap"])
    printed = capsys.readouterr().out
    assert "Bootstrap standard deviation" in printed and "| unet | 80kV | ± 0.0000 |" in printed  # one series
    assert "| consensus | 80kV | unet | " in printed  # paired against the best network


def test_the_bootstrap_spread_is_zero_for_identical_series_and_grows_with_their_differences(bench):
    from napari_hrtem.analysis.metrics import atomic_f1

    truth = [[0.0, 0.0], [0.0, 3.0], [3.0, 0.0]]
    right = atomic_f1(truth, [0, 1, 2], truth, [0, 1, 2])
    wrong = atomic_f1(truth, [0, 1, 1], truth, [0, 1, 2])
    assert bench.bootstrap_sd([right] * 10, "overall") == 0.0
    assert bench.bootstrap_sd([right, wrong] * 5, "S") > 0.05


def test_the_paired_bootstrap_sees_a_steady_difference_that_each_rows_own_spread_hides(bench):
    from napari_hrtem.analysis.metrics import atomic_f1

    # 40 series of 10 to 49 columns; both rows miss the same 0-8 columns of each, the reference one more
    def scores(m, missed):
        t = np.stack([np.zeros(m), 3.0 * np.arange(m)], axis=1)
        return atomic_f1(t[missed:], np.zeros(m - missed, int), t, np.zeros(m, int))

    shared = [(m * 7) % 9 for m in range(10, 50)]
    better = [scores(m, k) for m, k in zip(range(10, 50), shared)]
    worse = [scores(m, k + 1) for m, k in zip(range(10, 50), shared)]
    d, sd = bench.paired_bootstrap(better, worse)
    assert d > 3 * sd > 0 and sd < bench.bootstrap_sd(better, "overall") / 2
    assert bench.paired_bootstrap(better, better) == (0.0, 0.0)
    with pytest.raises(ValueError, match="same series"):
        bench.paired_bootstrap(better, better[:3])


def test_conditions_change_one_thing_each(bench):
    c = bench.CONDITIONS
    assert c["80kV"].ranges()["microscope"]["energy"] == 80e3
    assert c["300kV"].ranges()["microscope"]["energy"] == 300e3
    assert c["table1-50kV"].ranges()["microscope"]["energy"] == 50e3
    assert c["contamination-6A"].ranges()["sample"]["contamination_thickness"] == [6.0, 6.0]
    assert c["table1-50kV"].ranges()["sample"]["contamination_thickness"] in ([0.0, 0.0], 0.0)
