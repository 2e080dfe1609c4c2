"""napari-hrtem: atomic columns in HRTEM focal series of 2D materials, found by several networks.

The core (structures, imaging, filters, inference, consensus, metrics, io) never imports Qt or
napari; the dock widgets live in ``napari_hrtem._widgets``.
"""

__version__ = "0.1.0"
