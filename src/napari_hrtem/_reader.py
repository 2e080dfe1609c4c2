"""npe2 reader: microscope files (.dm3/.dm4/.ser/.emd) as a focal series image layer in Å."""

from __future__ import annotations


def get_reader(path):
    """Return a reader for one microscope file (or a list of them), else None."""
    paths = path if isinstance(path, list) else [path]
    if not all(str(p).lower().endswith((".dm3", ".dm4", ".ser", ".emd")) for p in paths):
        return None
    return read_layers


def read_layers(path):
    """Layer tuples of a focal series read with :func:`napari_hrtem.io.read_focal_series`.

    A file without a pixel size opens in pixels with no sampling; give it in the Load widget.
    """
    from ._layers import image_layer_data
    from .io import read_focal_series

    paths = path if isinstance(path, list) else [path]
    series = read_focal_series(paths)
    from pathlib import Path

    return [image_layer_data(series.images, series.sampling, Path(paths[0]).stem,
                             sources=[str(p) for p in series.sources], energy=series.energy)]
