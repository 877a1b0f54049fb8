"""uint8 arrays from the engine -> QImage without copying (the caller keeps the array alive)."""
from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage


def to_qimage(arr: np.ndarray) -> QImage:
    """Wrap a C-contiguous uint8 [H, W, 3] array as an RGB888 QImage sharing its memory.

    The QImage does not own the pixels: keep ``arr`` referenced as long as the image is used.
    """
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected a uint8 image [H, W, 3], got {arr.dtype} {arr.shape}")
    if not arr.flags.c_contiguous:
        raise ValueError("the image array must be C-contiguous to be shared with Qt")
    h, w, _ = arr.shape
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888)


class HeldImage:
    """A QImage together with the array that owns its pixels."""

    __slots__ = ("array", "qimage")

    def __init__(self, arr: np.ndarray):
        self.array = arr
        self.qimage = to_qimage(arr)
