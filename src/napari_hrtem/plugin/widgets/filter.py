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
    ``domains``: angle °, lattice constant Å, significance σ). The second tuple is
    :func:`diffractogram_layer_data` of the first image.
    """
    from napari_hrtem.analysis.filters import support_filter
    from napari_hrtem.plugin.layers import image_layer_data

    result = support_filter(images, sampling, lattice_constant=lattice_constant, spot_radius=spot_radius)
    filtered = result.images
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
        diffractogram_layer_data(images, filtered, result.mask, sampling, name),
    ]


#: Pixels between two panels of the diffractogram layer.
PANEL_GAP = 8


def diffractogram_layer_data(images: np.ndarray, filtered: np.ndarray, mask, sampling: float, name: str) -> tuple:
    """``(data, kwargs, "image")``: one 2D layer in reciprocal space, three panels side by side:
    the diffractogram ``log(1 + |FFT|)`` of the first image before filtering, the filter's mask,
    and the diffractogram after filtering (each scaled to [0, 1], q = 0 at each panel's centre
    pixel ``(H // 2, W // 2)``, gaps of :data:`PANEL_GAP` px).

    Its ``scale`` is the reciprocal sampling ``1 / (H * sampling), 1 / (W * sampling)`` in
    Å⁻¹/px, so that the axes' numbers are spatial frequencies in Å⁻¹; its name ends in "(Å⁻¹)"
    and its metadata say so (``space: "reciprocal"``, ``units: "1/Å"``,
    ``reciprocal_sampling``, ``panels``, ``q0``: the world ``(y, x)`` of q = 0 in each panel).
    It is 2D (not a focal series: no frame slider, never offered as one) and hidden; it starts
    at the world origin, inside the image's extent, so it never changes the view.

    napari has one unit per axis for all its layers (a layer in Å⁻¹ would turn the Å of the
    scale bar off for every layer), so its napari ``units`` stay those of the images; read its
    axes in Å⁻¹.
    """
    first = np.asarray(images, np.float32).reshape(-1, *np.shape(images)[-2:])[0]
    after = np.asarray(filtered, np.float32).reshape(-1, *np.shape(filtered)[-2:])[0]
    h, w = first.shape

    def spectrum(image):
        power = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(image - image.mean()))))
        return power / max(float(power.max()), 1e-12)

    mask = np.ones((h, w), np.float32) if mask is None else np.fft.fftshift(np.asarray(mask, np.float32))
    gap = np.zeros((h, PANEL_GAP), np.float32)
    data = np.concatenate([spectrum(first), gap, mask, gap, spectrum(after)], axis=1).astype(np.float32)
    dq = (1.0 / (h * sampling), 1.0 / (w * sampling))
    q0 = [(h // 2 * dq[0], (i * (w + PANEL_GAP) + w // 2) * dq[1]) for i in range(3)]
    return (
        data,
        dict(
            name=f"{name} diffractogram | mask | filtered (Å⁻¹)",
            colormap="magma",
            visible=False,
            scale=dq,
            units=("angstrom", "angstrom"),  # napari's units: see above
            axis_labels=("q_y (Å⁻¹)", "q_x (Å⁻¹)"),
            metadata=dict(
                space="reciprocal",
                units="1/Å",
                reciprocal_sampling=dq,
                image_sampling=float(sampling),
                panels=["diffractogram before", "mask", "diffractogram after"],
                q0=q0,
            ),
        ),
        "image",
    )


class FilterWidget(WorkerWidget):
    """Fourier-filter the support lattice (graphene: a = 2.46 Å) out of a focal series."""

    def __init__(self, napari_viewer):
        self.lattice = FloatSpinBox(value=2.46, min=1.0, max=10.0, step=0.01, label="lattice constant (Å)")
        self.radius = FloatSpinBox(value=0.04, min=0.005, max=0.2, step=0.005, label="spot radius (Å⁻¹)")
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
