"""The generators' precision in the editor: stored in Preferences (a stale value reads as auto), handed to the
engine bridge, and shown in the status bar beside the device."""
from __future__ import annotations

from editor.controllers.settings import Settings


def test_preferences_store_the_precision_and_a_stale_one_reads_as_auto(qtbot, tmp_path):
    from editor.dialogs.preferences import PreferencesDialog

    path = tmp_path / "p.ini"
    assert Settings(path).precision == "auto"
    dialog = PreferencesDialog(Settings(path))
    qtbot.addWidget(dialog)
    assert [dialog.precision.itemText(i) for i in range(dialog.precision.count())] == [
        "auto", "float32", "float16", "bfloat16"]
    assert dialog.precision.currentText() == "auto"
    dialog.precision.setCurrentText("bfloat16")
    dialog.apply()
    assert Settings(path).precision == "bfloat16"
    assert PreferencesDialog(Settings(path)).precision.currentText() == "bfloat16"
    Settings(path).precision = "float8"  # written by another version, or by hand
    assert Settings(path).precision == "auto"


def test_the_status_bar_shows_the_precision_the_generator_runs_in(qtbot, tmp_path, tiny_state):
    from editor.controllers.bridge import EngineBridge
    from editor.controllers.document import Document
    from editor.main_window import MainWindow

    bridge = EngineBridge(device="cpu", precision="bfloat16").start()
    try:
        assert bridge.precision == "bfloat16"
        win = MainWindow(Document(tiny_state), bridge, Settings(tmp_path / "s.ini"),
                         autosave_path=tmp_path / "autosave.fproj")
        win.show()
        qtbot.waitUntil(lambda: win.current_full_image() is not None, timeout=60000)
        assert win.device_label.text() == "device: cpu · bfloat16"
        win.document.undo_stack.setClean()
        assert win.close()
        win.deleteLater()
    finally:
        bridge.shutdown()
    auto = EngineBridge(device="cpu").start()
    try:
        assert auto.precision == "float32"  # auto off CUDA
    finally:
        auto.shutdown()
