"""The compare-methods window: the layer swap, BicycleGAN and TUNIT on the same input with N samples each, the
sample shown large, the z sweep, reference images, a resized input's notice, exports and the folder batch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from editor.controllers.document import Document
from editor.dialogs import compare_window as cw
from editor.panels.translate_panel import TranslatePanel
from engine.files.checkpoints import save_generator
from engine.files.images import read_png_parameters
from engine.files.loading import load_generator
from engine.files.storage import file_sha256
from engine.jobs.i2i import I2IJob, I2IRequest, ShippedI2I, pin
from engine.jobs.render import load_model, summarize
from engine.jobs.translate import ShippedTarget
from engine.project import ModelRef, Translation
from engine.worker import InlineContext
from tests.engine.i2i_models import SIZE, save_bicyclegan, save_tunit, tiny_bicyclegan, tiny_tunit
from tests.fakes import fake_finetune

ASTRONAUT = Path(__file__).resolve().parents[1] / "data" / "astronaut_face.png"


@pytest.fixture(scope="module")
def models(tiny_model_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    G = load_generator(tiny_model_path)
    T = fake_finetune(G)
    save_generator(folder / "toon.pt", T)
    return {"toon": folder / "toon.pt", "bicyclegan": save_bicyclegan(folder / "b.pt", tiny_bicyclegan()),
            "tunit": save_tunit(folder / "t.pt", tiny_tunit())}


@pytest.fixture
def window(qtbot, tiny_state, bridge, models):
    doc = Document(tiny_state)
    doc.set_summary(summarize(load_model(tiny_state.model), tiny_state.model))
    targets = [ShippedTarget("toon", ModelRef(str(models["toon"]), file_sha256(models["toon"])), None, {})]
    shipped = [ShippedI2I("bicyclegan", pin(ModelRef(str(models["bicyclegan"]))),
                          {"domains": {"A": "edges", "B": "photo"}}),
               ShippedI2I("tunit", pin(ModelRef(str(models["tunit"]))), {"domains": ["photo", "sketch"]})]
    w = cw.CompareWindow(doc, bridge, targets=targets, i2i=shipped)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: all(s is not None for s in w.strips.values()), timeout=30000)
    return w


def visible_samples(w, key) -> int:
    return sum(b.isVisibleTo(w) for b in w.rows[key].strip.buttons)


def test_three_methods_side_by_side_on_the_same_face(window, tiny_state):
    w = window
    assert [visible_samples(w, k) for k in (cw.SWAP, cw.BICYCLE, cw.TUNIT)] == [4, 4, 2]
    assert w.strips[cw.SWAP].seeds == (0, 1, 2, 3) and w.strips[cw.SWAP].state.translation.target.path
    assert w.strips[cw.BICYCLE].labels == ("z seed 0", "z seed 1", "z seed 2", "z seed 3")
    assert w.strips[cw.TUNIT].labels == ("cluster 0 (photo)", "cluster 2 (sketch)")
    assert w.lines.isChecked() and w.strips[cw.BICYCLE].request.lines  # the shipped model translates edges
    ctx = InlineContext(device=torch.device("cpu"))
    again = I2IJob(tiny_state, w.strips[cw.BICYCLE].request)(ctx)
    assert all(np.array_equal(a, b) for a, b in zip(again.images, w.strips[cw.BICYCLE].images))
    assert not w.notice.isVisibleTo(w)  # the tiny generator's 32 px faces fit the 32 px models


def test_the_layer_swap_row_follows_the_documents_translation(qtbot, window, tmp_path, models):
    w = window
    assert w.rows[cw.SWAP].model.isEnabled()
    other = tmp_path / "other.pt"
    other.write_bytes(models["toon"].read_bytes())
    w._doc.edit("Translate", translation=Translation(ModelRef(str(other)), depth=8))
    qtbot.waitUntil(lambda: w.strips[cw.SWAP].state.translation.target.path == str(other), timeout=30000)
    assert not w.rows[cw.SWAP].model.isEnabled() and w.rows[cw.SWAP].model.currentText() == "other.pt"
    assert "depth 8 px" in w.rows[cw.SWAP].status.text()


def test_n_seed_and_face_changes_ask_again(qtbot, window):
    w = window
    w.n.setValue(2)
    w.seed.setValue(10)
    qtbot.waitUntil(lambda: w.strips[cw.BICYCLE].request.seed == 10 and w.strips[cw.SWAP].seeds == (10, 11),
                    timeout=30000)
    assert visible_samples(w, cw.BICYCLE) == 2 and w.strips[cw.BICYCLE].labels == ("z seed 10", "z seed 11")
    before = w.strips[cw.TUNIT].input_image
    w._doc.edit("Seed", seed=w._doc.state.seed + 1)
    qtbot.waitUntil(lambda: not np.array_equal(w.strips[cw.TUNIT].input_image, before), timeout=30000)


def test_a_sample_is_shown_large_and_the_z_sweep_starts_from_it(qtbot, window):
    w = window
    w.select(cw.BICYCLE, 2)
    assert w.selected == (cw.BICYCLE, 2) and "z seed 2" in w.caption.text()
    assert w.rows[cw.BICYCLE].strip.buttons[2].isChecked() and not w.rows[cw.TUNIT].strip.buttons[0].isChecked()
    assert w.sweep_start() == 2 and w.sweep_to.value() == cw.N_DEFAULT
    w.sweep.setValue(100)
    qtbot.waitUntil(lambda: w.sweep_strip is not None and w.sweep_strip.specs[0].t == 1.0, timeout=30000)
    end = I2IJob(w._doc.state, I2IRequest(w.request(cw.BICYCLE).model, lines=True, n=1, seed=w.sweep_to.value()))
    ctx = InlineContext(device=torch.device("cpu"))
    assert np.abs(end(ctx).images[0].astype(int) - w.sweep_image).max() <= 1
    assert "→ 4 at 1.00" in w.caption.text()
    w.select(cw.TUNIT, 1)
    assert w.sweep_image is None and "cluster 2 (sketch)" in w.caption.text()


def test_exports_of_a_sample_a_row_and_the_sweep(qtbot, window, tmp_path):
    w = window
    assert w.export_selected(tmp_path / "none.png") is None  # nothing chosen yet
    w.select(cw.BICYCLE, 1)
    w.export_selected(tmp_path / "one.png")
    qtbot.waitUntil(lambda: w.last_written == (str(tmp_path / "one.png"),), timeout=30000)
    info = read_png_parameters(tmp_path / "one.png")["extras"]["i2i"]
    assert info["method"] == "bicyclegan" and info["sample"]["seed"] == 1
    with Image.open(tmp_path / "one.png") as im:
        np.testing.assert_array_equal(np.asarray(im), w.strips[cw.BICYCLE].images[1])
    w.select(cw.SWAP, 3)
    w.export_selected(tmp_path / "swap.png")
    qtbot.waitUntil(lambda: w.last_written == (str(tmp_path / "swap.png"),), timeout=30000)
    assert read_png_parameters(tmp_path / "swap.png")["state"]["translation"]["style"]["seed"] == 3
    w.export_row(cw.TUNIT, tmp_path / "row")
    qtbot.waitUntil(lambda: len(w.last_written) == 2, timeout=30000)
    assert sorted(Path(p).name for p in w.last_written) == ["tunit-cluster0.png", "tunit-cluster2.png"]
    w.export_sweep(tmp_path / "sweep")
    qtbot.waitUntil(lambda: len(w.last_written) == cw.SWEEP_FRAMES, timeout=30000)
    assert Path(w.last_written[-1]).name == f"bicyclegan-z00000-{cw.N_DEFAULT:05d}-t1000.png"  # from the first seed


def test_an_image_file_of_another_size_is_resized_with_a_notice(qtbot, window, monkeypatch):
    w = window
    monkeypatch.setattr(cw.QFileDialog, "getOpenFileName", lambda *a, **k: (str(ASTRONAUT), ""))
    index = w.input.findData("file")
    w.input.setCurrentIndex(index)
    w._input_chosen(index)
    qtbot.waitUntil(lambda: w.strips[cw.TUNIT].request.input.kind == "file", timeout=30000)
    qtbot.waitUntil(lambda: w.notice.isVisibleTo(w), timeout=30000)
    assert f"resized to {SIZE}×{SIZE}" in w.notice.text() and w.input.currentText() == ASTRONAUT.name


def test_a_reference_adds_its_sample_and_photo_input_needs_a_photo(qtbot, window, tmp_path):
    w = window
    path = tmp_path / "style.png"
    Image.fromarray(np.full((SIZE, SIZE, 3), 200, np.uint8)).save(path)
    w.set_reference(cw.TUNIT, str(path))
    qtbot.waitUntil(lambda: w.strips[cw.TUNIT].labels[0] == "from style.png", timeout=30000)
    assert visible_samples(w, cw.TUNIT) == 3
    w.set_reference(cw.TUNIT, None)
    qtbot.waitUntil(lambda: len(w.strips[cw.TUNIT].labels) == 2, timeout=30000)
    messages = []
    w.message.connect(messages.append)
    w.input.setCurrentIndex(w.input.findData("photo"))
    w._input_chosen(w.input.currentIndex())
    assert w.input.currentData() == "face" and "not made from a photo" in messages[-1]


def test_folder_batch_from_a_row(qtbot, window, tmp_path):
    w = window
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(photos / "x.png")
    w.translate_folder(cw.TUNIT, photos, photos)  # the same folder: written into photos/translated instead
    qtbot.waitUntil(lambda: w.summary_box is not None, timeout=60000)
    assert "without a face: x.png" in w.summary_box.text() and w._folder_dialog is None


def test_a_broken_model_file_is_reported_in_its_row(qtbot, window, tmp_path):
    w = window
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    w.open_model(cw.TUNIT, bad)
    qtbot.waitUntil(lambda: w.strips[cw.TUNIT] is None, timeout=30000)
    assert "Cannot translate" in w.rows[cw.TUNIT].status.text() and "bad.pt" in w.rows[cw.TUNIT].model.currentText()
    assert w.strips[cw.BICYCLE] is not None  # the other rows are untouched


def test_the_translate_panel_opens_it_with_ctrl_t(qtbot, tiny_state, bridge, models):
    doc = Document(tiny_state)
    doc.set_summary(summarize(load_model(tiny_state.model), tiny_state.model))
    panel = TranslatePanel(doc, bridge, shipped=[])
    qtbot.addWidget(panel)
    assert panel.act_methods.shortcut().toString() == "Ctrl+T"
    w = panel.compare_methods()
    qtbot.addWidget(w)
    assert w.isVisible() and panel.compare_methods() is w
    qtbot.waitUntil(lambda: "No fine-tuned target" in w.rows[cw.SWAP].status.text(), timeout=30000)
