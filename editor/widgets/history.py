"""The history strip: a row of snapshots (full edit state + thumbnail) that restore every setting when clicked.

A snapshot keeps the whole ``EditState``, not pixels only, so restoring one brings back the seed, truncation, noise,
mixing sources and rows exactly, as one undo step (``restore_snapshot``). The strip itself changes no document: it
emits ``restoreRequested(state)`` and the main window restores.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QEvent, QModelIndex, QPoint, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QLinearGradient, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from editor.widgets.icons import icon
from editor.widgets.images import HeldImage
from engine import EditState

THUMB = 72  # thumbnail edge in widget pixels
STRIP_HEIGHT = 96
CELL = QSize(THUMB + 28, STRIP_HEIGHT - 4)  # room for the caption under the thumbnail
FADE = 28  # px of the strip's edge faded out where more snapshots are scrolled away
SNAPSHOT_ROLE = Qt.ItemDataRole.UserRole
CURRENT_ROLE = Qt.ItemDataRole.UserRole + 1
EMPTY_TEXT = "No snapshots yet. Press S (Snapshot) to keep the current face and all its settings here."


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One remembered edit: its state, the frame shown when it was taken and a small copy for the strip."""

    state: EditState
    image: np.ndarray  # uint8 [H, W, 3], the frame (use it as the canvas's "before" image)
    thumbnail: np.ndarray  # uint8 [h, w, 3], at most THUMB px times the screen's pixel ratio
    label: str


def restore_snapshot(document, state: EditState) -> None:
    """Set every field of the document's state to ``state``'s, as one undo step."""
    document.edit("Restore snapshot", **{f: getattr(state, f) for f in state.__dataclass_fields__})


def snapshot_label(state: EditState) -> str:
    """The short caption: "seed 12 · ψ 0.70" (or the photo's name), with "· mixed" when other sources drive some
    W+ rows."""
    label = state.photo.name if state.photo is not None else f"seed {state.seed} · ψ {state.psi:.2f}"
    return label + " · mixed" if state.mixed() else label


def describe_state(state: EditState) -> str:
    """Every parameter of ``state`` on its own line (the snapshot's tooltip)."""
    rows = "all rows" if state.cutoff is None else f"rows 0–{state.cutoff - 1}" if state.cutoff else "no rows"
    noise = {"const": "constant (the model's stored noise)", "none": "off",
             "random": f"random, noise seed {state.noise_seed}"}[state.noise_mode]
    if state.photo is not None:
        face = [f"Face: inverted from the photo {state.photo.name}"]
    elif state.base is not None:
        face = [f"Face: the latent {state.base.label()}"]
    else:
        face = [f"Seed: {state.seed}", f"Truncation ψ: {state.psi:.2f} on {rows}"]
    if state.noise_maps is not None:
        noise = "fitted to the photo"
    lines = [f"Model: {state.model.label()}", *face, f"Noise: {noise}"]
    if state.mixed():
        names = ["base seed"] + [s.label() for s in state.sources]
        lines.append("Style mixing:")
        lines += [f"  rows {_span(a, b)}: {names[k]}" for a, b, k in _runs(state.rows)]
    else:
        lines.append("Style mixing: none")
    tr = state.translation
    if tr is not None:
        lines.append(f"Translation: {tr.target.label()}, {tr.mode} swap at {tr.depth} px, blend {tr.blend:g}")
    return "\n".join(lines)


