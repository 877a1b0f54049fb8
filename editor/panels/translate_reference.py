"""The translate panel's reference image: its faces are found (a picker when there are several), the chosen one is
aligned and inverted in the target model, and the resulting latent becomes the translation's appearance.

``ReferenceImageMixin`` is the part of ``TranslatePanel`` that runs it (it uses the panel's document, job
submission, tool-button builder, ``_start_dir``, ``inversion_settings``, ``refresh``, ``style_label``, ``message``,
``failed`` and ``referenceRunningChanged``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QProgressBar

from editor.controllers.bridge import QtRequest
from editor.dialogs.error_box import as_report
from editor.dialogs.face_picker import FacePicker
from editor.panels.photo_panel import PHOTO_FILTER
from engine import (
    EditState,
    InversionOutcome,
    InversionStep,
    InvertJob,
    ModelRef,
    PhotoScan,
    ScanJob,
    box_transform,
    face_transform,
)

REF_SCAN_SLOT, REF_INVERT_SLOT = "translate-ref-scan", "translate-ref-invert"


class ReferenceImageMixin:
    """``TranslatePanel``'s reference-image flow: ``open_reference`` scans the image, ``use_reference_choice``
    inverts the chosen face in the target with progress and cancel, and the latent is applied as one edit."""

    def _build_reference(self) -> None:
        self._ref_path: str | None = None
        self._ref_scan: PhotoScan | None = None
        self._ref_target: ModelRef | None = None
        self._ref_running = False
        self._ref_request: QtRequest | None = None  # the reference's inversion (for Cancel)
        self.picker: FacePicker | None = None
        self.reference_button = self._tool("reference_image", "Image…", "Appearance from a reference image: its "
                                           "face is found, aligned and inverted in the target model",
                                           self.reference_dialog)
        self.ref_progress = QProgressBar(textVisible=True)
        self.ref_cancel = self._tool("cancel", "", "Stop inverting the reference image (the appearance is unchanged)",
                                     self.cancel_reference)

    def reference_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Reference image for the appearance", self._start_dir(),
                                              PHOTO_FILTER)
        if path:
            self._last_dir = str(Path(path).parent)
            self.open_reference(path)

    def _target_state(self) -> EditState | None:
        tr = self._doc.state.translation
        return None if tr is None else EditState(model=tr.target)

    def open_reference(self, path: str | Path) -> None:
        """Find the faces of the reference image ``path`` (in the worker); its face is then inverted in the target."""
        st = self._target_state()
        if st is None:
            self.message.emit("Choose a target model first")
            return
        self._ref_path, self._ref_target = str(path), st.model
        self.style_label.setText(f"Reading {Path(path).name}…")
        self._submit(ScanJob(str(path), st), REF_SCAN_SLOT, finished=self._reference_scanned,
                     failed=self._reference_failed)

    def _reference_scanned(self, scan: PhotoScan) -> None:
        self._ref_scan = scan
        if len(scan.faces) == 1:
            self.use_reference_choice(("face", 0))
            return
        self.picker = FacePicker(scan.photo.pixels, [f.box for f in scan.faces], name=Path(scan.photo.path).name,
                                 parent=self)
        self.picker.accepted.connect(lambda: self.use_reference_choice(self.picker.choice))
        self.picker.rejected.connect(lambda: self.refresh())
        self.picker.open()

    def use_reference_choice(self, choice: tuple) -> None:
        """``("face", index)`` or ``("box", (x0, y0, x1, y1))``: align it and invert it in the target."""
        scan, st = self._ref_scan, self._target_state()
        if scan is None or st is None or st.model != self._ref_target:
            self.refresh()
            return
        kind, value = choice
        transform = (face_transform(scan.faces[value], size=scan.size, recipe=scan.recipe) if kind == "face" else
                     box_transform(tuple(float(v) for v in value), size=scan.size))
        job = InvertJob(st, self._ref_path, transform, self.inversion_settings(), use_encoder=True, optimise=True)
        self._ref_request = self._submit(job, REF_INVERT_SLOT, finished=self._reference_inverted,
                                         failed=self._reference_failed, cancelled=self._reference_cancelled,
                                         progress=self._reference_progress, partial=self._reference_step)
        self.ref_progress.setValue(0)
        self.ref_progress.setFormat("inverting in the target…")
        self._set_reference_running(True)

    def cancel_reference(self) -> None:
        if self._ref_request is not None:
            self._ref_request.cancel()

    def reference_running(self) -> bool:
        return self._ref_running

    def _set_reference_running(self, on: bool) -> None:
        changed = on != self._ref_running
        self._ref_running = on
        if not on:
            self._ref_request = None
        self.ref_progress.setVisible(on)
        self.ref_cancel.setVisible(on)
        self.reference_button.setEnabled(not on)
        if changed:
            self.referenceRunningChanged.emit(on)

    def _reference_progress(self, fraction: float, _text: str) -> None:
        self.ref_progress.setValue(round(100 * fraction))

    def _reference_step(self, step: InversionStep) -> None:
        self.ref_progress.setFormat(f"step {step.step}/{step.total} · PSNR {step.psnr:.1f} dB")

    def _reference_inverted(self, outcome: InversionOutcome) -> None:
        self._set_reference_running(False)
        tr = self._doc.state.translation
        if tr is None or tr.target != outcome.state.model:
            self.message.emit("The target changed while the reference was inverted: its appearance was not used")
            return
        name = outcome.state.photo.name
        self._doc.edit(f"Appearance from {name}", translation=dataclasses.replace(tr, style=outcome.state.base))
        self.message.emit(f"Appearance from {name} (inverted in {tr.target.label()}: PSNR {outcome.psnr:.1f} dB)")

    def _reference_failed(self, error: Exception) -> None:
        self._set_reference_running(False)
        self.refresh()
        self.failed.emit(as_report(error).prefixed("Cannot use the reference image"))

    def _reference_cancelled(self) -> None:
        self._set_reference_running(False)
        self.refresh()
        self.message.emit("Reference image cancelled: the appearance is unchanged")
