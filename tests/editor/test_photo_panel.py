"""Photo panel: open → detect → invert is one undo step; pick a crop box; stop, cancel, refine (keeping the edits);
the PSNR/SSIM readout after undo, cancel and reopening; nothing else starts while an inversion runs; show in photo."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import Qt

from editor.controllers.document import Document
from editor.controllers.projects import ProjectController
from editor.panels.photo_panel import INVERT_SLOT, SCAN_SLOT, PhotoPanel
from engine.algorithms.flow_edit import AttributeEdit
from engine.jobs.photo import ReconstructionJob
from engine.project import ModelRef, Source, save_project
from engine.worker import InlineContext

DATA = Path(__file__).resolve().parents[1] / "data"
ASTRONAUT = DATA / "astronaut_face.png"


@pytest.fixture
def panel(qtbot, tiny_state, bridge):
    doc = Document(tiny_state)
    p = PhotoPanel(doc, bridge)
    qtbot.addWidget(p)
    p.steps.setValue(20)
    p.method.setCurrentText("Optimiser only")
    set_tuning(p, "off")
    return p


def set_tuning(panel, key: str) -> None:
    panel.tuning.setCurrentIndex(panel.tuning.findData(key))
    assert panel.tuning.currentData() == key


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
    with qtbot.waitSignal(panel.message, timeout=30000, check_params_cb=lambda m: "cancelled" in m):
        panel.cancel_button.click()
    assert doc.state == kept and doc.undo_stack.count() == 1 and panel.refine_button.isEnabled()
    assert readout(kept) in panel.quality.text()  # the kept result's numbers again, not the cancelled run's


def readout(state) -> str:
    """The PSNR / SSIM of ``state``'s photo latent, measured by the engine, as the panel writes them."""
    rec = ReconstructionJob(state)(InlineContext(device=torch.device("cpu")))
    return f"PSNR {rec.psnr:.1f} dB · SSIM {rec.ssim:.3f}"


def invert_photo(qtbot, panel, path=ASTRONAUT):
    panel.open_path(str(path))
    qtbot.waitUntil(lambda: panel._doc.state.photo is not None and not panel.running(), timeout=60000)


def test_refine_keeps_the_edits_never_ends_worse_and_says_what_it_did(qtbot, panel, tiny_flow_path):
    doc = panel._doc
    invert_photo(qtbot, panel)
    start = panel.last_outcome.psnr
    doc.edit("Mix", sources=(Source(seed=5),), rows=(0,) * 4 + (1,) * 4)
    doc.edit("Age", flow=ModelRef(str(tiny_flow_path)), edits=(AttributeEdit("attribute", "age", 1.5),))
    edited = doc.state
    panel.steps.setValue(10)
    with qtbot.waitSignal(panel.message, timeout=60000, check_params_cb=lambda m: "efine" in m) as got:
        panel.refine_button.click()
    out, st = panel.last_outcome, doc.state
    assert out.refine and out.psnr >= start
    assert (st.sources, st.rows, st.edits, st.flow, st.photo) == (edited.sources, edited.rows, edited.edits,
                                                                 edited.flow, edited.photo)
    text = got.args[0]
    assert f"{start:.1f}" in text and "1 attribute edit" in text and "style mixing" in text and "kept" in text
    if out.kept_step > 0:
        assert f"→ {out.psnr:.1f} dB" in text and doc.undo_stack.undoText().startswith("Refine")
        assert st.base != edited.base
    else:
        assert "no better" in text and st == edited
    assert readout(st) in panel.quality.text()


