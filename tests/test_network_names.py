"""Issue 15, item 1: user networks are safe and visible (the core side).

A user network never takes a shipped network's name: saving one is refused with a free name
suggested (library, CLI and widget share :func:`napari_hrtem.training.jobs.check_network_target`
and :func:`napari_hrtem.training.trainer.save_network`); a user card found on disk with a shipped
name is listed under a distinct name (``unet-user``) and the shipped network stays what
``load_network("unet")`` gives; every network's origin, validation F1, training beam energy and
sampling come from :func:`napari_hrtem.models.registry.network_info`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_hrtem.models.registry import (
    WEIGHTS_DIR,
    available_networks,
    load_network,
    network_info,
    scan_networks,
)
from napari_hrtem.names import check_user_network_name, free_network_name


@pytest.fixture()
def user_dir(tmp_path, monkeypatch):
    """An empty user networks folder (platformdirs) in a temporary place."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    from napari_hrtem.models.registry import user_networks_dir

    folder = user_networks_dir()
    folder.mkdir(parents=True)
    return folder


def install(folder: Path, stem: str, f1: float | None = 0.024) -> Path:
    """A copy of the shipped MSD-net as ``<stem>.json`` / ``<stem>.pt`` in ``folder`` with a low F1."""
    src = load_network("msdnet")
    shutil.copyfile(src.weights, folder / f"{stem}.pt")
    card = dict(src.card.to_dict(), name=stem)
    if f1 is not None:
        card["validation"] = dict(scores=dict(overall=dict(f1=f1)))
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(card))
    return path


def shipped_files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(WEIGHTS_DIR.iterdir()) if p.is_file()}


def test_free_network_name():
    assert free_network_name("unet") == "unet-2"  # shipped
    assert free_network_name("UNet") == "UNet-2"  # any case
    assert free_network_name("consensus") == "consensus-2"  # reserved
    assert free_network_name("my-unet") == "my-unet"
    assert free_network_name("my-unet", ["my-unet", "MY-UNET-2"]) == "my-unet-3"
    assert len(free_network_name("a" * 64, ["a" * 64])) == 64
    assert free_network_name("../x") == "network"  # never a path


def test_shipped_name_refused_with_a_free_suggestion():
    with pytest.raises(ValueError, match=r"shipped network's name.*the shipped unet is kept.*'unet-3'"):
        check_user_network_name("unet", taken=["unet-2"])


def test_check_network_target_in_the_user_folder(user_dir):
    from napari_hrtem.training.jobs import check_network_target, free_name

    with pytest.raises(ValueError, match="'msdnet-2'"):
        check_network_target("msdnet", "my-msdnet", user_dir, overwrite=True)  # even with overwrite
    install(user_dir, "mine")
    with pytest.raises(ValueError, match=r"already exists; choose another name \(e.g. 'mine-2'\)"):
        check_network_target("mine", "my-unet", user_dir, overwrite=False)
    assert check_network_target("mine", "my-unet", user_dir, overwrite=True) == "mine"
    assert free_name("mine") == "mine-2" and free_name("my-unet") == "my-unet"
    # another folder (not the user's) may hold a network called unet: it is never scanned by default
    assert check_network_target("unet", "x", user_dir.parent, overwrite=True) == "unet"


def test_save_network_refuses_a_shipped_name_in_the_user_folder(user_dir):
    from napari_hrtem.models.registry import build_model
    from napari_hrtem.training.trainer import save_network

    net = load_network("msdnet")
    model = build_model("msdnet", n_images=3, n_classes=4, **net.card.config)
    before = shipped_files()
    with pytest.raises(ValueError, match="shipped network's name"):
        save_network(model, user_dir, "msdnet", net.card)
    assert list(user_dir.iterdir()) == [] and shipped_files() == before


