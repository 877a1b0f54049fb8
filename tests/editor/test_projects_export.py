"""Project files (save / open / atomic writes / autosave and recovery) and exports (image, latent, batch) through
the controllers the main window wires to its File menu. Dialogs are monkeypatched so nothing blocks."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox, QPushButton

from editor.controllers.document import Document
from editor.controllers.exporting import BatchExportDialog, ExportController
from editor.controllers.projects import SAVE_FILTER, ProjectController
from engine.files.images import read_png_parameters
from engine.files.storage import file_sha256
from engine.jobs.render import RenderResult, load_model, render_state, state_ws, summarize
from engine.project import PROJECT_FORMAT, EditState, ModelRef, Source, read_project
from tests.fakes import TINY_CFG, as_exported

WAIT_MS = 30000


class Dialogs:
    """Records the message boxes shown; ``answer`` is what ``QMessageBox.question`` returns."""

    def __init__(self):
        self.shown: list[tuple[str, str, str]] = []  # (kind, title, text)
        self.answer = QMessageBox.StandardButton.Cancel

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.shown]

    def record(self, kind: str):
        def show(_parent, title, text, *_args):
            self.shown.append((kind, title, text))
            return self.answer if kind == "question" else QMessageBox.StandardButton.Ok
        return show


@pytest.fixture(autouse=True)
def dialogs(monkeypatch) -> Dialogs:
    d = Dialogs()
    for kind in ("critical", "warning", "information", "question"):
        monkeypatch.setattr(QMessageBox, kind, d.record(kind))
    kinds = {QMessageBox.Icon.Critical: "critical", QMessageBox.Icon.Warning: "warning"}
    monkeypatch.setattr(QMessageBox, "exec", lambda box: d.record(kinds.get(box.icon(), "information"))(
        box.parent(), box.windowTitle(), box.text()) and 0)  # the error boxes with details (editor.dialogs.error_box)

    def no_file_dialog(*_args):
        raise AssertionError("a file dialog was opened that the test did not expect")
    for name in ("getSaveFileName", "getOpenFileName", "getExistingDirectory"):
        monkeypatch.setattr(QFileDialog, name, no_file_dialog)
    return d


def mixed_state(state: EditState) -> EditState:
    """Every kind of parameter: a seed source and a latent source on some W+ rows, truncation cutoff, seeded noise."""
    latent = np.random.default_rng(5).standard_normal((8, 10)).astype(np.float32)  # W+ [num_ws, w_dim]
    return state.replace(seed=17, psi=0.55, cutoff=4, noise_mode="random", noise_seed=1234,
                         sources=(Source(seed=11), Source.from_latent(latent, name="projected")),
                         rows=(0, 0, 1, 1, 2, 2, 0, 1))


def loaded_summary(model_path):
    """What the model panel puts on the document once the model is loaded (the sha256 known)."""
    ref = ModelRef(path=str(model_path.resolve()), sha256=file_sha256(model_path))
    return summarize(load_model(ref), ref)


def read_image(path) -> np.ndarray:
    """An exported file's pixels, uint8 [H, W, 3]."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def render(state: EditState) -> np.ndarray:
    return render_state(load_model(state.model), state)  # uint8 [H, W, 3]


# -- projects -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["plain", "mixed"])
def test_save_then_open_reproduces_the_image_bit_for_bit(qtbot, tmp_path, tiny_state, tiny_model_path, monkeypatch,
                                                         kind):
    state = mixed_state(tiny_state) if kind == "mixed" else tiny_state
    expected = render(state)
    doc = Document(state.replace(seed=state.seed + 1))
    doc.set_summary(loaded_summary(tiny_model_path))
    doc.edit("Seed", seed=state.seed)  # an unsaved change
    ctrl = ProjectController(doc, None, autosave_path=tmp_path / "auto.fproj")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_: (str(tmp_path / "face"), SAVE_FILTER))
    with qtbot.waitSignal(ctrl.titleChanged) as title:
        assert ctrl.save()
    path = tmp_path / "face.fproj"
    assert ctrl.path == path.resolve() and title.args == ["face.fproj[*] — Face Editor"]
    assert doc.undo_stack.isClean()
    saved = json.loads(path.read_text())["state"]["model"]
    assert saved == {"path": os.path.relpath(tiny_model_path.resolve(), tmp_path.resolve()),  # relative to the project
                     "sha256": file_sha256(tiny_model_path)}

    doc2 = Document()
    ctrl2 = ProjectController(doc2, None, autosave_path=tmp_path / "auto2.fproj")
    assert ctrl2.title() == "Untitled[*] — Face Editor"
    assert ctrl2.open_file(path)
    assert doc2.state == state.replace(model=ModelRef(path=str(tiny_model_path.resolve()),
                                                      sha256=file_sha256(tiny_model_path)))
    assert doc2.undo_stack.isClean() and ctrl2.title() == "face.fproj[*] — Face Editor"
    assert np.array_equal(render(doc2.state), expected)


