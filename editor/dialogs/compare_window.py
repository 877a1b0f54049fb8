"""Compare translation methods: the layer swap, BicycleGAN and TUNIT on the same input, N samples each side by side.

One row per method, each with its model, its options and a strip of samples of the same input (the document's face,
the photo it was inverted from, or an image file): the layer swap's sampled appearances (``StyleGridJob``),
BicycleGAN's codes from seeds with the sample a reference image encodes and a z sweep (slerp) towards another seed,
TUNIT's cluster styles (the cluster picker) and the style of a reference image. Clicking a sample shows it large;
any sample, a whole row or a sweep is exported, and a folder of photos is translated with a row's settings. An
input of another size than the model takes is resized, and the window says so. Everything runs on the worker
(``engine.jobs.i2i``); the window asks again, after a short pause, whenever the face or a setting changes.
"""
from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSignalBlocker, QSize, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from editor.controllers.bridge import QtRequest
from editor.dialogs.error_box import as_report, sentence
from editor.panels.generation_panel import SEED_MAX
from editor.panels.translate_folder import BatchDialogMixin, summary_lines
from editor.panels.translate_grid import _pixmap
from editor.widgets.icons import icon, tool_button
from engine import (
    FolderSummary,
    I2IExportJob,
    I2IFolderJob,
    I2IInput,
    I2IJob,
    I2IRequest,
    I2IStrip,
    ModelRef,
    SamplesExportJob,
    SaveImageJob,
    Source,
    StyleGrid,
    StyleGridJob,
    Translation,
    shipped_i2i,
    shipped_targets,
    with_style,
)

THUMB, PREVIEW = 88, 256
N_DEFAULT, N_MAX = 4, 8
SWEEP_FRAMES = 9
DELAY_MS = 150
OPEN = "open"
SWAP, BICYCLE, TUNIT = "swap", "bicyclegan", "tunit"
SLOTS = {SWAP: "compare-swap", BICYCLE: "compare-bicyclegan", TUNIT: "compare-tunit"}
SWEEP_SLOT, SAVE_SLOT, EXPORT_SLOT, FOLDER_SLOT = "compare-sweep", "compare-save", "compare-export", "compare-folder"
I2I_FILTER = "BicycleGAN / TUNIT models (*.pt *.pth *.ckpt);;All files (*)"
INPUT_TIP = ("What BicycleGAN and TUNIT translate: the face as the generator draws it, the photo it was inverted "
             "from (aligned), or any image file. The layer swap always works on the face's latent")


class SampleStrip(QWidget):
    """A row of clickable sample thumbnails; ``chosen(index)`` on a click."""

    chosen = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.buttons: list[QToolButton] = []
        self._lay = QHBoxLayout(self)
        self._lay.setContentsMargins(0, 0, 0, 0)
        self._lay.setSpacing(3)
        self._lay.addStretch(1)

    def show_images(self, images, labels) -> None:
        while len(self.buttons) < len(images):
            b = QToolButton(checkable=True, autoRaise=True, iconSize=QSize(THUMB, THUMB))
            b.setFixedSize(THUMB + 6, THUMB + 6)
            b.setStyleSheet("QToolButton { border: 2px solid transparent; border-radius: 3px; background: #2b2b2b }"
                            "QToolButton:checked { border-color: #f67400 }")
            b.clicked.connect(lambda _=False, k=len(self.buttons): self.chosen.emit(k))
            self._lay.insertWidget(len(self.buttons), b)
            self.buttons.append(b)
        for i, b in enumerate(self.buttons):
            b.setVisible(i < len(images))
            if i < len(images):
                b.setIcon(QIcon(_pixmap(images[i], THUMB)))
                b.setToolTip(f"{labels[i]}: click to see it large")

    def check(self, index: int | None) -> None:
        for i, b in enumerate(self.buttons):
            b.setChecked(i == index)


