"""Attributes panel: sliders start at the measured values, a drag is one edit and one undo step, resets, readings."""
from __future__ import annotations

import time

import pytest

from editor.controllers.document import Document
from editor.panels.attributes_panel import SHORT_STYLE, AttributesPanel
from engine.algorithms.flow_edit import ATTRIBUTES, NUM_LIGHT, AttributeEdit, slider_target
from engine.assets import ASSETS_DIR
from engine.project import MAX_EDITS, EditState, ModelRef


@pytest.fixture
def panel(qtbot, tiny_state, tiny_flow_path, bridge):
    if not (ASSETS_DIR / "estimator.pt").exists():
        pytest.fail("assets/estimator.pt is missing")
    doc = Document(tiny_state.replace(flow=ModelRef(str(tiny_flow_path))))
    p = AttributesPanel(doc, bridge)
    qtbot.addWidget(p)
    p.request_reading()
    qtbot.waitUntil(lambda: p.sliders["age"].isEnabled(), timeout=30000)
    yield p
    p._timer.stop()


def test_sliders_start_at_the_measured_values(panel):
    base = panel._reading.base
    for i, name in enumerate(ATTRIBUTES):
        lo, hi = panel.sliders[name].minimum(), panel.sliders[name].maximum()
        assert panel.sliders[name].value() == pytest.approx(min(max(base[NUM_LIGHT + i], lo), hi), abs=1e-6)
    assert not panel.resets["age"].isEnabled()


def test_a_drag_is_one_edit_and_one_undo_step_and_reset_removes_it(qtbot, panel):
    doc = panel._doc
    original = float(panel._reading.base[NUM_LIGHT + ATTRIBUTES.index("age")])
    slider = panel.sliders["age"]
    slider.sliderPressed.emit()
    for v in (20.0, 30.0, 45.0):
        slider.setValue(v)
    slider.sliderReleased.emit()
    (edit,) = doc.state.edits
    assert edit.key == "age" and edit.value == pytest.approx(slider_target("age", 45.0, original), rel=1e-6)
    assert doc.undo_stack.count() == 1
    qtbot.waitUntil(lambda: panel._reading.state == doc.state, timeout=30000)
    assert panel._reading.target[NUM_LIGHT + 6] == pytest.approx(edit.value)
    assert panel.readings["age"].text().endswith(" y") and panel.resets["age"].isEnabled()
    panel.sliders["beard"].setValue(0.9)
    assert [e.key for e in doc.state.edits] == ["age", "beard"]
    panel.resets["age"].click()
    assert [e.key for e in doc.state.edits] == ["beard"]
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert [e.key for e in doc.state.edits] == ["age"]
    assert slider.value() == pytest.approx(45.0, abs=1e-6)
    panel.reset_all.click()
    assert doc.state.edits == ()


def test_lighting_sliders_blend_towards_the_flow_presets(qtbot, tiny_state, tmp_path, tiny_flow_path, bridge):
    import torch

    from engine.files.flows import load_flow, save_flow

    presets = torch.linspace(-1, 1, 54).reshape(6, 9)
    lit = tmp_path / "lit.pt"
    save_flow(lit, load_flow(tiny_flow_path), extras={"lighting_presets": presets})
    doc = Document(tiny_state.replace(flow=ModelRef(str(lit))))
    p = AttributesPanel(doc, bridge)
    qtbot.addWidget(p)
    p.request_reading()
    qtbot.waitUntil(lambda: p.lights[0].isEnabled(), timeout=30000)
    p.lights[3].setValue(0.5)
    (edit,) = doc.state.edits
    assert (edit.kind, edit.key, edit.value) == ("lighting", 3, 0.5)
    qtbot.waitUntil(lambda: p._reading.state == doc.state, timeout=30000)
    base = torch.from_numpy(p._reading.base[:NUM_LIGHT])
    expected = base + 0.5 * (presets[3] - base)
    assert torch.allclose(torch.from_numpy(p._reading.target[:NUM_LIGHT]), expected, atol=1e-5)
    doc.undo_stack.undo()
    assert doc.state.edits == () and p.lights[3].value() == 0.0
    p._timer.stop()


def test_after_a_new_face_the_sliders_wait_for_its_reading_instead_of_ignoring_a_move(qtbot, panel):
    doc = panel._doc
    doc.edit("Seed", seed=doc.state.seed + 1)
    assert not panel.sliders["age"].isEnabled()  # a move now would have no measured value to start from
    qtbot.waitUntil(lambda: panel.sliders["age"].isEnabled(), timeout=30000)
    panel.sliders["age"].setValue(50.0)
    assert [e.key for e in doc.state.edits] == ["age"]


def test_a_lock_is_an_undoable_state_change_that_freezes_its_slider(qtbot, panel):
    doc = panel._doc
    panel.locks["glasses"].click()
    assert doc.state.locks == ("glasses",) and doc.undo_stack.count() == 1
    assert not panel.sliders["glasses"].isEnabled() and panel.sliders["age"].isEnabled()
    panel.sliders["age"].setValue(50.0)
    qtbot.waitUntil(lambda: panel._reading.state == doc.state, timeout=30000)  # the held edit renders and reads
    assert [e.key for e in doc.state.edits] == ["age"]
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert doc.state.locks == () and not panel.locks["glasses"].isChecked()
    assert panel.sliders["glasses"].isEnabled()