def test_user_card_with_a_shipped_name_is_listed_apart_and_the_shipped_one_kept(user_dir):
    """An older version saved a 2-step network as ``unet`` in the user folder: the shipped U-Net stays
    ``unet``; the user's is listed (and loadable) as ``unet-user``, and says so."""
    before = shipped_files()
    install(user_dir, "unet")
    install(user_dir, "unet-user")  # that name is taken too: the clash gets the next free one
    scan = scan_networks()
    assert scan.networks["unet"].weights.parent == WEIGHTS_DIR and scan.networks["unet"].origin == "shipped"
    assert load_network("unet").weights == WEIGHTS_DIR / "unet.pt"
    renamed = scan.networks["unet-user-2"]
    assert renamed.weights == user_dir / "unet.pt" and renamed.renamed_from == "unet" and renamed.origin == "user"
    assert [(p.name, name) for p, name, _ in scan.renamed] == [("unet.json", "unet-user-2")]
    assert "shipped" in scan.renamed[0][2] and not scan.ignored
    assert load_network("unet-user-2").weights == user_dir / "unet.pt"
    assert load_network("unet-user").weights == user_dir / "unet-user.pt"
    assert shipped_files() == before

    from napari_hrtem.api import describe_network

    assert describe_network("unet-user-2").startswith("user (its card names it 'unet', a shipped name), msdnet")
    assert describe_network("unet").startswith("shipped, unet")


def test_network_info_origin_f1_energy_sampling(user_dir):
    info = network_info(load_network("unet"))
    f1 = load_network("unet").card.validation["scores"]["overall"]["f1"]
    # issue 17 round 3: the shipped U-Net was fine-tuned at 50 and 80 kV (its energy: the middle of the range)
    assert (info.origin, info.energy, info.f1) == ("shipped", 65.0, pytest.approx(f1))
    assert info.energy_range == (50.0, 80.0)
    assert info.label == f"unet — shipped, F1 {f1:.3f}, 50-80 kV, 0.225 Å/px"
    assert "validation atomic F1" in info.details and "unet.pt" in info.details
    install(user_dir, "mine", f1=0.024)
    mine = network_info(available_networks()["mine"])
    assert mine.origin == "user" and mine.label.startswith("mine — user, F1 0.024, 50-80 kV")
    install(user_dir, "nof1", f1=None)
    card = json.loads((user_dir / "nof1.json").read_text())
    card.pop("validation", None)
    card.pop("domain", None)
    (user_dir / "nof1.json").write_text(json.dumps(card))
    assert network_info(load_network("nof1")).label == "nof1 — user, F1 n/a, 0.225 Å/px"


def test_column_probability_maps_and_running_events(tiny_series):
    from napari_hrtem.api import iter_predict_consensus

    images, sampling, _ = tiny_series
    steps = iter_predict_consensus(["unet"], images, sampling=sampling, column_probability=True)
    events = []
    while True:
        try:
            events.append(next(steps))
        except StopIteration as end:
            prediction = end.value
            break
    assert [(e.stage, e.done, e.total, e.info.get("running", False)) for e in events] == [
        ("running unet", 0, 1, True),
        ("unet done", 1, 1, False),
    ]
    column = prediction.column_probability["unet"]
    net_sampling = load_network("unet").card.sampling
    assert column.dtype == np.float16 and column.ndim == 2
    assert abs(column.shape[0] - round(128 * sampling / net_sampling)) <= 2
    assert 0.0 <= float(column.min()) and float(column.max()) <= 1.0 and float(column.max()) > 0.5
    # the maps' peaks are the network's sites
    sites = prediction.results["unet"]
    pix = np.round(sites.yx / net_sampling).astype(int)
    pix = pix[(pix >= 0).all(1) & (pix[:, 0] < column.shape[0]) & (pix[:, 1] < column.shape[1])]
    assert float(np.median(column[pix[:, 0], pix[:, 1]])) > 0.5
    assert prediction.probabilities is None  # the class maps are dropped as before
