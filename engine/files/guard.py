"""Limits on what an untrusted model file may make the editor do, and the one wrapping that turns a loader's surprise
into a ``ModelFormatError``.

Every model file is read through ``engine.files.storage.read_model_file``, every architecture a file describes is
built through ``build_module``, and every public loader is wrapped by ``refuse_broken_files``:

* ``check_structure``: what a file unpickles to is walked once, shared objects once (a pickle's memo can make a
  300-byte file whose naive traversal visits 2^64 paths). The structure, unfolded as the converters will walk it
  (every path counted), may hold at most ``MAX_ITEMS`` containers and values, nest ``MAX_DEPTH`` deep and hold
  ``MAX_MODEL_BYTES`` of tensors, arrays and strings; it may not contain itself, nor tensors that are sparse,
  quantized, complex, without data, or over ``MAX_VIEW_BYTES`` while larger than their data (a stride-0 view:
  written out, one value could become gigabytes). Real files are far inside: a 1024 px NVIDIA-layout snapshot (G,
  G_ema) unfolds to some 6 000 items, 17 deep.
* ``build_module``: a module is first built dry: every tensor factory call (``torch.empty``, ``zeros``, ``randn``,
  …) is sized on the meta device, and only tensors up to ``DRY_TENSOR_BYTES`` are made (a 1024 px generator counts
  in about 10 ms). An architecture whose tensors pass ``MAX_MODEL_BYTES`` (8.6 GB, about 2.1 billion float32 values:
  17 times StyleGAN2's 1024 px generator and discriminator together) is refused with the figures before any of its
  memory is taken. A constructor that cannot be counted dry is built watched instead: nothing more is allocated
  once the limit is passed. A build also stops after ``MAX_BUILD_CALLS`` tensor operations (a 1024 px generator
  takes under 1 000).
* ``refuse_broken_files``: a loader's ``TypeError``, ``AttributeError``, ``KeyError`` … on a file it was given is
  the file's fault: it becomes a ``ModelFormatError`` naming the file, the original kept as ``__cause__`` and
  logged with its traceback to the log file (so a bug in the engine is still seen there).
"""
from __future__ import annotations

import functools
import logging
import math
import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.utils._device
from torch.overrides import TorchFunctionMode

from engine.errors import ModelFormatError, describe, plain_text

MAX_MODEL_BYTES = 8 << 30  # tensors one model file may hold, or one architecture may allocate
MAX_ITEMS = 1 << 21  # containers and values of a file's structure, unfolded (every path counted)
MAX_DEPTH = 100  # nesting of containers in a file
MAX_BUILD_CALLS = 200_000  # tensor operations building one module
MAX_VIEW_BYTES = 64 << 20  # a tensor larger than its data (a stride-0 view) may be at most this large
DRY_TENSOR_BYTES = 1 << 16  # tensors a dry build makes for real (a constructor may read them back)
FLOAT32 = 4

# what a loader raising one of these on a file says about the file, not about the engine
FILE_FAULTS = (AttributeError, TypeError, ValueError, RuntimeError, KeyError, IndexError, UnicodeError,
                OverflowError, RecursionError, EOFError, ArithmeticError, struct.error)
_BAD_DTYPES = (torch.complex32, torch.complex64, torch.complex128)


