"""benchmarks/eval_mixes.py: every mix of network sets, one network per slot, scored as a consensus."""

import dataclasses

import pytest

from ._benchmarks import benchmark_modules


@pytest.fixture(scope="module")
def benches():
    with benchmark_modules("eval_conditions", "eval_mixes") as modules:
        yield modules


def test_every_mix_is_scored_and_a_whole_set_matches_eval_conditions(benches, tmp_path):
    pytest.importorskip("torch")
    from napari_hrtem.models.registry import load_network

    conditions, mixes = benches
    items = conditions.load_or_simulate(conditions.CONDITIONS["table1-50kV"], 1, 64, 2026, str(tmp_path))
    low = [load_network(n) for n in ("unet", "unetpp", "msdnet")]
    high = [load_network(n) for n in ("unet-300kv", "unetpp-300kv", "msdnet-300kv")]
    scores = mixes.score_mixes({"low": low, "high": high}, items)
    assert len(scores) == 8 and "low / high / low" in scores
    whole = conditions.score_condition(low, items)["consensus"]
    assert scores["low / low / low"] == pytest.approx(whole, nan_ok=True)
    shared = mixes.score_mixes({"low": low, "one": [low[0], low[1], high[2]]}, items)  # one new network
    assert shared["low / low / one"] == scores["low / low / high"]
    assert shared["one / one / one"] == scores["low / low / high"]
    impostor = dataclasses.replace(high[0], name="unet")  # another network under a name taken
    with pytest.raises(SystemExit, match="appears twice"):
        mixes.score_mixes({"a": low, "b": [impostor, *low[1:]]}, items)
    with pytest.raises(SystemExit, match="same number"):
        mixes.score_mixes({"a": low, "b": high[:2]}, items)
