"""
Screenshots of the workbench
============================

Screenshots of the napari-hrtem workbench (one dock, a section per step of the work) for the
documentation (``docs/*.png``).

First the whole window at the two screen sizes the layout is made for:
``workbench_1366x768.png`` (a laptop: the Predict section open after a prediction on a simulated
MoS2-on-graphene series, the canvas keeping most of the window) and
``workbench_1920x1080.png`` (the Simulate section open: its collapsible groups, the beam energy,
the parameters used). Then, at 1920×1080, each section at work: Compare (consensus of the chosen
networks, disagreements, what every network says at a site), Labels (corrections started from the
consensus), Evaluate (scores against the truth, matched / missed / extra sites) and Train (a short
training run with its live loss and F1 plot).

Run (no display needed; a few minutes on 2 CPU cores)::

    xvfb-run -a -s "-screen 0 1920x1080x24" python examples/screenshot_workbench.py docs

Uses a temporary user-networks folder, so the trained network does not stay.
"""

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("XDG_DATA_HOME", tempfile.mkdtemp(prefix="napari-hrtem-screens-"))

import napari
import numpy as np
from qtpy.QtCore import QTimer

from napari_hrtem.plugin.widgets.demo import add_widgets, fit_window, workbench_dock

out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
out.mkdir(parents=True, exist_ok=True)
viewer = napari.Viewer(title="napari-hrtem")
window = viewer.window._qt_window
print("window", fit_window(viewer, 1366, 768), flush=True)
widgets = add_widgets(viewer, open_section="Simulate")
dock, workbench = workbench_dock(viewer)
steps = []


def size(width, height, dock_width):
    """The window at exactly ``width`` × ``height`` px, the workbench ``dock_width`` px wide."""
    from qtpy.QtCore import Qt

    window.resize(width, height)
    window.resizeDocks([dock], [dock_width], Qt.Orientation.Horizontal)


def show(name, dock_width=None):
    """Open a section of the workbench (and widen the dock for its tables)."""
    workbench.show_section(name)
    if dock_width:
        size(window.width(), window.height(), dock_width)


def snap(name):
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in window.findChildren(NapariQtNotification):  # notifications of earlier steps
        toast.close()
    path = out / f"{name}.png"
    viewer.screenshot(str(path), canvas_only=False)
    print(f"saved {path}", flush=True)


def wait(widget, then, attr="worker"):
    def poll():
        if getattr(widget, attr) is None:
            then()
        else:
            QTimer.singleShot(300, poll)

    QTimer.singleShot(300, poll)


def simulate():
    sim = widgets["Simulate"]
    sim.size.value, sim.graphene.value, sim.vacancies.value = 192, 1, 0.06
    sim.dose.value = 1500  # a noisy series: the networks disagree at places
    sim.start()
    wait(sim, predict)


def predict():
    p = widgets["Predict"]
    show("Predict")
    p.layer.reset_choices()
    p.layer.value = "focal series"
    p.start()
    wait(p, laptop_snap)


def laptop_snap():
    viewer.reset_view()
    w, h = window.width(), window.height()
    print(f"laptop: window {w}x{h}, workbench {workbench.width()} px, canvas {viewer.window._qt_viewer.width()} px")
    QTimer.singleShot(800, lambda: (snap(f"workbench_{w}x{h}"), full_hd()))


def full_hd():
    size(1920, 1080, 430)
    show("Simulate")
    for title, box in widgets["Simulate"].sections.items():  # the microscope: beam energy, aberrations
        if title == "Sample":
            box.collapse(animate=False)
        else:
            box.expand(animate=False)
    viewer.reset_view()

    def later():
        w, h = window.width(), window.height()
        print(f"full HD: window {w}x{h}, workbench {workbench.width()} px", flush=True)
        snap(f"workbench_{w}x{h}")
        compare()

    QTimer.singleShot(1200, later)


def compare():
    c = widgets["Compare"]
    c._refresh_networks()
    c.layer.reset_choices()
    c.layer.value = "focal series"
    c.networks.value = list(c.networks.choices)
    c.start()
    wait(c, compare_inspect)


def compare_inspect():
    c = widgets["Compare"]
    dis = viewer.layers["disagreement"]
    target = dis.data[0] * dis.scale if len(dis.data) else viewer.layers["consensus Mo"].data[0] * 0.22
    c.inspect_at(target)
    viewer.scene.camera.center = tuple(target)
    viewer.scene.camera.zoom = 22
    for cls in ("Mo", "S2", "S"):
        viewer.layers[f"consensus {cls}"].visible = True
    wait(c, compare_snap, attr="_inspect_worker")


def compare_snap():
    show("Compare", 560)
    viewer.layers.selection.active = viewer.layers["disagreement"]
    QTimer.singleShot(800, lambda: (snap("compare"), labels()))


def labels():
    lab = widgets["Labels"]
    lab.start_from.reset_choices()
    lab.start_from.value = "consensus"
    lab.series.value = "focal series"
    layer = lab.new_layer()
    for cls in ("Mo", "S2", "S"):
        viewer.layers[f"consensus {cls}"].visible = False
    viewer.layers["disagreement"].visible = False
    centre = np.asarray(viewer.scene.camera.center[-2:]) / layer.scale[-1]
    near = np.argsort(np.hypot(*(layer.data - centre).T))[:3]
    layer.selected_data = set(near.tolist())
    lab.set_class("S")
    layer.mode = "select"
    show("Labels", 560)
    QTimer.singleShot(800, lambda: (snap("labels"), evaluate()))


def evaluate():
    viewer.layers["labels"].visible = False
    ev = widgets["Evaluate"]
    ev.reference.reset_choices()
    ev.reference.value = "truth"
    ev.candidate.reset_choices()
    ev.candidate.value = "msdnet"
    ev.show_matches.value = True
    ev.start()
    wait(ev, evaluate_snap)


def evaluate_snap():
    viewer.reset_view()
    show("Evaluate", 560)
    QTimer.singleShot(800, lambda: (snap("evaluate"), train()))


def train():
    for name in ("msdnet matched", "msdnet missed", "msdnet extra"):
        viewer.layers[name].visible = False
    t = widgets["Train"]
    t.samples.value, t.size.value, t.validation.value = 6, 128, 2
    t.steps.value, t.batch.value = 120, 4
    t.net_name.value = "my-unet-demo"
    show("Train", 560)
    t.start()
    wait(t, train_snap)


def train_snap():
    show("Train", 560)
    widgets["Predict"].refresh_networks()
    QTimer.singleShot(800, lambda: (snap("train"), finish()))


def finish():
    widgets["Labels"].dirty = False  # the demo's corrections are not worth a "save?" question
    viewer.close()


QTimer.singleShot(1500, simulate)
napari.run()
