"""The translate panel's folder batch: every photo of a folder is found, aligned, inverted and translated with the
current settings into another folder, under a modal progress dialog with Cancel, then summed up in a message box.

``FolderBatchMixin`` is the part of ``TranslatePanel`` that runs it (it uses the panel's document, job
submission, tool-button builder, ``_start_dir``, ``inversion_settings``, ``message`` and ``failed``).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox, QProgressDialog

from editor.controllers.bridge import QtRequest
from editor.dialogs.error_box import as_report
from engine import FolderSummary, TranslateFolderJob

FOLDER_SLOT = "translate-folder"
PROGRESS_STEPS = 1000


def batch_dialog(parent, text: str, cancel) -> QProgressDialog:
    """The window-modal progress dialog of a folder batch; its Cancel calls ``cancel()``. Not shown yet:
    ``setValue(0)`` shows it."""
    dialog = QProgressDialog(text, "Cancel", 0, PROGRESS_STEPS, parent)
    dialog.setWindowTitle("Translate a folder")
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setAutoReset(False)
    dialog.setAutoClose(False)
    dialog.setMinimumDuration(0)
    dialog.canceled.connect(cancel)
    return dialog


def ask_folders(parent, start: str, folder, out) -> tuple[Path, Path] | None:
    """The photos' folder and the output folder of a batch (dialogs ask for those not given); an output equal to
    the photos' folder becomes its ``translated`` subfolder, never next to (or over) the photos themselves."""
    if not folder:
        folder = QFileDialog.getExistingDirectory(parent, "Photos to translate", start)
        if not folder:
            return None
    if not out:
        out = QFileDialog.getExistingDirectory(parent, "Folder for the translated images", str(folder))
        if not out:
            return None
    folder, out = Path(folder), Path(out)
    return folder, (folder / "translated" if out.resolve() == folder.resolve() else out)


def summary_lines(summary: FolderSummary, out, noun: str) -> list[str]:
    """What a folder batch did, for the status bar and its message box (``noun``: what was written per photo)."""
    n = len(summary.written)
    lines = [f"Wrote {n} {noun}{'s' if n != 1 else ''} into {out} in {summary.seconds:.0f} s."]
    if summary.no_face:
        lines.append(f"{len(summary.no_face)} without a face: {', '.join(summary.no_face)}")
    if summary.failed:
        lines.append(f"{len(summary.failed)} unreadable: " + "; ".join(f"{n} ({why})" for n, why in summary.failed))
    return lines


class BatchDialogMixin:
    """Starting a folder batch, following it and closing its progress dialog, for a widget with ``_start_dir()``,
    ``_folder_dialog``, ``_folder_out``, ``_last_dir`` and the ``failed`` / ``message`` signals."""

    def _start_batch(self, folder, out, submit) -> QtRequest | None:
        """Ask for the folders not given, then ``submit(folder, out) -> request`` and show the progress; the
        request's progress moves the dialog (``_folder_progress``), its Cancel cancels the request."""
        chosen = ask_folders(self, self._start_dir(), folder, out)
        if chosen is None:
            return None
        folder, out = chosen
        self._last_dir, self._folder_out = str(folder), out
        request = submit(str(folder), str(out)).on(progress=self._folder_progress)
        self._folder_dialog = batch_dialog(self, f"Translating the photos of {folder.name}…", request.cancel)
        self._folder_dialog.setValue(0)  # shows it, and may run the event loop: the batch is ready for its events
        return request

    def _folder_progress(self, fraction: float, text: str) -> None:
        dialog = self._folder_dialog  # setValue may run the event loop, and the result may close the dialog there
        dialog.setLabelText(text)
        dialog.setValue(round(PROGRESS_STEPS * fraction))

    def _close_folder_dialog(self) -> None:
        dialog, self._folder_dialog = self._folder_dialog, None
        if dialog is not None:
            dialog.canceled.disconnect()
            dialog.close()
            dialog.deleteLater()

    def _folder_failed(self, error: Exception) -> None:
        self._close_folder_dialog()
        self.failed.emit(as_report(error).prefixed("Translating the folder stopped"))

    def _folder_cancelled(self) -> None:
        self._close_folder_dialog()
        self.message.emit("Folder translation cancelled: the images written so far are kept")


class FolderBatchMixin(BatchDialogMixin):
    """``TranslatePanel``'s folder batch: ``translate_folder`` starts it, the dialog follows its progress, and
    ``last_folder`` / ``summary_box`` hold its outcome."""

    def _build_folder(self) -> None:
        self._folder_dialog: QProgressDialog | None = None
        self._folder_out: Path | None = None
        self.last_folder: FolderSummary | None = None
        self.summary_box: QMessageBox | None = None
        self.folder_button = self._tool("translate_folder", "Folder…", "Translate a folder: every photo in it is "
                                        "found, aligned, inverted and translated with these settings, one PNG each",
                                        lambda: self.translate_folder())

    def translate_folder(self, folder: str | Path | None = None,
                         out: str | Path | None = None) -> QtRequest | None:
        """Translate every photo in ``folder`` into ``out`` with the current settings (dialogs ask without them)."""
        st = self._doc.state
        if st.translation is None or self._folder_dialog is not None:
            return None
        return self._start_batch(folder, out, lambda f, o: self._submit(
            TranslateFolderJob(st, f, o, self.inversion_settings()), FOLDER_SLOT, finished=self._folder_done,
            failed=self._folder_failed, cancelled=self._folder_cancelled))

    def _folder_done(self, summary: FolderSummary) -> None:
        self._close_folder_dialog()
        self.last_folder = summary
        lines = summary_lines(summary, self._folder_out, "translated photo")
        self.message.emit(" ".join(lines))
        self.summary_box = QMessageBox(QMessageBox.Icon.Information, "Translate a folder", "\n".join(lines),
                                       QMessageBox.StandardButton.Ok, self)
        self.summary_box.open()
