"""Reliability round 3 (issue 13), arguments: every numeric option of every command range-checked once in
the core (NaN, Inf, zero, negative, absurdly large), silently wrong results refused, tracebacks made one
line.

The CLI is called in-process (``napari_hrtem.cli.main``): exit status 2, exactly one line
``napari-hrtem: error: ...`` naming the argument, no traceback, nothing written. The core checks are
tested through the API (:mod:`napari_hrtem.api`, :mod:`napari_hrtem.arguments`), so that every shell
(CLI, widgets, scripts) gets them.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from napari_hrtem import api
from napari_hrtem.arguments import MAX_RADIUS, ArgumentError, check_number, check_radius
from napari_hrtem.cli import build_parser, main
from napari_hrtem.io.sites import Sites

SERIES = np.random.default_rng(13).random((3, 64, 64)).astype(np.float32)
TRUTH = "y,x,class\n1.0,1.0,Mo\n5.0,5.0,S\n9.0,2.0,S2\n"


def _sites(yx, classes) -> Sites:
    return Sites(np.asarray(yx, float), np.asarray(classes), np.ones(len(classes)))


@pytest.fixture()
def place(tmp_path, monkeypatch):
    """A focal series, a site table and an empty user networks folder (nothing of the user's touched)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    (tmp_path / "out").mkdir()  # an empty output folder (file outputs need an existing folder)
    np.save(tmp_path / "s.npy", SERIES)
    (tmp_path / "t.csv").write_text(TRUTH)
    return tmp_path


def _one_line_error(capsys, argv, *words):
    """Exit 2, one line ``napari-hrtem: error: ...`` with every word, no traceback."""
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and err.startswith("napari-hrtem: error: "), err
    assert "Traceback" not in err and not captured.out.strip(), (err, captured.out)
    for word in words:
        assert word in err, err
    return err


def _nothing_written(folder, before):
    after = {p.relative_to(folder) for p in folder.rglob("*")}
    assert after <= before, f"written for bad input: {sorted(map(str, after - before))}"


# --------------------------------------------------------------- every numeric option of every command

_PREDICT = ["predict", "{d}/s.npy", "--sampling", "0.22", "--out", "{d}/out"]
_EVALUATE_FILES = ["evaluate", "{d}/t.csv", "{d}/t.csv"]
_EVALUATE_DATASET = ["evaluate", "--dataset", "{d}/missing.npz", "--network", "msdnet"]
_TRAIN = ["train", "--samples", "1", "--steps", "1", "--out", "{d}/out"]
_SIMULATE = ["simulate", "{d}/out/sim.npz", "--size", "32"]
_DATASET = ["dataset", "{d}/out/d.npz", "--samples", "1", "--size", "32"]
_STORE = ["simulate-dataset", "--out", "{d}/out/store.zarr", "--structures", "1", "--workers", "0"]
_INTERPOLATE = ["interpolate", "unetpp", "unetpp", "--alpha", "0.5", "--out", "{d}/out"]
_VIBRATIONS = ["vibration-table", "{d}/missing.traj", "--out", "{d}/out/table.json"]

NAN, INF, NINF = "nan", "inf", "-inf"
#: (command line, option, bad values, word in the message)
OPTIONS = [
    (_PREDICT, "--sampling", [NAN, INF, "0", "-0.2", "1e9"], "sampling"),
    (_PREDICT, "--k", ["0", "-1", "4", "1000000"], "k"),
    (_PREDICT, "--radius", [NAN, INF, NINF, "0", "-1", "100"], "radius"),
    (_PREDICT, "--threshold", [NAN, INF, "0", "1", "-0.5", "2"], "threshold"),
    (_PREDICT, "--tile", ["0", "-1", "10000000"], "tile"),
    (_PREDICT, "--energy", [NAN, INF, "0", "-300", "1e9"], "energy"),
    (_PREDICT, "--defocus", [NAN, INF, "1e30"], "defocus"),
    (_PREDICT, "--read-timeout", [NAN, "0", "-1"], "timeout"),
    (_EVALUATE_FILES, "--radius", [NAN, INF, NINF, "0", "-1", "100"], "radius"),
    (_EVALUATE_DATASET, "--radius", [NAN, "0", "-1", "100"], "radius"),
    (_EVALUATE_DATASET, "--limit", ["0", "-1"], "limit"),
    (_EVALUATE_DATASET, "--threshold", [NAN, "0", "1", "-1", "2"], "threshold"),
    (_TRAIN, "--samples", ["0", "-1"], "samples"),
    (_TRAIN, "--steps", ["0", "-5", "1000000000"], "steps"),
    (_TRAIN, "--batch-size", ["0", "-1"], "batch"),
    (_TRAIN, "--lr", [NAN, INF, "0", "-0.1", "1e6"], "lr"),
    (_TRAIN, "--seed", ["-1", str(2**70)], "seed"),
    (_TRAIN, "--bank-fraction", [NAN, "-0.1", "1.5"], "bank_fraction"),
    (_TRAIN, "--validate-every", ["-1"], "validate_every"),
    (_TRAIN, "--log-every", ["-1"], "log_every"),
    (_TRAIN, "--checkpoint-every", ["-1"], "checkpoint_every"),
    (_TRAIN, "--threads", ["0", "-1", "1000000"], "threads"),
    (_TRAIN, "--class-weights", [NAN, INF, "0", "-1", "1e6"], "class weight of S"),
    (_SIMULATE, "--size", ["0", "-1", "100000"], "size"),
    (_SIMULATE, "--sampling", [NAN, INF, "0", "-1", "100"], "sampling"),
    (_SIMULATE, "--rotation", [NAN, INF, "1e9"], "rotation"),
    (_SIMULATE, "--defocus", [NAN, INF, NINF, "1e30"], "defocus"),
    (_SIMULATE, "--dose", [NAN, INF, "0", "-5"], "dose"),
    (_SIMULATE, "--graphene-layers", ["-1"], "graphene"),
    (_SIMULATE, "--seed", ["-1", str(2**70)], "seed"),
    (_SIMULATE, "--energy", [NAN, INF, "0", "-80", "1e9"], "energy"),
    (_DATASET, "--samples", ["0", "-1"], "samples"),
    (_DATASET, "--images-per-sample", ["0", "-1"], "images-per-sample"),
    (_DATASET, "--size", ["0", "8", "100000"], "size"),
    (_DATASET, "--phonon-configs", ["0", "-1"], "phonon"),
    (_DATASET, "--energy", [NAN, INF, "0", "-80", "1e9"], "energy"),
    (_DATASET, "--seed", ["-1", str(2**70)], "seed"),
    (_STORE, "--structures", ["0", "-1"], "structures"),
    (_STORE, "--seed", ["-1", str(2**70)], "seed"),
    (_STORE, "--energy", [NAN, INF, "0", "-80", "1e9"], "energy"),
    (_STORE, "--slice-thickness", [NAN, INF, "0", "-1"], "slice_thickness"),
    (_INTERPOLATE, "--alpha", [NAN, INF, NINF, "-0.1", "1.5"], "alpha"),
    (_VIBRATIONS, "--skip", ["-1"], "skip"),
    (_VIBRATIONS, "--temperature", [NAN, INF, "0", "-5", "1e9"], "temperature"),
    (_VIBRATIONS, "--cutoff-mult", [NAN, INF, "0", "-1", "100"], "cutoff_mult"),
]
CASES = [
    pytest.param(argv, option, value, word, id=f"{argv[0]} {option} {value}")
    for argv, option, values, word in OPTIONS
    for value in values
]


@pytest.mark.parametrize(("argv", "option", "value", "word"), CASES)
def test_bad_numeric_option(place, capsys, argv, option, value, word):
    """Exit 2, one line naming the option and the value, nothing written."""
    before = {p.relative_to(place) for p in place.rglob("*")}
    line = [a.format(d=place) for a in argv]
    if option in line:  # replace the value of the base command line
        del line[line.index(option) : line.index(option) + 2]
    if option == "--defocus" and argv[0] == "predict":
        line += [option, value, value, value]  # one value per frame
    elif option == "--class-weights":
        line += [option, "1", "1", value, "0.5"]  # Mo, S2, S, background: the bad one is the single S's
    else:
        line.append(f"{option}={value}")  # "=": argparse takes "-inf" for an option otherwise
    err = _one_line_error(capsys, line, word)
    spelled = {"1e30": ["1e+30"], "1e9": ["1e9", "1000000000", "1e+09"], "1e6": ["1e6", "1000000", "1e+06"]}
    assert any(v in err for v in spelled.get(value, [value])), err  # the value given is named
    _nothing_written(place, before)


def test_every_numeric_option_is_in_the_corpus():
    """A new numeric option of any command joins OPTIONS (or is listed here as checked elsewhere)."""
    covered = {(argv[0], option) for argv, option, _, _ in OPTIONS}
    elsewhere = {  # range-checked by another engineer's corpus (sizes before allocation, bounded work)
        ("simulate-dataset", "--image-epochs"),
        ("simulate-dataset", "--workers"),
        ("simulate-dataset", "--images"),
        ("simulate-dataset", "--size"),
        ("simulate-dataset", "--sampling-range"),
        ("simulate-dataset", "--phonon-configs"),
        ("simulate-dataset", "--wave-sampling"),
        ("simulate-dataset", "--graphene-layers"),
        ("dataset", "--phonon-configs"),
    }
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    numeric = set()
    for command, p in sub.choices.items():
        for action in p._actions:
            if action.type in (int, float) and action.option_strings:
                numeric.add((command, action.option_strings[0]))
    assert numeric - covered - elsewhere == set()


def test_argparse_errors_are_one_line(capsys):
    """A value argparse itself refuses (not a number) is one line too, exit 2."""
    _one_line_error(capsys, ["predict", "x.npy", "--out", "o", "--k", "nan"], "--k", "nan")
    _one_line_error(capsys, ["train", "--steps", "many"], "--steps")
    _one_line_error(capsys, ["predict"], "required")


def test_help_documents_zero_periods(capsys):
    """``train --checkpoint-every 0`` etc. mean "only at the last step", said in --help."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--checkpoint-every", "--log-every", "--validate-every"):
        assert option in text
    assert text.count("0: only at the last step") >= 3, text


# -------------------------------------------------------------------------------- the core checks


@pytest.mark.parametrize("radius", [-1, 0, math.nan, math.inf, -math.inf, MAX_RADIUS * 2, "0.5", None, True])
def test_radius_checked_in_every_api_function(tmp_path, radius):
    """``score``, ``score_files``, ``evaluate_network``, ``predict_consensus`` and ``consensus`` refuse a
    radius that is not a finite number in (0, MAX_RADIUS] before any work (a negative radius used to act
    like its absolute value and report F1 1.000)."""
    from napari_hrtem.analysis.consensus import consensus
    from napari_hrtem.analysis.metrics import atomic_f1, split_matches

    (tmp_path / "t.csv").write_text(TRUTH)
    sites = _sites([[1.0, 1.0], [5.0, 5.0]], [0, 2])
    with pytest.raises(ValueError, match="radius"):
        api.score(sites, sites, radius)
    with pytest.raises(ValueError, match="radius"):
        api.score_files(tmp_path / "t.csv", tmp_path / "t.csv", radius)
    with pytest.raises(ValueError, match="radius"):  # before the dataset or the network is read
        api.evaluate_network("no-such-network", tmp_path / "missing.npz", radius)
    with pytest.raises(ValueError, match="radius"):  # before any network runs
        api.predict_consensus(None, SERIES, sampling=0.22, radius=radius)
    with pytest.raises(ValueError, match="radius"):
        consensus({"a": sites, "b": sites}, radius=radius)
    with pytest.raises(ValueError, match="radius"):
        atomic_f1(sites.yx, sites.classes, sites.yx, sites.classes, radius=radius)
    with pytest.raises(ValueError, match="radius"):
        split_matches(sites, sites, radius)


def test_good_radius_still_scores():
    sites = _sites([[1.0, 1.0], [5.0, 5.0]], [0, 2])
    assert api.score(sites, sites, 0.5)["overall"]["f1"] == 1.0
    assert check_radius(MAX_RADIUS) == MAX_RADIUS and check_radius(1) == 1.0


@pytest.mark.parametrize(
    ("value", "limits"),
    [
        (math.nan, {}),
        (math.inf, {}),
        (0, dict(low=0, low_open=True)),
        (-1, dict(low=0)),
        (11, dict(high=10)),
        (1.5, dict(integer=True)),
        (True, {}),
        ("3", {}),
        (None, {}),
    ],
)
def test_check_number_refuses(value, limits):
    with pytest.raises(ArgumentError) as info:
        check_number(value, "setting", **limits)
    message = str(info.value)
    assert message.startswith("setting: got ") and "\n" not in message, message


def test_evaluate_limit_zero_is_an_error(tmp_path):
    """``evaluate --limit 0`` used to report "0 samples" with exit 0."""
    for limit in (0, -3, 1.5):
        with pytest.raises(ValueError, match="limit"):
            api.evaluate_network("msdnet", tmp_path / "missing.npz", limit=limit)


@pytest.mark.parametrize("k", [0, -1, 4, 2.5])
def test_k_checked_before_any_network_runs(k):
    """``--k`` outside 1..n is refused before the networks run (it used to fail after all of them)."""
    with pytest.raises(ValueError, match="k: got"):
        api.predict_consensus(None, SERIES, sampling=0.22, k=k)


# ---------------------------------------------------------------------------- silently wrong results


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_defocus_in_a_file_is_ignored_with_a_note(tmp_path, bad):
    """A file recording NaN/Inf defocus: the frames keep their order (no sort by NaN), the defocus is
    dropped with a note, and predict.json is valid JSON (no NaN)."""
    path = tmp_path / "series.npz"
    defocus = [100.0, bad, -100.0]
    np.savez(path, images=SERIES, sampling=0.22, defocus=np.array(defocus))
    series = api.read_focal_series(path)
    prepared = api.prepare_focal_series(series, ["msdnet"])
    assert prepared.series.metadata["frames"] == [0, 1, 2]
    assert prepared.series.defocus is None
    assert any("not all finite" in note and "ignored" in note for note in prepared.notes), prepared.notes
    prediction = api.predict_consensus(["msdnet"], prepared, specimen_mask=False)
    api.write_prediction(prediction, tmp_path / "out")
    text = (tmp_path / "out" / "predict.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    sidecar = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in predict.json"))
    assert sidecar["defocus"] is None and sidecar["frames"] == [0, 1, 2]


def test_json_safe_makes_every_value_finite_or_none():
    from napari_hrtem.io.predictions import json_safe

    value = dict(a=math.nan, b=[1.0, math.inf, np.float32("nan")], c=np.array([1.0, np.nan]), d=(np.int64(2),))
    out = json_safe(value)
    assert json.loads(json.dumps(out, allow_nan=False)) == dict(a=None, b=[1.0, None, None], c=[1.0, None], d=[2])


# --------------------------------------------------------------------------- tracebacks -> one line


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("base_channels=0", ["base_channels", "0"]),
        ("base_channels=-1", ["base_channels"]),
        ("base_channels=20000", ["base_channels"]),
        ("depth=10", ["depth", "10"]),
        ("depth=0", ["depth"]),
        ("depth=2.5", ["depth"]),
    ],
)
def test_bad_architecture_settings(place, capsys, setting, words):
    """``train --set base_channels=0`` / ``depth=10``: one line, before any network is built."""
    before = {p.relative_to(place) for p in place.rglob("*")}
    _one_line_error(capsys, [a.format(d=place) for a in _TRAIN] + ["--set", setting], *words)
    _nothing_written(place, before)


def test_unet_depth_must_fit_the_images():
    """A depth within the architecture's limits that halves the training images to nothing."""
    from napari_hrtem.training.jobs import _check_fits

    _check_fits("unet", dict(depth=5), dict(images=np.zeros((1, 3, 64, 64))))
    with pytest.raises(ValueError, match="depth 5 .* at least 32 px; these are 16x16 px"):
        _check_fits("unet", dict(depth=5), dict(images=np.zeros((1, 3, 16, 16))))
    _check_fits("msdnet", dict(depth=100), dict(images=np.zeros((1, 3, 16, 16))))  # no halving


@pytest.mark.parametrize(
    "content",
    [b"not a checkpoint", b"", "torch:[1, 2, 3]", "torch:{'step': 1}", "torch:{'step': -1, 'settings': {}}"],
    ids=["text", "empty", "list", "dict lacking keys", "negative step"],
)
def test_resume_from_a_file_that_is_not_a_checkpoint(place, capsys, content):
    """``train --resume`` with a checkpoint.pt that is not one: one line naming the file."""
    import torch

    ckpt = place / "ckpt"
    ckpt.mkdir()
    path = ckpt / "checkpoint.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        import ast

        obj = ast.literal_eval(content.removeprefix("torch:"))
        if isinstance(obj, dict) and "settings" in obj:
            obj.update(n_images=3, model={}, optimizer={}, schedule={}, running=[], seconds=0.0)
        torch.save(obj, path)
    argv = [a.format(d=place) for a in _TRAIN] + ["--checkpoint-dir", str(ckpt), "--resume"]
    _one_line_error(capsys, argv, "checkpoint.pt", "checkpoint")
    assert not any((place / "out").iterdir())


def test_evaluate_dataset_without_recipe(place, capsys, tmp_path):
    """``evaluate --dataset`` on an .npz that lacks the recipe (KeyError before): one line naming it."""
    path = place / "norecipe.npz"
    np.savez(path, images=np.zeros((1, 3, 32, 32), np.float32), labels=np.zeros((1, 32, 32), np.int64))
    _one_line_error(capsys, ["evaluate", "--dataset", str(path), "--network", "msdnet"], "norecipe.npz", "recipe")


def test_single_number_temperature_in_a_config(tmp_path):
    """The documented single-number ``vibrations.temperature`` (a fixed value) works in a store's
    config (TypeError before)."""
    from napari_hrtem.training.datastore import make_recipe, read_config, simulate_sample

    path = tmp_path / "fixed.yaml"
    path.write_text("vibrations:\n  temperature: 300\n")
    config = read_config(path)
    assert config["vibrations"]["temperature"] == 300
    recipe = make_recipe(shape=(32, 32), phonon_configs=1, image_epochs=1, config=config, seed=0)
    assert simulate_sample(0, recipe) is not None


def test_deeply_nested_labels_sidecar(tmp_path):
    """A labels sidecar nested thousands of levels deep: a ValueError naming it (RecursionError before),
    so the Labels widget's ``except (OSError, ValueError)`` is enough."""
    from napari_hrtem.io.sites import labels_sidecar_path, read_labels, write_labels

    path = tmp_path / "labels.csv"
    write_labels(path, _sites([[1.0, 1.0]], [0]))
    labels_sidecar_path(path).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=labels_sidecar_path(path).name) as info:
        read_labels(path)
    assert "nested" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('"text"', "must be a JSON object"),
        ('{"sampling": "abc"}', "sampling"),
        ('{"sampling": -1}', "sampling"),
        ('{"sampling": NaN}', "sampling"),
        ("{", "not a readable JSON sidecar"),
    ],
)
def test_bad_labels_sidecar_is_a_value_error(tmp_path, content, words):
    """Every bad sidecar is a ValueError naming it (the Labels widget catches OSError/ValueError; a list
    sidecar was an AttributeError in the widget, a bad sampling reached the layer)."""
    from napari_hrtem.io.sites import labels_sidecar_path, read_labels, write_labels

    path = tmp_path / "labels.csv"
    write_labels(path, _sites([[1.0, 1.0]], [0]))
    labels_sidecar_path(path).write_text(content)
    with pytest.raises(ValueError, match=words) as info:
        read_labels(path)
    assert str(info.value).startswith(labels_sidecar_path(path).name), info.value


