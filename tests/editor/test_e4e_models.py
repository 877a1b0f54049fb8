"""e4e in the editor: a published-layout e4e file (the fixture's encoder with a rosinality decoder written by our own
converter) opens in the model panel as generator + encoder and encodes a photo in one pass; an encoder file pairs
with a separately opened generator (refused when it does not fit); the model manager lists the files with their
facts and refuses a pairing that does not fit. The dialog's screenshot is written to /tmp/models_dialog.png."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from editor.controllers.document import Document
from editor.controllers.settings import Settings
from editor.dialogs.models import COLUMNS, ModelsDialog
from editor.panels.model_panel import ModelPanel
from editor.panels.photo_panel import ONE_PASS, PhotoPanel
from engine.files.checkpoints import save_generator
from engine.files.e4e import load_e4e
from engine.models.e4e import encode, prepare_photos
from engine.project import EditState, ModelRef
from tests.e4e_files import encoder_only, fixture_checkpoint, generator_for, write_published

ASTRONAUT = Path(__file__).resolve().parents[1] / "data" / "astronaut_face.png"
SCREENSHOT = Path("/tmp/models_dialog.png")


@pytest.fixture(scope="module")
def files(reference_dir, tmp_path_factory):
    """Paths: the published-layout e4e file, an encoder-only file, a generator of its shape, one of another shape."""
    folder = tmp_path_factory.mktemp("e4e_editor")
    published, G = write_published(reference_dir, folder / "e4e_published.pt")
    save_generator(folder / "generator.pt", G)
    cfg = load_e4e(fixture_checkpoint(reference_dir)).cfg
    save_generator(folder / "other.pt", generator_for(cfg.n_styles - 2, cfg.w_dim, seed=1))
    return {"published": published, "encoder": encoder_only(reference_dir, folder / "encoder.pt"),
            "generator": folder / "generator.pt", "other": folder / "other.pt"}


@pytest.fixture
def panels(qtbot, bridge, tmp_path):
    doc = Document(EditState())
    settings = Settings(tmp_path / "s.ini")
    model, photo = ModelPanel(doc, bridge, settings), PhotoPanel(doc, bridge, settings)
    for w in (model, photo):
        qtbot.addWidget(w)
    return doc, model, photo, settings


def _open_model(qtbot, doc, model, path: Path) -> None:
    model.open_path(path)
    qtbot.waitUntil(lambda: doc.summary is not None and doc.summary.ref.path == str(path.resolve()), timeout=60000)


def test_an_e4e_file_opens_as_generator_and_encoder_and_encodes_a_photo_in_one_pass(qtbot, panels, files):
    doc, model, photo, _ = panels
    _open_model(qtbot, doc, model, files["published"])
    assert doc.summary.format == "e4e" and "e4e encoder" in doc.summary.encoder
    assert "Photo encoder: its own" in model.info.text()
    assert photo.method.currentText() == ONE_PASS
    with qtbot.waitSignal(photo.aligned, timeout=60000):
        photo.open_path(str(ASTRONAUT))
    qtbot.waitUntil(lambda: doc.state.photo is not None, timeout=60000)
    out = photo.last_outcome
    assert out.encoder and out.steps == 0 and not photo.recon_view.pixmap().isNull()
    assert "encoder only" in photo.quality.text()
    e4e = load_e4e(files["published"])
    want = encode(e4e, prepare_photos(e4e, out.aligned))[0].numpy()  # the W+ comes from the encoder
    np.testing.assert_array_equal(doc.state.base.array(), want)
    print(f"e4e encode in the editor path (InvertJob, encoder only): {out.seconds * 1e3:.0f} ms")

    photo.steps.setValue(20)
    photo.start_inversion(refine=True)
    qtbot.waitUntil(lambda: photo.last_outcome is not out and not photo.running(), timeout=60000)
    assert photo.last_outcome.refine and photo.last_outcome.psnr > out.psnr


def test_pairing_an_encoder_with_a_generator_is_one_undo_step_and_a_misfit_is_refused(qtbot, panels, files):
    doc, model, photo, _ = panels
    _open_model(qtbot, doc, model, files["generator"])
    assert doc.summary.encoder is None and doc.state.encoder is None
    model.pair_path(files["encoder"])
    qtbot.waitUntil(lambda: doc.state.encoder is not None, timeout=60000)
    assert doc.state.encoder.path == str(files["encoder"].resolve()) and doc.state.encoder.sha256
    assert doc.undo_stack.undoText().startswith("Pair encoder") and "paired e4e" in model.info.text()
    assert photo.method.currentText() == ONE_PASS
    doc.undo_stack.undo()
    assert doc.state.encoder is None

    _open_model(qtbot, doc, model, files["other"])
    with qtbot.waitSignal(model.failed, timeout=60000) as refused:
        model.pair_path(files["encoder"])
    text = refused.args[0].message
    assert text.startswith("Could not pair the encoder") and "rows" in text and "other.pt" in text
    assert doc.state.encoder is None


def test_the_model_manager_lists_the_files_with_their_facts_and_refuses_a_misfit(qtbot, panels, files, bridge):
    doc, model, _, settings = panels
    for path in (files["other"], files["encoder"]):
        settings.add_recent("models", path)
    _open_model(qtbot, doc, model, files["published"])
    dialog = ModelsDialog(doc, bridge, settings)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitUntil(lambda: len(dialog.rows) >= 3, timeout=60000)
    cells = {dialog.table.item(r, 0).text(): [dialog.table.item(r, c).text() for c in range(len(COLUMNS))]
             for r in range(dialog.table.rowCount())}
    first = cells[files["published"].name]
    col = {name: i for i, name in enumerate(COLUMNS)}
    G = load_e4e(files["published"]).generator
    assert first[col["Role"]] == "generator" and first[col["Format"]] == "e4e"
    assert first[col["Resolution"]] == f"{G.img_resolution}×{G.img_resolution}"
    assert first[col["Precision"]] == "float32" and first[col["Device"]] == "cpu"
    assert first[col["Memory"]].endswith("MB") and "e4e IR-SE encoder" in first[col["Architecture"]]
    assert "encoder: its own (e4e)" in first[col["Pairs with"]]
    assert first[col["Status"]] == "in use, loaded"
    flow = next(v for v in cells.values() if v[col["Role"]] == "attribute flow (CNF)")
    assert flow[col["Status"]] == "cannot be used" and flow[col["Device"]] == "—"
    assert f"{flow[0]} cannot be used with {files['published'].name}: the flow edits latents of" in \
        dialog.status.text().replace("<b>", "").replace("</b>", "")
    assert cells["encoder.pt"][col["Role"]] == "e4e encoder" and cells["encoder.pt"][col["Status"]] == \
        "recent, not loaded"
    assert cells["other.pt"][col["Role"]] == "generator"
    dialog.grab().save(str(SCREENSHOT))

    dialog.role.setCurrentText("Fine-tune")
    dialog.pair_path(files["other"], "fine-tune")
    qtbot.waitUntil(lambda: dialog.last_refusal != "", timeout=60000)
    assert "other.pt cannot be the fine-tune of e4e_published.pt: it has another architecture" in dialog.last_refusal
    assert dialog.status.text().startswith("Refused:")

    with qtbot.waitSignal(dialog.use, timeout=60000) as used:
        dialog.pair_path(files["generator"], "fine-tune")  # the decoder's own architecture: fits
    assert used.args[0] == "fine-tune" and used.args[1].path == str(files["generator"].resolve())


def test_the_main_window_opens_the_model_manager_from_the_file_menu(qtbot, main_window):
    act = main_window.act_models
    assert act.shortcut().toString() == "Ctrl+Shift+M" and "pair" in act.toolTip()
    assert act in main_window.menuBar().actions()[0].menu().actions()
    assert main_window.act_pair_encoder.toolTip()
    act.trigger()
    dialog = main_window.models_dialog
    qtbot.waitUntil(lambda: len(dialog.rows) >= 1, timeout=60000)
    assert dialog.isVisible() and dialog.rows[0].role == "generator" and dialog.rows[0].in_use
    assert any(p.startswith("encoder:") for p in dialog.rows[0].pairs)  # the shipped encoder of the default
    dialog.close()
    assert ModelRef() == main_window.document.state.model
