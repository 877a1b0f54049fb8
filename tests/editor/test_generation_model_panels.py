"""Generation and model panels: controls edit the document through undo commands and follow it back."""
from __future__ import annotations

import numpy as np
import torch

from editor.controllers.document import Document
from editor.controllers.settings import Settings
from editor.panels.generation_panel import GenerationPanel
from editor.panels.model_panel import ModelPanel
from engine.files.checkpoints import save_generator
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.project import EditState, NoiseMaps, PhotoRef, Source


def _panel(qtbot, state=None):
    doc = Document(state or EditState())
    panel = GenerationPanel(doc)
    qtbot.addWidget(panel)
    return doc, panel


def test_seed_controls_round_trip_through_undo(qtbot):
    doc, panel = _panel(qtbot)
    panel.seed.setValue(42)
    assert doc.state.seed == 42
    panel.next_seed.click()
    assert doc.state.seed == 43 and panel.seed.value() == 43
    panel.prev_seed.click()
    panel.prev_seed.click()
    assert doc.state.seed == 41
    panel.random_seed.click()
    assert doc.state.seed == panel.seed.value()
    for expected in (41, 42, 43, 42, 0):
        doc.undo_stack.undo()
        assert doc.state.seed == expected == panel.seed.value()
    doc.undo_stack.redo()
    assert panel.seed.value() == 42


def test_a_new_seed_leaves_a_photo_face_and_undo_brings_it_back(qtbot):
    photo = EditState(seed=7, base=Source.from_latent(np.zeros((4, 8), np.float32), name="me.jpg"),
                      noise_maps=NoiseMaps.from_arrays([np.zeros((4, 4), np.float32)]),
                      photo=PhotoRef("/me.jpg", "ab" * 32, ((0, 0), (0, 9), (9, 9), (9, 0)), 32))
    doc, panel = _panel(qtbot, photo)
    assert not panel.noise_mode.isEnabled()  # the photo's fitted noise is used
    panel.next_seed.click()
    assert doc.state == EditState(seed=8) and panel.noise_mode.isEnabled()
    doc.undo_stack.undo()
    assert doc.state == photo


def test_psi_drag_is_one_step_and_reports_dragging(qtbot):
    doc, panel = _panel(qtbot)
    drags = []
    panel.dragging.connect(drags.append)
    panel.psi.sliderPressed.emit()
    for v in (0.6, 0.5, 0.35):
        panel.psi.setValue(v)
    panel.psi.sliderReleased.emit()
    assert drags == [True, False]
    assert doc.state.psi == 0.35 and doc.undo_stack.count() == 1
    doc.undo_stack.undo()
    assert doc.state.psi == 0.7 and abs(panel.psi.value() - 0.7) < 1e-9


def test_cutoff_end_of_range_means_all_rows_and_noise_seed_follows_mode(qtbot):
    doc, panel = _panel(qtbot)
    top = panel.cutoff.maximum()
    panel.cutoff.setValue(0)
    assert doc.state.cutoff == 0
    panel.cutoff.setValue(top)
    assert doc.state.cutoff is None
    assert not panel.noise_seed.isEnabled()
    panel.noise_mode.setCurrentIndex(panel.noise_mode.findData("random"))
    assert doc.state.noise_mode == "random" and panel.noise_seed.isEnabled()
    panel.noise_seed.setValue(77)
    assert doc.state.noise_seed == 77
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert doc.state.noise_mode == "const" and panel.noise_mode.currentData() == "const"
    assert not panel.noise_seed.isEnabled()


def test_model_panel_opens_pins_and_undoes_a_model(qtbot, tmp_path, tiny_state, bridge):
    other = GeneratorConfig(img_resolution=16, channels=(8, 8, 8), z_dim=6, w_dim=6, mapping_layers=1)
    path_b = tmp_path / "other.pt"
    save_generator(path_b, Generator(other, seed=2))
    doc = Document(tiny_state.replace(rows=(0, 0, 0, 0, 0, 0, 0, 0), cutoff=7))
    settings = Settings(tmp_path / "settings.ini")
    panel = ModelPanel(doc, bridge, settings)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(doc.modelLoaded, timeout=20000):
        panel.load_current()
    assert doc.summary.num_ws == 8 and doc.summary.row_resolutions == (4, 4, 8, 8, 16, 16, 32, 32)
    with qtbot.waitSignal(doc.modelLoaded, timeout=20000):
        panel.open_path(path_b)
    st = doc.state
    assert st.model.path == str(path_b.resolve()) and len(st.model.sha256) == 64
    assert doc.summary.num_ws == 6 and st.rows == () and st.cutoff == 6
    assert "16×16" in panel.info.text()
    assert settings.recent("models") == [str(path_b.resolve())]
    with qtbot.waitSignal(doc.modelLoaded, timeout=20000):
        doc.undo_stack.undo()
    assert doc.state == tiny_state.replace(rows=(0,) * 8, cutoff=7) and doc.summary.num_ws == 8


