"""The training job of the API, the CLI and the Train widget: one job, one model card with a
calibrated column probability threshold, one parser of architecture settings."""

import dataclasses
import json
import threading

import numpy as np
import pytest
import torch

import napari_hrtem as hrtem
from napari_hrtem.records import Progress
from napari_hrtem.training.jobs import SimulatedSet, parse_settings
from napari_hrtem.training.trainer import TrainingSettings

TINY = dict(base_channels=4, depth=2)


@pytest.fixture(scope="module")
def tiny_set(tiny_series):
    """Two copies of the tiny simulated focal series (preprocessed), with class maps and sites."""
    from napari_hrtem.analysis.filters import preprocess
    from napari_hrtem.training.datasets import class_map

    images, sampling, sample = tiny_series
    x = preprocess(images, sampling)
    y = class_map(sample.sites, sample.classes, images.shape[1:], sampling)
    n = len(sample.sites)
    return dict(
        images=np.stack([x] * 2).astype(np.float32),
        labels=np.stack([y] * 2),
        sampling=np.full(2, sampling),
        sites=np.concatenate([sample.sites] * 2),
        site_classes=np.concatenate([sample.classes] * 2),
        site_index=np.array([0, n, 2 * n]),
        recipe={"test": "tiny"},
    )


def test_parse_settings_takes_ints_floats_and_booleans():
    assert parse_settings("base_channels=4, depth=2") == {"base_channels": 4, "depth": 2}
    assert parse_settings(["width=2", "max_dilation=1.5; checkpoint=False"]) == {
        "width": 2,
        "max_dilation": 1.5,
        "checkpoint": False,
    }
    assert parse_settings(None) == {} and parse_settings("") == {}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_settings("depth")
    with pytest.raises(ValueError, match="depth needs a number"):
        parse_settings("depth=deep")


def test_api_train_calibrates_the_threshold_of_its_card(tmp_path, tiny_set):
    torch.set_num_threads(1)
    events: list[Progress] = []
    settings = TrainingSettings(steps=4, batch_size=2, validate_every=2, validation_limit=1, log_every=2, threads=1)
    result = hrtem.train(
        "unet",
        tiny_set,
        validation=tiny_set,
        config=TINY,
        settings=settings,
        name="mine",
        out=tmp_path,
        record=dict(made_with="test"),
        progress=events.append,
    )
    assert [e.done for e in events if e.stage == "training" and "loss" in e.info] == [2, 4]
    assert result.card_path == tmp_path / "mine.json" and (tmp_path / "mine.pt").is_file()
    assert (tmp_path / "mine.checkpoint" / "checkpoint.pt").is_file()
    card = json.loads(result.card_path.read_text())
    assert 0 < card["threshold"] < 1 and card["threshold"] == result.threshold == result.card.threshold
    assert card["validation"]["threshold"] == card["threshold"] and card["validation"]["recipe"] == {"test": "tiny"}
    assert set(card["validation"]["overall_f1_by_threshold"]) >= {"0.5", str(card["threshold"])}
    assert card["config"] == TINY and card["classes"] == ["Mo", "S2", "S"] and card["n_images"] == 3
    assert card["training"]["made_with"] == "test" and card["training"]["steps"] == 4
    assert card["training"]["datasets"] == [dict(recipe={"test": "tiny"}, focal_series=2)]
    assert hrtem.load_network(result.card_path).card.column_threshold == card["threshold"]


def test_api_train_stops_when_asked(tmp_path, tiny_set):
    torch.set_num_threads(1)
    settings = TrainingSettings(steps=50, batch_size=1, log_every=1, checkpoint_every=2, threads=1)
    seen = []

    def stop():
        return len(seen) >= 5

    result = hrtem.train(
        "unet", tiny_set, config=TINY, settings=settings, out=tmp_path, stop=stop, progress=seen.append
    )
    assert result.stopped and result.card_path is None and result.step == 5
    assert result.checkpoint == tmp_path / "my-unet.checkpoint" / "checkpoint.pt"  # default name: my-<architecture>
    assert not (tmp_path / "my-unet.json").exists()


