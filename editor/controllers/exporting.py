"""Exports for the main window's File menu: the image (PNG with the project inside, JPEG, WebP), the current W+ latent
(.npy / .pt) and a batch of seeds with the current settings, each run on the engine worker.

Renders and file writes happen in worker jobs (slot ``export`` for one image or latent, ``batch`` for a seed range), so
the window stays responsive; a batch shows a progress dialog whose Cancel stops it after the image being written. A
batch always writes each seed's own face with the document's other settings and edits: a face from a photo (or a
latent) is not part of it, and the batch dialog says so.
Each export listens to its own request; failures come back as message boxes (the job's exception shown as a
sentence with its details), completions as ``message(str)`` for the status bar.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QStandardPaths, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressDialog,
    QPushButton,
    QWidget,
)

from editor.controllers.bridge import QtRequest
from editor.dialogs.error_box import as_report, show_error
from engine import (
    LATENT_FORMATS,
    BatchExportJob,
    EditState,
    JobContext,
    LatentJob,
    PasteJob,
    ProjectError,
    RenderJob,
    RenderResult,
    image_format,
    parse_seeds,
    save_image,
    save_latent,
)

EXPORT_SLOT = "export"
BATCH_SLOT = "batch"
IMAGE_FILTERS = {"PNG image, parameters kept inside (*.png)": ".png", "JPEG image (*.jpg *.jpeg)": ".jpg",
                 "WebP image (*.webp)": ".webp"}
LATENT_FILTERS = {"NumPy array (*.npy)": ".npy", "PyTorch tensor (*.pt)": ".pt"}
BATCH_FORMATS = {".png": "PNG (parameters kept inside)", ".jpg": "JPEG", ".webp": "WebP"}
PROGRESS_STEPS = 1000


@dataclass(frozen=True, eq=False)
class ImageExportJob:
    """Worker job: write ``state``'s image to ``path``, rendering it at full resolution unless ``image`` is given."""

    path: str
    state: EditState
    image: np.ndarray | None = field(default=None, repr=False)  # uint8 [H, W, 3], a full render of ``state``

    def __call__(self, ctx: JobContext) -> str:
        image = self.image if self.image is not None else RenderJob(self.state)(ctx).image
        return str(save_image(self.path, image, state=self.state))


@dataclass(frozen=True)
class PhotoExportJob:
    """Worker job: paste ``state``'s face back into its photo and write the whole photo to ``path``."""

    path: str
    state: EditState

    def __call__(self, ctx: JobContext) -> str:
        return str(save_image(self.path, PasteJob(self.state)(ctx).pasted, state=self.state))


@dataclass(frozen=True)
class LatentExportJob:
    """Worker job: write ``state``'s W+ latent [num_ws, w_dim] to ``path`` (.npy or .pt); returns (path, shape)."""

    path: str
    state: EditState

    def __call__(self, ctx: JobContext) -> tuple[str, tuple[int, ...]]:
        ws = LatentJob(self.state)(ctx)  # float32 [num_ws, w_dim]
        return str(save_latent(self.path, ws)), tuple(ws.shape)


@dataclass
class _Batch:
    request: QtRequest
    folder: Path
    total: int
    dialog: QProgressDialog
    written: int = 0
    source: str | None = None  # what the document's face comes from, which the batch leaves out


def face_source(state: EditState) -> str | None:
    """What the document's face comes from when it is not its seed ("the photo me.png", "the latent w.npy"), else
    None: a batch export renders seeds, so it leaves that out."""
    if state.photo is not None:
        return f"the photo {state.photo.name}"
    return None if state.base is None else f"the latent {state.base.label()}"


