"""The public Python API (napari_hrtem.api): the README's example runs, and the API gives what the
command line writes (the CLI is a thin shell over it)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import napari_hrtem as hrtem
from napari_hrtem.cli import main
from napari_hrtem.io.sites import Sites, read_csv
from napari_hrtem.models.card import NetworkError

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str | None:
    """The first ```python block under the heading "## Python API" of README.md, or None."""
    if not README.is_file():
        return None
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Python API[ \t]*\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if section is None:
        return None
    block = re.search(r"^```python[ \t]*\n(.*?)^```", section.group(1), flags=re.M | re.S)
    return None if block is None else block.group(1)


def test_readme_python_api_example_runs(tmp_path):
    code = _readme_example()
    if code is None:
        pytest.skip("README.md has no ```python block under '## Python API' yet (the README is being rewritten)")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    counts = [
        value
        for line in run.stdout.splitlines()
        if line.startswith("{")
        for value in [ast.literal_eval(line.replace("nan", "None"))]
        if set(value) == {"Mo", "S2", "S"}
    ]
    assert counts, run.stdout
    assert all(isinstance(n, int) for n in counts[0].values()) and sum(counts[0].values()) > 0, run.stdout


# ------------------------------------------------------------------------------------------- networks


def test_load_network_by_name_card_folder_and_unknown(tmp_path):
    unet = hrtem.load_network("unet")
    assert unet.name == "unet" and isinstance(unet.card, hrtem.ModelCard) and unet.card.n_images == 3
    card = unet.weights.with_suffix(".json")
    assert hrtem.load_network(card).card == unet.card
    assert hrtem.load_network(unet.weights).card == unet.card  # the weights' path finds the card
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copyfile(card, folder / "unet.json")
    shutil.copyfile(unet.weights, folder / "unet.pt")
    assert hrtem.load_network(folder).card.sha256 == unet.card.sha256
    assert hrtem.load_network(unet) is unet
    with pytest.raises(NetworkError, match=r"unknown network 'nope'; available: .*unet"):
        hrtem.load_network("nope")
    shutil.copyfile(card, folder / "other.json")
    with pytest.raises(NetworkError, match="holds 2 model cards"):
        hrtem.load_network(folder)


def test_check_networks_and_describe():
    nets = hrtem.check_networks(["unet", "msdnet"])
    assert [n.name for n in nets] == ["unet", "msdnet"]
    assert "unet" in [n.name for n in hrtem.check_networks(None)]
    line = hrtem.describe_network("unet")
    assert "classes Mo/S2/S" in line and "validation atomic F1" in line and "unet.pt" in line
    assert "trained at 50-80 kV" in line  # the energy range, not its middle


# ----------------------------------------------------------------------------------------- prediction


@pytest.fixture(scope="module")
def cli_run(tiny_series, tmp_path_factory):
    """``napari-hrtem predict`` on the tiny series saved as .npz, and the same input through the API."""
    images, sampling, _ = tiny_series
    tmp = tmp_path_factory.mktemp("api")
    path = tmp / "series.npz"
    np.savez(path, images=images, sampling=sampling, defocus=[-50.0, 0.0, 50.0])
    assert main(["predict", str(path), "--out", str(tmp / "cli")]) == 0
    events = []
    networks = hrtem.check_networks(None)
    prepared = hrtem.prepare_focal_series(hrtem.read_focal_series(path), networks)
    prediction = hrtem.predict_consensus(networks, prepared, progress=events.append)
    return tmp, prepared, prediction, events


def test_predict_consensus_equals_the_cli(cli_run):
    tmp, prepared, prediction, _ = cli_run
    assert set(prediction.results) == {n.name for n in hrtem.shipped_networks(None)}  # no energy: the 50 kV set
    for name, sites in [*prediction.results.items(), ("consensus", prediction.consensus)]:
        written = read_csv(tmp / "cli" / f"{name}.csv")
        assert len(written) == len(sites) > 0, name
        np.testing.assert_allclose(written.yx, sites.yx, atol=1e-4)
        np.testing.assert_array_equal(written.classes, sites.classes)
    # the notes of the input come first; the prediction adds its own (specimen mask, frame order)
    assert prediction.notes[: len(prepared.notes)] == prepared.notes
    assert any("frames [0, 1, 2]" in n for n in prediction.notes)
    one = hrtem.predict("unet", prepared)
    np.testing.assert_allclose(one.yx, prediction.results["unet"].yx)


