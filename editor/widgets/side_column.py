"""A side column of panels that scrolls vertically, so panels that grow (a photo loaded, a translation switched on)
never make the window taller than the size the user gave it; it is as wide as its widest panel needs."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget


class SideColumn(QScrollArea):
    """``widgets`` stacked at their natural heights (the rest of the height stays empty at the bottom), at least
    ``width`` px wide and wider when a panel needs it: no horizontal scroll bar, no clipped panel."""

    def __init__(self, widgets: list[QWidget], *, width: int, parent: QWidget | None = None):
        super().__init__(parent, widgetResizable=True, frameShape=QFrame.Shape.NoFrame)
        self._width = width
        self._hinted = width  # the width last told to the dock
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)
        for w in widgets:
            lay.addWidget(w)
        lay.addStretch(1)
        self.setWidget(body)
        body.installEventFilter(self)

    def _needed_width(self) -> int:
        body = self.widget()
        need = body.minimumSizeHint().width() if body is not None else 0
        self._hinted = max(self._width, need + self.verticalScrollBar().sizeHint().width())
        return self._hinted

    def minimumSizeHint(self) -> QSize:
        return QSize(self._needed_width(), super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:
        return QSize(self._needed_width(), super().sizeHint().height())

    def eventFilter(self, obj, event) -> bool:
        if obj is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            before = self._hinted
            if self._needed_width() != before:
                self.updateGeometry()  # a panel needs more (or less) width: the dock follows
        return super().eventFilter(obj, event)