def format_bytes(n: int | float) -> str:
    """A byte count for people: '412 GB', '8.6 GB', '640 MB', '12 kB' (decimal units, as disks are sold)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.2g} {unit}" if value < 10 else \
                f"{value:.0f} {unit}"
    return f"{int(n)} bytes"


def _count(n: int) -> str:
    """A large number for people: '2.1 billion', '412 million', '12,345'."""
    for word, size in (("trillion", 1e12), ("billion", 1e9), ("million", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {word}"
    return f"{n:,}"


# ---- the structure a file unpickles to ---------------------------------------------------------------------------

def _children(obj) -> tuple:
    if isinstance(obj, dict):
        return (*obj.keys(), *obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return tuple(obj)
    if isinstance(obj, np.ndarray) and obj.dtype == object:
        return tuple(obj.ravel())
    if isinstance(obj, (torch.Tensor, np.ndarray, type, str, bytes, bytearray, int, float)):
        return ()
    state = getattr(obj, "__dict__", None)
    slots = getattr(type(obj), "__slots__", ())
    if isinstance(slots, str):
        slots = (slots,)
    values = tuple(state.values()) if isinstance(state, dict) else ()
    return values + tuple(getattr(obj, name) for name in slots if isinstance(name, str) and hasattr(obj, name))


def _leaf_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return 0 if obj.dtype == object else int(obj.nbytes)
    if isinstance(obj, (str, bytes, bytearray)):
        return len(obj)
    return 0


def _tensor_problem(t: torch.Tensor) -> str | None:
    if t.layout != torch.strided:
        return "a sparse tensor (model weights are dense)"
    if t.is_quantized:
        return "a quantized tensor (the editor reads float weights)"
    if t.dtype in _BAD_DTYPES:
        return "a tensor of complex numbers"
    if t.is_meta:
        return "a tensor without data"
    size = t.numel() * t.element_size()
    if size > MAX_VIEW_BYTES and size > t.untyped_storage().nbytes():
        return (f"a tensor of {format_bytes(size)} made from {format_bytes(t.untyped_storage().nbytes())} of data "
                "(one value repeated: the loader would write it all out)")
    return None


def check_structure(obj, *, what: str) -> None:
    """Refuse (``ModelFormatError`` starting with ``what``) a loaded file's content that unfolds beyond the limits
    (see the module docstring), contains itself, or holds tensors no model file holds. One pass, each shared
    object visited once: the work is proportional to the distinct objects, however many paths they form."""
    done: dict[int, tuple[int, int, int]] = {}  # id -> (items, depth, bytes), every path below it counted
    keep = []  # the objects whose ids are in ``done``, alive until the walk ends
    active: set[int] = set()
    stack = [(obj, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if key in done:
            continue
        kids = _children(node)
        if not expanded:
            if key in active:
                raise ModelFormatError(f"{what}: its content contains itself (a loop no model file has)")
            if isinstance(node, torch.Tensor) and (problem := _tensor_problem(node)):
                raise ModelFormatError(f"{what}: it holds {problem}")
            if kids:
                active.add(key)
                stack.append((node, True))
                for kid in kids:
                    kid_id = id(kid)
                    if kid_id in active:
                        raise ModelFormatError(f"{what}: its content contains itself (a loop no model file has)")
                    if kid_id not in done:
                        stack.append((kid, False))
                continue
        parts = [done[id(k)] for k in kids]
        items = 1 + sum(p[0] for p in parts)
        depth = 1 + max((p[1] for p in parts), default=0)
        size = _leaf_bytes(node) + sum(p[2] for p in parts)
        active.discard(key)
        if items > MAX_ITEMS:
            raise ModelFormatError(f"{what}: its content unfolds into more than {_count(MAX_ITEMS)} items (the same "
                                   "objects are referred to over and over: no model file is built so)")
        if depth > MAX_DEPTH:
            raise ModelFormatError(f"{what}: its content nests more than {MAX_DEPTH} levels deep (model files nest "
                                   "a few dozen)")
        if size > MAX_MODEL_BYTES:
            raise ModelFormatError(f"{what}: its tensors, counted as the loader reads them, take more than "
                                   f"{format_bytes(MAX_MODEL_BYTES)}, the most a model may take in the editor")
        done[key] = (items, depth, size)
        keep.append(node)


# ---- building an architecture ------------------------------------------------------------------------------------

class _OverBudget(Exception):
    """Raised inside a build that has done more than ``MAX_BUILD_CALLS`` tensor operations."""


_FACTORIES = frozenset(torch.utils._device._device_constructors())
_PROBE_DROPS = ("device", "generator", "out", "pin_memory")


_ELEMENTWISE = frozenset({"add", "sub", "mul", "div", "true_divide", "pow", "neg", "sqrt", "rsqrt", "abs", "exp",
                          "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
                          "__rtruediv__", "__pow__", "__rpow__", "__neg__"})


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast of ``shapes`` (``torch.broadcast_shapes`` imports sympy on first use); mismatches give the
    larger size (a dry build only counts)."""
    n = max(len(s) for s in shapes)
    padded = [(1,) * (n - len(s)) + s for s in shapes]
    return tuple(max(sizes) for sizes in zip(*padded))


