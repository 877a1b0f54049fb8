"""Photo panel: open → detect → invert is one undo step; pick a crop box; stop, cancel, refine; show in photo."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editor.document import Document
from editor.panels.photo_panel import PhotoPanel

DATA = Path(__file__).resolve().parents[1] / "data"
ASTRONAUT = DATA / "astronaut_face.png"


@pytest.fixture
def panel(qtbot, tiny_state, bridge):
    doc = Document(tiny_state)
    p = PhotoPanel(doc, bridge)
    qtbot.addWidget(p)
    p.steps.setValue(20)
    p.method.setCurrentText("Optimiser only")
    return p


def test_opening_a_photo_with_one_face_inverts_it_as_one_undo_step(qtbot, panel):
    doc = panel._doc
    before = doc.state
    with qtbot.waitSignal(panel.aligned, timeout=60000):
        panel.open_path(str(ASTRONAUT))
    qtbot.waitUntil(lambda: doc.state.photo is not None, timeout=60000)
    st = doc.state
    assert st.photo.name == ASTRONAUT.name and st.base is not None
    assert st.noise_maps is None  # the default inversion keeps the model's constant noise
    assert doc.undo_stack.count() == 1 and doc.undo_stack.undoText().startswith("Invert")
    assert "PSNR" in panel.quality.text() and not panel.recon_view.pixmap().isNull()
    assert panel.last_outcome.steps == 20 and panel.refine_button.isEnabled()
    assert not panel.stop_button.isVisible() and panel.invert_button.isEnabled()

    with qtbot.waitSignal(panel.pasted, timeout=30000) as got:
        panel.in_photo.setChecked(True)
    photo = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    assert got.args[0].shape == photo.shape

    doc.undo_stack.undo()
    assert doc.state == before and not panel.in_photo.isChecked() and not panel.in_photo.isEnabled()


def test_no_face_opens_the_picker_with_a_crop_box(qtbot, panel, tmp_path):
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((90, 120, 3), 128, np.uint8)).save(blank)
    panel.open_path(str(blank))
    qtbot.waitUntil(lambda: panel.picker is not None and panel.picker.isVisible(), timeout=30000)
    kind, box = panel.picker.choice
    assert kind == "box" and "no face" in panel.info.text()
    x0, y0, x1, y1 = box
    assert x1 - x0 == pytest.approx(y1 - y0) == pytest.approx(36.0)  # 0.4 of the short side, centred
    panel.picker.accept()
    qtbot.waitUntil(lambda: panel._doc.state.photo is not None, timeout=60000)
    assert panel._doc.state.photo.quad[0] == pytest.approx((x0, y0))


def test_stop_keeps_the_result_and_cancel_discards_it(qtbot, panel):
    doc = panel._doc
    panel.steps.setValue(3000)
    panel.open_path(str(ASTRONAUT))
    qtbot.waitUntil(lambda: "/3000 ·" in panel.quality.text(), timeout=60000)
    panel.stop_button.click()
    qtbot.waitUntil(lambda: doc.state.photo is not None, timeout=60000)
    assert panel.last_outcome.stopped and panel.last_outcome.steps < 3000
    assert "(stopped)" in panel.quality.text()

    kept = doc.state
    panel.start_inversion(refine=True)
    qtbot.waitUntil(lambda: panel.quality.text().startswith("step "), timeout=60000)
    panel.cancel_button.click()
    qtbot.waitUntil(lambda: "cancelled" in panel.quality.text(), timeout=30000)
    assert doc.state == kept and doc.undo_stack.count() == 1 and panel.refine_button.isEnabled()


def test_a_broken_photo_is_reported(qtbot, panel, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with qtbot.waitSignal(panel.failed, timeout=30000) as got:
        panel.open_path(str(bad))
    assert "broken.jpg" in got.args[0].message and panel._doc.state.photo is None


def test_export_photo_writes_the_whole_photo_with_the_edit(qtbot, panel, tmp_path):
    from editor.exporting import ExportController
    from engine.imageio import read_png_parameters
    from engine.project import EditState
    from tests.fakes import as_exported

    doc = panel._doc
    ctrl = ExportController(doc, panel._bridge, None, current_image=lambda: None)
    messages = []
    ctrl.message.connect(messages.append)
    assert ctrl.export_photo(tmp_path / "x.png") is None and "does not come from a photo" in messages[-1]
    panel.open_path(str(ASTRONAUT))
    qtbot.waitUntil(lambda: doc.state.photo is not None, timeout=60000)
    out = tmp_path / "edited.png"
    assert ctrl.export_photo(out) is not None
    qtbot.waitUntil(lambda: messages and messages[-1].startswith("Exported the photo"), timeout=30000)
    with Image.open(out) as im, Image.open(ASTRONAUT) as original:
        assert im.size == original.size
    assert EditState.from_dict(read_png_parameters(out)["state"]) == as_exported(doc.state)
