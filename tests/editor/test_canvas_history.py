"""Canvas (pixels on screen, zoom, pan, before/after, previews) and history strip (snapshots, restore, undo)."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QWheelEvent
from PySide6.QtWidgets import QApplication

from editor.controllers.document import Document
from editor.widgets.canvas import BACKGROUND, Canvas
from editor.widgets.history import HistoryStrip, describe_state, restore_snapshot, snapshot_label
from engine.algorithms.flow_edit import STYLEFLOW, AttributeEdit
from engine.project import EditState, ModelRef, NoiseMaps, PhotoRef, Source, Translation

RED, BLUE, GREEN = (220, 30, 40), (20, 60, 230), (30, 200, 60)


def solid(color, size=64, width=None) -> np.ndarray:
    img = np.empty((size, width or size, 3), np.uint8)  # [H, W, 3]
    img[:] = color
    return img


def pixel(widget, x, y) -> tuple[int, int, int]:
    c = widget.grab().toImage().pixelColor(x, y)
    return c.red(), c.green(), c.blue()


def painted_span(widget, y) -> tuple[int, int]:
    """First and last column of row ``y`` that is not the background."""
    image = widget.grab().toImage()
    bg = QColor(BACKGROUND).rgb()
    cols = [x for x in range(image.width()) if image.pixel(x, y) != bg]
    return cols[0], cols[-1]


@pytest.fixture
def canvas(qtbot):
    c = Canvas()
    qtbot.addWidget(c)
    c.resize(512, 512)
    c.show()
    qtbot.waitExposed(c)
    return c


def test_placeholder_then_frame_pixels(canvas):
    assert not canvas.has_image()
    assert pixel(canvas, 5, 5) == QColor(BACKGROUND).getRgb()[:3]
    canvas.set_image(solid(RED))
    assert canvas.has_image()
    assert pixel(canvas, 256, 256) == RED


def test_before_after_toggle(canvas):
    canvas.set_image(solid(RED))
    canvas.set_before(solid(BLUE), label="Before · seed 3")
    assert pixel(canvas, 256, 256) == RED
    canvas.show_before(True)
    assert canvas.showing_before and pixel(canvas, 256, 256) == BLUE
    canvas.show_before(False)
    assert pixel(canvas, 256, 256) == RED
    canvas.set_before(None)
    canvas.show_before(True)  # nothing to compare: the current frame stays, with a badge saying so
    assert pixel(canvas, 256, 256) == RED


def test_side_by_side_shows_before_left_and_now_right_at_the_fitted_size(canvas):
    canvas.set_image(solid(RED))
    canvas.set_side_by_side(True)
    assert not canvas.side_by_side and pixel(canvas, 256, 256) == RED  # nothing to compare yet: one image
    canvas.set_before(solid(BLUE))
    assert canvas.side_by_side
    left, right = painted_span(canvas, 300)
    assert left <= 2 and right >= 509  # the pair fills the width
    assert pixel(canvas, 120, 300) == BLUE and pixel(canvas, 390, 300) == RED
    assert pixel(canvas, 256, 300) == QColor(BACKGROUND).getRgb()[:3]  # the gap between them
    assert canvas.zoom == pytest.approx(512 / (64 * 2.03), rel=0.01)
    canvas.set_side_by_side(False)
    assert pixel(canvas, 256, 256) == RED and canvas.zoom == pytest.approx(8.0)


def test_zoom_fit_actual_steps(canvas, qtbot):
    canvas.set_image(solid(RED))
    assert canvas.fitted and canvas.zoom == pytest.approx(8.0)
    with qtbot.waitSignal(canvas.zoomChanged) as sig:
        canvas.zoom_actual()
    assert sig.args == [1.0] and not canvas.fitted
    assert painted_span(canvas, 256) == (224, 287)  # 64 px, centred
    canvas.zoom_in()
    assert canvas.zoom == pytest.approx(1.5)
    canvas.zoom_out()
    canvas.zoom_out()
    assert canvas.zoom == pytest.approx(2 / 3)
    canvas.resize(300, 300)  # not fitted: the zoom stays
    assert canvas.zoom == pytest.approx(2 / 3)
    canvas.zoom_fit()
    assert canvas.fitted and canvas.zoom == pytest.approx(300 / 64)
    with qtbot.waitSignal(canvas.zoomChanged) as sig:
        canvas.resize(256, 400)  # fitted: the zoom follows the widget
    assert sig.args == [pytest.approx(4.0)]
    for _ in range(30):
        canvas.zoom_in()
    assert canvas.zoom == 32.0


def test_zooming_in_on_purpose_draws_crisp_pixels_while_fit_is_smooth(canvas):
    img = solid(RED)
    img[:, 32:] = BLUE
    canvas.set_image(img)  # fitted at 8x: the red/blue edge lies between columns 255 and 256, smoothed
    assert canvas.fitted and pixel(canvas, 255, 100) not in (RED, BLUE)
    canvas.set_zoom(8.0)  # the same scale chosen by the user: sharp squares
    assert not canvas.fitted
    assert pixel(canvas, 255, 100) == RED
    assert pixel(canvas, 256, 100) == BLUE


def test_preview_is_drawn_at_the_full_size(canvas):
    canvas.resize(512, 400)
    canvas.set_image(solid(GREEN, 64))
    full = painted_span(canvas, 200)
    canvas.set_image(solid(GREEN, 32), logical_size=(64, 64))
    assert painted_span(canvas, 200) == full == (56, 455)
    assert canvas.zoom == pytest.approx(400 / 64)


def test_show_result_keeps_previews_at_the_last_full_size(canvas):
    class Result:
        def __init__(self, image, full):
            self.image, self.full = image, full

    canvas.resize(512, 400)
    canvas.show_result(Result(solid(GREEN, 64), True))
    full = painted_span(canvas, 200)
    canvas.show_result(Result(solid(GREEN, 16), False))
    assert painted_span(canvas, 200) == full


def test_double_click_wheel_and_drag(canvas, qtbot):
    img = solid(RED)
    img[:, :32] = BLUE
    canvas.set_image(img)
    qtbot.mouseDClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(256, 256))
    assert canvas.zoom == 1.0 and not canvas.fitted
    qtbot.mouseDClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(256, 256))
    assert canvas.fitted and canvas.zoom == pytest.approx(8.0)

    canvas.set_zoom(16.0)  # 1024 px on screen: the left half (blue) and right half (red) meet at the centre
    assert pixel(canvas, 250, 256) == BLUE and pixel(canvas, 260, 256) == RED
    canvas.set_zoom(16.0, anchor=QPointF(256, 256))
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(100, 256))
    qtbot.mouseMove(canvas, QPoint(300, 256))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(300, 256))
    assert pixel(canvas, 420, 256) == BLUE  # the image moved right by 200 px
    assert pixel(canvas, 470, 256) == RED

    wheel = QWheelEvent(QPointF(256, 256), canvas.mapToGlobal(QPointF(256, 256)), QPoint(), QPoint(0, -360),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(canvas, wheel)
    assert canvas.zoom == pytest.approx(8.0)  # three notches down halve the zoom


def test_set_image_rejects_bad_arrays(canvas):
    with pytest.raises(ValueError, match="uint8"):
        canvas.set_image(np.zeros((8, 8, 3), np.float32))


# ----------------------------------------------------------------------------------------------- history strip


@pytest.fixture
def strip(qtbot):
    s = HistoryStrip()
    qtbot.addWidget(s)
    s.resize(600, 96)
    s.show()
    qtbot.waitExposed(s)
    return s


def states(n=3):
    return [EditState(seed=10 + i, psi=0.5 + 0.1 * i) for i in range(n)]


def test_click_restores_the_clicked_snapshot(strip, qtbot):
    for s, color in zip(states(), (RED, GREEN, BLUE)):
        assert strip.add_snapshot(s, solid(color, 256))
    snaps = strip.snapshots
    assert [s.state for s in snaps] == states()
    assert snaps[1].label == "seed 11 · ψ 0.60"
    assert snaps[1].thumbnail.shape == (72, 72, 3) and tuple(snaps[1].thumbnail[36, 36]) == GREEN
    assert snaps[1].image.shape == (256, 256, 3)
    rect = strip.view.visualItemRect(strip.view.item(1))
    with qtbot.waitSignal(strip.restoreRequested) as sig:
        qtbot.mouseClick(strip.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert sig.args == [states()[1]]
    with qtbot.assertNotEmitted(strip.restoreRequested):
        qtbot.mouseClick(strip.view.viewport(), Qt.MouseButton.RightButton, pos=rect.center())


def test_duplicates_remove_clear_and_current(strip, qtbot):
    a, b = states(2)
    assert strip.add_snapshot(a, solid(RED))
    assert not strip.add_snapshot(a, solid(BLUE))  # the same state as the last one: not added
    assert strip.add_snapshot(b, solid(BLUE))
    assert strip.add_snapshot(a, solid(RED))  # an earlier state again is a new step in the history
    assert len(strip.snapshots) == 3
    strip.set_current(a)
    assert [strip.view.item(i).data(Qt.ItemDataRole.UserRole + 1) for i in range(3)] == [True, False, True]
    with qtbot.waitSignal(strip.snapshotsChanged):
        strip.remove(1)
    assert [s.state for s in strip.snapshots] == [a, a]
    strip.view.setCurrentRow(0)
    qtbot.keyClick(strip.view, Qt.Key.Key_Delete)
    assert len(strip.snapshots) == 1
    with pytest.raises(IndexError):
        strip.remove(5)
    strip.clear()
    assert strip.snapshots == []


def test_limit_drops_the_oldest(qtbot):
    s = HistoryStrip(limit=2)
    qtbot.addWidget(s)
    for st in states(3):
        s.add_snapshot(st, solid(RED))
    assert [x.state for x in s.snapshots] == states(3)[1:]


def test_tooltips_describe_every_parameter():
    state = EditState(seed=5, psi=0.8, cutoff=4, noise_mode="random", noise_seed=9,
                      sources=(Source(seed=77),), rows=(0, 0, 1, 1, 0, 0))
    text = describe_state(state)
    for part in ("Seed: 5", "ψ: 0.80 on rows 0–3", "noise seed 9", "rows 2–3: seed 77", "rows 4–5: base seed"):
        assert part in text
    assert snapshot_label(state) == "seed 5 · ψ 0.80 · mixed"
    photo = state.replace(base=Source.from_latent(np.zeros(8, np.float32), name="me.jpg"),
                          photo=PhotoRef("/p/me.jpg", "ab" * 32, ((0, 0), (0, 9), (9, 9), (9, 0)), 32))
    assert snapshot_label(photo) == "me.jpg · mixed"
    assert "Face: inverted from the photo me.jpg" in describe_state(photo) and "Seed:" not in describe_state(photo)
    toon = photo.replace(translation=Translation(ModelRef("/m/toon.pt"), depth=16, blend=1.0))
    assert "Translation: toon.pt, feature swap at 16 px, blend 1" in describe_state(toon)


def test_restore_snapshot_is_one_undo_step(tiny_state, tiny_model_path):
    doc = Document(tiny_state)
    target = EditState(model=ModelRef(path=str(tiny_model_path), sha256="0" * 64), seed=99, psi=-0.5, cutoff=3,
                       noise_mode="random", noise_seed=4, sources=(Source(seed=8),),
                       rows=(0, 1, 0, 1, 0, 1, 0, 1), flow=ModelRef(path="/f.pt"), flow_layout=STYLEFLOW,
                       edits=(AttributeEdit("attribute", "age", 40.0),), flow_fast=False, locks=("glasses",),
                       base=Source.from_latent(np.ones((8, 10), np.float32), name="me.jpg"),
                       noise_maps=NoiseMaps.from_arrays([np.zeros((4, 4), np.float32)]),
                       photo=PhotoRef("/me.jpg", "ab" * 32, ((0, 0), (0, 9), (9, 9), (9, 0)), 32),
                       translation=Translation(ModelRef("/toon.pt"), depth=8), attribute_source="flow",
                       encoder=ModelRef("/e4e.pt"), tuning=ModelRef("/tuning.pt"), edit_method="flow")
    assert all(getattr(target, f) != getattr(tiny_state, f) for f in target.__dataclass_fields__)
    seen = []
    doc.changed.connect(lambda state, fields: seen.append(fields))
    restore_snapshot(doc, target)
    assert doc.state == target
    assert doc.undo_stack.count() == 1 and doc.undo_stack.undoText() == "Restore snapshot"
    assert seen == [frozenset(target.__dataclass_fields__)]
    doc.undo_stack.undo()
    assert doc.state == tiny_state
    doc.undo_stack.redo()
    assert doc.state == target
