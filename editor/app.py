"""Start the editor: QApplication, engine bridge, document and main window; ``--screenshot`` renders it offscreen.

A ``--screenshot`` run is headless: it never waits on a dialog. A bad ``--project`` (unreadable, or naming a missing or
changed model) is refused before the window opens, and any message box the window would show is closed at once and
ends the run: exit status 2 with one ``error:`` line.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from engine import (
    FLOW_LAYOUT_HELP,
    PRECISION_HELP,
    PRECISIONS,
    DeviceError,
    EditState,
    LayoutError,
    ModelRef,
    ProjectError,
    parse_layout,
    read_project,
    resolve_device,
    setup_logging,
    tune_allocator,
    verify_files,
)


def add_arguments(parser) -> None:
    parser.add_argument("--model", metavar="FILE", help="open this generator instead of the embedded default "
                                                          "(an e4e checkpoint: its generator and its photo encoder)")
    parser.add_argument("--project", metavar="FILE", help="open this project file")
    parser.add_argument("--flow", metavar="FILE", help="use this attribute flow (StyleFlow's released state dict or "
                                                        "this editor's own file) instead of the embedded default's")
    parser.add_argument("--flow-layout", metavar="LAYOUT", help=FLOW_LAYOUT_HELP + " (with --flow)")
    parser.add_argument("--photo", metavar="FILE", help="open this photo, find its face and invert it to edit it "
                                                          "(with --screenshot: shown side by side with the photo)")
    parser.add_argument("--device", help="engine device: auto (default: CUDA, then MPS, then CPU), cpu, cuda:0, …")
    parser.add_argument("--precision", choices=PRECISIONS, metavar="PRECISION",
                        help=f"generator precision: {PRECISION_HELP}; default: the one chosen in Preferences")
    parser.add_argument("--screenshot", metavar="PNG", help="render the main window offscreen, save it, exit")
    parser.add_argument("--settings", metavar="INI",
                        help="keep preferences in this ini file (and the autosave beside it) instead of the user's "
                             "settings: portable use, tests")


def initial_state(args) -> EditState:
    """The state the editor opens with: ``--model``, ``--flow`` and ``--flow-layout``. ValueError (a sentence) when
    the flow file is missing, or the layout cannot be read or is given without a flow."""
    model = ModelRef(path=str(Path(args.model).resolve())) if args.model else ModelRef()
    if args.flow_layout and not args.flow:
        raise LayoutError("--flow-layout describes the condition of a flow given with --flow (the embedded default "
                          "flow states its own)")
    flow = ModelRef(path=str(Path(args.flow).resolve())) if args.flow else ModelRef()
    if args.flow and not Path(args.flow).is_file():
        raise ValueError(f"--flow {args.flow}: no such file")
    return EditState(model=model, flow=flow, flow_layout=parse_layout(args.flow_layout) if args.flow_layout else None)


def run(args) -> int:
    """Run the editor until its window closes; returns the exit status."""
    started = time.perf_counter()
    try:
        state = initial_state(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.device:
        try:
            resolve_device(args.device)
        except DeviceError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.screenshot and args.project:
        try:
            verify_files(read_project(args.project)[0])
        except ProjectError as e:
            print(f"error: {one_line(str(e))}", file=sys.stderr)
            return 2
    if args.screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    elif sys.platform.startswith("linux") and not any(
            os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        print("error: no display to open the editor window on (DISPLAY is not set). Run it in a desktop session, "
              "under xvfb-run, or use --screenshot PNG / the headless commands (python main.py --help).",
              file=sys.stderr)
        return 2
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    from editor.controllers.bridge import EngineBridge, gui_cpu_threads
    from editor.controllers.document import Document
    from editor.controllers.settings import Settings
    from editor.main_window import MainWindow

    tune_allocator()
    setup_logging(Path(args.settings).resolve().parent / "logs" if args.settings else None)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Face Editor")
    app.setOrganizationName("face-editor")
    dialogs = DialogGuard(app) if args.screenshot else None
    settings = Settings(args.settings)
    device = args.device or settings.device
    precision = args.precision or settings.precision  # a stored precision this version lacks reads as auto
    try:
        bridge = EngineBridge(device=device, precision=precision, cpu_threads=gui_cpu_threads()).start()
    except DeviceError as e:  # only a stored preference gets here (--device was checked above): fall back
        print(f"warning: {e} Using auto instead; change it in Edit ▸ Preferences.", file=sys.stderr)
        bridge = EngineBridge(device="auto", precision=precision, cpu_threads=gui_cpu_threads()).start()
    document = Document(state)
    autosave = Path(args.settings).with_suffix(".autosave.fproj") if args.settings else None
    window = MainWindow(document, bridge, settings, autosave_path=autosave)
    window.preview.frame.connect(lambda _r: _report_start(started), type=Qt.ConnectionType.SingleShotConnection)
    if args.project:
        window.projects.open_file(args.project)
    elif not args.screenshot and not args.photo:
        window.projects.offer_recovery()
    if args.photo:
        window.photo_panel.open_path(str(Path(args.photo).resolve()))
    if args.screenshot:
        window.resize(1280, 800)
        if args.photo:
            window.act_side.setChecked(True)
        return _screenshot(app, window, bridge, Path(args.screenshot), photo=bool(args.photo), dialogs=dialogs)
    window.show()
    try:
        return app.exec()
    finally:
        bridge.shutdown()


def _report_start(started: float) -> None:
    print(f"face editor: first frame {time.perf_counter() - started:.2f} s after the editor started", file=sys.stderr)
    print(f"first frame at epoch {time.time():.3f}", file=sys.stderr)


def one_line(text: str) -> str:
    """``text`` on one line (a message box's text may have several)."""
    return " ".join(text.split())


class DialogGuard:
    """For a headless run: closes every modal dialog as soon as it opens (polling ``app.activeModalWidget()``, which
    also runs inside the dialog's own event loop) and keeps its text in ``messages``."""

    def __init__(self, app, *, interval_ms: int = 20):
        from PySide6.QtCore import QTimer

        self.messages: list[str] = []
        self._app = app
        self._timer = QTimer(app, interval=interval_ms)
        self._timer.timeout.connect(self._close_modal)
        self._timer.start()

    def _close_modal(self) -> None:
        dialog = self._app.activeModalWidget()
        if dialog is None:
            return
        text = dialog.text() if hasattr(dialog, "text") else dialog.windowTitle()
        self.messages.append(one_line(text) or "a dialog asked a question")
        if hasattr(dialog, "done"):
            dialog.done(0)
        else:
            dialog.close()


def _screenshot(app, window, bridge, path: Path, *, photo: bool = False, timeout_s: float = 120.0,
                dialogs: DialogGuard | None = None) -> int:
    """Show the window offscreen, wait for the first full frame and the thumbnails (and the photo's inversion
    with ``photo``), save a PNG. A dialog (``dialogs`` closed it) ends the run with its message: status 2."""
    window.show()
    deadline = time.monotonic() + timeout_s
    settle = None
    while time.monotonic() < deadline:
        app.processEvents()
        if dialogs is not None and dialogs.messages:
            print(f"error: {dialogs.messages[0]}", file=sys.stderr)
            window.projects.discard_autosave()
            bridge.shutdown()
            return 2
        waiting = photo and (window.document.state.photo is None or window.photo_panel.running())
        if window.current_full_image() is not None and not waiting:
            settle = settle or time.monotonic() + 1.5  # let thumbnails and layout arrive
            if time.monotonic() > settle:
                break
        time.sleep(0.01)
    else:
        print("screenshot: no frame was rendered in time", file=sys.stderr)
        bridge.shutdown()
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(str(path))
    window.projects.discard_autosave()
    bridge.shutdown()
    print(f"screenshot: {path}" if ok else f"screenshot: could not write {path}", file=sys.stderr)
    return 0 if ok else 1
