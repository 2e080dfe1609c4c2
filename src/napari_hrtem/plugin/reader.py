"""npe2 reader: microscope files (.dm3/.dm4/.ser/.emi/.emd/.mrc/.tif/.npy/.npz), several files or a
folder, as one focal series image layer in Å."""

from __future__ import annotations

import os

#: Extensions claimed by the reader (napari asks which reader to use where its own reads them too).
READER_EXTENSIONS = (".dm3", ".dm4", ".ser", ".emi", ".emd", ".mrc", ".mrcs", ".tif", ".tiff", ".npy", ".npz")


def _readable(p) -> bool:
    if os.path.isdir(p):
        try:
            return any(f.lower().endswith(READER_EXTENSIONS) for f in os.listdir(p))
        except OSError:  # unreadable folder: not ours to open
            return False
    return str(p).lower().endswith(READER_EXTENSIONS)


def get_reader(path):
    """Return a reader for one microscope file, a list of them or a folder of them, else None."""
    paths = path if isinstance(path, list) else [path]
    if not paths or not all(_readable(p) for p in paths):
        return None
    return read_layers


def read_layers(path):
    """Layer tuples of a focal series read with :func:`napari_hrtem.io.focal_series.read_focal_series`.

    Several files (or a folder's files sorted by name) form one series. A file without a pixel
    size opens in pixels with no sampling and a warning: give the sampling in the Load focal
    series widget (nothing is guessed). Bad files raise
    :class:`napari_hrtem.io.focal_series.FocalSeriesError` naming the file and the problem.

    napari calls readers in its main thread: an HDF5-based file (.emd) is read in a child process
    stopped after the read time limit (60 s, ``NAPARI_HRTEM_READ_TIMEOUT``), and meanwhile napari
    keeps painting (Qt events other than user input are processed), so a damaged file gives an
    error, not a frozen window.
    """
    import warnings
    from pathlib import Path

    from napari_hrtem.io.focal_series import read_focal_series
    from napari_hrtem.plugin.layers import image_layer_data

    paths = path if isinstance(path, list) else [path]
    series = read_focal_series(paths, waiting=_gui_waiting())
    names = ", ".join(Path(p).name for p in series.sources)
    if series.sampling is None:
        warnings.warn(
            f"{names}: no pixel size in the file; shown in pixels. Open it with the Load focal series "
            "widget and enter the sampling (Å/px) to use it with the networks",
            stacklevel=2,
        )
    return [
        image_layer_data(
            series.images,
            series.sampling,
            Path(paths[0]).stem,
            sources=list(series.sources),
            energy=series.energy,
            defocus=series.defocus,
            source="file",
        )
    ]


def _gui_waiting():
    """A function that lets Qt process pending events other than user input (painting, timers) while a
    child process reads a file in the GUI thread; None outside a Qt application's main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        from qtpy.QtCore import QCoreApplication, QEventLoop
    except Exception:
        return None
    app = QCoreApplication.instance()
    if app is None:
        return None
    flags = QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents
    return lambda: app.processEvents(flags)
