"""The npe2 manifest, sample data and reader contributions (no Qt needed)."""

import numpy as np
import pytest

from .conftest import REALDATA, needs_realdata


def test_manifest_is_valid_and_registered():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("napari-hrtem")
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {
        "Simulate",
        "Load focal series",
        "Support filter",
        "Predict",
        "Compare",
        "Labels",
        "Evaluate",
        "Train",
        "Batch",
        "Workbench",
    }
    assert [w.command for w in manifest.contributions.writers] == ["napari-hrtem.write_labels"]
    assert manifest.contributions.sample_data and manifest.contributions.readers


def test_core_does_not_import_qt_or_napari():
    import subprocess
    import sys

    code = (
        "import sys, napari_hrtem.cli, napari_hrtem.analysis.inference, napari_hrtem.io.focal_series, napari_hrtem.simulation.imaging, "
        "napari_hrtem.plugin.layers, napari_hrtem.plugin.sample_data, napari_hrtem.plugin.reader; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt6', 'PySide6', 'torch', 'abtem')]; "
        "print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_sample_data_gives_a_calibrated_focal_series():
    from napari_hrtem.plugin.sample_data import sample_focal_series

    layers = sample_focal_series()
    data, kwargs, kind = layers[0]
    assert kind == "image" and data.shape == (3, 256, 256)
    assert kwargs["metadata"]["sampling"] == pytest.approx(0.22) and kwargs["scale"][-1] == pytest.approx(0.22)
    assert [k["name"] for _, k, _ in layers[1:]] == ["truth Mo", "truth S2", "truth S"]


@needs_realdata
def test_reader_contribution_reads_dm3():
    from napari_hrtem.plugin.reader import get_reader

    assert get_reader("image.png") is None
    reader = get_reader(str(REALDATA / "focal_series_img07.dm3"))
    ((data, kwargs, kind),) = reader(str(REALDATA / "focal_series_img07.dm3"))
    assert data.shape == (1, 1024, 1024) and data.dtype == np.float32
    assert kwargs["metadata"]["sampling"] == pytest.approx(0.2842, rel=1e-3)