def test_the_readout_always_describes_the_current_photo_latent(qtbot, panel):
    doc = panel._doc
    invert_photo(qtbot, panel)
    first = doc.state
    assert readout(first) in panel.quality.text()
    panel.steps.setValue(40)
    panel.refine_button.click()
    qtbot.waitUntil(lambda: not panel.running(), timeout=60000)
    second = doc.state
    assert second.base != first.base and readout(second) != readout(first)
    assert readout(second) in panel.quality.text()
    doc.undo_stack.undo()  # back to the first inversion
    qtbot.waitUntil(lambda: readout(first) in panel.quality.text(), timeout=30000)
    doc.undo_stack.undo()  # no photo
    assert panel.quality.text() == ""
    doc.undo_stack.redo()
    qtbot.waitUntil(lambda: readout(first) in panel.quality.text(), timeout=30000)
    doc.undo_stack.redo()
    qtbot.waitUntil(lambda: readout(second) in panel.quality.text(), timeout=30000)


def test_a_reopened_project_shows_its_photo_and_a_missing_photo_says_so(qtbot, panel, tiny_state, bridge, tmp_path):
    photo = tmp_path / "me.png"
    shutil.copy(ASTRONAUT, photo)
    invert_photo(qtbot, panel, photo)
    saved, outcome = panel._doc.state, panel.last_outcome
    project = save_project(tmp_path / "me.fproj", saved)

    def reopen():
        doc = Document(tiny_state)
        p = PhotoPanel(doc, bridge)
        qtbot.addWidget(p)
        p.method.setCurrentText("Optimiser only")
        p.steps.setValue(10)
        set_tuning(p, "off")
        assert ProjectController(doc, None, autosave_path=tmp_path / "auto.fproj").open_file(project, confirm=False)
        return doc, p

    doc, again = reopen()
    qtbot.waitUntil(lambda: "PSNR" in again.quality.text(), timeout=30000)
    assert f"PSNR {outcome.psnr:.1f} dB · SSIM {outcome.ssim:.3f}" in again.quality.text()
    assert not again.recon_view.pixmap().isNull() and not again.target_view.pixmap().isNull()
    assert again.invert_button.isEnabled() and again.refine_button.isEnabled() and "me.png" in again.info.text()
    again.invert_button.click()  # inverts the project's photo again, from its stored alignment
    qtbot.waitUntil(lambda: doc.undo_stack.count() == 1 and not again.running(), timeout=60000)
    assert doc.state.photo == saved.photo and doc.state.base != saved.base
    again.choose_button.click()  # the project's photo is read, then its faces offered
    qtbot.waitUntil(lambda: again.picker is not None and again.picker.isVisible(), timeout=30000)
    again.picker.reject()

    photo.unlink()
    doc, missing = reopen()
    qtbot.waitUntil(lambda: "no longer at" in missing.info.text(), timeout=30000)
    assert "me.png" in missing.info.text() and "PSNR" not in missing.quality.text()
    assert not missing.invert_button.isEnabled() and not missing.refine_button.isEnabled()


def test_nothing_else_starts_while_an_inversion_runs(qtbot, panel, tmp_path):
    messages = []
    panel.message.connect(messages.append)
    panel.steps.setValue(3000)
    running = []
    panel.runningChanged.connect(running.append)
    panel.open_path(str(ASTRONAUT))
    qtbot.waitUntil(lambda: "/3000 ·" in panel.quality.text(), timeout=60000)
    assert running == [True] and "Esc" in messages[-1]  # the status bar says how to cancel
    inverting = panel._invert_request
    assert inverting is not None and panel._bridge.newest(SCAN_SLOT) is None  # the scan has ended
    other = tmp_path / "other.png"
    shutil.copy(ASTRONAUT, other)
    panel.open_path(str(other))
    assert "inversion is running" in messages[-1]
    panel.start_inversion()
    assert "inversion is running" in messages[-1] and panel._invert_request is inverting
    assert panel._bridge.newest(SCAN_SLOT) is None and panel._bridge.newest(INVERT_SLOT) is inverting  # none sent
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.running(), timeout=30000)
    assert running == [True, False] and panel._doc.state.photo is None


