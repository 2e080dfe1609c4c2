"""
Screenshot of the demo
======================

Run the demo (simulate MoS2 on graphene, run the shipped networks) in napari with the workbench
docked (its Predict section open) and save a screenshot of the whole window.

Run (no display needed):  ``xvfb-run -a .venv/bin/python examples/screenshot_demo.py docs/demo.png``
"""

import sys

import napari
from qtpy.QtCore import QTimer

from napari_hrtem.plugin.widgets.demo import fit_window, open_viewer

out = sys.argv[1] if len(sys.argv) > 1 else "demo.png"
viewer, widgets = open_viewer(demo=True)
fit_window(viewer, 1500, 950)


def save_when_done():
    predict = widgets["Predict"]
    if predict.worker is None and "consensus Mo" in viewer.layers:
        viewer.layers["focal series filtered"].visible = False
        viewer.reset_view()
        viewer.screenshot(out, canvas_only=False)
        print(f"saved {out}: {predict.status.value}")
        viewer.close()
    else:
        QTimer.singleShot(500, save_when_done)


QTimer.singleShot(2000, save_when_done)
napari.run()
