"""Attributes panel: one StyleFlow slider per attribute, showing the face's measured value and the target.

Moving a slider sets the attribute's target through StyleFlow's rule (``original + degree * (value - original)``)
as one edit in the state's edit list; a drag is one undo step and one edit. The estimator's readings arrive from
the engine (``AttributeReadJob``) after each change; a reset removes that attribute's edits; a lock holds an
attribute at its value while the others are edited (``apply_edits``' ``locks``).
"""
from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QToolButton, QVBoxLayout, QWidget
from superqt import QLabeledDoubleSlider

from engine.algorithms.flow_edit import (
    ATTRIBUTES,
    LIGHTING_PRESETS,
    NUM_LIGHT,
    SLIDER_RANGES,
    AttributeEdit,
    merge_edit,
    slider_from_target,
    slider_target,
)
from engine.render import AttributeReading, AttributeReadJob

from ..icons import icon

SLOT = "attributes"
UNITS = {"yaw": "°", "pitch": "°", "age": " y"}
TIPS = {
    "gender": "Towards 0 a more feminine face, towards 1 a more masculine one (rows 0–7: shape and coarse features)",
    "glasses": "Adds (1) or removes (0) glasses (rows 2–3)",
    "yaw": "Turns the head left or right, in degrees (the coarse rows 0–3)",
    "pitch": "Tilts the head up or down, in degrees (the coarse rows 0–3)",
    "baldness": "Recedes the hairline towards a bald head (rows 0–5)",
    "beard": "Grows (1) or shaves (0) a beard (rows 5–9)",
    "age": "The apparent age in years (rows 4–7)",
    "expression": "From a neutral face (0) to a broad smile (1) (rows 4–5)",
}


def _face(state):
    """The part of a state that decides the unedited face (and so the measured originals)."""
    return state.replace(edits=(), flow_fast=True, locks=())


def _fmt(name: str, value: float) -> str:
    if name in UNITS:
        return f"{round(value) + 0:.0f}{UNITS[name]}"  # + 0: no "-0"
    return f"{round(value, 2) + 0.0:.2f}"


