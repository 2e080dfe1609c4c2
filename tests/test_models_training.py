import json
import pickle

import numpy as np
import pytest
import torch

from napari_hrtem.models.registry import (
    ARCHITECTURES,
    NetworkError,
    available_networks,
    build_model,
    parameter_count,
    read_network,
)
from napari_hrtem.training.trainer import save_network, train


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_architectures_map_series_to_class_maps(architecture):
    model = build_model(architecture).eval()
    assert parameter_count(model) > 1000
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 4, 64, 64)


def test_unknown_architecture_or_setting():
    with pytest.raises(NetworkError, match="unknown architecture"):
        build_model("resnet")
    with pytest.raises(NetworkError, match="unknown settings"):
        build_model("unet", width=3)


@pytest.fixture(scope="module")
def tiny_training_set(tiny_series):
    """A 4-series training set cut from the tiny simulated series (flips/rotations added by the trainer)."""
    from napari_hrtem.analysis.filters import preprocess
    from napari_hrtem.training.datasets import class_map

    images, sampling, sample = tiny_series
    x = preprocess(images, sampling)
    y = class_map(sample.sites, sample.classes, images.shape[1:], sampling)
    return dict(
        images=np.stack([x] * 4),
        labels=np.stack([y] * 4),
        sampling=np.full(4, sampling),
        sites=sample.sites,
        site_classes=sample.classes,
        site_index=np.array([0, len(sample.sites)] + [len(sample.sites)] * 3),
    )


def test_training_yields_progress_and_saves_a_loadable_network(tmp_path, tiny_training_set):
    events = list(
        train(
            "unet",
            tiny_training_set,
            validation=tiny_training_set,
            steps=6,
            batch_size=2,
            config=dict(base_channels=4, depth=2),
            validate_every=3,
            validation_limit=1,
            log_every=2,
        )
    )
    assert [e["step"] for e in events if "loss" in e] == [2, 4, 6]
    assert "validation" in events[-2] and "overall" in events[-2]["validation"]
    last = events[-1]
    assert last["done"] and last["step"] == 6
    card = dict(
        architecture="unet",
        config=dict(base_channels=4, depth=2),
        classes=["Mo", "S2", "S"],
        n_images=3,
        sampling=0.22,
        normalization_distance=12.0,
    )
    path = save_network(last["model"], tmp_path, "mine", card)
    net = read_network(path)
    assert json.loads(path.read_text())["sha256"] == net.card.sha256
    model = net.load("cpu")
    x = torch.from_numpy(tiny_training_set["images"][:1])
    torch.testing.assert_close(model(x), last["model"](x))
    assert "mine" in available_networks([tmp_path])


def test_tampered_or_pickled_weights_are_refused(tmp_path, tiny_training_set):
    model = build_model("unet", base_channels=4, depth=2)
    card = dict(
        architecture="unet",
        config=dict(base_channels=4, depth=2),
        classes=["Mo", "S2", "S"],
        n_images=3,
        sampling=0.22,
        normalization_distance=12.0,
    )
    path = save_network(model, tmp_path, "net", card)
    weights = path.with_suffix(".pt")

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    weights.write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(NetworkError, match="SHA-256"):
        read_network(path).load("cpu")
    # Even with a matching hash the pickle must not run: weights_only loading refuses it.
    data = json.loads(path.read_text())
    from napari_hrtem.models.registry import sha256

    data["sha256"] = sha256(weights)
    path.write_text(json.dumps(data))
    with pytest.raises(NetworkError, match="could not be loaded"):
        read_network(path).load("cpu")
    assert not (tmp_path / "pwned").exists()


def test_card_that_does_not_match_weights(tmp_path):
    model = build_model("unet", base_channels=4, depth=2)
    card = dict(
        architecture="unet",
        config=dict(base_channels=8, depth=2),
        classes=["Mo", "S2", "S"],
        n_images=3,
        sampling=0.22,
        normalization_distance=12.0,
    )
    path = save_network(model, tmp_path, "net", card)
    with pytest.raises(NetworkError, match="do not match"):
        read_network(path).load("cpu")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(NetworkError, match="broken.json"):
        read_network(tmp_path / "broken.json")


def test_shipped_networks_have_cards():
    nets = available_networks()
    shipped = [n for n in nets.values() if "models/weights" in n.weights.as_posix()]
    assert len({n.card.architecture for n in shipped}) >= 2
    for net in shipped:
        card = net.card.to_dict()
        assert card["classes"] == ["Mo", "S2", "S"] and card["n_images"] == 3
        assert card["validation"]["scores"]["overall"]["f1"] > 0
        records, pending = [], [card["training"]]
        while pending:  # an interpolation (interpolate_networks) holds both networks' records, maybe interpolations
            training = pending.pop()
            if "alpha" in training:
                assert training["start"]["sha256"] and training["fine_tuned"]["sha256"] and 0 <= training["alpha"] <= 1
                pending += [training["start"]["training"], training["fine_tuned"]["training"]]
            else:
                records.append(training)
        for record in records:
            assert record["seed"] is not None
            assert record["datasets"] or record["exit_wave_banks"]  # what it was trained on
        assert card["domain"]["energy"][0] <= card["domain"]["energy"][1]  # the set it belongs to
        assert net.weights.stat().st_size < 20e6


def test_column_probability_threshold_calibrated_on_validation(tmp_path, tiny_series, tiny_training_set):
    """A network's threshold: chosen on a validation set, kept in its card, used by default, overridable."""
    from napari_hrtem.analysis.inference import network_threshold, predict_sites
    from napari_hrtem.training.trainer import THRESHOLDS, calibrate_threshold, evaluate_model

    shipped = available_networks()["unet"]
    model = shipped.load("cpu")
    one = {k: (v[:1] if k in ("images", "labels", "sampling") else v) for k, v in tiny_training_set.items()}
    best, scan = calibrate_threshold(model, one)
    assert best in THRESHOLDS and set(scan) == set(THRESHOLDS)
    assert scan[best]["overall"]["f1"] == max(s["overall"]["f1"] for s in scan.values())
    # the scan scores what evaluate_model scores at the same threshold
    assert evaluate_model(model, one, threshold=0.7) == scan[0.7]

    import dataclasses

    card = dataclasses.replace(shipped.card, threshold=0.9)
    assert network_threshold(card) == 0.9 and network_threshold(card, 0.4) == 0.4
    assert network_threshold(dataclasses.replace(card, threshold=None)) == 0.5
    with pytest.raises(ValueError, match="between 0 and 1"):
        network_threshold(card, 1.0)
    keep = (
        "architecture",
        "config",
        "classes",
        "n_images",
        "defocus_step",
        "sampling",
        "normalization_distance",
        "support_filter",
        "support_lattice_constant",
        "threshold",
    )
    path = save_network(model, tmp_path, "strict", {k: card.to_dict()[k] for k in keep})
    net = read_network(path)
    images, sampling, _ = tiny_series
    strict, _ = predict_sites(net, images, sampling, model=model)
    loose, _ = predict_sites(net, images, sampling, model=model, threshold=0.1)
    assert strict.meta["threshold"] == 0.9 and loose.meta["threshold"] == 0.1 and len(strict) <= len(loose)
    bad = json.loads(path.read_text())
    bad["threshold"] = 1.5
    path.write_text(json.dumps(bad))
    with pytest.raises(NetworkError, match="threshold"):
        read_network(path)