def test_a_broken_photo_is_reported(qtbot, panel, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with qtbot.waitSignal(panel.failed, timeout=30000) as got:
        panel.open_path(str(bad))
    assert "broken.jpg" in got.args[0].message and panel._doc.state.photo is None


def test_export_photo_writes_the_whole_photo_with_the_edit(qtbot, panel, tmp_path):
    from editor.controllers.exporting import ExportController
    from engine.files.images import read_png_parameters
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


def test_keep_the_person_tunes_after_the_inversion_as_a_second_undo_step(qtbot, panel, tmp_path, monkeypatch):
    from engine import TuneSettings

    monkeypatch.setenv("FACE_EDITOR_TUNING_DIR", str(tmp_path / "tunings"))
    panel.tune_settings = TuneSettings(steps=15, seconds=None)
    set_tuning(panel, "person")
    assert "tune the generator" in panel.tuning.itemData(panel.tuning.currentIndex(), Qt.ItemDataRole.ToolTipRole)
    doc = panel._doc
    panel.open_path(str(ASTRONAUT))
    qtbot.waitUntil(lambda: doc.state.tuning is not None and not panel.running(), timeout=90000)
    st = doc.state
    assert Path(st.tuning.path).parent == tmp_path / "tunings"
    assert doc.undo_stack.count() == 2 and doc.undo_stack.undoText().startswith("Keep the person")
    assert "person kept" in panel.quality.text() and readout(st) in panel.quality.text()
    with qtbot.waitSignal(panel.pasted, timeout=30000) as got:
        panel.in_photo.setChecked(True)
    assert got.args[0].shape == np.asarray(Image.open(ASTRONAUT).convert("RGB")).shape
    doc.undo_stack.undo()  # the inversion alone again, its own readout
    assert doc.state.tuning is None and doc.state.base == st.base
    qtbot.waitUntil(lambda: readout(doc.state) in panel.quality.text(), timeout=30000)
    doc.undo_stack.redo()
    set_tuning(panel, "off")
    panel.steps.setValue(10)
    with qtbot.waitSignal(panel.message, timeout=60000, check_params_cb=lambda m: "efine" in m):
        panel.refine_button.click()
    assert doc.state.tuning is None or doc.state == st  # a refined latent drops the tuning made for the old one


def test_a_new_panel_fits_briefly_then_tunes_for_the_rest_of_the_round_trips_time(qtbot, tiny_state, bridge,
                                                                                 tmp_path, monkeypatch):
    from engine import PHOTO_STEPS, TUNINGS, quick_tuning

    monkeypatch.setenv("FACE_EDITOR_TUNING_DIR", str(tmp_path / "tunings"))
    doc = Document(tiny_state)
    panel = PhotoPanel(doc, bridge)
    qtbot.addWidget(panel)
    assert panel.tuning.currentData() == "quick" and panel.steps.value() == PHOTO_STEPS
    assert [panel.tuning.itemData(i) for i in range(panel.tuning.count())] == list(TUNINGS)
    panel.steps.setValue(10)  # a short fit: the tuning then has most of the budget (and stops at its steps first)
    panel.method.setCurrentText("Optimiser only")
    asked = []
    start = panel.start_tuning
    monkeypatch.setattr(panel, "start_tuning", lambda settings=None: (asked.append(settings), start(settings)))
    panel.open_path(str(ASTRONAUT))
    qtbot.waitUntil(lambda: doc.state.tuning is not None and not panel.running(), timeout=90000)
    assert len(asked) == 1 and asked[0] == quick_tuning(panel.last_outcome.seconds)
    assert doc.undo_stack.count() == 2 and doc.undo_stack.undoText().startswith("Keep the person")
    tuned = doc.state
    panel.refine_button.click()  # a refined latent is tuned again: the tuning made for the old one would not fit it
    qtbot.waitUntil(lambda: len(asked) == 2 and doc.state.tuning is not None and not panel.running(), timeout=90000)
    refine = panel.last_outcome
    assert refine.refine and refine.kept_step > 0 and asked[1] == quick_tuning(refine.seconds)
    assert doc.state.base != tuned.base and doc.state.tuning != tuned.tuning
    assert doc.undo_stack.count() == 4 and doc.undo_stack.undoText().startswith("Keep the person")