def test_saving_is_atomic_and_a_failed_write_keeps_the_old_file(tmp_path, tiny_state, dialogs, monkeypatch):
    doc = Document(tiny_state)
    ctrl = ProjectController(doc, None, autosave_path=tmp_path / "auto" / "auto.fproj")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_: (str(tmp_path / "p.fproj"), SAVE_FILTER))
    assert ctrl.save_as()
    doc.edit("Seed", seed=5)
    assert ctrl.save()  # to the same path, no dialog
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.fproj"]
    before = (tmp_path / "p.fproj").read_bytes()
    assert read_project(tmp_path / "p.fproj")[0].seed == 5

    doc.edit("Seed", seed=6)

    def full_disk(*_args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", full_disk)
    assert not ctrl.save()
    assert dialogs.kinds() == ["critical"] and "No space left" in dialogs.shown[0][2]
    assert (tmp_path / "p.fproj").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.fproj"]  # the temporary file is gone too
    assert not doc.undo_stack.isClean()


@pytest.mark.parametrize("content", [
    "this is not JSON {",
    "[1, 2, 3]",
    json.dumps({"format": "some-other-app", "format_version": 1, "state": {}}),
    json.dumps({"format": PROJECT_FORMAT, "format_version": 99, "state": {"seed": 1, "psi": 0.5}}),
    json.dumps({"format": PROJECT_FORMAT, "format_version": 1, "state": {"seed": "seven", "psi": 0.5}}),
    None,  # no file at all
])
def test_a_bad_project_file_shows_an_error_and_leaves_the_document_alone(tmp_path, tiny_state, dialogs, content):
    path = tmp_path / "bad.fproj"
    if content is not None:
        path.write_text(content)
    doc = Document(tiny_state)
    doc.edit("Seed", seed=8)
    ctrl = ProjectController(doc, None, autosave_path=tmp_path / "auto.fproj")
    assert not ctrl.open_file(path)
    assert dialogs.kinds() == ["critical"] and dialogs.shown[0][2]
    assert doc.state == tiny_state.replace(seed=8) and doc.undo_stack.count() == 1 and ctrl.path is None


@pytest.mark.parametrize("answer, proceeds, saved", [("Cancel", False, False), ("Discard", True, False),
                                                      ("Save", True, True)])
def test_maybe_save_asks_only_with_unsaved_changes(tmp_path, tiny_state, dialogs, monkeypatch, answer, proceeds, saved):
    doc = Document(tiny_state)
    ctrl = ProjectController(doc, None, autosave_path=tmp_path / "auto.fproj")
    assert ctrl.maybe_save() and dialogs.shown == []
    doc.edit("Seed", seed=4)
    dialogs.answer = getattr(QMessageBox.StandardButton, answer)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_: (str(tmp_path / "m.fproj"), SAVE_FILTER))
    assert ctrl.maybe_save() is proceeds
    assert dialogs.kinds() == ["question"]
    assert (tmp_path / "m.fproj").exists() is saved


