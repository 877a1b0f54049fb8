"""One registry of the editor's icons: semantic names -> qtawesome ids and options (``icon("undo")``)."""
from __future__ import annotations

import qtawesome as qta
from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QToolButton

ICONS: dict[str, tuple[str, dict]] = {
    "open_model": ("mdi6.folder-open-outline", {}),
    "open_project": ("mdi6.file-document-outline", {}),
    "open_photo": ("mdi6.image-plus-outline", {}),
    "invert": ("mdi6.face-recognition", {}),
    "stop": ("mdi6.pause-circle-outline", {}),
    "side_by_side": ("mdi6.view-split-vertical", {}),
    "in_photo": ("mdi6.image-filter-center-focus", {}),
    "save": ("mdi6.content-save-outline", {}),
    "save_as": ("mdi6.content-save-edit-outline", {}),
    "export_image": ("mdi6.image-move", {}),
    "export_latent": ("mdi6.vector-point", {}),
    "batch_export": ("mdi6.image-multiple-outline", {}),
    "undo": ("mdi6.undo", {}),
    "redo": ("mdi6.redo", {}),
    "seed_previous": ("mdi6.chevron-left", {}),
    "seed_next": ("mdi6.chevron-right", {}),
    "seed_random": ("mdi6.dice-multiple-outline", {}),
    "zoom_in": ("mdi6.magnify-plus-outline", {}),
    "zoom_out": ("mdi6.magnify-minus-outline", {}),
    "zoom_fit": ("mdi6.fit-to-screen-outline", {}),
    "zoom_actual": ("mdi6.numeric-1-box-outline", {}),
    "before_after": ("mdi6.compare", {}),
    "snapshot": ("mdi6.camera-plus-outline", {}),
    "add_seed": ("mdi6.plus-circle-outline", {}),
    "add_latent": ("mdi6.file-import-outline", {}),
    "remove": ("mdi6.close-circle-outline", {}),
    "reset": ("mdi6.restore", {}),
    "lock": ("mdi6.lock-open-variant-outline", {"on": "mdi6.lock"}),
    "model": ("mdi6.face-man-profile", {}),
    "recent": ("mdi6.history", {}),
    "quit": ("mdi6.exit-to-app", {}),
    "cancel": ("mdi6.stop-circle-outline", {}),
    "settings": ("mdi6.cog-outline", {}),
    "translate": ("mdi6.palette-swatch-outline", {}),
    "own_style": ("mdi6.account-outline", {}),
    "style_samples": ("mdi6.dice-5-outline", {}),
    "next_page": ("mdi6.refresh", {}),
    "reference_image": ("mdi6.image-search-outline", {}),
    "export_samples": ("mdi6.image-multiple", {}),
    "translate_folder": ("mdi6.folder-multiple-image", {}),
    "compare_methods": ("mdi6.view-comfy-outline", {}),
    "keyboard": ("mdi6.keyboard-outline", {}),
    "about": ("mdi6.information-outline", {}),
    "log_folder": ("mdi6.folder-text-outline", {}),
}


def icon(name: str) -> QIcon:
    """The icon registered as ``name`` (a KeyError names the missing entry)."""
    if name not in ICONS:
        raise KeyError(f"no icon registered as {name!r}")
    qta_id, options = ICONS[name]
    return qta.icon(qta_id, **options)


def tool_button(name: str, tip: str, slot=None, *, text: str = "") -> QToolButton:
    """A tool button with the icon ``name``: flat without ``text``, icon and text beside each other with it;
    a click calls ``slot()``."""
    b = QToolButton(icon=icon(name), text=text, toolTip=tip, autoRaise=not text)
    if text:
        b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    if slot is not None:
        b.clicked.connect(lambda _=False: slot())
    return b
