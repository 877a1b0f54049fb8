"""The flow layout dialog: what an attribute flow's condition values are, for a flow file that does not say it.

The user states the number of lighting coefficients (their edit's W+ rows), then one table row per attribute in
condition order: its name, the W+ rows its edit changes, its slider range and degree; and the W+ row count the row
numbers are written for (or the generator's own). The one-line text of ``--flow-layout`` can be pasted instead. The
dialog opens with StyleFlow's layout when the condition has StyleFlow's 17 values, else with a template of the
right size whose rows are left empty: it never guesses them. OK stays disabled, with the reason shown, until the
layout is valid and has the flow's size.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine import (
    DEFAULT_DEGREE,
    DEFAULT_RANGE,
    STYLEFLOW,
    AttributeSpec,
    ConditionLayout,
    LayoutError,
    parse_layout,
    parse_rows,
    rows_text,
)

COLUMNS = ("Attribute", "W+ rows", "From", "To", "Degree")
NAME, ROWS, LOW, HIGH, DEGREE = range(len(COLUMNS))


class FlowLayoutDialog(QDialog):
    """Ask for the condition layout of a flow whose condition has ``cond_dim`` values. ``layout()`` after exec."""

    def __init__(self, cond_dim: int, *, name: str, initial: ConditionLayout | None = None, reason: str = "",
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.cond_dim = cond_dim
        self._filling = False
        self.setWindowTitle(f"Condition layout of {name}")
        intro = QLabel(f"<b>{name}</b> takes a condition of <b>{cond_dim}</b> values. Say what they are: first the "
                       "lighting coefficients, then the attributes in condition order, each with the W+ rows its edit "
                       "changes (like <tt>0-3,8</tt>). Rows outside an edit's rows are kept exactly.")
        intro.setWordWrap(True)
        self.reason = QLabel(reason)
        self.reason.setWordWrap(True)
        self.reason.setStyleSheet("color: palette(mid)")
        self.reason.setVisible(bool(reason))

        self.lights = QSpinBox(minimum=0, maximum=cond_dim)
        self.lights.setToolTip("How many lighting coefficients come first in the condition (0: none)")
        self.light_rows = QLineEdit(placeholderText="e.g. 7-11")
        self.light_rows.setToolTip("The W+ rows a lighting edit changes")
        self.num_ws = QSpinBox(minimum=0, maximum=64)
        self.num_ws.setSpecialValueText("the generator's own rows")
        self.num_ws.setSuffix(" rows")
        self.num_ws.setToolTip("The W+ row count the row numbers are written for (StyleFlow: 18). A generator with "
                               "another count uses the rows at the same resolutions. 'The generator's own rows': the "
                               "numbers are this generator's rows, and one it does not have is an error.")
        form = QFormLayout()
        form.addRow("Lighting coefficients", self.lights)
        form.addRow("Lighting W+ rows", self.light_rows)
        form.addRow("Row numbers for", self.num_ws)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        for c in (ROWS, LOW, HIGH, DEGREE):
            self.table.horizontalHeader().setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setToolTip("One row per attribute, in condition order: name, W+ rows, slider range, degree "
                              "(the target is original + degree × (slider − original))")

        self.text = QLineEdit()
        self.text.setFont(QFont("monospace"))
        self.text.setToolTip("The same layout as --flow-layout text: light=N@ROWS; NAME@ROWS=LO..HI*DEGREE; …")
        self.use_text = QPushButton("Use text")
        self.use_text.setToolTip("Fill the form from the text (as main.py --flow-layout reads it)")
        self.styleflow = QPushButton("StyleFlow's layout")
        self.styleflow.setToolTip("9 SH lighting coefficients, then gender, glasses, yaw, pitch, baldness, beard, age, "
                                  "expression with StyleFlow's rows, ranges and degrees")
        self.styleflow.setEnabled(cond_dim == STYLEFLOW.cond_dim)
        text_row = QHBoxLayout()
        text_row.addWidget(QLabel("As text"))
        text_row.addWidget(self.text, 1)
        text_row.addWidget(self.use_text)

        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c0392b")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.addButton(self.styleflow, QDialogButtonBox.ButtonRole.ResetRole)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addWidget(self.reason)
        lay.addLayout(form)
        lay.addWidget(self.table, 1)
        lay.addLayout(text_row)
        lay.addWidget(self.error)
        lay.addWidget(self.buttons)
        self.resize(560, 520)

        self.lights.valueChanged.connect(self._lights_changed)
        self.light_rows.textChanged.connect(self._changed)
        self.num_ws.valueChanged.connect(self._changed)
        self.table.itemChanged.connect(self._changed)
        self.use_text.clicked.connect(self.apply_text)
        self.text.returnPressed.connect(self.apply_text)
        self.styleflow.clicked.connect(lambda: self.set_layout(STYLEFLOW))
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        if initial is not None and initial.cond_dim == cond_dim:
            self.set_layout(initial)
        else:
            self._lights_changed(0)

    # ----- form <-> layout

    def set_layout(self, layout: ConditionLayout) -> None:
        """Show ``layout`` in the form (its size must be the flow's; otherwise the error says so)."""
        self._filling = True
        try:
            self.lights.setValue(layout.num_light)
            self.light_rows.setText(rows_text(layout.lighting_rows) if layout.lighting_rows else "")
            self.num_ws.setValue(layout.num_ws or 0)
            self.table.setRowCount(len(layout.attributes))
            for r, a in enumerate(layout.attributes):
                self._fill_row(r, a.name, rows_text(a.rows), a.range, a.degree)
        finally:
            self._filling = False
        self._changed()

    def _fill_row(self, r: int, name: str, rows: str, rng: tuple[float, float], degree: float) -> None:
        for c, value in ((NAME, name), (ROWS, rows), (LOW, f"{rng[0]:g}"), (HIGH, f"{rng[1]:g}"),
                         (DEGREE, f"{degree:g}")):
            item = QTableWidgetItem(value)
            if c != NAME:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(r, c, item)

    def _lights_changed(self, n: int) -> None:
        """The attribute rows follow the lighting count: the rest of the condition, kept or added empty."""
        if self._filling:
            return
        self._filling = True
        try:
            want, have = self.cond_dim - n, self.table.rowCount()
            self.table.setRowCount(max(want, 0))
            for r in range(have, want):
                self._fill_row(r, f"attr{r + 1}", "", DEFAULT_RANGE, DEFAULT_DEGREE)
            self.light_rows.setEnabled(n > 0)
        finally:
            self._filling = False
        self._changed()

    def _cell(self, r: int, c: int) -> str:
        item = self.table.item(r, c)
        return item.text().strip() if item is not None else ""

    def _read(self) -> ConditionLayout:
        """The layout the form describes; LayoutError saying what is wrong."""
        specs = []
        for r in range(self.table.rowCount()):
            name = self._cell(r, NAME)
            where = f"attribute row {r + 1}" + (f" ({name})" if name else "")
            rows_text = self._cell(r, ROWS)
            if not rows_text:
                raise LayoutError(f"{where}: give the W+ rows its edit changes")
            try:
                rng = (float(self._cell(r, LOW)), float(self._cell(r, HIGH)))
                degree = float(self._cell(r, DEGREE))
            except ValueError:
                raise LayoutError(f"{where}: the range and degree must be numbers") from None
            specs.append(AttributeSpec(name, parse_rows(rows_text, name or where), rng, degree))
        n = self.lights.value()
        light_text = self.light_rows.text().strip()
        if n and not light_text:
            raise LayoutError("give the W+ rows a lighting edit changes")
        layout = ConditionLayout(num_light=n, attributes=tuple(specs),
                                 lighting_rows=parse_rows(light_text, "the lighting") if n else (),
                                 num_ws=self.num_ws.value() or None)
        layout.check_size(self.cond_dim)
        return layout

    def layout(self) -> ConditionLayout | None:
        """The layout the form describes, or None while it is invalid (``error`` says why)."""
        try:
            return self._read()
        except LayoutError:
            return None

    def _changed(self, *_args) -> None:
        if self._filling:
            return
        try:
            layout = self._read()
        except LayoutError as e:
            self.error.setText(str(e)[:1].upper() + str(e)[1:])
            self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
            return
        self.error.setText("")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(True)
        if not self.text.hasFocus():
            self.text.setText(layout.to_text())

    def apply_text(self) -> None:
        """Fill the form from the text field (the ``--flow-layout`` form); a text that cannot be read is shown."""
        try:
            layout = parse_layout(self.text.text())
            layout.check_size(self.cond_dim)
        except LayoutError as e:
            self.error.setText(f"The text: {e}")
            self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
            return
        self.set_layout(layout)

    def accept(self) -> None:
        if self.layout() is None:
            self._changed()
            return
        super().accept()