def test_train_widget_worker_calibrates_too(tmp_path, tiny_set):
    """The Train widget's worker runs the same job: its network gets a threshold from the
    validation series it simulates."""
    pytest.importorskip("magicgui")
    from napari_hrtem.plugin.widgets.train import SOURCES, train_network
    from napari_hrtem.records import drive

    path = tmp_path / "tiny.npz"
    np.savez(
        path,
        **{k: v for k, v in tiny_set.items() if k != "recipe"},
        params="[]",
        recipe=json.dumps({"test": "tiny"}),
    )
    events: list[Progress] = []
    summary = drive(
        train_network(
            "unet",
            dict(TINY),
            SOURCES[1],
            0,
            64,
            [str(path)],
            1,
            steps=2,
            batch_size=1,
            lr=2e-3,
            device="cpu",
            seed=0,
            name="widget-net",
            stop=threading.Event(),
            threads=1,
            out_dir=str(tmp_path / "nets"),
        ),
        events.append,
    )
    assert not summary["stopped"] and summary["card"] == tmp_path / "nets" / "widget-net.json"
    assert any(e.stage == "simulating validation set" for e in events)
    card = json.loads(summary["card"].read_text())
    assert 0 < card["threshold"] < 1 and summary["threshold"] == card["threshold"]
    assert card["validation"]["recipe"]["n_samples"] == 1 and card["validation"]["recipe"]["shape"] == [64, 64]
    assert card["training"]["made_with"] == "napari-hrtem Train widget"
    assert SimulatedSet(1, 64, 1, 2, 10_000).recipe(0)["seed"] == card["validation"]["recipe"]["seed"]


