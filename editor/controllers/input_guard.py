"""Keyboard and wheel habits of the main window, applied to every widget by one application-level event filter.

- The wheel over a slider, spin box or combo box inside a scrolling panel scrolls the panel, unless that control
  has the keyboard focus (click it first), as in Qt Creator or Krita: scrolling a long panel never edits what
  happens to pass under the cursor. Those controls take focus by click or Tab, never by the wheel.
- In the window's spin boxes (the seed boxes), Enter takes the typed value and Esc drops it; both give the focus
  back to the canvas, so the single-key shortcuts (S, B, V, T…) work again. Letters, which an integer box cannot
  take, stay shortcuts while such a box has the focus.
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QScrollBar,
    QSpinBox,
    QWidget,
)

WHEEL_CONTROLS = (QAbstractSlider, QAbstractSpinBox, QComboBox)
_LEAVE_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape)
_COMMAND_MODIFIERS = (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
                      | Qt.KeyboardModifier.MetaModifier)


def scrolling_ancestor(widget: QWidget, vertical: bool) -> QAbstractScrollArea | None:
    """The nearest scroll area around ``widget`` that can scroll in that direction, or None."""
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QAbstractScrollArea) and not isinstance(parent, QComboBox):
            bar = parent.verticalScrollBar() if vertical else parent.horizontalScrollBar()
            if bar.maximum() > bar.minimum():
                return parent
        parent = parent.parentWidget()
    return None


def in_scroll_area(widget: QWidget) -> bool:
    parent = widget.parentWidget()
    while parent is not None:
        if isinstance(parent, QAbstractScrollArea):
            return True
        parent = parent.parentWidget()
    return False


class InputGuard(QObject):
    """Install on the application (``QApplication.instance().installEventFilter(guard)``); ``window``'s spin boxes
    give the focus to ``focus_home`` (the canvas) on Enter or Esc. Parent it to the window: it goes with it."""

    def __init__(self, window: QWidget, focus_home: QWidget):
        super().__init__(window)
        self._window = window
        self._home = focus_home
        for control in (c for cls in WHEEL_CONTROLS for c in window.findChildren(cls)):  # polished before, or hidden
            self._no_wheel_focus(control)

    @staticmethod
    def _no_wheel_focus(control: QWidget) -> None:
        if control.focusPolicy() == Qt.FocusPolicy.WheelFocus:
            control.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def eventFilter(self, obj, event) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Wheel:
            return isinstance(obj, WHEEL_CONTROLS) and not isinstance(obj, QScrollBar) and self._wheel(obj, event)
        if kind == QEvent.Type.Polish and isinstance(obj, WHEEL_CONTROLS):
            self._no_wheel_focus(obj)
            return False
        if kind in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride) and isinstance(obj, QAbstractSpinBox) \
                and obj.window() is self._window:
            return self._key(obj, event)
        return False

    def _wheel(self, control: QWidget, event: QWheelEvent) -> bool:
        """Unfocused control in a scroll area: the wheel scrolls the area instead (True: the control never sees it)."""
        if control.hasFocus() or not in_scroll_area(control):
            return False
        delta = event.angleDelta()
        area = scrolling_ancestor(control, vertical=abs(delta.y()) >= abs(delta.x()))
        if area is not None:
            viewport = area.viewport()
            at = QPointF(viewport.mapFromGlobal(event.globalPosition().toPoint()))
            forwarded = QWheelEvent(at, event.globalPosition(), event.pixelDelta(), delta, event.buttons(),
                                    event.modifiers(), event.phase(), event.inverted(), event.source())
            QApplication.sendEvent(viewport, forwarded)
        return True

    def _key(self, box: QAbstractSpinBox, event) -> bool:
        key = event.key()
        if event.type() == QEvent.Type.ShortcutOverride:
            if key == Qt.Key.Key_Escape:
                event.accept()  # Esc leaves the box first (a window-wide Esc action waits for the next press)
                return True
            letter = Qt.Key.Key_A <= key <= Qt.Key.Key_Z and not event.modifiers() & _COMMAND_MODIFIERS
            if letter and isinstance(box, QSpinBox | QDoubleSpinBox) and not box.prefix() and not box.suffix():
                event.ignore()  # not something the box can take: let the shortcut have it
                return True
            return False
        if key not in _LEAVE_KEYS:
            return False
        if key == Qt.Key.Key_Escape:
            if isinstance(box, QSpinBox | QDoubleSpinBox):
                box.setValue(box.value())  # drops the typed text
        else:
            box.interpretText()
        self._home.setFocus(Qt.FocusReason.OtherFocusReason)
        return True
