"""The project's own checkpoint format: the architecture config saved with the weights.

Layout (a ``torch.save`` of plain containers, loadable with ``weights_only=True``)::

    {"format": "face-editor/stylegan2", "format_version": 1,
     "arch": GeneratorConfig as a dict, "state_dict": {...},          # includes mapping.w_avg
     "discriminator": {"arch": ..., "state_dict": ...} or absent,
     "extras": {...}}                                                   # free-form metadata (strings, numbers)
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from engine.errors import ModelFormatError, describe
from engine.files.configs import from_dict
from engine.files.guard import build_module, refuse_broken_files
from engine.files.storage import atomic_write, read_model_file
from engine.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

FORMAT = "face-editor/stylegan2"
FORMAT_VERSION = 1


def module_state(module: torch.nn.Module, *, weights_dtype: torch.dtype | None = None) -> dict:
    """CPU copies of ``module``'s state dict; with ``weights_dtype``, the parameters in that dtype and the buffers in
    float32 (otherwise every tensor keeps its dtype)."""
    if weights_dtype is None:
        return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}
    weights = {k for k, _ in module.named_parameters()}
    return {k: v.detach().to("cpu", weights_dtype if k in weights else torch.float32).contiguous().clone()
            for k, v in module.state_dict().items()}


def module_checkpoint(module: torch.nn.Module, *, fmt: str, version: int, meta_key: str = "extras",
                      meta: dict | None = None, weights_dtype: torch.dtype | None = None) -> dict:
    """The project-format dict of a small model with a ``cfg`` (``to_dict``): format id and version, architecture,
    CPU state dict (see ``module_state``) and free-form metadata under ``meta_key``."""
    return {"format": fmt, "format_version": version, "arch": module.cfg.to_dict(),
            "state_dict": module_state(module, weights_dtype=weights_dtype), meta_key: dict(meta or {})}


def read_checkpoint_source(source, *, noun: str, dict_what: str) -> tuple[object, str]:
    """``(content, what)`` of a model path or an already-loaded dict; ``what`` names it in messages (the path, or
    ``dict_what``). Paths go through ``storage.read_model_file``, and only ``torch.save`` files (read with
    ``weights_only=True``) are accepted. ``noun`` ("an encoder") names the expected model."""
    if isinstance(source, dict):
        return source, dict_what
    if not isinstance(source, (str, os.PathLike)):
        raise ModelFormatError(f"not {noun}: expected a file path or a checkpoint dict, got {describe(source)}")
    what = str(source)
    kind, obj = read_model_file(source)
    if kind != "torch":
        raise ModelFormatError(f"{what}: not {noun} (a {kind} file)")
    return obj, what


def arch_config(config_cls, arch, *, what: str):
    """``config_cls`` (a config dataclass) from a file's ``arch`` dictionary (``engine.files.configs.from_dict``:
    unknown or missing fields, wrong types and the config's own checks refused); every problem is a
    ``ModelFormatError`` that starts with ``what`` (the file) and 'invalid architecture'."""
    return from_dict(config_cls, arch, what=f"{what}: invalid architecture", error=ModelFormatError)


def build_from_checkpoint(ckpt, *, what: str, fmt: str, version: int, noun: str, label: str, config_cls,
                          module_cls, state_dtypes: tuple[torch.dtype, ...] | None = None):
    """Check a project-format dict (format ``fmt`` of ``version``), build ``module_cls`` from its config
    (``arch_config``) and load its weights strictly; every problem is a ``ModelFormatError`` prefixed by ``what``.
    ``noun`` ("an encoder") and ``label`` ("encoder") name the model in messages. With ``state_dtypes``, every tensor
    of the state dict must have one of them and is loaded as float32. Weights that are NaN or infinite anywhere are
    refused. Returns the module (in training mode)."""
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        found = ckpt.get("format") if isinstance(ckpt, dict) else describe(ckpt)
        raise ModelFormatError(f"{what}: not {noun} (format {found!r}, expected {fmt!r})")
    if ckpt.get("format_version") != version:
        raise ModelFormatError(f"{what}: {label} format version {ckpt.get('format_version')!r} is not supported "
                               f"(this editor reads version {version})")
    cfg = arch_config(config_cls, ckpt.get("arch"), what=what)
    module = build_module(module_cls, cfg, what=what)
    state = ckpt.get("state_dict")
    if state_dtypes is None:
        if not isinstance(state, dict):
            raise ModelFormatError(f"{what}: 'state_dict' is missing")
    else:
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) and v.dtype in state_dtypes
                                                  for v in state.values()):
            names = " / ".join(str(d).removeprefix("torch.") for d in state_dtypes)
            raise ModelFormatError(f"{what}: 'state_dict' is missing or holds something other than {names} tensors")
        state = {k: v.to(torch.float32) for k, v in state.items()}
    if any(isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
           for v in state.values()):
        raise ModelFormatError(f"{what}: the weights hold non-finite values (NaN or infinity)")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise ModelFormatError(f"{what}: weights do not match the architecture: {e}") from None
    return module


@refuse_broken_files
def load_module(source, *, fmt: str, version: int, noun: str, label: str, config_cls, module_cls,
                meta_key: str = "extras", state_dtypes: tuple[torch.dtype, ...] | None = None,
                check: Callable[[torch.nn.Module], str | None] | None = None):
    """A small model (in eval mode) from a project-format file or dict (``module_checkpoint``'s layout):
    ``read_checkpoint_source`` then ``build_from_checkpoint``, its metadata under ``meta_key`` (a dictionary, or
    absent) kept as the module's attribute of that name. ``noun`` ("an encoder") and ``label`` ("encoder") name the
    model in messages; ``check(module)`` may name one more problem of the loaded model. Every problem is a
    ``ModelFormatError``."""
    ckpt, what = read_checkpoint_source(source, noun=noun, dict_what=f"{label} dict")
    module = build_from_checkpoint(ckpt, what=what, fmt=fmt, version=version, noun=noun, label=label,
                                   config_cls=config_cls, module_cls=module_cls, state_dtypes=state_dtypes)
    if check is not None and (problem := check(module)):
        raise ModelFormatError(f"{what}: {problem}")
    meta = ckpt.get(meta_key)
    if meta is not None and not isinstance(meta, dict):
        raise ModelFormatError(f"{what}: '{meta_key}' must be a dictionary, got {describe(meta)}")
    setattr(module, meta_key, dict(meta or {}))
    return module.eval()


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


def resume_path(resume: str | None, out: str | os.PathLike, *, name: str,
                what: str = "training checkpoint") -> Path | None:
    """The checkpoint ``--resume`` names: None (fresh run), ``auto`` (``out/name`` if it exists) or a path."""
    if resume is None:
        return None
    if resume == "auto":
        path = Path(out) / name
        return path if path.exists() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no {what} at {path}")
    return path


def read_training_state(path: str | os.PathLike, *, fmt: str, version: int, what: str, wrong: str) -> dict:
    """Load a trainer's checkpoint (weights only, on the CPU) and check its format and version.

    ``what`` names it in messages ("training checkpoint"); ``wrong`` is the message for a file of another kind."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    kind, state = read_model_file(path)  # an unreadable file is a ModelFormatError saying why
    check_training_state(state if kind == "torch" else None, fmt=fmt, version=version, what=what, wrong=wrong)
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


def _check_version(ckpt: dict, *, what: str) -> None:
    v = ckpt.get("format_version")
    if v != FORMAT_VERSION:
        raise ModelFormatError(f"{what}: format version {v!r} is not supported (this editor reads version "
                               f"{FORMAT_VERSION})")


def _weights_of(entry: dict):
    """An entry's ``state_dict`` as stored (the loader names what it is when it is no dictionary), ``{}`` if absent."""
    sd = entry.get("state_dict")
    return {} if sd is None else sd


def generator_from_own(ckpt: dict, *, what: str = "face-editor checkpoint") -> tuple[GeneratorConfig, dict]:
    _check_version(ckpt, what=what)
    return arch_config(GeneratorConfig, ckpt.get("arch"), what=what), _weights_of(ckpt)


def discriminator_from_own(ckpt: dict, *, what: str = "face-editor checkpoint"
                           ) -> tuple[DiscriminatorConfig, dict]:
    _check_version(ckpt, what=what)
    d = ckpt.get("discriminator")
    if not isinstance(d, dict):
        raise ModelFormatError(f"{what}: the file holds no discriminator")
    return arch_config(DiscriminatorConfig, d.get("arch"), what=what), _weights_of(d)
