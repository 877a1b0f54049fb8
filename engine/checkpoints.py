"""The project's own checkpoint format: the architecture config saved with the weights.

Layout (a ``torch.save`` of plain containers, loadable with ``weights_only=True``)::

    {"format": "face-editor/stylegan2", "format_version": 1,
     "arch": GeneratorConfig as a dict, "state_dict": {...},          # includes mapping.w_avg
     "discriminator": {"arch": ..., "state_dict": ...} or absent,
     "extras": {...}}                                                   # free-form metadata (strings, numbers)
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import torch

from .errors import ModelFormatError
from .models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

FORMAT = "face-editor/stylegan2"
FORMAT_VERSION = 1


def is_own_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def _plain_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", torch.float32).clone() for k, v in module.state_dict().items()}


def generator_checkpoint(G: Generator, *, D: Discriminator | None = None, extras: dict | None = None) -> dict:
    """The checkpoint dict of a generator (and optionally its discriminator)."""
    ckpt = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": G.cfg.to_dict(),
            "state_dict": _plain_state(G), "extras": dict(extras or {})}
    if D is not None:
        ckpt["discriminator"] = {"arch": D.cfg.to_dict(), "state_dict": _plain_state(D)}
    return ckpt


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


def read_training_state(path: str | os.PathLike, *, fmt: str, version: int, what: str, wrong: str) -> dict:
    """Load a trainer's checkpoint (weights only, on the CPU) and check its format and version.

    ``what`` names it in messages ("training checkpoint"); ``wrong`` is the message for a file of another kind."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    check_training_state(state, fmt=fmt, version=version, what=what, wrong=wrong)
    return state


def check_training_state(state, *, fmt: str, version: int, what: str, wrong: str) -> None:
    """Refuse anything that is not a ``fmt`` training state of ``version`` (see ``read_training_state``)."""
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise ValueError(wrong)
    if state.get("format_version") != version:
        raise ValueError(f"{what} version {state.get('format_version')!r} is not supported (this version reads "
                         f"{version})")


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` through ``atomic_write``."""
    atomic_write(path, lambda f: torch.save(obj, f))


def save_generator(path: str | os.PathLike, G: Generator, *, D: Discriminator | None = None,
                   extras: dict | None = None) -> None:
    """Write ``G`` (and ``D``) in the project's format, atomically."""
    atomic_torch_save(generator_checkpoint(G, D=D, extras=extras), path)


def _config(cls, d, *, what: str):
    if not isinstance(d, dict):
        raise ModelFormatError(f"{what}: 'arch' must be a dict, got {type(d).__name__}")
    unknown = set(d) - set(cls.__dataclass_fields__)
    if unknown:
        raise ModelFormatError(f"{what}: unknown architecture fields {sorted(unknown)} (written by a newer "
                               "version of the editor?)")
    try:
        return cls.from_dict(d)
    except (TypeError, ValueError) as e:
        raise ModelFormatError(f"{what}: invalid architecture: {e}") from None


def _check_version(ckpt: dict, *, what: str) -> None:
    v = ckpt.get("format_version")
    if v != FORMAT_VERSION:
        raise ModelFormatError(f"{what}: format version {v!r} is not supported (this editor reads version "
                               f"{FORMAT_VERSION})")


def generator_from_own(ckpt: dict, *, what: str = "face-editor checkpoint") -> tuple[GeneratorConfig, dict]:
    _check_version(ckpt, what=what)
    return _config(GeneratorConfig, ckpt.get("arch"), what=what), ckpt.get("state_dict") or {}


def discriminator_from_own(ckpt: dict, *, what: str = "face-editor checkpoint"
                           ) -> tuple[DiscriminatorConfig, dict]:
    _check_version(ckpt, what=what)
    d = ckpt.get("discriminator")
    if not isinstance(d, dict):
        raise ModelFormatError(f"{what}: the file holds no discriminator")
    return _config(DiscriminatorConfig, d.get("arch"), what=what), d.get("state_dict") or {}
