"""Style-mixing panel: every W+ row picks its source among the base seed and extra seeds or saved latents.

Rows are grouped coarse / middle / fine by the resolution they feed; sources are columns with thumbnails rendered on
the engine worker (``ThumbnailJob``). A group's header row holds presets that take the whole group from one source.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QSignalBlocker, QSize, Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import qdebounced

from editor.controllers.bridge import QtRequest
from editor.dialogs.error_box import sentence, show_error
from editor.panels.generation_panel import SEED_MAX
from editor.widgets.icons import icon
from editor.widgets.images import to_qimage
from engine import EditState, ProjectError, Source, ThumbnailJob, ThumbnailResult, load_latent

SLOT = "thumbs"
THUMB_PX = 48  # thumbnails are shown this size (px)
THUMB_LIMIT = 64  # and rendered at the largest synthesis block up to this size (px)
THUMB_DELAY_MS = 150  # wait for a burst of edits (ψ drag, seed wheel) to settle before rendering thumbnails
PROPOSED_SEEDS = 100_000  # new sources are proposed from short, easy to note seeds (any seed can be typed)
COLUMN_PX = 60  # width of a source column (px)
LATENT_FILTER = "Latents (*.npy *.pt);;All files (*)"
THUMB_FIELDS = frozenset({"model", "seed", "psi", "cutoff", "noise_mode", "noise_seed", "sources", "base",
                          "noise_maps"})

# name, title, what its rows do to the face
GROUPS = (
    ("coarse", "Coarse", "pose, face shape, hair length and glasses"),
    ("middle", "Middle", "facial features, eyes open or closed, hairstyle"),
    ("fine", "Fine", "colours (skin, hair, background) and micro-texture"),
)
ALL_ROWS_TIP = ("coarse rows set pose, face shape and hair length; middle rows set features, eyes and hairstyle; "
                "fine rows set colours and micro-texture")


def row_group(resolution: int) -> str:
    """The group of a W+ row by the resolution it feeds: <= 8 px coarse, 16–32 px middle, >= 64 px fine."""
    return "coarse" if resolution <= 8 else "middle" if resolution <= 32 else "fine"


def group_rows(row_resolutions: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Row indices per group (empty groups left out, e.g. no fine rows in a 32 px model), plus "all"."""
    groups = {name: tuple(i for i, r in enumerate(row_resolutions) if row_group(r) == name) for name, *_ in GROUPS}
    return {**{k: v for k, v in groups.items() if v}, "all": tuple(range(len(row_resolutions)))}


def normalized_rows(rows) -> tuple[int, ...]:
    """Rows as stored in the state: all-base mixing is stored as () (no mixing)."""
    rows = tuple(int(r) for r in rows)
    return rows if any(rows) else ()


def _render_key(state: EditState) -> tuple:
    """Everything besides the source that changes a thumbnail."""
    return state.model, state.psi, state.cutoff, state.noise_mode, state.noise_seed, state.noise_maps


def base_source(state: EditState) -> Source:
    """The base face's source: the seed, or the latent of an inverted photo."""
    return state.base or Source(seed=state.seed)