def test_interpolate_networks_lies_between_a_network_and_its_fine_tuned_copy(tmp_path, tiny_set):
    """WiSE-FT: alpha 0 is the start, 1 the fine-tuned network, 0.5 their mean; the card names both."""
    from napari_hrtem.cli import main

    torch.set_num_threads(1)
    settings = TrainingSettings(steps=2, batch_size=2, log_every=0, checkpoint_every=0, threads=1)
    start = hrtem.train("unet", tiny_set, config=TINY, settings=settings, name="start", out=tmp_path)
    tuned = hrtem.train(
        data=tiny_set, init=start.card_path, settings=dataclasses.replace(settings, seed=1), name="tuned", out=tmp_path
    )
    weights = {
        name: hrtem.load_network(tmp_path / f"{name}.json").load("cpu").state_dict() for name in ("start", "tuned")
    }
    for alpha in (0.0, 0.5, 1.0):
        result = hrtem.interpolate_networks(start.card_path, tuned.card_path, alpha, name=f"mix{alpha:g}", out=tmp_path)
        mixed = hrtem.load_network(result.card_path).load("cpu").state_dict()
        for key, value in mixed.items():
            if value.is_floating_point():
                want = (1 - alpha) * weights["start"][key].double() + alpha * weights["tuned"][key].double()
                torch.testing.assert_close(value.double(), want, rtol=1e-6, atol=1e-6)
        card = json.loads(result.card_path.read_text())
        assert card["training"]["alpha"] == alpha and card["training"]["start"]["name"] == "start"
        assert card["training"]["fine_tuned"]["sha256"] == tuned.card.sha256
        assert card["threshold"] == tuned.card.column_threshold and card["validation"] is None
    # a validation set: a newly calibrated threshold, recorded with its scores
    result = hrtem.interpolate_networks(start.card_path, tuned.card_path, 0.25, validation=tiny_set, out=tmp_path)
    assert result.card_path == tmp_path / "tuned-a25.json" and 0 < result.threshold < 1
    assert json.loads(result.card_path.read_text())["validation"]["threshold"] == result.threshold
    # refused before anything is written: alpha outside [0, 1], another architecture, a taken name
    msd = hrtem.train("msdnet", tiny_set, config=dict(width=1, depth=2), settings=settings, name="m", out=tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError, match="alpha"):
        hrtem.interpolate_networks(start.card_path, tuned.card_path, 1.5, out=tmp_path)
    with pytest.raises(ValueError, match="differ in architecture"):
        hrtem.interpolate_networks(start.card_path, msd.card_path, 0.5, out=tmp_path)
    with pytest.raises(ValueError, match="exists|already"):
        hrtem.interpolate_networks(start.card_path, tuned.card_path, 0.25, out=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # the command line: the same job
    code = main(["interpolate", str(start.card_path), str(tuned.card_path), "--alpha", "0.75", "--out", str(tmp_path)])
    assert code == 0 and json.loads((tmp_path / "tuned-a75.json").read_text())["training"]["alpha"] == 0.75


def test_train_from_an_msdnet_can_deepen_it_without_changing_what_it_computes(tmp_path, tiny_set):
    """``init`` + ``config={"depth": N}``: new layers whose head weights start at zero (Net2Net)."""
    from napari_hrtem.models.msdnet import MSDNet, deepened_state

    torch.set_num_threads(1)
    settings = TrainingSettings(steps=1, batch_size=1, log_every=0, checkpoint_every=0, threads=1)
    small = hrtem.train("msdnet", tiny_set, config=dict(width=2, depth=3), settings=settings, name="s", out=tmp_path)
    model = hrtem.load_network(small.card_path).load("cpu").eval()
    state = deepened_state(model.state_dict(), dict(small.card.config), 6, seed=1)
    deeper = MSDNet(n_images=3, n_classes=4, **dict(small.card.config, depth=6)).eval()
    deeper.load_state_dict(state)
    x = torch.from_numpy(tiny_set["images"][:1])
    with torch.no_grad():
        torch.testing.assert_close(deeper(x), model(x))
    grown = hrtem.train(data=tiny_set, init=small.card_path, config={"depth": 6}, settings=settings, out=tmp_path)
    assert grown.card.config["depth"] == 6 and grown.card.training["initialized_from"]["deepened"] == dict(depth=[3, 6])
    with pytest.raises(ValueError, match="can only be deepened|must be"):
        hrtem.train(data=tiny_set, init=small.card_path, config={"depth": 2}, settings=settings, name="x", out=tmp_path)
    with pytest.raises(ValueError, match="except for an MSD-net"):
        hrtem.train(data=tiny_set, init=small.card_path, config={"width": 3}, settings=settings, name="x", out=tmp_path)
    # gradient checkpointing off (faster on the CPU): the same step, the setting on the card
    kept, recomputed = (
        hrtem.train(data=tiny_set, init=small.card_path, config={"checkpoint": c}, settings=settings, out=tmp_path / n)
        for n, c in (("kept", False), ("recomputed", True))
    )
    assert kept.card.config["checkpoint"] is False and recomputed.card.config["checkpoint"] is True
    a, b = (hrtem.load_network(r.card_path).load("cpu").state_dict() for r in (kept, recomputed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_class_weights_of_the_loss_are_a_setting_recorded_on_the_card(tmp_path, tiny_set):
    """The default weights are CLASS_WEIGHTS; others change what one step learns, are on the card,
    refuse a checkpoint written with other weights, and bad ones are refused before anything is written."""
    from napari_hrtem.cli import main
    from napari_hrtem.training.trainer import CLASS_WEIGHTS

    torch.set_num_threads(1)
    settings = TrainingSettings(steps=1, batch_size=2, log_every=0, checkpoint_every=0, threads=1, amp=False)
    runs = {
        "default": settings,
        "same": dataclasses.replace(settings, class_weights=CLASS_WEIGHTS),
        "vacancies": dataclasses.replace(settings, class_weights=(1.0, 1.0, 30.0, 0.5)),
    }
    states = {}
    for name, s in runs.items():
        result = hrtem.train("unet", tiny_set, config=TINY, settings=s, name=name, out=tmp_path)
        states[name] = hrtem.load_network(result.card_path).load("cpu").state_dict()
        want = list(s.class_weights or CLASS_WEIGHTS)
        assert json.loads(result.card_path.read_text())["training"]["class_weights"] == want
    for key, value in states["default"].items():
        torch.testing.assert_close(states["same"][key], value)
    assert any(
        not torch.equal(states["vacancies"][k], v) for k, v in states["default"].items() if v.is_floating_point()
    )
    # a checkpoint of other weights is not resumed with these, in either direction; the default's is,
    # whether the default is given or not
    for k, (first, then, refused) in enumerate(
        [(runs["vacancies"], None, True), (runs["default"], (1.0, 1.0, 30.0, 0.5), True), (runs["same"], None, False)]
    ):
        ckpt = dataclasses.replace(first, checkpoint_dir=tmp_path / f"ck{k}", checkpoint_every=1)
        hrtem.train("unet", tiny_set, config=TINY, settings=ckpt, name=f"c{k}", out=tmp_path)
        again = dataclasses.replace(ckpt, resume=True, class_weights=then)
        if refused:
            with pytest.raises(ValueError, match="other settings: class_weights"):
                hrtem.train("unet", tiny_set, config=TINY, settings=again, name=f"r{k}", out=tmp_path)
        else:
            hrtem.train("unet", tiny_set, config=TINY, settings=again, name=f"r{k}", out=tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for bad, match in (
        ((1.0, 1.0, 3.0), "needs 4 numbers"),
        ((1.0, 0.0, 3.0, 0.5), "class weight of S2"),
        ((1.0, 1.0, float("nan"), 0.5), "class weight of S"),
    ):
        with pytest.raises(ValueError, match=match):
            hrtem.train(
                "unet",
                tiny_set,
                config=TINY,
                settings=dataclasses.replace(settings, class_weights=bad),
                name="bad",
                out=tmp_path,
            )
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # the command line: --class-weights MO S2 S BACKGROUND
    argv = ["train", "--samples", "1", "--steps", "1", "--batch-size", "1", "--set", "base_channels=2"]
    argv += ["--class-weights", "1", "1", "6", "0.5", "--threads", "1", "--name", "cli", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert json.loads((tmp_path / "cli.json").read_text())["training"]["class_weights"] == [1, 1, 6, 0.5]
