"""benchmarks/eval_separability.py: the oracle column classifier and the consensus' single-S errors (issue 17)."""

import numpy as np
import pytest

from ._benchmarks import benchmark_modules


@pytest.fixture(scope="module")
def bench():
    with benchmark_modules("eval_conditions", "eval_carbon_patches", "eval_separability") as modules:
        yield modules[-1]


def _honeycomb(n: int = 8, a: float = 3.16):
    """Mo and S sites of a flat 2H-MoS2 layer seen along [001], ``(y, x)`` Å."""
    a1, a2 = np.array([0.0, a]), np.array([a * np.sqrt(3) / 2, a / 2])
    cells = np.array([i * a1 + j * a2 for i in range(n) for j in range(n)])
    return cells, cells + (a1 + a2) / 3  # S sites at a / sqrt(3) from three Mo


def test_the_empty_sulphur_sites_are_the_removed_columns(bench):
    mo, s = _honeycomb()
    rng = np.random.default_rng(0)
    gone = rng.choice(len(s), 6, replace=False)
    kept = np.delete(s, gone, axis=0)
    empty = bench.empty_sulphur_sites(mo, kept)
    # every removed column with Mo around it is found once; nothing else (not the hexagon centres)
    from scipy.spatial import cKDTree

    d, j = cKDTree(s[gone]).query(empty)
    assert np.all(d < 1e-6) and len(set(j.tolist())) == len(empty)
    interior = [g for g in gone if len(cKDTree(mo).query_ball_point(s[g], 2.3)) == 3]
    assert len(empty) >= len(interior) > 0
    assert len(bench.empty_sulphur_sites(mo, s)) == 0  # a whole layer has none
    assert bench.empty_sulphur_sites(mo[:1], kept).shape == (0, 2)


def test_the_consensus_breakdown_counts_each_single_s_call_and_column_once(bench):
    mo, s = _honeycomb(4)
    true_yx = np.concatenate([mo, s[1:]])  # s[0] is an empty sulphur site
    true_classes = np.array([0] * len(mo) + [2, 2] + [1] * (len(s) - 3))
    found_yx = np.concatenate([true_yx[:-1], s[:1], [[-9.0, -9.0]]]) + 0.05
    found_classes = true_classes[:-1].copy()
    found_classes[0] = 2  # a Mo called S
    found_classes[len(mo) + 1] = 1  # the second true S called S2
    found_classes[len(mo) + 2] = 2  # an S2 called S
    found_classes = np.concatenate([found_classes, [2, 2]])  # S on the empty site, and far away
    out = bench.consensus_breakdown(found_yx, found_classes, true_yx, true_classes)
    assert out == {
        "right": 1,
        "on S2": 1,
        "on Mo": 1,
        "on empty site": 1,
        "elsewhere": 1,
        "as S2": 1,
        "as Mo": 0,
        "missed": 0,
    }
    assert bench.consensus_breakdown(np.zeros((0, 2)), np.zeros(0), true_yx, true_classes)["missed"] == 2


def test_the_oracle_trains_on_the_patches_of_a_simulated_series(bench, tiny_series):
    pytest.importorskip("torch")
    images, sampling, sample = tiny_series
    x, states, under = bench.scored_sites([(images, sampling, sample.sites, sample.classes)], None, 6)
    n_s_type = int(np.sum(sample.classes > 0))
    assert x.shape[1:] == (3, 13, 13) and len(x) == len(states) == len(under) and not under.any()
    assert np.sum(states < 2) == n_s_type and np.all(np.isin(states, (0, 1, 2)))
    centre = bench.patches(np.arange(25.0).reshape(1, 5, 5), [[2.2, 1.8]], 1)
    assert centre.shape == (1, 1, 3, 3) and centre[0, 0, 1, 1] == 12.0
    model = bench.train_oracle(x, states, epochs=1, batch=32, width=4)
    log_p = bench.log_probabilities(model, x[:10])
    assert log_p.shape == (10, 3) and np.all(np.isfinite(log_p))
    assert np.allclose(np.exp(log_p).sum(axis=1), 1.0, atol=0.1)  # a mean of log-probabilities
    score = bench.single_s_score(log_p)
    threshold = bench.best_threshold(score, states[:10] == 1)
    assert -6 <= threshold <= 6 and bench.f1(score > threshold, states[:10] == 1)[0] >= 0
