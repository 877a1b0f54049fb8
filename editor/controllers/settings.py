"""App preferences in ``QSettings``: recent model and project files, window geometry, preview resolution, device,
generator precision, the LPIPS weights for photo inversion."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from engine import PRECISIONS

MAX_RECENT = 8


class Settings:
    """Typed access to the editor's ``QSettings`` (an ini file at ``path`` for tests and portable use)."""

    def __init__(self, path: str | Path | None = None):
        self._q = (QSettings(str(path), QSettings.Format.IniFormat) if path is not None
                   else QSettings("face-editor", "Face Editor"))

    @property
    def path(self) -> str:
        """Where the settings are kept: the ini file, or the platform's store (a file or a registry key)."""
        return self._q.fileName()

    def recent(self, kind: str) -> list[str]:
        """Recent files of ``kind`` ('models' or 'projects'), newest first, only those that still exist."""
        value = self._q.value(f"recent/{kind}", [])
        items = [value] if isinstance(value, str) else list(value or [])
        return [p for p in items if Path(p).is_file()]

    def add_recent(self, kind: str, path: str | Path) -> None:
        path = str(Path(path).resolve())
        items = [path] + [p for p in self.recent(kind) if p != path]
        self._q.setValue(f"recent/{kind}", items[:MAX_RECENT])

    @property
    def geometry(self) -> QByteArray | None:
        value = self._q.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self._q.setValue("window/geometry", value)

    @property
    def window_state(self) -> QByteArray | None:
        value = self._q.value("window/state")
        return value if isinstance(value, QByteArray) else None

    @window_state.setter
    def window_state(self, value: QByteArray) -> None:
        self._q.setValue("window/state", value)

    @property
    def preview_limit(self) -> int:
        """Largest resolution rendered while a slider moves (the full image follows on release)."""
        return int(self._q.value("preview/limit", 256))

    @preview_limit.setter
    def preview_limit(self, value: int) -> None:
        self._q.setValue("preview/limit", int(value))

    @property
    def device(self) -> str:
        """'auto' (CUDA, then Apple MPS, then CPU) or a device name such as 'cpu' or 'cuda:1'."""
        return str(self._q.value("engine/device", "auto"))

    @device.setter
    def device(self, value: str) -> None:
        self._q.setValue("engine/device", value)

    @property
    def precision(self) -> str:
        """The generators' precision: 'auto' (float16 on a CUDA GPU, float32 elsewhere), 'float32', 'float16' or
        'bfloat16'. A stored value this version does not know reads as 'auto'."""
        value = str(self._q.value("engine/precision", "auto")).strip().lower()
        return value if value in PRECISIONS else "auto"

    @precision.setter
    def precision(self, value: str) -> None:
        self._q.setValue("engine/precision", value)

    @property
    def lpips_path(self) -> str:
        """torchvision's VGG16 weights (``vgg16-*.pth``, or their folder) for an LPIPS inversion loss; '' for none."""
        return str(self._q.value("inversion/lpips", ""))

    @lpips_path.setter
    def lpips_path(self, value: str) -> None:
        self._q.setValue("inversion/lpips", str(value))

    def sync(self) -> None:
        self._q.sync()
