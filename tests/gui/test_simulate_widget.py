"""GUI test: the Simulate widget exposes the Table 1 settings and shows the parameters it drew (run under Xvfb)."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")


def test_simulate_widget_shows_drawn_parameters(make_napari_viewer, qtbot):
    from napari_hrtem.plugin.widgets.simulate import SimulateWidget
    from napari_hrtem.simulation.imaging import draw_microscope_parameters

    viewer = make_napari_viewer()
    sim = SimulateWidget(viewer)
    viewer.window.add_dock_widget(sim)
    assert "Table 1" in sim.focal_spread.tooltip and "(Å)" in sim.focal_spread.label
    assert "(e/Å²)" in sim.dose.label and "(Å/px)" in sim.sampling.label
    sim.size.value = 64
    sim.graphene.value = 1
    sim.phonons.value = 1
    sim.n_images.value = 4
    sim.tilt.value = 2.0
    sim.draw.value = True
    sim.rotation_recipe.value = True
    sim.seed.value = 3
    sim.start()
    qtbot.waitUntil(lambda: sim.worker is None, timeout=180_000)
    series = viewer.layers["focal series"]
    assert series.data.shape == (4, 64, 64)
    drawn = draw_microscope_parameters(np.random.default_rng(3), 4)  # same seed, same draw
    meta = series.metadata
    assert meta["microscope"]["dose"] == pytest.approx(drawn.dose)
    assert meta["defocus"] == pytest.approx(drawn.defoci.tolist())
    assert len(meta["image_records"]) == 4 and meta["sample"]["tilt"] == 2.0
    text = sim.parameters.value
    assert f"{drawn.dose:.3g} e/Å²" in text and f"{drawn.focal_spread:.2f} Å" in text
    assert "MoS2" in text and "1 graphene layers" in text and "tilt 2.00°" in text
    assert sim.last_metadata["microscope"]["Cs"] == pytest.approx(drawn.Cs)
    assert 100 <= meta["exit_wave"]["temperature"] <= 600  # drawn (Table 1)
    assert meta["sample"]["rotation"] in (0.0, 15.0, 30.0) or 0 <= meta["sample"]["rotation"] <= 90
