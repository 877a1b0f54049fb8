"""Compute devices: which ones this machine can open, and a checked choice from a user's name for one.

Every entry point (the editor's worker, the command line, the trainers) goes through ``resolve_device``, so a name
torch cannot parse (``cdua``), a device type this build lacks, or a CUDA/MPS device on a machine without one is
refused at once with one sentence that names the device and the valid choices, instead of failing later (or
hanging a thread that never reports ready). Nothing here runs at import.
"""
from __future__ import annotations

import torch

from engine.errors import DeviceError

KINDS = ("cpu", "cuda", "mps")  # the device types the engine runs on


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def device_choices() -> list[str]:
    """The names this machine accepts, e.g. ``['auto', 'cpu', 'cuda', 'cuda:0', 'cuda:1']``."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        names += ["cuda"] + [f"cuda:{i}" for i in range(count)]
    if _mps_available():
        names.append("mps")
    return names


def _refuse(name: str, why: str) -> DeviceError:
    return DeviceError(f"The device {name!r} {why}. Choose one of: {', '.join(device_choices())}.")


def resolve_device(name: str | None = "auto", *, kinds: tuple[str, ...] = KINDS) -> torch.device:
    """``auto`` (or None/empty) -> CUDA, then Apple MPS, then the CPU; any other name is checked: it must parse,
    be one of ``kinds`` and exist on this machine. Raises ``DeviceError`` (a ``ValueError``) otherwise."""
    text = (name or "auto").strip()
    if text == "auto":
        if "cuda" in kinds and torch.cuda.is_available():
            return torch.device("cuda")
        if "mps" in kinds and _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise _refuse(text, "is not a device name torch knows") from None
    if dev.type not in kinds:
        raise _refuse(text, f"is a {dev.type} device, which this program does not run on")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise _refuse(text, "needs a CUDA GPU, and this machine (or this build of torch) has none")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise _refuse(text, f"does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if dev.type == "mps" and not _mps_available():
        raise _refuse(text, "needs Apple's Metal (MPS), which this machine does not have")
    return dev
