"""The canvas: the current frame with zoom (fit, 100 %, steps, wheel), panning, a before/after toggle and a
side-by-side view of the two.

Frames arrive as uint8 [H, W, 3] arrays and are wrapped without a copy (``HeldImage``). Everything a paint needs is
prepared when a frame or the zoom changes (a pixmap per frame, a smooth downscale per zoom), so a paint only blits the
visible part. ``zoom`` counts screen (device) pixels per image pixel, as image editors do: 100 % is one to one.
"""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

from editor.widgets.images import HeldImage

ZOOM_MIN = 1 / 16
ZOOM_MAX = 32.0
ZOOM_STEPS = (1 / 16, 1 / 8, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0)
CRISP_ZOOM = 4.0  # zoomed in this far (not fitted), image pixels are drawn as sharp squares
WHEEL_NOTCH_FACTOR = 2 ** (1 / 3)  # one wheel notch (120 units) zooms by ~1.26; three notches double
BACKGROUND = QColor("#2b2b2b")
PLACEHOLDER_COLOR = QColor("#9a9a9a")
BADGE_BACKGROUND = QColor(0, 0, 0, 170)
BADGE_TEXT = QColor("#f2f2f2")
SIDE_GAP = 0.03  # the gap between the two images of the side-by-side view, as a fraction of one image's width


class _Layer:
    """One image to show: the array wrapped without a copy, converted once to the 32-bit format Qt draws and scales
    fastest, its pixmap, and the last smooth downscale."""

    __slots__ = ("held", "rgb32", "pixmap", "scaled", "scaled_size")

    def __init__(self, arr: np.ndarray):
        self.held = HeldImage(np.ascontiguousarray(arr))
        self.rgb32 = self.held.qimage.convertToFormat(QImage.Format.Format_RGB32)
        self.pixmap = QPixmap.fromImage(self.rgb32)
        self.scaled: QPixmap | None = None
        self.scaled_size = QSize()

    def downscaled(self, size: QSize, dpr: float) -> QPixmap:
        """The image smoothly scaled (area average) to ``size`` device pixels; cached for the last size asked."""
        if self.scaled is None or self.scaled_size != size:
            image = self.rgb32.scaled(size, Qt.AspectRatioMode.IgnoreAspectRatio,
                                            Qt.TransformationMode.SmoothTransformation)
            self.scaled = QPixmap.fromImage(image)
            self.scaled_size = QSize(size)
        self.scaled.setDevicePixelRatio(dpr)
        return self.scaled


