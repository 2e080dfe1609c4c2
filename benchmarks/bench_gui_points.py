"""Interactivity with many sites: 12 Points layers of 5,000 sites each (4 networks x 3 classes).

Times, in a real napari viewer drawn under Xvfb, what a user does while comparing networks:
toggle a layer's visibility, select all sites of a layer (and clear the selection), recolour a
layer, set the class of 1,000 selected sites in the Labels widget, and recompute the consensus of
the 4 networks in the Compare widget (off the GUI thread). Each action is followed by a
synchronous redraw of the canvas, so the times are what the user waits for.

Run:  xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_gui_points.py
"""

import time

import numpy as np


def timed(viewer, action, repeat=5):
    """Median seconds of ``action()`` followed by a forced redraw."""
    from qtpy.QtWidgets import QApplication

    canvas = viewer.window._qt_viewer.canvas
    out = []
    for i in range(repeat):
        t0 = time.perf_counter()
        action(i)
        canvas._scene_canvas.update()
        QApplication.processEvents()
        canvas._scene_canvas.app.process_events()
        canvas.native.repaint()
        out.append(time.perf_counter() - t0)
    return float(np.median(out)), float(np.max(out))


def main():
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_hrtem.io.sites import Sites
    from napari_hrtem.plugin.layers import CLASS_COLOURS, points_layer_data
    from napari_hrtem.plugin.widgets._common import add_layer_tuples
    from napari_hrtem.plugin.widgets.compare import CompareWidget
    from napari_hrtem.plugin.widgets.labels import LabelsWidget

    rng = np.random.default_rng(0)
    sampling, extent = 0.2246, 1024 * 0.2246
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.add_image(
        rng.normal(size=(1024, 1024)).astype(np.float32),
        scale=(sampling, sampling),
        name="image",
        metadata=dict(sampling=sampling),
    )
    base = rng.uniform(0, extent, (15_000, 2))
    t0 = time.perf_counter()
    for k in range(4):
        yx = base + rng.normal(0, 0.05, base.shape)
        classes = np.repeat([0, 1, 2], 5000)
        add_layer_tuples(viewer, points_layer_data(Sites(yx, classes, np.ones(len(yx))), sampling, f"net{k}"))
    QApplication.processEvents()
    print(f"12 Points layers x 5,000 sites added in {time.perf_counter() - t0:.2f} s")
    layers = [layer for layer in viewer.layers if layer.name.startswith("net")]
    assert len(layers) == 12 and all(len(layer.data) == 5000 for layer in layers)
    rows = []
    rows.append(("redraw only, nothing changed (baseline)", *timed(viewer, lambda i: None, 5)))
    rows.append(
        (
            "toggle visibility of one layer",
            *timed(viewer, lambda i: setattr(layers[i % 12], "visible", not layers[i % 12].visible), 12),
        )
    )
    rows.append(
        ("toggle all 12 layers", *timed(viewer, lambda i: [setattr(la, "visible", not la.visible) for la in layers], 4))
    )

    def select(i):
        layer = layers[i % 12]
        viewer.layers.selection.active = layer
        layer.selected_data = set(range(5000))

    rows.append(("select all 5,000 sites of a layer", *timed(viewer, select)))
    rows.append(("clear that selection", *timed(viewer, lambda i: setattr(layers[i % 12], "selected_data", set()))))
    colours = list(CLASS_COLOURS.values())
    rows.append(
        (
            "recolour a layer (5,000 sites)",
            *timed(viewer, lambda i: setattr(layers[i % 12], "face_color", colours[i % 3])),
        )
    )
    labels = LabelsWidget(viewer)
    labels.start_from.reset_choices()
    labels.start_from.value = "net0"
    layer = labels.new_layer()
    print(f"labels layer: {len(layer.data)} sites")

    def set_class(i):
        layer.selected_data = set(range(i * 1000, (i + 1) * 1000))
        labels.set_class(["S", "Mo", "S2"][i % 3])

    rows.append(("Labels: set class of 1,000 selected (of 15,000)", *timed(viewer, set_class, 5)))
    compare = CompareWidget(viewer)
    compare._refresh_networks()
    t0 = time.perf_counter()
    compare.networks.value = ["net0", "net1", "net2", "net3"]
    while compare.worker is not None:
        QApplication.processEvents()
        time.sleep(0.005)
    QApplication.processEvents()
    rows.append(("Compare: consensus + disagreements of 4 x 15,000 (worker)", time.perf_counter() - t0, float("nan")))
    print(f"\n{'action':<58} {'median ms':>9} {'max ms':>7}")
    for name, med, mx in rows:
        print(f"{name:<58} {med * 1000:>9.0f} {mx * 1000:>7.0f}")
    labels.dirty = False
    viewer.close()


if __name__ == "__main__":
    main()
