"""Helpers shared by the dock widgets."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import Container, Label, ProgressBar


def set_layer(viewer, data, kwargs: dict, layer_type: str):
    """Add a layer, or update the data and properties of the layer that has the same name."""
    import napari.layers

    name = kwargs["name"]
    cls = getattr(napari.layers, layer_type.capitalize())
    if name in viewer.layers and isinstance(viewer.layers[name], cls):
        layer = viewer.layers[name]
        layer.data = data
        for key in ("scale", "metadata", "features", "size", "face_color"):
            if key in kwargs:
                try:
                    setattr(layer, key, kwargs[key])
                except Exception:  # noqa: BLE001 - keep the data update even if a style fails
                    pass
        return layer
    return getattr(viewer, f"add_{layer_type}")(data, **kwargs)


def add_layer_tuples(viewer, tuples):
    """Add ``(data, kwargs, type)`` tuples (see :mod:`napari_hrtem._layers`)."""
    return [set_layer(viewer, data, dict(kwargs), kind) for data, kwargs, kind in tuples]


def layer_sampling(layer) -> float | None:
    """Å/px of an image layer: its metadata, else its scale when it is not the default 1."""
    sampling = layer.metadata.get("sampling")
    if sampling:
        return float(sampling)
    scale = float(layer.scale[-1])
    return scale if not np.isclose(scale, 1.0) else None


def notify_error(exc: BaseException):
    """Show an error as a napari notification (never raises)."""
    from napari.utils.notifications import show_error

    show_error(f"napari-hrtem: {exc}")


class _Failure:
    """An expected error (bad input) returned by a worker instead of raised."""

    def __init__(self, exc: BaseException):
        self.exc = exc


def _guarded(function):
    """Wrap a worker function so that bad-input errors (ValueError, OSError) come back as
    :class:`_Failure` values: the widget reports them; anything else reaches napari's handler."""
    import functools
    import inspect

    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def generator(*args, **kwargs):
            try:
                return (yield from function(*args, **kwargs))
            except (ValueError, OSError) as exc:
                return _Failure(exc)
        return generator

    @functools.wraps(function)
    def plain(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ValueError, OSError) as exc:
            return _Failure(exc)
    return plain


class WorkerWidget(Container):
    """A Container with a status label and a progress bar, running one worker at a time."""

    def __init__(self, viewer, widgets=(), layer_choice: str | None = None, **kwargs):
        """``layer_choice``: "image" or "series" ((N, H, W) only) puts a layer chooser first."""
        self.viewer = viewer
        self.layer = None if layer_choice is None else self._image_layer_choice(layer_choice == "series")
        super().__init__(widgets=[self.layer, *widgets] if self.layer is not None else list(widgets), **kwargs)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.progress = ProgressBar(value=0, min=0, max=1, visible=False)
        self.worker = None

    def _image_layer_choice(self, series_only: bool = False):
        """A ComboBox of the viewer's image layers (``series_only``: (N, H, W) ones), kept up to date."""
        from magicgui.widgets import ComboBox
        from napari.layers import Image

        def choices(*_):
            return [layer.name for layer in self.viewer.layers
                    if isinstance(layer, Image) and (layer.ndim == 3 or not series_only)]

        combo = ComboBox(label="focal series", choices=choices)
        self.viewer.layers.events.inserted.connect(lambda e: combo.reset_choices())
        self.viewer.layers.events.removed.connect(lambda e: combo.reset_choices())
        return combo

    def _chosen_series(self):
        """``(layer, sampling)`` of the chosen image layer, or None after saying what is missing."""
        name = self.layer.value
        if not name or name not in self.viewer.layers:
            self.status.value = "choose a focal series layer"
            return None
        layer = self.viewer.layers[name]
        sampling = layer_sampling(layer)
        if sampling is None:
            self._errored(ValueError(f"{name}: the layer has no sampling (Å/px): load it with one"))
            return None
        return layer, sampling

    def _start(self, function, *args, on_yield=None, on_return=None, busy: str = "working…", **kwargs):
        from napari.qt.threading import create_worker

        self.status.value = busy
        self.progress.visible = True
        self.progress.max = 0  # busy indicator until the first progress event
        worker = create_worker(_guarded(function), *args, _start_thread=False, **kwargs)
        if on_yield is not None:
            worker.yielded.connect(on_yield)

        def returned(result):
            if isinstance(result, _Failure):
                self._errored(result.exc)
            elif on_return is not None:
                on_return(result)

        worker.returned.connect(returned)
        worker.errored.connect(lambda exc: setattr(self.status, "value", f"error: {exc}"))
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()
        return worker

    def _errored(self, exc):
        self.status.value = f"error: {exc}"
        notify_error(exc)

    def _finished(self):
        self.progress.visible = False
        self.worker = None
