"""issue 17: the shipped networks come in sets by beam energy; the series' energy picks the set."""

import numpy as np
import pytest

from napari_hrtem.models.registry import (
    DEFAULT_ENERGY_KV,
    available_networks,
    energy_distance,
    network_info,
    shipped_networks,
)


def _shipped():
    return [n for n in available_networks().values() if n.origin == "shipped"]


def test_every_shipped_network_is_chosen_inside_its_energy_range_and_cards_say_it():
    for net in _shipped():
        low, high = net.card.domain.energy  # every shipped card says what energies it was trained at
        for kv in (low, (low + high) / 2, high):
            assert energy_distance(net, kv) == 0.0
            assert net.name in [n.name for n in shipped_networks(kv * 1e3)]
        label = network_info(net).label
        assert (f"{low:g} kV" if low == high else f"{low:g}-{high:g} kV") in label, label


def _set_range(networks) -> tuple[float, float]:
    return min(n.card.domain.energy[0] for n in networks), max(n.card.domain.energy[1] for n in networks)


def test_a_set_is_the_nearest_and_the_unknown_energy_is_the_default():
    assert [n.name for n in shipped_networks(None)] == [n.name for n in shipped_networks(DEFAULT_ENERGY_KV * 1e3)]
    sets = {tuple(n.name for n in shipped_networks(kv * 1e3)) for kv in (50, 300)}
    assert len(sets) == 2  # two sets ship
    for kv in (30, 50, 60, 80, 120, 200, 300, 1000):
        chosen = shipped_networks(kv * 1e3)
        assert {n.card.architecture for n in chosen} == {"unet", "unetpp", "msdnet"}  # a whole set
        low, high = _set_range(chosen)
        distance = max(low - kv, kv - high, 0.0)
        for other in sets:
            others = [n for n in _shipped() if n.name in other]
            o_low, o_high = _set_range(others)
            assert distance <= max(o_low - kv, kv - o_high, 0.0)  # no other set is nearer
    low, high = _set_range(shipped_networks(80e3))
    assert low <= 80 <= high  # the 50-80 kV set: 80 kV lies inside it


def test_networks_whose_energy_ranges_overlap_form_one_set():
    from dataclasses import replace

    nets = {n.name: n for n in _shipped()}
    unet = nets["unet"]
    wide = replace(unet, card=replace(unet.card, domain=replace(unet.card.domain, energy=(50.0, 200.0))))
    chosen = [n.name for n in shipped_networks(200e3, {**nets, "unet": wide})]
    assert "unet" in chosen and "unetpp" in chosen and "unetpp-300kv" not in chosen  # 200 kV: inside 50-200
    assert [n.name for n in shipped_networks(300e3, {**nets, "unet": wide})] == [
        n.name for n in shipped_networks(300e3, nets)
    ]


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
