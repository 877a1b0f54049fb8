"""Preferences dialog: the engine device and the generators' precision, the resolution rendered while a slider is
being dragged, and the LPIPS weights a photo inversion may use.

The device list is what this machine accepts (``engine.devices.device_choices``); any other torch device name can be
typed, and is checked with ``resolve_device`` on OK: a device this machine cannot open is refused with a sentence
naming the choices, and the dialog stays open with the stored device unchanged.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QWidget,
)

from editor.dialogs.error_box import show_error
from engine import PRECISIONS, DeviceError, device_choices, resolve_device

DEVICE_TIPS = {"auto": "CUDA if there is a GPU, then Apple's Metal (MPS), then the CPU", "cpu": "The CPU",
               "cuda": "The current CUDA GPU", "mps": "Apple's GPU (Metal)"}


def device_tip(name: str) -> str:
    """What a device name means, in words."""
    if name in DEVICE_TIPS:
        return DEVICE_TIPS[name]
    return f"CUDA GPU number {name[5:]}" if name.startswith("cuda:") else "A torch device name, checked on OK"
PREVIEW_LIMITS = (64, 128, 256, 512, 1024)
PRECISION_TIPS = {
    "auto": "float16 on a CUDA GPU (half the memory, faster), float32 elsewhere; a model whose images float16 would "
            "change visibly stays float32",
    "float32": "Full precision everywhere",
    "float16": "Half precision on a GPU (NVIDIA's mixed precision; not on the CPU, which has no fast float16); a "
               "model it would change visibly is refused",
    "bfloat16": "bfloat16: float32's range with fewer digits; a model it would change visibly is refused",
}


class PreferencesDialog(QDialog):
    """Edits ``Settings``; ``apply()`` writes the choices back (the device takes effect on the next start)."""

    def __init__(self, settings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self.setMinimumWidth(460)
        self._settings = settings
        self.device = QComboBox(editable=True, insertPolicy=QComboBox.InsertPolicy.NoInsert)
        self._choices = device_choices()
        for name in self._choices:
            self.device.addItem(name)
            self.device.setItemData(self.device.count() - 1, device_tip(name), Qt.ItemDataRole.ToolTipRole)
        self.device.setCurrentText(settings.device)  # a stored name this machine lacks is shown, and checked on OK
        self.device_note = QLabel(wordWrap=True)
        self.device_note.setStyleSheet("color: palette(mid)")
        self.device.currentTextChanged.connect(self._describe_device)
        self._describe_device(self.device.currentText())
        self.device.setToolTip("Where the models run: one of the listed devices of this machine, or a torch device "
                               "name such as cuda:1. Takes effect the next time the editor starts.")
        self.precision = QComboBox()
        for name in PRECISIONS:
            self.precision.addItem(name)
            self.precision.setItemData(self.precision.count() - 1, PRECISION_TIPS[name], Qt.ItemDataRole.ToolTipRole)
        self.precision.setCurrentText(settings.precision)
        self.precision.setToolTip("The precision generators run in, measured against float32 when a model loads. "
                                  "Takes effect the next time the editor starts.")
        self.preview = QComboBox()
        for px in PREVIEW_LIMITS:
            self.preview.addItem(f"{px} px", px)
        self.preview.setCurrentIndex(max(0, self.preview.findData(settings.preview_limit)))
        self.preview.setToolTip("While a slider is dragged, large models render at most this resolution so the face "
                                "follows the hand; the full image follows on release")
        self.lpips = QLineEdit(settings.lpips_path, placeholderText="none: MSE + MS-SSIM (works offline)")
        self.lpips.setToolTip("Photo inversion loss: give torchvision's VGG16 weights (vgg16-397923af.pth, with "
                              "lpips' vgg.pth beside it) to fit photos with LPIPS as UI2I does; empty: MSE + "
                              "MS-SSIM")
        browse = QToolButton(text="…", toolTip="Choose the VGG16 weights file")
        browse.clicked.connect(self._browse_lpips)
        lpips_row = QHBoxLayout()
        lpips_row.addWidget(self.lpips, 1)
        lpips_row.addWidget(browse)
        form = QFormLayout(self)
        form.addRow("Device", self.device)
        form.addRow("", self.device_note)
        form.addRow("Precision", self.precision)
        form.addRow("Preview while dragging", self.preview)
        form.addRow("LPIPS weights", lpips_row)
        note = QLabel("Device and precision changes apply after a restart.")
        note.setStyleSheet("color: palette(mid)")
        form.addRow(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _describe_device(self, text: str) -> None:
        self.device_note.setText(f"{device_tip(text.strip() or 'auto')}. This machine has: "
                                 f"{', '.join(self._choices)}.")

    def _browse_lpips(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "VGG16 weights for LPIPS", self.lpips.text(),
                                              "PyTorch weights (*.pth *.pt);;All files (*)")
        if path:
            self.lpips.setText(path)

    def device_name(self) -> str:
        """The device typed or chosen ('' counts as auto)."""
        return self.device.currentText().strip() or "auto"

    def accept(self) -> None:
        """Close with OK, unless the device cannot be opened here: then say why and stay open."""
        try:
            resolve_device(self.device_name())
        except DeviceError as e:
            show_error(self, "Preferences", str(e))
            self.device.setFocus()
            return
        super().accept()

    def apply(self) -> int:
        """Store the choices; returns the preview limit for the running editor."""
        self._settings.lpips_path = self.lpips.text().strip()
        self._settings.device = self.device_name()
        self._settings.precision = self.precision.currentText()
        self._settings.preview_limit = self.preview.currentData()
        self._settings.sync()
        return self._settings.preview_limit
