"""Dock widgets that scroll instead of growing the window.

napari puts a plugin's widget in a dock as it is: a widget's minimum height becomes the dock's,
and several tall docks made the window taller than a 1000 px screen (Refine's buttons, the
layer list and the status bar off-screen). Each widget's contents sit in a scroll area, so a
dock can be as short as the screen leaves it.
"""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

MIN_HEIGHT = 120  # a dock shrunk this far still shows a few rows


class _VerticalScrollArea(QScrollArea):
    """Scrolls up and down only: as wide as its contents need, as short as ``MIN_HEIGHT``."""

    def minimumSizeHint(self) -> QSize:
        contents = self.widget()
        width = contents.minimumSizeHint().width() if contents is not None else 0
        return QSize(width + self.verticalScrollBar().sizeHint().width(), MIN_HEIGHT)


def scrolling_layout(widget: QWidget) -> QVBoxLayout:
    """The layout to fill ``widget`` with; its contents scroll when the dock is shorter."""
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    area = _VerticalScrollArea()
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setFrameShape(QFrame.Shape.NoFrame)
    contents = QWidget()
    area.setWidget(contents)
    outer.addWidget(area)
    return QVBoxLayout(contents)