def test_autosave_after_an_edit_is_recovered_by_the_next_session(qtbot, tmp_path, tiny_state, dialogs):
    auto = tmp_path / "app" / "autosave.fproj"
    doc = Document(tiny_state)
    ctrl = ProjectController(doc, None, autosave_path=auto, autosave_delay_ms=50)
    qtbot.wait(150)
    assert not auto.exists()  # nothing unsaved yet
    doc.edit("Seed", seed=21)
    doc.edit("Truncation", psi=0.4)
    qtbot.waitUntil(auto.exists)
    assert read_project(auto)[0] == ctrl.state_to_save() and ctrl.state_to_save().seed == 21

    doc2 = Document()  # the next start
    ctrl2 = ProjectController(doc2, None, autosave_path=auto, autosave_delay_ms=50)
    assert ctrl2.recoverable() == ctrl.state_to_save()
    dialogs.answer = QMessageBox.StandardButton.Yes
    assert ctrl2.offer_recovery()
    assert "Recover the unsaved edit" in dialogs.shown[-1][2]
    assert doc2.state == ctrl.state_to_save() and not doc2.undo_stack.isClean()
    ctrl2.discard_autosave()
    assert not auto.exists() and ctrl2.recoverable() is None


def test_autosave_goes_away_when_the_edit_is_saved_undone_or_recovery_declined(qtbot, tmp_path, tiny_state, dialogs,
                                                                                monkeypatch):
    auto = tmp_path / "autosave.fproj"
    doc = Document(tiny_state)
    ctrl = ProjectController(doc, None, autosave_path=auto, autosave_delay_ms=50)
    doc.edit("Seed", seed=30)
    qtbot.waitUntil(auto.exists)
    doc.undo_stack.undo()  # back to the saved state: nothing to recover
    qtbot.waitUntil(lambda: not auto.exists())

    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_: (str(tmp_path / "s.fproj"), SAVE_FILTER))
    assert ctrl.save()
    doc.edit("Seed", seed=31)
    qtbot.waitUntil(auto.exists)
    assert read_project(auto)[1]["project_path"] == str((tmp_path / "s.fproj").resolve())
    dialogs.answer = QMessageBox.StandardButton.Yes
    doc2 = Document()
    ctrl2 = ProjectController(doc2, None, autosave_path=auto)
    assert ctrl2.offer_recovery() and ctrl2.path == (tmp_path / "s.fproj").resolve()  # saves go to the project

    assert ctrl.save()
    assert not auto.exists()
    doc.edit("Seed", seed=32)
    qtbot.waitUntil(auto.exists)
    dialogs.answer = QMessageBox.StandardButton.No
    assert not ProjectController(Document(), None, autosave_path=auto).offer_recovery()
    assert not auto.exists()


# -- exports --------------------------------------------------------------------------------------------------------
def exporter(doc, bridge, frame=None) -> ExportController:
    return ExportController(doc, bridge, None, current_image=lambda: frame)


def wait_message(qtbot, ctrl, start: str):
    return qtbot.waitSignal(ctrl.message, timeout=WAIT_MS, check_params_cb=lambda text: text.startswith(start))


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_export_image_writes_full_resolution_files(qtbot, tmp_path, tiny_state, bridge, suffix):
    state = mixed_state(tiny_state)
    doc = Document(state)
    ctrl = exporter(doc, bridge)
    path = tmp_path / f"face{suffix}"
    with wait_message(qtbot, ctrl, "Exported the image"):
        assert ctrl.export_image(path) is not None
    with Image.open(path) as im:
        assert im.size == (32, 32) and im.format == {".png": "PNG", ".jpg": "JPEG", ".webp": "WEBP"}[suffix]
        pixels = np.asarray(im.convert("RGB"))
    if suffix == ".png":
        assert np.array_equal(pixels, render(state))
        assert EditState.from_dict(read_png_parameters(path)["state"]) == as_exported(doc.state)
    assert not ctrl.busy


def test_export_image_writes_the_preview_frame_only_when_it_is_the_full_current_image(qtbot, tmp_path, tiny_state,
                                                                                       bridge):
    doc = Document(tiny_state)
    blank = np.zeros((32, 32, 3), np.uint8)  # not what the model renders: shows which image was written
    cases = {"current": (RenderResult(tiny_state, blank, True, 1.0, "cpu"), blank),
             "stale": (RenderResult(tiny_state.replace(seed=99), blank, True, 1.0, "cpu"), render(tiny_state)),
             "preview": (RenderResult(tiny_state, blank[:16, :16], False, 1.0, "cpu"), render(tiny_state))}
    for name, (frame, expected) in cases.items():
        ctrl = exporter(doc, bridge, frame)
        with wait_message(qtbot, ctrl, "Exported the image"):
            ctrl.export_image(tmp_path / f"{name}.png")
        assert np.array_equal(read_image(tmp_path / f"{name}.png"), expected), name