class ExportController(QObject):
    """Export actions over the document's state. ``current_image()`` returns the preview's latest frame: a
    ``RenderResult`` (used when it is a full-resolution render of the current state), a uint8 [H, W, 3] array the
    caller guarantees is such a render, or None; otherwise the image is rendered for the export."""

    message = Signal(str)

    def __init__(self, document, bridge, parent_widget: QWidget | None, *,
                 current_image: Callable[[], RenderResult | np.ndarray | None]):
        super().__init__(parent_widget)
        self._doc = document
        self._bridge = bridge
        self._parent = parent_widget
        self._current_image = current_image
        self._folder: Path | None = None
        self._export: QtRequest | None = None  # the running image, photo or latent export
        self._batch: _Batch | None = None

    @property
    def busy(self) -> bool:
        """An image, latent or batch export is still running."""
        return self._export is not None or self._batch is not None

    @property
    def progress_dialog(self) -> QProgressDialog | None:
        """The running batch's progress dialog."""
        return None if self._batch is None else self._batch.dialog

    # -- image ----------------------------------------------------------------------------------------------------
    def export_image(self, path: str | Path | None = None) -> QtRequest | None:
        """Write the current face at full resolution (PNG keeps the project in a text chunk). Without ``path`` a file
        dialog asks. Returns the engine request, or None when nothing was started."""
        state = self._doc.state
        path = self._image_path(path, "image", f"seed{state.seed:05d}.png")
        if path is None:
            return None
        return self._submit_export(ImageExportJob(str(path), state, self._full_frame(state)),
                                   lambda written: self.message.emit(f"Exported the image to {written}"),
                                   f"Exporting the image to {path.name}…")

    def _image_path(self, path: str | Path | None, what: str, suggested: str) -> Path | None:
        """``path``, or the one a save dialog asks for; None when cancelled or not an image format (said so)."""
        if not path:  # None, or the checked flag of a menu action's triggered(bool)
            path = self._ask_save_path(f"Export {what}", suggested, IMAGE_FILTERS)
            if path is None:
                return None
        path = Path(path)
        try:
            image_format(path)
        except ProjectError as e:
            QMessageBox.warning(self._parent, f"Cannot export the {what}", str(e))
            return None
        return path

    def _full_frame(self, state: EditState) -> np.ndarray | None:
        """The preview's frame when it already is the full-resolution image of ``state`` (no render needed)."""
        frame = self._current_image()
        if isinstance(frame, RenderResult):
            return frame.image if frame.full and frame.state == state else None
        if frame is None or isinstance(frame, np.ndarray):
            return frame
        raise TypeError(f"current_image() must return a RenderResult, a uint8 array or None, not {type(frame)}")

    def export_photo(self, path: str | Path | None = None) -> QtRequest | None:
        """Write the whole photo with the edited face pasted back, at the photo's resolution."""
        state = self._doc.state
        if state.photo is None:
            self.message.emit("This face does not come from a photo: open one first (Ctrl+Shift+P)")
            return None
        path = self._image_path(path, "photo", f"{Path(state.photo.name).stem}-edited.png")
        if path is None:
            return None
        return self._submit_export(PhotoExportJob(str(path), state),
                                   lambda written: self.message.emit(f"Exported the photo to {written}"),
                                   f"Exporting the photo to {path.name}…")

    # -- latent ---------------------------------------------------------------------------------------------------
    def export_latent(self, path: str | Path | None = None) -> QtRequest | None:
        """Write the current W+ latent [num_ws, w_dim] as float32 .npy or .pt (a file dialog asks without ``path``)."""
        state = self._doc.state
        if not path:  # None, or the checked flag of a menu action's triggered(bool)
            path = self._ask_save_path("Export latent", f"seed{state.seed:05d}.npy", LATENT_FILTERS)
            if path is None:
                return None
        path = Path(path)
        if path.suffix.lower() not in LATENT_FORMATS:
            QMessageBox.warning(self._parent, "Cannot export the latent",
                                f"Latents are written as {' or '.join(LATENT_FORMATS)} files, not "
                                f"{path.suffix or 'files without an extension'}.")
            return None

        def done(payload) -> None:
            written, shape = payload
            self.message.emit(f"Exported the latent [{' × '.join(map(str, shape))}] to {written}")

        return self._submit_export(LatentExportJob(str(path), state), done, f"Exporting the latent to {path.name}…")

    def _submit_export(self, job, on_result: Callable[[object], None], status: str) -> QtRequest | None:
        if self._export is not None:
            self.message.emit("An export is still running: try again when it has finished")
            return None

        def finished(payload) -> None:
            self._export = None
            on_result(payload)

        def cancelled() -> None:
            self._export = None
            self.message.emit("Export cancelled")

        self._export = self._bridge.submit(job, slot=EXPORT_SLOT).on(finished=finished, failed=self._export_failed,
                                                                     cancelled=cancelled)
        self.message.emit(status)
        return self._export

    def _export_failed(self, error: Exception) -> None:
        self._export = None
        show_error(self._parent, "Export failed", as_report(error).prefixed("Nothing was exported"),
                   icon=QMessageBox.Icon.Critical)

    # -- batch ----------------------------------------------------------------------------------------------------
    def batch_export(self, folder: str | Path | None = None, seeds: str | Sequence[int] | None = None,
                     ext: str = ".png") -> QtRequest | None:
        """Render a seed range with the current settings into ``folder`` as ``seed{N:05d}.<ext>``. Without a folder or
        seeds a dialog asks for them. Returns the engine request, or None when nothing was started."""
        if self._batch is not None:
            self.message.emit("A batch export is still running")
            return None
        source = face_source(self._doc.state)
        if not folder or seeds is None:
            dialog = BatchExportDialog(self._parent, seeds=seeds if isinstance(seeds, str) else _seed_text(seeds),
                                       folder=folder or self._folder or _pictures_folder(), ext=ext, source=source)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return None
            seeds, folder, ext = dialog.values()
        folder = Path(folder)
        try:
            seeds = parse_seeds(seeds) if isinstance(seeds, str) else [int(s) for s in seeds]
            image_format(f"x{ext}")
        except (ValueError, ProjectError) as e:
            QMessageBox.warning(self._parent, "Cannot start the batch export", str(e))
            return None
        existing = [s for s in seeds if (folder / f"seed{s:05d}{ext}").exists()]
        if existing:
            buttons = QMessageBox.StandardButton
            answer = QMessageBox.question(self._parent, "Overwrite files?",
                                          f"{len(existing)} of the {len(seeds)} files already exist in {folder} "
                                          f"(e.g. seed{existing[0]:05d}{ext}). Overwrite them?",
                                          buttons.Yes | buttons.No, buttons.No)
            if answer != buttons.Yes:
                return None
        self._folder = folder
        dialog = QProgressDialog(f"Exporting {len(seeds)} images to {folder}…", "Cancel", 0, PROGRESS_STEPS,
                                 self._parent)
        dialog.setWindowTitle("Batch export")
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        dialog.setAutoReset(False)
        dialog.setMinimumDuration(0)
        request = self._bridge.submit(BatchExportJob(self._doc.state, tuple(seeds), str(folder), ext),
                                      slot=BATCH_SLOT).on(finished=self._batch_done, failed=self._batch_failed,
                                                          cancelled=self._batch_cancelled,
                                                          progress=self._batch_progress)
        dialog.canceled.connect(request.cancel)
        self._batch = _Batch(request, folder, len(seeds), dialog, source=source)
        self.message.emit(f"Exporting {len(seeds)} images to {folder}…")
        dialog.setValue(0)  # shows the dialog, and may run the event loop: the batch is ready for its events
        return request

    def _finish_batch(self) -> _Batch:
        batch, self._batch = self._batch, None
        batch.dialog.canceled.disconnect()
        batch.dialog.close()
        batch.dialog.deleteLater()
        return batch

    def _batch_progress(self, fraction: float, text: str) -> None:
        batch = self._batch
        batch.written = round(fraction * batch.total)  # the job reports after each file it wrote
        value = round(fraction * PROGRESS_STEPS)
        if value != batch.dialog.value():  # a long batch reports far more often than the bar can move
            batch.dialog.setLabelText(f"{text or 'Exporting'} → {batch.folder}")
            batch.dialog.setValue(value)  # last: it may run the event loop, where the batch may end

    def _batch_done(self, written: tuple[str, ...]) -> None:
        batch = self._finish_batch()
        left_out = "" if batch.source is None else \
            f" (each seed's own face with this document's edits, not {batch.source})"
        self.message.emit(f"Batch export: wrote {len(written)} images to {batch.folder}{left_out}")

    def _batch_cancelled(self) -> None:
        batch = self._finish_batch()
        self.message.emit(f"Batch export cancelled: wrote {batch.written} of {batch.total} images to {batch.folder}")

    def _batch_failed(self, error: Exception) -> None:
        batch = self._finish_batch()
        show_error(self._parent, "Batch export failed",
                   as_report(error).prefixed(f"The batch export stopped after {batch.written} of {batch.total} "
                                             f"images in {batch.folder}"), icon=QMessageBox.Icon.Critical)

    # -- dialogs --------------------------------------------------------------------------------------------------
    def _ask_save_path(self, title: str, name: str, filters: dict[str, str]) -> Path | None:
        start = str((self._folder or _pictures_folder()) / name)
        chosen, selected = QFileDialog.getSaveFileName(self._parent, title, start, ";;".join(filters),
                                                       next(iter(filters)))
        if not chosen:
            return None
        path = Path(chosen)
        if not path.suffix:
            path = path.with_suffix(filters.get(selected, next(iter(filters.values()))))
        self._folder = path.parent
        return path


