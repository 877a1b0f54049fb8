"""Model panel: open a generator file (any format the engine reads, an e4e checkpoint's generator and encoder
together), recent files, pair an e4e encoder file with the generator, what the loaded model is.

Loading happens on the engine worker (``ModelJob``); the panel keeps the document's model summary in step with the
state's model reference, so undoing a model change brings the previous model's layout back too. A pairing is checked
on the worker (``PairJob``: the encoder's W+ rows and width against the generator's) before it becomes the state's
``encoder`` (one undo step, saved in the project).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from editor.dialogs.error_box import as_report
from editor.widgets.icons import icon
from engine import ErrorReport, ModelJob, ModelRef, ModelSummary, Pairing, PairJob

SLOT = "model"
PAIR_SLOT = "pair"
MODEL_FILTER = "Generators and e4e checkpoints (*.pt *.pth *.pkl *.ckpt);;All files (*)"
ENCODER_FILTER = "e4e checkpoints (*.pt *.pth *.ckpt);;All files (*)"


def same_model(loaded: ModelRef, wanted: ModelRef) -> bool:
    """Whether a loaded model (its sha256 known) is the one ``wanted`` names (its sha256 may be unpinned)."""
    return loaded.path == wanted.path and wanted.sha256 in (None, loaded.sha256)


def encoder_text(summary: ModelSummary, paired: ModelRef | None) -> str:
    """Which encoder photos start from, in words: the paired e4e file, the model file's own, or none named."""
    if paired is not None:
        return f"Photo encoder: {paired.label()} (paired e4e)"
    if summary.encoder:
        return f"Photo encoder: its own ({summary.encoder})"
    return ""


def describe(summary: ModelSummary, paired: ModelRef | None = None) -> str:
    """One rich-text paragraph about a loaded model (and the e4e encoder ``paired`` with it)."""
    sha = summary.ref.sha256 or ""
    notes = "".join(f"<br><span style='color:#b58900'>• {n}</span>" for n in summary.notes)
    encoder = encoder_text(summary, paired)
    encoder = f"<br>{encoder}" if encoder else ""
    return (f"<b>{Path(summary.path).name if summary.ref.path else 'Embedded default'}</b><br>"
            f"StyleGAN2 · {summary.resolution}×{summary.resolution}&nbsp;px · {summary.num_ws}&nbsp;W+&nbsp;rows · "
            f"w&nbsp;{summary.w_dim} · {summary.parameters / 1e6:.1f}&nbsp;M&nbsp;parameters{encoder}<br>"
            f"<span style='color:gray'>{summary.format} · sha256 {sha[:12]}</span>{notes}")


