"""benchmarks/eval_carbon_patches.py: atomic F1 under the carbon patches and outside them (issue 17)."""

import numpy as np
import pytest

from ._benchmarks import benchmark_modules


@pytest.fixture(scope="module")
def benches():
    with benchmark_modules("eval_conditions", "eval_carbon_patches") as modules:
        yield modules


def test_the_replayed_draw_keeps_the_carbon_and_the_parts_add_up(benches, tmp_path):
    pytest.importorskip("torch")
    from napari_hrtem.models.registry import shipped_networks

    conditions, bench = benches
    cache = str(tmp_path)
    # the series cache as eval_conditions.py makes it; the replay must give the very same series
    cached = conditions.load_or_simulate(conditions.CONDITIONS[bench.CONDITION], 1, 96, 5, cache)
    items, carbon = bench.carbon_of(1, 96, 5, cache)
    assert np.array_equal(items[0][0], cached[0][0])
    (_, sampling, true_yx, true_classes), atoms = items[0], carbon[0]
    # 6 Å of amorphous carbon over half the field: many atoms, inside the field, part of the columns under it
    extent = 96 * sampling
    assert len(atoms) > 50 and np.all((atoms >= -1) & (atoms <= extent + 1))
    under = bench.under_carbon(true_yx, atoms, 2.0)
    assert 0 < under.sum() < len(true_yx)
    assert bench.carbon_of(1, 96, 5, cache)[1][0].tolist() == atoms.tolist()  # read back from its cache
    uncached, kept = bench.carbon_of(1, 96, 5, None)  # kept while simulating, without a replay
    assert np.array_equal(uncached[0][0], cached[0][0]) and kept[0].tolist() == atoms.tolist()
    scores = bench.score_parts(shipped_networks(50e3), items, carbon)
    counts = scores.pop("single-S columns")
    assert counts["under carbon"] + counts["outside"] == int(np.sum(true_classes == 2))
    assert set(scores) == {"unet", "unetpp", "msdnet", "consensus"}
    for parts in scores.values():
        found = sum(parts[p]["overall"]["tp"] + parts[p]["overall"]["fn"] for p in bench.PARTS)
        assert found == len(true_yx)  # every true column is in exactly one part
