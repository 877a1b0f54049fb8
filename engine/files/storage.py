"""Bytes on disk, safely: model files sniffed and read without running code (``torch.load(weights_only=True)`` or
the restricted unpickler), checksums, and atomic writes. The one place that opens a model file for reading.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import torch

from engine.errors import ModelFormatError, show_bytes, unreadable_reason
from engine.files import pickles

_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"

_SHA_MEMO: dict[tuple, str] = {}
_SHA_MEMO_SIZE = 64


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256 (hex). Remembered per file identity (path, inode, size, modification time), so asking
    again for an unchanged file (every export names its model's) costs a ``stat``; any change hashes anew."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _SHA_MEMO:
        return _SHA_MEMO[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if len(_SHA_MEMO) >= _SHA_MEMO_SIZE:
        _SHA_MEMO.pop(next(iter(_SHA_MEMO)))
    _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def _torch_load(path: Path):
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelFormatError(f"refusing to load {path.name}: {unreadable_reason(e)}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ModelFormatError(f"cannot read {path.name}: {unreadable_reason(e)}") from None


def read_model_file(path: str | os.PathLike):
    """Read a model file safely. Returns ``(kind, content)``: ``("torch", obj)`` for ``torch.save`` files,
    ``("nvlabs-pickle", dict)`` or ``("tf-pickle", tuple)`` for pickles (through the restricted unpickler)."""
    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"no such file: {path}")
    if path.is_dir():
        raise ModelFormatError(f"{path} is a folder, not a model file")
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise ModelFormatError(f"{path.name} is empty")
    if head.startswith(b"PK\x03\x04") or head.startswith(_LEGACY_TORCH_MAGIC):
        return "torch", _torch_load(path)
    if head[:1] == b"\x80":
        return pickles.read_pickle(path)
    raise ModelFormatError(f"{path.name} is not a model file the editor knows (neither a PyTorch checkpoint nor "
                           f"a pickle; its first bytes are {show_bytes(head[:8])})")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(file)`` on a temporary file in the target folder, flush it to disk, then atomically replace
    ``path``: a crash never leaves a half-written file, and the old one survives a failed write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these files are meant to be shared like any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through ``atomic_write``."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
