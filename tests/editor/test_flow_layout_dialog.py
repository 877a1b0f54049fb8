"""Attribute flows with another condition layout in the editor: the layout dialog (template, StyleFlow prefill,
text form, refusals), the attributes panel built from the layout, opening a flow from the File menu (asking for the
layout only when the file does not say it), undo, and the ``--flow`` / ``--flow-layout`` arguments."""
from __future__ import annotations

import json

import pytest
import torch
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFileDialog, QTableWidgetItem

from editor.controllers.document import Document
from editor.dialogs.flow_layout import FlowLayoutDialog
from editor.panels.attributes_panel import AttributesPanel
from engine.algorithms.flow_edit import slider_target
from engine.algorithms.flow_layout import STYLEFLOW, LayoutError, parse_layout
from engine.assets import ASSETS_DIR
from engine.files.flows import load_flow, save_flow
from engine.models.flow import ConditionalCNF, FlowConfig
from engine.project import ModelRef
from tests.fakes import TINY_CFG

CUSTOM_TEXT = "light=4@6-7; age@4-7=0..65*0.93; hat@0-3=-1..1*2; smile@4-5"
CUSTOM = parse_layout(CUSTOM_TEXT)


@pytest.fixture(scope="module")
def flows(tmp_path_factory):
    """A 7-value flow for the tiny generator: bare (StyleFlow's released format, no layout) and in the project's
    format stating CUSTOM with two lighting presets."""
    flow = ConditionalCNF(FlowConfig(input_dim=TINY_CFG.w_dim, hidden_dims=(16,), cond_dim=7, solver="rk4",
                                     step_size=0.25, divergence="exact", adjoint=False))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    folder = tmp_path_factory.mktemp("flows7")
    torch.save(flow.state_dict(), folder / "bare7.pt")
    stated = load_flow(folder / "bare7.pt", layout=CUSTOM)
    save_flow(folder / "own7.pt", stated, extras={"lighting_presets": [[0.5, 0.1, 0.2, 0.3], [1.0, 0.0, 0.0, 0.0]]})
    return folder


def fill(dialog: FlowLayoutDialog, rows: list[tuple[str, ...]]) -> None:
    for r, values in enumerate(rows):
        for c, value in enumerate(values):
            dialog.table.setItem(r, c, QTableWidgetItem(value))


def ok(dialog: FlowLayoutDialog):
    return dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)


# --- the dialog -------------------------------------------------------------------------------------------------

def test_a_flow_of_another_size_gets_an_empty_template_that_must_be_filled(qtbot):
    d = FlowLayoutDialog(7, name="bare7.pt")
    qtbot.addWidget(d)
    assert d.table.rowCount() == 7 and d.lights.value() == 0 and not d.styleflow.isEnabled()
    assert not ok(d).isEnabled() and "W+ rows" in d.error.text() and d.layout() is None  # rows are never guessed
    d.lights.setValue(4)
    assert d.table.rowCount() == 3 and d.light_rows.isEnabled()
    fill(d, [("age", "4-7", "0", "65", "0.93"), ("hat", "0-3", "-1", "1", "2"), ("smile", "4-5", "0", "1", "1")])
    assert not ok(d).isEnabled() and "lighting" in d.error.text()
    d.light_rows.setText("6-7")
    assert ok(d).isEnabled() and d.error.text() == ""
    assert d.layout() == CUSTOM and parse_layout(d.text.text()) == CUSTOM  # the text form mirrors the form
    d.num_ws.setValue(10)
    assert d.layout().num_ws == 10


def test_inconsistent_input_is_refused_with_the_reason(qtbot):
    d = FlowLayoutDialog(7, name="bare7.pt", initial=CUSTOM)
    qtbot.addWidget(d)
    assert d.layout() == CUSTOM and ok(d).isEnabled()
    d.table.setItem(1, 0, QTableWidgetItem("age"))
    assert not ok(d).isEnabled() and "unique" in d.error.text()
    d.accept()
    assert d.result() != QDialog.DialogCode.Accepted  # an invalid layout does not close the dialog
    d.table.setItem(1, 0, QTableWidgetItem("hat"))
    d.table.setItem(1, 3, QTableWidgetItem("-5"))
    assert not ok(d).isEnabled() and "low to high" in d.error.text()
    d.text.setText("light=9@7-11; age@4-7")
    d.apply_text()
    assert not ok(d).isEnabled() and "10 values" in d.error.text() and "7 values" in d.error.text()
    d.text.setText(CUSTOM_TEXT)
    d.apply_text()
    assert d.layout() == CUSTOM and ok(d).isEnabled()
    d.accept()
    assert d.result() == QDialog.DialogCode.Accepted


