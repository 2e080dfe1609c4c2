"""The recipes of ``recipes/`` that made the shipped networks stay runnable: every parameter file loads
with the package's loader, and every shell script parses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from napari_hrtem.simulation.parameters import load_parameter_ranges
from napari_hrtem.simulation.vibrations import coordination_table_setting

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PARAMETER_FILES = sorted(RECIPES.rglob("*.yaml"))
SCRIPTS = sorted(RECIPES.rglob("*.sh"))


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda p: p.name)
def test_recipe_parameter_files_load(path):
    ranges = load_parameter_ranges(path)
    assert ranges["microscope"]["energy"] > 0
    assert ranges["simulation"]["wave_sampling"] in (0.05, 0.1)
    table = coordination_table_setting(ranges)
    if "-md" in path.stem:  # the recipe variation with the MD vibration table
        assert table is not None and {"Mo", "S"} <= set(table.sigmas)
    else:
        assert table is None


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash on this machine")
@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_recipe_scripts_parse(path):
    subprocess.run(["bash", "-n", str(path)], check=True)


def _recipe_module(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), RECIPES / "issue17" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exported_bank_trains_like_the_store(tmp_path):
    """The GPU run's banks (round 19): the store's band-limited waves within float16 rounding, its class
    maps and ranges; the pooled preprocessing gives the first batch exactly as the shipped bank does."""
    from multiprocessing.pool import ThreadPool  # the map_async of the script's process pool, without pickling

    from napari_hrtem.training.datastore import generate_dataset, load_exit_waves
    from napari_hrtem.training.trainer import exit_wave_bank

    distributed = pytest.importorskip("distributed")
    store = tmp_path / "tiny.zarr"
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        generate_dataset(
            store, 2, image_epochs=1, shape=(96, 96), sampling_range=(0.245, 0.255), phonon_configs=1,
            wave_sampling=0.1, seed=3, client=client,
        )  # fmt: skip
    exported = _recipe_module("export-bank")
    path = exported.export(store, tmp_path)
    bank, store_bank = exported.read_bank(path), load_exit_waves(store)
    assert len(bank) == len(store_bank) == 2
    for got, want in zip(bank, store_bank):
        a, b = got["wave"].spectrum, want["wave"].spectrum
        assert a.shape == b.shape and np.abs(a - b).max() <= 1e-3 * np.abs(b).max()
        np.testing.assert_array_equal(got["labels"], want["labels"])
        assert got["ranges"] == want["ranges"] and got["sampling"] == want["sampling"]
        assert got["wave"].energy == want["wave"].energy and got["wave"].cutoff == want["wave"].cutoff

    trainer = _recipe_module("train-round19-gpu")
    with ThreadPool(1) as pool:
        pooled = trainer.pooled_exit_wave_bank(pool, exit_wave_bank)(bank, device="cpu")
        images, labels = pooled(2, np.random.default_rng(5))
    want_images, want_labels = exit_wave_bank(bank, device="cpu")(2, np.random.default_rng(5))
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(images, want_images, rtol=0, atol=1e-5)
