"""The networks' training domain (model cards) and the warnings for input outside it (issue #12)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import napari_hrtem as hrtem
from napari_hrtem.analysis.domain import ORDER_MARGIN, domain_warnings
from napari_hrtem.cli import main
from napari_hrtem.models.card import Domain, ModelCard, NetworkError, check_card

from .conftest import REALDATA, needs_realdata

WEIGHTS = Path(hrtem.__file__).parent / "models" / "weights"
NAMES = ("unet", "unetpp", "msdnet")


@pytest.fixture(scope="module")
def networks():
    return [hrtem.load_network(name) for name in NAMES]


def _simulate(**microscope):
    return hrtem.simulate(
        size=112,
        sampling=0.22,
        graphene_layers=1,
        microscope=hrtem.MicroscopeParameters(dose=3e4, **microscope),
        phonon_configs=1,
        seed=3,
    )


@pytest.fixture(scope="module")
def in_domain():
    return _simulate()


@pytest.fixture(scope="module")
def at_300kv():
    return _simulate(energy=300e3)


# --- the model cards ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_shipped_cards_have_a_valid_domain_that_survives_a_round_trip(name):
    data = json.loads((WEIGHTS / f"{name}.json").read_text(encoding="utf-8"))
    check_card(data, name)
    card = ModelCard.from_dict(data, name)
    domain = card.domain
    assert isinstance(domain, Domain)
    # keV; issue 17 rounds 3, 5, 15 and 19 (the MSD-net since round 19)
    assert domain.energy == (50.0, 80.0)
    assert domain.sampling == (0.215, 0.235)  # Å/px (training/datasets.py)
    assert domain.sampling[0] <= card.sampling <= domain.sampling[1]
    assert domain.n_images == card.n_images == 3
    assert domain.defocus_step == (49.0, 51.0) and domain.first_defocus == (-150.0, 50.0)
    assert domain.defocus_convention.startswith("abTEM")
    assert domain.Cs == (-1.5e5, 1.5e5) and domain.C12 == (0.0, 25.0) and domain.C21 == (0.0, 600.0)
    assert domain.focal_spread == (5.0, 10.0) and domain.dose == pytest.approx((10**2.5, 1e5), rel=1e-3)
    assert domain.material == "MoS2" and domain.classes == card.classes
    assert domain.support == "graphene" and domain.support_layers == (0.0, 6.0)
    # issue 17 round 19: the recipe names the stores each network was last fine-tuned on
    recipe = domain.recipe["parameters"]
    assert all(f"{store}_r14.zarr" in recipe for store in ("t50", "t80", "c50"))
    assert card.to_dict() == data
    again = ModelCard.from_dict(json.loads(json.dumps(card.to_dict())), name)
    assert again == card


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(energy=[300, 50]), "low <= high"),
        (dict(sampling=[0.2, float("nan")]), "finite"),
        (dict(energy=[0, 50]), "energy must be > 0"),
        (dict(dose=[-1, 5]), "dose must be > 0"),
        (dict(defocus_step="50"), "range [low, high]"),
        (dict(n_images=0), "n_images"),
        (dict(classes="Mo"), "classes must be a list of names"),
        (dict(recipe="table 1"), "recipe must be an object"),
    ],
)
def test_check_card_refuses_a_bad_domain(change, message):
    data = json.loads((WEIGHTS / "unet.json").read_text(encoding="utf-8"))
    data["domain"].update(change)
    with pytest.raises(NetworkError, match="unet.json: domain") as info:
        check_card(data, "unet.json")
    assert message in str(info.value)


def test_a_newly_trained_card_gets_the_table1_domain():
    from napari_hrtem.training.jobs import build_card

    card = build_card("unet", {}, n_images=3, sampling=0.2246, training={})
    assert card.domain is not None and card.domain.energy == (50.0, 50.0)
    assert card.domain.sampling == (0.215, 0.235) and card.domain.defocus_step == (49.0, 51.0)
    assert ModelCard.from_dict(card.to_dict(), require_sha256=False) == card


# --- input against the domain ------------------------------------------------------------------


def test_in_domain_series_gives_no_warning(in_domain, networks):
    assert domain_warnings(in_domain.series, networks) == []


def test_300_kv_series_is_named_with_the_networks_energy(at_300kv, networks):
    series = dataclasses.replace(at_300kv.series, sources=["tem300.npz"])
    assert domain_warnings(series, networks) == [  # one line per trained energy range
        "tem300.npz: beam energy 300 kV, but unet, unetpp, msdnet were trained at 50-80 kV",
    ]


def test_networks_with_different_ranges_get_one_line_each(at_300kv, networks):
    def trained_at(net, energy):
        card = dataclasses.replace(net.card, domain=dataclasses.replace(net.card.domain, energy=energy))
        return dataclasses.replace(net, card=card)

    unet, unetpp, msdnet = networks
    mixed = [trained_at(unet, (50.0, 50.0)), trained_at(unetpp, (50.0, 80.0)), trained_at(msdnet, (50.0, 50.0))]
    assert domain_warnings(at_300kv.series, mixed) == [
        "focal series: beam energy 300 kV, but unet, msdnet were trained at 50 kV",
        "focal series: beam energy 300 kV, but unetpp was trained at 50-80 kV",
    ]


def test_defocus_step_of_80_angstrom_is_named(networks):
    sim = _simulate(defocus_steps=(80.0, 80.0))
    warnings = domain_warnings(sim.series, networks)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("focal series: defocus steps 80, 80 Å (defocus -50, 30, 110 Å, abTEM convention)")
    assert warnings[0].endswith("but unet, unetpp, msdnet were trained with steps of 49-51 Å")


def test_decreasing_defocus_and_far_first_defocus_are_named(in_domain, networks):
    series = dataclasses.replace(in_domain.series, defocus=[50.0, 0.0, -50.0])
    (warning,) = domain_warnings(series, networks)
    assert "the frames are in order of decreasing defocus" in warning
    series = dataclasses.replace(in_domain.series, defocus=[-300.0, -250.0, -200.0])
    (warning,) = domain_warnings(series, networks)
    assert warning == (
        "focal series: first defocus -300 Å, but unet, unetpp, msdnet were trained with a first defocus of "
        "-150 to 50 Å (abTEM convention)"
    )


def test_sampling_outside_the_training_range(in_domain, networks):
    series = dataclasses.replace(in_domain.series, sampling=0.2842)
    assert domain_warnings(series, networks, order=False) == [
        "focal series: sampling 0.2842 Å/px, but unet, unetpp, msdnet were trained on 0.215-0.235 Å/px images"
    ]


def test_reversed_frames_without_defocus_are_found(in_domain, networks):
    images = in_domain.series.images
    given = hrtem.FocalSeries(images, 0.22, 50e3, None, ["series.npz"])
    notes: list[str] = []
    assert domain_warnings(given, networks, notes=notes) == []
    assert notes and notes[0].startswith("frame order (no defocus recorded)")
    backwards = hrtem.FocalSeries(images[::-1].copy(), 0.22, 50e3, None, ["series.npz"])
    (warning,) = domain_warnings(backwards, networks)
    assert warning.startswith(
        "series.npz: frame order: the networks are more confident with the frames reversed (mean column probability"
    )
    assert "the file records no defocus: check the order" in warning and "--defocus" in warning
    assert ORDER_MARGIN > 0


def test_predict_consensus_and_predict_carry_the_warnings(at_300kv, networks):
    prediction = hrtem.predict_consensus(networks, at_300kv.series)
    assert prediction.warnings[:1] == [
        "focal series: beam energy 300 kV, but unet, unetpp, msdnet were trained at 50-80 kV",
    ]
    # the 50-80 kV networks on a 300 kV series also label like columns side by side (the sublattice check)
    assert all("closer than 2.49 Å, which the MoS2 lattice does not allow" in w for w in prediction.warnings[1:])
    with pytest.warns(UserWarning, match="beam energy 300 kV, but unet was trained at 50-80 kV"):
        sites = hrtem.predict("unet", at_300kv.series)
    assert sites.meta["warnings"][:1] == ["focal series: beam energy 300 kV, but unet was trained at 50-80 kV"]
    assert all("unet site(s) have a neighbour of their own sublattice" in w for w in sites.meta["warnings"][1:])


def test_prepare_focal_series_takes_the_energy(in_domain):
    series = hrtem.FocalSeries(in_domain.series.images, 0.22, 200e3, None, ["a.dm3"])
    prepared = hrtem.prepare_focal_series(series, "unet", energy=300e3)
    assert prepared.series.energy == 300e3 and prepared.series.metadata["energy_source"] == "given"
    assert any("300 kV given; the file records 200 kV" in note for note in prepared.notes)
    with pytest.raises(ValueError, match="beam energy"):
        hrtem.prepare_focal_series(series, "unet", energy=-1.0)


# --- the command line --------------------------------------------------------------------------


def test_cli_writes_and_prints_the_warnings(at_300kv, in_domain, tmp_path, capsys):
    data = tmp_path / "tem.npz"
    np.savez(data, images=at_300kv.series.images, sampling=0.22)  # no energy, no defocus in the file
    out = tmp_path / "out"
    assert main(["predict", str(data), "--networks", "unet", "--energy", "300", "--out", str(out)]) == 0
    sidecar = json.loads((out / "predict.json").read_text(encoding="utf-8"))
    expected = "tem.npz: beam energy 300 kV, but unet was trained at 50-80 kV"
    assert expected in sidecar["warnings"]
    assert sidecar["energy_kv"] == 300 and sidecar["energy_source"] == "given"
    captured = capsys.readouterr()
    assert f"napari-hrtem: warning: {expected}" in captured.err.splitlines()
    assert captured.out.startswith("unet:")  # the result lines come after the warnings

    np.savez(data, images=in_domain.series.images, sampling=0.22)
    assert main(["predict", str(data), "--networks", "unet", "--energy", "50", "--out", str(out)]) == 0
    assert json.loads((out / "predict.json").read_text(encoding="utf-8"))["warnings"] == []
    assert "warning" not in capsys.readouterr().err
    assert main(["predict", str(data), "--energy", "-5", "--out", str(out)]) == 2
    assert "--energy" in capsys.readouterr().err


@needs_realdata
def test_real_300_kv_series_gets_the_beam_energy_warning(tmp_path, capsys):
    files = [str(REALDATA / f"focal_series_img0{i}.dm3") for i in (7, 8, 9)]
    assert main(["predict", *files, "--networks", "unet", "--out", str(tmp_path)]) == 0
    sidecar = json.loads((tmp_path / "predict.json").read_text(encoding="utf-8"))
    where = "focal_series_img07.dm3, focal_series_img08.dm3, focal_series_img09.dm3"
    assert f"{where}: beam energy 300 kV, but unet was trained at 50-80 kV" in sidecar["warnings"]
    assert f"{where}: sampling 0.2842 Å/px, but unet was trained on 0.215-0.235 Å/px images" in sidecar["warnings"]
    assert sidecar["energy_kv"] == 300 and sidecar["energy_source"] == "file"
    assert "napari-hrtem: warning: " + where + ": beam energy 300 kV" in capsys.readouterr().err
