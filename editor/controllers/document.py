"""The document: the single source of truth of the edit (an immutable ``EditState``) and its undo stack.

Widgets never hold state of their own: they push edits through ``Document.edit`` (an undo command) and refresh from
``changed``. The loaded model's summary lives here too, because panels lay themselves out from it.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoStack

from editor.controllers.commands import StateCommand
from engine import EditState, ModelSummary


class Document(QObject):
    """``changed(state, fields)`` after every state change; ``modelLoaded(summary)`` when a model is ready."""

    changed = Signal(object, object)  # EditState, frozenset[str] of changed field names
    modelLoaded = Signal(object)  # ModelSummary

    def __init__(self, state: EditState | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._state = state or EditState()
        self._summary: ModelSummary | None = None
        self.undo_stack = QUndoStack(self)
        self._merge_generation = 0

    @property
    def state(self) -> EditState:
        return self._state

    @property
    def summary(self) -> ModelSummary | None:
        return self._summary

    def edit(self, text: str, *, merge: str | None = None, **changes) -> None:
        """Push one undoable edit. Edits with the same ``merge`` key in a row (one slider drag) form one step."""
        changes = {k: v for k, v in changes.items() if getattr(self._state, k) != v}
        if changes:
            self.undo_stack.push(StateCommand(self, text, changes, merge=merge, generation=self._merge_generation))

    def end_merge(self) -> None:
        """Close the running merge (a slider was released): the next edit starts a new undo step."""
        self._merge_generation += 1

    def reset(self, state: EditState) -> None:
        """Replace the whole state without undo history (opening a project)."""
        self.undo_stack.clear()
        self._apply(state)
        self.undo_stack.setClean()

    def set_summary(self, summary: ModelSummary) -> None:
        self._summary = summary
        self.modelLoaded.emit(summary)

    def _apply(self, state: EditState) -> None:
        """Called by undo commands only."""
        old, self._state = self._state, state
        fields = frozenset(k for k in state.__dataclass_fields__ if getattr(old, k) != getattr(state, k))
        if fields or old is not state:
            self.changed.emit(state, fields)