class Canvas(QWidget):
    """Shows the current frame. ``zoomChanged(zoom)`` whenever the zoom or the fit mode changes."""

    zoomChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None, *, placeholder: str = "Loading model…"):
        super().__init__(parent)
        self._current: _Layer | None = None
        self._before: _Layer | None = None
        self._before_label = "Before"
        self._showing_before = False
        self._side_by_side = False
        self._logical = QSize()  # the full image's size in px: what zoom and fit refer to (empty before a frame)
        self._full_size: QSize | None = None  # the last full frame's size, for show_result's previews
        self._fit = True
        self._zoom = 1.0  # used when not fitting
        self._center = QPointF(0.5, 0.5)  # the image point at the widget's centre, as fractions of the image
        self._drag_from: QPointF | None = None
        self._placeholder = placeholder
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 160)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setToolTip("The face as rendered. Wheel: zoom at the pointer · drag: move a zoomed face · "
                        "double-click: switch between fit and 100 %")

    # ----------------------------------------------------------------- content

    def set_image(self, arr: np.ndarray, *, logical_size: tuple[int, int] | None = None) -> None:
        """Show a uint8 [H, W, 3] frame. ``logical_size`` (width, height) is the full image's size when ``arr`` is a
        smaller preview: the preview is then drawn scaled up to where the full image would be."""
        layer = _Layer(arr)
        size = QSize(*logical_size) if logical_size is not None else layer.pixmap.size()
        if size.isEmpty():
            raise ValueError(f"logical size must be positive, got {logical_size}")
        self._current = layer
        self._set_logical(size)
        self.update()

    def show_result(self, result) -> None:
        """Show an engine ``RenderResult``: a preview (``full`` False) takes the size of the last full frame."""
        if result.full:
            h, w = result.image.shape[:2]
            self._full_size = QSize(w, h)
            self.set_image(result.image)
        else:
            size = self._full_size
            self.set_image(result.image, logical_size=None if size is None else (size.width(), size.height()))

    def set_before(self, arr: np.ndarray | None, *, label: str = "Before") -> None:
        """The image the before/after toggle compares with (None: nothing to compare). ``label`` names it in the
        badge drawn while it is shown, e.g. the snapshot's parameters."""
        had = self.side_by_side
        self._before = None if arr is None else _Layer(arr)
        self._before_label = label
        if had != self.side_by_side:
            self._after_zoom((self.zoom, self._fit))
        elif self._showing_before or had:
            self.update()

    def show_before(self, showing: bool) -> None:
        """Draw the "before" image (with a badge saying so) instead of the current one, or go back to the current."""
        if showing != self._showing_before:
            self._showing_before = showing
            self.update()

    @property
    def showing_before(self) -> bool:
        return self._showing_before

    def set_side_by_side(self, on: bool) -> None:
        """Show the "before" image and the current one next to each other (when there is a "before")."""
        if on != self._side_by_side:
            old = (self.zoom, self._fit)
            self._side_by_side = on
            self._after_zoom(old)

    @property
    def side_by_side(self) -> bool:
        return self._side_by_side and self._before is not None

    def set_placeholder(self, text: str) -> None:
        """The centred text shown while there is no frame (e.g. why the model could not be loaded)."""
        self._placeholder = text
        if self._current is None:
            self.update()

    def clear(self) -> None:
        """Forget the frames and show the placeholder again."""
        self._current = self._before = None
        self._full_size = None
        self._logical = QSize()
        self.update()

    def has_image(self) -> bool:
        return self._current is not None

    # -------------------------------------------------------------------- zoom

    @property
    def zoom(self) -> float:
        """Screen pixels per image pixel (1.0 is 100 %); follows the widget's size while fitting."""
        return self._fit_zoom() if self._fit else self._zoom

    @property
    def fitted(self) -> bool:
        """Whether the whole image is kept fitted in the widget (the default; resizing refits)."""
        return self._fit

    def zoom_in(self) -> None:
        z = self.zoom
        self.set_zoom(next((s for s in ZOOM_STEPS if s > z * 1.001), ZOOM_MAX))

    def zoom_out(self) -> None:
        z = self.zoom
        self.set_zoom(next((s for s in reversed(ZOOM_STEPS) if s < z / 1.001), ZOOM_MIN))

    def zoom_actual(self) -> None:
        """100 %: one image pixel per screen pixel."""
        self.set_zoom(1.0)

    def zoom_fit(self) -> None:
        """Fit the whole image in the widget and keep it fitted while the widget is resized."""
        old = (self.zoom, self._fit)
        self._fit = True
        self._center = QPointF(0.5, 0.5)
        self._after_zoom(old)

    def set_zoom(self, zoom: float, *, anchor: QPointF | None = None) -> None:
        """Zoom to ``zoom`` (clamped to [1/16, 32]) keeping the image point under ``anchor`` (widget coordinates,
        default the centre) where it is. Leaves fit mode."""
        old = (self.zoom, self._fit)
        rect = self._image_rect()
        zoom = min(max(zoom, ZOOM_MIN), ZOOM_MAX)
        self._fit = False
        self._zoom = zoom
        if rect is not None:
            a = QPointF(self.width() / 2, self.height() / 2) if anchor is None else QPointF(anchor)
            u = (a.x() - rect.x()) / rect.width()  # image fraction under the anchor
            v = (a.y() - rect.y()) / rect.height()
            w, h = self._scaled_size()
            self._center = QPointF(u + (self.width() / 2 - a.x()) / w, v + (self.height() / 2 - a.y()) / h)
        self._after_zoom(old)

    # ---------------------------------------------------------------- events

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(event.rect(), BACKGROUND)
        layer = self._before if self._showing_before and self._before is not None else self._current
        rect = self._image_rect()
        if layer is None or rect is None:
            self._paint_placeholder(p)
            return
        if self.side_by_side and not self._showing_before:
            one = rect.width() / (2 + SIDE_GAP)
            left = QRectF(rect.left(), rect.top(), one, rect.height())
            right = QRectF(rect.right() - one, rect.top(), one, rect.height())
            self._paint_layer(p, self._before, left)
            self._paint_layer(p, self._current, right)
            self._paint_badge(p, self._before_label, at=left.topLeft())
            self._paint_badge(p, "Now", at=right.topLeft())
            return
        self._paint_layer(p, layer, rect)
        if self._showing_before:
            self._paint_badge(p, self._before_label if self._before is not None else "No “before” image to compare")

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        old_w, old_h = event.oldSize().width(), event.oldSize().height()
        if self._fit and self._logical.isValid() and old_w > 0 and old_h > 0:
            old = self._fit_zoom(QSize(old_w, old_h))
            if not math.isclose(old, self.zoom):
                self.zoomChanged.emit(self.zoom)
        self._clamp_center()
        self._update_cursor()

    def wheelEvent(self, event) -> None:
        notches = event.angleDelta().y() / 120
        if not notches or self._current is None:
            event.ignore()
            return
        self.set_zoom(self.zoom * WHEEL_NOTCH_FACTOR ** notches, anchor=event.position())
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self._current is None:
            return super().mouseDoubleClickEvent(event)
        if self._fit:
            self.set_zoom(1.0, anchor=event.position())
        else:
            self.zoom_fit()

    def mousePressEvent(self, event) -> None:
        if event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton) and self._pannable():
            self._drag_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
        else:
            super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        if self._drag_from is None:
            return super().mouseMoveEvent(event)
        delta = event.position() - self._drag_from
        self._drag_from = event.position()
        w, h = self._scaled_size()
        self._center -= QPointF(delta.x() / w, delta.y() / h)
        self._clamp_center()
        self.update()

    def mouseReleaseEvent(self, event) -> None:
        if self._drag_from is not None and event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton):
            self._drag_from = None
            self._update_cursor()
            event.accept()
        else:
            super().mouseReleaseEvent(event)

    def sizeHint(self) -> QSize:
        return QSize(640, 640)

    # ------------------------------------------------------------- geometry

    def _dpr(self) -> float:
        return self.devicePixelRatioF()

    def _span(self) -> tuple[float, float]:
        """The size in image pixels of what is laid out: the image, or both images and the gap side by side."""
        w, h = self._logical.width(), self._logical.height()
        return (w * (2 + SIDE_GAP), h) if self.side_by_side else (w, h)

    def _fit_zoom(self, widget: QSize | None = None) -> float:
        if self._logical.isEmpty():
            return 1.0
        widget = widget or self.size()
        span_w, span_h = self._span()
        fit = min(widget.width() / span_w, widget.height() / span_h) * self._dpr()
        return min(max(fit, ZOOM_MIN), ZOOM_MAX)

    def _scaled_size(self) -> tuple[float, float]:
        """The image's on-screen size in widget (logical) pixels."""
        s = self.zoom / self._dpr()
        span_w, span_h = self._span()
        return span_w * s, span_h * s

    def _image_rect(self) -> QRectF | None:
        """Where the full-size image lies in widget coordinates, aligned to device pixels."""
        if self._logical.isEmpty():
            return None
        w, h = self._scaled_size()
        x = self.width() / 2 - self._center.x() * w
        y = self.height() / 2 - self._center.y() * h
        dpr = self._dpr()
        return QRectF(round(x * dpr) / dpr, round(y * dpr) / dpr, w, h)

    def _pannable(self) -> bool:
        w, h = self._scaled_size()
        return self._current is not None and (w > self.width() + 0.5 or h > self.height() + 0.5)

    def _clamp_center(self) -> None:
        """Keep the image covering the widget when it is larger, and centred along an axis where it is smaller."""
        if self._logical.isEmpty():
            return
        w, h = self._scaled_size()
        self._center = QPointF(_clamp_axis(self._center.x(), w, self.width()),
                               _clamp_axis(self._center.y(), h, self.height()))

    def _set_logical(self, size: QSize) -> None:
        if size == self._logical:
            return
        old = (self.zoom, self._fit)
        self._logical = QSize(size)
        self._after_zoom(old)

    def _after_zoom(self, old: tuple[float, bool]) -> None:
        self._clamp_center()
        self._update_cursor()
        self.update()
        if (self.zoom, self._fit) != old:
            self.zoomChanged.emit(self.zoom)

    def _update_cursor(self) -> None:
        if self._drag_from is None:
            self.setCursor(Qt.CursorShape.OpenHandCursor if self._pannable() else Qt.CursorShape.ArrowCursor)

    # ------------------------------------------------------------- painting

    def _paint_layer(self, p: QPainter, layer: _Layer, rect: QRectF) -> None:
        dpr = self._dpr()
        pm = layer.pixmap
        scale = rect.width() * dpr / pm.width()  # device pixels per pixel of this array (a preview is smaller)
        if scale < 1:
            # Downscale: an area-averaged copy made once per frame and zoom (bilinear drawing would alias).
            size = QSize(max(1, round(rect.width() * dpr)), max(1, round(rect.height() * dpr)))
            p.drawPixmap(rect.topLeft(), layer.downscaled(size, dpr))
            return
        # Upscale or 1:1: draw only the visible whole source pixels; bilinear below CRISP_ZOOM, sharp squares above.
        visible = rect.intersected(QRectF(self.rect()))
        if visible.isEmpty():
            return
        sx, sy = pm.width() / rect.width(), pm.height() / rect.height()  # array pixels per widget pixel
        x0 = max(0, math.floor((visible.left() - rect.left()) * sx))
        y0 = max(0, math.floor((visible.top() - rect.top()) * sy))
        x1 = min(pm.width(), math.ceil((visible.right() - rect.left()) * sx))
        y1 = min(pm.height(), math.ceil((visible.bottom() - rect.top()) * sy))
        source = QRectF(x0, y0, x1 - x0, y1 - y0)
        target = QRectF(rect.left() + x0 / sx, rect.top() + y0 / sy, (x1 - x0) / sx, (y1 - y0) / sy)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not self._crisp() and scale != 1)
        p.drawPixmap(target, pm, source)

    def _crisp(self) -> bool:
        # Fitted, a face reads best smoothed; zoomed in on purpose, the user wants to see the pixels.
        return not self.fitted and self.zoom >= CRISP_ZOOM - 1e-6

    def _paint_placeholder(self, p: QPainter) -> None:
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.3)
        p.setFont(font)
        p.setPen(PLACEHOLDER_COLOR)
        p.drawText(self.rect().adjusted(16, 16, -16, -16),
                   Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)

    def _paint_badge(self, p: QPainter, text: str, *, at: QPointF | None = None) -> None:
        font = QFont(self.font())
        font.setBold(True)
        p.setFont(font)
        metrics = p.fontMetrics()
        text = metrics.elidedText(text, Qt.TextElideMode.ElideRight, max(40, self.width() - 48))
        x, y = (12, 12) if at is None else (max(12, round(at.x()) + 8), max(12, round(at.y()) + 8))
        box = QRect(0, 0, metrics.horizontalAdvance(text) + 20, metrics.height() + 10).translated(x, y)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(BADGE_BACKGROUND)
        p.drawRoundedRect(QRectF(box), 6, 6)
        p.setPen(BADGE_TEXT)
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)


def _clamp_axis(center: float, size: float, available: float) -> float:
    """A centre fraction along one axis: 0.5 when the image fits, else within the range that leaves no gap."""
    if size <= available:
        return 0.5
    half = available / (2 * size)
    return min(max(center, half), 1 - half)