# ------------------------------------------------------------------------------------ messages (item 11)


def test_frame_ranges(place, capsys):
    """``--frames 0-2`` is a range (it used to say "invalid literal for int()"); a bad range is one line."""
    from napari_hrtem.io.focal_series import parse_frames

    assert parse_frames("0-2") == [0, 1, 2]
    assert parse_frames("3,4,5") == [3, 4, 5]
    out = place / "out"
    _one_line_error(
        capsys, [a.format(d=place) for a in _PREDICT] + ["--frames", "0-7", "--networks", "msdnet"], "frames"
    )
    _one_line_error(capsys, [a.format(d=place) for a in _PREDICT] + ["--frames", "a-b"], "frames")
    assert not any(out.iterdir())


def test_simulate_nan_defocus_is_named(place, capsys):
    """``simulate --defocus nan`` said "lam value too large"."""
    err = _one_line_error(capsys, [a.format(d=place) for a in _SIMULATE] + ["--defocus", "nan"], "defocus")
    assert "lam" not in err


def test_card_with_nan_threshold_is_named_broken(place, capsys):
    """A user card with a NaN threshold: ``predict --networks that-one`` says the card is broken and
    why (it was skipped as an "unknown network")."""
    from napari_hrtem.models.registry import available_networks, user_networks_dir

    src = available_networks()["msdnet"]
    folder = user_networks_dir()
    folder.mkdir(parents=True)
    shutil.copyfile(src.weights, folder / "mynet.pt")
    card = dict(src.card.to_dict(), name="mynet", threshold=float("nan"))
    (folder / "mynet.json").write_text(json.dumps(card))
    err = _one_line_error(capsys, [a.format(d=place) for a in _PREDICT] + ["--networks", "mynet"], "mynet", "threshold")
    assert "unknown network" not in err