class AttributesPanel(QWidget):
    """StyleFlow attribute sliders bound to the document's edit list. ``dragging(bool)`` while a slider is held."""

    dragging = Signal(bool)
    message = Signal(str)

    def __init__(self, document, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self._doc = document
        self._bridge = bridge
        self._reading: AttributeReading | None = None
        self._rid = None
        self.sliders: dict[str, QLabeledDoubleSlider] = {}
        self.readings: dict[str, QLabel] = {}
        self.resets: dict[str, QToolButton] = {}
        self.locks: dict[str, QToolButton] = {}

        box = QGroupBox("Attributes (StyleFlow)")
        grid = QGridLayout(box)
        grid.setColumnStretch(1, 1)
        for row, name in enumerate(ATTRIBUTES):
            lo, hi = SLIDER_RANGES[name]
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setRange(lo, hi)
            slider.setDecimals(1 if name in UNITS else 2)  # same label width for every row
            slider.setSingleStep((hi - lo) / 80)
            slider.setToolTip(TIPS[name])
            reading = QLabel("–")
            reading.setMinimumWidth(44)
            reading.setStyleSheet("color: palette(mid)")
            reading.setToolTip("What the attribute estimator reads on the face now")
            reset = QToolButton(icon=icon("reset"), autoRaise=True, toolTip=f"Undo every {name} edit on this face")
            lock = QToolButton(icon=icon("lock"), autoRaise=True, checkable=True,
                               toolTip=f"Hold {name} where it is while other attributes are edited (each edit "
                                       "then costs one more solve)")
            label = QLabel(name.capitalize())
            label.setToolTip(TIPS[name])
            grid.addWidget(label, row, 0)
            grid.addWidget(slider, row, 1)
            grid.addWidget(reading, row, 2)
            grid.addWidget(reset, row, 3)
            grid.addWidget(lock, row, 4)
            slider.valueChanged.connect(lambda v, n=name: self._slider_moved(n, v))
            slider.sliderPressed.connect(lambda: self.dragging.emit(True))
            slider.sliderReleased.connect(self._released)
            reset.clicked.connect(lambda _=False, n=name: self.reset_attribute(n))
            lock.toggled.connect(lambda on, n=name: self.set_locked(n, on))
            self.sliders[name], self.readings[name], self.resets[name], self.locks[name] = slider, reading, reset, lock
        self.lights: list[QLabeledDoubleSlider] = []
        light_header = QLabel("Lighting")
        light_header.setToolTip("Blend the face's lighting towards presets (W+ rows 7–11: shading and colour)")
        grid.addWidget(light_header, len(ATTRIBUTES), 0, 1, 5)
        for j, key in enumerate(LIGHTING_PRESETS):
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setRange(0.0, 1.0)
            slider.setDecimals(2)
            slider.setSingleStep(1 / 80)
            text = key.replace("_", " ").replace(" to ", " → ").capitalize()
            slider.setToolTip(f"0: the face's own lighting; 1: the '{text}' preset's lighting")
            label = QLabel(text)
            label.setToolTip(slider.toolTip())
            row = len(ATTRIBUTES) + 1 + j
            grid.addWidget(label, row, 0)
            grid.addWidget(slider, row, 1, 1, 4)
            slider.valueChanged.connect(lambda v, k=j: self._light_moved(k, v))
            slider.sliderPressed.connect(lambda: self.dragging.emit(True))
            slider.sliderReleased.connect(self._released)
            self.lights.append(slider)
        bottom = len(ATTRIBUTES) + 1 + len(LIGHTING_PRESETS)
        self.fast = QToolButton(text="Fast", checkable=True, toolTip="Fast solver for the edits (within a few "
                                "thousandths of the faithful one); off: StyleFlow's adaptive solver, slower")
        self.reset_all = QToolButton(text="Reset all", toolTip="Remove every attribute edit from this face")
        grid.addWidget(self.fast, bottom, 1, Qt.AlignmentFlag.AlignLeft)
        grid.addWidget(self.reset_all, bottom, 1, 1, 4, Qt.AlignmentFlag.AlignRight)
        self.status = QLabel("Measuring the face…")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: palette(mid)")
        grid.addWidget(self.status, bottom + 1, 0, 1, 5)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(box)

        self.fast.toggled.connect(lambda on: self._doc.edit("Fast attribute solver", flow_fast=on))
        self.reset_all.clicked.connect(lambda: self._doc.edit("Reset attributes", edits=()))
        self._timer = QTimer(self, singleShot=True, interval=120)
        self._timer.timeout.connect(self.request_reading)
        bridge.result.connect(self._on_result)
        bridge.failed.connect(self._on_failed)
        document.changed.connect(self._on_changed)
        self._set_enabled(False)
        self.refresh()

    def _set_enabled(self, on: bool) -> None:
        for w in (*self.sliders.values(), *self.resets.values(), *self.locks.values(), *self.lights, self.fast,
                  self.reset_all):
            w.setEnabled(on)
        if on:
            for name in self._doc.state.locks:
                self.sliders[name].setEnabled(False)

    def _released(self) -> None:
        self._doc.end_merge()
        self.dragging.emit(False)

    def _original(self, name: str) -> float | None:
        """The measured value of the current face before edits; None until the reading of this face is in."""
        r = self._reading
        if r is None or _face(r.state) != _face(self._doc.state):
            return None
        return float(r.base[NUM_LIGHT + ATTRIBUTES.index(name)])

    def _slider_moved(self, name: str, value: float) -> None:
        original = self._original(name)
        if original is None:
            return
        edit = AttributeEdit("attribute", name, slider_target(name, value, original))
        self._doc.edit(f"{name.capitalize()}", merge=f"attribute-{name}",
                       edits=merge_edit(self._doc.state.edits, edit))

    def _light_moved(self, index: int, weight: float) -> None:
        if self._reading is None or _face(self._reading.state) != _face(self._doc.state):
            return
        edit = AttributeEdit("lighting", index, weight)
        self._doc.edit("Lighting", merge=f"lighting-{index}", edits=merge_edit(self._doc.state.edits, edit))

    def reset_attribute(self, name: str) -> None:
        kept = tuple(e for e in self._doc.state.edits if not (e.kind == "attribute" and e.key == name))
        self._doc.edit(f"Reset {name}", edits=kept)

    def set_locked(self, name: str, on: bool) -> None:
        locks = set(self._doc.state.locks)
        if (name in locks) != on:
            self._doc.edit(f"{'Lock' if on else 'Unlock'} {name}", locks=tuple(locks ^ {name}))

    def request_reading(self) -> None:
        self._rid = self._bridge.submit(AttributeReadJob(self._doc.state), slot=SLOT)

    def _on_changed(self, state, fields) -> None:
        self.refresh()
        self._timer.start()

    def _on_result(self, slot: str, rid: int, reading: AttributeReading) -> None:
        if slot != SLOT or rid != self._rid:
            return
        self._reading = reading
        self._set_enabled(True)
        edited = {e.key for e in reading.state.edits if e.kind == "attribute"}
        self.status.setText(f"{len(reading.state.edits)} edit(s) on this face" if edited else
                            "Drag a slider to edit; the grey numbers are what the estimator reads now")
        self.refresh()

    def _on_failed(self, slot: str, rid: int, text: str) -> None:
        if slot != SLOT or rid != self._rid:
            return
        self._reading = None
        self._set_enabled(False)
        self.status.setText(f"Attribute sliders unavailable: {text}")

    def refresh(self) -> None:
        """Sliders show each attribute's target (the last edit's, else the measured value); labels the reading."""
        st = self._doc.state
        with QSignalBlocker(self.fast):
            self.fast.setChecked(st.flow_fast)
        usable = self.fast.isEnabled()
        targets = {e.key: e.value for e in st.edits if e.kind == "attribute"}
        for i, name in enumerate(ATTRIBUTES):
            original = self._original(name)
            slider = self.sliders[name]
            if original is not None:
                target = targets.get(name, original)
                with QSignalBlocker(slider):
                    slider.setValue(slider_from_target(name, target, original))
                now = self._reading.current[NUM_LIGHT + i] if self._reading.state == st else None
                self.readings[name].setText("–" if now is None else _fmt(name, float(now)))
            locked = name in st.locks
            with QSignalBlocker(self.locks[name]):
                self.locks[name].setChecked(locked)
            self.sliders[name].setEnabled(usable and not locked)
            self.resets[name].setEnabled(usable and name in targets)
        weights = {e.key: e.value for e in st.edits if e.kind == "lighting"}
        for j, slider in enumerate(self.lights):
            with QSignalBlocker(slider):
                slider.setValue(weights.get(j, 0.0))
