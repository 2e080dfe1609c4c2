"""Open napari with the napari-hrtem workbench; ``demo=True`` runs the whole path at once.

The demo simulates MoS2 on two graphene layers, Fourier-filters it for display, runs every
shipped network on the focal series and shows per-class Points for each network and the
consensus, each step in the widgets' own worker threads.
"""

from __future__ import annotations

from napari_hrtem.plugin.widgets.workbench import WIDTH, section_names

#: The workbench's sections (napari.yaml display names), in the order of the work.
WIDGETS = section_names()


def add_widgets(viewer, open_section: str = "Predict") -> dict:
    """Dock the plugin's workbench on ``viewer`` (one dock, a section per widget) with the
    ``open_section`` open; returns name -> widget for each section (the keys of :data:`WIDGETS`).

    The dock is :data:`~napari_hrtem.plugin.widgets.workbench.WIDTH` px wide, at most a third
    of the window, so the canvas keeps most of it.
    """
    from qtpy.QtCore import Qt

    dock, workbench = workbench_dock(viewer)
    if open_section in workbench.sections:
        workbench.show_section(open_section)
    window = viewer.window._qt_window
    window.resizeDocks([dock], [min(WIDTH, max(260, window.width() // 3))], Qt.Orientation.Horizontal)
    return dict(workbench.sections)


def workbench_dock(viewer):
    """``(dock, workbench)``: the workbench docked on ``viewer`` (docked now if it is not yet)."""
    return viewer.window.add_plugin_dock_widget("napari-hrtem", "Workbench")


def fit_window(viewer, width: int = 1600, height: int = 1000):
    """Resize napari's window to ``width`` × ``height`` px, never larger than the screen's
    available area (the part without task bars); returns the size used."""
    from qtpy.QtWidgets import QApplication

    window = viewer.window._qt_window
    screen = window.screen() or QApplication.primaryScreen()
    if screen is not None:
        area = screen.availableGeometry()
        frame = window.frameGeometry().size() - window.geometry().size()  # title bar and borders
        width = min(width, area.width() - max(frame.width(), 0))
        height = min(height, area.height() - max(frame.height(), 0))
        window.move(area.topLeft())
    window.resize(width, height)
    return width, height


def run_demo(viewer, widgets: dict):
    """Chain simulate -> filter (shown) -> predict with the widgets' workers."""
    simulate, filt, predict = widgets["Simulate"], widgets["Support filter"], widgets["Predict"]

    def after_simulation(*_):
        filt.layer.reset_choices()
        predict.layer.reset_choices()
        filt.layer.value = "focal series"
        predict.layer.value = "focal series"
        filt.start()
        worker = predict.start()
        if worker is not None:
            worker.returned.connect(lambda *_: viewer.reset_view())

    worker = simulate.start()
    worker.returned.connect(after_simulation)
    return worker


def open_viewer(demo: bool = False, files=()):
    """A napari viewer, sized to fit the screen, with the workbench docked (and the demo
    started, or files opened); returns ``(viewer, name -> section widget)``."""
    import napari

    viewer = napari.Viewer(title="napari-hrtem")
    fit_window(viewer)
    widgets = add_widgets(viewer)
    if files:
        widgets["Load focal series"].files.value = list(files)
        widgets["Load focal series"].start()
    if demo:
        run_demo(viewer, widgets)
    return viewer, widgets
