"""Helpers shared by the checkpoint converters: key tables, constant-filter checks, strict reports."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import torch

from engine.errors import ModelFormatError

STANDARD_TAPS = (1, 3, 3, 1)

KeyRule = tuple[str, Callable[[re.Match], str | None], Callable[[torch.Tensor], torch.Tensor]]


def identity(t: torch.Tensor) -> torch.Tensor:
    return t


def apply_key_table(sd: dict, rules: list[KeyRule], *, what: str) -> tuple[dict, list[str]]:
    """Map every key of ``sd`` through the first matching ``(regex, new_name, transform)`` rule.

    A rule whose ``new_name`` returns None consumes the key without output (a constant buffer that is
    recomputed). Returns the new dict and the consumed constant keys. Unknown keys raise ModelFormatError.
    """
    out: dict[str, torch.Tensor] = {}
    constants: list[str] = []
    unknown: list[str] = []
    compiled = [(re.compile(p), name, fn) for p, name, fn in rules]
    for key, value in sd.items():
        for pattern, name, fn in compiled:
            m = pattern.fullmatch(key)
            if m:
                new = name(m)
                if new is None:
                    constants.append(key)
                else:
                    out[new] = fn(value)
                break
        else:
            unknown.append(key)
    if unknown:
        raise ModelFormatError(f"{what}: unexpected keys {short_list(unknown)}; this is not a layout the editor knows")
    return out, constants


def short_list(items: Iterable[str], n: int = 5) -> str:
    items = list(items)
    head = ", ".join(repr(i) for i in items[:n])
    return head + (f" and {len(items) - n} more" if len(items) > n else "")


def taps_from_2d(kernel: torch.Tensor, *, what: str) -> tuple[float, ...]:
    """Recover the 1-D taps of a stored separable 2-D FIR kernel (any overall scale)."""
    k = kernel.detach().to(torch.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or float(k.sum()) == 0.0:
        raise ModelFormatError(f"{what}: resampling kernel of shape {tuple(k.shape)} is not a square FIR filter")
    t = k.sum(dim=1) / k.sum()
    if not torch.allclose(torch.outer(t, t) * k.sum(), k, rtol=1e-5, atol=1e-7):
        raise ModelFormatError(f"{what}: resampling kernel is not separable; the editor cannot rebuild it")
    std = torch.tensor(STANDARD_TAPS, dtype=torch.float64)
    if t.numel() == std.numel() and torch.allclose(t, std / std.sum(), atol=1e-6):
        return STANDARD_TAPS
    return tuple(float(x) for x in t)


def check_same_filters(kernels: dict[str, torch.Tensor], *, what: str) -> tuple[float, ...]:
    """All stored resampling kernels must describe one filter; return its taps (standard if none stored)."""
    taps = None
    for key, k in kernels.items():
        t = taps_from_2d(k, what=f"{what} ({key})")
        if taps is not None and t != taps:
            raise ModelFormatError(f"{what}: resampling filters differ between layers ({key}); unsupported")
        taps = t
    return taps if taps is not None else STANDARD_TAPS


def require(cond: bool, message: str) -> None:
    if not cond:
        raise ModelFormatError(message)
