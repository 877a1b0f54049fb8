"""Exceptions the engine raises for problems a user can fix, and how any exception is told to a user.

A user reads sentences, never Python: ``ErrorReport.from_exception`` turns an exception into one plain sentence (no
exception class names, no ``b'...'`` reprs, no ``[Errno 2]``) and keeps the traceback as ``details`` for the log
file and a "Details" expander. ``describe`` names what a file held in words ("a list of 3 items").
"""
from __future__ import annotations

import re
import traceback
from dataclasses import dataclass, field


class ModelFormatError(ValueError):
    """A model file (or checkpoint dict) that cannot be loaded; the message says what was found and why."""


class PhotoError(ValueError):
    """A photo that cannot be read (missing, not an image, truncated, too large); the message says which and why."""


class DetectorUnavailable(RuntimeError):
    """A face detector whose package or model file is not installed; the message says what to install."""


class DeviceError(ValueError):
    """A compute device that cannot be used here (unknown name, or no such GPU); the message lists the choices."""


class PrecisionError(ValueError):
    """A numeric precision that cannot be used: an unknown name, or one that would change a model's images visibly
    (the message gives the measured difference and the precisions to use instead)."""


_WORDS = {"dict": "a dictionary", "OrderedDict": "a dictionary", "list": "a list", "tuple": "a tuple",
          "str": "a text string", "bytes": "raw bytes", "bytearray": "raw bytes", "int": "a whole number",
          "float": "a number", "bool": "a true/false value", "NoneType": "nothing (None)", "Tensor": "a tensor",
          "Parameter": "a tensor", "ndarray": "an array", "set": "a set", "complex": "a complex number"}


def describe(obj, *, keys: int = 6) -> str:
    """What ``obj`` is, in words: 'a dictionary with keys a, b, …', 'a list of 3 items', 'a text string'."""
    kind = type(obj).__name__
    if isinstance(obj, dict):
        shown = ", ".join(repr(k) if not isinstance(k, str) else k for k in list(obj)[:keys])
        more = ", …" if len(obj) > keys else ""
        return f"a dictionary with keys {shown}{more}" if obj else "an empty dictionary"
    if isinstance(obj, (list, tuple)):
        return f"{_WORDS[type(obj).__name__] if kind in _WORDS else 'a sequence'} of {len(obj)} items"
    if kind in _WORDS:
        return _WORDS[kind]
    return f"an object of kind {kind}"


def show_bytes(data: bytes) -> str:
    """Bytes as a user can read them: hex, e.g. '3c 68 74 6d' (never a ``b'...'`` repr)."""
    return " ".join(f"{b:02x}" for b in data)


_CLASS_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception|Warning|Interrupt)):\s*")
_BYTES_REPR = re.compile(r"""\bb(['"])((?:\\.|(?!\1).)*)\1""")
_ERRNO = re.compile(r"^\[Errno \d+\]\s*")


def _unbytes(match: re.Match) -> str:
    try:
        raw = bytes(match.group(2), "latin-1").decode("unicode_escape").encode("latin-1")
    except (UnicodeDecodeError, UnicodeEncodeError, ValueError):
        return "some bytes"
    return f"bytes {show_bytes(raw)}" if raw else "no bytes"


def plain_text(text: str, *, capital: bool = True) -> str:
    """``text`` without leading exception class names, errno tags or ``b'...'`` reprs, as one sentence (its first
    word capitalised with ``capital``, unless it is a name such as a file's)."""
    text = " ".join(str(text).split())
    while True:
        stripped = _ERRNO.sub("", _CLASS_PREFIX.sub("", text))
        if stripped == text:
            break
        text = stripped
    text = _BYTES_REPR.sub(_unbytes, text)
    if not text:
        return ""
    first = text.split(" ", 1)[0]
    if capital and first.isalpha() and first.islower():
        text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?)" else text + "."


def _sentence(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"The file {exc.filename} does not exist."
    if isinstance(exc, IsADirectoryError) and exc.filename:
        return f"{exc.filename} is a folder, not a file."
    if isinstance(exc, PermissionError) and exc.filename:
        return f"Permission denied: this program may not read or write {exc.filename}."
    if isinstance(exc, OSError) and exc.strerror:
        where = f" ({exc.filename})" if exc.filename else ""
        return plain_text(f"{exc.strerror}{where}")
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return ("There was not enough memory for this job. Close other programs, pick a smaller model, or use "
                "another device in Preferences.")
    if isinstance(exc, RecursionError):
        return "The input is nested too deeply to read."
    if isinstance(exc, KeyError):
        return f"Something went wrong inside the engine: the entry {exc} was missing. The details are in the log."
    first_line = str(exc).split("\n", 1)[0]
    if isinstance(exc, ValueError | DetectorUnavailable) and first_line.strip():
        return plain_text(first_line)
    text = plain_text(first_line, capital=False)
    return "Something went wrong inside the engine" + (f": {text}" if text else ".") + " The details are in the log."


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def unreadable_reason(exc: BaseException) -> str:
    """Why ``torch.load`` or an unpickler could not read a file, as a clause: 'it asks for the Python object
    x.Y, which weights never need', 'the file is truncated', … (never torch's advice to drop ``weights_only``)."""
    text = str(exc)
    found = _UNSUPPORTED_GLOBAL.search(text)
    if found:
        return f"it asks for the Python object {found.group(1)}, which a file of weights never needs"
    lowered = text.lower()
    if isinstance(exc, EOFError) or "truncated" in lowered or "ran out of input" in lowered:
        return "the file is truncated (it ends too early)"
    if "central directory" in lowered or "zip archive" in lowered or "hasrecord" in lowered:
        return "its ZIP archive is damaged (truncated, or changed after it was written)"
    if "invalid load key" in lowered or "opcode" in lowered:
        return "its pickle data is damaged"
    if "weights only load failed" in lowered:
        return "it holds Python objects other than weights, which are never loaded"
    return "the file is damaged or truncated"  # the reader's own words are Python's: they go to the log


@dataclass(frozen=True)
class ErrorReport:
    """What a failed job tells the user: ``message`` (one or two sentences), ``details`` (the traceback, for the
    log and a Details expander), ``kind`` (the exception's class name, for code, never shown) and ``exception``
    (the exception itself, for code that tells one kind of failure from another; None for a plain refusal)."""

    message: str
    details: str = ""
    kind: str = ""
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return self.message

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorReport:
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
        return cls(_sentence(exc), details, type(exc).__name__, exc)

    def prefixed(self, context: str) -> ErrorReport:
        """The same report with a leading context sentence, e.g. 'Could not load the model.'"""
        return ErrorReport(f"{plain_text(context)} {self.message}", self.details, self.kind, self.exception)
