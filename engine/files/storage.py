"""Bytes on disk, safely: model files sniffed and read without running code (``torch.load(weights_only=True)`` or
the restricted unpickler), checksums, and atomic writes. The one place that opens a model file for reading.
"""
from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import pickle
import re
import struct
import tempfile
import threading
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

import torch

from engine.errors import ModelFormatError, show_bytes, unreadable_reason
from engine.files import pickles
from engine.files.guard import MAX_MODEL_BYTES, check_structure, format_bytes, refuse_broken_files

_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"

_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # a ZIP record's local header, up to its name and extra field lengths
# the pickle of a torch.save file: the weights are records beside it, so a 1024 px training checkpoint's takes some
# 1 MB; PyTorch unpickles it in Python (0.5 us an instruction), so 8 MB bounds the time to ~4 s and the memory
MAX_PICKLE_RECORD = 8 << 20

_SHA_MEMO: dict[tuple, str] = {}
_CRC_MEMO: dict[tuple, bool] = {}  # the ZIP files whose records were checked (file identities, as _SHA_MEMO's)
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


def check_zip_records(path: Path) -> None:
    """Refuse a ``torch.save`` (ZIP) file whose records do not match the CRC-32 its archive recorded for them (a bit
    flipped in the tensor data or the pickle, a file changed after it was written), or whose pickle is far larger
    than weights need. The records are read from a memory map of the file, once; PyTorch's own reader does not
    check them."""
    with zipfile.ZipFile(path) as archive:
        records = archive.infolist()
    pickled = sum(r.file_size for r in records if r.filename.endswith(".pkl"))
    if pickled > MAX_PICKLE_RECORD:
        raise ModelFormatError(f"cannot read {path.name}: its pickle takes {format_bytes(pickled)}, and the "
                               f"editor reads model files whose pickle takes up to {format_bytes(MAX_PICKLE_RECORD)} "
                               "(the weights are stored beside it)")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        for record in records:
            if record.compress_type != zipfile.ZIP_STORED or record.file_size == 0:
                continue
            header = data[record.header_offset:record.header_offset + _LOCAL_HEADER.size]
            if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
                raise ModelFormatError(f"cannot read {path.name}: its ZIP archive is damaged (record "
                                       f"{record.filename} is not where the archive says)")
            name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
            start = record.header_offset + _LOCAL_HEADER.size + name_len + extra_len
            if start + record.file_size > len(data):
                raise ModelFormatError(f"cannot read {path.name}: the file is truncated (it ends too early)")
            if zlib.crc32(memoryview(data)[start:start + record.file_size]) != record.CRC:
                raise ModelFormatError(f"cannot read {path.name}: its data is corrupt (record {record.filename} "
                                       "does not match the checksum written with it: the file was damaged after "
                                       "it was saved)")


def _verified(path: Path) -> None:
    """``check_zip_records`` once per file identity (path, inode, size, modification time): the editor opens the same
    model again and again (a project, its thumbnails, a reload), and a changed file is checked anew."""
    st = path.stat()
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _CRC_MEMO:
        return
    check_zip_records(path)
    if len(_CRC_MEMO) >= _SHA_MEMO_SIZE:
        _CRC_MEMO.pop(next(iter(_CRC_MEMO)))
    _CRC_MEMO[key] = True


def _torch_load(path: Path):
    if _is_zip(path):
        try:
            _verified(path)
        except zipfile.BadZipFile:
            raise ModelFormatError(f"cannot read {path.name}: its ZIP archive is damaged (truncated, or changed "
                                   "after it was written)") from None
        except (OSError, ValueError, EOFError) as e:
            if isinstance(e, ModelFormatError):
                raise
            raise ModelFormatError(f"cannot read {path.name}: {unreadable_reason(e)}") from None
    try:
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch's deprecation notes on what old files hold: not for users
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelFormatError(f"refusing to load {path.name}: {unreadable_reason(e)}") from None
    except MemoryError:
        raise ModelFormatError(f"cannot read {path.name}: it asks for more memory than there is") from None
    except Exception as e:  # whatever PyTorch's reader trips on in a damaged file (struct.error, KeyError, ...)
        raise ModelFormatError(f"cannot read {path.name}: {unreadable_reason(e)}") from None
    check_structure(obj, what=path.name)
    return obj


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


@refuse_broken_files
def read_model_file(path: str | os.PathLike):
    """Read a model file safely. Returns ``(kind, content)``: ``("torch", obj)`` for ``torch.save`` files,
    ``("nvlabs-pickle", dict)`` or ``("tf-pickle", tuple)`` for pickles (through the restricted unpickler). A ZIP
    file's records are checked against their CRC-32 first (``check_zip_records``); what either kind holds is checked
    by ``guard.check_structure``; a file larger than ``guard.MAX_MODEL_BYTES`` is refused unread."""
    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"no such file: {path}")
    if path.is_dir():
        raise ModelFormatError(f"{path} is a folder, not a model file")
    if not path.is_file():
        raise ModelFormatError(f"{path.name} is not a regular file (a device, pipe or socket), not a model file")
    if (size := path.stat().st_size) > MAX_MODEL_BYTES:
        raise ModelFormatError(f"{path.name} takes {format_bytes(size)}, more than the "
                               f"{format_bytes(MAX_MODEL_BYTES)} a model may take in the editor")
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
    ``path``: a crash never leaves a half-written file, and the old one survives a failed write. The temporary file
    is named after the target and this process (``.NAME.PID.XXXXXXXX.tmp``); those that killed writes of ``path``
    left behind are removed first (``remove_stale_temps``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    with _WRITING_LOCK:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        _WRITING.add(os.path.abspath(tmp))
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
    finally:
        with _WRITING_LOCK:
            _WRITING.discard(os.path.abspath(tmp))
    return path


STALE_TEMP_S = 3600.0  # a temporary file untouched this long is stale whoever wrote it (a save takes seconds)
_WRITING: set[str] = set()  # this process's temporary files being written (absolute paths)
_WRITING_LOCK = threading.Lock()
_RANDOM_PART = r"[a-z0-9_]{8}"  # what ``tempfile.mkstemp`` puts between prefix and suffix


def _writer_alive(pid: int) -> bool | None:
    """Whether process ``pid`` runs (None where that cannot be asked without harm: not POSIX)."""
    if os.name != "posix":
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it runs, as another user
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed ``atomic_write`` calls of ``path`` left beside it; returns them. A file
    is stale when the process its name records is gone (or is this one, not writing it), or when it has not changed
    for ``STALE_TEMP_S`` (also files of the older name without a process). A live save's file is never removed."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + rf"(?:(\d+)\.)?{_RANDOM_PART}\.tmp")
    try:
        entries = [e for e in os.scandir(path.parent) if pattern.fullmatch(e.name)]
    except OSError:
        return []
    removed = []
    now = time.time()
    for entry in entries:
        pid = pattern.fullmatch(entry.name).group(1)
        full = os.path.abspath(entry.path)
        with _WRITING_LOCK:
            if full in _WRITING:
                continue
            try:
                old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_S
            except OSError:
                continue
            gone = pid is not None and (int(pid) == os.getpid() or _writer_alive(int(pid)) is False)
            if not (old or gone) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                os.unlink(full)
            except OSError:
                continue
        removed.append(Path(full))
    return removed


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through ``atomic_write``."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