def _runs(rows: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Consecutive rows with the same source as (first, last, source)."""
    runs: list[tuple[int, int, int]] = []
    for i, k in enumerate(rows):
        if runs and runs[-1][2] == k:
            runs[-1] = (runs[-1][0], i, k)
        else:
            runs.append((i, i, k))
    return runs


def _span(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}–{b}"


def make_thumbnail(image: np.ndarray, *, edge: int) -> np.ndarray:
    """``image`` uint8 [H, W, 3] area-averaged down to at most ``edge`` px on its long side (never enlarged)."""
    held = HeldImage(np.ascontiguousarray(image))
    h, w = image.shape[:2]
    if max(h, w) <= edge:
        return held.array.copy()
    small = held.qimage.scaled(edge, edge, Qt.AspectRatioMode.KeepAspectRatio,
                               Qt.TransformationMode.SmoothTransformation)
    th, tw, bpl = small.height(), small.width(), small.bytesPerLine()
    rows = np.frombuffer(small.constBits(), np.uint8, count=small.sizeInBytes()).reshape(th, bpl)
    return rows[:, : tw * 3].reshape(th, tw, 3).copy()  # rows may be padded to 4 bytes


class _SnapshotDelegate(QStyledItemDelegate):
    """Draws a snapshot as its thumbnail with the caption below; the current one gets an accent frame."""

    def paint(self, p: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        p.save()
        cell = option.rect
        thumb = QRect(cell.left() + (cell.width() - THUMB) // 2, cell.top() + 3, THUMB, THUMB)
        pixmap: QPixmap = index.data(Qt.ItemDataRole.DecorationRole)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.drawPixmap(thumb, pixmap)

        p.setFont(_caption_font(option.font))
        metrics = p.fontMetrics()
        caption = QRect(cell.left() + 2, thumb.bottom() + 2, cell.width() - 4, cell.bottom() - thumb.bottom() - 2)
        p.setPen(option.palette.color(option.palette.ColorRole.Text))
        text = metrics.elidedText(index.data(Qt.ItemDataRole.DisplayRole), Qt.TextElideMode.ElideRight,
                                  caption.width())
        p.drawText(caption, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, text)

        p.setBrush(Qt.BrushStyle.NoBrush)
        if index.data(CURRENT_ROLE):
            p.setPen(QPen(option.palette.color(option.palette.ColorRole.Highlight), 3))
            p.drawRect(thumb.adjusted(-1, -1, 0, 0))
        elif option.state & QStyle.StateFlag.State_MouseOver:
            p.setPen(QPen(option.palette.color(option.palette.ColorRole.Mid), 2))
            p.drawRect(thumb.adjusted(-1, -1, 0, 0))
        p.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return CELL


def _caption_font(base: QFont) -> QFont:
    font = QFont(base)
    font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
    return font


class _StripView(QListWidget):
    """The row of snapshot cells: the wheel scrolls it sideways; shows a hint while empty."""

    def wheelEvent(self, event) -> None:
        delta = event.angleDelta()
        step = delta.x() or delta.y()
        bar = self.horizontalScrollBar()
        bar.setValue(bar.value() - step * CELL.width() // 120)
        event.accept()

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        p = QPainter(self.viewport())
        bar = self.horizontalScrollBar()
        if bar.value() > bar.minimum():
            self._paint_fade(p, left=True)  # more snapshots that way (the scroll bar is hidden: no room for it)
        if bar.value() < bar.maximum():
            self._paint_fade(p, left=False)
        if self.count() == 0:
            p.setPen(self.palette().color(self.palette().ColorGroup.Disabled, self.palette().ColorRole.Text))
            p.drawText(self.viewport().rect().adjusted(12, 0, -12, 0),
                       Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextWordWrap,
                       EMPTY_TEXT)

    def _paint_fade(self, p: QPainter, *, left: bool) -> None:
        area = self.viewport().rect()
        edge = QRect(area.left() if left else area.right() - FADE + 1, area.top(), FADE, area.height())
        base = self.palette().color(self.viewport().backgroundRole())
        clear = QColor(base)
        clear.setAlpha(0)
        gradient = QLinearGradient(edge.topLeft().toPointF(), edge.topRight().toPointF())
        gradient.setColorAt(0, base if left else clear)
        gradient.setColorAt(1, clear if left else base)
        p.fillRect(edge, gradient)


class HistoryStrip(QWidget):
    """Snapshots in a row. ``restoreRequested(state)`` when one is clicked (or chosen with Enter);
    ``snapshotsChanged()`` after one is added or removed (the last one is the canvas's "before" image)."""

    restoreRequested = Signal(object)  # EditState
    snapshotsChanged = Signal()

    def __init__(self, parent: QWidget | None = None, *, limit: int = 50):
        super().__init__(parent)
        if limit < 1:
            raise ValueError(f"the strip must hold at least one snapshot, got limit={limit}")
        self.limit = limit  # the oldest snapshot is dropped beyond this many (each keeps a full frame)
        self._current: EditState | None = None
        self.view = _StripView(self)
        v = self.view
        v.setViewMode(QListWidget.ViewMode.IconMode)
        v.setFlow(QListWidget.Flow.LeftToRight)
        v.setWrapping(False)
        v.setMovement(QListWidget.Movement.Static)
        v.setResizeMode(QListWidget.ResizeMode.Adjust)
        v.setUniformItemSizes(True)
        v.setSpacing(0)
        v.setIconSize(QSize(THUMB, THUMB))
        v.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        v.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        v.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # no room; the wheel scrolls
        v.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        v.setFrameShape(QFrame.Shape.NoFrame)
        v.setMouseTracking(True)
        v.setItemDelegate(_SnapshotDelegate(v))
        v.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        v.setToolTip("Snapshots: click one to bring back all of its settings (one undo step). "
                     "Right-click or Delete removes one.")
        v.itemClicked.connect(self._restore_item)
        v.customContextMenuRequested.connect(self._context_menu)
        v.installEventFilter(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(v)
        self.setFixedHeight(STRIP_HEIGHT)

    @property
    def snapshots(self) -> list[Snapshot]:
        """The snapshots, oldest first (a new list)."""
        return [self.view.item(i).data(SNAPSHOT_ROLE) for i in range(self.view.count())]

    def add_snapshot(self, state: EditState, image: np.ndarray) -> bool:
        """Append a snapshot of ``state`` showing ``image`` (uint8 [H, W, 3]); False when the last snapshot already
        has this exact state (nothing is added)."""
        last = self.view.item(self.view.count() - 1) if self.view.count() else None
        if last is not None and last.data(SNAPSHOT_ROLE).state == state:
            return False
        dpr = self.devicePixelRatioF()
        thumbnail = make_thumbnail(image, edge=round(THUMB * dpr))
        snapshot = Snapshot(state, image, thumbnail, snapshot_label(state))
        held = HeldImage(thumbnail)
        pixmap = QPixmap.fromImage(held.qimage)  # a copy: the pixmap does not need the array afterwards
        pixmap.setDevicePixelRatio(dpr)
        item = QListWidgetItem(snapshot.label)
        item.setData(SNAPSHOT_ROLE, snapshot)
        item.setData(Qt.ItemDataRole.DecorationRole, pixmap)
        item.setData(CURRENT_ROLE, state == self._current)
        item.setSizeHint(CELL)
        self.view.addItem(item)
        while self.view.count() > self.limit:
            self.view.takeItem(0)
        self._renumber()
        self.view.scrollToItem(item)
        self.snapshotsChanged.emit()
        return True

    def remove(self, index: int) -> None:
        """Remove the snapshot at ``index`` (0 = oldest)."""
        if not 0 <= index < self.view.count():
            raise IndexError(f"no snapshot {index}: the strip holds {self.view.count()}")
        self.view.takeItem(index)
        self._renumber()
        self.snapshotsChanged.emit()

    def clear(self) -> None:
        """Remove every snapshot."""
        if self.view.count():
            self.view.clear()
            self.snapshotsChanged.emit()

    def set_current(self, state: EditState) -> None:
        """Mark the snapshots equal to the document's state (connect to ``Document.changed``)."""
        self._current = state
        for i in range(self.view.count()):
            item = self.view.item(i)
            item.setData(CURRENT_ROLE, item.data(SNAPSHOT_ROLE).state == state)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.view and event.type() == QEvent.Type.KeyPress:
            item = self.view.currentItem()
            if item is not None and event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
                self.remove(self.view.row(item))
                return True
            if item is not None and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
                self._restore_item(item)
                return True
        return super().eventFilter(watched, event)

    def _restore_item(self, item: QListWidgetItem) -> None:
        self.restoreRequested.emit(item.data(SNAPSHOT_ROLE).state)

    def _renumber(self) -> None:
        for i in range(self.view.count()):
            item = self.view.item(i)
            text = describe_state(item.data(SNAPSHOT_ROLE).state)
            item.setToolTip(f"Snapshot {i + 1}: click to restore all of these settings\n\n{text}")

    def _context_menu(self, pos: QPoint) -> None:
        item = self.view.itemAt(pos)
        menu = QMenu(self)
        if item is not None:
            restore = menu.addAction(icon("reset"), "Restore these settings", lambda: self._restore_item(item))
            restore.setToolTip("Bring back this snapshot's seed, truncation, noise and mixing (one undo step)")
            menu.setDefaultAction(restore)
            remove = menu.addAction(icon("remove"), "Remove snapshot", lambda: self.remove(self.view.row(item)))
            remove.setToolTip("Drop this snapshot from the strip (the current face is not changed)")
            menu.addSeparator()
        clear = menu.addAction("Remove all snapshots", self.clear)
        clear.setToolTip("Empty the strip (the current face is not changed)")
        clear.setEnabled(self.view.count() > 0)
        menu.setToolTipsVisible(True)
        menu.exec(self.view.viewport().mapToGlobal(pos))