def _without_data(func, args) -> torch.Tensor | None:
    """What an operation on a data-less tensor gives in a dry build, without running it (PyTorch's meta versions of
    some of them import its compiler, a second's wait): an in-place change keeps the tensor, arithmetic makes one of
    the broadcast shape; None for any other operation, or one without data-less operands."""
    metas = [a for a in args if isinstance(a, torch.Tensor) and a.is_meta]
    if not metas:
        return None
    name = getattr(func, "__name__", "")
    if name.endswith("_") and not name.endswith("__") and args[0] is metas[0]:
        return metas[0]
    if name in _ELEMENTWISE:
        shape = _broadcast(*(tuple(a.shape) for a in args if isinstance(a, torch.Tensor)))
        dtype = torch.result_type(*args[:2]) if len(args) > 1 else metas[0].dtype
        return torch.empty(shape, dtype=dtype, device="meta")
    return None


def _probe(func, args, kwargs) -> torch.Tensor:
    """The data-less tensor a factory call makes. Random tensors, ``arange`` and ``eye`` are sized by ``torch.empty``
    (their meta versions import PyTorch's compiler on first use, a second's wait)."""
    kw = {k: v for k, v in kwargs.items() if k not in _PROBE_DROPS}
    dtype = kw.get("dtype")
    if func in (torch.randn, torch.rand):
        size = kw.get("size", args)
        return torch.empty(*size, dtype=dtype, device="meta")
    if func is torch.arange:
        bounds = [*args, *(kw[k] for k in ("start", "end", "step") if k in kw)]
        start, end, step = (0, *bounds, 1)[-3:] if len(bounds) == 1 else (*bounds, 1)[:3]
        length = max(0, math.ceil((end - start) / step))
        exact = all(isinstance(b, int) for b in bounds)
        return torch.empty(length, dtype=dtype or (torch.int64 if exact else torch.get_default_dtype()), device="meta")
    if func is torch.eye:
        n, m = (*args, kw.get("m"))[:2]
        return torch.empty(n, n if m is None else m, dtype=dtype, device="meta")
    return func(*args, **kw, device="meta")


class _Budget(TorchFunctionMode):
    """Sizes every tensor factory call on the meta device first. A ``dry`` count makes only small tensors (up to
    ``DRY_TENSOR_BYTES``: filter taps, scalars a constructor reads back) and returns data-less meta tensors for the
    rest; otherwise tensors are allocated for real while the total stays under ``MAX_MODEL_BYTES``, meta ones after."""

    def __init__(self, *, dry: bool):
        super().__init__()
        self.dry = dry
        self.bytes = self.values = self.calls = 0
        self.over = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.calls += 1
        if self.calls > MAX_BUILD_CALLS:
            raise _OverBudget
        if func not in _FACTORIES:
            if self.dry and (shortcut := _without_data(func, args)) is not None:
                return shortcut
            return func(*args, **kwargs)
        try:
            probe = _probe(func, args, kwargs)
        except Exception:  # a call the meta device cannot size: made as asked (its size comes from the caller's data)
            return func(*args, **kwargs)
        if isinstance(probe, torch.Tensor):
            size = probe.numel() * probe.element_size()
            self.bytes += size
            self.values += probe.numel()
            self.over = self.over or self.bytes > MAX_MODEL_BYTES
            if self.over or (self.dry and size > DRY_TENSOR_BYTES):
                return probe
        return func(*args, **kwargs)


def _too_large(what: str, budget: _Budget, *, complete: bool) -> ModelFormatError:
    need = f"{format_bytes(budget.bytes)} ({_count(budget.values)} values)"
    return ModelFormatError(
        f"{what}: the architecture is too large to build: it would need {'' if complete else 'at least '}{need} of "
        f"memory, and the editor builds models of up to {format_bytes(MAX_MODEL_BYTES)} "
        f"({_count(MAX_MODEL_BYTES // FLOAT32)} float32 values)")


def _too_many_calls(what: str) -> ModelFormatError:
    return ModelFormatError(f"{what}: the architecture is too large to build: it takes more than "
                            f"{MAX_BUILD_CALLS:,} tensor operations (a 1024 px StyleGAN2 generator takes under 1,000)")