class ModelPanel(QWidget):
    """Open / recent / info. ``message(str)`` for the status bar; ``failed(ErrorReport)`` when a model cannot be
    loaded."""

    message = Signal(str)
    failed = Signal(object)  # ErrorReport

    def __init__(self, document, bridge, settings, parent: QWidget | None = None):
        super().__init__(parent)
        self._doc = document
        self._bridge = bridge
        self._settings = settings
        self._user = False  # whether the model being loaded comes from the user opening a file
        self._applying = False

        self.open_button = QPushButton(icon("open_model"), "Open model…")
        self.open_button.setToolTip("Load a StyleGAN2 generator: NVIDIA .pkl / .pt, rosinality .pt, this editor's "
                                    "own files, or an e4e checkpoint (its generator and its photo encoder together) "
                                    "(Ctrl+O; you can also drop a file on the window)")
        self.recent_button = QToolButton(icon=icon("recent"), toolTip="Recently opened models",
                                         popupMode=QToolButton.ToolButtonPopupMode.InstantPopup)
        self.recent_menu = QMenu(self)
        self.recent_button.setMenu(self.recent_menu)
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self.default_button = QToolButton(icon=icon("model"), toolTip="Back to the embedded default model")
        self.default_button.clicked.connect(lambda: self.open_ref(ModelRef()))
        row = QHBoxLayout()
        row.addWidget(self.open_button, 1)
        row.addWidget(self.recent_button)
        row.addWidget(self.default_button)
        self.pair_button = QToolButton(text="Pair encoder…", toolTip="Use an e4e encoder file (such as "
                                       "e4e_ffhq_encode.pt) for this generator's photo inversions; refused when its "
                                       "W+ latents do not fit the generator")
        self.pair_button.clicked.connect(self.pair_dialog)
        row.addWidget(self.pair_button)
        self.info = QLabel("Loading the embedded default model…")
        self.info.setWordWrap(True)
        self.info.setTextFormat(self.info.textFormat().RichText)
        box = QGroupBox("Model")
        lay = QVBoxLayout(box)
        lay.addLayout(row)
        lay.addWidget(self.info)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(box)

        self.open_button.clicked.connect(self.open_dialog)
        document.changed.connect(self._on_changed)

    def open_dialog(self) -> None:
        start = str(Path(self._settings.recent("models")[0]).parent) if self._settings.recent("models") else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open a generator", start, MODEL_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            self.failed.emit(ErrorReport(f"Could not load the model: {path} is not a file."))
            return
        self.open_ref(ModelRef(path=str(path.resolve())), user=True)

    def pair_dialog(self) -> None:
        start = str(Path(self._settings.recent("models")[0]).parent) if self._settings.recent("models") else ""
        path, _ = QFileDialog.getOpenFileName(self, "Pair an e4e encoder with the model", start, ENCODER_FILTER)
        if path:
            self.pair_path(path)

    def pair_path(self, path: str | Path) -> None:
        """Check the e4e file at ``path`` against the model on the worker; a fitting one becomes the state's encoder."""
        path = Path(path)
        if not path.is_file():
            self.failed.emit(ErrorReport(f"Could not pair the encoder: {path} is not a file."))
            return
        self.message.emit(f"Checking {path.name} against {self._doc.state.model.label()}…")
        job = PairJob(self._doc.state, ModelRef(path=str(path.resolve())), "encoder")
        self._bridge.submit(job, slot=PAIR_SLOT).on(finished=self.apply_pairing, failed=self._pair_failed)

    def apply_pairing(self, pairing: Pairing) -> None:
        """Make a checked encoder pairing the state's (one undo step); other roles are the other panels'."""
        if pairing.role == "encoder":
            self.set_encoder(pairing.ref)

    def set_encoder(self, ref: ModelRef) -> None:
        """Make a checked (pinned) e4e file the encoder of the state's model: one undo step, kept in the project."""
        self._settings.add_recent("models", ref.path)
        self._doc.edit(f"Pair encoder {ref.label()}", encoder=ref)
        self.message.emit(f"Photos are now encoded by {ref.label()} in one pass; Refine optimises further")

    def _pair_failed(self, error: Exception) -> None:
        self.failed.emit(as_report(error).prefixed("Could not pair the encoder"))

    def open_ref(self, ref: ModelRef, *, user: bool = True) -> None:
        self.info.setText(f"Loading {ref.label()}…")
        self._user = user
        self._bridge.submit(ModelJob(ref), slot=SLOT).on(finished=self._on_loaded, failed=self._on_failed,
                                                         progress=self._on_progress)

    def load_current(self) -> None:
        """Load the state's model (at start-up, after opening a project, after undo)."""
        self.open_ref(self._doc.state.model, user=False)

    def _on_changed(self, state, fields) -> None:
        summary = self._doc.summary
        if "encoder" in fields and summary is not None:
            self.info.setText(describe(summary, state.encoder))
        if "model" in fields and not self._applying and (summary is None or not same_model(summary.ref, state.model)):
            self.load_current()

    def _on_progress(self, _fraction: float, text: str) -> None:
        if text:
            self.message.emit(text)

    def _on_loaded(self, summary: ModelSummary) -> None:
        user = self._user
        state = self._doc.state
        if user and summary.ref.path is not None:
            self._settings.add_recent("models", summary.ref.path)
        if user and not same_model(summary.ref, state.model):
            rows = state.rows if len(state.rows) == summary.num_ws else ()
            self._applying = True  # this edit's model is the one just loaded: no reload from _on_changed
            try:
                self._doc.edit(f"Open model {summary.ref.label()}",
                               model=summary.ref if summary.ref.path else ModelRef(), rows=rows,
                               cutoff=None if state.cutoff is None else min(state.cutoff, summary.num_ws),
                               base=None, noise_maps=None, photo=None, encoder=None)
                if state.photo is not None:
                    self.message.emit(f"The face of {state.photo.name} belongs to the previous model: "
                                      "invert the photo again in this one")
            finally:
                self._applying = False
        self._doc.set_summary(summary)
        self.info.setText(describe(summary, self._doc.state.encoder))
        self.message.emit(f"Loaded {summary.ref.label()}")

    def _on_failed(self, error: Exception) -> None:
        summary = self._doc.summary
        self.info.setText(describe(summary, self._doc.state.encoder) if summary is not None else "No model loaded")
        self.failed.emit(as_report(error).prefixed("Could not load the model"))

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        items = self._settings.recent("models")
        if not items:
            self.recent_menu.addAction("No recent models").setEnabled(False)
        for path in items:
            self.recent_menu.addAction(Path(path).name, lambda p=path: self.open_path(p)).setToolTip(path)
