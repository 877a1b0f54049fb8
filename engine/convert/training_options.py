"""The options file that the pytorch-CycleGAN-and-pix2pix family of trainers (BicycleGAN included) writes beside its
weights, read as the training's own record of the choices its weight shapes cannot show (the non-linearity, the
norm, dropout ...).

Format (``BaseOptions.print_options``): a header line ``----------------- Options ---------------``, one line per
option sorted by name, ``'{:>25}: {:<30}{}'.format(name, value, comment)`` where the comment is
``'\\t[default: D]'`` when the value differs from the default, and a footer ``----------------- End
-------------------``. Values are ``str()`` of the parsed argument: ``True`` / ``False`` for flags, decimal
numbers, plain words; an empty text option leaves the value empty. Older versions wrote ``name: value`` without
padding between differently dashed header lines, which reads the same.

File names: BicycleGAN writes ``checkpoints/<name>/opt.txt`` (at training, and again when ``test.py`` runs on the
folder); pytorch-CycleGAN-and-pix2pix writes ``train_opt.txt`` (and ``test_opt.txt`` at test time, not read here:
it records a test run, not the training). ``find_training_options`` reads every one of ``TRAINING_FILES`` present
in a folder; when several are, they must agree on each option they both state that ``compared`` names, and the
merged options say which file and line each value came from.

Header, footer and blank lines are skipped and unknown options are kept (callers pick what they need); any other
line that is not ``name: value``, an option given twice, or a value of the wrong type for what a caller asks
refuses with ``ModelFormatError`` naming the file and line.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelFormatError

TRAINING_FILES = ("train_opt.txt", "opt.txt")  # pytorch-CycleGAN-and-pix2pix, BicycleGAN
MAX_BYTES = 1 << 20  # the real files are a few kB
_LINE = re.compile(r"\s*([A-Za-z_]\w*):(.*)")
_DEFAULT = re.compile(r"\s*\[default: .*\]\s*$")


@dataclass(frozen=True)
class TrainingOptions:
    """Options as the trainer printed them: ``values`` option -> text; ``origin`` option -> where it was read
    (``opt.txt line 23``, or ``the options argument``); ``label`` names the source(s) in messages."""

    values: dict[str, str]
    origin: dict[str, str]
    label: str

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def says(self, name: str) -> str:
        """'opt.txt line 23 says nl: lrelu'."""
        return f"{self.origin[name]} says {name}: {self.values[name]}"

    def text(self, name: str) -> str:
        return self.values[name]

    def number(self, name: str) -> int:
        """The option as a whole number (refused, naming the line, when it is not one)."""
        value = self.values[name]
        if not re.fullmatch(r"-?\d+", value):
            raise ModelFormatError(f"{self.origin[name]}: {name} should be a whole number, but it is '{value}'")
        return int(value)

    def flag(self, name: str) -> bool:
        """The option as a flag (``True`` / ``False``, as the trainers print them)."""
        value = self.values[name]
        if value not in ("True", "False"):
            raise ModelFormatError(f"{self.origin[name]}: {name} should be True or False, but it is '{value}'")
        return value == "True"

    @classmethod
    def from_mapping(cls, options: Mapping, *, label: str = "the options argument") -> TrainingOptions:
        """Options given as a mapping ``{name: value}`` (values of any type, read as the trainers print them)."""
        values = {str(k): str(v) for k, v in options.items()}
        return cls(values, {k: label for k in values}, label)


def parse_training_options(text: str, *, label: str = "opt.txt") -> TrainingOptions:
    """The options of a file's text; ``label`` names the file in messages."""
    values, origin = {}, {}
    for n, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("-"):
            continue  # blank, header or footer line
        m = _LINE.fullmatch(line.rstrip())
        if m is None:
            shown = stripped if len(stripped) <= 60 else stripped[:57] + "…"
            raise ModelFormatError(f"{label} line {n} is not an option line ('name: value'): {shown}")
        name, value = m.group(1), _DEFAULT.sub("", m.group(2)).strip()
        if name in values:
            raise ModelFormatError(f"{label} line {n} gives {name} a second time ({origin[name]} gave it first)")
        values[name], origin[name] = value, f"{label} line {n}"
    if not values:
        raise ModelFormatError(f"{label} holds no options (expected lines 'name: value' as the training writes them)")
    return TrainingOptions(values, origin, label)


def read_training_options(path: str | os.PathLike) -> TrainingOptions:
    """The options in the file at ``path``."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ModelFormatError(f"{path.name} is too large to be a training options file")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFormatError(f"{path.name} is not a text file, so not a training options file") from None
    except OSError as e:
        raise ModelFormatError(f"{path.name} cannot be read: {e.strerror or e}") from None
    return parse_training_options(text, label=path.name)


def find_training_options(where: str | os.PathLike, *, compared: Iterable[str]) -> TrainingOptions | None:
    """The options file(s) of ``TRAINING_FILES`` in the folder ``where`` (or beside the file ``where``), merged;
    None when there is none. Files that state one of the ``compared`` options differently are refused."""
    where = Path(where)
    folder = where if where.is_dir() else where.parent
    found = [read_training_options(folder / name) for name in TRAINING_FILES if (folder / name).is_file()]
    if not found:
        return None
    values, origin = dict(found[0].values), dict(found[0].origin)
    for other in found[1:]:
        for name in compared:
            if name in values and name in other and values[name] != other.values[name]:
                raise ModelFormatError(f"the training's options files disagree: {origin[name]} says {name}: "
                                       f"{values[name]}, {other.says(name)}; remove the one that does not describe "
                                       "these weights")
        for name, value in other.values.items():
            if name not in values:
                values[name], origin[name] = value, other.origin[name]
    return TrainingOptions(values, origin, " and ".join(o.label for o in found))


__all__ = ["TrainingOptions", "parse_training_options", "read_training_options", "find_training_options",
           "TRAINING_FILES"]
