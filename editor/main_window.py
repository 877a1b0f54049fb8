"""The main window: composes the panels, the canvas, the history strip, actions, menus and the status bar.

It holds no edit state of its own (the document does) and never calls the engine directly (the bridge does).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QLabel,
    QMainWindow,
    QMenu,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from editor.controllers.document import Document
from editor.controllers.exporting import ExportController
from editor.controllers.input_guard import InputGuard
from editor.controllers.preview import LivePreview
from editor.controllers.projects import PROJECT_SUFFIX, ProjectController
from editor.dialogs.error_box import as_report, show_error
from editor.dialogs.help import SHEET_TEXT, SHEET_TIP, open_log_folder, show_about, show_shortcut_sheet
from editor.dialogs.models import ModelsDialog
from editor.dialogs.preferences import PreferencesDialog
from editor.panels.attributes_panel import AttributesPanel
from editor.panels.generation_panel import GenerationPanel
from editor.panels.mixing_panel import MixingPanel
from editor.panels.model_panel import ModelPanel
from editor.panels.photo_panel import PhotoPanel, is_photo
from editor.panels.translate_panel import TranslatePanel
from editor.widgets.canvas import Canvas
from editor.widgets.history import HistoryStrip, restore_snapshot
from editor.widgets.icons import icon
from editor.widgets.side_column import SideColumn
from engine import ErrorReport, RenderResult

APP_NAME = "Face Editor"


class MainWindow(QMainWindow):
    """One window per document. ``firstFrame`` is handy for screenshots and start-up timing."""

    def __init__(self, document: Document, bridge, settings, *, autosave_path=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.bridge = bridge
        self.models_dialog: ModelsDialog | None = None
        self.settings = settings
        self._last_full: RenderResult | None = None
        self.frames_shown = 0
        self.setAcceptDrops(True)
        self.setWindowTitle(f"untitled[*] — {APP_NAME}")

        self.preview = LivePreview(document, bridge, preview_limit=settings.preview_limit, parent=self)
        self.canvas = Canvas()
        self.history = HistoryStrip()
        self.model_panel = ModelPanel(document, bridge, settings)
        self.generation_panel = GenerationPanel(document)
        self.mixing_panel = MixingPanel(document, bridge)
        self.attributes_panel = AttributesPanel(document, bridge)
        self.photo_panel = PhotoPanel(document, bridge, settings)
        self._photo_aligned = None  # the photo's aligned face: the "before" while editing a photo
        self.translate_panel = TranslatePanel(document, bridge, settings)
        self._untranslated = None  # the face before its translation: the "before" while translating
        self.projects = ProjectController(document, self, autosave_path=autosave_path)
        self.exports = ExportController(document, bridge, self, current_image=self.current_full_image)

        centre = QWidget()
        lay = QVBoxLayout(centre)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.history)
        self.setCentralWidget(centre)
        self._add_dock([self.model_panel, self.generation_panel, self.attributes_panel],
                       Qt.DockWidgetArea.LeftDockWidgetArea, "controls", width=300)
        self._add_dock([self.photo_panel, self.translate_panel, self.mixing_panel],
                       Qt.DockWidgetArea.RightDockWidgetArea, "mixing", width=340)

        self.device_label = QLabel("device: starting")
        self.speed_label = QLabel("")
        for w in (self.speed_label, self.device_label):
            w.setStyleSheet("padding: 0 6px; color: palette(mid)")
            self.statusBar().addPermanentWidget(w)

        self._build_actions()
        self._connect()
        QApplication.instance().installEventFilter(InputGuard(self, self.canvas))  # goes with the window
        self._photo_actions(document.state)
        self._restore_geometry()
        self._update_title()
        self.model_panel.load_current()
        self.preview.render_now()  # the face first: the attribute reading (the estimator's first load) after it
        self.attributes_panel.request_reading()

    # ----- layout

    def _add_dock(self, widgets: list[QWidget], area, name: str, *, width: int) -> None:
        """A fixed side column that scrolls (growing panels never resize the window); the panels' group boxes carry
        the titles, so the dock has no title bar."""
        dock = QDockWidget(self)
        dock.setObjectName(name)
        dock.setWidget(SideColumn(widgets, width=width))
        dock.setTitleBarWidget(QWidget())
        dock.setFeatures(QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
        self.addDockWidget(area, dock)

    def _action(self, text: str, name: str | None, slot, *, shortcut=None, tip: str = "", checkable=False) -> QAction:
        a = QAction(text, self)
        if name is not None:
            a.setIcon(icon(name))
        if shortcut is not None:
            a.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
        a.setToolTip(tip or text.replace("&", "").replace("…", ""))
        a.setStatusTip(a.toolTip())
        a.setCheckable(checkable)
        (a.toggled if checkable else a.triggered).connect(slot)
        return a

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey
        stack = self.document.undo_stack
        self.act_open_model = self._action("Open &model…", "open_model", self.model_panel.open_dialog,
                                           shortcut=QKeySequence("Ctrl+O"), tip="Open a generator file (Ctrl+O)")
        self.act_open_project = self._action("Open &project…", "open_project", self._open_project,
                                             shortcut=QKeySequence("Ctrl+Shift+O"), tip="Open a saved project")
        self.act_open_flow = self._action("Open attribute &flow…", "open_model",
                                          self.attributes_panel.open_flow_dialog,
                                          tip="Use another attribute flow file; asks for its condition layout when "
                                              "the file does not say it")
        self.act_pair_encoder = self._action("Pair e4e &encoder…", "open_model", self.model_panel.pair_dialog,
                                             tip="Use an e4e encoder file for this generator's photo inversions; "
                                                 "refused when its W+ latents do not fit the generator")
        self.act_models = self._action("&Models…", "model", self.show_models, shortcut=QKeySequence("Ctrl+Shift+M"),
                                       tip="The model files in use and recent ones: format, architecture, "
                                           "precision, device, memory, pairings; pair a file after checking it "
                                           "(Ctrl+Shift+M)")
        self.act_open_photo = self._action("Open p&hoto…", "open_photo", self.photo_panel.open_dialog,
                                           shortcut=QKeySequence("Ctrl+Shift+P"),
                                           tip="Load a photo, find its face and invert it, to edit it (Ctrl+Shift+P)")
        self.act_export_photo = self._action("Export p&hoto with the edit…", "in_photo",
                                             lambda: self.exports.export_photo(),
                                             shortcut=QKeySequence("Ctrl+Alt+E"),
                                             tip="Save the whole photo with the edited face pasted back, at full "
                                                 "resolution (Ctrl+Alt+E)")
        self.act_invert = self._action("&Invert photo", "invert", lambda: self.photo_panel.start_inversion(),
                                       shortcut=QKeySequence("Ctrl+I"), tip="Invert the chosen face (Ctrl+I)")
        self.act_cancel = self._action("&Cancel inversion", "cancel", self.cancel_jobs,
                                       shortcut=QKeySequence(Qt.Key.Key_Escape),
                                       tip="Cancel the running inversion, of the photo or of the Translate panel's "
                                           "reference image (Esc); a batch's progress window cancels with Esc too")
        self.act_cancel.setEnabled(False)  # enabled while something runs (``_update_cancel``)
        self.act_side = self._action("&Side by side", "side_by_side", self.canvas.set_side_by_side,
                                     shortcut=QKeySequence("V"), checkable=True,
                                     tip="Show the 'before' (the photo, or the last snapshot) and the current face "
                                         "next to each other (V)")
        self.act_in_photo = self._action("Show in &photo", "in_photo", self.photo_panel.in_photo.setChecked,
                                         shortcut=QKeySequence("P"), checkable=True,
                                         tip="Show the edited face pasted back into the whole photo (P)")
        self.act_save = self._action("&Save project", "save", self.projects.save, shortcut=K.Save,
                                     tip="Save the project: reproduces this exact image (Ctrl+S)")
        self.act_save_as = self._action("Save project &as…", "save_as", self.projects.save_as, shortcut=K.SaveAs)
        self.act_export = self._action("&Export image…", "export_image", lambda: self.exports.export_image(),
                                       shortcut=QKeySequence("Ctrl+E"),
                                       tip="Export the image at full resolution: PNG (with parameters), JPEG, WebP")
        self.act_export_latent = self._action("Export &latent…", "export_latent",
                                              lambda: self.exports.export_latent(),
                                              shortcut=QKeySequence("Ctrl+Shift+E"),
                                              tip="Save the current W+ latent as .npy or .pt")
        self.act_batch = self._action("&Batch export…", "batch_export", lambda: self.exports.batch_export(),
                                      shortcut=QKeySequence("Ctrl+B"),
                                      tip="Render a range of seeds with the current settings into a folder")
        self.act_quit = self._action("&Quit", "quit", self.close, shortcut=K.Quit)
        self.act_preferences = self._action("Pre&ferences…", "settings", self.edit_preferences,
                                            shortcut=K.Preferences, tip="Engine device and preview resolution")
        self.act_undo = stack.createUndoAction(self, "&Undo")
        self.act_undo.setIcon(icon("undo"))
        self.act_undo.setShortcuts(K.Undo)
        self.act_redo = stack.createRedoAction(self, "&Redo")
        self.act_redo.setIcon(icon("redo"))
        self.act_redo.setShortcuts([QKeySequence(K.Redo), QKeySequence("Ctrl+Y")])
        gp = self.generation_panel
        self.act_prev_seed = self._action("&Previous seed", "seed_previous", lambda: gp.step_seed(-1),
                                          shortcut=QKeySequence("PgUp"), tip="Previous seed (PageUp)")
        self.act_next_seed = self._action("&Next seed", "seed_next", lambda: gp.step_seed(1),
                                          shortcut=QKeySequence("PgDown"), tip="Next seed (PageDown)")
        self.act_random_seed = self._action("&Random seed", "seed_random", gp.randomize_seed,
                                            shortcut=QKeySequence("Ctrl+R"), tip="A random seed (Ctrl+R)")
        self.act_snapshot = self._action("Take &snapshot", "snapshot", self.take_snapshot,
                                         shortcut=QKeySequence("S"),
                                         tip="Keep the current face in the history strip (S); it becomes 'before'")
        self.act_before = self._action("Show &before", "before_after", self.canvas.show_before,
                                       shortcut=QKeySequence("B"), checkable=True,
                                       tip="Toggle between the current image and the last snapshot (B)")
        self.act_zoom_in = self._action("Zoom &in", "zoom_in", self.canvas.zoom_in, shortcut=K.ZoomIn)
        self.act_zoom_out = self._action("Zoom &out", "zoom_out", self.canvas.zoom_out, shortcut=K.ZoomOut)
        self.act_zoom_fit = self._action("&Fit", "zoom_fit", self.canvas.zoom_fit, shortcut=QKeySequence("Ctrl+0"),
                                         tip="Fit the image to the window (Ctrl+0)")
        self.act_zoom_actual = self._action("&Actual pixels", "zoom_actual", self.canvas.zoom_actual,
                                            shortcut=QKeySequence("Ctrl+1"), tip="One image pixel per screen pixel")
        tp = self.translate_panel
        self.act_translate, self.act_samples, self.act_methods = tp.act_toggle, tp.act_samples, tp.act_methods
        self.act_shortcuts = self._action("&Keyboard shortcuts", "keyboard", lambda: show_shortcut_sheet(self),
                                          shortcut=K.HelpContents,
                                          tip="Every keyboard shortcut of the menus, with what it does")
        self.act_about = self._action(f"&About {APP_NAME}", "about", lambda: show_about(self),
                                      tip="Versions, the engine device and the model files in use")
        self.act_log_folder = self._action("Open &log folder", "log_folder", lambda: open_log_folder(self),
                                           tip="Open the folder of the log file, which keeps the details of errors")
        for a, text, tip in ((self.act_undo, "Undo", "Take back the last edit"),
                             (self.act_redo, "Redo", "Make the edit taken back last again")):
            a.setProperty(SHEET_TEXT, text)  # their menu text names the step ("Undo Seed 42")
            a.setProperty(SHEET_TIP, tip)

        menus = {
            "&File": [self.act_open_model, self.act_open_project, self.act_open_photo, self.act_open_flow,
                      self.act_pair_encoder, self.act_models, None,
                      self.act_save, self.act_save_as, None, self.act_export, self.act_export_photo,
                      self.act_export_latent, self.act_batch, None, self.act_quit],
            "&Photo": [self.act_open_photo, self.act_invert, self.act_cancel, None, self.act_in_photo,
                       self.act_export_photo],
            "&Edit": [self.act_undo, self.act_redo, None, self.act_snapshot, None, self.attributes_panel.read_action,
                      None, self.act_preferences],
            "&Seed": [self.act_prev_seed, self.act_next_seed, self.act_random_seed],
            "&Translate": [self.act_translate, self.act_samples, None, self.act_methods],
            "&View": [self.act_zoom_in, self.act_zoom_out, self.act_zoom_fit, self.act_zoom_actual, None,
                      self.act_before, self.act_side, self.act_in_photo],
            "&Help": [self.act_shortcuts, None, self.act_log_folder, None, self.act_about],
        }
        for title, actions in menus.items():
            menu = self.menuBar().addMenu(title)
            for a in actions:
                menu.addSeparator() if a is None else menu.addAction(a)
            if title == "&File":
                self.recent_projects_menu = QMenu("Recent projects", self)
                self.recent_projects_menu.aboutToShow.connect(self._fill_recent_projects)
                menu.insertMenu(self.act_save, self.recent_projects_menu)
            elif title == "&View":
                self.view_menu = menu
        tb = QToolBar("Main", self)
        tb.setObjectName("main_toolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        for a in (self.act_open_model, self.act_open_photo, self.act_open_project, self.act_save, self.act_export,
                  None, self.act_undo,
                  self.act_redo, None, self.act_prev_seed, self.act_random_seed, self.act_next_seed, None,
                  self.act_zoom_fit, self.act_zoom_actual, self.act_before, self.act_side, self.act_in_photo,
                  self.act_snapshot):
            tb.addSeparator() if a is None else tb.addAction(a)
        self.addToolBar(tb)

    def _connect(self) -> None:
        self.preview.frame.connect(self._show_frame)
        self.preview.failed.connect(lambda m: self.statusBar().showMessage(f"Render failed: {m}", 8000))
        self.generation_panel.dragging.connect(self.preview.set_dragging)
        self.attributes_panel.dragging.connect(self.preview.set_dragging)
        self.attributes_panel.message.connect(lambda m: self.statusBar().showMessage(m, 8000))
        self.model_panel.message.connect(lambda m: self.statusBar().showMessage(m, 4000))
        self.model_panel.failed.connect(self._error)
        self.exports.message.connect(lambda m: self.statusBar().showMessage(m, 8000))
        self.mixing_panel.message.connect(lambda m: self.statusBar().showMessage(m, 8000))
        self.photo_panel.message.connect(lambda m: self.statusBar().showMessage(m, 8000))
        self.photo_panel.failed.connect(self._error)
        self.photo_panel.pasted.connect(self._show_pasted)
        self.photo_panel.aligned.connect(self._photo_before)
        self.photo_panel.in_photo.toggled.connect(self.act_in_photo.setChecked)
        self.photo_panel.runningChanged.connect(self._inverting)
        self.translate_panel.referenceRunningChanged.connect(self._update_cancel)
        self.translate_panel.message.connect(lambda m: self.statusBar().showMessage(m, 8000))
        self.translate_panel.failed.connect(self._error)
        self.translate_panel.dragging.connect(self.preview.set_dragging)
        self.translate_panel.source.connect(self._translation_before)
        self.translate_panel.compare_button.toggled.connect(self.act_side.setChecked)
        self.act_side.toggled.connect(self.translate_panel.compare_button.setChecked)
        self.document.changed.connect(lambda st, _: self._photo_actions(st))
        self.projects.message.connect(lambda m: self.statusBar().showMessage(m, 8000))
        self.projects.pathChanged.connect(lambda p: self.settings.add_recent("projects", p))
        self.history.restoreRequested.connect(lambda st: restore_snapshot(self.document, st))
        self.history.snapshotsChanged.connect(self._snapshots_changed)
        self.document.changed.connect(lambda st, _: self.history.set_current(st))
        self.document.undo_stack.cleanChanged.connect(self._clean_changed)  # a method: disconnected with the window
        self.projects.titleChanged.connect(lambda _: self._update_title())
        self.canvas.zoomChanged.connect(lambda z: self.statusBar().showMessage(f"Zoom {z * 100:.0f}%", 1500))

    def _update_title(self) -> None:
        self.setWindowTitle(self.projects.title())
        self.setWindowModified(not self.document.undo_stack.isClean())

    # ----- behaviour

    def current_full_image(self):
        """The last full-resolution frame, if it shows the current state."""
        r = self._last_full
        return r.image if r is not None and r.state == self.document.state else None

    def _show_frame(self, result: RenderResult) -> None:
        if not self.photo_panel.in_photo.isChecked():
            self.canvas.show_result(result)
        if result.full:
            self._last_full = result
        self.frames_shown += 1
        lat = self.preview.latencies_ms[-1] if self.preview.latencies_ms else result.ms
        self.speed_label.setText(f"{result.ms:.0f} ms/frame · {lat:.0f} ms to screen"
                                 + ("" if result.full else " · preview"))
        self.speed_label.setToolTip("Engine time per frame, and the time from the edit to the pixels on screen")
        self.device_label.setText(f"device: {result.device} · {result.precision}")
        self.device_label.setToolTip("Where the engine runs, and the precision the generator runs in (Edit ▸ "
                                     "Preferences)")
        if not self.history.snapshots and result.full:
            self.history.add_snapshot(result.state, result.image)  # the first face is the first 'before'

    def _clean_changed(self, clean: bool) -> None:
        self.setWindowModified(not clean)

    def _photo_actions(self, state) -> None:
        for a in (self.act_in_photo, self.act_export_photo):
            a.setEnabled(state.photo is not None)

    def _inverting(self, on: bool) -> None:
        """While the photo is inverted, opening another photo and inverting again are refused, their keys with them
        (the panel's buttons are disabled too, and the status bar says so)."""
        for a in (self.act_open_photo, self.act_invert):
            a.setEnabled(not on)
        self._update_cancel()

    def _update_cancel(self, *_running) -> None:
        self.act_cancel.setEnabled(self.photo_panel.running() or self.translate_panel.reference_running())

    def cancel_jobs(self) -> None:
        """Esc: cancel the running inversions (the photo's, the Translate panel's reference image). A batch export
        or folder translation runs under its own progress window, whose Cancel button Esc presses."""
        running = [(self.photo_panel.running(), self.photo_panel.cancel),
                   (self.translate_panel.reference_running(), self.translate_panel.cancel_reference)]
        for on, cancel in running:
            if on:
                cancel()
        self.statusBar().showMessage("Cancelling…" if any(on for on, _ in running) else "Nothing is running", 3000)

    def _show_pasted(self, image) -> None:
        """The photo with the edited face pasted back (None: back to the face alone)."""
        if image is not None:
            self.canvas.set_image(image)
        elif self._last_full is not None:
            self.canvas.show_result(self._last_full)

    def _photo_before(self, aligned) -> None:
        self._photo_aligned = aligned
        self._snapshots_changed()

    def _translation_before(self, image) -> None:
        self._untranslated = image
        self._snapshots_changed()

    def _snapshots_changed(self) -> None:
        shots = self.history.snapshots
        if self._untranslated is not None and self.document.state.translation is not None:
            self.canvas.set_before(self._untranslated, label="Before translation")
        elif self._photo_aligned is not None:
            self.canvas.set_before(self._photo_aligned, label=f"Photo · {self.document.state.photo.name}"
                                   if self.document.state.photo is not None else "Photo")
        elif shots:
            self.canvas.set_before(shots[-1].image, label=f"Before · {shots[-1].label}")
        else:
            self.canvas.set_before(None)

    def take_snapshot(self) -> None:
        r = self._last_full
        if r is None or r.state != self.document.state:
            self.statusBar().showMessage("The image is still rendering; try again in a moment", 3000)
            return
        if self.history.add_snapshot(r.state, r.image):
            self.statusBar().showMessage("Snapshot kept: press B to compare with it", 3000)
        else:
            self.statusBar().showMessage("Snapshot already taken", 3000)

    def show_models(self) -> ModelsDialog:
        """The model manager (one per window, kept while the window lives)."""
        if self.models_dialog is None:
            self.models_dialog = ModelsDialog(self.document, self.bridge, self.settings, self)
            self.models_dialog.use.connect(self._use_model)
            self.models_dialog.message.connect(lambda m: self.statusBar().showMessage(m, 4000))
        self.models_dialog.show()
        self.models_dialog.raise_()
        return self.models_dialog

    def _use_model(self, role: str, ref) -> None:
        """A file the model manager checked (or a generator to open) goes to the panel that uses it."""
        if role == "generator":
            self.model_panel.open_path(ref.path)
        elif role == "encoder":
            self.model_panel.set_encoder(ref)
        elif role == "flow":
            self.attributes_panel.open_flow(ref)
        elif role == "fine-tune":
            self.translate_panel.set_target(ref)

    def edit_preferences(self) -> None:
        dialog = PreferencesDialog(self.settings, self)
        if dialog.exec():
            self.preview.preview_limit = dialog.apply()

    def _fill_recent_projects(self) -> None:
        menu = self.recent_projects_menu
        menu.clear()
        items = self.settings.recent("projects")
        if not items:
            menu.addAction("No recent projects").setEnabled(False)
        for path in items:
            menu.addAction(Path(path).name, lambda p=path: self.projects.open_file(p)).setToolTip(path)

    def _open_project(self) -> None:
        self.projects.open()

    def _error(self, error: ErrorReport | str) -> None:
        """Tell the user about a failure: its sentence in the status bar (and on an empty canvas) and a message
        box whose details hold the traceback."""
        report = as_report(error)
        self.statusBar().showMessage(report.message, 10000)
        if not self.canvas.has_image():
            self.canvas.set_placeholder(report.message)
        show_error(self, APP_NAME, report)

    # ----- drag and drop, geometry, closing

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                path = url.toLocalFile()
                if path.endswith(PROJECT_SUFFIX):
                    self.projects.open_file(path)
                elif is_photo(path):
                    self.photo_panel.open_path(path)
                else:
                    self.model_panel.open_path(path)
                event.acceptProposedAction()
                return

    def _restore_geometry(self) -> None:
        if self.settings.geometry is not None:
            self.restoreGeometry(self.settings.geometry)
        else:
            self.resize(1280, 800)
        if self.settings.window_state is not None:
            self.restoreState(self.settings.window_state)

    def closeEvent(self, event) -> None:
        if not self.projects.maybe_save():
            event.ignore()
            return
        self.projects.discard_autosave()
        self.settings.geometry = self.saveGeometry()
        self.settings.window_state = self.saveState()
        self.settings.sync()
        event.accept()
