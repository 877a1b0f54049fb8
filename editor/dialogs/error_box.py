"""Error message boxes: the report's sentence for the user, its traceback under "Show Details…", the log file named.

Engine failures reach the editor as the job's own exception (a request's ``failed`` signal), its type and traceback
kept; it becomes an ``engine.errors.ErrorReport`` (a sentence + the traceback) only here, where it is shown. The
editor's own refusals may be plain sentences. ``as_report`` makes any of them a report, ``sentence`` its one line
for a status bar or label, ``show_error`` shows one.
"""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from engine import ErrorReport, log_path, plain_text

Error = ErrorReport | BaseException | str


def as_report(error: Error) -> ErrorReport:
    """``error`` as a report: an exception with its sentence and traceback, a plain string as its cleaned sentence
    without details."""
    if isinstance(error, ErrorReport):
        return error
    if isinstance(error, BaseException):
        return ErrorReport.from_exception(error)
    return ErrorReport(plain_text(str(error)))


def sentence(error: Error) -> str:
    """What a user reads about ``error`` in one place (a status bar, a label): its sentence."""
    return as_report(error).message


def error_box(parent: QWidget | None, title: str, error: Error, *,
              icon: QMessageBox.Icon = QMessageBox.Icon.Warning) -> QMessageBox:
    """A message box with the sentence of ``error``; its details (the traceback) under "Show Details…" with the log
    file's path beside them. Not shown yet."""
    report = as_report(error)
    box = QMessageBox(icon, title, report.message, QMessageBox.StandardButton.Ok, parent)
    if report.details:
        box.setInformativeText(f"The log file {log_path()} keeps these details.")
        box.setDetailedText(report.details)
    return box


def show_error(parent: QWidget | None, title: str, error: Error, *,
               icon: QMessageBox.Icon = QMessageBox.Icon.Warning) -> QMessageBox:
    """Show ``error_box(...)`` modally and return it once closed."""
    box = error_box(parent, title, error, icon=icon)
    box.exec()
    return box
