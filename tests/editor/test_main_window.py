"""The main window on the real embedded default model: first face, actions through every panel with undo/redo,
snapshots and before/after, project round trip, and closing without losing anything."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from engine.jobs.render import load_model, render_state
from engine.project import Source
from tests.editor.conftest import open_main_window


@pytest.fixture
def window(qtbot, tmp_path):
    yield from open_main_window(qtbot, tmp_path, size=(1200, 760))


def wait_frame(qtbot, win):
    qtbot.waitUntil(lambda: win.current_full_image() is not None, timeout=30000)
    return win.current_full_image()


def test_opens_on_the_embedded_default_and_shows_its_face(qtbot, window):
    summary = window.document.summary
    assert summary.ref.path is None and summary.resolution >= 64
    img = wait_frame(qtbot, window)
    expected = render_state(load_model(window.document.state.model), window.document.state)
    np.testing.assert_array_equal(img, expected)
    assert window.canvas.has_image() and "device: cpu" in window.device_label.text()
    assert "ms/frame" in window.speed_label.text()
    assert len(window.history.snapshots) == 1  # the first face is the first 'before'


def test_actions_edit_through_every_panel_and_undo_redo_round_trips(qtbot, window):
    doc = window.document
    start = doc.state
    window.act_next_seed.trigger()
    window.generation_panel.psi.setValue(0.4)
    window.generation_panel.noise_mode.setCurrentIndex(window.generation_panel.noise_mode.findData("random"))
    doc.edit("Mix", sources=(Source(seed=5),), rows=(1,) * 4 + (0,) * (summary_rows(doc) - 4))
    after = doc.state
    assert after.seed == start.seed + 1 and after.psi == 0.4 and after.noise_mode == "random" and after.mixed()
    assert window.isWindowModified()
    img_after = wait_frame(qtbot, window)
    for _ in range(4):
        window.act_undo.trigger()
    assert doc.state == start and not window.isWindowModified()
    assert window.generation_panel.seed.value() == start.seed
    np.testing.assert_array_equal(wait_frame(qtbot, window), render_state(load_model(start.model), start))
    for _ in range(4):
        window.act_redo.trigger()
    assert doc.state == after
    np.testing.assert_array_equal(wait_frame(qtbot, window), img_after)


def summary_rows(doc):
    return doc.summary.num_ws


def test_snapshot_before_after_and_restore(qtbot, window):
    doc = window.document
    first = doc.state
    window.act_random_seed.trigger()
    wait_frame(qtbot, window)
    window.act_snapshot.trigger()
    assert [s.state for s in window.history.snapshots] == [first, doc.state]
    window.act_before.setChecked(True)
    assert window.canvas.showing_before
    window.act_before.setChecked(False)
    window.history.restoreRequested.emit(first)
    assert doc.state == first
    window.act_undo.trigger()
    assert doc.state == window.history.snapshots[1].state


def test_project_save_and_open_reproduce_the_image(qtbot, window, tmp_path, monkeypatch):
    doc = window.document
    window.act_next_seed.trigger()
    doc.edit("Mix", sources=(Source(seed=9),), rows=(0,) * 4 + (1,) * (summary_rows(doc) - 4))
    img = wait_frame(qtbot, window).copy()
    path = tmp_path / "face.fproj"
    monkeypatch.setattr("editor.controllers.projects.QFileDialog.getSaveFileName", lambda *a, **k: (str(path), ""))
    assert window.projects.save_as() and path.is_file()
    assert not window.isWindowModified() and "face" in window.windowTitle()
    window.act_random_seed.trigger()
    wait_frame(qtbot, window)
    monkeypatch.setattr("editor.controllers.projects.QMessageBox.question",
                        lambda *a, **k: QMessageBox.StandardButton.Discard)
    assert window.projects.open_file(path)
    np.testing.assert_array_equal(wait_frame(qtbot, window), img)
