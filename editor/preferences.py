"""Preferences dialog: the engine device, the resolution rendered while a slider is being dragged, and the LPIPS
weights a photo inversion may use."""
from __future__ import annotations

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

DEVICES = (("auto", "Automatic (CUDA, then Apple MPS, then CPU)"), ("cpu", "CPU"), ("cuda", "CUDA GPU"),
           ("mps", "Apple GPU (MPS)"))
PREVIEW_LIMITS = (64, 128, 256, 512, 1024)


class PreferencesDialog(QDialog):
    """Edits ``Settings``; ``apply()`` writes the choices back (the device takes effect on the next start)."""

    def __init__(self, settings, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Preferences")
        self._settings = settings
        self.device = QComboBox()
        for key, text in DEVICES:
            self.device.addItem(text, key)
        index = self.device.findData(settings.device)
        if index < 0:  # a device typed on the command line or in the ini file, e.g. cuda:1
            self.device.addItem(settings.device, settings.device)
            index = self.device.count() - 1
        self.device.setCurrentIndex(index)
        self.device.setToolTip("Where the models run. Takes effect the next time the editor starts.")
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
        form.addRow("Preview while dragging", self.preview)
        form.addRow("LPIPS weights", lpips_row)
        note = QLabel("The device change applies after a restart.")
        note.setStyleSheet("color: palette(mid)")
        form.addRow(note)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse_lpips(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "VGG16 weights for LPIPS", self.lpips.text(),
                                              "PyTorch weights (*.pth *.pt);;All files (*)")
        if path:
            self.lpips.setText(path)

    def apply(self) -> int:
        """Store the choices; returns the preview limit for the running editor."""
        self._settings.lpips_path = self.lpips.text().strip()
        self._settings.device = self.device.currentData()
        self._settings.preview_limit = self.preview.currentData()
        self._settings.sync()
        return self._settings.preview_limit
