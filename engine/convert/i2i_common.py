"""Helpers shared by the image-to-image converters (BicycleGAN, TUNIT): reading a source, ``module.`` prefixes,
checked tensors and configs inferred from weights (with overrides), building a network and loading its weights
strictly, the project's multi-network format."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from engine.convert.common import short_list
from engine.errors import ModelFormatError
from engine.files.checkpoints import arch_config
from engine.files.guard import build_module
from engine.files.storage import read_model_file

STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def read_source(source, *, what: str):
    """``(content, label)`` of a path (read with ``weights_only``) or an already-loaded object."""
    if isinstance(source, (str, os.PathLike)):
        kind, obj = read_model_file(source)
        if kind != "torch":
            raise ModelFormatError(f"{Path(source).name}: a pickle, not a {what} file (expected a torch.save file)")
        return obj, str(Path(source).name)
    return source, what


def is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) for k in obj)


def strip_module_prefix(sd: dict, *, what: str) -> dict:
    """Remove the ``module.`` prefix (DataParallel) when the keys carry it; all of them must then."""
    if not any(k.startswith("module.") for k in sd):
        return dict(sd)
    if not all(k.startswith("module.") for k in sd):
        raise ModelFormatError(f"{what}: only some keys carry the 'module.' prefix "
                               f"(e.g. {short_list([k for k in sd if not k.startswith('module.')], 3)})")
    return {k[len("module."):]: v for k, v in sd.items()}


def drop_instance_norm_stats(model: nn.Module, sd: dict) -> tuple[dict, list[str]]:
    """Remove running statistics that old PyTorch versions saved for InstanceNorm layers (which have none now)."""
    modules = dict(model.named_modules())
    kept, dropped = {}, []
    for k, v in sd.items():
        path, _, leaf = k.rpartition(".")
        if leaf in STAT_SUFFIXES and isinstance(modules.get(path), nn.InstanceNorm2d):
            dropped.append(k)
        else:
            kept[k] = v
    return kept, dropped


def tensor_at(sd: dict, key: str, ndim: int, *, what: str) -> torch.Tensor:
    """``sd[key]``, which must be an ``ndim``-d tensor (else ``ModelFormatError`` saying what is there instead)."""
    t = sd.get(key)
    if not isinstance(t, torch.Tensor) or t.ndim != ndim:
        found = None if t is None else (tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__)
        raise ModelFormatError(f"{what}: expected a {ndim}-d tensor at {key!r}, found {found}")
    return t


def build_config(cls, inferred: dict, arch: dict, *, what: str):
    """``cls`` (a config dataclass) from the fields inferred from the weights, ``arch`` overriding them; unknown
    override names and invalid values raise ``ModelFormatError``."""
    if unknown := sorted(set(arch) - set(cls.__dataclass_fields__)):
        raise ModelFormatError(f"{what}: unknown architecture arguments {unknown} (known: "
                               f"{list(cls.__dataclass_fields__)})")
    try:
        return cls(**{**inferred, **arch})
    except (TypeError, ValueError) as e:
        raise ModelFormatError(f"{what}: cannot build the architecture: {e}") from None


def build_strict(cls, cfg, sd: dict, *, what: str) -> nn.Module:
    """``cls(cfg)`` with every tensor of ``sd``: refuses missing, unexpected and mis-shaped keys (naming them)."""
    model = build_module(cls, cfg, what=what, seed=None)
    sd, _ = drop_instance_norm_stats(model, sd)
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    bad = [k for k in sd if k in expected and not isinstance(sd[k], torch.Tensor)]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {tuple(expected[k].shape)})" for k in expected
             if k in sd and isinstance(sd[k], torch.Tensor) and tuple(sd[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or bad or wrong:
        parts = [f"{label} {short_list(keys)}" for label, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("non-tensor values", bad),
                  ("wrong shapes", wrong)) if keys]
        raise ModelFormatError(f"{what}: the weights do not match the architecture {cfg}: " + "; ".join(parts))
    model.load_state_dict(sd)
    return model.eval()


def read_own_networks(obj: dict, *, fmt: str, version: int, kinds: dict, what: str) -> dict[str, nn.Module]:
    """Networks of a project-format file ``{"format", "format_version", "networks": {name: {"arch",
    "state_dict"}}}``; ``kinds`` maps a name to ``(module class, config class)``."""
    if obj.get("format_version") != version:
        raise ModelFormatError(f"{what}: {fmt} format version {obj.get('format_version')!r} is not supported "
                               f"(this editor reads version {version})")
    nets = obj.get("networks")
    if not isinstance(nets, dict) or not nets:
        raise ModelFormatError(f"{what}: 'networks' is missing or empty")
    out = {}
    for name, entry in nets.items():
        if name not in kinds:
            raise ModelFormatError(f"{what}: unknown network {name!r} (expected some of {list(kinds)})")
        cls, cfg_cls = kinds[name]
        arch = entry.get("arch") if isinstance(entry, dict) else None
        if not isinstance(arch, dict) or not is_state_dict(entry.get("state_dict")):
            raise ModelFormatError(f"{what}: network {name!r} needs an 'arch' dict and a 'state_dict'")
        cfg = arch_config(cfg_cls, arch, what=f"{what} ({name})")
        out[name] = build_strict(cls, cfg, entry["state_dict"], what=f"{what} ({name})")
    return out
