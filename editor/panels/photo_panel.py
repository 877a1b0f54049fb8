"""Photo panel: open a photo, choose its face, invert it into the generator, refine, and paste the edit back.

The steps run in the engine worker: ``ScanJob`` (read + detect), ``InvertJob`` (encoder guess, then the optimiser,
with a preview every few steps, stoppable and cancellable), ``ReconstructionJob`` (the PSNR / SSIM readout of the
document's photo latent, after an undo or when a project is reopened) and ``PasteJob`` (the current face blended
back into the photo at full resolution). A finished inversion is one undoable edit: the document's base becomes the
photo's latent, so every other panel then edits the photo. A refine is one too: it fits that latent further and keeps
the edits made on top of it. While an inversion runs, no other photo is opened or inverted. Unless the tuning is
"Fit only", a new inversion is followed by ``TuneJob`` (the generator tuned around the found latent, stoppable and
cancellable too), a second undoable edit that sets the state's ``tuning``: by default the quick tuning, which ends
when the round trip has taken ``PHOTO_SECONDS`` (``quick_tuning``), or "Keep the person", ``TuneSettings``' steps.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from editor.controllers.bridge import QtRequest
from editor.dialogs.error_box import as_report, sentence
from editor.dialogs.face_picker import FacePicker
from editor.widgets.icons import icon
from editor.widgets.images import HeldImage
from engine import (
    PHOTO_STEPS,
    AlignTransform,
    EditState,
    InversionOutcome,
    InversionSettings,
    InversionStep,
    InvertJob,
    PasteJob,
    PasteResult,
    PhotoRef,
    PhotoScan,
    Reconstruction,
    ReconstructionJob,
    ScanJob,
    TuneJob,
    TuneOutcome,
    TuneSettings,
    box_transform,
    face_transform,
    photo_latent,
    tuning_after,
)

SCAN_SLOT, INVERT_SLOT, PASTE_SLOT, QUALITY_SLOT = "photo-scan", "photo-invert", "photo-paste", "photo-quality"
NO_PHOTO = "No photo: the face is generated from its seed."
INFO_STYLE, WARNING_STYLE = "color: palette(mid)", "color: #cb4b16"
READOUTS_KEPT = 16  # photo latents whose readout is remembered (undo / redo shows them without a new measure)
PHOTO_FILTER = "Photos (*.jpg *.jpeg *.png *.webp *.bmp *.tif *.tiff);;All files (*)"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
THUMB = 112
METHODS = {  # label -> (use the encoder, run the optimiser)
    "Encoder + optimiser": (True, True),
    "Optimiser only": (False, True),
    "Encoder only (instant)": (True, False),
}
ONE_PASS = "Encoder only (instant)"  # what a model with an e4e encoder starts with: Refine runs the optimiser after
TUNING_LABELS = {  # engine.TUNINGS key -> (label, tooltip); the first is the default
    "quick": ("Quick tuning (10 s in all)", "After the fit, tune the generator itself around the found latent until "
                                            "the whole inversion has taken about 10 s (pivotal tuning): the face "
                                            "keeps much more of this person"),
    "person": ("Keep the person (longer)", "After the fit, tune the generator around the found latent for up to "
                                           "300 steps (about 10-20 s more): the closest reconstruction"),
    "off": ("Fit only", "Only fit the latent: the generator stays as it is (faster, further from the photo)"),
}


def is_photo(path: str) -> bool:
    return Path(path).suffix.lower() in PHOTO_SUFFIXES


def _thumb(label: QLabel, image: np.ndarray | None, text: str) -> None:
    if image is None:
        label.clear()
        label.setText(text)
        return
    pm = QPixmap.fromImage(HeldImage(np.ascontiguousarray(image)).qimage)
    label.setPixmap(pm.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                              Qt.TransformationMode.SmoothTransformation))


def _quality_text(psnr: float, ssim: float) -> str:
    return f"PSNR {psnr:.1f} dB · SSIM {ssim:.3f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def kept_edits_text(state: EditState) -> str:
    """What a refine kept on top of the refined latent, e.g. "your 2 attribute edits and style mixing are kept"
    ("" when nothing was edited)."""
    attributes = sum(e.kind == "attribute" for e in state.edits)
    lighting = len(state.edits) - attributes
    parts = ([_plural(attributes, "attribute edit")] if attributes else []) + \
            ([_plural(lighting, "lighting edit")] if lighting else []) + \
            (["style mixing"] if state.mixed() else []) + (["translation"] if state.translation else [])
    if not parts:
        return ""
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    single = len(parts) == 1 and len(state.edits) <= 1
    return f"your {text} {'is' if single else 'are'} kept"


class PhotoPanel(QWidget):
    """``message(text)`` for the status bar, ``pasted(image or None)`` with the photo view, ``aligned(image)``
    with the photo's face as the model sees it (the "before" of the side-by-side view), ``runningChanged(bool)``
    when an inversion starts or ends."""

    message = Signal(str)
    failed = Signal(object)  # ErrorReport
    pasted = Signal(object)
    aligned = Signal(object)
    runningChanged = Signal(bool)

    def __init__(self, document, bridge, settings=None, parent: QWidget | None = None):
        super().__init__(parent)
        self._doc, self._bridge, self._settings = document, bridge, settings
        self._scan: PhotoScan | None = None
        self._invert_request: QtRequest | None = None  # the running inversion (for Cancel)
        self._job: InvertJob | TuneJob | None = None
        self._running = False
        self._pick_after_scan = False  # the scan was asked for by "Choose face…": open the picker, invert nothing
        # photo latent (``photo_latent``) -> (readout text, reconstruction, aligned photo), newest last
        self._readouts: OrderedDict[EditState, tuple[str, np.ndarray, np.ndarray]] = OrderedDict()
        self._photos: dict[PhotoRef, str] = {}  # photos measured or inverted: "" readable, else why not
        self._aligned: np.ndarray | None = None
        self.last_outcome: InversionOutcome | None = None
        self.last_paste: PasteResult | None = None
        self.picker: FacePicker | None = None
        self.tune_settings = TuneSettings()  # "Keep the person"; the quick tuning is ``quick_tuning``'s

        self.open_button = QPushButton(icon("open_photo"), "Open photo…")
        self.open_button.setToolTip("Load a photo and edit its face (Ctrl+Shift+P); you can also drop one on the "
                                    "window")
        self.info = QLabel(NO_PHOTO)
        self.info.setWordWrap(True)
        self.info.setStyleSheet(INFO_STYLE)
        self.choose_button = QToolButton(text="Choose face…", toolTip="Pick another face of the photo, or place a "
                                                                      "crop box by hand")
        self.target_view, self.recon_view = QLabel(), QLabel()
        for view, tip in ((self.target_view, "The photo's face, aligned as the model's training faces were"),
                          (self.recon_view, "The generator's reconstruction of it")):
            view.setFixedSize(THUMB, THUMB)
            view.setAlignment(Qt.AlignmentFlag.AlignCenter)
            view.setStyleSheet("background: #2b2b2b; color: #9a9a9a; border-radius: 3px")
            view.setToolTip(tip)
        _thumb(self.target_view, None, "photo")
        _thumb(self.recon_view, None, "inverted")
        self.method = QComboBox(toolTip="Encoder: an instant first guess in one pass, from the e4e encoder of the "
                                        "model (an e4e file's own, or one paired with it) or, for the embedded "
                                        "default, the shipped encoder. Optimiser: fits the latent and noise to the "
                                        "photo (Refine runs it after an encoder-only inversion)")
        self.method.addItems(list(METHODS))
        self.steps = QSpinBox(minimum=10, maximum=5000, singleStep=50, value=PHOTO_STEPS, suffix=" steps",
                              toolTip="Optimiser steps for a new inversion; more is closer and slower")
        self.tuning = QComboBox(toolTip="What follows the fit (and a Refine). The tuned weights are stored with the "
                                        "project; a refined latent is tuned again")
        for key, (label, tip) in TUNING_LABELS.items():
            self.tuning.addItem(label, key)
            self.tuning.setItemData(self.tuning.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.invert_button = QPushButton(icon("invert"), "Invert")
        self.invert_button.setToolTip("Fit the generator's latent to the chosen face (Ctrl+I)")
        self.refine_button = QPushButton("Refine")
        self.refine_button.setToolTip("Run the optimiser further from the current inversion and keep its best step "
                                      "(never a worse fit than now), then tune the generator again as chosen below; "
                                      "your mixing and attribute edits stay on top of it")
        self.stop_button = QToolButton(icon=icon("stop"), toolTip="Stop now and keep the result so far")
        self.cancel_button = QToolButton(icon=icon("cancel"), toolTip="Cancel and discard this inversion (Esc)")
        self.progress = QProgressBar(textVisible=True)
        self.quality = QLabel("", wordWrap=True)
        self.quality.setToolTip("Reconstruction against the aligned photo: PSNR (higher is closer; 28 dB and more "
                                "looks the same) and SSIM (1 is identical)")
        self.in_photo = QCheckBox("Show in photo")
        self.in_photo.setToolTip("Show the edited face pasted back into the whole photo (P)")
        self.export_button = QToolButton(icon=icon("export_image"), text="Export photo…", toolButtonStyle=
                                         Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.export_button.setToolTip("Save the whole photo with the edited face pasted back, at full resolution")

        box = QGroupBox("Photo")
        grid = QGridLayout(box)
        top = QHBoxLayout()
        top.addWidget(self.open_button)
        top.addWidget(self.choose_button)
        top.addStretch(1)
        grid.addLayout(top, 0, 0, 1, 2)
        grid.addWidget(self.info, 1, 0, 1, 2)
        self.thumbs = QWidget()  # shown once there is a photo: the dock needs the room otherwise
        thumbs = QHBoxLayout(self.thumbs)
        thumbs.setContentsMargins(0, 0, 0, 0)
        thumbs.addWidget(self.target_view)
        thumbs.addWidget(self.recon_view)
        thumbs.addStretch(1)
        grid.addWidget(self.thumbs, 2, 0, 1, 2)
        grid.addWidget(self.method, 3, 0)
        grid.addWidget(self.steps, 3, 1)
        grid.addWidget(self.tuning, 4, 0, 1, 2)
        run = QHBoxLayout()
        run.addWidget(self.invert_button)
        run.addWidget(self.refine_button)
        run.addWidget(self.progress, 1)
        run.addWidget(self.stop_button)
        run.addWidget(self.cancel_button)
        grid.addLayout(run, 5, 0, 1, 2)
        grid.addWidget(self.quality, 6, 0, 1, 2)
        bottom = QHBoxLayout()
        bottom.addWidget(self.in_photo)
        bottom.addStretch(1)
        bottom.addWidget(self.export_button)
        grid.addLayout(bottom, 7, 0, 1, 2)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(box)

        self._paste_timer = QTimer(self, singleShot=True, interval=150)
        self._paste_timer.timeout.connect(self.request_paste)
        self.open_button.clicked.connect(self.open_dialog)
        self.choose_button.clicked.connect(self.choose_face)
        self.invert_button.clicked.connect(lambda: self.start_inversion())
        self.refine_button.clicked.connect(lambda: self.start_inversion(refine=True))
        self.stop_button.clicked.connect(self.stop)
        self.cancel_button.clicked.connect(self.cancel)
        self.in_photo.toggled.connect(self._in_photo_toggled)
        document.changed.connect(self._on_changed)
        document.modelLoaded.connect(self._model_loaded)
        self.transform = None
        self._set_running(False)

    # ----- opening and choosing

    def open_dialog(self) -> None:
        start = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
        path, _ = QFileDialog.getOpenFileName(self, "Open photo", start, PHOTO_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str, *, pick: bool = False) -> None:
        """Read ``path`` and find its faces in the worker; the face choice and the inversion follow (``pick``: the
        face picker opens whatever was found). Refused while an inversion runs."""
        if self._refused(f"open {Path(path).name}"):
            return
        self._pick_after_scan = pick
        self.info.setStyleSheet(INFO_STYLE)
        self.info.setText(f"Reading {Path(path).name}…")
        self._bridge.submit(ScanJob(str(path), self._doc.state), slot=SCAN_SLOT).on(finished=self._scanned,
                                                                                     failed=self._scan_failed)

    def _refused(self, what: str) -> bool:
        """While an inversion runs nothing else starts: say so and return True."""
        if self.running():
            self.message.emit(f"An inversion is running: stop it or cancel it (Esc) before you {what}")
        return self.running()

    def _scan_is_the_photo(self) -> bool:
        """The last scan is of the document's photo (or the document has none): "Choose face…" may use it."""
        ref = self._doc.state.photo
        return self._scan is not None and (ref is None or Path(self._scan.photo.path).resolve() == Path(ref.path))

    def choose_face(self) -> None:
        """Open the face picker (window-modal): the chosen face or crop box is aligned and inverted. The document's
        photo when the panel has not read it yet (a reopened project) is read first."""
        ref = self._doc.state.photo
        if not self._scan_is_the_photo() and ref is not None and self._photos.get(ref) == "":
            self.open_path(ref.path, pick=True)
            return
        scan = self._scan
        if scan is None:
            return
        self.picker = FacePicker(scan.photo.pixels, [f.box for f in scan.faces], name=Path(scan.photo.path).name,
                                 parent=self)
        self.picker.accepted.connect(lambda: self.use_choice(self.picker.choice))
        self.picker.rejected.connect(lambda: self.message.emit(
            "No face chosen: press “Choose face…” to pick one or place a crop box"))
        self.picker.open()

    def use_choice(self, choice: tuple) -> None:
        """``("face", index)`` or ``("box", (x0, y0, x1, y1))``: align it and start the inversion."""
        scan = self._scan
        kind, value = choice
        if kind == "face":
            self.transform = face_transform(scan.faces[value], size=scan.size, recipe=scan.recipe)
        else:
            self.transform = box_transform(tuple(float(v) for v in value), size=scan.size)
        self.start_inversion(source=(scan.photo.path, self.transform))

    # ----- inversion

    def settings(self) -> InversionSettings:
        """The default settings with the chosen steps, and LPIPS as the loss when its weights are set."""
        lpips = self._settings.lpips_path if self._settings is not None else ""
        extra = dict(loss="lpips", lpips_path=lpips) if lpips else {}
        return dataclasses.replace(InversionSettings(), steps=self.steps.value(), **extra)

    def _invert_source(self) -> tuple[str, AlignTransform] | None:
        """What Invert inverts: the document's photo (from its stored alignment) once it is known to be readable,
        else the face chosen in the last photo opened; None when there is nothing (or the photo is missing)."""
        ref = self._doc.state.photo
        if ref is not None:
            return (ref.path, AlignTransform(quad=ref.quad, size=ref.size)) if self._photos.get(ref) == "" else None
        if self._scan is not None and self.transform is not None:
            return self._scan.photo.path, self.transform
        return None

    def start_inversion(self, *, refine: bool = False, source: tuple[str, AlignTransform] | None = None) -> None:
        """Invert ``source`` (photo path, alignment; default ``_invert_source``), or refine the document's photo
        latent. Refused while an inversion runs."""
        if self._refused("start another"):
            return
        st = self._doc.state
        if refine:
            if st.photo is None:
                self.message.emit("Nothing to refine: invert a photo first")
                return
            source = st.photo.path, AlignTransform(quad=st.photo.quad, size=st.photo.size)
        source = source or self._invert_source()
        if source is None:
            error = self._photos.get(st.photo) if st.photo is not None else None
            self.message.emit(error or "Open a photo first (Ctrl+Shift+P)")
            return
        path, transform = source
        use_encoder, optimise = METHODS[self.method.currentText()]
        self._job = InvertJob(st, path, transform, self.settings(), use_encoder=use_encoder and not refine,
                              optimise=optimise or refine, refine=refine)
        self._invert_request = self._bridge.submit(self._job, slot=INVERT_SLOT).on(
            finished=self._on_inverted, failed=self._invert_failed, cancelled=self._invert_cancelled,
            progress=self._on_progress, partial=self._on_step)
        self.progress.setValue(0)
        self.progress.setFormat("starting…")
        self._set_running(True)
        what = f"Refining {Path(path).name}" if refine else f"Inverting {Path(path).name}"
        self.message.emit(f"{what}… Stop keeps the result so far, Esc cancels it; no other photo can be opened "
                          f"until it ends")

    def stop(self) -> None:
        if self._job is not None:
            self._job.stop.set()

    def cancel(self) -> None:
        if self._invert_request is not None:
            self._invert_request.cancel()

    def running(self) -> bool:
        return self._job is not None

    def _set_running(self, on: bool) -> None:
        for w in (self.stop_button, self.cancel_button, self.progress):
            w.setVisible(on)
        ref = self._doc.state.photo
        has_photo = ref is not None
        readable = has_photo and self._photos.get(ref) == ""
        usable = has_photo and self._photos.get(ref, "") == ""  # not known to be missing
        shown = on or has_photo or self._scan is not None  # before a photo: just the button, room for the rest
        for w in (self.thumbs, self.method, self.steps, self.tuning, self.invert_button, self.refine_button,
                  self.quality, self.in_photo, self.export_button):
            w.setVisible(shown)
        self.invert_button.setEnabled(not on and self._invert_source() is not None)
        self.refine_button.setEnabled(not on and readable)
        self.choose_button.setEnabled(not on and (self._scan_is_the_photo() or readable))
        self.open_button.setEnabled(not on)
        self.in_photo.setEnabled(usable)
        self.export_button.setEnabled(usable)
        if on != self._running:
            self._running = on
            self.runningChanged.emit(on)

    # ----- paste back

    def _in_photo_toggled(self, on: bool) -> None:
        if on:
            self.request_paste()
        else:
            self.pasted.emit(None)

    def request_paste(self) -> None:
        ref = self._doc.state.photo
        if ref is not None and self._photos.get(ref, "") == "":  # not for a photo known to be missing
            self._bridge.submit(PasteJob(self._doc.state), slot=PASTE_SLOT).on(finished=self._pasted,
                                                                               failed=self._paste_failed)

    # ----- the readout: always the current photo latent's

    def _remember(self, key: EditState, text: str, image: np.ndarray, aligned: np.ndarray) -> None:
        self._readouts[key] = (text, image, aligned)
        self._readouts.move_to_end(key)
        while len(self._readouts) > READOUTS_KEPT:
            self._readouts.popitem(last=False)

    def _show_readout(self) -> None:
        """Show the PSNR / SSIM and the reconstruction of the document's photo latent: remembered, or measured on
        the worker (a reopened project, a photo not read yet); nothing when there is no photo or it is missing.
        While an inversion runs its steps are shown instead."""
        if self.running():
            return
        st = self._doc.state
        if st.photo is None:
            if self.info.styleSheet() == WARNING_STYLE:  # the missing photo is no longer the document's
                self.info.setStyleSheet(INFO_STYLE)
                self.info.setText(NO_PHOTO)
            self.quality.setText("")
            _thumb(self.recon_view, None, "inverted")
            return
        error = self._photos.get(st.photo)
        self.info.setStyleSheet(WARNING_STYLE if error else INFO_STYLE)
        if error:
            self.quality.setText("")
            self.info.setText(error)
            _thumb(self.target_view, None, "photo missing")
            _thumb(self.recon_view, None, "inverted")
            return
        self.info.setText(f"{st.photo.name} · face {st.photo.size} px")
        remembered = self._readouts.get(photo_latent(st))
        if remembered is not None:
            text, image, aligned = remembered
            self.quality.setText(text)
            _thumb(self.recon_view, image, "inverted")
            _thumb(self.target_view, aligned, "photo")
            return
        self.quality.setText("Measuring the reconstruction…")
        _thumb(self.recon_view, None, "…")
        self._bridge.submit(ReconstructionJob(st), slot=QUALITY_SLOT).on(finished=self._measured,
                                                                         failed=self._measure_failed)

    def _measured(self, rec: Reconstruction) -> None:
        self._photos[rec.key.photo] = ""
        self._remember(rec.key, _quality_text(rec.psnr, rec.ssim), rec.image, rec.aligned)
        if self._aligned is None and self._doc.state.photo == rec.key.photo:
            self._aligned = rec.aligned
            self.aligned.emit(rec.aligned)
        self._show_readout()
        self._set_running(self.running())

    def _measure_failed(self, error: Exception) -> None:
        ref = self._doc.state.photo
        if ref is None:
            return
        self._photos[ref] = (f"{sentence(error).rstrip('.')}. The face still renders from its latent; Invert, Refine "
                             f"and Show in photo need the photo file.")
        self._show_readout()
        self._set_running(self.running())

    def current_paste(self) -> PasteResult | None:
        r = self.last_paste
        return r if r is not None and r.state == self._doc.state else None

    # ----- engine events

    def _model_loaded(self, summary) -> None:
        """A model with an e4e encoder (its own or paired) encodes photos in one pass; Refine optimises further."""
        if (summary.encoder or self._doc.state.encoder is not None) and not self.running():
            self.method.setCurrentText(ONE_PASS)

    def _on_changed(self, state, fields) -> None:
        if "encoder" in fields and state.encoder is not None and not self.running():
            self.method.setCurrentText(ONE_PASS)
        if state.photo is None:
            self.last_paste = None
            if self.in_photo.isChecked():
                self.in_photo.setChecked(False)
            if "photo" in fields:
                self._aligned = None
                self.aligned.emit(None)
        elif "photo" in fields or self._aligned is None:
            self._paste_timer.start(0)  # also brings the aligned face (the "before") back after an undo
        elif self.in_photo.isChecked():
            self._paste_timer.start()
        if fields & {"photo", "base", "noise_maps", "model", "tuning"}:
            self._show_readout()
        self._set_running(self.running())

    def _pasted(self, paste: PasteResult) -> None:
        self.last_paste = paste
        self._aligned = paste.aligned
        _thumb(self.target_view, paste.aligned, "photo")
        self.aligned.emit(paste.aligned)
        if self.in_photo.isChecked() and paste.state == self._doc.state:
            self.pasted.emit(paste.pasted)

    def _paste_failed(self, error: Exception) -> None:
        self.message.emit(f"Cannot paste back into the photo: {sentence(error)}")
        self.pasted.emit(None)

    def _scan_failed(self, error: Exception) -> None:
        self._pick_after_scan = False
        self.info.setText("Could not open the photo.")
        self.failed.emit(as_report(error).prefixed("Could not open the photo"))

    def _scanned(self, scan: PhotoScan) -> None:
        self._scan = scan
        photo = scan.photo
        h, w = photo.pixels.shape[:2]
        n = len(scan.faces)
        note = f" (reduced ×{photo.downscale:.2f} to fit in memory)" if photo.downscale != 1 else ""
        self.info.setText(f"{Path(photo.path).name} · {w}×{h}{note} · "
                          + (f"{n} face{'s' if n != 1 else ''} found" if n else "no face found"))
        self.transform = None
        self._set_running(False)
        pick, self._pick_after_scan = self._pick_after_scan, False
        if n == 1 and not pick:
            self.use_choice(("face", 0))
        else:
            self.choose_face()

    def _on_inverted(self, outcome: InversionOutcome) -> None:
        job, self._job, self._invert_request = self._job, None, None
        self._inverted(outcome, job)

    def _inverted(self, outcome: InversionOutcome, job: InvertJob | None) -> None:
        self.last_outcome = outcome
        ref = outcome.state.photo
        self._photos[ref] = ""
        stopped = " (stopped)" if outcome.stopped else ""
        if outcome.refine:
            best = f", best at step {outcome.kept_step}" if 0 < outcome.kept_step < outcome.steps else ""
            how = f"refined +{outcome.steps} steps{best}"
        else:
            how = ("encoder only" if outcome.steps == 0 else
                   f"{outcome.steps} steps" + (" from the encoder's guess" if outcome.encoder else ""))
        if not (outcome.refine and outcome.kept_step == 0):  # a refine that kept its start keeps its readout
            self._remember(photo_latent(outcome.state), f"{_quality_text(outcome.psnr, outcome.ssim)} · {how} · "
                           f"{outcome.seconds:.1f} s{stopped}", outcome.image, outcome.aligned)
        self._set_running(False)
        self._aligned = outcome.aligned
        self.aligned.emit(outcome.aligned)
        if outcome.refine:
            if self._refined(outcome, job) and self._tune_after(outcome):
                return
        else:
            self._doc.edit(f"Invert {ref.name}", model=outcome.state.model, base=outcome.state.base,
                           noise_maps=outcome.state.noise_maps, photo=ref, rows=(), edits=(), locks=(), tuning=None)
            self.message.emit(f"{ref.name} inverted: PSNR {outcome.psnr:.1f} dB — the sliders now edit the photo")
            if self._tune_after(outcome):
                return
        self._show_readout()
        self._set_running(False)

    def _tune_after(self, outcome: InversionOutcome) -> bool:
        """Start the chosen tuning after a fit that gave the document a new photo latent (``tuning_after``: none
        after an encoder-only guess, which stays instant, nor after a stopped fit); whether one started."""
        settings = tuning_after(outcome, self.tuning.currentData(), person=self.tune_settings)
        if settings is not None:
            self.start_tuning(settings)
        return settings is not None

    def start_tuning(self, settings: TuneSettings | None = None) -> None:
        """Tune the generator around the document's photo latent with ``settings`` (None: "Keep the person"'s,
        ``tune_settings``); refused while a job runs."""
        if self._refused("keep the person"):
            return
        st = self._doc.state
        if st.photo is None or st.base is None:
            self.message.emit("Keep the person needs an inverted photo: invert one first")
            return
        self._job = TuneJob(st, settings=settings or self.tune_settings)
        self._invert_request = self._bridge.submit(self._job, slot=INVERT_SLOT).on(
            finished=self._on_tuned, failed=self._invert_failed, cancelled=self._tuning_cancelled,
            progress=self._on_progress, partial=self._on_step)
        self.progress.setValue(0)
        self.progress.setFormat("keeping the person…")
        self._set_running(True)
        self.message.emit(f"Keeping the person in {st.photo.name}: tuning the generator for a few seconds… Stop "
                          "keeps the tuning so far, Esc cancels it")

    def _on_tuned(self, outcome: TuneOutcome) -> None:
        job, self._job, self._invert_request = self._job, None, None
        st, name = self._doc.state, outcome.state.photo.name
        self._set_running(False)
        if job is None or photo_latent(st).replace(tuning=None) != photo_latent(job.state).replace(tuning=None):
            self.message.emit(f"The face changed while {name} was tuned: the tuning was not used")
            self._show_readout()
            return
        self._remember(photo_latent(outcome.state), f"{_quality_text(outcome.psnr, outcome.ssim)} · person kept: "
                       f"{outcome.steps} tuning steps · {outcome.seconds:.1f} s", outcome.image,
                       self._aligned if self._aligned is not None else outcome.image)
        self._doc.edit(f"Keep the person in {name}", tuning=outcome.state.tuning)
        self.message.emit(f"Kept the person in {name}: PSNR {outcome.start_psnr:.1f} → {outcome.psnr:.1f} dB "
                          f"({outcome.steps} tuning steps, {outcome.bytes // 1024} kB stored with the project)")
        self._show_readout()
        self._set_running(False)

    def _tuning_cancelled(self) -> None:
        self._job = self._invert_request = None
        self._set_running(False)
        self._show_readout()
        self.message.emit("Keep the person cancelled: the inversion is kept without the tuning")

    def _refined(self, outcome: InversionOutcome, job: InvertJob | None) -> bool:
        """Apply a refine: only the photo latent (and its noise maps) changes, its tuning is dropped (the chosen
        tuning then runs again); every edit on top of it stays. Whether the latent changed."""
        st, name = self._doc.state, outcome.state.photo.name
        if job is None or photo_latent(st) != photo_latent(job.state):
            self.message.emit(f"The face changed while {name} was refined: the refinement was not used")
            return False
        kept = kept_edits_text(st)
        kept = f"; {kept}" if kept else ""
        if outcome.kept_step == 0:
            self.message.emit(f"Refine found no better fit in {outcome.steps} steps: {name} is kept as it was "
                              f"(PSNR {outcome.start_psnr:.1f} dB){kept}")
            return False
        self._doc.edit(f"Refine {name}", base=outcome.state.base, noise_maps=outcome.state.noise_maps, tuning=None)
        best = f" (best at step {outcome.kept_step})" if outcome.kept_step < outcome.steps else ""
        self.message.emit(f"Refined {name} {outcome.steps} more steps: PSNR {outcome.start_psnr:.1f} → "
                          f"{outcome.psnr:.1f} dB{best}{kept}")
        return True

    def _on_step(self, step: InversionStep) -> None:
        if step.aligned is not None:
            _thumb(self.target_view, step.aligned, "photo")
        _thumb(self.recon_view, step.image, "inverted")
        self.quality.setText(f"step {step.step}/{step.total} · PSNR {step.psnr:.1f} dB · SSIM {step.ssim:.3f}")

    def _on_progress(self, fraction: float, text: str) -> None:
        self.progress.setValue(round(100 * fraction))
        self.progress.setFormat(text or "%p%")

    def _invert_failed(self, error: Exception) -> None:
        self._job = self._invert_request = None
        self._set_running(False)
        self._show_readout()
        self.failed.emit(as_report(error).prefixed("The inversion failed"))

    def _invert_cancelled(self) -> None:
        self._job = self._invert_request = None
        self._set_running(False)
        self._show_readout()  # the kept result's numbers, not the cancelled run's last step
        self.message.emit("Inversion cancelled: the face is unchanged")
