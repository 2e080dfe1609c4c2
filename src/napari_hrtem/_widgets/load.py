"""Load dock widget: microscope file(s) -> focal series image layer with its calibration."""

from __future__ import annotations

from magicgui.widgets import FileEdit, FloatSpinBox, PushButton

from ._common import WorkerWidget, add_layer_tuples


def load_layers(paths, sampling: float | None):
    """Read a focal series (:func:`napari_hrtem.io.read_focal_series`) into an image layer tuple.

    Raises
    ------
    napari_hrtem.io.FocalSeriesError
        For unreadable files or a missing pixel size (then give the sampling).
    """
    from pathlib import Path

    from .._layers import image_layer_data
    from ..io import FocalSeriesError, read_focal_series

    series = read_focal_series(paths, sampling=sampling)
    if series.sampling is None:
        raise FocalSeriesError(f"{', '.join(Path(p).name for p in paths)}: no pixel size in the file; "
                               "enter the sampling (Å/px) and load again")
    name = Path(paths[0]).stem if len(paths) == 1 else f"{Path(paths[0]).stem}…{Path(paths[-1]).stem}"
    return [image_layer_data(series.images, series.sampling, name, sources=[str(p) for p in series.sources],
                             energy=series.energy, defocus=series.defocus, source="file")]


class LoadWidget(WorkerWidget):
    """Load a focal series: one file holding (N, H, W), or one file per image by increasing defocus."""

    def __init__(self, napari_viewer):
        self.files = FileEdit(mode="rm", label="file(s)", filter="*.dm3 *.dm4 *.ser *.emd *.tif *.tiff *.npy *.npz")
        self.sampling = FloatSpinBox(value=0.0, min=0.0, max=1e4, step=0.001, label="sampling (Å/px, 0 = from file)")
        self.run = PushButton(text="Load")
        super().__init__(napari_viewer, widgets=[self.files, self.sampling, self.run])
        self.extend([self.progress, self.status])
        self.run.changed.connect(self.start)

    def start(self):
        """Read the chosen files in a worker thread."""
        paths = [str(p) for p in (self.files.value or []) if str(p) not in ("", ".")]
        if not paths:
            self.status.value = "choose one or more files first"
            return None
        return self._start(load_layers, paths, self.sampling.value or None, on_return=self._done, busy="reading…")

    def _done(self, tuples):
        add_layer_tuples(self.viewer, tuples)
        data, kwargs, _ = tuples[0]
        self.status.value = f"loaded {data.shape} at {kwargs['metadata']['sampling']:.4f} Å/px"
