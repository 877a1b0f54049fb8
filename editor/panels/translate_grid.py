"""The translate panel's grid of sampled appearances: a pop-up of style seeds rendered in the target, the choice of
one as the translation's appearance, and the export of a page of samples at full resolution.

``StyleGridPopup`` is the widget; ``StyleGridMixin`` is the part of ``TranslatePanel`` that drives it (it uses the
panel's document, job submission, tool-button builder, ``_start_dir``, ``refresh``, ``_set``, ``_job_failed`` and
``message``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPoint, QSignalBlocker, QSize, Qt, Signal
from PySide6.QtGui import QGuiApplication, QIcon, QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from editor.controllers.bridge import QtRequest
from editor.panels.generation_panel import SEED_MAX
from editor.widgets.images import HeldImage
from engine import SamplesExportJob, Source, StyleGrid, StyleGridJob, with_style

GRID_SLOT, SAMPLES_SLOT = "translate-grid", "translate-samples"
GRID_N, GRID_COLUMNS, SAMPLE_PX = 8, 4, 72


def _pixmap(image: np.ndarray, px: int) -> QPixmap:
    pm = QPixmap.fromImage(HeldImage(np.ascontiguousarray(image)).qimage)  # fromImage copies the pixels
    return pm.scaled(px, px, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


class StyleGridPopup(QFrame):
    """The pop-up grid of sampled appearances under the Samples button (the dock has no room for it): a seed
    spin box for the first sample, the next page, the export, and ``GRID_N`` sample buttons. Closed by a click
    outside or Esc (``closed``)."""

    closed = Signal()
    chosen = Signal(int)  # index of the clicked sample

    def __init__(self, parent: QWidget, tool):
        super().__init__(parent, Qt.WindowType.Popup)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel("")
        self.title.setStyleSheet("color: palette(mid)")
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens the pop-up
        self._title = ""
        self.seed = QSpinBox(maximum=SEED_MAX - GRID_N, keyboardTracking=False, prefix="from seed ",
                             toolTip=f"Seed of the first sample: the grid shows seeds s … s + {GRID_N - 1}, each "
                                     "reproducible")
        self.next_page = tool("next_page", "", f"The next {GRID_N} samples",
                              lambda: self.seed.setValue(self.seed.value() + GRID_N))
        self.export_button = tool("export_samples", "Export…", "Write every sample of the grid at full resolution "
                                  "into a folder, one PNG per seed", None)
        self.samples: list[QToolButton] = []
        grid = QGridLayout()
        grid.setSpacing(3)
        for i in range(GRID_N):
            b = QToolButton(checkable=True, autoRaise=True, iconSize=QSize(SAMPLE_PX, SAMPLE_PX))
            b.setFixedSize(SAMPLE_PX + 6, SAMPLE_PX + 6)
            b.setStyleSheet("QToolButton { border: 2px solid transparent; border-radius: 3px; background: #2b2b2b }"
                            "QToolButton:checked { border-color: #f67400 }")
            b.clicked.connect(lambda _=False, k=i: self.chosen.emit(k))
            grid.addWidget(b, i // GRID_COLUMNS, i % GRID_COLUMNS)
            self.samples.append(b)
        page = QHBoxLayout()
        page.addWidget(self.seed, 1)
        page.addWidget(self.next_page)
        page.addWidget(self.export_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addWidget(self.title)
        lay.addLayout(page)
        lay.addLayout(grid)

    def set_title(self, text: str) -> None:
        """The line above the grid, shortened in the middle to the grid's width (a long file name), whole in the
        tooltip."""
        self._title = text
        self.title.setToolTip(text)
        self._fit_title()

    def _fit_title(self) -> None:
        width = self.layout().contentsRect().width() or self.layout().sizeHint().width()
        self.title.setText(self.title.fontMetrics().elidedText(self._title, Qt.TextElideMode.ElideMiddle, width))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_title()

    def show_grid(self, grid: StyleGrid) -> None:
        for b, seed, image in zip(self.samples, grid.seeds, grid.images):
            b.setIcon(QIcon(_pixmap(image, SAMPLE_PX)))
            b.setToolTip(f"Style seed {seed}: click to use this appearance")

    def check(self, seeds: tuple[int, ...], chosen: int | None) -> None:
        """Frame the sample whose seed is ``chosen`` (none when it is not on this page)."""
        for b, seed in zip(self.samples, seeds):
            with QSignalBlocker(b):
                b.setChecked(seed == chosen)

    def show_below(self, anchor: QWidget) -> None:
        """Show under ``anchor`` (over it when there is no room below), inside the screen and, where it fits, inside
        the anchor's window; the frame counts."""
        screen = (anchor.screen() or QGuiApplication.primaryScreen()).availableGeometry()
        room = screen.intersected(anchor.window().frameGeometry())
        self.adjustSize()
        self.show()
        frame = self.frameGeometry()  # known once shown: the window system may add a border
        if room.width() < frame.width() or room.height() < frame.height():
            room = screen
        below = anchor.mapToGlobal(QPoint(0, anchor.height()))
        top = below.y() if below.y() + frame.height() <= room.bottom() + 1 else \
            below.y() - anchor.height() - frame.height()
        frame.moveTo(below.x(), top)
        frame.moveLeft(max(room.left(), min(frame.left(), room.right() + 1 - frame.width())))
        frame.moveTop(max(room.top(), min(frame.top(), room.bottom() + 1 - frame.height())))
        self.move(frame.topLeft())

    def hideEvent(self, event) -> None:
        super().hideEvent(event)
        self.closed.emit()


