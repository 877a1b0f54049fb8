"""Generation panel: the seed (spin box, previous / next / random), truncation ψ with its layer cutoff, and noise."""
from __future__ import annotations

import random

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider, QLabeledSlider

from editor.widgets.icons import icon
from editor.widgets.seed_box import SeedBox
from engine import SEED_LIMIT

SEED_MAX = min(SEED_LIMIT - 1, 2**31 - 1)  # for a QSpinBox (a signed 32-bit int); this panel's SeedBoxes hold all
NOISE_MODES = (
    ("const", "Fixed", "The model's stored noise maps: the same fine detail every time"),
    ("random", "Seeded", "Noise drawn from the noise seed: changes hair strands, pores and background speckle"),
    ("none", "Off", "No per-pixel noise: smoother, plastic-looking skin and hair"),
)

NOISE_TIP = "Per-pixel noise: stochastic detail such as hair strands and skin pores"


class GenerationPanel(QWidget):
    """Seed, truncation and noise controls bound to the document. ``dragging(bool)`` while a slider is held."""

    dragging = Signal(bool)

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self._doc = document
        self._rng = random.Random()  # only picks new seeds; the picked seed is recorded in the state

        self.seed = SeedBox(keyboardTracking=False, accelerated=True)
        self.seed.setToolTip("Seed of the base face: each seed is a different person (PageUp / PageDown step it)")
        self.prev_seed = self._tool("seed_previous", "Previous seed (PageUp)", lambda: self.step_seed(-1))
        self.next_seed = self._tool("seed_next", "Next seed (PageDown)", lambda: self.step_seed(1))
        self.random_seed = self._tool("seed_random", "A random seed (Ctrl+R)", self.randomize_seed)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed, 1)
        for b in (self.prev_seed, self.next_seed, self.random_seed):
            seed_row.addWidget(b)

        self.psi = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.psi.setRange(-1.0, 2.0)
        self.psi.setDecimals(2)
        self.psi.setSingleStep(0.01)
        self.psi.setToolTip("Truncation ψ: 1 = the model's full variety, lower pulls the face towards the average "
                            "face (cleaner, less unusual), 0 = the average face, negative = the 'opposite' face")
        self.cutoff = QLabeledSlider(Qt.Orientation.Horizontal)
        self.cutoff.setToolTip("Truncate only the first N W+ rows (coarse pose and shape first); the last value means "
                               "all rows")

        self.noise_mode = QComboBox()
        for key, text, tip in NOISE_MODES:
            self.noise_mode.addItem(text, key)
            self.noise_mode.setItemData(self.noise_mode.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.noise_mode.setToolTip(NOISE_TIP)
        self.noise_seed = SeedBox(keyboardTracking=False)
        self.noise_seed.setToolTip("Seed of the noise maps when the noise is 'Seeded'")

        form = QFormLayout()
        form.addRow("Seed", seed_row)
        form.addRow("ψ", self.psi)
        form.addRow("ψ rows", self.cutoff)
        form.addRow("Noise", self.noise_mode)
        form.addRow("Noise seed", self.noise_seed)
        box = QGroupBox("Generation")
        box.setLayout(form)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(box)

        self.seed.seedChanged.connect(self.set_seed)
        self.psi.valueChanged.connect(lambda v: self._doc.edit("Truncation ψ", merge="psi", psi=round(v, 4)))
        self.cutoff.valueChanged.connect(self._cutoff_changed)
        self.noise_mode.currentIndexChanged.connect(
            lambda i: self._doc.edit("Noise mode", noise_mode=self.noise_mode.itemData(i)))
        self.noise_seed.seedChanged.connect(lambda v: self._doc.edit("Noise seed", noise_seed=v))
        for slider, key in ((self.psi, "psi"), (self.cutoff, "cutoff")):
            slider.sliderPressed.connect(lambda: self.dragging.emit(True))
            slider.sliderReleased.connect(self._released)
        document.changed.connect(self.refresh)
        document.modelLoaded.connect(lambda _: self.refresh())
        self.refresh()

    def _tool(self, name: str, tip: str, slot) -> QToolButton:
        b = QToolButton(icon=icon(name), toolTip=tip, autoRaise=True)
        b.clicked.connect(slot)
        return b

    def _released(self) -> None:
        self._doc.end_merge()
        self.dragging.emit(False)

    def _num_ws(self) -> int:
        s = self._doc.summary
        return s.num_ws if s is not None else max(self._doc.state.cutoff or 0, 1)

    def _cutoff_changed(self, value: int) -> None:
        cutoff = None if value >= self._num_ws() else value
        self._doc.edit("Truncation rows", merge="cutoff", cutoff=cutoff)

    def set_seed(self, seed: int) -> None:
        """Show the face of ``seed``: this leaves a photo's face (a new seed means a generated face)."""
        self._doc.edit(f"Seed {seed}", seed=seed, base=None, noise_maps=None, photo=None)

    def step_seed(self, delta: int) -> None:
        self.set_seed((self._doc.state.seed + delta) % SEED_LIMIT)

    def randomize_seed(self) -> None:
        self.set_seed(self._rng.randrange(SEED_LIMIT))

    def refresh(self, *_) -> None:
        st = self._doc.state
        num_ws = self._num_ws()
        blockers = [QSignalBlocker(w) for w in (self.seed, self.psi, self.cutoff, self.noise_mode, self.noise_seed)]
        self.seed.setValue(st.seed)
        if abs(self.psi.value() - st.psi) > 1e-9:
            self.psi.setValue(st.psi)
        self.cutoff.setRange(0, num_ws)
        self.cutoff.setValue(num_ws if st.cutoff is None else min(st.cutoff, num_ws))
        self.noise_mode.setCurrentIndex(self.noise_mode.findData(st.noise_mode))
        self.noise_seed.setValue(st.noise_seed)
        self.noise_seed.setEnabled(st.noise_mode == "random" and st.noise_maps is None)
        self.noise_mode.setEnabled(st.noise_maps is None)
        self.noise_mode.setToolTip(NOISE_TIP if st.noise_maps is None else
                                   "This face uses the noise maps fitted to its photo; a new seed leaves the photo")
        del blockers