def test_export_image_dialog_adds_the_chosen_format(qtbot, tmp_path, tiny_state, bridge, monkeypatch):
    ctrl = exporter(Document(tiny_state), bridge)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_: (str(tmp_path / "face"), "WebP image (*.webp)"))
    with wait_message(qtbot, ctrl, "Exported the image"):
        ctrl.export_image()
    assert read_image(tmp_path / "face.webp").shape == (32, 32, 3)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_: ("", ""))
    assert ctrl.export_image() is None  # dialog cancelled
    assert ctrl.export_image(False) is None  # a menu action's triggered(checked) asks too


def test_export_errors_are_shown(qtbot, tmp_path, tiny_state, bridge, dialogs):
    ctrl = exporter(Document(tiny_state), bridge)
    assert ctrl.export_image(tmp_path / "face.gif") is None
    assert ctrl.export_latent(tmp_path / "face.txt") is None
    assert dialogs.kinds() == ["warning", "warning"]

    gone = Document(tiny_state.replace(model=ModelRef(path=str(tmp_path / "deleted.pt"))))
    ctrl = exporter(gone, bridge)
    ctrl.export_image(tmp_path / "face.png")
    qtbot.waitUntil(lambda: len(dialogs.shown) == 3, timeout=WAIT_MS)
    assert dialogs.shown[-1][0] == "critical" and "does not exist" in dialogs.shown[-1][2]
    assert not (tmp_path / "face.png").exists() and not ctrl.busy


@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_export_latent_round_trips_to_the_engine_latent(qtbot, tmp_path, tiny_state, bridge, suffix):
    state = mixed_state(tiny_state)
    ctrl = exporter(Document(state), bridge)
    path = tmp_path / f"latent{suffix}"
    with wait_message(qtbot, ctrl, "Exported the latent [8 × 10]"):
        ctrl.export_latent(path)
    saved = np.load(path) if suffix == ".npy" else torch.load(path, weights_only=True).numpy()
    expected = state_ws(load_model(state.model), state)[0].numpy()  # [num_ws, w_dim]
    assert saved.dtype == np.float32 and np.array_equal(saved, expected)


def test_batch_export_writes_one_file_per_seed(qtbot, tmp_path, tiny_state, bridge):
    state = mixed_state(tiny_state)
    ctrl = exporter(Document(state), bridge)
    folder = tmp_path / "batch"
    with wait_message(qtbot, ctrl, "Batch export: wrote 4 images"):
        assert ctrl.batch_export(folder, "0-3") is not None
        assert ctrl.progress_dialog is not None
    assert sorted(p.name for p in folder.iterdir()) == [f"seed0000{i}.png" for i in range(4)]
    for seed in range(4):
        assert read_image(folder / f"seed0000{seed}.png").shape == (32, 32, 3)
        assert EditState.from_dict(read_png_parameters(folder / f"seed0000{seed}.png")["state"]).seed == seed
    assert np.array_equal(read_image(folder / "seed00002.png"), render(state.replace(seed=2)))
    assert ctrl.progress_dialog is None and not ctrl.busy


def test_batch_export_dialog_and_overwrite_question(qtbot, tmp_path, tiny_state, bridge, dialogs, monkeypatch):
    folder = tmp_path / "out"

    def fill_and_accept(dialog):
        dialog.seeds_edit.setText("5, 7-8")
        dialog.folder_edit.setText(str(folder))
        dialog.format_combo.setCurrentIndex(dialog.format_combo.findData(".jpg"))
        dialog.accept()
        return dialog.result()
    monkeypatch.setattr(BatchExportDialog, "exec", fill_and_accept)
    ctrl = exporter(Document(tiny_state), bridge)
    with wait_message(qtbot, ctrl, "Batch export: wrote 3 images"):
        ctrl.batch_export()
    assert sorted(p.name for p in folder.iterdir()) == ["seed00005.jpg", "seed00007.jpg", "seed00008.jpg"]
    assert read_image(folder / "seed00007.jpg").shape == (32, 32, 3)

    dialogs.answer = QMessageBox.StandardButton.No
    assert ctrl.batch_export(folder, [7, 9], ext=".jpg") is None  # would overwrite seed00007.jpg
    assert dialogs.kinds() == ["question"] and "1 of the 2 files" in dialogs.shown[0][2]
    assert ctrl.batch_export(folder, "9-", ext=".jpg") is None
    assert dialogs.kinds() == ["question", "warning"]


