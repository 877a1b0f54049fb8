"""A spin box for seeds: every seed the engine takes, [0, 2**32), where a ``QSpinBox`` stops at 2**31 - 1."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QDoubleSpinBox, QWidget

from engine import SEED_LIMIT


class SeedBox(QDoubleSpinBox):
    """Whole numbers in [0, ``maximum``] (default: every seed), shown without decimals. A double holds each of them
    exactly; ``value()`` is an ``int`` and ``seedChanged(int)`` reports a new value (Qt's int signals are 32-bit)."""

    seedChanged = Signal(object)

    def __init__(self, parent: QWidget | None = None, *, maximum: int = SEED_LIMIT - 1, **kwargs):
        super().__init__(parent, decimals=0, minimum=0, maximum=maximum, **kwargs)
        self.valueChanged.connect(lambda v: self.seedChanged.emit(int(v)))

    def value(self) -> int:
        return int(super().value())
