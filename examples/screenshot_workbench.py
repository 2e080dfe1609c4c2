"""
Screenshots of the workbench
============================

Screenshots of the workbench widgets at work, for the documentation (``docs/*.png``).

Simulates MoS2 on graphene with its ground truth, runs the shipped networks, then shows in turn:
Compare (consensus of the chosen networks, disagreements, what every network says at a site),
Labels (corrections started from the consensus), Evaluate (scores against the truth, matched /
missed / extra sites) and Train (a short training run with its live loss and F1 plot).

Run (no display needed; a few minutes on 2 CPU cores)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python examples/screenshot_workbench.py docs

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

from napari_hrtem.plugin.widgets.demo import add_widgets

out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
out.mkdir(parents=True, exist_ok=True)
viewer = napari.Viewer(title="napari-hrtem")
viewer.window._qt_window.resize(1600, 1000)
widgets = add_widgets(viewer)
steps = []


def show(name):
    """Bring a tabified dock widget to the front, wide enough for its tables."""
    from qtpy.QtCore import Qt

    dock = widgets[name].native.parent()
    dock.show()
    dock.raise_()
    viewer.window._qt_window.resizeDocks([dock], [560], Qt.Orientation.Horizontal)


def snap(name):
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
    p.layer.reset_choices()
    p.layer.value = "focal series"
    p.start()
    wait(p, compare)


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
    show("Compare")
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
    show("Labels")
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
    show("Evaluate")
    QTimer.singleShot(800, lambda: (snap("evaluate"), train()))


def train():
    for name in ("msdnet matched", "msdnet missed", "msdnet extra"):
        viewer.layers[name].visible = False
    t = widgets["Train"]
    t.samples.value, t.size.value, t.validation.value = 6, 128, 2
    t.steps.value, t.batch.value = 120, 4
    t.net_name.value = "my-unet-demo"
    show("Train")
    t.start()
    wait(t, train_snap)


def train_snap():
    show("Train")
    widgets["Predict"].refresh_networks()
    QTimer.singleShot(800, lambda: (snap("train"), finish()))


def finish():
    widgets["Labels"].dirty = False  # the demo's corrections are not worth a "save?" question
    viewer.close()


QTimer.singleShot(1500, simulate)
napari.run()
