"""The learned consensus (issue 17): a combiner trained on the networks' sites weighs them by what they were worth."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from napari_hrtem.analysis.combiner import (
    COMBINER_FILES,
    Combiner,
    choose_rule,
    fit_combiner,
    shipped_combiner,
)
from napari_hrtem.analysis.consensus import consensus
from napari_hrtem.analysis.metrics import atomic_f1
from napari_hrtem.io.sites import CLASSES, Sites
from napari_hrtem.models.registry import available_networks, shipped_networks


def _net(name: str, sha: str):
    return SimpleNamespace(name=name, card=SimpleNamespace(sha256=sha, classes=CLASSES))


def _sites(yx, classes, confidence, rng, noise=0.05):
    """Sites with per-class probabilities: ``confidence`` for the given class, the rest spread over the others."""
    yx = np.asarray(yx, float) + rng.normal(0, noise, (len(yx), 2))
    classes = np.asarray(classes, int)
    p = np.full((len(yx), 3), 0.0)
    p[np.arange(len(yx)), classes] = confidence
    p += (1 - p.sum(axis=1, keepdims=True)) / 3 * (p == 0)
    s = Sites(yx, classes, p[np.arange(len(yx)), classes])
    s.extra = {f"p_{c}": p[:, i] for i, c in enumerate(CLASSES)}
    return s


def _draw(rng, n=60):
    """One 'series': true columns on a grid; network a right and sure, b and c wrong half the time and unsure."""
    g = np.stack(np.meshgrid(np.arange(8) * 3.0, np.arange(8) * 3.0), -1).reshape(-1, 2)[:n]
    truth = rng.integers(0, 3, len(g))
    wrong = (truth + rng.integers(1, 3, len(g))) % 3
    results = {"a": _sites(g, truth, 0.8, rng)}
    for name in ("b", "c"):
        flip = rng.random(len(g)) < 0.5
        results[name] = _sites(g, np.where(flip, wrong, truth), 0.9, rng)
    return results, g, truth


def test_the_combiner_learns_to_trust_the_network_that_is_right():
    rng = np.random.default_rng(0)
    nets = [_net(n, n * 64) for n in ("a", "b", "c")]
    combiner = fit_combiner([_draw(rng) for _ in range(20)], nets, info=dict(what="test"))
    assert combiner.info["what"] == "test" and combiner.info["columns"]["none"] == 0
    results, truth_yx, truth = _draw(rng)
    learned = consensus(results, rule="learned", combiner=combiner)
    summed = consensus(results, rule="sum")
    f1 = {
        name: atomic_f1(s.yx, s.classes, truth_yx, truth)["overall"]["f1"]
        for name, s in (("learned", learned), ("sum", summed), ("a", results["a"]))
    }
    assert f1["learned"] == pytest.approx(f1["a"]) and f1["learned"] > f1["sum"] + 0.1  # b and c outvote a in the sum
    assert learned.meta["rule"] == "learned" and learned.meta["k"] == 2 and learned.meta["combiner"] == "combiner"
    assert np.all((learned.confidence > 0) & (learned.confidence <= 1))
    # the combiner is bound to its networks, in any order, and to their weights
    assert combiner.matches(list(reversed(nets))) and not combiner.matches([_net("a", "x" * 64), *nets[1:]])
    with pytest.raises(ValueError, match="exactly these networks"):
        consensus({"a": results["a"], "b": results["b"]}, rule="learned", combiner=combiner)
    with pytest.raises(ValueError, match="exactly these networks"):
        consensus(results, rule="learned")


def test_a_combiner_drops_columns_only_an_unreliable_network_finds():
    rng = np.random.default_rng(1)
    nets = [_net(n, n * 64) for n in ("a", "b", "c")]

    def draw():
        results, g, truth = _draw(rng)
        ghost = rng.uniform(30, 60, (15, 2))  # columns c alone reports, none of them real
        c = results["c"]
        extra = _sites(ghost, rng.integers(0, 3, 15), 0.9, rng)
        merged = Sites(
            np.vstack([c.yx, extra.yx]), np.r_[c.classes, extra.classes], np.r_[c.confidence, extra.confidence]
        )
        merged.extra = {k: np.r_[c.extra[k], extra.extra[k]] for k in c.extra}
        return {**results, "c": merged}, g, truth

    combiner = fit_combiner([draw() for _ in range(20)], nets)
    results, g, truth = draw()
    learned = consensus(results, rule="learned", combiner=combiner, k=1)
    assert len(consensus(results, rule="sum", k=1)) == len(g) + 15
    assert len(learned) == len(g)  # the ghosts are gone although one vote would do
    assert len(consensus(results, rule="learned", combiner=combiner, k=3)) <= len(g)


def test_combiner_files_round_trip_and_bad_files_are_refused(tmp_path):
    rng = np.random.default_rng(2)
    nets = [_net(n, n * 64) for n in ("a", "b", "c")]
    combiner = fit_combiner([_draw(rng) for _ in range(3)], nets)
    path = combiner.save(tmp_path / "mine.json")
    back = Combiner.load(path)
    assert back.name == "mine" and back.networks == combiner.networks and np.array_equal(back.weight, combiner.weight)
    results, _, _ = _draw(rng)
    a, b = consensus(results, rule="learned", combiner=combiner), consensus(results, rule="learned", combiner=back)
    assert np.array_equal(a.classes, b.classes) and np.allclose(a.confidence, b.confidence)
    record = json.loads(path.read_text())
    for change, match in (
        (dict(kind="a model card"), "not a napari-hrtem consensus combiner"),
        (dict(weight=record["weight"][:2]), "shapes"),
        (dict(bias=[float("nan")] * 4), "finite"),
        (dict(sha256=["x"]), "one SHA-256 per network"),
    ):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(record | change))
        with pytest.raises(ValueError, match=match):
            Combiner.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON file"):
        Combiner.load(bad)
    bad.write_bytes(b" " * (2 << 20))
    with pytest.raises(ValueError, match="too large"):
        Combiner.load(bad)
    with pytest.raises(ValueError, match="no columns"):
        fit_combiner([], nets)


def test_each_shipped_set_has_its_combiner_and_auto_uses_it_only_for_that_set():
    from dataclasses import replace

    for kv in (50, 300):
        nets = shipped_networks(kv * 1e3)
        combiner = shipped_combiner(nets)
        # a network shipped again without its combiner trained again fails here (SHA-256 of the weights)
        assert combiner is not None, f"no shipped combiner fits the {kv} kV set"
        assert combiner.name in [f.removesuffix(".json") for f in COMBINER_FILES]
        rule, chosen = choose_rule(nets)
        assert rule == "learned" and chosen is not None and chosen.name == combiner.name
        assert choose_rule(nets, "sum") == ("sum", None)
        assert choose_rule(nets, threshold=0.5) == ("sum", None)  # trained at the networks' own thresholds
        assert {"train", "validation"} <= set(combiner.info)  # provenance and figures
        changed = [replace(nets[0], card=replace(nets[0].card, sha256="0" * 64)), *nets[1:]]
        assert choose_rule(changed) == ("sum", None)
        with pytest.raises(ValueError, match="no shipped consensus combiner"):
            choose_rule(changed, "learned")
    with pytest.raises(ValueError, match="unknown consensus rule"):
        choose_rule(shipped_networks(50e3), "vote")
    assert all(n.origin == "shipped" for n in available_networks().values() if n.name in combiner.networks)


def test_predict_consensus_says_which_rule_and_refuses_an_unknown_one_before_any_work(tiny_series):
    import napari_hrtem as hrtem

    images, sampling, _ = tiny_series
    series = hrtem.FocalSeries(np.asarray(images), sampling, 50e3, None, ["tiny"], {})
    learned = hrtem.predict_consensus(None, series)
    assert learned.consensus.meta["rule"] == "learned" and learned.consensus.meta["combiner"] == "consensus"
    assert any(note.startswith("consensus: the learned rule") for note in learned.notes)
    summed = hrtem.predict_consensus(None, series, rule="sum")
    assert summed.consensus.meta["rule"] == "sum" and "consensus: the sum rule" in summed.notes
    for name in summed.results:  # the networks' own sites do not depend on the rule
        assert np.array_equal(summed.results[name].yx, learned.results[name].yx)
    events = []
    with pytest.raises(ValueError, match="unknown consensus rule"):
        hrtem.predict_consensus(None, series, rule="vote", progress=events.append)
    assert events == []  # refused before any network ran
    with pytest.raises(ValueError, match="no shipped consensus combiner"):
        hrtem.predict_consensus(None, series, rule="learned", threshold=0.5)
