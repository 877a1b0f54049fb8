"""The Help menu (a shortcut sheet generated from the window's actions, About, the log folder) and how failures
are shown: one sentence in a message box, the traceback under its details."""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox


def test_a_failing_job_shows_a_sentence_with_the_traceback_in_the_details(qtbot, main_window, tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box) or 0)
    for name in ("warning", "critical"):  # the static helpers would block: record them as failures of the test
        monkeypatch.setattr(QMessageBox, name, lambda *a, **k: shown.append(a) or QMessageBox.StandardButton.Ok)
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"\x80\x02not a checkpoint at all" * 4)
    main_window.model_panel.open_path(bad)
    qtbot.waitUntil(lambda: bool(shown), timeout=30000)
    box = shown[0]
    assert isinstance(box, QMessageBox), "the error must be a message box with details, not a bare warning"
    text = box.text()
    assert text.startswith("Could not load the model. ") and text.endswith(".")
    assert "Error" not in text and "b'" not in text and 'b"' not in text
    assert "Traceback (most recent call last)" in box.detailedText()
    assert main_window.statusBar().currentMessage() == text
