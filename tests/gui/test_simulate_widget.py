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


def test_simulate_cancel_changes_no_layer(make_napari_viewer, qtbot):
    """Cancel inside a long frozen-phonon configuration: the run stops, no layer is added or changed."""
    from napari_hrtem.plugin.widgets.simulate import SimulateWidget

    viewer = make_napari_viewer()
    kept = viewer.add_image(np.ones((3, 8, 8), np.float32), name="focal series")
    sim = SimulateWidget(viewer)
    viewer.window.add_dock_widget(sim)
    sim.size.value, sim.graphene.value, sim.phonons.value = 768, 2, 4  # minutes of multislice
    sim.start()
    assert sim.cancel.enabled and not sim.run.enabled
    qtbot.waitUntil(lambda: "frozen-phonon configuration 1 of 4" in sim.status.value, timeout=120_000)
    sim.cancel.changed.emit(True)  # as a click does
    qtbot.waitUntil(lambda: sim.worker is None, timeout=60_000)
    assert sim.status.value.startswith("cancelled after ") and "no layer changed" in sim.status.value
    assert [layer.name for layer in viewer.layers] == ["focal series"]
    assert viewer.layers["focal series"] is kept and np.all(kept.data == 1)
    assert sim.run.enabled and not sim.cancel.enabled


def test_simulate_beam_energy_reaches_the_series(make_napari_viewer, qtbot):
    """The beam-energy field (kV) reaches the multislice and the CTF: the layer's metadata say so, and
    the images differ from the same simulation at 50 kV (run after a Cancel: a new compute process)."""
    from napari_hrtem.api import MicroscopeParameters, simulate
    from napari_hrtem.plugin.widgets.simulate import SimulateWidget

    viewer = make_napari_viewer()
    sim = SimulateWidget(viewer)
    viewer.window.add_dock_widget(sim)
    assert "(kV)" in sim.energy.label and sim.energy.value == 50.0
    sim.size.value, sim.graphene.value, sim.phonons.value, sim.energy.value = 64, 0, 1, 80.0
    sim.rotation.value, sim.seed.value = 0.0, 5
    sim.start()
    qtbot.waitUntil(lambda: sim.worker is None, timeout=180_000)
    assert sim.status.value.startswith("simulated focal series"), sim.status.value
    meta = viewer.layers["focal series"].metadata
    assert meta["energy"] == 80e3 and meta["microscope"]["energy"] == 80e3
    assert "beam energy 80 kV" in sim.parameters.value
    options = dict(vacancy_fraction=0.03, hole_fraction=0.02, formula="MoS2", carbon_vacancy_fraction=0.0)
    microscope = MicroscopeParameters(defocus=-50.0, defocus_steps=(50.0, 50.0))
    at_50 = simulate(64, 0.22, rotation=0.0, microscope=microscope, sample_options=options, phonon_configs=1, seed=5)
    at_80 = simulate(
        64, 0.22, rotation=0.0, microscope=microscope, sample_options=options, phonon_configs=1, seed=5, energy=80e3
    )
    assert at_80.series.energy == 80e3 and at_80.microscope.energy == 80e3 and at_50.series.energy == 50e3
    np.testing.assert_allclose(viewer.layers["focal series"].data, at_80.series.images, atol=1e-5)
    assert np.abs(at_80.series.images - at_50.series.images).mean() > 1e-3
