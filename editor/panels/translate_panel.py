"""Translate panel: render the edited face through a fine-tuned model of another domain (UI2I layer swap).

The translation is part of the edit state (``EditState.translation``): the target model, the swap depth (the last
resolution whose features come from the face's own model), a soft blend width, the swap mode and the appearance
(the face's own latent, a sampled style seed, or a reference image inverted in the target). Every control is one
document edit (a slider drag one undo step); ``LivePreview`` renders the result. Around it the panel runs worker
jobs (``engine.jobs.translate``): the target check, the untranslated face (the "before" of the side-by-side
view, ``source``), a grid of sampled appearances, the model distance, the samples export, a reference image's
inversion in the target, and a whole folder of photos translated with the current settings. The style grid
(``translate_grid``), the reference image (``translate_reference``) and the folder batch (``translate_folder``) live
in their own modules as mixins of ``TranslatePanel``; this module holds the controls, the state and the job events.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import QSignalBlocker, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from editor.controllers.bridge import QtRequest
from editor.dialogs.compare_window import CompareWindow
from editor.dialogs.error_box import as_report, sentence
from editor.panels.model_panel import MODEL_FILTER
from editor.panels.translate_folder import FolderBatchMixin
from editor.panels.translate_grid import GRID_N as GRID_N
from editor.panels.translate_grid import StyleGridMixin
from editor.panels.translate_reference import ReferenceImageMixin
from editor.widgets.icons import icon, tool_button
from engine import (
    DISTANCE_LATENTS,
    DistanceJob,
    EditState,
    InversionSettings,
    ModelDistance,
    ModelRef,
    SourceRender,
    SourceRenderJob,
    TargetInfo,
    TargetJob,
    Translation,
    shipped_targets,
)

TARGET_SLOT, SOURCE_SLOT, DISTANCE_SLOT = "translate-target", "translate-source", "translate-distance"
DEFAULT_DEPTH = 16  # UI2I's usual swap (its swap_layer 3): pose and shape from the face, the look from the target
FALLBACK_DEPTHS = (8, 16, 32, 64)  # until the model summary arrives
RENDER_DELAY_MS = 120  # let a burst of edits settle before the untranslated face and the grid are rendered
OPEN = "open"
MODES = (
    ("feature", "Features (UI2I)", "The face model's features up to the depth drive the target's layers above it "
                                   "(the paper's swap; the target's own low-resolution colours stay)"),
    ("weights", "Weights (Toonify)", "The face model's layers are used whole up to the depth, the target's "
                                     "above it"),
)
DEPTH_TIP = ("Swap depth: the face's own model draws everything up to this resolution (pose, shape, expression), "
             "the target everything finer (its domain's look). Lower = more of the target domain, higher = more "
             "of the face; none = the target model alone")
DISTANCE_TIP = (f"Model distance: the root-mean-square pixel difference between the face model's and the target's "
                f"images of the same {DISTANCE_LATENTS} latents (pixels in [-1, 1]). 0 means the same model; the "
                "larger it is, the further the fine-tuned model has drifted from the model it was trained from")


def depth_text(depth: int, full: int | None) -> str:
    if depth == 0:
        return "none"
    return f"full ({depth} px)" if depth == full else f"{depth} px"


def _double_slider(lo: float, hi: float, *, decimals: int, step: float, tip: str) -> QLabeledDoubleSlider:
    slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
    slider.setRange(lo, hi)
    slider.setDecimals(decimals)
    slider.setSingleStep(step)
    slider.setToolTip(tip)
    return slider


class TranslatePanel(StyleGridMixin, ReferenceImageMixin, FolderBatchMixin, QWidget):
    """Target, depth, blend, mode and appearance of the document's translation, with the jobs around them.

    ``message(str)`` for the status bar, ``failed(ErrorReport)`` for errors the user must see, ``dragging(bool)``
    while a slider is held, ``source(image or None)``: the untranslated face while a translation is on (the
    "before"), ``referenceRunningChanged(bool)`` when a reference image's inversion starts or ends."""

    message = Signal(str)
    failed = Signal(object)  # ErrorReport
    dragging = Signal(bool)
    source = Signal(object)
    referenceRunningChanged = Signal(bool)

    def __init__(self, document, bridge, settings=None, *, shipped: list | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self._doc, self._bridge, self._settings = document, bridge, settings
        self._shipped = shipped_targets() if shipped is None else list(shipped)
        self._opened: list[ModelRef] = []  # target files opened in this session, offered again in the combo
        self._depths: tuple[int, ...] = (0, *FALLBACK_DEPTHS)
        self._source_key: EditState | None = None
        self._distance_key: tuple | None = None
        self._last_dir = ""
        self._choices: list = []  # what each entry of the target combo stands for: None (off), a ModelRef, OPEN
        self._last: Translation | None = None  # the last translation shown: T switches it back on after Off
        self.last_source: SourceRender | None = None
        self.last_distance: ModelDistance | None = None
        self.inversion_steps = InversionSettings().steps  # for the reference image and the folder's photos

        self.target = QComboBox(toolTip="The fine-tuned model whose domain the face is rendered in: a shipped one, "
                                        "or any generator file fine-tuned from the face's model. Off: no translation "
                                        "(T switches the translation off and on)")
        self.target.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.target.setMinimumContentsLength(12)
        self.hint = QLabel("Render the face in another domain (a cartoon, a sketch…) with a model fine-tuned from "
                           "this one.", wordWrap=True)
        self.hint.setStyleSheet("color: palette(mid)")
        self.distance = QLabel("", toolTip=DISTANCE_TIP, wordWrap=True)
        self.distance.setStyleSheet("color: palette(mid)")

        self.depth = QSlider(Qt.Orientation.Horizontal, toolTip=DEPTH_TIP, pageStep=1,
                             tickPosition=QSlider.TickPosition.TicksBelow, tickInterval=1)
        self.depth_label = QLabel("", toolTip=DEPTH_TIP)
        self.depth_label.setMinimumWidth(70)
        self.blend = _double_slider(0.0, 3.0, decimals=1, step=0.1,
                                    tip="Blend width in octaves: 0 switches from the face's model to the target at "
                                        "the depth; wider fades between them over that many resolution doublings "
                                        "above it")
        self.mode = QComboBox(toolTip="How the face model's layers are swapped in")
        for key, text, tip in MODES:
            self.mode.addItem(text, key)
            self.mode.setItemData(self.mode.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)

        self.own_button = self._tool("own_style", "Own", "Appearance from the face's own latent", self.use_own_style)
        self.own_button.setCheckable(True)
        self.sample_button = self._tool("style_samples", "Samples", "Show a grid of appearances sampled from the "
                                        "target; click one to use it (Shift+T)", None)
        self.sample_button.setCheckable(True)
        self.sample_button.toggled.connect(self.set_grid_shown)
        self._build_reference()
        self.style_label = QLabel("", wordWrap=True)
        self.style_label.setStyleSheet("color: palette(mid)")
        self.style_psi = _double_slider(0.0, 1.0, decimals=2, step=0.01,
                                        tip="Style truncation ψ of sampled appearances: 0 = the target's average "
                                            "look, 1 = its full variety")

        self._build_grid_popup()

        self.compare_button = self._tool("side_by_side", "", "Side by side: the untranslated face and its "
                                         "translation next to each other (V)", None)
        self.compare_button.setCheckable(True)
        self._build_folder()
        self.methods_button = self._tool("compare_methods", "", "Compare translation methods: the layer swap, "
                                         "BicycleGAN and TUNIT on the same input, N samples each (Ctrl+T)",
                                         self.compare_methods)
        self.compare_window: CompareWindow | None = None

        appearance = QHBoxLayout()
        for b in (self.own_button, self.sample_button, self.reference_button):
            appearance.addWidget(b)
        appearance.addStretch(1)
        depth_row = QHBoxLayout()
        depth_row.addWidget(self.depth, 1)
        depth_row.addWidget(self.depth_label)
        ref_row = QHBoxLayout()
        ref_row.addWidget(self.ref_progress, 1)
        ref_row.addWidget(self.ref_cancel)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(self._label("Depth", DEPTH_TIP), depth_row)
        form.addRow(self._label("Blend", self.blend.toolTip()), self.blend)
        form.addRow(self._label("Swap", self.mode.toolTip()), self.mode)
        form.addRow(self._label("Style", "Where the target's appearance (colours, textures) comes from"), appearance)
        form.addRow(self._label("Style ψ", self.style_psi.toolTip()), self.style_psi)
        info = QHBoxLayout()
        info.addWidget(self.distance, 1)
        info.addWidget(self.compare_button)
        info.addWidget(self.folder_button)
        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.addLayout(info)
        body.addLayout(form)
        body.addWidget(self.style_label)
        body.addLayout(ref_row)

        box = QGroupBox("Translate")
        lay = QVBoxLayout(box)
        top = QHBoxLayout()
        top.addWidget(self._label("Target", self.target.toolTip()))
        top.addWidget(self.target, 1)
        top.addWidget(self.methods_button)
        lay.addLayout(top)
        lay.addWidget(self.hint)
        lay.addWidget(self.body)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(box)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)  # the mixing panel takes the rest

        self.act_toggle = self._key_action("&Translation on / off", "T", "translate",
                                           "Switch the translation off, or back on with its last settings",
                                           self.toggle)
        self.act_samples = self._key_action("Style &samples…", "Shift+T", "style_samples",
                                            "Show or hide the grid of appearances sampled from the target",
                                            lambda: self.set_grid_shown(not self._grid_on))
        self.act_methods = self._key_action("&Compare translation methods…", "Ctrl+T", "compare_methods",
                                            "The layer swap, BicycleGAN and TUNIT side by side on the same input",
                                            self.compare_methods)
        self._source_timer = QTimer(self, singleShot=True, interval=RENDER_DELAY_MS)
        self._source_timer.timeout.connect(self.request_source)
        self._grid_timer = QTimer(self, singleShot=True, interval=RENDER_DELAY_MS)
        self._grid_timer.timeout.connect(self.request_grid)
        self.target.currentIndexChanged.connect(self._target_chosen)
        self.depth.valueChanged.connect(self._depth_moved)
        self.blend.valueChanged.connect(lambda v: self._set("Blend width", "translate-blend", blend=round(v, 2)))
        self.style_psi.valueChanged.connect(
            lambda v: self._set("Style ψ", "translate-style-psi", style_psi=round(v, 3)))
        self.mode.currentIndexChanged.connect(
            lambda i: self._set(f"Swap {self.mode.itemText(i)}", None, mode=self.mode.itemData(i)))
        for slider in (self.depth, self.blend, self.style_psi):
            slider.sliderPressed.connect(lambda: self.dragging.emit(True))
            slider.sliderReleased.connect(self._released)
        self.grid_seed.valueChanged.connect(lambda _: self._grid_timer.start())
        document.changed.connect(lambda *_: self.refresh())
        document.modelLoaded.connect(lambda _: self.refresh())
        self._set_reference_running(False)
        self.refresh()

    # ----- small builders

    def _tool(self, name: str, text: str, tip: str, slot) -> QToolButton:
        return tool_button(name, tip, slot, text=text)

    def _key_action(self, text: str, key: str, icon_name: str, tip: str, slot) -> QAction:
        """A keyboard action of the panel (its window's shortcut; the main window also lists it in a menu)."""
        action = QAction(icon(icon_name), text, self, shortcut=QKeySequence(key),
                         shortcutContext=Qt.ShortcutContext.WindowShortcut)
        action.setToolTip(f"{tip} ({key})")
        action.setStatusTip(action.toolTip())
        action.triggered.connect(lambda _=False: slot())
        self.addAction(action)
        return action

    @staticmethod
    def _label(text: str, tip: str) -> QLabel:
        label = QLabel(text)
        label.setToolTip(tip)
        return label

    # ----- target

    def targets(self) -> list[tuple[str, ModelRef]]:
        """The targets offered in the combo: shipped ones, then files opened (and the state's own target)."""
        items = [(f"{t.label()} (shipped)", t.ref) for t in self._shipped]
        known = {ref for _, ref in items}
        tr = self._doc.state.translation
        extra = [*self._opened, *([tr.target] if tr is not None else [])]
        for ref in extra:
            if ref not in known:
                items.append((ref.label(), ref))
                known.add(ref)
        return items

    def open_target_dialog(self) -> None:
        start = self._last_dir or str(Path(self._shipped[0].ref.path).parent if self._shipped else "")
        path, _ = QFileDialog.getOpenFileName(self, "Open a target model (fine-tuned from the face's model)", start,
                                              MODEL_FILTER)
        self.refresh()  # the combo shows the state's target again until the file is checked
        if path:
            self._last_dir = str(Path(path).parent)
            self.set_target(ModelRef(path=str(Path(path).resolve())))

    def set_target(self, ref: ModelRef | None) -> None:
        """Translate into ``ref`` (checked on the worker first, then one edit) or switch the translation off."""
        if ref is None:
            self._doc.edit("Translation off", translation=None)
            return
        self.message.emit(f"Loading {ref.label()}…")
        self._submit(TargetJob(self._doc.state.model, ref), TARGET_SLOT, finished=self._target_checked,
                     failed=self._target_failed)

    def toggle(self) -> None:
        """Switch the translation off, or back on with the last settings (T)."""
        if self._doc.state.translation is not None:
            self._doc.edit("Translation off", translation=None)
        elif self._last is not None:
            self._doc.edit(f"Translate into {self._last.target.label()}", translation=self._last)
        else:
            self.message.emit("Choose a target model in the Translate panel first")

    def _target_chosen(self, index: int) -> None:
        data = self._choices[index] if 0 <= index < len(self._choices) else None
        if data == OPEN:
            self.open_target_dialog()
        else:
            self.set_target(data)

    def _target_checked(self, info: TargetInfo) -> None:
        if info.ref.path is not None and info.ref not in {t.ref for t in self._shipped} \
                and info.ref not in self._opened:
            self._opened.append(info.ref)
        tr = self._doc.state.translation or self._last
        if tr is None:
            new = Translation(info.ref, depth=self.default_depth())
        elif tr.target == info.ref:
            new = tr
        else:  # keep the settings; a reference's latent belongs to the previous target
            new = dataclasses.replace(tr, target=info.ref, style=tr.style if tr.style is None or
                                      tr.style.seed is not None else None)
        self._doc.edit(f"Translate into {info.ref.label()}", translation=new)

    def _target_failed(self, error: Exception) -> None:
        self.refresh()
        self.distance.setText("")
        self.failed.emit(as_report(error).prefixed("Cannot translate into this model"))

    def default_depth(self) -> int:
        choices = self._depths[1:]
        return DEFAULT_DEPTH if DEFAULT_DEPTH in choices else choices[len(choices) // 2]

    # ----- live settings

    def _set(self, text: str, merge: str | None, **changes) -> None:
        tr = self._doc.state.translation
        if tr is not None:
            self._doc.edit(text, merge=merge, translation=dataclasses.replace(tr, **changes))

    def _depth_moved(self, index: int) -> None:
        d = self._depths[index]
        self.depth_label.setText(depth_text(d, self._full()))
        self._set(f"Swap depth {depth_text(d, self._full())}", "translate-depth", depth=d)

    def _released(self) -> None:
        self._doc.end_merge()
        self.dragging.emit(False)

    def _full(self) -> int | None:
        s = self._doc.summary
        return s.resolution if s is not None else None

    def compare_methods(self) -> CompareWindow:
        """Open (or raise) the window comparing the layer swap, BicycleGAN and TUNIT on the same input (Ctrl+T)."""
        if self.compare_window is None:
            self.compare_window = CompareWindow(self._doc, self._bridge, targets=self._shipped, parent=self.window())
            self.compare_window.message.connect(self.message)
            self.compare_window.failed.connect(self.failed)
        self.compare_window.show()
        self.compare_window.raise_()
        self.compare_window.activateWindow()
        return self.compare_window

    # ----- appearance

    def use_own_style(self) -> None:
        self._set("Appearance: the face's own", None, style=None)

    def _start_dir(self) -> str:
        """Where the file dialogs open: the last folder used, else the user's pictures."""
        return self._last_dir or QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)

    def inversion_settings(self) -> InversionSettings:
        """The default inversion settings (``inversion_steps``), with LPIPS when its weights are set."""
        lpips = self._settings.lpips_path if self._settings is not None else ""
        extra = dict(loss="lpips", lpips_path=lpips) if lpips else {}
        return dataclasses.replace(InversionSettings(), steps=self.inversion_steps, **extra)

    # ----- state -> widgets

    def refresh(self) -> None:
        st, summary = self._doc.state, self._doc.summary
        tr = st.translation
        self._last = tr or self._last
        if summary is not None:
            self._depths = (0, *sorted({r for r in summary.row_resolutions if r >= 8}))
        if tr is not None and tr.depth not in self._depths:
            self._depths = tuple(sorted({*self._depths, tr.depth}))
        widgets = (self.target, self.depth, self.blend, self.mode, self.style_psi)
        blockers = [QSignalBlocker(w) for w in widgets]
        self._fill_targets()
        self.target.setCurrentIndex(self._choices.index(None if tr is None else tr.target))
        if tr is None and self._grid_on:
            self.set_grid_shown(False)
        self.hint.setVisible(tr is None)
        self.body.setVisible(tr is not None)
        if tr is not None:
            self.depth.setRange(0, len(self._depths) - 1)
            self.depth.setValue(self._depths.index(tr.depth))
            self.depth_label.setText(depth_text(tr.depth, self._full()))
            if abs(self.blend.value() - tr.blend) > 1e-9:
                self.blend.setValue(tr.blend)
            self.mode.setCurrentIndex(self.mode.findData(tr.mode))
            if abs(self.style_psi.value() - tr.style_psi) > 1e-9:
                self.style_psi.setValue(tr.style_psi)
            self.own_button.setChecked(tr.style is None)
            self.style_psi.setEnabled(self._grid_on or (tr.style is not None and tr.style.seed is not None))
            self.style_label.setText(self._style_text(tr))
            self.grid_panel.set_title(f"Styles sampled from {tr.target.label()}: click one to use it")
        del blockers
        self._check_sample()
        self._schedule()

    def _fill_targets(self) -> None:
        """Off, the targets, a separator, Open…: rebuilt only when the list of targets changed."""
        items = self.targets()
        choices = [None, *(ref for _, ref in items), None, OPEN]  # the second None is the separator
        if choices == self._choices:
            return
        self.target.clear()
        self.target.addItem("Off")
        self.target.setItemData(0, "No translation: the face as its own model draws it", Qt.ItemDataRole.ToolTipRole)
        for text, ref in items:
            self.target.addItem(icon("translate"), text)
            self.target.setItemData(self.target.count() - 1, ref.path, Qt.ItemDataRole.ToolTipRole)
        self.target.insertSeparator(self.target.count())
        self.target.addItem(icon("open_model"), "Open target model…")
        self.target.setItemData(self.target.count() - 1, "Any generator file fine-tuned from the face's model",
                                Qt.ItemDataRole.ToolTipRole)
        self._choices = choices

    @staticmethod
    def _style_text(tr: Translation) -> str:
        if tr.style is None:
            return "Style: the face's own latent drives the target."
        if tr.style.seed is not None:
            return f"Style: seed {tr.style.seed}, sampled from the target (ψ {tr.style_psi:.2f})."
        return f"Style: {tr.style.label()}, inverted in {tr.target.label()}."

    def _schedule(self) -> None:
        """Ask for what the state now needs: the untranslated face, the grid, the distance."""
        st = self._doc.state
        if st.translation is None:
            if self._source_key is not None:
                self._source_key = None
                self.last_source = None
                self.source.emit(None)
            return
        if st.replace(translation=None) != self._source_key:
            self._source_timer.start()
        if self._grid_on:
            self._grid_timer.start()
        key = (st.model, st.translation.target)
        if key != self._distance_key:
            self._distance_key = key
            self.distance.setText("Measuring the distance to the base…")
            self._submit(DistanceJob(*key), DISTANCE_SLOT, finished=self._distance_ready,
                         failed=self._distance_failed)

    def request_source(self) -> None:
        st = self._doc.state
        if st.translation is not None and st.replace(translation=None) != self._source_key:
            self._source_key = st.replace(translation=None)
            self._submit(SourceRenderJob(st), SOURCE_SLOT, finished=self._source_ready, failed=self._job_failed)

    def _source_ready(self, render: SourceRender) -> None:
        st = self._doc.state
        if st.translation is not None and render.state.replace(translation=None) == st.replace(translation=None):
            self.last_source = render
            self.source.emit(render.image)

    def _distance_ready(self, d: ModelDistance) -> None:
        self.last_distance = d
        text = f"Distance to its base: {d.distance:.3f}"
        base_sha = next((t.base_sha256 for t in self._shipped if t.ref == d.target), None)
        summary = self._doc.summary
        if base_sha and summary is not None and summary.ref.sha256 and base_sha != summary.ref.sha256:
            text += " · fine-tuned from another model than this face's"
        self.distance.setText(text)

    def _distance_failed(self, error: Exception) -> None:
        self.distance.setText(f"Distance not measured: {sentence(error)}")

    # ----- engine requests

    def _submit(self, job, slot: str, **handlers) -> QtRequest:
        """Submit ``job`` in ``slot``; ``handlers`` (``finished=``, ``failed=``, …) listen to its request."""
        return self._bridge.submit(job, slot=slot).on(**handlers)

    def _job_failed(self, error: Exception) -> None:
        """A render around the translation failed (the untranslated face, the grid, the samples): say so."""
        self.message.emit(f"Translate: {sentence(error)}")
