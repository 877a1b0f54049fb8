"""Style-mixing panel: rows and groups from the model, presets, sources, undo, thumbnails, and pixel parity with the
engine's mixing function."""
from __future__ import annotations

import numpy as np
import torch
from PySide6.QtWidgets import QLabel, QMessageBox

from editor.controllers.document import Document
from editor.panels.mixing_panel import THUMB_PX, MixingPanel, group_rows
from engine.algorithms.latents import mix_styles, seed_to_z, truncate
from engine.files.checkpoints import save_generator
from engine.files.images import to_uint8
from engine.jobs.render import load_model, render_state, summarize
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.project import ModelRef, Source

TINY_ROWS = (4, 4, 8, 8, 16, 16, 32, 32)


def _panel(qtbot, bridge, state):
    doc = Document(state)
    panel = MixingPanel(doc, bridge)
    qtbot.addWidget(panel)
    doc.set_summary(summarize(load_model(state.model), state.model))
    return doc, panel


def test_rows_resolutions_and_groups(qtbot, bridge, tiny_state):
    doc, panel = _panel(qtbot, bridge, tiny_state)
    assert doc.summary.row_resolutions == TINY_ROWS
    assert panel.groups() == {"coarse": (0, 1, 2, 3), "middle": (4, 5, 6, 7), "all": tuple(range(8))}
    assert len(panel._radios) == 8 and all(len(r) == 1 for r in panel._radios)  # base column only
    cells = [panel.grid.itemAtPosition(i, 0) for i in range(panel.grid.rowCount())]
    texts = [c.widget().text() for c in cells if c is not None and isinstance(c.widget(), QLabel)]
    labels = [t for t in texts if "·" in t]
    assert [t.split("<")[1].split(">")[1] for t in texts if t.startswith("<b>")] == ["All rows", "Coarse", "Middle"]
    assert labels == [f"{i} · {r} px" for i, r in enumerate(TINY_ROWS)]
    assert all(panel.radio(i, 0).isChecked() for i in range(8))
    assert ("fine", 0) not in panel._presets  # a 32 px model has no fine rows
    big = group_rows((4, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256))
    assert big["fine"] == (8, 9, 10, 11, 12) and big["middle"] == (4, 5, 6, 7)


def test_middle_preset_renders_like_the_engine_mixing_function(qtbot, bridge, tiny_state, tiny_model_path):
    doc, panel = _panel(qtbot, bridge, tiny_state)
    panel.add_seed(11)
    assert doc.state.sources == (Source(seed=11),)
    panel.preset_button("middle", 1).click()
    rows = (0, 0, 0, 0, 1, 1, 1, 1)
    assert doc.state.rows == rows
    assert panel.preset_button("middle", 1).isChecked() and not panel.preset_button("coarse", 1).isChecked()
    assert [k for i in range(8) for k in range(2) if panel.radio(i, k).isChecked()] == list(rows)

    G = load_model(doc.state.model)
    image = render_state(G, doc.state)
    with torch.no_grad():
        base = truncate(G.mapping(seed_to_z(3, G.z_dim)), G.w_avg, 0.7)  # [1, num_ws, w_dim]
        other = truncate(G.mapping(seed_to_z(11, G.z_dim)), G.w_avg, 0.7)
        ws = mix_styles(torch.stack([base, other]), rows)
        expected = to_uint8(G.synthesis(ws, noise_mode="const"))[0]
    np.testing.assert_array_equal(image, expected)
    assert not np.array_equal(image, render_state(G, doc.state.replace(rows=())))

    panel.preset_button("all", 0).click()
    assert doc.state.rows == () and not doc.state.mixed()


