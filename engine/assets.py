"""The embedded default models in ``assets/``: where they are, and a clear error when one is missing."""
from __future__ import annotations

import json
from pathlib import Path

from .errors import ModelFormatError

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_GENERATOR = "generator.pt"


def default_generator_path() -> Path:
    """Path of the embedded default generator; raises ModelFormatError if it is not there."""
    path = ASSETS_DIR / DEFAULT_GENERATOR
    if not path.is_file():
        raise ModelFormatError(f"the embedded default generator {path} is not there; pass --model PATH "
                               "(any rosinality, NVIDIA or face-editor StyleGAN2 file)")
    return path


def manifest(name: str) -> dict | None:
    """The manifest ``assets/<name>.json`` of an embedded file, or None."""
    path = ASSETS_DIR / f"{Path(name).stem}.json"
    return json.loads(path.read_text()) if path.is_file() else None
