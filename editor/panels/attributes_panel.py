"""Attributes panel: one slider per attribute of the flow's condition layout, showing the face's measured value and
the target, and the flow's lighting presets.

"Edit by" picks the method (``EditState.edit_method``): the model's measured directions (the slider's value is the
reading asked of the face, reached by a closed loop; ``engine.jobs.directions``), StyleFlow's flow, or the best the
model has; the panel says which is in use. The grey number beside each slider is the estimator's reading of the face
shown; an edited or locked attribute whose reading falls short of its target is shown in orange, and the status line
says by how much.

Moving a slider sets the attribute's target through StyleFlow's rule (``original + degree * (value - original)``)
as one edit in the state's edit list; a drag is one undo step and one edit. The estimator's readings arrive from
the engine (``AttributeReadJob``) after each change, with the flow's layout: the sliders (names, count, ranges) and
the lighting presets are built from it, so a flow with another condition gets its own sliders. An attribute the
estimator cannot read starts at the middle of its range and shows "n/a"; it cannot be locked. A reset removes that
attribute's edits; a lock holds an attribute at its value while the others are edited (``apply_edits``' ``locks``).
"Open flow…" loads another flow file on the worker (``FlowProbeJob``) and, when the file does not state its
layout, asks for it (``FlowLayoutDialog``). "Read from flow" (Ctrl+Shift+F) starts the sliders from the flow's own
reading of the face instead of the estimator's (``FlowReadJob``: the condition under which the flow finds the face's
latent most likely), fitted on the worker with a progress bar and a stop button; unchecked, the estimator's again.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from editor.dialogs.error_box import sentence
from editor.dialogs.flow_layout import FlowLayoutDialog
from editor.widgets.icons import icon
from engine import (
    LIGHTING_PRESETS,
    MAX_EDITS,
    SLIDER_STEPS,
    STYLEFLOW,
    AttributeEdit,
    AttributeReading,
    AttributeReadJob,
    ConditionLayout,
    FlowProbe,
    FlowProbeJob,
    FlowReading,
    FlowReadJob,
    LayoutError,
    ModelRef,
    merge_edit,
    rows_text,
    slider_from_target,
    slider_target,
)

SLOT = "attributes"
PROBE_SLOT = "flow-open"
READ_SLOT = "flow-read"
READ_SHORTCUT = "Ctrl+Shift+F"
FLOW_FILTER = "Attribute flows (*.pt *.pth *.ckpt);;All files (*)"
UNITS = {"yaw": "°", "pitch": "°", "age": " y"}
TIPS = {
    "gender": "Towards 0 a more feminine face, towards 1 a more masculine one",
    "glasses": "Adds (1) or removes (0) glasses",
    "yaw": "Turns the head left or right, in degrees",
    "pitch": "Tilts the head up or down, in degrees",
    "baldness": "Recedes the hairline towards a bald head",
    "beard": "Grows (1) or shaves (0) a beard",
    "age": "The apparent age in years",
    "expression": "From a neutral face (0) to a broad smile (1)",
    "smile": "From a neutral face (0) to a broad smile (1)",
}
METHODS = {
    "auto": ("Best for this model", "the model's measured directions when it has them, else the flow"),
    "directions": ("Measured directions", "moves the face until the estimator reads the slider's value, holding "
                   "the locked attributes (needs directions measured on this model)"),
    "flow": ("StyleFlow flow", "StyleFlow's conditional flow, as in its paper and UI"),
}
SHORT_STYLE = "color: #c26a00; font-weight: bold"
METHOD_NAMES = {"directions": "measured directions", "flow": "StyleFlow flow"}


def _face(state):
    """The part of a state that decides the unedited face (and so the measured originals)."""
    return state.replace(edits=(), flow_fast=True, locks=(), edit_method="auto")


def _fmt(name: str, value: float) -> str:
    if name in UNITS:
        return f"{round(value) + 0:.0f}{UNITS[name]}"  # + 0: no "-0"
    return f"{round(value, 2) + 0.0:.2f}"


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


class AttributesPanel(QWidget):
    """Attribute sliders of the flow's layout bound to the document's edit list. ``dragging(bool)`` while a slider
    is held; ``message(str)`` for the status bar."""

    dragging = Signal(bool)
    message = Signal(str)

    def __init__(self, document, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self._doc = document
        self._bridge = bridge
        self._reading: AttributeReading | None = None
        self._ask = False
        self._built: tuple | None = None  # (layout, preset names, measured) the rows were built for
        self.sliders: dict[str, QLabeledDoubleSlider] = {}
        self.readings: dict[str, QLabel] = {}
        self.resets: dict[str, QToolButton] = {}
        self.locks: dict[str, QToolButton] = {}
        self.lights: list[QLabeledDoubleSlider] = []

        self.flow_label = QLabel()
        self.flow_label.setWordWrap(True)
        self.flow_label.setStyleSheet("color: palette(mid)")
        self.open_button = QPushButton(icon("open_model"), "Open flow…")
        self.open_button.setToolTip("Use another attribute flow file: StyleFlow's released state dict or this "
                                    "editor's own files (asks for the condition layout when the file does not say it)")
        self.layout_button = QToolButton(text="Layout…", toolTip="Show or change what the flow's condition values "
                                         "are (its lighting coefficients, attributes and their W+ rows)")
        self.default_button = QToolButton(icon=icon("reset"), autoRaise=True, toolTip="Back to the embedded "
                                          "default's attribute flow")
        self.method = QComboBox()
        for key, (text, tip) in METHODS.items():
            self.method.addItem(text, key)
            self.method.setItemData(self.method.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.method.setToolTip("How a slider moves the face: " + "; ".join(f"{t}: {tip}" for t, tip in
                                                                          METHODS.values()))
        self.method_label = QLabel("in use: –")  # its own wrapping line: a new text never widens the dock
        self.method_label.setWordWrap(True)
        self.method_label.setStyleSheet("color: palette(mid)")
        method_row = QHBoxLayout()
        method_row.addWidget(QLabel("Edit by"))
        method_row.addWidget(self.method, 1)
        top = QHBoxLayout()
        top.addWidget(self.open_button, 1)
        top.addWidget(self.layout_button)
        top.addWidget(self.default_button)

        self._rows_box = QWidget()
        self.fast = QToolButton(text="Fast", checkable=True, toolTip="Fast solver for the edits (within a few "
                                "thousandths of the faithful one); off: StyleFlow's adaptive solver, slower")
        self.reset_all = QToolButton(text="Reset all", toolTip="Remove every attribute edit from this face")
        self.read_action = QAction("Read from flow", self, checkable=True, shortcut=QKeySequence(READ_SHORTCUT),
                                   shortcutContext=Qt.ShortcutContext.WindowShortcut)
        self.read_action.setToolTip(f"Start the sliders from the flow's own reading of this face ({READ_SHORTCUT}): "
                                    "the condition under which the flow finds the face's latent most likely, "
                                    "fitted from the estimator's reading (a second or two). Off: the estimator's "
                                    "reading")
        self.addAction(self.read_action)
        self.read_button = QToolButton()
        self.read_button.setDefaultAction(self.read_action)
        self.read_progress = QProgressBar(textVisible=False, maximumWidth=90, maximumHeight=10)
        self.read_progress.setRange(0, 100)
        self.read_stop = QToolButton(icon=icon("cancel"), autoRaise=True, toolTip="Stop reading from the flow")
        self._read_request = None
        self._show_read(False)
        bottom = QHBoxLayout()
        bottom.addWidget(self.fast)
        bottom.addWidget(self.read_button)
        bottom.addWidget(self.read_progress)
        bottom.addWidget(self.read_stop)
        bottom.addStretch(1)
        bottom.addWidget(self.reset_all)
        self.status = QLabel("Measuring the face…")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: palette(mid)")
        box = QGroupBox("Attributes")
        self._box_layout = QVBoxLayout(box)
        self._box_layout.addLayout(method_row)
        self._box_layout.addWidget(self.method_label)
        self._box_layout.addLayout(top)
        self._box_layout.addWidget(self.flow_label)
        self._box_layout.addWidget(self._rows_box)
        self._box_layout.addLayout(bottom)
        self._box_layout.addWidget(self.status)
        self._box_layout.addStretch(1)  # extra height goes below the rows, not between them
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(box)
        self._build(STYLEFLOW, tuple(LIGHTING_PRESETS), (True,) * STYLEFLOW.cond_dim)

        self.fast.toggled.connect(lambda on: self._doc.edit("Fast attribute solver", flow_fast=on))
        self.method.activated.connect(lambda i: self._doc.edit("Edit method", edit_method=self.method.itemData(i)))
        self.reset_all.clicked.connect(lambda: self._doc.edit("Reset attributes", edits=()))
        self.read_action.triggered.connect(self.read_from_flow)
        self.read_stop.clicked.connect(self.stop_reading)
        self.open_button.clicked.connect(self.open_flow_dialog)
        self.layout_button.clicked.connect(lambda: self.open_flow(self._doc.state.flow, ask=True))
        self.default_button.clicked.connect(self.use_default_flow)
        self._timer = QTimer(self, singleShot=True, interval=120)
        self._timer.timeout.connect(self.request_reading)
        document.changed.connect(self._on_changed)
        self._set_enabled(False)
        self._show_flow()
        self.refresh()

    # ----- the rows, built from the flow's layout

    def _build(self, layout: ConditionLayout, preset_names: tuple[str, ...], measured: tuple[bool, ...]) -> None:
        """(Re)build one slider row per attribute and one per lighting preset."""
        self._built = (layout, preset_names, measured)
        old, self._rows_box = self._rows_box, QWidget()
        self._box_layout.replaceWidget(old, self._rows_box)
        old.deleteLater()
        grid = QGridLayout(self._rows_box)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setColumnStretch(1, 1)
        self.sliders, self.readings, self.resets, self.locks, self.lights = {}, {}, {}, {}, []
        for row, spec in enumerate(layout.attributes):
            name, (lo, hi) = spec.name, spec.range
            read = measured[layout.index(name)]
            tip = f"{TIPS.get(name, _title(name))} (W+ rows {rows_text(spec.rows)}; range {lo:g} to {hi:g})"
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setRange(lo, hi)
            slider.setDecimals(1 if name in UNITS else 2)  # same label width for every row
            slider.setSingleStep((hi - lo) / SLIDER_STEPS)
            slider.setToolTip(tip)
            reading = QLabel("–" if read else "n/a")
            reading.setMinimumWidth(44)
            reading.setStyleSheet("color: palette(mid)")
            reading.setToolTip("What the attribute estimator reads on the face now" if read else
                               "The attribute estimator does not read this attribute: the slider starts at the "
                               "middle of its range, and it cannot be locked")
            reset = QToolButton(icon=icon("reset"), autoRaise=True, toolTip=f"Undo every {name} edit on this face")
            lock = QToolButton(icon=icon("lock"), autoRaise=True, checkable=True,
                               toolTip=f"Hold {name} where it is while other attributes are edited (each edit "
                                       "then costs one more solve)" if read else
                               f"{_title(name)} cannot be held: the attribute estimator does not read it")
            label = QLabel(_title(name))
            label.setToolTip(tip)
            for col, w in enumerate((label, slider, reading, reset, lock)):
                grid.addWidget(w, row, col)
            slider.valueChanged.connect(lambda v, n=name: self._slider_moved(n, v))
            slider.sliderPressed.connect(lambda: self.dragging.emit(True))
            slider.sliderReleased.connect(self._released)
            reset.clicked.connect(lambda _=False, n=name: self.reset_attribute(n))
            lock.toggled.connect(lambda on, n=name: self.set_locked(n, on))
            self.sliders[name], self.readings[name], self.resets[name], self.locks[name] = slider, reading, reset, lock
        first = len(layout.attributes)
        self.light_header = None
        if layout.num_light:
            rows = rows_text(layout.lighting_rows)
            header = QLabel("Lighting" if preset_names else "Lighting: this flow has no presets to blend towards")
            header.setToolTip(f"Blend the face's lighting towards presets (W+ rows {rows}: shading and colour)")
            grid.addWidget(header, first, 0, 1, 5)
            self.light_header = header
        for j, key in enumerate(preset_names):
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setRange(0.0, 1.0)
            slider.setDecimals(2)
            slider.setSingleStep(1 / SLIDER_STEPS)
            text = key.replace("_", " ").replace(" to ", " → ").capitalize()
            slider.setToolTip(f"0: the face's own lighting; 1: the '{text}' preset's lighting")
            label = QLabel(text)
            label.setToolTip(slider.toolTip())
            grid.addWidget(label, first + 1 + j, 0)
            grid.addWidget(slider, first + 1 + j, 1, 1, 4)
            slider.valueChanged.connect(lambda v, k=j: self._light_moved(k, v))
            slider.sliderPressed.connect(lambda: self.dragging.emit(True))
            slider.sliderReleased.connect(self._released)
            self.lights.append(slider)

    def _show_flow(self) -> None:
        st = self._doc.state
        r = self._reading
        current = r is not None and (r.state.flow, r.state.flow_layout) == (st.flow, st.flow_layout)
        layout = r.layout if current else st.flow_layout
        where = "embedded default" if st.flow.is_default else Path(st.flow.path).name
        given = " (layout given by you)" if st.flow_layout is not None else ""
        what = (f"{layout.num_light} lighting values, {len(layout.attributes)} attributes{given}" if layout is not None
                else "loading…")
        self.flow_label.setText(f"Flow: {where} · {what}")
        self.flow_label.setToolTip("" if layout is None else layout.describe())
        self.layout_button.setEnabled(not st.flow.is_default)
        self.default_button.setEnabled(not st.flow.is_default)

    # ----- opening another flow

    def open_flow_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open an attribute flow", "", FLOW_FILTER)
        if path:
            self.open_flow(ModelRef(path=str(Path(path).resolve())))

    def open_flow(self, ref: ModelRef, *, ask: bool = False) -> None:
        """Load ``ref`` on the worker, then switch to it (asking for its layout when the file does not state it, or
        always with ``ask``)."""
        self._ask = ask
        self.status.setText(f"Opening {ref.label()}…")
        self._bridge.submit(FlowProbeJob(ref), slot=PROBE_SLOT).on(finished=self._on_probe,
                                                                   failed=self._on_probe_failed)

    def ask_layout(self, probe: FlowProbe, initial: ConditionLayout | None) -> ConditionLayout | None:
        """The user's layout for ``probe``'s flow from the layout dialog; None when cancelled."""
        reason = "" if probe.layout is None else f"Without your layout, it would be read as {probe.layout_source}."
        dialog = FlowLayoutDialog(probe.cond_dim, name=probe.ref.label(), initial=initial, reason=reason, parent=self)
        return dialog.layout() if dialog.exec() == QDialog.DialogCode.Accepted else None

    def _on_probe(self, probe: FlowProbe) -> None:
        st = self._doc.state
        layout = None
        if probe.stated and self._ask:
            self.status.setText(f"{probe.ref.label()} states its own condition layout: {probe.layout.describe()}")
            return
        if not probe.stated:
            mine = st.flow_layout if st.flow.path == probe.ref.path else None
            layout = self.ask_layout(probe, mine or probe.layout)
            if layout is None:
                self.status.setText(f"{probe.ref.label()} was not opened: it needs its condition layout")
                return
        self._doc.edit(f"Open attribute flow {probe.ref.label()}", flow=probe.ref, flow_layout=layout, edits=(),
                       locks=())
        self.message.emit(f"Attribute flow {probe.ref.label()}: {probe.description}")

    def use_default_flow(self) -> None:
        self._doc.edit("Embedded default flow", flow=ModelRef(), flow_layout=None, edits=(), locks=())

    # ----- edits

    def _set_enabled(self, on: bool) -> None:
        self.read_action.setEnabled(on)
        for w in (*self.sliders.values(), *self.resets.values(), *self.locks.values(), *self.lights, self.fast,
                  self.reset_all):
            w.setEnabled(on)
        if on:
            layout, _, measured = self._built
            for name, lock in self.locks.items():
                lock.setEnabled(measured[layout.index(name)])
            for key in self._doc.state.locks:
                if self._name(key) in self.sliders:
                    self.sliders[self._name(key)].setEnabled(False)

    def _released(self) -> None:
        self._doc.end_merge()
        self.dragging.emit(False)

    def _original(self, name: str) -> float | None:
        """The measured value of the current face before edits; None until the reading of this face is in."""
        r = self._reading
        if r is None or _face(r.state) != _face(self._doc.state):
            return None
        return float(r.base[r.layout.index(name)])

    def _method(self) -> str | None:
        """The method editing the face ('directions' or 'flow', from the engine's last reading of this model and
        flow); None before the first reading."""
        r, st = self._reading, self._doc.state
        if r is None or (r.state.model, r.state.flow, r.state.edit_method) != (st.model, st.flow, st.edit_method):
            return None
        return r.method

    def _tolerance(self, name: str) -> float:
        """How far a reading may fall from its target before the panel says the edit fell short."""
        layout = self._built[0]
        r = self._reading
        if r is not None and r.spread:
            return 0.25 * r.spread[layout.index(name)]
        lo, hi = layout.spec(name).range
        return 0.05 * (hi - lo)

    def _slider_moved(self, name: str, value: float) -> None:
        original = self._original(name)
        if original is None:
            return
        target = value if self._method() == "directions" else slider_target(name, value, original,
                                                                             layout=self._built[0])
        edit = AttributeEdit("attribute", name, target)
        self._push_edit(f"{_title(name)}", f"attribute-{name}", edit)

    def _light_moved(self, index: int, weight: float) -> None:
        if self._reading is None or _face(self._reading.state) != _face(self._doc.state):
            return
        self._push_edit("Lighting", f"lighting-{index}", AttributeEdit("lighting", index, weight))

    def _push_edit(self, text: str, merge: str, edit: AttributeEdit) -> None:
        """Add ``edit`` to the face's edit list (one undo step per drag), or say why not: the list is full."""
        edits = merge_edit(self._doc.state.edits, edit)
        if len(edits) > MAX_EDITS:
            self.message.emit(f"This face has {MAX_EDITS} attribute edits, the most it can replay: reset an "
                              "attribute (or all) to edit further")
            self.refresh()
            return
        self._doc.edit(text, merge=merge, edits=edits)

    def _name(self, key: str) -> str | None:
        """The built layout's name for an edit's or lock's attribute key (None: not one of this flow's)."""
        try:
            return self._built[0].canonical(key)
        except LayoutError:
            return None

    def reset_attribute(self, name: str) -> None:
        kept = tuple(e for e in self._doc.state.edits if not (e.kind == "attribute" and self._name(e.key) == name))
        self._doc.edit(f"Reset {name}", edits=kept)

    def set_locked(self, name: str, on: bool) -> None:
        locks = {self._name(a) or a for a in self._doc.state.locks}
        if (name in locks) != on:
            self._doc.edit(f"{'Lock' if on else 'Unlock'} {name}", locks=tuple(locks ^ {name}))

    # ----- the starting condition read from the flow

    def read_from_flow(self, on: bool) -> None:
        """On: fit the flow's reading of the face on the worker, then start the sliders from it; off: back to the
        estimator's reading (stopping a fit under way)."""
        st = self._doc.state
        if not on:
            self.stop_reading()
            if st.attribute_source != "estimator":
                self._doc.edit("Attributes from the estimator", attribute_source="estimator")
            return
        if st.attribute_source == "flow" or self._read_request is not None:
            return
        self._read_request = self._bridge.submit(FlowReadJob(st), slot=READ_SLOT).on(
            finished=self._on_flow_read, failed=self._on_flow_read_failed, progress=self._on_read_progress,
            cancelled=self._on_read_stopped)
        self.read_progress.setValue(0)
        self._show_read(True)
        self.status.setText("Reading the attributes from the flow…")

    def stop_reading(self) -> None:
        if self._read_request is not None:
            self._read_request.cancel()

    def _show_read(self, running: bool) -> None:
        self.read_progress.setVisible(running)
        self.read_stop.setVisible(running)

    def _read_ended(self) -> None:
        self._read_request = None
        self._show_read(False)
        self.refresh()

    def _on_read_progress(self, fraction: float, message: str) -> None:
        self.read_progress.setValue(round(100 * fraction))
        if message:
            self.status.setText(message)

    def _on_flow_read(self, reading: FlowReading) -> None:
        self._read_ended()
        if reading.state.replace(edits=(), locks=()) != self._doc.state.replace(edits=(), locks=()):
            self.status.setText("The face changed while the flow was reading it: read it again")
            return
        self._doc.edit("Read attributes from the flow", attribute_source="flow")
        self.message.emit(f"Attributes read from the flow in {reading.ms / 1000:.1f} s")

    def _on_flow_read_failed(self, error: Exception) -> None:
        self._read_ended()
        self.status.setText(f"Could not read the attributes from the flow: {sentence(error)}")

    def _on_read_stopped(self) -> None:
        self._read_ended()
        self.status.setText("Reading from the flow stopped; the sliders start from the estimator's reading")

    # ----- readings from the engine

    def request_reading(self) -> None:
        self._bridge.submit(AttributeReadJob(self._doc.state), slot=SLOT).on(finished=self._on_reading,
                                                                            failed=self._on_failed)

    def _on_changed(self, state, fields) -> None:
        if fields & {"flow", "flow_layout"}:
            self._reading = None
            self._set_enabled(False)
            self.status.setText("Loading the attribute flow…")
        self._show_flow()
        self.refresh()
        self._timer.start()

    def _on_reading(self, reading: AttributeReading) -> None:
        built = (reading.layout, reading.preset_names, reading.measured)
        if built != self._built:
            self._build(*built)
        self._rows_box.setVisible(True)
        self._reading = reading
        self._show_flow()
        self._set_enabled(True)
        edited = {e.key for e in reading.state.edits if e.kind == "attribute"}
        flow = reading.state.attribute_source == "flow"
        blind = [n for n in reading.layout.names if not reading.measured[reading.layout.index(n)]]
        note = (f" The estimator cannot read {', '.join(blind)}: {'it starts' if len(blind) == 1 else 'they start'} "
                "at the middle of the range (Read from flow reads it)." if blind and not flow else "")
        source = " The sliders start from the flow's reading of the face." if flow else ""
        lead = (f"{len(reading.state.edits)} edit(s) on this face" if edited else
                "Drag a slider to edit; the grey numbers are what the estimator reads now.")
        self.status.setText(lead + source + note)
        self.refresh()

    def _on_probe_failed(self, error: Exception) -> None:
        self.status.setText(f"Could not open the flow: {sentence(error)}")
        self.message.emit(f"Could not open the flow: {sentence(error)}")

    def _on_failed(self, error: Exception) -> None:
        self._reading = None
        self._set_enabled(False)
        self._rows_box.setVisible(False)  # the sliders of another layout would mislead
        st = self._doc.state
        where = "embedded default" if st.flow.is_default else Path(st.flow.path).name
        self.flow_label.setText(f"Flow: {where} · not usable")
        self.status.setText(f"Attribute sliders unavailable: {sentence(error)}")

    def refresh(self) -> None:
        """Sliders show each attribute's target (the last edit's, else the measured value); labels the reading."""
        st = self._doc.state
        with QSignalBlocker(self.fast):
            self.fast.setChecked(st.flow_fast)
        with QSignalBlocker(self.read_action):
            self.read_action.setChecked(st.attribute_source == "flow" or self._read_request is not None)
        usable = self.fast.isEnabled()
        layout, _, measured = self._built
        targets = {self._name(e.key): e.value for e in st.edits if e.kind == "attribute"}
        locks = {self._name(a) for a in st.locks}
        direct = self._method() == "directions"
        with QSignalBlocker(self.method):
            self.method.setCurrentIndex(max(0, self.method.findData(st.edit_method)))
        method = self._method()
        self.method_label.setText("in use: –" if method is None else f"in use: {METHOD_NAMES[method]}")
        self.fast.setVisible(method != "directions")
        short = []
        for name in layout.names:
            original = self._original(name)
            slider = self.sliders[name]
            read = measured[layout.index(name)]
            if original is not None:
                target = targets.get(name, original)
                with QSignalBlocker(slider):
                    slider.setValue(target if direct else slider_from_target(name, target, original, layout=layout))
                now = self._reading.current[layout.index(name)] if self._reading.state == st else None
                if read:
                    self.readings[name].setText("–" if now is None else _fmt(name, float(now)))
                    aim = None if now is None else float(self._reading.target[layout.index(name)])
                    off = (name in targets or name in locks) and aim is not None and \
                        abs(float(now) - aim) > self._tolerance(name)
                    self.readings[name].setStyleSheet(SHORT_STYLE if off else "color: palette(mid)")
                    self.readings[name].setToolTip(
                        f"The face reads {_fmt(name, float(now))}, short of the {_fmt(name, aim)} asked: this face "
                        "cannot go further that way without changing others" if off else
                        "What the attribute estimator reads on the face now")
                    if off:
                        short.append(f"{_title(name).lower()} {_fmt(name, float(now))} of {_fmt(name, aim)}")
            locked = name in locks
            with QSignalBlocker(self.locks[name]):
                self.locks[name].setChecked(locked)
            self.sliders[name].setEnabled(usable and not locked and original is not None)  # a move needs the reading
            self.locks[name].setEnabled(usable and read)
            self.resets[name].setEnabled(usable and name in targets)
        if short and self._reading is not None and self._reading.state == st:
            self.status.setText("Fell short: " + ", ".join(short) + " (the number beside each slider is what the "
                                "face shown reads)")
        weights = {e.key: e.value for e in st.edits if e.kind == "lighting"}
        for j, slider in enumerate(self.lights):
            with QSignalBlocker(slider):
                slider.setValue(weights.get(j, 0.0))