class BatchExportDialog(QDialog):
    """Asks for the seeds, the folder and the file format of a batch export; refuses unreadable seed lists.
    ``source`` (``face_source``): what the current face comes from instead of a seed; a note says the batch
    writes the seeds' own faces, not it."""

    def __init__(self, parent: QWidget | None = None, *, seeds: str = "", folder: str | Path = "", ext: str = ".png",
                 source: str | None = None):
        super().__init__(parent)
        self.setWindowTitle("Batch export")
        self.source_note = QLabel(
            f"The current face comes from {source}. The batch writes each seed's own face with this document's "
            f"truncation, style mixing, attribute edits and translation, not {source}: Export image (Ctrl+E) "
            f"writes that face." if source else "")
        self.source_note.setWordWrap(True)
        self.source_note.setMinimumWidth(360)
        self.source_note.setVisible(source is not None)
        self.seeds_edit = QLineEdit(seeds or "0-99")
        self.seeds_edit.setToolTip("Which faces to export: each seed is the current face with only its base seed "
                                   "replaced (truncation, mixing, attribute edits and noise stay; a photo's or a "
                                   "latent's face is replaced by the seed's). Ranges and lists, e.g. 0-99 or 1,5,9")
        self.folder_edit = QLineEdit(str(folder))
        self.folder_edit.setToolTip("The folder the images are written to, as seed00000.png, seed00001.png, …; "
                                    "it is created if missing")
        browse = QPushButton("Browse…")
        browse.setToolTip("Choose the folder the faces are written to")
        browse.clicked.connect(self._browse)
        self.format_combo = QComboBox()
        for suffix, label in BATCH_FORMATS.items():
            self.format_combo.addItem(label, suffix)
        self.format_combo.setCurrentIndex(max(0, self.format_combo.findData(ext)))
        self.format_combo.setToolTip("File format of every face: PNG is lossless and keeps each face's parameters "
                                     "inside, so any of them can be reopened as a project; JPEG and WebP are smaller")
        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #dc322f")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(browse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.button(QDialogButtonBox.StandardButton.Ok).setToolTip("Render and write every seed's face")
        buttons.button(QDialogButtonBox.StandardButton.Cancel).setToolTip("Close without exporting")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(self.source_note)
        form.addRow("Seeds", self.seeds_edit)
        form.addRow("Folder", folder_row)
        form.addRow("Format", self.format_combo)
        form.addRow(self.error_label)
        form.addRow(buttons)

    def values(self) -> tuple[list[int], Path, str]:
        """(seeds, folder, extension); raises ValueError with a readable message for bad input."""
        seeds = parse_seeds(self.seeds_edit.text())
        folder = self.folder_edit.text().strip()
        if not folder:
            raise ValueError("choose a folder for the images")
        return seeds, Path(folder).expanduser(), self.format_combo.currentData()

    def accept(self) -> None:
        try:
            self.values()
        except ValueError as e:
            self.error_label.setText(str(e))
            self.error_label.show()
            return
        super().accept()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Batch export folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)


def _seed_text(seeds: Sequence[int] | None) -> str:
    return "" if seeds is None else ",".join(str(s) for s in seeds)


def _pictures_folder() -> Path:
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation) or Path.home())
