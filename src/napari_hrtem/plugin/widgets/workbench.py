"""The workbench: one dock with every napari-hrtem widget as a section, in the order of the work.

Simulate or load a focal series → support filter → predict (one series, or a folder in Batch) →
compare the networks → correct labels → evaluate → train. Each section is the plugin's own dock
widget (the same class napari.yaml contributes on its own), so the workbench adds no logic: it
only lays them out in a ``QToolBox`` (one section open at a time, every title readable), each in
a vertical scroll area, at a width that leaves the canvas most of a 1366×768 screen.
"""

from __future__ import annotations

import importlib

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QSizePolicy, QToolBox, QVBoxLayout, QWidget

#: ``(name, module, class, title)`` of every section, in the order of the work. ``name`` is the
#: widget's display name in napari.yaml (the key of :attr:`Workbench.sections`).
SECTIONS = (
    ("Simulate", "simulate", "SimulateWidget", "Simulate a focal series"),
    ("Load focal series", "load", "LoadWidget", "Load a focal series (files)"),
    ("Support filter", "filter", "FilterWidget", "Support filter (graphene lattice)"),
    ("Predict", "predict", "PredictWidget", "Predict atomic columns"),
    ("Batch", "batch", "BatchWidget", "Batch: predict a folder of series"),
    ("Compare", "compare", "CompareWidget", "Compare networks and consensus"),
    ("Labels", "labels", "LabelsWidget", "Labels: correct sites by hand"),
    ("Evaluate", "evaluate", "EvaluateWidget", "Evaluate: atomic F1 against labels"),
    ("Train", "train", "TrainWidget", "Train or fine-tune a network"),
)

#: Width (px) the workbench asks for: at 1366×768 the canvas keeps most of the window.
WIDTH = 430


def section_classes() -> list[tuple[str, type, str]]:
    """``(name, widget class, title)`` of every section, in order."""
    return [
        (name, getattr(importlib.import_module(f"napari_hrtem.plugin.widgets.{module}"), cls), title)
        for name, module, cls, title in SECTIONS
    ]


def section_names() -> tuple[str, ...]:
    """The names of the sections the workbench has, in order (see :data:`SECTIONS`)."""
    return tuple(name for name, _, _ in section_classes())


#: Widest label column (px) of a section's form; longer labels wrap.
LABEL_WIDTH = 110


def fit_width(widget) -> None:
    """Let a section's form narrow to the dock: its labels wrap (the label column at most
    :data:`LABEL_WIDTH` px) and its combo boxes no longer ask for the width of their longest
    choice (a network's or a layer's name)."""
    from qtpy.QtWidgets import QComboBox, QLabel, QSizePolicy

    for label in widget.findChildren(QLabel):
        label.setWordWrap(True)
        if label.minimumWidth() > LABEL_WIDTH:  # magicgui sets the label column to its widest label
            label.setMinimumWidth(LABEL_WIDTH)
        elif label.minimumWidth() == 0:  # a text (status, hint): wraps to the width it gets
            label.setSizePolicy(QSizePolicy.Policy.Preferred, label.sizePolicy().verticalPolicy())
    for combo in widget.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(8)


class Workbench(QWidget):
    """Every napari-hrtem widget in one dock, as sections in the order of the work.

    ``sections``: name -> the section's widget (``workbench.sections["Predict"]``), the same
    objects as the individual dock widgets; :meth:`show_section` opens one.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.setObjectName("napari-hrtem workbench")
        self.toolbox = QToolBox()
        self.sections: dict = {}
        self.pages: dict = {}
        for name, widget_class, title in section_classes():
            widget = widget_class(napari_viewer)
            native = getattr(widget, "root_native_widget", getattr(widget, "native", widget))
            if isinstance(native, QScrollArea):  # a magicgui Container(scrollable=True): Simulate
                page = native
            else:  # the form at the top of its page, not spread over the height
                column = QWidget()
                column_layout = QVBoxLayout(column)
                column_layout.setContentsMargins(0, 0, 0, 0)
                column_layout.addWidget(native)
                column_layout.addStretch(1)
                page = QScrollArea()
                page.setWidget(column)
                page.setWidgetResizable(True)
            page.setFrameShape(QFrame.Shape.NoFrame)
            page.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
            page.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
            fit_width(native)
            self.toolbox.addItem(page, title)
            self.toolbox.setItemToolTip(self.toolbox.count() - 1, name)
            self.sections[name] = widget
            self.pages[name] = page
        # Expanding: napari's dock then gives the workbench its whole height (no stretch below)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toolbox)
        self._size = QSize(WIDTH, 600)

    def sizeHint(self):
        return self._size

    def minimumSizeHint(self):
        return QSize(240, 200)

    def show_section(self, name: str):
        """Open the section ``name`` (a key of :attr:`sections`); returns its widget.

        Raises
        ------
        KeyError
            If there is no such section.
        """
        self.toolbox.setCurrentWidget(self.pages[name])
        return self.sections[name]

    def current_section(self) -> str:
        """The name of the open section."""
        page = self.toolbox.currentWidget()
        return next(name for name, p in self.pages.items() if p is page)
