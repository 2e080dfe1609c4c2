"""Helpers shared by the dock widgets."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import Container, Label, ProgressBar


def set_layer(viewer, data, kwargs: dict, layer_type: str):
    """Add a layer, or update the data and properties of the layer that has the same name.

    An updated layer keeps the user's visibility, except a Points layer that was empty, or is
    made empty and hidden: it takes ``kwargs["visible"]`` (an empty marks layer is made hidden, and
    shown once a later run gives it marks)."""
    import napari.layers

    name = kwargs["name"]
    cls = getattr(napari.layers, layer_type.capitalize())
    if "units" not in kwargs and (kwargs.get("metadata") or {}).get("sampling"):  # Å before napari sees it
        ndim = np.shape(data)[-1] if layer_type in ("points", "vectors") else np.ndim(data)
        if ndim >= 2:
            kwargs = {**kwargs, "units": ("pixel",) * (ndim - 2) + ANGSTROM}
    if name in viewer.layers and isinstance(viewer.layers[name], cls):
        layer = viewer.layers[name]
        show = kwargs.get("visible")
        if layer_type == "points" and show is not None:  # see the docstring: an empty layer's visibility
            show = bool(show) if len(layer.data) == 0 or (len(data) == 0 and not show) else None
        layer.data = data
        if show is not None:
            layer.visible = show
        for key in ("scale", "translate", "metadata", "features", "size", "face_color", "border_color"):
            if key in kwargs:
                try:
                    setattr(layer, key, kwargs[key])
                except Exception:
                    pass
        return layer
    return getattr(viewer, f"add_{layer_type}")(data, **kwargs)


def add_layer_tuples(viewer, tuples):
    """Add ``(data, kwargs, type)`` tuples (see :mod:`napari_hrtem.plugin.layers`)."""
    return [set_layer(viewer, data, dict(kwargs), kind) for data, kwargs, kind in tuples]


def collect_after_imports():
    """One full garbage collection now, while a widget docks, after its heavy first imports.

    CPython starts a full collection once the long-lived objects have grown by a quarter since
    the last one; in napari's process (0.25-0.55 M objects) each one holds the GUI thread for
    0.15-0.45 s (measured with ``gc.callbacks``). The first imports of pandas (napari's Points
    layers need it) or matplotlib (the loss plot) add enough objects to start one soon after:
    measured, during the first prediction's layers (0.42-0.46 s, three runs out of three).
    Collected here, it happens at docking instead, and the next one only after the process has
    grown by another quarter.
    """
    import gc

    gc.collect()


def layer_sampling(layer) -> float | None:
    """Å/px of an image layer: its metadata, else its scale when it is not the default 1."""
    sampling = layer.metadata.get("sampling")
    if sampling:
        return float(sampling)
    scale = float(layer.scale[-1])
    return scale if not np.isclose(scale, 1.0) else None


#: napari's units of the ``(y, x)`` axes of every layer in Å (its scale bar then reads Å or nm).
ANGSTROM = ("angstrom", "angstrom")


def scale_bar(viewer):
    """napari's scale bar overlay (``viewer.canvas.overlays.scale_bar`` since napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    return getattr(overlays, "scale_bar", None) or viewer.scale_bar


_ANGSTROM_VIEWERS: list = []  # weak references to the viewers show_angstrom has connected


def show_angstrom(viewer) -> None:
    """Show napari's scale bar in Å: every layer with a sampling (``metadata["sampling"]``, Å/px),
    or with a scale other than 1 while Å layers are there, gets units Å on its ``(y, x)`` axes
    when it is added, and the scale bar is shown.

    napari uses one unit per axis for all layers (a layer left in pixels turns the units off for
    all); layers made by this plugin carry their sampling, so they all get Å. Connected once per
    viewer; layers already there are updated now.
    """
    import weakref

    if any(ref() is viewer for ref in _ANGSTROM_VIEWERS):
        return
    _ANGSTROM_VIEWERS[:] = [ref for ref in _ANGSTROM_VIEWERS if ref() is not None] + [weakref.ref(viewer)]

    def update(layer):
        if layer.ndim < 2:
            return
        # a layer with a sampling, or a helper layer (a ring) at an image's scale
        others = [other for other in viewer.layers if other is not layer]
        helper = not np.allclose(layer.scale[-2:], 1.0) and any(str(o.units[-1]) == "angstrom" for o in others)
        calibrated = layer.metadata.get("sampling") or helper
        if not calibrated:
            return
        try:
            if all(str(u) == "pixel" for u in layer.units[-2:]):
                layer.units = tuple(str(u) for u in layer.units[:-2]) + ANGSTROM
            if str(layer.units[-1]) == "angstrom":
                scale_bar(viewer).visible = True
        except Exception:  # never let a display nicety break adding a layer
            pass

    for layer in list(viewer.layers):
        update(layer)
    # napari's own handlers run first and draw once with the new layer still in pixels (a warning
    # "Inconsistent units"), so the plugin's layers get their units before (set_layer, layers.py)
    viewer.layers.events.inserted.connect(lambda event: update(event.value))