def photo_state(state: EditState) -> EditState:
    """A face inverted from a photo (its latent, noise maps and photo) with mixing and truncation on top."""
    from engine.project import NoiseMaps, PhotoRef

    rng = np.random.default_rng(3)
    noise = NoiseMaps.from_arrays([rng.standard_normal((r, r)).astype(np.float32) for r in TINY_CFG.noise_resolutions])
    return mixed_state(state).replace(
        base=Source.from_latent(rng.standard_normal((TINY_CFG.num_ws, TINY_CFG.w_dim)).astype(np.float32),
                                name="me.png"), noise_maps=noise,
        photo=PhotoRef("/photos/me.png", "0" * 64, ((0, 0), (0, 32), (32, 32), (32, 0)), 32))


def test_batch_export_of_a_photo_writes_each_seeds_own_face_with_the_edits(qtbot, tmp_path, tiny_state, bridge,
                                                                         monkeypatch):
    state = photo_state(tiny_state)
    shown = []

    def accept(dialog):
        shown.append(dialog.source_note.text() if dialog.source_note.isVisibleTo(dialog) else "")
        dialog.seeds_edit.setText("0-2")
        dialog.folder_edit.setText(str(tmp_path / "batch"))
        dialog.accept()
        return dialog.result()
    monkeypatch.setattr(BatchExportDialog, "exec", accept)
    ctrl = exporter(Document(state), bridge)
    with wait_message(qtbot, ctrl, "Batch export: wrote 3 images") as got:
        ctrl.batch_export()
    assert "me.png" in shown[0] and "each seed's own face" in shown[0]  # the dialog says what it writes
    assert "not the photo" in got.args[0]
    images = [read_image(tmp_path / "batch" / f"seed0000{seed}.png") for seed in range(3)]
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])
    for seed, image in enumerate(images):
        expected = state.replace(seed=seed, base=None, noise_maps=None, photo=None)  # the seed, the same mixing
        np.testing.assert_array_equal(image, render(expected))
        saved = EditState.from_dict(read_png_parameters(tmp_path / "batch" / f"seed0000{seed}.png")["state"])
        assert saved == as_exported(expected)
    dialog = BatchExportDialog(None, folder=tmp_path)  # a generated face: no note
    qtbot.addWidget(dialog)
    assert not dialog.source_note.isVisibleTo(dialog)


def test_batch_dialog_refuses_unreadable_seeds(qtbot, tmp_path):
    dialog = BatchExportDialog(seeds="1-x", folder=tmp_path)
    qtbot.addWidget(dialog)
    dialog.accept()
    assert dialog.result() != QDialog.DialogCode.Accepted and not dialog.error_label.isHidden()
    assert "cannot read seeds" in dialog.error_label.text()
    dialog.seeds_edit.setText("0-3")
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.values() == ([0, 1, 2, 3], tmp_path, ".png")


def test_cancelling_a_batch_stops_early_and_says_how_far_it_got(qtbot, tmp_path, tiny_state, bridge):
    ctrl = exporter(Document(tiny_state), bridge)
    folder = tmp_path / "long"
    ctrl.batch_export(folder, "0-9999")
    qtbot.waitUntil(lambda: ctrl.progress_dialog.value() > 0, timeout=WAIT_MS)
    with wait_message(qtbot, ctrl, "Batch export cancelled") as blocker:
        ctrl.progress_dialog.findChild(QPushButton).click()  # the dialog's Cancel button
    written = int(re.search(r"wrote (\d+) of 10000", blocker.args[0]).group(1))
    assert 0 < written < 10000
    assert len(list(folder.iterdir())) == written
    assert ctrl.progress_dialog is None and not ctrl.busy