def test_read_from_flow_starts_the_sliders_from_the_flows_reading_in_one_undo_step(qtbot, panel):
    doc = panel._doc
    estimated = panel._reading.base.copy()
    assert not panel.read_action.isChecked() and panel.read_action.shortcut().toString() == "Ctrl+Shift+F"
    panel.read_button.click()
    assert not panel.read_progress.isHidden() or doc.state.attribute_source == "flow"
    qtbot.waitUntil(lambda: panel._reading.state == doc.state and doc.state.attribute_source == "flow",
                    timeout=60000)
    assert panel.read_action.isChecked() and panel.read_progress.isHidden()
    assert doc.undo_stack.count() == 1
    read = panel._reading.base
    assert read.shape == estimated.shape and not (read == estimated).all()
    age = panel._reading.layout.index("age")
    lo, hi = panel.sliders["age"].minimum(), panel.sliders["age"].maximum()
    assert panel.sliders["age"].value() == pytest.approx(min(max(read[age], lo), hi), abs=1e-6)
    assert "flow's reading" in panel.status.text()
    panel.read_button.click()  # off: the estimator's reading again
    assert doc.state.attribute_source == "estimator" and not panel.read_action.isChecked()
    doc.undo_stack.undo()
    assert doc.state.attribute_source == "flow"


def test_reading_from_flow_shows_progress_and_can_be_stopped(qtbot, panel, monkeypatch):
    import editor.panels.attributes_panel as module

    class SlowRead:
        """Reports progress, then waits until it is cancelled."""

        def __init__(self, state):
            self.state = state

        def __call__(self, ctx):
            ctx.progress(0.25, "Reading the attributes from the flow: step 5 of 20")
            while not ctx.cancelled():
                time.sleep(0.01)
            ctx.check()

    monkeypatch.setattr(module, "FlowReadJob", SlowRead)
    panel.read_action.trigger()
    qtbot.waitUntil(lambda: panel.read_progress.value() == 25, timeout=10000)
    assert not panel.read_progress.isHidden() and not panel.read_stop.isHidden() and panel.read_action.isChecked()
    assert "step 5 of 20" in panel.status.text()
    panel.read_stop.click()
    qtbot.waitUntil(lambda: panel._read_request is None, timeout=10000)
    assert panel.read_progress.isHidden() and not panel.read_action.isChecked()
    assert panel._doc.state.attribute_source == "estimator" and panel._doc.undo_stack.count() == 0
    assert "stopped" in panel.status.text()


def test_an_edit_beyond_the_most_a_face_replays_is_refused_with_a_message(qtbot, panel):
    doc = panel._doc
    full = tuple(AttributeEdit("attribute", ("age", "beard")[i % 2], 0.1 * (i % 5)) for i in range(MAX_EDITS))
    doc.reset(doc.state.replace(edits=full))
    with qtbot.waitSignal(panel.message, timeout=1000) as said:
        panel.sliders["gender"].setValue(0.9)
    assert doc.state.edits == full and f"{MAX_EDITS} attribute edits" in said.args[0]
    panel.sliders["beard"].setValue(0.2)  # the last edit's attribute: its edit is replaced, the list stays as long
    assert len(doc.state.edits) == MAX_EDITS and doc.state.edits[:-1] == full[:-1]
    assert doc.state.edits[-1].key == "beard" and doc.state.edits[-1].value != full[-1].value


def test_on_measured_directions_the_slider_is_the_asked_reading_and_a_short_edit_is_shown(qtbot, bridge):
    doc = Document(EditState(seed=1))  # the embedded default, which has measured directions
    p = AttributesPanel(doc, bridge)
    qtbot.addWidget(p)
    p.request_reading()
    qtbot.waitUntil(lambda: p.sliders["beard"].isEnabled(), timeout=30000)
    assert p.method_label.text() == "in use: measured directions" and p.fast.isHidden()
    assert p.status.text().startswith("Drag a slider")
    p.locks["gender"].click()
    p.sliders["beard"].setValue(1.0)  # a full beard on this face, gender held: more than the face can give
    assert doc.state.edits[-1] == AttributeEdit("attribute", "beard", 1.0)  # the slider value is the target
    qtbot.waitUntil(lambda: p._reading.state == doc.state, timeout=30000)
    now = float(p._reading.current[p._reading.layout.index("beard")])
    assert now < 0.9 and p.readings["beard"].text() == f"{now:.2f}"
    assert p.readings["beard"].styleSheet() == SHORT_STYLE
    assert "short of the 1.00 asked" in p.readings["beard"].toolTip()
    assert p.status.text().startswith(f"Fell short: beard {now:.2f} of 1.00")
    assert p.sliders["beard"].value() == pytest.approx(1.0)
    assert p.readings["age"].styleSheet() != SHORT_STYLE  # neither edited nor locked: never called short
    p.resets["beard"].click()
    qtbot.waitUntil(lambda: p._reading.state == doc.state, timeout=30000)
    assert p.readings["beard"].styleSheet() != SHORT_STYLE and not p.status.text().startswith("Fell short")
    p.method.activated.emit(p.method.findData("flow"))
    assert doc.state.edit_method == "flow"
    qtbot.waitUntil(lambda: p._reading.state == doc.state, timeout=30000)
    assert p.method_label.text() == "in use: StyleFlow flow" and not p.fast.isHidden()
    doc.undo_stack.undo()
    assert doc.state.edit_method == "auto" and p.method.currentData() == "auto"
    p._timer.stop()
