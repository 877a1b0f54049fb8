"""The model manager: every model file the document uses and the recent ones, with their format, architecture,
resolution, precision, device, memory use and what each is paired with (attribute flow, photo encoder, fine-tune).

The facts come from the engine worker (``ModelsJob``); a file the document's generator cannot use shows why in its
Status column. "Pair with the model…" checks a chosen file on the worker first (``PairJob``: an encoder's W+ rows and
width, a flow's latent width and condition layout, a fine-tune's architecture) and refuses, saying why, what does not
fit; a file that fits is handed to its panel through ``use(role, ref)`` (the model panel pairs an encoder, the
attribute panel opens a flow, the Translate panel a fine-tune). "Use selected" does the same for a listed file, and
opens a listed generator as the model.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from editor.dialogs.error_box import as_report
from engine import ROLE_NAMES, ModelFacts, ModelRef, ModelsJob, Pairing, PairJob

SLOT = "models"
PAIR_SLOT = "models-pair"
COLUMNS = ("File", "Role", "Status", "Architecture", "Resolution", "Format", "Precision", "Device", "Memory",
           "Pairs with")
WIDTHS = (135, 135, 125, 295, 75, 100, 70, 55, 70)  # the last column takes the rest
PAIR_ROLES = {"e4e encoder": "encoder", "Attribute flow (CNF)": "flow", "Fine-tune": "fine-tune"}
PAIR_FILTER = "Model files (*.pt *.pth *.pkl *.ckpt);;All files (*)"
REFUSED = QColor("#cb4b16")


def memory_text(n: int) -> str:
    """Bytes for people: '3.9 MB', '1.2 GB' ('' for nothing known)."""
    if n <= 0:
        return ""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def status_text(facts: ModelFacts) -> str:
    """The Status column: in use / recent, loaded or not, or that it cannot be used (the reason is below the
    table, ``refusals_text``, and in the cell's tooltip)."""
    if facts.problem:
        return "cannot be used"
    where = "in use" if facts.in_use else "recent"
    return f"{where}, loaded" if facts.loaded else f"{where}, not loaded"


def row_values(facts: ModelFacts) -> tuple[str, ...]:
    """The texts of one row, in ``COLUMNS`` order (the device only for a loaded file)."""
    res = f"{facts.resolution}×{facts.resolution}" if facts.resolution else ""
    return (facts.name, ROLE_NAMES.get(facts.role, facts.role), status_text(facts), facts.architecture, res,
            facts.format, facts.precision, facts.device if facts.loaded else "—", memory_text(facts.memory),
            "\n".join(facts.pairs))


def refusals_text(rows, model: str) -> str:
    """Why each listed file cannot be used with the generator ``model``, one line each (rich text)."""
    lines = [f"<b>{f.name}</b> cannot be used with {model}: {f.problem}" for f in rows if f.problem]
    return "<br>".join(lines)


class ModelsDialog(QDialog):
    """Model manager. ``use(role, ref)``: a checked file to use as ``role`` ('encoder', 'flow', 'fine-tune') or a
    generator ('generator') to open; ``message(str)`` for the status bar."""

    use = Signal(str, object)  # role, ModelRef
    message = Signal(str)

    def __init__(self, document, bridge, settings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models")
        self._doc, self._bridge, self._settings = document, bridge, settings
        self.rows: tuple[ModelFacts, ...] = ()
        self.last_refusal = ""

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setWordWrap(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setStyleSheet("QTableWidget::item { padding: 3px 4px; }")
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.itemDoubleClicked.connect(lambda _item: self.use_selected())

        self.status = QLabel("Reading the models…", wordWrap=True, textFormat=Qt.TextFormat.RichText)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.role = QComboBox(toolTip="What the chosen file is to be for the current generator")
        self.role.addItems(list(PAIR_ROLES))
        self.pair_button = QPushButton("Pair with the model…")
        self.pair_button.setToolTip("Choose a file and check it against the current generator (W dimension, W+ rows, "
                                    "condition layout); a file that does not fit is refused, saying why")
        self.pair_button.clicked.connect(self.pair_dialog)
        self.use_button = QPushButton("Use selected")
        self.use_button.setToolTip("Open the selected generator as the model, or pair the selected encoder or flow "
                                   "with it after checking them")
        self.use_button.clicked.connect(self.use_selected)
        self.use_button.setEnabled(False)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the facts again (after loading or pairing a model)")
        self.refresh_button.clicked.connect(self.refresh)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)

        pair = QHBoxLayout()
        pair.addWidget(QLabel("Pair as"))
        pair.addWidget(self.role)
        pair.addWidget(self.pair_button)
        pair.addStretch(1)
        pair.addWidget(self.use_button)
        pair.addWidget(self.refresh_button)
        pair.addWidget(buttons)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.status)
        lay.addLayout(pair)
        self.resize(1260, 420)
        document.modelLoaded.connect(lambda _summary: self.isVisible() and self.refresh())

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        """Ask the worker for the facts of the document's files and the recent ones."""
        self.status.setText("Reading the models…")
        self.status.setStyleSheet("")
        job = ModelsJob(self._doc.state, tuple(self._settings.recent("models")))
        self._bridge.submit(job, slot=SLOT).on(finished=self.show_rows, failed=self._failed)

    def show_rows(self, rows: tuple[ModelFacts, ...]) -> None:
        self.rows = tuple(rows)
        self.table.setRowCount(len(rows))
        for r, facts in enumerate(rows):
            for c, text in enumerate(row_values(facts)):
                item = QTableWidgetItem(text)
                item.setToolTip(facts.path if c == 0 else facts.problem if facts.problem and c == 2 else text)
                if facts.problem and c == 2:
                    item.setForeground(REFUSED)
                self.table.setItem(r, c, item)
        for c, w in enumerate(WIDTHS):
            self.table.setColumnWidth(c, w)
        self.table.resizeRowsToContents()
        model = self._doc.state.model.label()
        refusals = refusals_text(rows, model)
        self.status.setStyleSheet("")
        self.status.setText(f"{len(rows)} model file{'s' if len(rows) != 1 else ''} for {model}"
                            + (f"<br><span style='color:{REFUSED.name()}'>{refusals}</span>" if refusals else ""))
        self._selection_changed()

    def _selection_changed(self) -> None:
        facts = self.selected()
        self.use_button.setEnabled(facts is not None and not facts.problem and not (facts.in_use and
                                                                                    facts.role == "generator"))

    def selected(self) -> ModelFacts | None:
        rows = self.table.selectionModel().selectedRows()
        return self.rows[rows[0].row()] if rows and rows[0].row() < len(self.rows) else None

    def use_selected(self) -> None:
        facts = self.selected()
        if facts is None or facts.problem:
            return
        if facts.role == "generator":
            if not facts.in_use:
                self.use.emit("generator", ModelRef(path=facts.path))
            return
        self.pair_path(facts.path, facts.role)

    def pair_dialog(self) -> None:
        recent = self._settings.recent("models")
        start = str(Path(recent[0]).parent) if recent else ""
        path, _ = QFileDialog.getOpenFileName(self, f"Pair a file as the model's {self.role.currentText()}", start,
                                              PAIR_FILTER)
        if path:
            self.pair_path(path, PAIR_ROLES[self.role.currentText()])

    def pair_path(self, path: str | Path, role: str) -> None:
        """Check ``path`` as ``role`` for the current generator on the worker; a fit is used, a misfit refused."""
        self.status.setStyleSheet("")
        self.status.setText(f"Checking {Path(path).name} as the {ROLE_NAMES[role]} of "
                            f"{self._doc.state.model.label()}…")
        job = PairJob(self._doc.state, ModelRef(path=str(Path(path).resolve())), role)
        self._bridge.submit(job, slot=PAIR_SLOT).on(finished=self._paired, failed=self._refused)

    def _paired(self, pairing: Pairing) -> None:
        self.status.setStyleSheet("")
        self.status.setText(f"{pairing.ref.label()} fits: used as the {ROLE_NAMES[pairing.role]}")
        self.message.emit(f"Paired {pairing.ref.label()} as the {ROLE_NAMES[pairing.role]}")
        self.use.emit(pairing.role, pairing.ref)
        self.refresh()

    def _refused(self, error: Exception) -> None:
        self.last_refusal = as_report(error).message
        self.status.setStyleSheet(f"color: {REFUSED.name()}")
        self.status.setText(f"Refused: {self.last_refusal}")

    def _failed(self, error: Exception) -> None:
        self.status.setStyleSheet(f"color: {REFUSED.name()}")
        self.status.setText(f"Could not read the models: {as_report(error).message}")
