"""Issue 13, names are data, never paths; one bad card is skipped with a warning.

Network names (a card's ``name``, ``train --name``, fine-tuned names), class names and the names of the
files ``predict`` writes are checked where they enter (napari_hrtem.names); a card that cannot be used is
skipped by ``available_networks`` and listed as broken by ``napari-hrtem networks``; a user card with a
shipped network's name is listed as ``<name>-user`` (shipped names are kept); architecture settings and samplings are
range-checked before any network is built; CSV text cells never start a spreadsheet formula. Each case:
through the library and the CLI (in-process), one-line errors, nothing written outside the output folder,
nothing overwritten.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_hrtem.cli import main
from napari_hrtem.models.registry import (
    WEIGHTS_DIR,
    NetworkError,
    available_networks,
    load_network,
    read_network,
    scan_networks,
)
from napari_hrtem.names import check_name, check_user_network_name, csv_text

RNG = np.random.default_rng(13)
GOOD = RNG.random((3, 64, 64)).astype(np.float32)


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content (to prove nothing else was written or changed)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(capsys, argv, *words) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("napari-hrtem: error: "), err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture()
def user_dir(tmp_path, monkeypatch):
    """An empty user networks folder (platformdirs) in a temporary place."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    from napari_hrtem.models.registry import user_networks_dir

    folder = user_networks_dir()
    folder.mkdir(parents=True)
    return folder


def _install(folder: Path, stem: str = "net", **changes) -> Path:
    """A copy of the shipped MSD-net as ``<stem>.json`` / ``<stem>.pt`` in ``folder``, its card changed."""
    src = available_networks()["msdnet"]
    shutil.copyfile(src.weights, folder / f"{stem}.pt")
    card = dict(src.card.to_dict(), name=stem)
    for key, value in changes.items():
        if value is _DROP:
            card.pop(key, None)
        elif key == "config" and "architecture" not in changes:  # msdnet's settings, some changed
            card["config"] = {**card["config"], **value}
        else:
            card[key] = value
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(card))
    return path


_DROP = object()

# ------------------------------------------------------------------------------------- the name rule

UNSAFE_NAMES = [
    "../x",
    "../../x",
    "/tmp/abs",
    "a/b",
    "a\\b",
    "",
    ".hidden",
    "-x",
    "+x",
    "x.",
    "=cmd|' /C calc'!A0",
    "@SUM(1)",
    "a b",
    "tab\tname",
    "x" * 65,
    "con",
    "NUL.txt",
    "é",
]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_unsafe_names_are_refused_in_one_line(name):
    with pytest.raises(ValueError) as info:
        check_name(name)
    assert "\n" not in str(info.value) and "network name" in str(info.value)


@pytest.mark.parametrize("name", ["unet", "my-unet", "msdnet_v2", "unet+aug.3", "A" * 64, "_x"])
def test_safe_names_pass(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["consensus", "predict", "specimen_mask", "Consensus", "unet", "MSDNet"])
def test_reserved_and_shipped_names_are_refused_for_user_networks(name):
    with pytest.raises(ValueError, match="reserved|shipped network"):
        check_user_network_name(name)


# ------------------------------------------------------------------------------- names in model cards


@pytest.mark.parametrize(
    "name", ["../x", "/tmp/abs", "a/b", "=cmd", "consensus", "predict", "specimen_mask", ["x"], {"a": 1}, 3]
)
def test_card_name_unsafe_or_reserved_is_broken_not_a_crash(user_dir, tmp_path, capsys, name):
    _install(user_dir, name=name)
    with pytest.raises(NetworkError) as info:
        read_network(user_dir / "net.json")
    msg = str(info.value)
    assert msg.startswith("net.json: ") and "\n" not in msg, msg
    scan = scan_networks()
    assert "net" not in scan.networks and set(scan.networks) >= {"unet", "unetpp", "msdnet"}
    assert [p.name for p, _ in scan.broken] == ["net.json"]
    capsys.readouterr()
    assert main(["networks"]) == 0
    out = capsys.readouterr().out
    assert "broken: net.json: " in out and "msdnet: " in out, out


@pytest.mark.parametrize("stem", ["=cmd", "consensus", "-x"])
def test_card_without_name_takes_its_file_name_which_is_checked(user_dir, stem):
    _install(user_dir, stem, name=_DROP)
    scan = scan_networks()
    assert stem not in scan.networks and [p.name for p, _ in scan.broken] == [f"{stem}.json"]


