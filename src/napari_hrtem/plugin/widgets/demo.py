"""Open napari with the napari-hrtem dock widgets; ``demo=True`` runs the whole path at once.

The demo simulates MoS2 on two graphene layers, Fourier-filters it for display, runs every
shipped network on the focal series and shows per-class Points for each network and the
consensus, each step in the widgets' own worker threads.
"""

from __future__ import annotations

WIDGETS = ("Simulate", "Load focal series", "Support filter", "Predict", "Compare", "Labels", "Evaluate", "Train")


def add_widgets(viewer) -> dict:
    """Dock the plugin's widgets on ``viewer``; returns name -> widget."""
    out, docks = {}, {}
    for name in WIDGETS:
        docks[name], widget = viewer.window.add_plugin_dock_widget("napari-hrtem", name, tabify=True)
        out[name] = widget
    if "Predict" in docks:  # the tab the demo is about, in front
        docks["Predict"].raise_()
    return out


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
    """A napari viewer with the widgets docked (and the demo started, or files opened)."""
    import napari

    viewer = napari.Viewer(title="napari-hrtem")
    widgets = add_widgets(viewer)
    if files:
        widgets["Load focal series"].files.value = list(files)
        widgets["Load focal series"].start()
    if demo:
        run_demo(viewer, widgets)
    return viewer, widgets
