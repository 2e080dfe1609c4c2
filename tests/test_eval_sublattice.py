"""benchmarks/eval_sublattice.py: how well the sublattice check points at the consensus' label errors."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def benches():
    modules = []
    try:
        for name in ("eval_conditions", "eval_sublattice"):
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # its dataclasses look their module up
            spec.loader.exec_module(module)
            modules.append(module)
        yield modules
    finally:
        sys.modules.pop("eval_conditions", None)
        sys.modules.pop("eval_sublattice", None)


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