def test_undo_redo_through_the_panel(qtbot, bridge, tiny_state):
    doc, panel = _panel(qtbot, bridge, tiny_state)
    panel.add_seed(11)
    panel.add_seed(12)
    panel.radio(2, 2).click()
    assert doc.state.rows == (0, 0, 2, 0, 0, 0, 0, 0)
    panel.radio(5, 1).click()
    assert doc.state.rows == (0, 0, 2, 0, 0, 1, 0, 0)
    doc.undo_stack.undo()
    assert doc.state.rows == (0, 0, 2, 0, 0, 0, 0, 0)
    assert panel.radio(5, 0).isChecked() and not panel.radio(5, 1).isChecked() and panel.radio(2, 2).isChecked()
    doc.undo_stack.redo()
    assert doc.state.rows[5] == 1 and panel.radio(5, 1).isChecked()

    steps = doc.undo_stack.count()
    panel.remove_button(1).click()  # seed 11 goes; rows from it go to the base; seed 12 becomes column 1
    assert doc.state.sources == (Source(seed=12),) and doc.state.rows == (0, 0, 1, 0, 0, 0, 0, 0)
    assert doc.undo_stack.count() == steps + 1
    assert len(panel._radios[0]) == 2 and panel.radio(2, 1).isChecked()
    doc.undo_stack.undo()
    assert doc.state.sources == (Source(seed=11), Source(seed=12))
    assert doc.state.rows == (0, 0, 2, 0, 0, 1, 0, 0) and panel.radio(5, 1).isChecked()
    panel.remove_button(2).click()
    panel.remove_button(1).click()
    assert doc.state.sources == () and doc.state.rows == ()  # all-base is stored as "no mixing"
    assert not panel.reset_button.isEnabled()


def test_thumbnails_arrive_at_the_requested_size(qtbot, bridge, tiny_state):
    doc, panel = _panel(qtbot, bridge, tiny_state)
    panel.add_seed(11)
    qtbot.waitUntil(lambda: all(panel.thumbnail(k) is not None for k in range(2)), timeout=20000)
    for k in range(2):
        assert (panel.thumbnail(k).width(), panel.thumbnail(k).height()) == (THUMB_PX, THUMB_PX)
    before = panel.thumbnail(0).toImage()
    doc.edit("Seed", seed=4)
    qtbot.waitUntil(lambda: panel.thumbnail(0) is not None and panel.thumbnail(0).toImage() != before, timeout=20000)


def test_bad_latent_shows_an_error_and_changes_nothing(qtbot, bridge, tiny_state, tmp_path, monkeypatch):
    doc, panel = _panel(qtbot, bridge, tiny_state)
    errors = []
    monkeypatch.setattr(QMessageBox, "exec", lambda box: errors.append(box.text()) or 0)
    garbage = tmp_path / "broken.npy"
    garbage.write_bytes(b"not a numpy file")
    wrong_width = tmp_path / "wide.npy"
    np.save(wrong_width, np.zeros((8, 99), np.float32))
    state = doc.state
    assert not panel.add_latent_file(garbage)
    assert not panel.add_latent_file(wrong_width)
    assert len(errors) == 2 and "broken.npy" in errors[0] and "w_dim 99" in errors[1]
    assert doc.state == state and doc.undo_stack.count() == 0

    good = tmp_path / "face.npy"
    np.save(good, np.zeros((8, doc.summary.w_dim), np.float32))
    assert panel.add_latent_file(good)
    assert doc.state.sources[0].label() == "face" and len(panel._radios[0]) == 2


def test_layout_follows_the_loaded_model(qtbot, bridge, tiny_state, tmp_path):
    doc = Document(tiny_state.replace(sources=(Source(seed=5),), rows=(0, 0, 0, 0, 1, 1, 1, 1)))
    panel = MixingPanel(doc, bridge)
    qtbot.addWidget(panel)
    assert panel._radios == [] and not panel.add_seed_button.isEnabled()  # no model yet: no rows to show
    doc.set_summary(summarize(load_model(doc.state.model), doc.state.model))
    assert len(panel._radios) == 8 and panel.radio(4, 1).isChecked() and not panel.warning.isVisibleTo(panel)

    small = GeneratorConfig(img_resolution=16, channels=(8, 8, 8), z_dim=6, w_dim=6, mapping_layers=1)
    path = tmp_path / "small.pt"
    save_generator(path, Generator(small, seed=2))
    ref = ModelRef(path=str(path))
    doc.set_summary(summarize(load_model(ref), ref))  # rows made for 8 W+ rows, the model has 6: say so
    assert len(panel._radios) == 6 and panel.groups()["middle"] == (4, 5)
    assert panel.warning.isVisibleTo(panel) and "8 W+ rows" in panel.warning.text()
    panel.reset_button.click()
    assert doc.state.rows == () and not panel.warning.isVisibleTo(panel)