def test_model_panel_reports_a_broken_file_and_keeps_the_model(qtbot, tmp_path, tiny_state, bridge):
    bad = tmp_path / "bad.pt"
    torch.save({"something": torch.zeros(2)}, bad)
    doc = Document(tiny_state)
    panel = ModelPanel(doc, bridge, Settings(tmp_path / "s.ini"))
    qtbot.addWidget(panel)
    with qtbot.waitSignal(doc.modelLoaded, timeout=20000):
        panel.load_current()
    with qtbot.waitSignal(panel.failed, timeout=20000) as blocker:
        panel.open_path(bad)
    assert blocker.args[0].message.startswith("Could not load the model.")
    assert doc.state == tiny_state and doc.undo_stack.count() == 0
    with qtbot.waitSignal(panel.failed, timeout=5000):
        panel.open_path(tmp_path / "missing.pt")


def test_preferences_store_device_and_preview_resolution(qtbot, tmp_path):
    from editor.dialogs.preferences import PreferencesDialog

    settings = Settings(tmp_path / "p.ini")
    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    dialog.device.setCurrentIndex(dialog.device.findText("cpu"))
    dialog.preview.setCurrentIndex(dialog.preview.findData(128))
    dialog.lpips.setText(" /weights/vgg16-397923af.pth ")
    assert dialog.apply() == 128
    again = Settings(tmp_path / "p.ini")
    assert (again.device, again.preview_limit, again.lpips_path) == ("cpu", 128, "/weights/vgg16-397923af.pth")

    from editor.panels.photo_panel import PhotoPanel

    panel = PhotoPanel(Document(EditState()), _Bridge(), again)
    qtbot.addWidget(panel)
    chosen = panel.settings()
    assert (chosen.loss, chosen.lpips_path, chosen.steps) == ("lpips", "/weights/vgg16-397923af.pth",
                                                              panel.steps.value())
    again.lpips_path = ""
    assert panel.settings().loss == "ms-ssim"



def test_preferences_refuse_a_device_this_machine_cannot_open_and_keep_the_old_one(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QDialog, QMessageBox

    from editor.dialogs.preferences import PreferencesDialog

    Settings(tmp_path / "p.ini").device = "cpu"
    settings = Settings(tmp_path / "p.ini")
    dialog = PreferencesDialog(settings)
    qtbot.addWidget(dialog)
    shown = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: shown.append(box.text()) or 0)
    dialog.show()
    dialog.device.setEditText("cdua")  # typed: any torch device name can be given, and is checked
    dialog.accept()
    assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
    assert len(shown) == 1 and "'cdua'" in shown[0] and "auto, cpu" in shown[0] and "Error" not in shown[0]
    assert Settings(tmp_path / "p.ini").device == "cpu"
    dialog.device.setEditText("cpu")
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted and len(shown) == 1
    dialog.apply()
    assert Settings(tmp_path / "p.ini").device == "cpu"

class _Bridge:
    """A bridge without a worker, for widgets that submit nothing in the test."""

    def submit(self, job, *, slot: str = "render"):
        raise AssertionError(f"no job expected, got {job!r} in slot {slot!r}")


def test_every_registered_icon_resolves(qtbot):
    from editor.widgets.icons import ICONS, icon

    for name in ICONS:
        assert not icon(name).isNull(), name


def test_the_seed_box_holds_every_seed_and_next_seed_adds_one(qtbot):
    doc, panel = _panel(qtbot, EditState(seed=3_000_000_000, noise_seed=2**32 - 1))
    assert panel.seed.value() == 3_000_000_000 and panel.noise_seed.value() == 2**32 - 1
    panel.next_seed.click()
    assert doc.state.seed == 3_000_000_001 == panel.seed.value()
    panel.seed.setValue(2**32 - 1)
    assert doc.state.seed == 2**32 - 1 and isinstance(doc.state.seed, int)
    panel.next_seed.click()
    assert doc.state.seed == 0  # wraps within [0, 2**32)
    panel.prev_seed.click()
    assert doc.state.seed == 2**32 - 1 == panel.seed.value()
