"""Opening a broken or hostile project in the editor (issue 22): an error box (``editor.dialogs.error_box``) says
why, nothing of the current document is lost, nothing blocks (a pipe, a device, a bomb); a headless run closes any
dialog at once and ends with its message instead of waiting on it."""
from __future__ import annotations

import base64
import json
import os
import time
import zlib

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from editor.app import DialogGuard
from editor.controllers.document import Document
from editor.controllers.projects import ProjectController
from engine.project import MAX_EDITS, PROJECT_FORMAT, EditState, project_dict


def _project(**state) -> str:
    d = project_dict(EditState())
    d["state"].update(state)
    return json.dumps(d)


def _zlib_bomb() -> str:
    out = zlib.compressobj(9)
    data = b"".join(out.compress(bytes(1 << 20)) for _ in range(64)) + out.flush()  # 64 MB of zeros in 64 kB
    return base64.b64encode(data).decode("ascii")


HOSTILE = {
    "nested 100 000 deep": '{"format": "%s", "format_version": 1, "state": %s}' % (PROJECT_FORMAT,
                                                                                  "[" * 100_000 + "]" * 100_000),
    "5000-digit seed": _project().replace('"seed": 0', '"seed": ' + "9" * 5000),
    "extras a list": json.dumps({**json.loads(_project()), "extras": [1, 2]}),
    "zlib bomb": _project(noise_maps={"zlib": _zlib_bomb(), "shapes": [[4, 4]]}),
    "5000 attribute edits": _project(edits=[{"kind": "attribute", "key": "age", "value": i % 9} for i in range(5000)]),
    "int model path": _project(model={"path": 5}),
}


@pytest.fixture
def shown(monkeypatch) -> list[tuple[str, str, str]]:
    """The error boxes shown (their icon, title and text) instead of waiting on them."""
    boxes = []
    kinds = {QMessageBox.Icon.Critical: "critical", QMessageBox.Icon.Warning: "warning"}
    monkeypatch.setattr(QMessageBox, "exec", lambda box: boxes.append(
        (kinds.get(box.icon(), "other"), box.windowTitle(), box.text())) or 0)
    return boxes


def _controller(tmp_path, tiny_state):
    doc = Document(tiny_state)
    doc.edit("Seed", seed=8)
    return doc, ProjectController(doc, None, autosave_path=tmp_path / "auto.fproj")


def _open_refused(ctrl, doc, path, shown, before) -> None:
    t0 = time.perf_counter()
    assert not ctrl.open_file(path)
    assert time.perf_counter() - t0 < 10.0
    assert [kind for kind, _, _ in shown] == ["critical"] and shown[0][1] == "Could not open the project"
    assert shown[0][2] and "\n" not in shown[0][2]
    assert doc.state == before and doc.undo_stack.count() == 1 and ctrl.path is None


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_project_shows_an_error_box_and_keeps_the_document(qtbot, tmp_path, tiny_state, shown, name):
    doc, ctrl = _controller(tmp_path, tiny_state)
    path = tmp_path / "bad.fproj"
    path.write_text(HOSTILE[name])
    _open_refused(ctrl, doc, path, shown, tiny_state.replace(seed=8))
    if name == "5000 attribute edits":
        assert f"more than the {MAX_EDITS}" in shown[0][2]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_fifo_or_a_device_as_a_project_does_not_block_the_editor(qtbot, tmp_path, tiny_state, shown):
    doc, ctrl = _controller(tmp_path, tiny_state)
    fifo = tmp_path / "pipe.fproj"
    os.mkfifo(fifo)
    _open_refused(ctrl, doc, fifo, shown, tiny_state.replace(seed=8))
    shown.clear()
    _open_refused(ctrl, doc, "/dev/zero", shown, tiny_state.replace(seed=8))


def test_a_bad_autosave_is_not_offered_and_odd_extras_do_not_break_recovery(qtbot, tmp_path, tiny_state, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *_a: QMessageBox.StandardButton.Yes)
    doc = Document(tiny_state)
    ctrl = ProjectController(doc, None, autosave_path=tmp_path / "auto.fproj")
    ctrl.autosave_path.write_text(HOSTILE["nested 100 000 deep"])
    assert ctrl.recoverable() is None
    d = json.loads(_project(seed=12))
    d["extras"] = {"project_path": 5, "autosaved": 7}  # not what the editor writes, but a dictionary
    ctrl.autosave_path.write_text(json.dumps(d))
    assert ctrl.offer_recovery() and doc.state.seed == 12 and ctrl.path is None


def test_the_headless_dialog_guard_closes_a_modal_box_and_keeps_its_text(qtbot):
    guard = DialogGuard(QApplication.instance(), interval_ms=10)
    QTimer.singleShot(3000, lambda: [w.done(1) for w in QApplication.topLevelWidgets()
                                     if isinstance(w, QMessageBox)])  # the test's own way out, were the guard broken
    t0 = time.perf_counter()
    QMessageBox.critical(None, "Could not open", "The model file\nis missing.")
    assert time.perf_counter() - t0 < 2.0
    assert guard.messages == ["The model file is missing."]
