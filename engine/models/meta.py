"""Modules built without initial values: made on the ``meta`` device, then given uninitialised storage.

PyTorch's own ``nn.utils.skip_init`` and ``Module.to_empty`` allocate through ``torch.empty_like`` of a meta tensor,
whose Python decomposition imports sympy on first use: 0.25-0.45 s of the editor's start-up on 2 cores, in the
worker while it loads the attribute estimator for the first face. ``Tensor.new_empty`` allocates the same
uninitialised storage without that import. The weights are then filled from an explicit seed or a file.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def materialise(module: M, *, device: torch.device | str = "cpu") -> M:
    """``module.to_empty(device=device)`` without sympy: every parameter and buffer (meta or not) replaced by
    uninitialised storage of its shape and dtype on ``device``. Returns ``module``."""
    return module._apply(lambda t: t.new_empty(t.shape, device=device))


def skip_init(module_cls: Callable[..., M], *args, **kwargs) -> M:
    """``module_cls(*args, **kwargs)`` with uninitialised parameters on the CPU (``nn.utils.skip_init`` without
    sympy): nothing is drawn from the global random state."""
    return materialise(module_cls(*args, **kwargs, device="meta"))


__all__ = ["materialise", "skip_init"]
