"""The main window on a 1280×720 screen: it keeps the size the user gave while panels change, the style-mixing grid
shows every row, the samples pop-up stays on screen; the wheel scrolls panels instead of editing unfocused sliders;
Enter or Esc in a seed box gives the keyboard back to the canvas and its shortcuts."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractScrollArea, QAbstractSlider, QAbstractSpinBox, QApplication, QComboBox

from engine.project import ModelRef

ASTRONAUT = Path(__file__).resolve().parents[1] / "data" / "astronaut_face.png"


def wheel(widget, *, steps: int = 1) -> None:
    """``steps`` notches of the mouse wheel (down) over the middle of ``widget``."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(centre.toPoint())), QPoint(0, 0), QPoint(0, -120 * steps),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def column(widget) -> QAbstractScrollArea:
    parent = widget.parentWidget()
    while not isinstance(parent, QAbstractScrollArea):
        parent = parent.parentWidget()
    return parent


def test_the_wheel_scrolls_the_panel_over_an_unfocused_slider_and_moves_a_focused_one(qtbot, main_window):
    psi = main_window.generation_panel.psi.findChild(QAbstractSlider)
    area = column(psi)
    bar = area.verticalScrollBar()
    assert bar.maximum() > 0, "the left column should scroll at 1280×720"
    value, top = psi.value(), bar.value()
    wheel(psi)
    assert psi.value() == value and bar.value() > top  # scrolled, not edited
    assert main_window.document.undo_stack.count() == 0
    bar.setValue(0)
    psi.setFocus()
    wheel(psi)
    assert psi.value() != value and bar.value() == 0  # clicked (focused) first: the wheel moves it
    controls = [w for cls in (QAbstractSlider, QAbstractSpinBox, QComboBox) for w in main_window.findChildren(cls)]
    assert controls and [w for w in controls if w.focusPolicy() == Qt.FocusPolicy.WheelFocus] == []


def test_enter_or_esc_in_the_seed_box_gives_the_keys_back_to_the_canvas(qtbot, main_window):
    box = main_window.generation_panel.seed
    main_window.activateWindow()
    box.setFocus()
    box.selectAll()
    QTest.keyClicks(box, "42")
    QTest.keyClick(box, Qt.Key.Key_Return)
    assert main_window.document.state.seed == 42 and main_window.canvas.hasFocus()
    QTest.keyClick(main_window.canvas, Qt.Key.Key_B)  # a single-key shortcut works again
    assert main_window.act_before.isChecked()
    box.setFocus()
    box.selectAll()
    QTest.keyClicks(box, "7")
    QTest.keyClick(box, Qt.Key.Key_Escape)  # drops what was typed
    assert main_window.document.state.seed == 42 and box.text() == "42" and main_window.canvas.hasFocus()
    box.setFocus()
    QTest.keyClick(box, Qt.Key.Key_B)  # a letter the box cannot take stays a shortcut
    assert not main_window.act_before.isChecked() and box.hasFocus()


def test_at_1280x720_the_window_keeps_its_size_the_grid_shows_every_row_and_the_samples_fit(qtbot, main_window,
                                                                                           tmp_path):
    win = main_window
    size = win.size()
    assert win.minimumSizeHint().width() <= 1280 and win.minimumSizeHint().height() <= 720
    photo = win.photo_panel
    photo.steps.setValue(photo.steps.minimum())
    photo.tuning.setCurrentIndex(photo.tuning.findData("off"))
    photo.open_path(str(ASTRONAUT))
    qtbot.waitUntil(lambda: win.document.state.photo is not None and not photo.running(), timeout=120000)
    qtbot.wait(50)
    assert win.size() == size
    win.translate_panel.target.setCurrentIndex(1)  # the first shipped target
    qtbot.waitUntil(lambda: win.document.state.translation is not None, timeout=60000)
    qtbot.wait(50)
    assert win.size() == size

    mixing = win.mixing_panel
    viewport = mixing.scroll.viewport()
    rows = win.document.summary.num_ws
    assert len(mixing._radios) == rows

    def every_row_shows():  # every row inside the grid's view: nothing to scroll inside it
        tops = [radios[0].mapTo(viewport, QPoint(0, 0)).y() for radios in mixing._radios]
        return all(0 <= y and y + r[0].height() <= viewport.height() for y, r in zip(tops, mixing._radios))

    qtbot.waitUntil(every_row_shows, timeout=3000)  # once the layout pass the new columns asked for has run

    long_name = tmp_path / ("a-target-with-a-very-long-file-name-" * 6 + "toon.pt")
    long_name.write_bytes(Path(win.document.state.translation.target.path).read_bytes())
    win.translate_panel.set_target(ModelRef(path=str(long_name)))
    qtbot.waitUntil(lambda: win.document.state.translation.target.path == str(long_name), timeout=60000)
    win.act_samples.trigger()
    popup = win.translate_panel.grid_panel
    qtbot.waitUntil(popup.isVisible, timeout=5000)
    screen = win.screen().availableGeometry()
    room = screen.intersected(win.frameGeometry())
    assert room.contains(popup.frameGeometry()), (popup.frameGeometry(), room)
    assert win.size() == size
