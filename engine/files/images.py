"""Image conversions and files: raw generator output -> 8-bit arrays -> PNG (with parameters in a text chunk)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, PngImagePlugin

from engine.files.paths import names_only


def to_uint8(img: torch.Tensor, *, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Images [B, C, H, W] whose nominal range is ``value_range`` (lo, hi) -> C-contiguous uint8 [B, H, W, C], as
    NVIDIA's scripts convert raw generator output: ``clamp(x * s + 0.5 - lo * s, 0, 255)`` truncated to integers,
    s = 255 / (hi - lo) (for [-1, 1]: ``x * 127.5 + 128``), so every level rounds to the nearest, halves up."""
    if img.ndim != 4:
        raise ValueError(f"expected images [B, C, H, W], got shape {tuple(img.shape)}")
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must go from low to high, got {value_range}")
    scale = 255.0 / (hi - lo)
    x = (img.detach().to(torch.float32) * scale + (0.5 - lo * scale)).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def to_pil(arr: np.ndarray) -> Image.Image:
    """One uint8 image [H, W, C] (C = 1 or 3) as a PIL image."""
    if arr.ndim != 3 or arr.shape[2] not in (1, 3) or arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image [H, W, 1|3], got {arr.dtype} {arr.shape}")
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)


def save_png(path: str | os.PathLike, arr: np.ndarray, *, parameters: dict | None = None) -> Path:
    """Write a PNG; ``parameters`` (JSON-serialisable) go into a ``face-editor`` text chunk, with every absolute
    path in them reduced to its file name (an image that is shared must not tell the user's folder names)."""
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    if parameters is not None:
        info.add_text("face-editor", json.dumps(names_only(parameters), sort_keys=True))
    to_pil(arr).save(path, format="PNG", pnginfo=info)
    return path


def read_png_parameters(path: str | os.PathLike) -> dict | None:
    """The parameters stored by ``save_png``, or None."""
    with Image.open(path) as im:
        text = im.text.get("face-editor") if hasattr(im, "text") else None
    return json.loads(text) if text else None