def test_styleflows_size_is_prefilled_with_styleflows_layout(qtbot):
    d = FlowLayoutDialog(17, name="modellarge10k.pt", initial=STYLEFLOW)
    qtbot.addWidget(d)
    assert d.layout() == STYLEFLOW and ok(d).isEnabled() and d.styleflow.isEnabled()
    assert d.table.rowCount() == 8 and d.table.item(6, 0).text() == "age" and d.table.item(6, 1).text() == "4-7"
    d.lights.setValue(0)  # changing it leaves 17 attribute rows, 9 of them new and empty
    assert d.table.rowCount() == 17 and not ok(d).isEnabled()
    d.styleflow.click()
    assert d.layout() == STYLEFLOW


# --- the panel and opening a flow -------------------------------------------------------------------------------

@pytest.fixture
def estimator_present():
    if not (ASSETS_DIR / "estimator.pt").exists():
        pytest.fail("assets/estimator.pt is missing")


def wait_built(qtbot, panel, names):
    qtbot.waitUntil(lambda: tuple(panel.sliders) == names and panel._reading is not None, timeout=30000)


def test_the_panel_builds_its_sliders_from_the_flows_layout(qtbot, tiny_state, flows, bridge, estimator_present):
    doc = Document(tiny_state.replace(flow=ModelRef(str(flows / "own7.pt"))))
    p = AttributesPanel(doc, bridge)
    qtbot.addWidget(p)
    p.request_reading()
    wait_built(qtbot, p, ("age", "hat", "smile"))
    assert (p.sliders["hat"].minimum(), p.sliders["hat"].maximum()) == (-1.0, 1.0)
    assert (p.sliders["age"].minimum(), p.sliders["age"].maximum()) == (0.0, 65.0)
    assert len(p.lights) == 2  # the file's two presets
    assert p.readings["hat"].text() == "n/a" and not p.locks["hat"].isEnabled() and p.locks["age"].isEnabled()
    assert p.sliders["hat"].value() == pytest.approx(0.0)  # not measured: the middle of its range
    assert "hat" in p.status.text() and "own7.pt" in p.flow_label.text()
    p.sliders["hat"].setValue(0.5)
    (edit,) = doc.state.edits
    assert edit.key == "hat" and edit.value == pytest.approx(slider_target("hat", 0.5, 0.0, layout=CUSTOM))
    qtbot.waitUntil(lambda: p._reading.state == doc.state, timeout=30000)
    assert p._reading.target[CUSTOM.index("hat")] == pytest.approx(1.0)  # degree 2
    assert p.resets["hat"].isEnabled()
    p.lights[1].setValue(0.5)
    qtbot.waitUntil(lambda: p._reading.state == doc.state, timeout=30000)
    assert p._reading.target[0] == pytest.approx(0.5 * p._reading.base[0] + 0.5)  # towards preset 1's sh0 = 1
    p._timer.stop()


def test_opening_a_flow_asks_for_its_layout_only_when_the_file_does_not_say_it(
        qtbot, tiny_state, flows, bridge, estimator_present, monkeypatch):
    doc = Document(tiny_state)
    p = AttributesPanel(doc, bridge)
    qtbot.addWidget(p)
    p.request_reading()
    wait_built(qtbot, p, STYLEFLOW.names)
    asked = []

    def answer(dialog):  # the user types the layout text and presses OK
        asked.append((dialog.cond_dim, dialog.layout()))
        dialog.text.setText(CUSTOM_TEXT)
        dialog.apply_text()
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(FlowLayoutDialog, "exec", answer)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(flows / "bare7.pt"), ""))
    p.open_flow_dialog()
    qtbot.waitUntil(lambda: doc.state.flow.path is not None, timeout=30000)
    assert asked == [(7, None)]  # asked, with an empty template: the size is not StyleFlow's
    assert doc.state.flow.path == str(flows / "bare7.pt") and doc.state.flow.sha256
    assert doc.state.flow_layout == CUSTOM and doc.undo_stack.count() == 1
    wait_built(qtbot, p, ("age", "hat", "smile"))
    assert p.lights == [] and "no presets" in p.light_header.text()
    doc.undo_stack.undo()
    assert doc.state.flow == tiny_state.flow and doc.state.flow_layout is None
    wait_built(qtbot, p, STYLEFLOW.names)

    monkeypatch.setattr(FlowLayoutDialog, "exec", lambda d: QDialog.DialogCode.Rejected)
    p.open_flow(ModelRef(str(flows / "bare7.pt")))
    qtbot.waitUntil(lambda: "not opened" in p.status.text(), timeout=30000)
    assert doc.state.flow == tiny_state.flow  # cancelled: nothing changed

    monkeypatch.setattr(FlowLayoutDialog, "exec", lambda d: pytest.fail("a file stating its layout was asked"))
    p.open_flow(ModelRef(str(flows / "own7.pt")))
    qtbot.waitUntil(lambda: doc.state.flow.path == str(flows / "own7.pt"), timeout=30000)
    assert doc.state.flow_layout is None  # the file's own
    wait_built(qtbot, p, ("age", "hat", "smile"))
    p._timer.stop()


