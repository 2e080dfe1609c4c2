"""Input and output: microscope files into focal series, site tables (CSV) and checks of inputs.

Modules: :mod:`~napari_hrtem.io.focal_series` (rosettasciio, tifffile, mrcfile readers),
:mod:`~napari_hrtem.io.sites` (site tables, labels with their sidecar) and
:mod:`~napari_hrtem.io.validation` (clear errors for bad input at every entry point).
"""
