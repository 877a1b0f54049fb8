"""What every command shares: the user-error type, the device and thread options, and closing progress bars."""
from __future__ import annotations

import torch

from engine.devices import resolve_device
from engine.runtime import set_threads


class UserError(Exception):
    """A problem with the command's input, reported as one line."""


def setup_compute(args) -> torch.device:
    """The device a command asked for (``--device``, checked: ``DeviceError`` names the choices) and its CPU thread
    count (``--threads``, when it has one; below 1 is refused)."""
    device = resolve_device(args.device)
    set_threads(getattr(args, "threads", None))
    return device


def end_progress_bars() -> None:
    """Close every open tqdm bar, so that what is printed next starts its own line (a bar left mid-line would
    have the ``error:`` line appended to it)."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