def csv_path(path, ask) -> str | None:
    """The CSV file to export to: ``path``, else what ``ask()`` (a save dialog) returns; ``.csv``
    added when missing; None when the user cancelled the dialog."""
    path = str(path or "") or str(ask() or "")
    if not path:
        return None
    return path if path.lower().endswith(".csv") else path + ".csv"


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
        show_angstrom(viewer)

    def _image_layer_choice(self, series_only: bool = False):
        """A ComboBox of the viewer's image layers (``series_only``: (N, H, W) ones), kept up to date."""
        from magicgui.widgets import ComboBox
        from napari.layers import Image

        def choices(*_):
            return [
                layer.name
                for layer in self.viewer.layers
                if isinstance(layer, Image)
                and (layer.ndim == 3 or not series_only)
                and layer.metadata.get("space") != "reciprocal"  # a diffractogram is never a focal series
            ]

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


def site_sources(viewer) -> dict[str, list]:
    """Site sets shown as Points: ``{name: [layers]}``.

    A network, the consensus or the truth is shown as one layer per class (``"<name> Mo"``, …,
    with ``metadata["source"]``); a labels layer is one Points layer with a ``class`` feature.
    """
    import napari.layers

    out: dict[str, list] = {}
    for layer in viewer.layers:
        if not isinstance(layer, napari.layers.Points):
            continue
        if "class" in layer.features.columns:
            out[layer.name] = [layer]
        elif layer.metadata.get("site_class") and layer.metadata.get("source"):
            out.setdefault(layer.metadata["source"], []).append(layer)
    return out


def sites_of(layers):
    """One :class:`~napari_hrtem.io.sites.Sites` (Å) from the layers of :func:`site_sources`."""
    from napari_hrtem.io.sites import Sites
    from napari_hrtem.plugin.layers import sites_from_points

    parts = [
        sites_from_points(
            layer.data, layer.scale, {k: layer.features[k].to_numpy() for k in layer.features}, layer.metadata
        )
        for layer in layers
    ]
    if not parts:
        return Sites(np.zeros((0, 2)), np.zeros(0, int), np.zeros(0))
    shared = set.intersection(*(set(p.extra) for p in parts))  # the class probabilities, when every layer has them
    return Sites(
        np.concatenate([p.yx for p in parts]),
        np.concatenate([p.classes for p in parts]),
        np.concatenate([p.confidence for p in parts]),
        extra={key: np.concatenate([p.extra[key] for p in parts]) for key in sorted(shared)},
    )


# Compute in a separate process --------------------------------------------------------------------
# Some library calls hold Python's GIL for long (scipy.ndimage on a 1024x1024 image: ~0.7 s; the
# first `import torch`: ~1 s); in a worker thread they freeze napari meanwhile. Work that runs such
# calls goes to one persistent child process instead; the worker thread only waits and forwards
# the progress events, so the event loop stays free.

_POOLS: dict = {}
_POOLS_LOCK = __import__("threading").Lock()


def _pool(name: str = "compute"):
    """A persistent child process (spawned once, reused) with its manager and progress queue.

    One per ``name``: prediction runs in ``"compute"``, training in ``"training"``, so that a
    long training run does not hold up a prediction.
    """
    with _POOLS_LOCK:
        return _make_pool(name)


def _make_pool(name: str):
    if _POOLS.get(name) is None:
        import atexit
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing.managers import SyncManager

        context = multiprocessing.get_context("spawn")
        parent = os.getpid()
        manager = SyncManager(ctx=context)
        with _main_hidden():
            manager.start(initializer=_exit_with_parent, initargs=(parent,))
        executor = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_child_init, initargs=(parent,))
        _POOLS[name] = (executor, manager, manager.Queue())

        def shutdown():
            executor.shutdown(wait=False, cancel_futures=True)
            manager.shutdown()

        atexit.register(shutdown)
    return _POOLS[name]


class _main_hidden:
    """While starting a child: hide the main script from ``multiprocessing``'s spawn, which
    would otherwise run it again in the child (a user's script without ``if __name__ ==
    "__main__"`` would open a second napari)."""

    def __enter__(self):
        import sys

        main = sys.modules.get("__main__")
        self.saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
        if "__file__" in self.saved:
            del main.__file__
        if "__spec__" in self.saved:
            main.__spec__ = None

    def __exit__(self, *exc):
        import sys

        main = sys.modules.get("__main__")
        for key, value in self.saved.items():
            setattr(main, key, value)


def _exit_with_parent(parent: int):
    """In a child: end when napari's process ends, even if it was killed (no atexit then)."""
    import os
    import threading
    import time

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _child_init(parent: int):
    import os

    _exit_with_parent(parent)

    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))


def _run_forwarding(function, queue, args, kwargs):
    """In the child: run a generator function, put its events on ``queue``, return its value."""
    generator = function(*args, **kwargs)
    try:
        while True:
            queue.put(next(generator))
    except StopIteration as stop:
        return stop.value


class Cancelled(Exception):
    """Raised by :func:`in_process` when it ended the compute process to stop a run (``_end_after``)."""


