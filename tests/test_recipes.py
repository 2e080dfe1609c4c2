"""The recipes of ``recipes/`` that made the shipped networks stay runnable: every parameter file loads
with the package's loader, and every shell script parses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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
