"""The face picker: the photo with its detected faces to click on, or a square crop box to place by hand.

Shown when a photo has several faces (which one to edit?) or none (where is it?). The photo is drawn downscaled to
at most ``DISPLAY_MAX`` px; every coordinate handed back is in the photo's own pixels.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGraphicsItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
    QLabel,
    QVBoxLayout,
)

from editor.widgets.images import HeldImage

DISPLAY_MAX = 1400
FACE_PEN = QColor("#3daee9")
CHOSEN_PEN = QColor("#f67400")
CROP_PEN = QColor("#f67400")


class _FaceBox(QGraphicsRectItem):
    """A detected face: click to choose it."""

    def __init__(self, rect: QRectF, index: int, picker: "FacePicker"):
        super().__init__(rect)
        self.index, self._picker = index, picker
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(f"Face {index + 1}: click to edit this face")

    def mousePressEvent(self, event) -> None:
        self._picker.choose_face(self.index)
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:
        self._picker.choose_face(self.index)
        self._picker.accept()


class _CropBox(QGraphicsRectItem):
    """A square to drag into place; the mouse wheel over it (or +/-) resizes it about its centre."""

    def __init__(self, rect: QRectF, bounds: QRectF, on_change):
        super().__init__(rect)
        self._bounds, self._on_change = bounds, on_change
        self.setFlags(QGraphicsItem.GraphicsItemFlag.ItemIsMovable | QGraphicsItem.GraphicsItemFlag.ItemIsFocusable
                      | QGraphicsItem.GraphicsItemFlag.ItemSendsGeometryChanges)
        self.setCursor(Qt.CursorShape.SizeAllCursor)
        self.setToolTip("Drag to place the square over the face; mouse wheel or +/- to resize it")
        pen = QPen(CROP_PEN, 2)
        pen.setCosmetic(True)
        self.setPen(pen)
        self.setBrush(QBrush(QColor(246, 116, 0, 40)))

    def scene_rect(self) -> QRectF:
        return self.mapRectToScene(self.rect())

    def resize_by(self, factor: float) -> None:
        r = self.scene_rect()
        side = min(max(r.width() * factor, 8.0), max(self._bounds.width(), self._bounds.height()) * 2)
        c = r.center()
        self.setPos(0, 0)
        self.setRect(QRectF(c.x() - side / 2, c.y() - side / 2, side, side))
        self._on_change()

    def wheelEvent(self, event) -> None:
        self.resize_by(1.1 ** (event.delta() / 120))
        event.accept()

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.resize_by(1.1)
        elif event.key() == Qt.Key.Key_Minus:
            self.resize_by(1 / 1.1)
        else:
            super().keyPressEvent(event)

    def itemChange(self, change, value):
        if change == QGraphicsItem.GraphicsItemChange.ItemPositionHasChanged:
            self._on_change()
        return super().itemChange(change, value)


class FacePicker(QDialog):
    """Pick one of ``boxes`` (x0, y0, x1, y1 in photo pixels) or place a crop box. After ``exec()``:
    ``choice`` is ("face", index) or ("box", (x0, y0, x1, y1)) in photo pixels."""

    changed = Signal()

    def __init__(self, pixels: np.ndarray, boxes, *, name: str = "photo", parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Choose a face — {name}")
        h, w = pixels.shape[:2]
        self._scale = min(1.0, DISPLAY_MAX / max(h, w))  # display px per photo px
        pixmap = QPixmap.fromImage(HeldImage(np.ascontiguousarray(pixels)).qimage)
        if self._scale < 1:
            pixmap = pixmap.scaled(round(w * self._scale), round(h * self._scale),
                                   Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)
        self.scene = QGraphicsScene(self)
        self.scene.addPixmap(pixmap)
        bounds = QRectF(0, 0, pixmap.width(), pixmap.height())
        self.faces = [_FaceBox(self._to_scene(b), i, self) for i, b in enumerate(boxes)]
        for item in self.faces:
            self.scene.addItem(item)
        side = 0.4 * min(bounds.width(), bounds.height())
        self.crop = _CropBox(QRectF(bounds.center().x() - side / 2, bounds.center().y() - side / 2, side, side),
                             bounds, self._crop_moved)
        self.scene.addItem(self.crop)
        self.view = QGraphicsView(self.scene)
        self.view.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.view.setMinimumSize(480, 360)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok.setText("Edit this face")
        lay = QVBoxLayout(self)
        lay.addWidget(self.hint)
        lay.addWidget(self.view, 1)
        lay.addWidget(buttons)
        self.resize(min(1000, pixmap.width() + 60), min(800, pixmap.height() + 140))
        self.choice: tuple | None = None
        if self.faces:
            self.choose_face(0)
        else:
            self._crop_moved()

    def _to_scene(self, box) -> QRectF:
        x0, y0, x1, y1 = (float(v) * self._scale for v in box)
        return QRectF(x0, y0, x1 - x0, y1 - y0)

    def choose_face(self, index: int) -> None:
        """Select detected face ``index``; the crop box hides."""
        for item in self.faces:
            chosen = item.index == index
            pen = QPen(CHOSEN_PEN if chosen else FACE_PEN, 3 if chosen else 2)
            pen.setCosmetic(True)
            item.setPen(pen)
        self.crop.setVisible(False)
        self.choice = ("face", index)
        self.hint.setText(f"{len(self.faces)} faces found. Face {index + 1} is chosen: click another face to edit "
                          "it instead, or press C to place a crop box by hand." if len(self.faces) > 1 else
                          "The face found is chosen. Press C to place a crop box by hand instead.")
        self.changed.emit()

    def use_crop(self) -> None:
        """Switch to the manual crop box."""
        for item in self.faces:
            pen = QPen(FACE_PEN, 1, Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            item.setPen(pen)
        self.crop.setVisible(True)
        self.crop.setFocus()
        self._crop_moved()

    def _crop_moved(self) -> None:
        r = self.crop.scene_rect()
        s = self._scale
        self.choice = ("box", (r.left() / s, r.top() / s, r.right() / s, r.bottom() / s))
        self.hint.setText(("No face was found in this photo. " if not self.faces else "")
                          + "Drag the square over the face (eyes in its upper half, chin near its bottom); "
                            "mouse wheel or +/- resizes it.")
        self.changed.emit()

    def keyPressEvent(self, event) -> None:
        key = event.key()
        if key == Qt.Key.Key_C:
            self.use_crop()
        elif Qt.Key.Key_1 <= key <= Qt.Key.Key_9 and key - Qt.Key.Key_1 < len(self.faces):
            self.choose_face(key - Qt.Key.Key_1)
        else:
            super().keyPressEvent(event)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.view.fitInView(self.scene.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