def end_pool(name: str = "compute") -> None:
    """End the compute process ``name`` at once (its running work is lost; the next
    :func:`in_process` starts a new one, which loads PyTorch again)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(name)
        _POOLS[name] = None
    if pool is None:
        return
    executor, manager, _ = pool
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        try:
            process.kill()
        except Exception:  # already gone
            pass
    executor.shutdown(wait=False, cancel_futures=True)
    try:
        manager.shutdown()
    except Exception:
        pass


def in_process(function, *args, _pool_name: str = "compute", _stop=None, _end_after: float | None = None, **kwargs):
    """Worker generator: run the generator ``function`` in a compute process (:func:`_pool`).

    Its yielded events are forwarded (yielded here) and its return value returned; its
    exceptions are raised here (a crashed child as OSError; the next call starts a new one).
    ``function`` must be importable from a module (not ``__main__``) and the arguments
    picklable (numpy arrays, dataclasses).

    ``_stop``: a :class:`threading.Event` of the widget; ``function`` then gets ``stop=`` an
    Event of the process' manager, set here when ``_stop`` is. The process and its manager are
    started here, in the worker thread (starting a manager waits ~0.3 s for its process).

    ``_end_after``: seconds; when ``function`` has not ended that long after ``_stop`` was set
    (it is inside one long library call), the compute process is ended (:func:`end_pool`) and
    :class:`Cancelled` raised; the next call starts a new process. A run still queued behind
    another widget's is dropped instead, and a process that has other widgets' work queued is
    never ended (the run then stops at its next step, through ``stop``).
    """
    import queue as queue_module
    import time

    executor, manager, events = _pool(_pool_name)
    stopped_at = None
    remote = None
    if _stop is not None:
        remote = kwargs["stop"] = manager.Event()
    while True:  # events of an earlier, abandoned run
        try:
            events.get_nowait()
        except queue_module.Empty:
            break
    with _main_hidden():  # the child process is started (again, if it died) at submit
        future = executor.submit(_run_forwarding, function, events, args, kwargs)
    while True:
        if remote is not None and _stop.is_set():
            remote.set()
            remote = None
            stopped_at = time.perf_counter()
        if stopped_at is not None and _end_after is not None and not future.done():
            if time.perf_counter() - stopped_at > _end_after:
                if future.cancel():  # still queued behind another widget's run: dropped, nothing ended
                    raise Cancelled(f"the run was dropped before it started ({_pool_name})")
                if len(getattr(executor, "_pending_work_items", None) or {}) <= 1:  # the process runs only this
                    end_pool(_pool_name)
                    raise Cancelled(f"the compute process was ended to stop the run ({_pool_name})")
                # other widgets' work waits in that process: the run stops at its next step instead
        try:
            yield events.get(timeout=0.05)
        except queue_module.Empty:
            if future.done():
                break
    while True:
        try:
            yield events.get_nowait()
        except queue_module.Empty:
            break
    from concurrent.futures.process import BrokenProcessPool

    try:
        return future.result()
    except BrokenProcessPool as exc:
        _POOLS[_pool_name] = None  # a new one next time
        raise OSError("the compute process ended unexpectedly (out of memory?); run again") from exc


#: Pause (ms) between two steps of :func:`add_layer_tuples_spread`. A zero-delay single shot would
#: run the next step before Qt's own timers (measured: a 10 ms QTimer did not fire between the
#: steps, so the steps and their repaints added up to one 0.4-0.7 s stall).
SPREAD_PAUSE_MS = 30


def add_layer_tuples_spread(viewer, tuples, then=None, pause_ms: int | None = None):
    """:func:`add_layer_tuples`, one small step per turn of the Qt event loop, so that adding many
    large Points layers never freezes napari for the sum of their times; ``then()`` runs after
    the last one.

    A new visible layer is added hidden and shown one step later: its first draw (vispy builds
    and compiles its shaders, ~0.1-0.2 s with software OpenGL) then runs in a turn of its own
    instead of after the layer's creation (~0.1 s). Between two steps the event loop runs for
    ``pause_ms`` (default :data:`SPREAD_PAUSE_MS`): repaints, input, timers. The layers end up
    exactly as :func:`add_layer_tuples` makes them.
    """
    import napari.layers
    from qtpy.QtCore import QTimer

    pause = SPREAD_PAUSE_MS if pause_ms is None else pause_ms
    steps = []
    for data, kwargs, kind in tuples:
        kwargs = dict(kwargs)
        name, cls = kwargs["name"], getattr(napari.layers, kind.capitalize())
        new = not (name in viewer.layers and isinstance(viewer.layers[name], cls))
        if new and kwargs.get("visible", True):
            steps.append(lambda d=data, k=dict(kwargs, visible=False), t=kind: set_layer(viewer, d, k, t))
            steps.append(lambda n=name: _show(viewer, n))
        else:
            steps.append(lambda d=data, k=kwargs, t=kind: set_layer(viewer, d, k, t))

    def step():
        if steps:
            steps.pop(0)()
            QTimer.singleShot(pause, step)
        elif then is not None:
            then()

    step()


def _show(viewer, name):
    if name in viewer.layers:
        viewer.layers[name].visible = True
