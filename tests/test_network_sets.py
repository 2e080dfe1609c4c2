"""issue 17: the shipped networks come in sets by beam energy; the series' energy picks the set."""

import numpy as np
import pytest

from napari_hrtem.models.registry import (
    DEFAULT_ENERGY_KV,
    available_networks,
    energy_distance,
    network_info,
    network_sets,
    shipped_networks,
)


def _shipped():
    return [n for n in available_networks().values() if n.origin == "shipped"]


def test_every_shipped_network_is_chosen_inside_its_energy_range_and_cards_say_it():
    for net in _shipped():
        low, high = net.card.domain.energy  # every shipped card says what energies it was trained at
        inside = (low, (low + high) / 2, high)
        assert all(energy_distance(net, kv) == 0.0 for kv in inside)
        # it runs somewhere in its range (at 80 kV the narrower 80 kV set runs, not the 50-80 kV one)
        assert any(net.name in [n.name for n in shipped_networks(kv * 1e3)] for kv in inside)
        label = network_info(net).label
        assert (f"{low:g} kV" if low == high else f"{low:g}-{high:g} kV") in label, label


def test_a_set_is_the_nearest_and_the_unknown_energy_is_the_default():
    from napari_hrtem.analysis.combiner import shipped_combiners

    assert [n.name for n in shipped_networks(None)] == [n.name for n in shipped_networks(DEFAULT_ENERGY_KV * 1e3)]
    sets = network_sets()
    assert [s.combiner for s in sets if s.combiner] and {s.combiner for s in sets} == {
        f for f, _ in shipped_combiners()
    }
    nets = {n.name: n for n in _shipped()}
    for found in sets:
        assert {nets[name].card.architecture for name in found.names} == {"unet", "unetpp", "msdnet"}  # whole sets
    for kv in (30, 50, 60, 80, 120, 200, 300, 1000):
        chosen = tuple(n.name for n in shipped_networks(kv * 1e3))
        (found,) = [s for s in sets if s.names == chosen]
        assert all(found.distance(kv) <= other.distance(kv) for other in sets)  # no other set is nearer
    for kv in (50, 80, 300):  # the benchmark's energies: each inside the range of the set that runs there
        chosen = tuple(n.name for n in shipped_networks(kv * 1e3))
        assert [s for s in sets if s.names == chosen][0].distance(kv) == 0.0


def _renamed(net, name, energy):
    """The shipped network under another name (so in no shipped combiner), trained at ``energy`` kV."""
    from dataclasses import replace

    return replace(net, name=name, card=replace(net.card, name=name, domain=replace(net.card.domain, energy=energy)))


def test_a_shipped_combiner_defines_a_set_and_other_networks_join_by_overlapping_energies():
    from napari_hrtem.analysis.combiner import shipped_combiners

    nets = {n.name: n for n in _shipped()}
    sets = network_sets(nets)
    for filename, combiner in shipped_combiners():  # each shipped combiner's networks are one set
        (found,) = [s for s in sets if s.combiner == filename]
        assert found.names == tuple(sorted(combiner.networks))
        low, high = found.energy
        for name in combiner.networks:  # the energies all of them were trained at
            assert nets[name].card.domain.energy[0] <= low <= high <= nets[name].card.domain.energy[1]
    assert {name for s in sets for name in s.names} == set(nets)  # every shipped network is in a set
    extra = {
        "unet-wide": _renamed(nets["unet"], "unet-wide", (50.0, 200.0)),
        "unetpp-wide": _renamed(nets["unetpp"], "unetpp-wide", (150.0, 250.0)),
    }
    both = {**nets, **extra}
    (wide,) = [s for s in network_sets(both) if s.combiner is None]  # overlapping ranges: one set, their union
    assert wide.names == ("unet-wide", "unetpp-wide") and wide.energy == (50.0, 250.0)
    assert [n.name for n in shipped_networks(200e3, both)] == ["unet-wide", "unetpp-wide"]
    assert [n.name for n in shipped_networks(300e3, both)] == [n.name for n in shipped_networks(300e3, nets)]


def test_the_narrowest_set_holding_the_energy_is_chosen():
    nets = {n.name: n for n in _shipped()}
    narrow = {**nets, "unet-65kv": _renamed(nets["unet"], "unet-65kv", (65.0, 65.0))}
    assert [n.name for n in shipped_networks(65e3, narrow)] == ["unet-65kv"]  # inside 50-80 kV too, but narrower
    assert [n.name for n in shipped_networks(60e3, narrow)] == [n.name for n in shipped_networks(60e3, nets)]
    by_combiner = {s.combiner: s.names for s in network_sets(nets)}
    for kv, combiner in ((70, "consensus.json"), (80, "consensus-80kv.json"), (120, "consensus-80kv.json")):
        # 80 kV lies in the 50-80 kV and the 80 kV sets: the narrower runs; 120 kV is as far from both: the same
        assert tuple(n.name for n in shipped_networks(kv * 1e3, nets)) == by_combiner[combiner], kv
    for kv in (30, 50, 60, 65, 70, 80, 90, 150, 300, 1000):  # the rule, on the shipped sets
        chosen = tuple(n.name for n in shipped_networks(kv * 1e3, nets))
        best = min(network_sets(nets), key=lambda s: (s.distance(kv), s.energy[1] - s.energy[0], s.energy))
        assert chosen == best.names


def test_predict_consensus_without_networks_runs_the_set_for_the_series_energy(tiny_series):
    import napari_hrtem as hrtem

    images, sampling, _ = tiny_series
    for energy in (80e3, 300e3):
        series = hrtem.FocalSeries(np.asarray(images), sampling, energy, None, ["tiny"], {})
        prediction = hrtem.predict_consensus(None, series)
        assert sorted(n.name for n in prediction.networks) == sorted(n.name for n in shipped_networks(energy))
        assert not any("no beam energy" in note for note in prediction.notes)
    unknown = hrtem.FocalSeries(np.asarray(images), sampling, None, None, ["tiny"], {})
    prediction = hrtem.predict_consensus(None, unknown)
    assert sorted(n.name for n in prediction.networks) == sorted(n.name for n in shipped_networks(None))
    assert any(note.startswith("no beam energy known") for note in prediction.notes)


@pytest.mark.parametrize("kv", [80, 300])
def test_cli_predict_energy_picks_the_networks(tmp_path, tiny_series, kv, capsys):
    from napari_hrtem.cli import main

    images, sampling, _ = tiny_series
    path = tmp_path / "series.npz"
    np.savez(path, images=np.asarray(images), sampling=sampling)
    assert main(["predict", str(path), "--energy", str(kv), "--out", str(tmp_path / "out")]) == 0
    names = ", ".join(n.name for n in shipped_networks(kv * 1e3))
    assert f"beam energy {kv} kV: shipped networks {names}" in capsys.readouterr().err