@pytest.mark.parametrize(
    "classes", [["=1+1", "S2", "S"], ["Mo", "../S2", "S"], ["Mo", "S2", "@x"], ["Mo", "S 2", "S"], ["Mo", "mo", "S"]]
)
def test_card_class_names_are_checked(user_dir, classes):
    _install(user_dir, classes=classes)
    with pytest.raises(NetworkError, match=r"^net\.json: .*class"):
        read_network(user_dir / "net.json")
    assert "net" not in available_networks()


def test_user_card_with_a_shipped_name_is_listed_apart(user_dir, capsys):
    """Shipped names are kept: an old ``unet.json`` in the user folder does not replace the shipped U-Net;
    it is listed as ``unet-user`` (issue 15), and ``networks`` says why."""
    _install(user_dir, "unet")
    scan = scan_networks()
    assert scan.networks["unet"].weights.parent == WEIGHTS_DIR
    assert [(p.name, name) for p, name, _ in scan.renamed] == [("unet.json", "unet-user")] and not scan.ignored
    assert load_network("unet").weights.parent == WEIGHTS_DIR
    capsys.readouterr()
    assert main(["networks"]) == 0
    out = capsys.readouterr().out
    assert "unet-user: user (its card names it 'unet', a shipped name)" in out, out


# ------------------------------------------------------------------- one bad card never breaks the list

BAD_CARDS = [
    ("base_channels huge", dict(architecture="unet", config=dict(base_channels=100000, depth=3)), "base_channels"),
    ("base_channels 20000", dict(architecture="unet", config=dict(base_channels=20000, depth=3)), "base_channels"),
    ("base_channels negative", dict(architecture="unet", config=dict(base_channels=-1, depth=3)), "base_channels"),
    ("base_channels text", dict(architecture="unet", config=dict(base_channels="abc", depth=3)), "got 'abc'"),
    ("base_channels bool", dict(architecture="unet", config=dict(base_channels=True, depth=3)), "base_channels"),
    ("depth 40", dict(architecture="unet", config=dict(base_channels=8, depth=40)), "depth"),
    ("msd width 100", dict(config=dict(width=100)), "width"),
    ("msd kernel even", dict(config=dict(kernel_size=4)), "kernel_size must be odd"),
    ("msd channels", dict(config=dict(width=8, depth=200)), "width * depth"),
    ("msd dilation 0", dict(config=dict(max_dilation=0)), "max_dilation"),
    ("msd checkpoint text", dict(config=dict(checkpoint="yes")), "checkpoint"),
    ("sampling 0.001", dict(sampling=0.001), "sampling must be"),
    ("sampling 50", dict(sampling=50.0), "sampling must be"),
    ("normalization huge", dict(normalization_distance=1e9), "normalization_distance"),
    ("n_images 1000", dict(n_images=1000), "n_images"),
    ("threshold NaN", dict(threshold=float("nan")), "threshold"),
    ("architecture list", dict(architecture=["unet"]), "unknown architecture"),
    ("classes 1000", dict(classes=[f"c{i}" for i in range(1000)]), "classes"),
]


@pytest.mark.parametrize(("changes", "words"), [pytest.param(*c[1:], id=c[0]) for c in BAD_CARDS])
def test_bad_card_is_skipped_and_listed_as_broken(user_dir, capsys, changes, words):
    _install(user_dir, **changes)
    with pytest.raises(NetworkError) as info:
        read_network(user_dir / "net.json")
    msg = str(info.value)
    assert msg.startswith("net.json: ") and words in msg and "\n" not in msg and len(msg) < 400, msg
    assert "net" not in available_networks()  # skipped, no exception
    capsys.readouterr()
    assert main(["networks"]) == 0
    out = capsys.readouterr().out
    assert f"broken: {msg}" in out, out
    with pytest.raises(NetworkError, match="cannot be used: net.json"):  # not "unknown network"
        load_network("net")