class MethodRow(QGroupBox):
    """One method: its model combo and options on top; the input it read, its samples and a status line below."""

    def __init__(self, title: str, tip: str, parent: QWidget | None = None):
        super().__init__(title, parent)
        self.setToolTip(tip)
        self.model = QComboBox(toolTip="The model this row translates with")
        self.model.setMinimumContentsLength(18)
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.options = QHBoxLayout()
        self.extra = QHBoxLayout()
        self.input_view = QLabel(toolTip="What the network read (after resizing, and as a line drawing if asked)")
        self.input_view.setFixedSize(THUMB, THUMB)
        self.input_view.setStyleSheet("border: 1px dashed palette(mid)")
        self.strip = SampleStrip()
        self.status = QLabel("", wordWrap=True)
        self.status.setStyleSheet("color: palette(mid)")
        top = QHBoxLayout()
        top.addWidget(self.model, 1)
        top.addLayout(self.options)
        body = QHBoxLayout()
        body.addWidget(self.input_view)
        arrow = QLabel("→")
        arrow.setStyleSheet("font-size: 18px; color: palette(mid)")
        body.addWidget(arrow)
        body.addWidget(self.strip, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(self.extra)
        lay.addLayout(body)
        lay.addWidget(self.status)


class CompareWindow(BatchDialogMixin, QDialog):
    """The three translation methods side by side (see the module docstring). ``message(str)`` for the status
    bar, ``failed(ErrorReport)`` for errors the user must see."""

    message = Signal(str)
    failed = Signal(object)  # ErrorReport

    def __init__(self, document, bridge, *, targets: list | None = None, i2i: list | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Compare translation methods")
        self._doc, self._bridge = document, bridge
        self._targets = shipped_targets() if targets is None else list(targets)
        self._i2i = shipped_i2i() if i2i is None else list(i2i)
        self._keys: dict[str, object] = {}
        self._references: dict[str, str | None] = {BICYCLE: None, TUNIT: None}
        self._opened: dict[str, list[ModelRef]] = {BICYCLE: [], TUNIT: []}
        self._input_file: str | None = None
        self._last_dir = ""
        self.strips: dict[str, I2IStrip | StyleGrid | None] = {SWAP: None, BICYCLE: None, TUNIT: None}
        self.selected: tuple[str, int] | None = None
        self.sweep_image: np.ndarray | None = None
        self.sweep_strip: I2IStrip | None = None
        self._folder_out: Path | None = None
        self.last_written: tuple[str, ...] = ()
        self._folder_dialog = None
        self.summary_box: QMessageBox | None = None

        self.input = QComboBox(toolTip=INPUT_TIP)
        self.input.setMinimumContentsLength(16)
        self.input.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.input.addItem("The face", "face")
        self.input.addItem("The photo", "photo")
        self.input.addItem("Image file…", "file")
        self.n = QSpinBox(minimum=1, maximum=N_MAX, value=N_DEFAULT, prefix="N = ",
                          toolTip="Samples per method (layer-swap appearances, BicycleGAN codes)")
        self.seed = QSpinBox(maximum=SEED_MAX - N_MAX, keyboardTracking=False, prefix="seed ",
                             toolTip="Seed of the first sample: sample i uses seed + i, so each is reproducible")
        self.notice = QLabel("", wordWrap=True)
        self.notice.setStyleSheet("color: #c98a00")
        self.notice.hide()
        head = QHBoxLayout()
        head.addWidget(QLabel("Input"))
        head.addWidget(self.input)
        head.addSpacing(12)
        head.addWidget(self.n)
        head.addWidget(self.seed)
        head.addStretch(1)

        self.rows = {
            SWAP: MethodRow("Layer swap (StyleGAN2, UI2I)", "The face's latent through a fine-tuned generator: "
                            "appearances sampled from the target (the Translate panel's settings)"),
            BICYCLE: MethodRow("BicycleGAN", "One input, many outputs: a code z per sample; a reference image "
                               "gives its own code (the encoder)"),
            TUNIT: MethodRow("TUNIT", "The style of each discovered cluster (the cluster picker), or of a "
                             "reference image"),
        }
        self.lines = QCheckBox("Line drawing", toolTip="Turn the input into dark lines on white first (the "
                               "embedded BicycleGAN translates line drawings into photos)")
        self.sweep_to = QSpinBox(maximum=SEED_MAX, value=N_DEFAULT, prefix="to seed ", keyboardTracking=False,
                                 toolTip="The seed whose code the z sweep ends at")
        self.sweep = QSlider(Qt.Orientation.Horizontal, minimum=0, maximum=100,
                             toolTip="z sweep: from the chosen sample's code (0) to the code of 'sweep to seed' "
                                     "(1), along the sphere (slerp); shown large")
        self.sweep.setMinimumWidth(90)
        self.sweep_export = tool_button("export_samples", f"Export the sweep: {SWEEP_FRAMES} frames from 0 to 1",
                                       lambda: self.export_sweep())
        self.rows[BICYCLE].options.addWidget(self.lines)
        sweep_label = QLabel("z sweep", toolTip=self.sweep.toolTip())
        for w in (sweep_label, self.sweep, self.sweep_to, self.sweep_export):
            self.rows[BICYCLE].extra.addWidget(w, 1 if w is self.sweep else 0)
        for key in (BICYCLE, TUNIT):
            row = self.rows[key]
            ref = tool_button("reference_image", "Reference image: its encoded code (BicycleGAN) or style (TUNIT) "
                             "is added as the first sample", lambda k=key: self.choose_reference(k))
            clear = tool_button("remove", "No reference image", lambda k=key: self.set_reference(k, None))
            row.options.addWidget(ref)
            row.options.addWidget(clear)
        for key, row in self.rows.items():
            row.options.addWidget(tool_button("export_samples", "Export this row's samples at full resolution into "
                                             "a folder", lambda k=key: self.export_row(k)))
            if key != SWAP:
                row.options.addWidget(tool_button("translate_folder", "Translate a folder of photos with this row's "
                                                 "settings (faces found and cut out), every sample one PNG",
                                                 lambda k=key: self.translate_folder(k)))
            row.strip.chosen.connect(lambda i, k=key: self.select(k, i))
            row.model.activated.connect(lambda _i, k=key: self._model_chosen(k))

        self.preview = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.preview.setFixedSize(PREVIEW, PREVIEW)
        self.preview.setStyleSheet("background: #202020; border-radius: 4px")
        self.caption = QLabel("Click a sample to see it here", wordWrap=True,
                              alignment=Qt.AlignmentFlag.AlignHCenter)
        self.caption.setFixedWidth(PREVIEW)
        self.save_button = tool_button("export_image", "Export the sample shown (Ctrl+E)",
                                      lambda: self.export_selected(), text="Export…")
        side = QVBoxLayout()
        side.addWidget(self.preview)
        side.addWidget(self.caption)
        side.addWidget(self.save_button, 0, Qt.AlignmentFlag.AlignHCenter)
        side.addStretch(1)
        rows = QVBoxLayout()
        for row in self.rows.values():
            rows.addWidget(row)
        grid = QGridLayout(self)
        grid.addLayout(head, 0, 0, 1, 2)
        grid.addWidget(self.notice, 1, 0, 1, 2)
        grid.addLayout(rows, 2, 0)
        grid.addLayout(side, 2, 1)

        self._timer = QTimer(self, singleShot=True, interval=DELAY_MS)
        self._timer.timeout.connect(self.request_all)
        self._sweep_timer = QTimer(self, singleShot=True, interval=30)
        self._sweep_timer.timeout.connect(self.request_sweep)
        self.input.activated.connect(self._input_chosen)
        for w in (self.n, self.seed):
            w.valueChanged.connect(lambda _: self.schedule())
        self.lines.toggled.connect(lambda _: self.schedule())
        self.sweep.valueChanged.connect(lambda _: self._sweep_timer.start())
        self.sweep_to.valueChanged.connect(lambda _: self._sweep_timer.start())
        QShortcut(QKeySequence("Ctrl+E"), self, activated=lambda: self.export_selected())
        document.changed.connect(lambda *_: self.schedule())
        document.modelLoaded.connect(lambda _: self.schedule())
        self._fill_models()
        self.input.setCurrentIndex(self.input.findData("photo" if document.state.photo is not None else "face"))
        self._update_lines_default()

    # ----- builders

    def _fill_models(self) -> None:
        swap = self.rows[SWAP].model
        swap.clear()
        for t in self._targets:
            swap.addItem(icon("translate"), f"{t.label()} (shipped)", t.ref)
        for key in (BICYCLE, TUNIT):
            combo, keep = self.rows[key].model, self.rows[key].model.currentData()
            combo.clear()
            for s in self._i2i:
                if s.method == key:
                    combo.addItem(icon("translate"), f"{s.label()} (shipped)", s.ref)
            for ref in self._opened[key]:
                combo.addItem(ref.label(), ref)
            combo.addItem(icon("open_model"), "Open model…", OPEN)
            if keep is not None and keep != OPEN:
                combo.setCurrentIndex(max(0, combo.findData(keep)))

    # ----- what to ask for

    def _state(self):
        return self._doc.state

    def swap_state(self):
        """The state the layer-swap row renders: the document's translation, else the first shipped target at
        the Translate panel's default depth (None when there is no target at all)."""
        st, tr = self._state(), self._state().translation
        combo = self.rows[SWAP].model
        combo.setEnabled(tr is None)  # a translation on: the row shows the Translate panel's target
        if tr is not None:
            index = next((i for i in range(combo.count()) if combo.itemData(i) == tr.target), -1)
            if index < 0:
                combo.addItem(icon("translate"), tr.target.label(), tr.target)
                index = combo.count() - 1
            combo.setCurrentIndex(index)
        else:
            ref = self.rows[SWAP].model.currentData()
            if ref is None:
                return None
            tr = Translation(ref)
        return with_style(st.replace(translation=tr), None)

    def i2i_input(self) -> I2IInput:
        kind = self.input.currentData()
        if kind == "file" and self._input_file:
            return I2IInput("file", self._input_file)
        if kind == "photo" and self._state().photo is not None:
            return I2IInput("photo")
        return I2IInput("face")

    def request(self, key: str) -> I2IRequest | None:
        ref = self.rows[key].model.currentData()
        if not isinstance(ref, ModelRef):
            return None
        return I2IRequest(ref, self.i2i_input(), lines=self.lines.isChecked() if key == BICYCLE else False,
                          n=self.n.value(), seed=self.seed.value(), reference=self._references[key])

    def schedule(self) -> None:
        if self.isVisible():
            self._timer.start()

    def request_all(self) -> None:
        """Ask for every row whose inputs changed since its last samples."""
        st = self.swap_state()
        if st is None:
            self.rows[SWAP].status.setText("No fine-tuned target: the layer swap needs one (see the Translate panel)")
        else:
            self._ask(SWAP, (st, self.seed.value(), self.n.value()),
                      lambda: StyleGridJob(st, seed=self.seed.value(), n=self.n.value()))
        for key in (BICYCLE, TUNIT):
            req = self.request(key)
            if req is None:
                self.rows[key].status.setText("No model: open a BicycleGAN or TUNIT file" if key == BICYCLE else
                                              "No model: open a TUNIT model_<epoch>.ckpt or tunit.pt")
                continue
            self._ask(key, (self._state(), req), lambda r=req: I2IJob(self._state(), r))

    def _ask(self, key: str, what, make_job) -> None:
        if self._keys.get(key) == what:
            return
        self._keys[key] = what
        self.rows[key].status.setText("Translating…")
        self._bridge.submit(make_job(), slot=SLOTS[key]).on(finished=partial(self._strip_ready, key),
                                                            failed=partial(self._strip_failed, key))

    # ----- user actions

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._timer.start(0)

    def _input_chosen(self, index: int) -> None:
        if self.input.itemData(index) == "file":
            path, _ = QFileDialog.getOpenFileName(self, "An image to translate", self._start_dir(),
                                                  "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)")
            if not path:
                self.input.setCurrentIndex(self.input.findData("face"))
            else:
                self.set_input_file(path)
        elif self.input.itemData(index) == "photo" and self._state().photo is None:
            self.message.emit("This face was not made from a photo: open one first (Ctrl+Shift+P)")
            self.input.setCurrentIndex(self.input.findData("face"))
        self.schedule()

    def set_input_file(self, path: str | Path) -> None:
        """Translate the image at ``path`` (instead of the face)."""
        index = self.input.findData("file")
        self._last_dir = str(Path(path).parent)
        self._input_file = str(path)
        self.input.setItemText(index, Path(path).name)
        self.input.setItemData(index, str(path), Qt.ItemDataRole.ToolTipRole)
        self.input.setCurrentIndex(index)
        self.schedule()

    def _model_chosen(self, key: str) -> None:
        combo = self.rows[key].model
        if combo.currentData() == OPEN:
            path, _ = QFileDialog.getOpenFileName(self, f"Open a {'BicycleGAN' if key == BICYCLE else 'TUNIT'} "
                                                  "model", self._start_dir(), I2I_FILTER)
            if path:
                self.open_model(key, path)
            else:
                combo.setCurrentIndex(0)
        self._update_lines_default()
        self.schedule()

    def open_model(self, key: str, path: str | Path) -> None:
        """Offer the model at ``path`` in ``key``'s row and use it."""
        ref = ModelRef(path=str(Path(path).resolve()))  # hashed on the worker when a sample is exported
        self._last_dir = str(Path(path).parent)
        if ref not in self._opened[key]:
            self._opened[key].append(ref)
        self._fill_models()
        self.rows[key].model.setCurrentIndex(self.rows[key].model.findData(ref))
        self._update_lines_default()
        self.schedule()

    def _update_lines_default(self) -> None:
        ref = self.rows[BICYCLE].model.currentData()
        shipped = next((s for s in self._i2i if s.ref == ref), None)
        domains = shipped.info.get("domains") if shipped is not None else None
        self.lines.setChecked(isinstance(domains, dict) and domains.get("A") == "edges")

    def choose_reference(self, key: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "A reference image (of the output domain)", self._start_dir(),
                                              "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)")
        if path:
            self._last_dir = str(Path(path).parent)
            self.set_reference(key, path)

    def set_reference(self, key: str, path: str | None) -> None:
        self._references[key] = path
        self.schedule()

    def select(self, key: str, index: int) -> None:
        """Show sample ``index`` of ``key``'s row large (and start the z sweep from it in the BicycleGAN row)."""
        strip = self.strips.get(key)
        images = self._images(strip)
        if not 0 <= index < len(images):
            return
        self.selected = (key, index)
        self.sweep_image = None
        for k, row in self.rows.items():
            row.strip.check(index if k == key else None)
        self._show_large(images[index], f"{self.rows[key].title()}: {self._labels(strip)[index]}")
        if key == BICYCLE and isinstance(strip, I2IStrip) and strip.specs[index].seed is not None:
            with QSignalBlocker(self.sweep):
                self.sweep.setValue(0)
            if self.sweep_to.value() == strip.specs[index].seed:
                self.sweep_to.setValue(strip.specs[index].seed + 1)

    def _show_large(self, image: np.ndarray, caption: str) -> None:
        self.preview.setPixmap(_pixmap(image, PREVIEW))
        self.caption.setText(caption)

    def sweep_start(self) -> int:
        """The seed the sweep starts from: the chosen BicycleGAN sample's, else the first seed."""
        strip = self.strips.get(BICYCLE)
        if self.selected and self.selected[0] == BICYCLE and isinstance(strip, I2IStrip):
            seed = strip.specs[self.selected[1]].seed
            if seed is not None:
                return seed
        return self.seed.value()

    def sweep_request(self, ts: tuple[float, ...]) -> I2IRequest | None:
        req = self.request(BICYCLE)
        if req is None:
            return None
        return dataclasses.replace(req, reference=None, seed=self.sweep_start(), sweep_to=self.sweep_to.value(),
                                   ts=ts)

    def request_sweep(self) -> None:
        req = self.sweep_request((self.sweep.value() / 100,))
        if req is not None:
            self._bridge.submit(I2IJob(self._state(), req), slot=SWEEP_SLOT).on(finished=self._sweep_ready,
                                                                               failed=self._failed)

    # ----- exports

    def _start_dir(self) -> str:
        return self._last_dir or QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)

    def export_selected(self, path: str | Path | None = None) -> QtRequest | None:
        """Write the sample shown large (a dialog asks for the file without ``path``)."""
        job_args = self._selected_sample()
        if job_args is None:
            self.message.emit("Click a sample first: it is the one exported")
            return None
        image, state, request, spec, method, stem = job_args
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Export the sample", str(Path(self._start_dir()) /
                                                  f"{stem}.png"), "PNG (*.png);;JPEG (*.jpg *.jpeg);;WebP (*.webp)")
            if not path:
                return None
        self._last_dir = str(Path(path).parent)
        job = SaveImageJob(str(path), image, state, request, spec, method)
        return self._bridge.submit(job, slot=SAVE_SLOT).on(finished=self._saved, failed=self._failed)

    def _selected_sample(self):
        """(image, state, request, spec, method, file stem) of the sample shown large, or None."""
        if self.sweep_image is not None:
            strip = self.sweep_strip
            return (strip.images[0], strip.state, strip.request.only(strip.specs[0]), strip.specs[0], strip.method,
                    f"bicyclegan-{strip.specs[0].stem()}")
        if self.selected is None:
            return None
        key, i = self.selected
        strip = self.strips.get(key)
        if isinstance(strip, StyleGrid):
            seed = strip.seeds[i]
            return strip.images[i], with_style(strip.state, Source(seed=seed)), None, None, "", f"style{seed:05d}"
        spec = strip.specs[i]
        return strip.images[i], strip.state, strip.request.only(spec), spec, strip.method, \
            f"{strip.method}-{spec.stem()}"

    def export_row(self, key: str, folder: str | Path | None = None) -> QtRequest | None:
        """Write every sample of ``key``'s row at full resolution into ``folder`` (a dialog asks without it)."""
        strip = self.strips.get(key)
        if strip is None:
            return None
        if isinstance(strip, StyleGrid):
            return self._export("Folder for the samples", folder,
                                lambda f: SamplesExportJob(strip.state, strip.seeds, f))
        return self._export("Folder for the samples", folder, lambda f: I2IExportJob(strip.state, strip.request, f))

    def export_sweep(self, folder: str | Path | None = None) -> QtRequest | None:
        """Write the z sweep as ``SWEEP_FRAMES`` frames into ``folder`` (a dialog asks without it)."""
        req = self.sweep_request(tuple(i / (SWEEP_FRAMES - 1) for i in range(SWEEP_FRAMES)))
        if req is None:
            return None
        return self._export("Folder for the sweep's frames", folder, lambda f: I2IExportJob(self._state(), req, f))

    def _export(self, title: str, folder: str | Path | None, make_job) -> QtRequest | None:
        """Submit ``make_job(folder)`` once there is a folder (a dialog titled ``title`` asks without one)."""
        if not folder:
            folder = QFileDialog.getExistingDirectory(self, title, self._start_dir())
            if not folder:
                return None
        self._last_dir = str(folder)
        return self._bridge.submit(make_job(str(folder)), slot=EXPORT_SLOT).on(finished=self._exported,
                                                                               failed=self._failed)

    def translate_folder(self, key: str, folder: str | Path | None = None, out: str | Path | None = None):
        """Translate every photo of ``folder`` into ``out`` with ``key``'s row settings (dialogs ask without)."""
        req = self.request(key)
        if req is None or self._folder_dialog is not None:
            return None

        def submit(photos: str, into: str) -> QtRequest:
            return self._bridge.submit(I2IFolderJob(req, photos, into), slot=FOLDER_SLOT).on(
                finished=self._folder_done, failed=self._folder_failed, cancelled=self._folder_cancelled)

        return self._start_batch(folder, out, submit)

    # ----- results

    @staticmethod
    def _images(strip) -> tuple:
        return () if strip is None else strip.images

    def _labels(self, strip) -> tuple:
        if isinstance(strip, StyleGrid):
            return tuple(f"style seed {s}" for s in strip.seeds)
        return strip.labels

    def _sweep_ready(self, strip: I2IStrip) -> None:
        self.sweep_strip, self.sweep_image = strip, strip.images[0]
        self._show_large(strip.images[0], f"BicycleGAN: {strip.labels[0]}")

    def _saved(self, path: str) -> None:
        self.last_written = (path,)
        self.message.emit(f"Exported {path}")

    def _exported(self, paths: tuple[str, ...]) -> None:
        self.last_written = tuple(paths)
        self.message.emit(f"Wrote {len(paths)} images to {Path(paths[0]).parent}" if paths else "Nothing to write")

    def _folder_done(self, summary: FolderSummary) -> None:
        self._close_folder_dialog()
        self.last_written = summary.written
        lines = summary_lines(summary, self._folder_out, "sample")
        self.message.emit(" ".join(lines))
        self.summary_box = QMessageBox(QMessageBox.Icon.Information, "Translate a folder", "\n".join(lines),
                                       QMessageBox.StandardButton.Ok, self)
        self.summary_box.open()

    def _strip_ready(self, key: str, strip) -> None:
        self.strips[key] = strip
        row = self.rows[key]
        row.strip.show_images(strip.images, self._labels(strip))
        if isinstance(strip, StyleGrid):
            row.input_view.clear()
            row.input_view.setText("the face's\nlatent")
            row.status.setText(f"{strip.state.translation.target.label()}, depth {strip.state.translation.depth} px:"
                               f" {len(strip.seeds)} appearances sampled from the target")
        else:
            row.input_view.setPixmap(_pixmap(strip.input_image, THUMB))
            what = ", ".join(strip.labels[:1] + (f"… ({len(strip.labels)} samples)",) if len(strip.labels) > 2
                             else strip.labels)
            row.status.setText(f"Input: {strip.request.input.label()} · {what} · {strip.ms:.0f} ms")
        notices = [s.notice for s in self.strips.values() if isinstance(s, I2IStrip) and s.notice]
        self.notice.setText(notices[0] if notices else "")
        self.notice.setVisible(bool(notices))
        if self.selected and self.selected[0] == key and self.sweep_image is None:
            self.select(key, min(self.selected[1], len(strip.images) - 1))

    def _strip_failed(self, key: str, error: Exception) -> None:
        self._keys.pop(key, None)
        self.strips[key] = None
        self.rows[key].strip.show_images((), ())
        self.rows[key].status.setText(f"Cannot translate: {sentence(error)}")

    def _failed(self, error: Exception) -> None:
        self.failed.emit(as_report(error))
