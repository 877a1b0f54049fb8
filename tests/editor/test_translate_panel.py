"""Translate panel: target, depth, blend, mode and style are document edits (a drag one undo step); the style grid
by seed; a reference image inverted in the target; the untranslated "before"; a folder batch; the model distance."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from editor.controllers.document import Document
from editor.panels import translate_panel as tp
from editor.panels.translate_panel import TranslatePanel
from engine.algorithms.projection import InversionSettings
from engine.files.checkpoints import save_generator
from engine.files.loading import load_generator
from engine.files.storage import file_sha256
from engine.jobs.photo import InvertJob, ScanJob
from engine.jobs.render import load_model, render_in_worker, render_state, summarize
from engine.jobs.translate import ShippedTarget
from engine.models.stylegan2 import Generator
from engine.photos.align import face_transform
from engine.project import EditState, ModelRef, Source, Translation
from engine.worker import InlineContext
from tests.fakes import fake_finetune

ASTRONAUT = Path(__file__).resolve().parents[1] / "data" / "astronaut_face.png"


@pytest.fixture(scope="module")
def target_path(tiny_model_path, tmp_path_factory):
    """A "fine-tuned" copy of the tiny generator: its synthesis weights moved, its mapping kept (FreezeFC)."""
    G = load_generator(tiny_model_path)
    T = fake_finetune(G)
    path = tmp_path_factory.mktemp("targets") / "toon.pt"
    save_generator(path, T)
    return path


@pytest.fixture
def panel(qtbot, tiny_state, bridge, target_path):
    doc = Document(tiny_state)
    doc.set_summary(summarize(load_model(tiny_state.model), tiny_state.model))
    shipped = [ShippedTarget("toon", ModelRef(str(target_path.resolve()), file_sha256(target_path)), None, {})]
    p = TranslatePanel(doc, bridge, shipped=shipped)
    qtbot.addWidget(p)
    p.inversion_steps = 5
    return p


def choose_toon(qtbot, panel) -> Translation:
    panel.target.setCurrentIndex(1)
    qtbot.waitUntil(lambda: panel._doc.state.translation is not None, timeout=30000)
    return panel._doc.state.translation


def test_every_setting_is_an_edit_a_drag_is_one_step_and_undo_restores_each(qtbot, panel):
    doc = panel._doc
    assert [panel.target.itemText(i) for i in (0, 1)] == ["Off", "Toon (shipped)"]
    assert panel.target.itemText(panel.target.count() - 1) == "Open target model…"
    assert panel.hint.isVisibleTo(panel) and not panel.body.isVisibleTo(panel)
    states = [doc.state]
    tr = choose_toon(qtbot, panel)
    assert tr == Translation(panel._shipped[0].ref, depth=16) and doc.undo_stack.count() == 1
    assert panel.body.isVisibleTo(panel) and not panel.hint.isVisibleTo(panel)
    assert panel.depth.maximum() == 3 and panel.depth_label.text() == "16 px"  # none, 8, 16, 32 (full)
    states.append(doc.state)

    panel.depth.sliderPressed.emit()
    for i in (1, 0, 3):
        panel.depth.setValue(i)
    panel.depth.sliderReleased.emit()
    assert doc.state.translation.depth == 32 and doc.undo_stack.count() == 2  # the whole drag: one step
    assert panel.depth_label.text() == "full (32 px)"
    states.append(doc.state)
    panel.blend.setValue(1.5)
    states.append(doc.state)
    panel.mode.setCurrentIndex(panel.mode.findData("weights"))
    states.append(doc.state)
    panel.style_psi.setValue(0.8)
    states.append(doc.state)
    assert doc.state.translation == Translation(tr.target, depth=32, blend=1.5, mode="weights", style_psi=0.8)
    panel.target.setCurrentIndex(0)
    assert doc.state.translation is None and not panel.body.isVisibleTo(panel)
    states.append(doc.state)
    assert doc.undo_stack.count() == len(states) - 1  # one undo step per edit
    for i in reversed(range(len(states))):  # undo walks back through every state, and the widgets follow
        doc.undo_stack.setIndex(i)
        assert doc.state == states[i]
        tr = states[i].translation
        assert panel.target.currentIndex() == (0 if tr is None else 1)
        if tr is not None:
            assert panel.blend.value() == pytest.approx(tr.blend) and panel.mode.currentData() == tr.mode
            assert panel.style_psi.value() == pytest.approx(tr.style_psi)
            assert panel.depth.value() == (0, 8, 16, 32).index(tr.depth)
    doc.undo_stack.setIndex(len(states) - 1)
    panel.act_toggle.trigger()  # T: back on with the last settings, then off again
    assert doc.state.translation == states[-2].translation and doc.undo_stack.undoText().startswith("Translate")
    panel.toggle()
    assert doc.state.translation is None
    panel.set_grid_shown(True)  # nothing to sample without a target
    assert not panel.sample_button.isChecked() and not panel.grid_panel.isVisible()


def test_style_grid_samples_are_reproducible_and_clicking_one_uses_its_seed(qtbot, panel, tmp_path):
    doc = panel._doc
    choose_toon(qtbot, panel)
    panel.grid_seed.setValue(10)
    panel.set_grid_shown(True)
    qtbot.waitUntil(lambda: panel.grid is not None and panel.grid.seeds[0] == 10, timeout=30000)
    grid = panel.grid
    assert grid.seeds == tuple(range(10, 10 + tp.GRID_N)) and all(not b.icon().isNull() for b in panel.samples)
    assert panel.style_psi.isEnabled()
    panel.samples[3].click()
    st = doc.state
    assert st.translation.style == Source(seed=13) and doc.undo_stack.undoText() == "Appearance: style seed 13"
    assert panel.samples[3].isChecked() and not panel.samples[2].isChecked()
    assert "seed 13" in panel.style_label.text()
    ctx = InlineContext(device=torch.device("cpu"))
    np.testing.assert_array_equal(grid.images[3], render_in_worker(ctx, st))  # what the canvas will show

    panel.grid_panel.next_page.click()
    qtbot.waitUntil(lambda: panel.grid.seeds[0] == 10 + tp.GRID_N, timeout=30000)
    assert not any(b.isChecked() for b in panel.samples)
    with qtbot.waitSignal(panel.message, timeout=30000, check_params_cb=lambda m: m.startswith("Wrote")):
        panel.export_samples(tmp_path / "samples")
    names = sorted(p.name for p in (tmp_path / "samples").iterdir())
    assert names == [f"style{s:05d}.png" for s in range(18, 18 + tp.GRID_N)]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "samples" / names[0]).convert("RGB")),
                                  panel.grid.images[0])
    panel.set_grid_shown(False)
    assert not panel.sample_button.isChecked()
    doc.undo_stack.undo()
    assert doc.state.translation.style is None and panel.own_button.isChecked()


def test_the_untranslated_face_and_the_distance_follow_the_translation(qtbot, panel):
    doc = panel._doc
    with qtbot.waitSignal(panel.source, timeout=30000) as got:
        choose_toon(qtbot, panel)
    np.testing.assert_array_equal(got.args[0], render_state(load_model(doc.state.model), doc.state))
    qtbot.waitUntil(lambda: panel.last_distance is not None, timeout=30000)
    assert panel.last_distance.distance > 0.05 and panel.last_distance.n == tp.DISTANCE_LATENTS
    assert panel.distance.text() == f"Distance to its base: {panel.last_distance.distance:.3f}"
    assert "latents" in panel.distance.toolTip()
    with qtbot.waitSignal(panel.source, timeout=5000) as got:
        panel.target.setCurrentIndex(0)
    assert got.args[0] is None


def test_another_architecture_is_refused_and_any_file_can_be_opened(qtbot, panel, tmp_path, target_path,
                                                                    monkeypatch):
    doc = panel._doc
    G = load_generator(target_path)
    other = tmp_path / "other.pt"
    save_generator(other, Generator(dataclasses.replace(G.cfg, channels=(8,) * len(G.cfg.channels)), seed=1))
    monkeypatch.setattr(tp.QFileDialog, "getOpenFileName", lambda *a, **k: (str(other), ""))
    with qtbot.waitSignal(panel.failed, timeout=30000) as got:
        panel.target.setCurrentIndex(panel.target.count() - 1)  # "Open target model…"
    assert "architecture" in got.args[0].message and doc.state.translation is None and panel.target.currentIndex() == 0

    copy = tmp_path / "mine.pt"
    copy.write_bytes(target_path.read_bytes())
    monkeypatch.setattr(tp.QFileDialog, "getOpenFileName", lambda *a, **k: (str(copy), ""))
    panel.target.setCurrentIndex(panel.target.count() - 1)
    qtbot.waitUntil(lambda: doc.state.translation is not None, timeout=30000)
    assert doc.state.translation.target == ModelRef(str(copy.resolve()), file_sha256(copy))  # pinned
    assert panel.target.currentText() == "mine.pt"
    panel.target.setCurrentIndex(0)
    assert panel.target.findText("mine.pt") > 0  # still offered after switching off


def test_a_reference_image_is_inverted_in_the_target_and_sets_a_latent_style(qtbot, panel, target_path):
    doc = panel._doc
    tr = choose_toon(qtbot, panel)
    panel.open_reference(str(ASTRONAUT))
    qtbot.waitUntil(lambda: doc.state.translation.style is not None, timeout=60000)
    style = doc.state.translation.style
    summary = doc.summary
    assert style.latent is not None and style.name == ASTRONAUT.name
    assert style.shape == (summary.num_ws, summary.w_dim)
    assert ASTRONAUT.name in panel.style_label.text() and not panel.reference_running()
    assert doc.undo_stack.undoText() == f"Appearance from {ASTRONAUT.name}"
    # inverted in the target, not in the face's model: the same inversion run here in each model
    ctx = InlineContext(device=torch.device("cpu"))
    settings = dataclasses.replace(InversionSettings(), steps=panel.inversion_steps)

    def latent(model: ModelRef) -> np.ndarray:
        st = EditState(model=model)
        scan = ScanJob(str(ASTRONAUT), st)(ctx)
        t = face_transform(scan.faces[0], size=scan.size, recipe=scan.recipe)
        return InvertJob(st, str(ASTRONAUT), t, settings)(ctx).state.base.array()

    in_target, in_base = latent(tr.target), latent(doc.state.model)
    assert np.abs(style.array() - in_target).max() < 1e-3 < np.abs(style.array() - in_base).max()

    panel.inversion_steps = 5000  # cancelling keeps the style as it was
    panel.open_reference(str(ASTRONAUT))
    qtbot.waitUntil(lambda: panel.reference_running() and panel.ref_progress.value() > 0, timeout=60000)
    panel.ref_cancel.click()
    qtbot.waitUntil(lambda: not panel.reference_running(), timeout=30000)
    assert doc.state.translation.style == style
    doc.undo_stack.undo()
    assert doc.state.translation.style is None


def test_a_folder_is_translated_with_progress_and_a_photo_without_a_face_is_reported(qtbot, panel, tmp_path):
    choose_toon(qtbot, panel)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "astronaut.png").write_bytes(ASTRONAUT.read_bytes())
    Image.fromarray(np.full((90, 120, 3), 128, np.uint8)).save(photos / "wall.png")
    panel.translate_folder(photos, photos)  # the photos' own folder: written into a subfolder instead
    assert panel._folder_dialog is not None
    qtbot.waitUntil(lambda: panel.last_folder is not None, timeout=60000)
    summary = panel.last_folder
    assert [Path(p).name for p in summary.written] == ["astronaut.png"]
    assert Path(summary.written[0]).parent == photos / "translated" and summary.no_face == ("wall.png",)
    text = panel.summary_box.text()
    assert "Wrote 1 translated photo into" in text and "1 without a face: wall.png" in text
    assert panel._folder_dialog is None
    panel.summary_box.close()

    panel.inversion_steps = 5000
    panel.last_folder = None
    panel.translate_folder(photos, tmp_path / "out")
    qtbot.waitUntil(lambda: panel._folder_dialog.value() > 0, timeout=60000)
    with qtbot.waitSignal(panel.message, timeout=30000, check_params_cb=lambda m: "cancelled" in m):
        panel._folder_dialog.canceled.emit()  # the Cancel button
    assert panel._folder_dialog is None and panel.last_folder is None


def test_the_main_window_compares_the_untranslated_face_with_its_translation(qtbot, tiny_state, target_path,
                                                                           tmp_path):
    from editor.controllers.bridge import EngineBridge
    from editor.controllers.settings import Settings
    from editor.main_window import MainWindow

    bridge = EngineBridge(device="cpu").start()
    win = MainWindow(Document(tiny_state), bridge, Settings(tmp_path / "s.ini"))
    qtbot.addWidget(win)
    try:
        qtbot.waitUntil(lambda: win.document.summary is not None and win.current_full_image() is not None,
                        timeout=30000)
        panel = win.translate_panel
        plain = win.current_full_image()
        panel.set_target(ModelRef(str(target_path)))
        qtbot.waitUntil(lambda: win._untranslated is not None, timeout=30000)
        np.testing.assert_array_equal(win._untranslated, plain)  # the "before" is the face untranslated
        assert win.canvas._before_label == "Before translation"
        panel.compare_button.click()
        assert win.act_side.isChecked() and win.canvas.side_by_side
        win.act_side.setChecked(False)
        assert not panel.compare_button.isChecked()
        qtbot.waitUntil(lambda: win.current_full_image() is not None, timeout=30000)
        translated = win.current_full_image()
        ctx = InlineContext(device=torch.device("cpu"))
        np.testing.assert_array_equal(translated, render_in_worker(ctx, win.document.state))
        assert np.abs(translated.astype(int) - plain.astype(int)).max() > 0
        win.document.undo_stack.undo()  # translation off: the "before" is the last snapshot again
        assert win._untranslated is None and win.canvas._before_label.startswith("Before · ")
    finally:
        win.document.undo_stack.setClean()
        win.close()
        bridge.shutdown()