def test_deeply_nested_card_is_refused_before_parsing(user_dir, capsys):
    (user_dir / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (user_dir / "deep.pt").write_bytes(b"")
    with pytest.raises(NetworkError, match="nested deeper"):
        read_network(user_dir / "deep.json")
    scan = scan_networks()
    assert [p.name for p, _ in scan.broken] == ["deep.json"]
    capsys.readouterr()
    assert main(["networks"]) == 0 and "broken: deep.json" in capsys.readouterr().out


def test_huge_card_is_refused_before_it_is_read(user_dir):
    path = _install(user_dir)
    card = json.loads(path.read_text())
    card["training"] = dict(padding="x" * 2_000_000)
    path.write_text(json.dumps(card))
    with pytest.raises(NetworkError, match="more than the 1000000 a card may have"):
        read_network(path)
    assert "net" not in available_networks()


def test_predict_with_default_networks_works_beside_a_broken_card(user_dir, tmp_path, capsys):
    _install(user_dir, "broken", config=dict(width="abc"))
    (user_dir / "deep.json").write_text("{" * 10_000)
    np.save(tmp_path / "series.npy", GOOD)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "series.npy"), "--sampling", "0.22", "--out", str(out)]) == 0
    assert {"unet.csv", "unetpp.csv", "msdnet.csv", "consensus.csv"} <= {p.name for p in out.iterdir()}


# ------------------------------------------------------------------------ predict's output files


def _prediction(name: str):
    from napari_hrtem.io.sites import Sites

    sites = Sites(np.zeros((1, 2)), [0], [1.0])
    return SimpleNamespace(results={name: sites}, consensus=sites, series=None, specimen=None, notes=[])


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "consensus", "predict", "Specimen_mask", "a/b"])
def test_prediction_files_refuse_network_names_that_are_paths_or_reserved(tmp_path, name):
    from napari_hrtem.io.predictions import write_prediction_files

    out = tmp_path / "run" / "out"
    out.mkdir(parents=True)
    before = _tree(tmp_path)
    with pytest.raises(ValueError, match="network name") as info:
        write_prediction_files(_prediction(name), out)
    assert "\n" not in str(info.value)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("name", ["../escape", "consensus"])
def test_check_networks_refuses_a_network_named_as_a_path_before_any_work(name):
    from dataclasses import replace

    from napari_hrtem import api

    shipped = available_networks()["msdnet"]
    with pytest.raises(ValueError, match="network name"):
        api.check_networks([replace(shipped, name=name)])


def test_output_path_refuses_a_link_out_of_the_folder(tmp_path):
    from napari_hrtem.names import output_path

    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere.csv").write_text("keep")
    (tmp_path / "out" / "net.csv").symlink_to(tmp_path / "elsewhere.csv")
    with pytest.raises(ValueError, match="outside its output folder"):
        output_path(tmp_path / "out", "net", ".csv")
    assert (tmp_path / "elsewhere.csv").read_text() == "keep"


# --------------------------------------------------------------------------------- training names


def _cli_train(tmp_path, *extra) -> list[str]:
    return ["train", "--samples", "1", "--steps", "1", "--batch-size", "1", "--set", "base_channels=2", *extra]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("../../x", "not a safe name"),
        ("a/b", "not a safe name"),
        ("/tmp/abs-net", "not a safe name"),
        ("=cmd", "not a safe name"),
        ("x" * 65, "longer than 64"),
        ("consensus", "reserved"),
        ("specimen_mask", "reserved"),
    ],
)
def test_train_name_is_checked_before_anything_is_built(user_dir, tmp_path, capsys, name, words):
    out = tmp_path / "run" / "out"
    before = _tree(tmp_path)
    _one_line(capsys, [*_cli_train(tmp_path), "--name", name, "--out", str(out)], words)
    assert not out.exists() and _tree(tmp_path) == before


@pytest.mark.parametrize("name", ["unet", "UNet", "msdnet"])
def test_train_refuses_a_shipped_name_in_the_user_folder(user_dir, tmp_path, capsys, name):
    _one_line(capsys, [*_cli_train(tmp_path), "--name", name], "shipped network")
    assert not any(user_dir.iterdir())


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_train_steps_zero_or_negative_is_an_error_before_anything(user_dir, tmp_path, capsys, steps):
    out = tmp_path / "out"
    argv = ["train", "--samples", "1", "--steps", steps, "--name", "mine", "--out", str(out)]
    _one_line(capsys, argv, "steps")
    assert not out.exists() and not any(user_dir.iterdir())
    from napari_hrtem.training.jobs import train
    from napari_hrtem.training.trainer import TrainingSettings

    with pytest.raises(ValueError, match="steps"):
        train("unet", settings=TrainingSettings(steps=int(steps)), name="mine", out=out)
    assert not out.exists()


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        ("base_channels=20000", "base_channels must be an integer 1-32"),
        ("depth=40", "depth must be an integer 1-5"),
        ("base_channels=0", "base_channels"),
        ("depth=10", "depth"),
    ],
)
def test_train_settings_are_range_checked_before_building(user_dir, tmp_path, capsys, setting, words):
    out = tmp_path / "out"
    _one_line(capsys, ["train", "--samples", "1", "--set", setting, "--name", "mine", "--out", str(out)], words)
    assert not out.exists()


