"""Error message boxes: the report's sentence for the user, its traceback under "Show Details…", the log file named.

Engine failures reach the editor as ``engine.errors.ErrorReport`` (a sentence + the traceback); the editor's own
refusals may be plain sentences. ``as_report`` makes either a report, ``show_error`` shows one.
"""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from engine import ErrorReport, log_path, plain_text


def as_report(error: ErrorReport | str) -> ErrorReport:
    """``error`` as a report: a plain string becomes its cleaned sentence, without details."""
    return error if isinstance(error, ErrorReport) else ErrorReport(plain_text(str(error)))


def error_box(parent: QWidget | None, title: str, error: ErrorReport | str, *,
              icon: QMessageBox.Icon = QMessageBox.Icon.Warning) -> QMessageBox:
    """A message box with the sentence of ``error``; its details (the traceback) under "Show Details…" with the log
    file's path beside them. Not shown yet."""
    report = as_report(error)
    box = QMessageBox(icon, title, report.message, QMessageBox.StandardButton.Ok, parent)
    if report.details:
        box.setInformativeText(f"The log file {log_path()} keeps these details.")
        box.setDetailedText(report.details)
    return box


def show_error(parent: QWidget | None, title: str, error: ErrorReport | str, *,
               icon: QMessageBox.Icon = QMessageBox.Icon.Warning) -> QMessageBox:
    """Show ``error_box(...)`` modally and return it once closed."""
    box = error_box(parent, title, error, icon=icon)
    box.exec()
    return box
