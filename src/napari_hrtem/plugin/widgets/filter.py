"""Support-filter dock widget: remove the graphene lattice by Fourier filtering (thesis 2.1.5)."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import FloatSpinBox, PushButton

from napari_hrtem.plugin.widgets._common import WorkerWidget, add_layer_tuples


def filter_layers(
    images: np.ndarray, sampling: float, lattice_constant: float, spot_radius: float, name: str, metadata: dict
):
    """Filtered series plus its diffractogram and the mask, as layer tuples.

    When no support lattice is found the "filtered" layer holds the images unchanged and the mask
    is all ones; the layer's ``support_filter`` metadata says which (``filtered``, ``message``,
    ``domains``: angle °, lattice constant Å, significance σ).
    """
    from napari_hrtem.analysis.filters import support_filter
    from napari_hrtem.plugin.layers import image_layer_data

    result = support_filter(images, sampling, lattice_constant=lattice_constant, spot_radius=spot_radius)
    filtered = result.images
    series = filtered if filtered.ndim == 3 else filtered[None]
    diffractogram = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(series[0] - series[0].mean()))))
    before = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(images.reshape(-1, *images.shape[-2:])[0]))))
    mask = result.mask if result.mask is not None else np.ones(series.shape[1:], np.float32)
    meta = {k: v for k, v in metadata.items() if k != "sampling"}
    record = dict(
        lattice_constant=lattice_constant,
        filtered=result.filtered,
        message=result.message,
        domains=[
            dict(angle=d.angle, lattice_constant=d.lattice_constant, significance=d.significance, order=d.order)
            for d in result.domains
        ],
    )
    return [
        image_layer_data(filtered, sampling, f"{name} filtered", **meta, support_filter=record),
        (
            np.stack([before / before.max(), np.fft.fftshift(mask), diffractogram / max(diffractogram.max(), 1e-12)]),
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
    """One line for the status bar: the support domains found, or that the images are unchanged."""
    return str(info["message"])