@pytest.fixture(scope="module")
def tiny_data():
    """A 2-series training set, 32 px (trains in a second)."""
    rng = np.random.default_rng(0)
    return dict(
        images=rng.random((2, 3, 32, 32)).astype(np.float32),
        labels=rng.integers(0, 4, (2, 32, 32)),
        sampling=np.full(2, 0.22),
        recipe={"test": "tiny"},
    )


def _train(tiny_data, **kwargs):
    from napari_hrtem.training.jobs import train
    from napari_hrtem.training.trainer import TrainingSettings

    settings = TrainingSettings(steps=1, batch_size=1, validate_every=0, log_every=1, threads=1, amp=False)
    return train("unet", tiny_data, config=dict(base_channels=2, depth=2), settings=settings, **kwargs)


def test_train_default_name_never_shadows_a_shipped_network(user_dir, tiny_data):
    result = _train(tiny_data)
    assert result.card_path == user_dir / "my-unet.json" and (user_dir / "my-unet.pt").is_file()
    assert available_networks()["unet"].weights.parent == WEIGHTS_DIR
    assert "my-unet" in available_networks()


def test_train_never_overwrites_a_network_without_overwrite(user_dir, tiny_data, tmp_path, capsys):
    first = _train(tiny_data, name="mine")
    saved = _tree(user_dir)
    with pytest.raises(ValueError, match="already exists"):
        _train(tiny_data, name="mine")
    assert _tree(user_dir) == saved
    _one_line(capsys, [*_cli_train(tmp_path), "--name", "mine"], "already exists", "--overwrite")
    assert _tree(user_dir) == saved
    again = _train(tiny_data, name="mine", overwrite=True)
    assert again.card_path == first.card_path and _tree(user_dir) != saved


def test_save_network_refuses_a_name_that_is_a_path(tmp_path):
    from napari_hrtem.models.registry import build_model
    from napari_hrtem.training.trainer import save_network

    out = tmp_path / "a" / "out"
    out.mkdir(parents=True)
    model = build_model("unet", base_channels=2, depth=1)
    for name in ("../x", "/tmp/x", "a/b", "consensus"):
        with pytest.raises(ValueError, match="network name"):
            save_network(model, out, name, {})
    assert _tree(tmp_path) == {}


@pytest.mark.parametrize(("name", "words"), [("../tuned", "not a safe name"), ("predict", "reserved")])
def test_fine_tune_name_is_checked_before_any_work(user_dir, name, words):
    from napari_hrtem.io.sites import Sites
    from napari_hrtem.training.jobs import fine_tune

    with pytest.raises(ValueError, match=words):
        fine_tune("unet", GOOD, Sites(np.zeros((0, 2)), [], []), sampling=0.22, name=name)
    assert not any(user_dir.iterdir())


def test_fine_tune_default_name_does_not_overwrite(user_dir):
    from napari_hrtem.io.sites import Sites
    from napari_hrtem.training.jobs import fine_tune

    _install(user_dir, "unet-finetuned")
    saved = _tree(user_dir)
    with pytest.raises(ValueError, match="already exists"):
        fine_tune("unet", GOOD, Sites(np.zeros((0, 2)), [], []), sampling=0.22)
    assert _tree(user_dir) == saved


# ------------------------------------------------------------------------------------ CSV injection


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx"])
def test_csv_text_neutralises_formulas(cell):
    assert csv_text(cell) == "'" + cell


def test_site_table_writes_no_formula_and_numbers_stay_numbers(tmp_path):
    import csv

    from napari_hrtem.io.sites import Sites

    sites = Sites(
        np.array([[-1.5, 2.0], [3.0, -4.0]]),
        [0, 1],
        [0.9, 0.8],
        class_names=('=HYPERLINK("x")', "@cmd"),
        votes=np.array([1, 2]),
        networks=["=evil", "unet;msdnet"],
    )
    sites.write_csv(tmp_path / "t.csv")
    with open(tmp_path / "t.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[1][:3] == ["-1.5000", "2.0000", '\'=HYPERLINK("x")'] and rows[2][2] == "'@cmd"
    assert rows[1][5] == "'=evil" and rows[2][5] == "unet;msdnet"
    assert all(not cell.startswith(("=", "+", "@")) for row in rows for cell in row)
