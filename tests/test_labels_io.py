"""Labels CSV + sidecar, the npe2 writer, disagreements between networks, fine-tuning data."""

import json
from pathlib import Path

import numpy as np
import pytest

from napari_hrtem.io.sites import Sites, labels_sidecar_path, read_labels, write_labels


def _sites(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return Sites(rng.uniform(0, 30, (n, 2)), rng.integers(0, 3, n), np.ones(n))


def test_labels_roundtrip_with_sidecar(tmp_path):
    sites = _sites()
    made_by = [f"consensus: {i % 3 + 1} votes" for i in range(len(sites))]
    path = write_labels(tmp_path / "l.csv", sites, made_by, image=["a.dm3"], sampling=0.2)
    back, made, sidecar = read_labels(path)
    assert np.allclose(back.yx, sites.yx, atol=1e-4) and np.array_equal(back.classes, sites.classes)
    assert made == made_by and sidecar["sampling"] == 0.2 and sidecar["image"] == ["a.dm3"]
    assert path.read_text().splitlines()[0] == "y,x,class,confidence"
    # without its sidecar the CSV still loads; the sites are said to come from the file
    labels_sidecar_path(path).unlink()
    back, made, sidecar = read_labels(path)
    assert len(back) == len(sites) and made[0] == "file l.csv" and sidecar == {}
    with pytest.raises(ValueError, match="made_by"):
        write_labels(tmp_path / "m.csv", sites, ["x"])


def test_writer_contribution(tmp_path):
    from napari_hrtem.plugin.writer import write_labels_csv

    sites = _sites()
    data = sites.yx / 0.25
    features = {
        "class": np.array([sites.class_names[c] for c in sites.classes], object),
        "made_by": np.array(["manual"] * len(sites), object),
    }
    paths = write_labels_csv(str(tmp_path / "out"), data, dict(scale=(0.25, 0.25), features=features, name="labels"))
    back, made, _ = read_labels(paths[0])
    assert paths[0].endswith("out.csv") and json.loads(Path(paths[1]).read_text())["layer"] == "labels"
    assert np.allclose(back.yx, sites.yx, atol=1e-4) and made == ["manual"] * len(sites)
    # a per-class layer of a network takes its class from the metadata
    paths = write_labels_csv(
        str(tmp_path / "mo.csv"), data, dict(scale=(0.25, 0.25), metadata=dict(site_class="Mo", source="unet"))
    )
    back, made, _ = read_labels(paths[0])
    assert set(back.classes) == {0} and made[0] == "unet"
    with pytest.raises(ValueError, match="no class"):
        write_labels_csv(str(tmp_path / "x.csv"), data, dict(scale=(0.25, 0.25)))


def test_disagreements():
    from napari_hrtem.analysis.comparison import disagreements

    a = Sites([[0, 0], [5, 5], [10, 10]], [0, 1, 2], np.ones(3))
    b = Sites([[0.1, 0], [5, 5.1]], [0, 2], np.ones(2))
    yx, kind, says = disagreements({"a": a, "b": b}, radius=0.5)
    assert len(yx) == 2
    assert sorted(kind) == ["class differs", "missed by b"]
    assert says[kind.index("class differs")] == "a: S2; b: S"
    yx, kind, _ = disagreements({"a": a, "b": a}, radius=0.5)
    assert len(yx) == 0


def test_labelled_tiles_and_mixing(tiny_series):
    from napari_hrtem.models.registry import available_networks
    from napari_hrtem.simulation.structures import BACKGROUND
    from napari_hrtem.training.finetuning import labelled_dataset, mix_datasets

    images, sampling, sample = tiny_series
    card = available_networks()["unet"].card
    labels = Sites(sample.sites, sample.classes, np.ones(len(sample.sites)))
    real = labelled_dataset(images, sampling, labels, card, tile=64)
    m = len(real["images"])
    assert real["images"].shape[1:] == (3, 64, 64) and real["labels"].shape == (m, 64, 64)
    assert np.all(np.isfinite(real["images"])) and m >= 4
    assert np.any(real["labels"] == 0) and np.mean(real["labels"] == BACKGROUND) > 0.5
    # each tile's sites lie in the tile and agree with its class map
    s = real["sites"][real["site_index"][0] : real["site_index"][1]] / card.sampling
    assert np.all((s >= 0) & (s < 64))
    mixed = mix_datasets(real, dict(images=real["images"][:1], labels=real["labels"][:1]), 0.5)
    assert len(mixed["images"]) == m + 1  # one simulated series against m real tiles repeated once
    mixed = mix_datasets(
        real, dict(images=np.repeat(real["images"], 3, 0), labels=np.repeat(real["labels"], 3, 0)), 0.5
    )
    assert len(mixed["images"]) == 6 * m
    with pytest.raises(ValueError, match="no sites"):
        labelled_dataset(images, sampling, Sites(np.zeros((0, 2)), [], []), card)
