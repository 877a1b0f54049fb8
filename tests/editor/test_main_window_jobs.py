"""The main window while a long job runs: Esc cancels it (as the status bar says), and opening a photo
(Ctrl+Shift+P) or inverting (Ctrl+I) is refused like their menu items until it ends."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QFileDialog

ASTRONAUT = Path(__file__).resolve().parents[1] / "data" / "astronaut_face.png"
CTRL_SHIFT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier


def start_long_inversion(qtbot, win) -> None:
    win.activateWindow()
    win.photo_panel.steps.setValue(5000)
    win.photo_panel.open_path(str(ASTRONAUT))
    qtbot.waitUntil(lambda: "/5000 ·" in win.photo_panel.quality.text(), timeout=60000)


def test_esc_cancels_the_running_inversion(qtbot, main_window):
    win = main_window
    before = win.document.state
    assert not win.act_cancel.isEnabled()  # nothing runs: Esc is left to the widgets
    start_long_inversion(qtbot, win)
    assert "Esc cancels" in win.statusBar().currentMessage() and win.act_cancel.isEnabled()
    QTest.keyClick(win, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not win.photo_panel.running(), timeout=30000)
    assert win.document.state == before and win.document.undo_stack.count() == 0
    assert "cancelled" in win.statusBar().currentMessage() and not win.act_cancel.isEnabled()


def test_opening_a_photo_or_inverting_is_refused_while_an_inversion_runs(qtbot, main_window, monkeypatch):
    win = main_window
    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: asked.append(a) or ("", ""))
    start_long_inversion(qtbot, win)
    inverting = win.photo_panel._invert_request
    QTest.keyClick(win, Qt.Key.Key_P, CTRL_SHIFT)
    QTest.keyClick(win, Qt.Key.Key_I, Qt.KeyboardModifier.ControlModifier)
    assert asked == [] and win.photo_panel._invert_request is inverting and inverting is not None
    assert not win.act_open_photo.isEnabled() and not win.act_invert.isEnabled()
    assert "no other photo" in win.statusBar().currentMessage()
    win.photo_panel.cancel()
    qtbot.waitUntil(lambda: not win.photo_panel.running(), timeout=30000)
    assert win.act_open_photo.isEnabled() and win.act_invert.isEnabled()
    QTest.keyClick(win, Qt.Key.Key_P, CTRL_SHIFT)  # once it has ended the key opens the dialog again
    assert len(asked) == 1


def test_esc_cancels_the_reference_image_inversion(qtbot, main_window):
    win = main_window
    panel = win.translate_panel
    panel.target.setCurrentIndex(1)  # the shipped toon target
    qtbot.waitUntil(lambda: win.document.state.translation is not None, timeout=30000)
    style = win.document.state.translation.style
    panel.inversion_steps = 5000
    win.activateWindow()
    panel.open_reference(str(ASTRONAUT))
    qtbot.waitUntil(lambda: panel.reference_running() and win.act_cancel.isEnabled(), timeout=60000)
    QTest.keyClick(win, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not panel.reference_running(), timeout=30000)
    assert win.document.state.translation.style == style and not win.act_cancel.isEnabled()


def test_esc_in_the_batch_progress_window_cancels_the_batch(qtbot, main_window, tmp_path):
    win = main_window
    win.exports.batch_export(tmp_path / "many", "0-9999")
    qtbot.waitUntil(lambda: win.exports.progress_dialog.value() > 0, timeout=30000)
    with qtbot.waitSignal(win.exports.message, timeout=30000,
                          check_params_cb=lambda m: m.startswith("Batch export cancelled")):
        QTest.keyClick(win.exports.progress_dialog, Qt.Key.Key_Escape)
    assert not win.exports.busy
