"""The napari plugin: manifest (``napari.yaml``), reader, writer, sample data, layer helpers and widgets.

The only subpackage that imports napari, magicgui or Qt; it needs the ``napari`` extra
(``pip install "napari-hrtem[napari]"``).
"""