def _invalid(what: str, e: Exception) -> ModelFormatError:
    return ModelFormatError(f"{what}: invalid architecture: {plain_text(str(e), capital=False)}")


def _count_build(module_cls, cfg, kwargs) -> tuple[_Budget, bool]:
    """(budget, finished) of a dry build: what the architecture allocates, without the data of its large tensors.
    The global random state is left as it was. ``finished`` is False when the constructor needs data the dry build
    does not make (it then reads a large tensor back)."""
    budget = _Budget(dry=True)
    try:
        with torch.random.fork_rng(devices=[]), budget:
            module_cls(cfg, **kwargs)
    except _OverBudget:
        return budget, True
    except Exception:
        return budget, False
    return budget, True


def build_module(module_cls: Callable[..., torch.nn.Module], cfg, *, what: str, **kwargs) -> torch.nn.Module:
    """``module_cls(cfg, **kwargs)`` within the limits (see the module docstring); an architecture over them, or one
    its constructor refuses (``TypeError`` / ``ValueError``), is a ``ModelFormatError`` starting with ``what``.

    The architecture is first counted dry (large tensors without data), so one over the limits is refused before
    any of its memory is taken; only when the constructor cannot be counted dry is the real build watched."""
    dry, finished = _count_build(module_cls, cfg, kwargs)
    if dry.calls > MAX_BUILD_CALLS:
        raise _too_many_calls(what)
    if dry.over:
        raise _too_large(what, dry, complete=finished)
    if finished:
        try:
            return module_cls(cfg, **kwargs)
        except ModelFormatError:
            raise
        except (TypeError, ValueError, ArithmeticError) as e:
            raise _invalid(what, e) from None
    budget = _Budget(dry=False)
    try:
        with budget:
            module = module_cls(cfg, **kwargs)
    except _OverBudget:
        raise (_too_large(what, budget, complete=False) if budget.over else _too_many_calls(what)) from None
    except ModelFormatError:
        raise
    except Exception as e:
        if budget.over:
            raise _too_large(what, budget, complete=False) from None
        if isinstance(e, (TypeError, ValueError, ArithmeticError)):
            raise _invalid(what, e) from None
        raise
    if budget.over:
        raise _too_large(what, budget, complete=True)
    return module


# ---- the loaders' one wrapping -----------------------------------------------------------------------------------

def _name_of(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name or str(source)
    return f"the {describe(source).removeprefix('a ').removeprefix('an ')} given"


def refuse_broken_files(load: Callable) -> Callable:
    """Wrap a public loader ``load(source, ...)``: its ``ModelFormatError`` (and the engine's other errors) passes
    unchanged; a ``TypeError``, ``AttributeError``, ``KeyError`` … (``FILE_FAULTS``) raised while reading a file
    becomes a ``ModelFormatError`` naming the file, the original as ``__cause__`` and logged (WARNING, with its
    traceback); a ``MemoryError`` one saying the file needs more memory than is available."""
    log = logging.getLogger(load.__module__)

    @functools.wraps(load)
    def loader(source, *args, **kwargs):
        try:
            return load(source, *args, **kwargs)
        except ModelFormatError:
            raise
        except MemoryError:
            raise ModelFormatError(f"{_name_of(source)} cannot be loaded: it needs more memory than is "
                                   "available") from None
        except FILE_FAULTS as e:
            if type(e).__module__.startswith("engine."):  # the engine's own refusals (a precision, a device, ...)
                raise
            name = _name_of(source)
            log.warning("%s: %s refused the file on an unexpected %s", name, load.__name__, type(e).__name__,
                        exc_info=e, extra={"stderr": False})  # for the log file: the refusal itself is shown
            raise ModelFormatError(f"{name} cannot be loaded: its content is damaged or not laid out as this kind "
                                   "of model file is (the details are in the log)") from e

    return loader


__all__ = ["MAX_MODEL_BYTES", "MAX_ITEMS", "MAX_DEPTH", "MAX_BUILD_CALLS", "check_structure", "build_module",
           "refuse_broken_files", "format_bytes", "FILE_FAULTS"]