def test_progress_events(cli_run):
    _, _, prediction, events = cli_run
    assert events and all(isinstance(e, hrtem.Progress) for e in events)
    running = [e for e in events if e.info.get("running")]  # one before each network (issue 15)
    assert [(e.stage, e.done) for e in running] == [(f"running {name}", i) for i, name in enumerate(prediction.results)]
    events = [e for e in events if not e.info.get("running")]
    assert [e.done for e in events] == list(range(1, len(prediction.results) + 1))
    assert events[-1].total == len(prediction.results) and events[-1].fraction == 1.0
    assert [e.info["network"] for e in events] == list(prediction.results)


def test_write_prediction_writes_what_the_cli_writes(cli_run):
    tmp, _, prediction, _ = cli_run
    paths = hrtem.write_prediction(prediction, tmp / "api")
    cli_files = sorted(p.name for p in (tmp / "cli").iterdir())
    assert sorted(p.name for p in (tmp / "api").iterdir()) == cli_files
    assert set(paths) >= {*prediction.results, "consensus", "predict.json"}
    for name in cli_files:
        a, b = tmp / "cli" / name, tmp / "api" / name
        if name.endswith(".csv"):
            assert a.read_text() == b.read_text(), name
            continue
        if name.endswith(".tif"):
            assert a.read_bytes() == b.read_bytes(), name
            continue
        ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
        assert list(ja) == list(jb)
        for j in (ja, jb):
            for net in j["networks"].values():
                assert net.pop("seconds") >= 0
        assert ja == jb


def test_score_and_score_files(cli_run, tiny_series):
    tmp, _, prediction, _ = cli_run
    _, _, sample = tiny_series
    truth = Sites(sample.sites, sample.classes, np.ones(len(sample.sites)))
    itself = hrtem.score(truth, truth)
    assert itself["overall"]["f1"] == 1.0 and itself["overall"]["rms"] == 0.0
    scores = hrtem.score(prediction.consensus, truth)
    assert scores["overall"]["f1"] > 0.8
    truth.write_csv(tmp / "truth.csv")
    pooled = hrtem.score_files(tmp / "cli" / "consensus.csv", tmp / "truth.csv")
    assert pooled["samples"] == 1 and pooled["overall"]["tp"] == scores["overall"]["tp"]


def test_a_class_absent_from_both_sides_has_no_score():
    from napari_hrtem.analysis.metrics import format_scores, summarize

    truth = Sites(np.array([[0.0, 0.0], [3.0, 0.0]]), [0, 1], [1.0, 1.0])  # no S column
    found = Sites(np.array([[0.1, 0.0], [3.0, 0.1]]), [0, 1], [1.0, 1.0])
    scores = hrtem.score(found, truth)
    assert np.isnan(scores["S"]["f1"]) and np.isnan(scores["S"]["precision"]) and np.isnan(scores["S"]["recall"])
    assert scores["overall"]["f1"] == 1.0
    line = [ln for ln in format_scores(scores).splitlines() if ln.startswith("S ")][0]
    assert "absent" in line and "1.000" not in line and "0.000" not in line
    empty = hrtem.score(Sites(np.zeros((0, 2)), [], []), Sites(np.zeros((0, 2)), [], []))
    pooled = summarize([scores, empty])
    assert pooled["f1_p10"] == 1.0 and pooled["overall"]["f1"] == 1.0  # the empty sample is left out


def test_prepare_focal_series_without_defocus(tiny_series):
    images, _, _ = tiny_series
    stack = np.concatenate([images, images[:1]])
    prepared = hrtem.prepare_focal_series(stack, sampling=0.22, frames="0-2")
    assert prepared.series.images.shape[0] == 3 and prepared.alignment is None
    assert "defocus not recorded;" in prepared.notes[-1] and "unknown Å" not in prepared.notes[-1]
    with pytest.raises(ValueError, match="holds 4 image.*--frames"):
        hrtem.prepare_focal_series(stack, ["unet"], sampling=0.22)
    with pytest.raises(ValueError, match="no pixel size"):
        hrtem.prepare_focal_series(images)


def test_the_api_reference_lists_every_public_name():
    """docs/api.rst documents exactly the names of ``napari_hrtem.__all__``."""
    page = Path(__file__).resolve().parents[1] / "docs" / "api.rst"
    if not page.is_file():
        pytest.skip("docs/api.rst is not in this checkout")
    listed = set(re.findall(r"^   (\w+)$", page.read_text(encoding="utf-8"), re.M))
    public = set(hrtem.__all__) - {"__version__"}
    assert public - listed == set(), "public names missing from docs/api.rst"
    assert listed - public == set(), "docs/api.rst lists names that are not public"
    for name in public:
        assert getattr(hrtem, name).__doc__, f"{name} has no docstring"
