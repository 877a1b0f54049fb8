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


def _sheet(window):
    from editor.dialogs.help import TextSheet

    sheets = [w for w in window.findChildren(TextSheet) if w.isVisible()]
    assert len(sheets) == 1
    return sheets[0]


def test_the_shortcut_sheet_lists_every_shortcut_of_the_window_from_its_actions(qtbot, main_window):
    from PySide6.QtGui import QAction, QKeySequence, QShortcut

    from editor.dialogs.help import shortcut_rows

    rows = shortcut_rows(main_window)
    listed = {keys for _, _, keys, _ in rows}
    native = QKeySequence.SequenceFormat.NativeText
    for action in main_window.findChildren(QAction):  # every keyboard action is in a menu, hence on the sheet
        keys = dict.fromkeys(k.toString(native) for k in action.shortcuts() if not k.isEmpty())
        if keys:
            assert " or ".join(keys) in listed, action.text()
    assert not main_window.findChildren(QShortcut), "a shortcut outside the menus is missing from the sheet"
    by_keys = {keys: (menu, name, what) for menu, name, keys, what in rows}
    assert by_keys["T"][0] == by_keys["Shift+T"][0] == by_keys["Ctrl+T"][0] == "Translate"
    assert by_keys["Ctrl+T"][1] == "Compare translation methods…" and "BicycleGAN" in by_keys["Ctrl+T"][2]
    undo = next(v for k, v in by_keys.items() if k.split(" or ")[0] == "Ctrl+Z")
    assert undo[1] == "Undo" and by_keys["S"][2].startswith("Keep the current face")
    main_window.act_shortcuts.trigger()
    text = _sheet(main_window).browser.toPlainText()
    assert "Shift+T" in text and "Style samples…" in text and "Take snapshot" in text


def test_about_names_the_versions_the_device_and_the_model_files(qtbot, main_window):
    import importlib.metadata

    from engine.assets import ASSETS_DIR

    main_window.act_about.trigger()
    text = _sheet(main_window).browser.toPlainText()
    import PySide6

    for version in (importlib.metadata.version("face-editor"), importlib.metadata.version("torch"),
                    PySide6.__version__):
        assert version in text
    assert "Engine device" in text and main_window.bridge.device in text
    assert str(ASSETS_DIR / "generator.pt") in text and str(ASSETS_DIR / "flow.pt") in text
    assert str(ASSETS_DIR / "encoder.pt") in text and str(ASSETS_DIR / "estimator.pt") in text


def test_open_log_folder_opens_the_folder_of_the_log_file(qtbot, main_window, monkeypatch, tmp_path):
    from PySide6.QtGui import QDesktopServices

    from engine.logs import log_path

    monkeypatch.setenv("FACE_EDITOR_LOG_DIR", str(tmp_path / "logs"))
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    main_window.act_log_folder.trigger()
    assert len(opened) == 1 and opened[0].toLocalFile() == str(log_path().parent)
    assert log_path().parent.is_dir()
