"""Support-filter dock widget: remove the graphene lattice by Fourier filtering (thesis 2.1.5)."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import FloatSpinBox, PushButton

from napari_hrtem.plugin.widgets._common import WorkerWidget, add_layer_tuples


def filter_layers(
    images: np.ndarray, sampling: float, lattice_constant: float, spot_radius: float, name: str, metadata: dict
):
    """Filtered series plus its diffractogram and the mask, as layer tuples."""
    from napari_hrtem.analysis.filters import support_filter
    from napari_hrtem.plugin.layers import image_layer_data

    filtered, info = support_filter(images, sampling, lattice_constant=lattice_constant, spot_radius=spot_radius)
    series = filtered if filtered.ndim == 3 else filtered[None]
    diffractogram = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(series[0] - series[0].mean()))))
    before = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(images.reshape(-1, *images.shape[-2:])[0]))))
    meta = {k: v for k, v in metadata.items() if k != "sampling"}
    return [
        image_layer_data(
            filtered,
            sampling,
            f"{name} filtered",
            **meta,
            support_filter=dict(
                lattice_constant=lattice_constant,
                angle=info["angle"],
                angles=info["angles"],
                significant=info["significant"],
            ),
        ),
        (
            np.stack([before / before.max(), np.fft.fftshift(info["mask"]), diffractogram / diffractogram.max()]),
            dict(
                name=f"{name} diffractogram | mask | filtered",
                colormap="magma",
                visible=False,
                # drawn on the image's pixel grid so that it does not change the view's extent
                scale=(1.0, sampling, sampling),
                metadata=dict(space="reciprocal, fftshifted"),
            ),
            "image",
        ),
    ]


class FilterWidget(WorkerWidget):
    """Fourier-filter the support lattice (graphene: a = 2.46 Å) out of a focal series."""

    def __init__(self, napari_viewer):
        self.lattice = FloatSpinBox(value=2.46, min=1.0, max=10.0, step=0.01, label="lattice constant (Å)")
        self.radius = FloatSpinBox(value=0.04, min=0.005, max=0.2, step=0.005, label="spot radius (1/Å)")
        self.run = PushButton(text="Filter")
        super().__init__(napari_viewer, widgets=[self.lattice, self.radius, self.run], layer_choice="image")
        self.extend([self.progress, self.status])
        self.run.changed.connect(self.start)

    def start(self):
        """Filter the chosen layer in a worker thread into a new layer."""
        chosen = self._chosen_series()
        if chosen is None:
            return None
        layer, sampling = chosen
        return self._start(
            filter_layers,
            np.asarray(layer.data, np.float32),
            sampling,
            self.lattice.value,
            self.radius.value,
            layer.name,
            dict(layer.metadata),
            on_return=self._done,
            busy="filtering…",
        )

    def _done(self, tuples):
        add_layer_tuples(self.viewer, tuples)
        self.status.value = filter_status(tuples[0][1]["metadata"]["support_filter"])


def filter_status(info: dict) -> str:
    """One line for the status bar: the support domains found (spot directions in degrees)."""
    angles = ", ".join(f"{np.degrees(a):.1f}°" for a in info.get("angles", [info["angle"]]))
    if not info.get("significant", True):
        return f"no support lattice above the noise; its rings filtered at {angles} anyway"
    n = len(info.get("angles", [info["angle"]]))
    return f"filtered {n} support domain{'s' if n > 1 else ''}: first-order spots at {angles}"