def test_the_file_menu_opens_a_flow(qtbot, tiny_state, tmp_path, flows, bridge, monkeypatch):
    from editor.controllers.settings import Settings
    from editor.main_window import MainWindow

    win = MainWindow(Document(tiny_state), bridge, Settings(tmp_path / "s.ini"), autosave_path=tmp_path / "a.fproj")
    qtbot.addWidget(win)
    file_menu = win.menuBar().actions()[0].menu()
    assert win.act_open_flow in file_menu.actions() and win.act_open_flow.text() == "Open attribute &flow…"
    called = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (called.append(1), ("", ""))[1])
    win.act_open_flow.trigger()
    assert called == [1]
    win.document.undo_stack.setClean()
    win.attributes_panel._timer.stop()


# --- command-line arguments -------------------------------------------------------------------------------------

def test_editor_arguments_give_the_flow_and_its_layout(flows, tmp_path):
    from editor.app import initial_state
    from main import build_parser

    parse = build_parser().parse_args
    st = initial_state(parse(["--flow", str(flows / "bare7.pt"), "--flow-layout", CUSTOM_TEXT]))
    assert st.flow.path == str(flows / "bare7.pt") and st.flow_layout == CUSTOM
    (tmp_path / "layout.json").write_text(json.dumps(CUSTOM.to_dict()))
    assert initial_state(parse(["--flow", str(flows / "bare7.pt"), "--flow-layout",
                                str(tmp_path / "layout.json")])).flow_layout == CUSTOM
    assert initial_state(parse([])).flow.is_default and initial_state(parse([])).flow_layout is None
    with pytest.raises(LayoutError, match="NAME@ROWS"):
        initial_state(parse(["--flow", str(flows / "bare7.pt"), "--flow-layout", "light=0; age"]))
    with pytest.raises(LayoutError, match="--flow"):
        initial_state(parse(["--flow-layout", CUSTOM_TEXT]))
    with pytest.raises(ValueError, match="no such file"):
        initial_state(parse(["--flow", str(tmp_path / "absent.pt")]))
    assert "--flow-layout" in build_parser().format_help()


def test_a_flow_without_a_layout_hides_the_sliders_until_the_layout_is_given(
        qtbot, tiny_state, flows, bridge, estimator_present, monkeypatch):
    doc = Document(tiny_state.replace(flow=ModelRef(str(flows / "bare7.pt"))))  # as --flow without --flow-layout
    p = AttributesPanel(doc, bridge)
    qtbot.addWidget(p)
    p.show()
    p.request_reading()
    qtbot.waitUntil(lambda: "unavailable" in p.status.text(), timeout=30000)
    assert "--flow-layout" in p.status.text() and "Layout…" in p.status.text()
    assert p._rows_box.isHidden() and "not usable" in p.flow_label.text() and p.layout_button.isEnabled()

    def answer(dialog):
        dialog.set_layout(CUSTOM)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(FlowLayoutDialog, "exec", answer)
    p.layout_button.click()
    qtbot.waitUntil(lambda: doc.state.flow_layout == CUSTOM, timeout=30000)
    wait_built(qtbot, p, ("age", "hat", "smile"))
    assert not p._rows_box.isHidden() and "layout given by you" in p.flow_label.text()
    p._timer.stop()
