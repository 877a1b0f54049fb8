"""Project files for the main window's File menu: open, save, save as, ask before losing edits, autosave and recovery.

A project is the engine's JSON project file (``engine.project``): the model reference with its sha256, seeds, latents
and every parameter, so opening it reproduces the image bit for bit. Saving is atomic (temporary file, then replace).
While there are unsaved changes the current state is also written, debounced, to an autosave file; a session that
crashed leaves it behind and the next start offers to recover it. Project files use the ``.fproj`` extension.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QObject, QStandardPaths, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from editor.dialogs.error_box import show_error
from engine import EditState, ModelRef, ProjectError, read_project, save_project

PROJECT_SUFFIX = ".fproj"
OPEN_FILTER = "Face Editor projects (*.fproj *.json);;All files (*)"
SAVE_FILTER = "Face Editor project (*.fproj)"
APP_TITLE = "Face Editor"
UNTITLED = "Untitled"


def default_autosave_path() -> Path | None:
    """``<AppDataLocation>/autosave.fproj``; None where the platform names no writable app-data folder."""
    folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(folder) / f"autosave{PROJECT_SUFFIX}" if folder else None


class ProjectController(QObject):
    """The document's project file. ``titleChanged(str)`` carries the window title (with Qt's ``[*]`` marker),
    ``pathChanged(str)`` the project file just opened or saved (for a recent-files list), ``message(str)`` status
    bar text."""

    titleChanged = Signal(str)
    pathChanged = Signal(str)
    message = Signal(str)

    def __init__(self, document, parent_widget: QWidget | None, *, autosave_path: str | Path | None = None,
                 autosave_delay_ms: int = 2000):
        super().__init__(parent_widget)
        self._doc = document
        self._parent = parent_widget
        self._path: Path | None = None
        self.autosave_path = Path(autosave_path) if autosave_path is not None else default_autosave_path()
        self._recovered: tuple[EditState, dict] | None = None
        self._autosave_timer = QTimer(self, singleShot=True, interval=autosave_delay_ms)
        self._autosave_timer.timeout.connect(self._autosave)
        document.changed.connect(self._schedule_autosave)
        document.undo_stack.cleanChanged.connect(self._schedule_autosave)

    # -- path and title -------------------------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The project file the document was opened from or last saved to (None: never saved)."""
        return self._path

    def title(self) -> str:
        """The window title: ``name[*] — Face Editor`` (Qt shows ``*`` in place of ``[*]`` while modified)."""
        name = self._path.name if self._path is not None else UNTITLED
        return f"{name}[*] — {APP_TITLE}"

    def _set_path(self, path: Path | None) -> None:
        self._path = path
        self.titleChanged.emit(self.title())
        if path is not None:
            self.pathChanged.emit(str(path))

    # -- saving ---------------------------------------------------------------------------------------------------
    def save(self) -> bool:
        """Save to the current project file, or ask for one. False when cancelled or the write failed."""
        return self._write(self._path) if self._path is not None else self.save_as()

    def save_as(self) -> bool:
        """Ask for a file name (``.fproj`` added when none is typed) and save there."""
        start = str(self._path) if self._path is not None else str(_documents_folder() / f"{UNTITLED}{PROJECT_SUFFIX}")
        name, _ = QFileDialog.getSaveFileName(self._parent, "Save project", start, SAVE_FILTER)
        if not name:
            return False
        path = Path(name)
        if not path.suffix:
            path = path.with_suffix(PROJECT_SUFFIX)
        return self._write(path)

    def state_to_save(self) -> EditState:
        """The document's state with a user model pinned: absolute path and, once the model is loaded, sha256."""
        state = self._doc.state
        ref = state.model
        if ref.is_default:
            return state
        path = Path(ref.path).resolve()
        sha = ref.sha256
        loaded = self._doc.summary.ref if self._doc.summary is not None else None
        if sha is None and loaded is not None and loaded.path is not None and Path(loaded.path).resolve() == path:
            sha = loaded.sha256
        return state.replace(model=ModelRef(path=str(path), sha256=sha))

    def _write(self, path: Path) -> bool:
        state = self.state_to_save()
        try:
            path = save_project(path, state).resolve()
        except (OSError, ProjectError) as e:
            QMessageBox.critical(self._parent, "Could not save the project",
                                 f"The project was not saved to {path}:\n{e}\n\nAn earlier file there is unchanged.")
            return False
        self._doc.undo_stack.setClean()
        self.discard_autosave()
        self._set_path(path)
        unpinned = "" if state.model.is_default or state.model.sha256 else \
            " (the model is still loading, so its sha256 is not recorded: save again once it has loaded)"
        self.message.emit(f"Saved {path}{unpinned}")
        return True

    # -- opening --------------------------------------------------------------------------------------------------
    def open(self) -> bool:
        """Ask to save unsaved changes, then for a project file, and open it."""
        if not self.maybe_save():
            return False
        start = str(self._path.parent) if self._path is not None else str(_documents_folder())
        name, _ = QFileDialog.getOpenFileName(self._parent, "Open project", start, OPEN_FILTER)
        return self.open_file(name, confirm=False) if name else False

    def open_file(self, path: str | Path, *, confirm: bool = True) -> bool:
        """Open a project file into the document (no undo history, clean). An unreadable file leaves the document as
        it was and says why; ``confirm`` asks first to save unsaved changes."""
        path = Path(path)
        try:
            state, _extras = read_project(path)
        except ProjectError as e:
            show_error(self._parent, "Could not open the project", e, icon=QMessageBox.Icon.Critical)
            return False
        if confirm and not self.maybe_save():
            return False
        self._doc.reset(state)
        self.discard_autosave()
        self._set_path(path.resolve())
        self.message.emit(f"Opened {path.name}")
        return True

    def maybe_save(self) -> bool:
        """Before the edit is closed or replaced: with unsaved changes ask Save / Discard / Cancel. True to go on."""
        if self._doc.undo_stack.isClean():
            return True
        name = self._path.name if self._path is not None else "the untitled project"
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(self._parent, "Unsaved changes", f"Save the changes to {name}?",
                                      buttons.Save | buttons.Discard | buttons.Cancel, buttons.Save)
        if answer == buttons.Save:
            return self.save()
        return answer == buttons.Discard

    # -- autosave and recovery ------------------------------------------------------------------------------------
    def _schedule_autosave(self, *_args) -> None:
        self._autosave_timer.start()  # restarts: the write happens once the edits pause

    def _autosave(self) -> None:
        """Debounced after each change: write the state while it is unsaved, drop the autosave once it is saved."""
        if self.autosave_path is None:
            return
        if self._doc.undo_stack.isClean():
            self.discard_autosave()
            return
        extras = {"project_path": None if self._path is None else str(self._path),
                  "autosaved": datetime.now().isoformat(timespec="seconds")}
        try:
            save_project(self.autosave_path, self.state_to_save(), extras=extras, bundle=False)
        except (OSError, ProjectError) as e:
            self.message.emit(f"Autosave to {self.autosave_path} failed: {e}")

    def discard_autosave(self) -> None:
        """Remove the autosave file (after saving, opening, or a clean exit)."""
        self._autosave_timer.stop()
        if self.autosave_path is None:
            return
        try:
            self.autosave_path.unlink(missing_ok=True)
        except OSError as e:
            self.message.emit(f"Could not remove the autosave file {self.autosave_path}: {e}")

    def recoverable(self) -> EditState | None:
        """The unsaved state a previous session left in the autosave file, or None."""
        self._recovered = None
        if self.autosave_path is None or not self.autosave_path.is_file():
            return None
        try:
            self._recovered = read_project(self.autosave_path)
        except ProjectError as e:
            self.message.emit(f"The autosave file {self.autosave_path} cannot be recovered: {e}")
            return None
        return self._recovered[0]

    def offer_recovery(self) -> bool:
        """At start-up: if an earlier session left unsaved changes, ask to recover them. Recovered, the document holds
        them marked modified (they were never saved); declined, the autosave file is removed."""
        state = self.recoverable()
        if state is None:
            return False
        extras = self._recovered[1]
        project = extras.get("project_path") if isinstance(extras.get("project_path"), str) else None
        details = f"{state.model.label()}, seed {state.seed}"
        if isinstance(extras.get("autosaved"), str) and extras["autosaved"]:
            details += f", autosaved {extras['autosaved'].replace('T', ' ')}"
        if project:
            details += f", project {Path(project).name}"
        buttons = QMessageBox.StandardButton
        answer = QMessageBox.question(self._parent, "Recover unsaved edit",
                                      f"Recover the unsaved edit from the last session?\n({details})",
                                      buttons.Yes | buttons.No, buttons.Yes)
        if answer != buttons.Yes:
            self.discard_autosave()
            return False
        self._doc.reset(state)
        self._doc.undo_stack.resetClean()
        self._set_path(Path(project) if project else None)
        self.message.emit("Recovered the unsaved edit from the last session")
        return True


def _documents_folder() -> Path:
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation) or Path.home())
