"""Document and undo commands: edits, undo/redo, slider-drag merging, reset, change notifications."""
from __future__ import annotations

from editor.controllers.document import Document
from engine.project import EditState


def test_edits_undo_redo_and_notifications(qtbot):
    doc = Document(EditState(seed=1))
    seen = []
    doc.changed.connect(lambda st, fields: seen.append((st.seed, st.psi, fields)))
    doc.edit("Seed", seed=5)
    doc.edit("Psi", psi=0.5)
    assert (doc.state.seed, doc.state.psi) == (5, 0.5)
    doc.undo_stack.undo()
    assert (doc.state.seed, doc.state.psi) == (5, 0.7)
    doc.undo_stack.undo()
    assert doc.state == EditState(seed=1)
    doc.undo_stack.redo()
    doc.undo_stack.redo()
    assert (doc.state.seed, doc.state.psi) == (5, 0.5)
    assert seen[0] == (5, 0.7, frozenset({"seed"}))
    assert seen[1] == (5, 0.5, frozenset({"psi"}))
    assert len(seen) == 6


def test_no_op_edits_push_nothing(qtbot):
    doc = Document(EditState(seed=1))
    doc.edit("Seed", seed=1)
    assert doc.undo_stack.count() == 0 and doc.undo_stack.isClean()


def test_a_slider_drag_is_one_undo_step_and_the_next_drag_another(qtbot):
    doc = Document()
    for v in (0.6, 0.5, 0.4):
        doc.edit("Psi", merge="psi", psi=v)
    doc.end_merge()
    assert doc.undo_stack.count() == 1
    for v in (0.3, 0.2):
        doc.edit("Psi", merge="psi", psi=v)
    assert doc.undo_stack.count() == 2
    doc.undo_stack.undo()
    assert doc.state.psi == 0.4
    doc.undo_stack.undo()
    assert doc.state.psi == 0.7
    doc.undo_stack.redo()
    assert doc.state.psi == 0.4


def test_a_drag_back_to_the_start_leaves_no_step(qtbot):
    doc = Document()
    doc.edit("Psi", merge="psi", psi=0.5)
    doc.edit("Psi", merge="psi", psi=0.7)
    assert doc.undo_stack.count() == 0


def test_reset_clears_history_and_marks_clean(qtbot):
    doc = Document()
    doc.edit("Seed", seed=9)
    assert not doc.undo_stack.isClean()
    doc.reset(EditState(seed=3, psi=1.0))
    assert doc.state == EditState(seed=3, psi=1.0)
    assert doc.undo_stack.count() == 0 and doc.undo_stack.isClean()
