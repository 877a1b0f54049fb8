"""The Help menu: the keyboard-shortcut sheet, About, and the log folder.

The sheet is generated from the window's menus each time it opens (every action with a shortcut: its keys, its
name, its tooltip), so it cannot drift from what the keys do. About lists the versions, the engine device and the
model files in use, as a bug report needs them (with a Copy button).
"""
from __future__ import annotations

import contextlib
import html
import importlib.metadata
import platform
import re
from pathlib import Path

import PySide6
from PySide6.QtCore import QUrl, qVersion
from PySide6.QtGui import QAction, QDesktopServices, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QMenu, QTextBrowser, QVBoxLayout, QWidget

from engine import ASSETS_DIR, DEFAULT_ENCODER, DEFAULT_ESTIMATOR, DEFAULT_FLOW, DEFAULT_GENERATOR, log_path

SHEET_TEXT, SHEET_TIP = "sheet_text", "sheet_tip"  # action properties: name and tip on the sheet when the menu's
# change with the state (Undo <step>)
PACKAGE = "face-editor"


def _keys(action: QAction) -> str:
    native = QKeySequence.SequenceFormat.NativeText
    return " or ".join(dict.fromkeys(k.toString(native) for k in action.shortcuts() if not k.isEmpty()))


def _name(action: QAction) -> str:
    return (action.property(SHEET_TEXT) or action.text()).replace("&&", "\0").replace("&", "").replace("\0", "&")


def _what(action: QAction, name: str) -> str:
    """The tooltip without the keys in brackets at its end (the sheet has a column for them); '' when it only
    repeats the name."""
    tip = re.sub(r"\s*\([^()]*\)$", "", action.property(SHEET_TIP) or action.toolTip()).strip()
    return "" if tip.rstrip("…") == name.rstrip("…") else tip


def shortcut_rows(window) -> list[tuple[str, str, str, str]]:
    """(menu, action, keys, what it does) for every action with a shortcut in ``window``'s menus (submenus too), in
    menu order; an action in two menus is listed once, under the first."""
    rows, seen = [], set()

    def walk(menu: QMenu, title: str) -> None:
        for action in menu.actions():
            if action.menu() is not None:
                walk(action.menu(), title)
            elif not action.isSeparator() and _keys(action) and id(action) not in seen:
                seen.add(id(action))
                name = _name(action)
                rows.append((title, name, _keys(action), _what(action, name)))

    for top in window.menuBar().actions():
        if top.menu() is not None:
            walk(top.menu(), top.text().replace("&", ""))
    return rows


def shortcut_sheet_html(window) -> str:
    parts, menu = [], None
    for title, name, keys, what in shortcut_rows(window):
        if title != menu:
            menu = title
            parts.append(f"<tr><td colspan=3><h3>{html.escape(title)}</h3></td></tr>")
        keys = "<br>".join(html.escape(k) for k in keys.split(" or "))
        parts.append(f"<tr><td><b>{keys}</b>&nbsp;&nbsp;</td><td>{html.escape(name)}&nbsp;&nbsp;</td>"
                     f"<td style='color: gray'>{html.escape(what)}</td></tr>")
    return ("<p>The menus' shortcuts. Single keys (S, B, V, P, T) work while the image has the keyboard: Enter or "
            "Esc in a seed box gives it back.</p><table cellspacing=2>" + "".join(parts) + "</table>")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _model(path: str | None, default: str) -> str:
    return f"{path}" if path else f"{ASSETS_DIR / default} (embedded default)"


def about_rows(window) -> list[tuple[str, str]]:
    """(what, value) lines of the About box: versions, the device, the model files in use, where logs and settings
    are kept."""
    state = window.document.state
    tr = state.translation
    return [
        ("Face Editor", _version(PACKAGE)),
        ("Python", platform.python_version()),
        ("PySide6 / Qt", f"{PySide6.__version__} / {qVersion()}"),
        ("PyTorch", _version("torch")),
        ("NumPy", _version("numpy")),
        ("System", platform.platform()),
        ("Engine device", window.bridge.device),
        ("Generator", _model(state.model.path, DEFAULT_GENERATOR)),
        ("Attribute flow", _model(state.flow.path, DEFAULT_FLOW)),
        ("Attribute estimator", _model(None, DEFAULT_ESTIMATOR)),
        ("Inversion encoder", _model(None, DEFAULT_ENCODER)),
        ("Translation target", "none" if tr is None else _model(tr.target.path, DEFAULT_GENERATOR)),
        ("LPIPS weights", window.settings.lpips_path or "none (MSE + MS-SSIM)"),
        ("Log file", str(log_path())),
        ("Settings", window.settings.path),
    ]


def about_html(window) -> str:
    rows = "".join(f"<tr><td style='color: gray'>{html.escape(k)}&nbsp;&nbsp;</td><td>{html.escape(v)}</td></tr>"
                   for k, v in about_rows(window))
    return ("<h2>Face Editor</h2><p>Edit generated and real faces with StyleGAN2: seeds, truncation, style mixing, "
            "StyleFlow attributes, photo inversion and domain translation.</p>"
            f"<table cellspacing=2>{rows}</table>")


class TextSheet(QDialog):
    """A non-modal window with rich text and Close (and Copy, given ``copy_text``)."""

    def __init__(self, parent: QWidget, title: str, text: str, *, copy_text: str | None = None,
                 size: tuple[int, int] = (720, 560)):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.browser = QTextBrowser(openExternalLinks=True)
        self.browser.setHtml(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        if copy_text is not None:
            copy = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
            copy.setToolTip("Copy these lines, e.g. into a bug report")
            copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(copy_text))
        lay = QVBoxLayout(self)
        lay.addWidget(self.browser)
        lay.addWidget(buttons)
        screen = parent.screen().availableGeometry()
        self.resize(min(size[0], screen.width() - 80), min(size[1], screen.height() - 80))  # fits 1280×720


def show_shortcut_sheet(window) -> TextSheet:
    sheet = TextSheet(window, "Keyboard shortcuts", shortcut_sheet_html(window))
    sheet.show()
    return sheet


def show_about(window) -> TextSheet:
    lines = "\n".join(f"{k}: {v}" for k, v in about_rows(window))
    sheet = TextSheet(window, "About Face Editor", about_html(window), copy_text=lines, size=(720, 440))
    sheet.show()
    return sheet


def open_log_folder(window) -> bool:
    """Open the log file's folder in the file manager (created if needed); says where it is when it cannot."""
    folder = Path(log_path()).parent
    with contextlib.suppress(OSError):  # unwritable: the file manager (or the message below) tells the user
        folder.mkdir(parents=True, exist_ok=True)
    ok = QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
    if not ok:
        window.statusBar().showMessage(f"Could not open a file manager; the log folder is {folder}", 10000)
    return ok
