"""GUI tests of the layout: the workbench (one dock, sections in the order of the work) fits a
1366×768 laptop, the scale bar reads Å, the diffractogram is a 2D layer in Å⁻¹ that is never
offered as a focal series. Run under Xvfb (see README)."""

import numpy as np
import pytest

napari = pytest.importorskip("napari")

#: The sections in the order of the work (Batch only where its widget is there).
ORDER = (
    "Simulate",
    "Load focal series",
    "Support filter",
    "Predict",
    "Batch",
    "Compare",
    "Labels",
    "Evaluate",
    "Train",
)


def _settle(qtbot, ms=200):
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    qtbot.wait(ms)


def _scale_bar_text(viewer) -> str:
    """The text napari's scale bar draws (its vispy visual)."""
    from napari_hrtem.plugin.widgets._common import scale_bar

    canvas = viewer.window._qt_viewer.canvas
    visuals = canvas._viewer_overlay_to_visual[scale_bar(viewer)]
    visuals = visuals if isinstance(visuals, list | tuple) else [visuals]
    return " ".join(str(v.node.text.text) for v in visuals)


@pytest.fixture
def laptop(make_napari_viewer, qtbot):
    """A shown viewer at 1366×768 with the workbench docked (Simulate open)."""
    from napari_hrtem.plugin.widgets.demo import add_widgets, fit_window, workbench_dock

    viewer = make_napari_viewer(show=True)
    assert fit_window(viewer, 1366, 768) == (1366, 768)  # the Xvfb screen is larger
    widgets = add_widgets(viewer, open_section="Simulate")
    _settle(qtbot, 500)
    dock, workbench = workbench_dock(viewer)
    return viewer, widgets, dock, workbench


def test_workbench_sections_in_order_and_the_window_fits_a_laptop(laptop, qtbot):
    from qtpy.QtWidgets import QWidget

    from napari_hrtem.plugin.widgets.demo import WIDGETS

    viewer, widgets, dock, workbench = laptop
    window = viewer.window._qt_window
    required = [name for name in ORDER if name != "Batch"]
    assert list(widgets) == [name for name in ORDER if name in widgets] == list(WIDGETS)
    assert set(required) <= set(widgets)
    titles = [workbench.toolbox.itemText(i) for i in range(workbench.toolbox.count())]
    assert len(titles) == len(widgets) and titles[0].startswith("Simulate") and titles[-1].startswith("Train")
    assert all("…" not in t and len(t) > 8 for t in titles)
    assert workbench.current_section() == "Simulate"
    # the window fits, the dock takes at most a third of it, the canvas is shown and wider than the dock
    assert (window.width(), window.height()) == (1366, 768)
    canvas = viewer.window._qt_viewer.canvas.native
    assert dock.width() <= window.width() / 3 and canvas.isVisible()
    assert canvas.width() > dock.width() and canvas.width() >= 0.45 * window.width()
    # every section fits the dock: nothing in it is wider than the page it scrolls in
    too_wide = {}
    for name, widget in widgets.items():
        assert workbench.show_section(name) is widget
        _settle(qtbot, 50)
        page = workbench.pages[name]
        assert page.width() <= dock.width()
        native = widget.native
        widest = max(
            [native.minimumSizeHint().width()]
            + [c.minimumSizeHint().width() for c in native.findChildren(QWidget) if c.isVisible()]
        )
        if widest > page.viewport().width():
            too_wide[name] = widest
    assert not too_wide, too_wide  # no section scrolls sideways


def test_simulate_section_then_filter_scale_bar_in_angstrom_and_diffractogram_in_reciprocal(laptop, qtbot):
    from napari_hrtem.plugin.widgets._common import scale_bar

    viewer, widgets, dock, workbench = laptop
    sim = workbench.show_section("Simulate")
    assert {"Sample", "Microscope", "Detector and noise"} <= set(sim.sections)
    assert all(s.isExpanded() for t, s in sim.sections.items() if t in ("Sample", "Microscope"))
    sim.size.value, sim.graphene.value, sim.phonons.value = 64, 1, 1
    sim.start()
    qtbot.waitUntil(lambda: sim.worker is None, timeout=180_000)
    series = viewer.layers["focal series"]
    assert series.ndim == 3 and [str(u) for u in series.units[-2:]] == ["angstrom", "angstrom"]
    assert str(viewer.layers.units[-1]) == "angstrom" and scale_bar(viewer).visible
    for name in ("truth Mo", "truth S2", "truth S"):
        assert [str(u) for u in viewer.layers[name].units] == ["angstrom", "angstrom"]
    viewer.reset_view()
    _settle(qtbot, 300)
    assert "Å" in _scale_bar_text(viewer) and "pixel" not in _scale_bar_text(viewer)

    filt = workbench.show_section("Support filter")
    filt.layer.reset_choices()
    filt.layer.value = "focal series"
    filt.start()
    qtbot.waitUntil(lambda: filt.worker is None, timeout=120_000)
    name = "focal series diffractogram | mask | filtered (Å⁻¹)"
    diffractogram = viewer.layers[name]
    assert diffractogram.ndim == 2 and not diffractogram.visible  # no frame slider of its own
    assert diffractogram.metadata["space"] == "reciprocal" and diffractogram.metadata["units"] == "1/Å"
    assert tuple(diffractogram.scale) == pytest.approx((1 / (64 * 0.22), 1 / (64 * 0.22)))
    assert diffractogram.data.shape[0] == 64 and diffractogram.data.shape[1] > 3 * 64
    # never offered as a focal series; the filtered series is
    predict = widgets["Predict"]
    for chooser in (filt.layer, predict.layer):
        chooser.reset_choices()
        assert name not in chooser.choices and "focal series filtered" in chooser.choices
    # the scale bar still reads Å with the diffractogram there
    assert str(viewer.layers.units[-1]) == "angstrom"
    _settle(qtbot, 300)
    assert "Å" in _scale_bar_text(viewer)


def test_fit_window_never_larger_than_the_screen(make_napari_viewer):
    from qtpy.QtWidgets import QApplication

    from napari_hrtem.plugin.widgets.demo import fit_window

    viewer = make_napari_viewer(show=True)
    area = QApplication.primaryScreen().availableGeometry()
    width, height = fit_window(viewer, 10_000, 10_000)
    window = viewer.window._qt_window
    assert width <= area.width() and height <= area.height()
    assert window.width() <= area.width() and window.height() <= area.height()


def test_load_section_beam_energy_reaches_the_layer(laptop, qtbot, tmp_path):
    """Load: the beam energy typed (kV) replaces the file's none, and the status line says it."""
    viewer, widgets, dock, workbench = laptop
    load = workbench.show_section("Load focal series")
    path = tmp_path / "series.npy"
    np.save(path, np.random.default_rng(0).normal(1, 0.1, (3, 32, 32)).astype(np.float32))
    load.files.value = [str(path)]
    load.sampling.value = 0.2
    load.energy.value = 300.0
    load.start()
    qtbot.waitUntil(lambda: load.worker is None, timeout=60_000)
    layer = viewer.layers["series"]
    assert layer.metadata["energy"] == 300e3 and "300 kV" in load.status.value
    assert [str(u) for u in layer.units[-2:]] == ["angstrom", "angstrom"]