class GridScroll(QScrollArea):
    """The grid's view: always as tall as the grid (every W+ row shows; the side column scrolls instead), scrolling
    sideways when the source columns are wider than the panel."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, widgetResizable=True, frameShape=QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self._hinted = 0  # the height last told to the layout

    def _height(self) -> int:
        grid = self.widget()
        if grid is None:
            return 0
        hint = grid.sizeHint()
        sideways = hint.width() > self.viewport().width() if self.isVisible() else False
        self._hinted = hint.height() + (self.horizontalScrollBar().sizeHint().height() if sideways else 0)
        return self._hinted

    def _follow(self) -> None:
        before = self._hinted
        if self._height() != before:
            self.updateGeometry()

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self._height())

    def minimumSizeHint(self) -> QSize:
        return QSize(super().minimumSizeHint().width(), self._height())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._follow()  # the sideways scroll bar may come or go

    def eventFilter(self, obj, event) -> bool:
        if obj is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self._follow()  # rows or columns were rebuilt
        return super().eventFilter(obj, event)

    def setWidget(self, widget: QWidget) -> None:
        super().setWidget(widget)
        widget.installEventFilter(self)


class MixingPanel(QWidget):
    """Sources as columns, W+ rows as radio rows, group presets. ``message(str)`` for the status bar."""

    message = Signal(str)

    def __init__(self, document, bridge, parent: QWidget | None = None):
        super().__init__(parent)
        self._doc = document
        self._bridge = bridge
        self._rng = random.Random()  # only proposes new seeds; the added seed is recorded in the state
        self._last_dir = ""
        self._layout_key: tuple | None = None
        self._cache: dict[tuple, QPixmap] = {}  # (render key, Source) -> thumbnail
        self._thumb_key: tuple | None = None  # the render key of the thumbnails being rendered
        self._thumb_error = ""
        self._radios: list[list[QRadioButton]] = []  # [row][source column]
        self._row_groups: list[QButtonGroup] = []
        self._presets: dict[tuple[str, int], QToolButton] = {}  # (group, source column) -> button
        self._thumbs: list[QLabel] = []
        self._removers: dict[int, QToolButton] = {}

        self.seed = QSpinBox(maximum=SEED_MAX, value=self._rng.randrange(PROPOSED_SEEDS))
        self.seed.setMinimumWidth(80)  # below its size hint so the panel fits ~300 px; it grows when there is room
        self.seed.setToolTip("Seed of the next face to add as a mixing source (a new random seed after each add)")
        self.add_seed_button = self._tool("add_seed", "Seed", "Add this seed's face as a source column", self.add_seed)
        self.add_latent_button = self._tool("add_latent", "Latent…", "Add a saved latent (.npy / .pt, W or W+ of "
                                            "this model) as a source column", self.add_latent_dialog)
        self.reset_button = self._tool("reset", "", "Every row back to the base face (no mixing)", self.reset_rows)
        top = QHBoxLayout()
        top.addWidget(self.seed, 1)
        for b in (self.add_seed_button, self.add_latent_button, self.reset_button):
            top.addWidget(b)

        self.warning = QLabel(wordWrap=True, visible=False)
        self.warning.setStyleSheet("color: #b58900")
        self.grid_widget = QWidget()
        self.grid = QGridLayout(self.grid_widget)
        self.grid.setContentsMargins(2, 2, 2, 2)
        self.grid.setHorizontalSpacing(2)
        self.grid.setVerticalSpacing(1)
        self.scroll = GridScroll()
        self.scroll.setWidget(self.grid_widget)

        box = QGroupBox("Style mixing")
        box.setToolTip(f"Each W+ row takes its style from one source face: {ALL_ROWS_TIP}")
        lay = QVBoxLayout(box)
        lay.addLayout(top)
        lay.addWidget(self.warning)
        lay.addWidget(self.scroll)
        hint = QLabel("▼ takes a whole group of rows from that column", wordWrap=True)
        hint.setStyleSheet("color: gray")
        lay.addWidget(hint)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(box)

        self._thumbs_later = qdebounced(self.request_thumbnails, timeout=THUMB_DELAY_MS, parent=self)
        document.changed.connect(self._on_changed)
        document.modelLoaded.connect(self._on_model)
        self.refresh()
        self._thumbs_later()

    def closeEvent(self, event) -> None:
        self._thumbs_later.cancel()  # no thumbnail request after the window (and with it the engine) is closing
        super().closeEvent(event)

    # ----- widgets -----------------------------------------------------------------------------------------------

    def _tool(self, name: str, text: str, tip: str, slot) -> QToolButton:
        b = QToolButton(icon=icon(name), text=text, toolTip=tip, autoRaise=True)
        if text:
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        b.clicked.connect(lambda: slot())
        return b

    def radio(self, row: int, column: int) -> QRadioButton:
        """The radio button choosing source ``column`` (0 = base) for W+ row ``row``."""
        return self._radios[row][column]

    def preset_button(self, group: str, column: int) -> QToolButton:
        """The preset taking every row of ``group`` ("coarse", "middle", "fine" or "all") from source ``column``."""
        return self._presets[(group, column)]

    def remove_button(self, column: int) -> QToolButton:
        return self._removers[column]

    def thumbnail(self, column: int) -> QPixmap | None:
        """The thumbnail shown for source ``column`` (0 = base), or None while it is rendering."""
        pixmap = self._thumbs[column].pixmap()
        return None if pixmap is None or pixmap.isNull() else pixmap

    def groups(self) -> dict[str, tuple[int, ...]]:
        """The row groups of the loaded model ("all" included); empty before a model is loaded."""
        s = self._doc.summary
        return group_rows(s.row_resolutions) if s is not None else {}

    # ----- edits -------------------------------------------------------------------------------------------------

    def _label(self, column: int) -> str:
        return "base" if column == 0 else self._doc.state.sources[column - 1].label()

    def _current_rows(self) -> list[int]:
        """The state's rows for this model, all base when there is no mixing (or it was made for another model)."""
        num_ws = self._doc.summary.num_ws
        rows = self._doc.state.rows
        return list(rows) if len(rows) == num_ws else [0] * num_ws

    def set_row(self, row: int, column: int) -> None:
        rows = self._current_rows()
        rows[row] = column
        self._doc.edit(f"Mix row {row} from {self._label(column)}", rows=normalized_rows(rows))

    def apply_preset(self, group: str, column: int) -> None:
        """Take every row of ``group`` from source ``column``; "all" from the base resets the mixing."""
        rows = self._current_rows()
        for i in self.groups()[group]:
            rows[i] = column
        what = "all rows" if group == "all" else f"{group} rows"
        self._doc.edit(f"Mix {what} from {self._label(column)}", rows=normalized_rows(rows))

    def reset_rows(self) -> None:
        self._doc.edit("Mix reset to base", rows=())

    def add_seed(self, seed: int | None = None) -> None:
        """Add a seed source (the spin box's seed by default); the spin box then proposes a new random seed."""
        seed = self.seed.value() if seed is None else int(seed)
        self._doc.edit(f"Mix add seed {seed}", sources=self._doc.state.sources + (Source(seed=seed),))
        self.seed.setValue(self._rng.randrange(PROPOSED_SEEDS))

    def add_latent_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a latent as a mixing source", self._last_dir, LATENT_FILTER)
        if path:
            self._last_dir = str(Path(path).parent)
            self.add_latent_file(path)

    def add_latent_file(self, path: str | Path) -> bool:
        """Add a saved latent as a source; a file that is unreadable or does not fit the model changes nothing."""
        path = Path(path)
        try:
            latent = load_latent(path)  # float32 [w_dim] or [num_ws, w_dim]
            self._check_latent(latent, path.name)
            source = Source.from_latent(latent, name=path.stem)
        except ProjectError as e:
            show_error(self, "Cannot use this latent", str(e), icon=QMessageBox.Icon.Critical)
            return False
        self._doc.edit(f"Mix add latent {path.stem}", sources=self._doc.state.sources + (source,))
        return True

    def _check_latent(self, latent, name: str) -> None:
        s = self._doc.summary
        if s is None:
            raise ProjectError("load a model before adding latents: they must match its W+ rows and width")
        if latent.shape[-1] != s.w_dim:
            raise ProjectError(f"{name} has w_dim {latent.shape[-1]}; the loaded model needs {s.w_dim}")
        if latent.ndim == 2 and latent.shape[0] != s.num_ws:
            raise ProjectError(f"{name} has {latent.shape[0]} W+ rows; the loaded model has {s.num_ws}")

    def remove_source(self, column: int) -> None:
        """Remove source ``column`` (>= 1) in one undo step: its rows go back to the base, later columns shift."""
        st = self._doc.state
        label = self._label(column)
        sources = st.sources[:column - 1] + st.sources[column:]
        rows = [0 if r == column else r - 1 if r > column else r for r in st.rows]
        self._doc.edit(f"Mix remove {label}", sources=sources, rows=normalized_rows(rows))

    # ----- following the document --------------------------------------------------------------------------------

    def _on_changed(self, _state, fields) -> None:
        self.refresh()
        if fields & THUMB_FIELDS:
            self._thumbs_later()

    def _on_model(self, _summary) -> None:
        self._cache.clear()  # a reloaded file may hold different weights under the same reference
        self.refresh()
        self._thumbs_later()

    def refresh(self) -> None:
        s = self._doc.summary
        key = (s.row_resolutions if s is not None else None, self._doc.state.sources)
        if key != self._layout_key:
            self._layout_key = key
            self._rebuild()
        self._sync()

    def _sync(self) -> None:
        st = self._doc.state
        s = self._doc.summary
        for b in (self.add_seed_button, self.add_latent_button):
            b.setEnabled(s is not None)
        self.reset_button.setEnabled(bool(st.rows))
        if s is None:
            return
        mismatch = bool(st.rows) and len(st.rows) != s.num_ws
        self.warning.setVisible(mismatch)
        if mismatch:
            self.warning.setText(f"The mixing rows were made for a model with {len(st.rows)} W+ rows; this one has "
                                 f"{s.num_ws}. Pick the rows again or reset.")
        rows = self._current_rows()
        blockers = [QSignalBlocker(g) for g in self._row_groups] + [QSignalBlocker(b) for b in self._presets.values()]
        for i, k in enumerate(rows):
            self._radios[i][k].setChecked(True)
        groups = self.groups()
        for (group, k), b in self._presets.items():
            b.setChecked(all(rows[i] == k for i in groups[group]))
        del blockers
        self._show_thumbnails()

    def _clear_grid(self) -> None:
        while self.grid.count():
            w = self.grid.takeAt(0).widget()
            if w is not None:
                w.hide()
                w.deleteLater()  # a remove button may be inside its own clicked() handler
        for g in self._row_groups:
            g.deleteLater()
        for c in range(self.grid.columnCount()):
            self.grid.setColumnMinimumWidth(c, 0)
            self.grid.setColumnStretch(c, 0)
        self._radios, self._row_groups, self._presets, self._thumbs, self._removers = [], [], {}, [], {}

    def _rebuild(self) -> None:
        """Lay out the grid for the loaded model's rows and the state's sources."""
        self._clear_grid()
        s = self._doc.summary
        st = self._doc.state
        if s is None:
            self.grid.addWidget(QLabel("The W+ rows appear once a model is loaded.", wordWrap=True), 0, 0)
            return
        columns = 1 + len(st.sources)
        g = self.grid
        for k in range(columns):
            c = k + 1
            g.setColumnMinimumWidth(c, COLUMN_PX)
            thumb = QLabel("…", alignment=Qt.AlignmentFlag.AlignCenter)
            thumb.setFixedSize(THUMB_PX, THUMB_PX)
            thumb.setStyleSheet("background: palette(mid); border-radius: 3px")
            self._thumbs.append(thumb)
            g.addWidget(thumb, 0, c, Qt.AlignmentFlag.AlignCenter)
            name = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
            font = name.font()
            font.setPointSizeF(font.pointSizeF() * 0.85)
            name.setFont(font)
            text = self._label(k)
            name.setText(name.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, COLUMN_PX))
            name.setToolTip("The base face: the document's seed, or its photo" if k == 0 else f"Source {k}: {text}")
            g.addWidget(name, 1, c)
            if k > 0:
                rm = QToolButton(icon=icon("remove"), autoRaise=True,
                                 toolTip=f"Remove {text}: the rows it feeds go back to the base face")
                rm.clicked.connect(lambda _=False, k=k: self.remove_source(k))
                self._removers[k] = rm
                g.addWidget(rm, 2, c, Qt.AlignmentFlag.AlignCenter)
        self.grid.setColumnStretch(columns + 1, 1)

        groups = group_rows(s.row_resolutions)
        r = 3
        r = self._add_group_header(r, "all", "<b>All rows</b>", f"Every row from one source: {ALL_ROWS_TIP}",
                                   columns)
        for name, title, effect in GROUPS:
            if name not in groups:
                continue
            res = sorted({s.row_resolutions[i] for i in groups[name]})
            span = f"{res[0]} px" if len(res) == 1 else f"{res[0]}–{res[-1]} px"
            line = QFrame(frameShape=QFrame.Shape.HLine, frameShadow=QFrame.Shadow.Sunken)
            g.addWidget(line, r, 0, 1, columns + 1)
            r = self._add_group_header(r + 1, name, f"<b>{title}</b><br><span style='color:gray'>{span}</span>",
                                       f"{title} rows ({span}) set {effect}", columns)
            for i in groups[name]:
                self._add_row(r, i, s.row_resolutions[i], f"{title} row: sets {effect}", columns)
                r += 1
        g.setRowStretch(r, 1)

    def _add_group_header(self, r: int, group: str, html: str, tip: str, columns: int) -> int:
        label = QLabel(html, toolTip=tip)
        self.grid.addWidget(label, r, 0)
        for k in range(columns):
            b = QToolButton(text="▼", checkable=True, autoRaise=True)
            src = self._label(k)
            if group == "all":
                b.setToolTip("Reset: every row from the base face" if k == 0 else f"Every row from {src}")
            else:
                b.setToolTip(f"All {group} rows from {src}: {tip[0].lower()}{tip[1:]}")
            b.clicked.connect(lambda _=False, group=group, k=k: self.apply_preset(group, k))
            self._presets[(group, k)] = b
            self.grid.addWidget(b, r, k + 1, Qt.AlignmentFlag.AlignCenter)
        return r + 1

    def _add_row(self, r: int, index: int, resolution: int, tip: str, columns: int) -> None:
        label = QLabel(f"{index} · {resolution} px", toolTip=f"W+ row {index}, feeds the {resolution} px layers. {tip}")
        label.setIndent(8)
        self.grid.addWidget(label, r, 0)
        group = QButtonGroup(self)
        radios = []
        for k in range(columns):
            b = QRadioButton(toolTip=f"Row {index} ({resolution} px) from {self._label(k)}. {tip}")
            group.addButton(b, k)
            radios.append(b)
            self.grid.addWidget(b, r, k + 1, Qt.AlignmentFlag.AlignCenter)
        group.idClicked.connect(lambda k, index=index: self.set_row(index, k))
        self._radios.append(radios)
        self._row_groups.append(group)

    # ----- thumbnails --------------------------------------------------------------------------------------------

    def request_thumbnails(self) -> QtRequest | None:
        """Render the thumbnails not cached yet for the current state; returns the request (None: nothing to do)."""
        if self._doc.summary is None:
            return None
        st = self._doc.state
        key = _render_key(st)
        wanted = (base_source(st),) + st.sources
        self._cache = {k: v for k, v in self._cache.items() if k[0] == key and k[1] in wanted}
        missing = tuple(dict.fromkeys(src for src in wanted if (key, src) not in self._cache))
        if not missing:
            self._show_thumbnails()
            return None
        self._thumb_error = ""
        self._thumb_key = key
        return self._bridge.submit(ThumbnailJob(st, missing, limit=THUMB_LIMIT), slot=SLOT).on(
            finished=self._on_thumbnails, failed=self._on_failed)

    def _on_thumbnails(self, result: ThumbnailResult) -> None:
        key = self._thumb_key
        for src, image in zip(result.sources, result.images):
            qimage = to_qimage(np.ascontiguousarray(image))  # uint8 [h, w, 3], h = min(THUMB_LIMIT, resolution)
            scaled = qimage.scaled(THUMB_PX, THUMB_PX, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)  # a copy: the array may go
            self._cache[(key, src)] = QPixmap.fromImage(scaled)
        self._show_thumbnails()

    def _on_failed(self, error: Exception) -> None:
        self._thumb_error = text = sentence(error)
        self._show_thumbnails()
        self.message.emit(f"Could not render the mixing thumbnails: {text}")

    def _show_thumbnails(self) -> None:
        st = self._doc.state
        key = _render_key(st)
        for k, (label, src) in enumerate(zip(self._thumbs, (base_source(st),) + st.sources)):
            pixmap = self._cache.get((key, src))
            what = f"The base face ({src.label()})" if k == 0 else src.label()
            if pixmap is not None:
                label.setPixmap(pixmap)
                label.setToolTip(f"{what}, with the current ψ and noise")
            elif self._thumb_error:
                label.setText("!")
                label.setToolTip(f"Could not render {what}: {self._thumb_error}")
            else:
                label.setText("…")
                label.setToolTip(f"{what}: rendering…")
