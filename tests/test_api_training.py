"""The training job of the API, the CLI and the Train widget: one job, one model card with a
calibrated column probability threshold, one parser of architecture settings."""

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
