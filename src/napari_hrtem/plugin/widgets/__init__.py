"""napari dock widgets: the only modules that import qtpy / napari.

Each widget collects parameters, starts a worker (``napari.qt.threading.create_worker``) around a
core generator or function, shows progress and puts the results into layers on the main thread.
Errors become napari notifications; layers are only added or replaced by name, never removed.
"""
