"""What written files say about other files: never an absolute path, which would leak the user's folder names.

Exports (PNG text chunks, JSON beside generated images, batch outputs) keep a file's name and, where it matters,
its sha256; project files keep paths relative to the project's folder (``os.path.relpath``), and reading a project
resolves them against that folder again. Both walk the whole JSON-like value, so a path nested anywhere (an
export's extras, an inversion summary) is covered, not only the fields known today.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath

_OPTION = re.compile(r"\s-")


def is_absolute_path(text: str) -> bool:
    """Whether ``text`` reads as an absolute file path on POSIX (``/x/y``) or Windows (``C:\\x``, ``\\\\host\\x``).
    A command line (a space before an option, or several lines) is not a path."""
    if "\n" in text or _OPTION.search(text):
        return False
    return PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()


def file_name(text: str) -> str:
    """The last part of a POSIX or Windows path."""
    return PureWindowsPath(text).name if "\\" in text else PurePosixPath(text).name


def map_paths(obj, convert: Callable[[str], str]):
    """A copy of the JSON-like ``obj`` with ``convert`` applied to every string that is an absolute path."""
    if isinstance(obj, dict):
        return {k: map_paths(v, convert) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [map_paths(v, convert) for v in obj]
    if isinstance(obj, str) and is_absolute_path(obj):
        return convert(obj)
    return obj


def names_only(obj):
    """``obj`` with every absolute path replaced by its file name (for exports)."""
    return map_paths(obj, file_name)


def relative_to(obj, folder: str | os.PathLike):
    """``obj`` with every absolute path made relative to ``folder`` (for project files). A path that cannot be
    made relative (another drive on Windows) keeps only its name."""
    base = os.path.abspath(folder)

    def convert(text: str) -> str:
        try:
            return Path(os.path.relpath(text, base)).as_posix()
        except ValueError:
            return file_name(text)

    return map_paths(obj, convert)


def resolve_from(path: str | None, folder: str | os.PathLike) -> str | None:
    """A path read from a project in ``folder``: relative ones are taken from that folder; absolute ones (older
    projects) are kept."""
    if path is None or is_absolute_path(path):
        return path
    return os.path.normpath(os.path.join(os.path.abspath(folder), path))


def write_json(path: str | os.PathLike, obj) -> dict:
    """Write the JSON-like ``obj`` (a release manifest, a summary) indented, with absolute paths reduced to file
    names; returns what the file now holds, as read back."""
    text = json.dumps(names_only(obj), indent=2) + "\n"
    Path(path).write_text(text, encoding="utf-8")
    return json.loads(text)


def command_line() -> str:
    """This process's command as a user would type it again (``main.py train ...``): the program's own path, which
    may be absolute, is left out of the records that trainers and releases write."""
    return shlex.join(["main.py", *sys.argv[1:]])
