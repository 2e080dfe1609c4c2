"""benchmarks/eval_sublattice.py: how well the sublattice check points at the consensus' label errors."""

import pytest

from ._benchmarks import benchmark_modules


@pytest.fixture(scope="module")
def benches():
    with benchmark_modules("eval_conditions", "eval_sublattice") as modules:
        yield modules


def test_counts_add_up_on_a_simulated_series(benches, tmp_path):
    pytest.importorskip("torch")
    from napari_hrtem.models.registry import shipped_networks

    conditions, bench = benches
    items = conditions.load_or_simulate(conditions.CONDITIONS["table1-50kV"], 1, 64, 2026, str(tmp_path))
    counts = bench.check_series(shipped_networks(50e3), items)
    assert set(counts) == set(bench.COLUMNS) and counts["series"] == 1
    assert counts["consensus sites"] > 0
    assert counts["swaps"] <= counts["wrong"] <= counts["consensus sites"]
    assert (
        counts["marked and wrong or false"] <= counts["marked"]
        and counts["swaps within near of a mark"] <= counts["swaps"]
    )
    marked = int(counts["series with swaps: marked"].split()[0]) + int(
        counts["series without swaps: marked"].split()[0]
    )
    assert marked == int(counts["marked"] > 0)
