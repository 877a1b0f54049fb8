"""Undo commands: every user edit is one ``QUndoCommand`` on the document's stack; slider drags merge."""
from __future__ import annotations

import zlib

from PySide6.QtGui import QUndoCommand


class StateCommand(QUndoCommand):
    """Set some fields of the document's state. Consecutive commands with the same merge key and generation (one
    slider drag) merge into one step that undoes to the value before the drag."""

    def __init__(self, document, text: str, changes: dict, *, merge: str | None = None, generation: int = 0):
        super().__init__(text)
        self._doc = document
        self._after = dict(changes)
        self._before = {k: getattr(document.state, k) for k in changes}
        self._merge = merge
        self._generation = generation

    def id(self) -> int:
        return -1 if self._merge is None else zlib.crc32(self._merge.encode()) & 0x7FFFFFFF

    def mergeWith(self, other: QUndoCommand) -> bool:
        if not isinstance(other, StateCommand) or other._merge != self._merge or self._merge is None:
            return False
        if other._generation != self._generation or set(other._after) != set(self._after):
            return False
        self._after = dict(other._after)
        if self._after == self._before:
            self.setObsolete(True)
        return True

    def redo(self) -> None:
        self._doc._apply(self._doc.state.replace(**self._after))

    def undo(self) -> None:
        self._doc._apply(self._doc.state.replace(**self._before))