class StyleGridMixin:
    """``TranslatePanel``'s style grid: shown under the Samples button, rendered for the current translation and
    first seed, one click uses a sample's seed as the appearance; ``export_samples`` writes the page."""

    def _build_grid_popup(self) -> None:
        self._grid_on = False
        self._grid_key: tuple | None = None
        self.grid: StyleGrid | None = None
        self.grid_panel = StyleGridPopup(self, self._tool)
        self.grid_panel.closed.connect(lambda: self.set_grid_shown(False))
        self.grid_panel.chosen.connect(self.choose_sample)
        self.grid_panel.export_button.clicked.connect(lambda: self.export_samples())
        self.grid_seed, self.samples = self.grid_panel.seed, self.grid_panel.samples

    def set_grid_shown(self, on: bool) -> None:
        """Show (and render) or hide the grid of sampled appearances."""
        if on == self._grid_on or (on and self._doc.state.translation is None):
            with QSignalBlocker(self.sample_button):
                self.sample_button.setChecked(self._grid_on)
            return
        self._grid_on = on
        with QSignalBlocker(self.sample_button):
            self.sample_button.setChecked(on)
        if on:
            self.grid_panel.show_below(self.sample_button)
            self._grid_timer.start(0)
        else:
            self.grid_panel.hide()
        self.refresh()

    def choose_sample(self, index: int) -> None:
        """Use the grid's sample ``index`` as the appearance (its seed)."""
        grid = self.grid
        if grid is None or index >= len(grid.seeds):
            self.refresh()
            return
        seed = grid.seeds[index]
        self._set(f"Appearance: style seed {seed}", None, style=Source(seed=seed))
        self.refresh()

    def request_grid(self) -> None:
        st = self._doc.state
        if st.translation is None or not self._grid_on:
            return
        key = (with_style(st, None), self.grid_seed.value())
        if key != self._grid_key:
            self._grid_key = key
            self._submit(StyleGridJob(key[0], seed=key[1], n=GRID_N), GRID_SLOT, finished=self._grid_ready,
                         failed=self._job_failed)

    def _grid_ready(self, grid: StyleGrid) -> None:
        self.grid = grid
        self.grid_panel.show_grid(grid)
        self._check_sample()

    def _check_sample(self) -> None:
        tr = self._doc.state.translation
        chosen = tr.style.seed if tr is not None and tr.style is not None else None
        self.grid_panel.check(self.grid.seeds if self.grid is not None else (), chosen)

    def export_samples(self, folder: str | Path | None = None) -> QtRequest | None:
        """Write the grid's seeds at full resolution into ``folder`` (a dialog asks without it)."""
        st = self._doc.state
        if st.translation is None:
            return None
        if not folder:
            folder = QFileDialog.getExistingDirectory(self, "Folder for the style samples", self._start_dir())
            if not folder:
                return None
        seeds = tuple(range(self.grid_seed.value(), self.grid_seed.value() + GRID_N))
        self.message.emit(f"Writing {len(seeds)} style samples to {folder}…")
        return self._submit(SamplesExportJob(st, seeds, str(folder)), SAMPLES_SLOT, finished=self._samples_written,
                            failed=self._job_failed, progress=self._samples_progress)

    def _samples_progress(self, _fraction: float, text: str) -> None:
        self.message.emit(f"Style samples: {text}")

    def _samples_written(self, paths: tuple[str, ...]) -> None:
        self.message.emit(f"Wrote {len(paths)} style samples to {Path(paths[0]).parent}")
