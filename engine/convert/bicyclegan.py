"""Loaders for BicycleGAN files: the released ``latest_net_G.pth`` / ``latest_net_E.pth`` (and trainers'
``latest_net_D.pth`` / ``latest_net_D2.pth``), plain state dicts, and the project's own ``face-editor/bicyclegan``
format.

A released file is a bare ``state_dict()``; the architecture is inferred from its keys and shapes (BICYCLEGAN_FACTS
§1, §3): U-Net depth, widths, code size, where z is added, up-sampling kind; encoder kind, depth and widths;
discriminator scales, depth and widths; batch norm from its parameters. What the weights cannot tell is taken from
keyword overrides (any config field), else the reference's defaults: G's ``norm`` (instance and none leave the same
keys; default instance), ``nl`` (relu) and ``use_dropout`` (off; it only acts in train mode); for the input-only
U-Net, whose first conv mixes image and code channels, ``nz`` or ``input_nc`` must be given. DataParallel
``module.`` prefixes and the InstanceNorm running statistics of old PyTorch versions are removed; every other
mismatch raises ``ModelFormatError`` naming the keys.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelFormatError
from ..models.bicyclegan import (
    FORMAT,
    FORMAT_VERSION,
    KINDS,
    DiscriminatorConfig,
    Encoder,
    EncoderConfig,
    GeneratorConfig,
    MultiscaleDiscriminator,
    UnetGenerator,
)
from .common import short_list
from .i2i_common import (
    build_config,
    build_strict,
    is_state_dict,
    read_own_networks,
    read_source,
    strip_module_prefix,
    tensor_at,
)

RELEASED_FILES = {"G": "latest_net_G.pth", "E": "latest_net_E.pth", "D": "latest_net_D.pth",
                  "D2": "latest_net_D2.pth"}


def _has_params(sd: dict, prefix: str) -> bool:
    """Whether a norm at ``prefix`` holds affine parameters (batch norm)."""
    return f"{prefix}.weight" in sd and sd[f"{prefix}.weight"].ndim == 1


def _norm_at(sd: dict, prefixes: list[str], *, present: bool | None) -> str:
    """The norm kind from the keys at the positions a norm would take. ``present``: whether the layout shows a
    norm module there (True/False), or None when instance norm and no norm leave the same keys."""
    if any(_has_params(sd, p) for p in prefixes):
        return "batch"
    if present is False:
        return "none"
    return "instance"


def generator_config(sd: dict, *, what: str = "BicycleGAN generator", **arch) -> GeneratorConfig:
    """Infer a ``GeneratorConfig`` from a G state dict (``module.`` already removed); ``arch`` overrides fields."""
    if "model.down.0.weight" in sd:
        return build_config(GeneratorConfig, _infer_unet_all(sd, what=what), arch, what=what)
    if "model.model.0.weight" in sd:
        return build_config(GeneratorConfig, _infer_unet_input(sd, what=what, arch=arch), arch, what=what)
    raise ModelFormatError(f"{what}: not a BicycleGAN U-Net generator (no 'model.down.0.weight' or "
                           f"'model.model.0.weight'; keys start {short_list(sd, 4)})")


def _infer_unet_all(sd: dict, *, what: str) -> dict:
    levels = 0
    while f"model.{'submodule.' * levels}down.{0 if levels == 0 else 1}.weight" in sd:
        levels += 1
    first = tensor_at(sd, "model.down.0.weight", 4, what=what)
    ngf = first.shape[0]
    if levels < 2:
        raise ModelFormatError(f"{what}: only {levels} U-Net level(s) found")
    nz = tensor_at(sd, "model.submodule.down.1.weight", 4, what=what).shape[1] - ngf
    if "model.up.1.weight" in sd:
        upsample, output_nc = "basic", tensor_at(sd, "model.up.1.weight", 4, what=what).shape[1]
    elif "model.up.3.weight" in sd:
        upsample, output_nc = "bilinear", tensor_at(sd, "model.up.3.weight", 4, what=what).shape[0]
    else:
        raise ModelFormatError(f"{what}: no outermost up-convolution ('model.up.1.weight' or 'model.up.3.weight')")
    norm_pos = 2 if upsample == "basic" else 4
    prefixes = []
    for k in range(1, levels):
        p = f"model.{'submodule.' * k}"
        prefixes += [f"{p}down.2", f"{p}up.{norm_pos}"]
    return dict(input_nc=first.shape[1] - nz, output_nc=output_nc, nz=nz, ngf=ngf, num_downs=levels,
                norm=_norm_at(sd, prefixes, present=None), upsample=upsample, where_add="all")


def _infer_unet_input(sd: dict, *, what: str, arch: dict) -> dict:
    first = tensor_at(sd, "model.model.0.weight", 4, what=what)
    ngf, in_ch = first.shape[0], first.shape[1]
    # level prefixes: outermost "model.model.", its submodule at index 1; deeper blocks hold it at 3 (with a
    # norm module after the down-conv) or 2 (without)
    prefix, levels, sub_index, norm_prefixes, present = "model.model.", 1, 1, [], None
    while any(k.startswith(f"{prefix}{sub_index}.model.") for k in sd):
        prefix = f"{prefix}{sub_index}.model."
        levels += 1
        if any(k.startswith(f"{prefix}3.model.") for k in sd):
            sub_index, present = 3, True
            norm_prefixes.append(f"{prefix}2")
        elif any(k.startswith(f"{prefix}2.model.") for k in sd):
            sub_index, present = 2, False
        else:
            break  # innermost: [lrelu, conv, nl, up..., norm]
    if "model.model.3.weight" in sd:
        upsample, output_nc = "basic", tensor_at(sd, "model.model.3.weight", 4, what=what).shape[1]
    elif "model.model.5.weight" in sd:
        upsample, output_nc = "bilinear", tensor_at(sd, "model.model.5.weight", 4, what=what).shape[0]
    else:
        raise ModelFormatError(f"{what}: no outermost up-convolution ('model.model.3.weight' or "
                               "'model.model.5.weight')")
    if "nz" in arch:
        nz = int(arch["nz"])
    elif "input_nc" in arch:
        nz = in_ch - int(arch["input_nc"])
    else:
        raise ModelFormatError(f"{what}: a z-to-input U-Net's first conv takes input_nc + nz = {in_ch} channels, "
                               "which the weights cannot split: pass nz= (the encoder's code size) or input_nc=")
    return dict(input_nc=in_ch - nz, output_nc=output_nc, nz=nz, ngf=ngf, num_downs=levels,
                norm=_norm_at(sd, norm_prefixes, present=present), upsample=upsample, where_add="input")


def encoder_config(sd: dict, *, what: str = "BicycleGAN encoder", **arch) -> EncoderConfig:
    """Infer an ``EncoderConfig`` from an E state dict; ``arch`` overrides fields."""
    fc = tensor_at(sd, "fc.0.weight", 2, what=what)
    first = tensor_at(sd, "conv.0.weight", 4, what=what)
    inferred = dict(input_nc=first.shape[1], nz=fc.shape[0], nef=first.shape[0], vae_like="fcVar.0.weight" in sd)
    if any(k.startswith("conv.1.conv.") for k in sd):
        blocks = 0
        while f"conv.{blocks + 1}.shortcut.1.weight" in sd:
            blocks += 1
        if "conv.1.conv.1.weight" in sd:
            norm = "none"
        else:
            norm = _norm_at(sd, ["conv.1.conv.0", "conv.1.conv.3"], present=True)
        inferred.update(kind="resnet", n_layers=blocks + 1, norm=norm)
    else:
        convs = sorted(int(m.group(1)) for k, v in sd.items()
                       if (m := re.fullmatch(r"conv\.(\d+)\.weight", k)) and v.ndim == 4)
        present = None if len(convs) < 3 else convs[2] - convs[1] == 3
        norm = _norm_at(sd, [f"conv.{i + 1}" for i in convs[1:]], present=present)
        inferred.update(kind="conv", n_layers=len(convs), norm=norm)
    return build_config(EncoderConfig, inferred, arch, what=what)


def discriminator_config(sd: dict, *, what: str = "BicycleGAN discriminator", **arch) -> DiscriminatorConfig:
    """Infer a ``DiscriminatorConfig`` from a D state dict; ``arch`` overrides fields."""
    scales = sorted({int(m.group(1)) for k in sd if (m := re.match(r"model_(\d+)\.", k))})
    if scales:
        if scales != list(range(len(scales))) or len(scales) < 2:
            raise ModelFormatError(f"{what}: discriminator scales {scales} are not model_0 ... model_N (N >= 1)")
        prefixes = [f"model_{i}." for i in scales]
    elif any(re.match(r"model\.\d+\.", k) for k in sd):
        prefixes = ["model."]
    else:
        raise ModelFormatError(f"{what}: not a BicycleGAN discriminator (no 'model_0.*' or 'model.*' keys)")
    ndf, layers, norms = [], set(), set()
    for p in prefixes:
        convs = sorted(int(m.group(1)) for k, v in sd.items()
                       if (m := re.fullmatch(re.escape(p) + r"(\d+)\.weight", k)) and v.ndim == 4)
        if len(convs) < 3:
            raise ModelFormatError(f"{what}: scale {p[:-1]!r} has {len(convs)} convolutions (at least 3 expected)")
        ndf.append(sd[f"{p}{convs[0]}.weight"].shape[0])
        layers.add(len(convs) - 2)
        norms.add(_norm_at(sd, [f"{p}{i + 1}" for i in convs[1:-1]], present=convs[2] - convs[1] == 3))
    if len(layers) != 1 or len(norms) != 1:
        raise ModelFormatError(f"{what}: the scales differ in depth {sorted(layers)} or norm {sorted(norms)}")
    first = tensor_at(sd, f"{prefixes[0]}0.weight", 4, what=what)
    inferred = dict(input_nc=first.shape[1], ndf=tuple(ndf), n_layers=layers.pop(), norm=norms.pop())
    return build_config(DiscriminatorConfig, inferred, arch, what=what)


def _state_dict(obj, *, what: str) -> dict:
    if not is_state_dict(obj) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = f"a dict with keys {short_list(obj, 4)}" if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise ModelFormatError(f"{what}: expected a state dict of tensors (a latest_net_*.pth file), found {found}")
    return strip_module_prefix(obj, what=what)


def _own(obj) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def _load_one(source, name: str, arch: dict):
    obj, what = read_source(source, what=f"BicycleGAN {name}")
    if _own(obj):
        nets = read_own_networks(obj, fmt=FORMAT, version=FORMAT_VERSION, kinds=KINDS, what=what)
        if name not in nets:
            raise ModelFormatError(f"{what}: the file holds no {name} (it has {sorted(nets)})")
        return nets[name]
    sd = _state_dict(obj, what=what)
    infer = {"G": generator_config, "E": encoder_config, "D": discriminator_config, "D2": discriminator_config}
    cfg = infer[name](sd, what=what, **arch)
    return build_strict(KINDS[name][0], cfg, sd, what=what)


def load_bicyclegan_generator(source, **arch) -> UnetGenerator:
    """G (eval mode) from ``latest_net_G.pth``, a G state dict, or a project-format file/dict; ``arch`` fixes
    config fields the weights cannot tell (``norm``, ``nl``, ``use_dropout``; ``nz`` for an input-only U-Net)."""
    return _load_one(source, "G", arch)


def load_bicyclegan_encoder(source, **arch) -> Encoder:
    """E (eval mode) from ``latest_net_E.pth``, an E state dict, or a project-format file/dict."""
    return _load_one(source, "E", arch)


def load_bicyclegan_discriminator(source, *, name: str = "D", **arch) -> MultiscaleDiscriminator:
    """D or D2 (eval mode) from ``latest_net_D.pth`` / ``latest_net_D2.pth``, a state dict, or a project file."""
    if name not in ("D", "D2"):
        raise ValueError(f"name must be 'D' or 'D2', got {name!r}")
    return _load_one(source, name, arch)


def load_bicyclegan(source, **g_arch) -> dict[str, nn.Module]:
    """Every network of a BicycleGAN model: a folder with the released ``latest_net_G.pth`` / ``latest_net_E.pth``
    (and ``latest_net_D.pth`` / ``latest_net_D2.pth`` when present), a project-format file, or a dict of state
    dicts ``{"G": ..., "E": ...}``. Returns ``{"G", "E", ...}`` in eval mode; G and E must agree on the code size
    and E must read G's output channels. ``g_arch`` overrides G's config (see ``load_bicyclegan_generator``)."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        folder = Path(source)
        files = {n: folder / f for n, f in RELEASED_FILES.items() if (folder / f).is_file()}
        if "G" not in files:
            raise ModelFormatError(f"{folder}: no {RELEASED_FILES['G']} in this folder")
        parts = {n: read_source(p, what=f"BicycleGAN {n}")[0] for n, p in files.items()}
    else:
        obj, what = read_source(source, what="BicycleGAN model")
        if _own(obj):
            nets = read_own_networks(obj, fmt=FORMAT, version=FORMAT_VERSION, kinds=KINDS, what=what)
            _check_pair(nets, what=what)
            return nets
        if not isinstance(obj, dict) or "G" not in obj or not set(obj) <= set(KINDS):
            raise ModelFormatError(f"{what}: expected a folder, a project file or a dict of state dicts with keys "
                                   f"among {list(KINDS)} including 'G'")
        parts = obj
    nets = {}
    if "E" in parts:
        nets["E"] = _load_one(parts["E"], "E", {})
        input_only = "model.model.0.weight" in strip_module_prefix(_state_dict(parts["G"], what="G"), what="G")
        if input_only and "nz" not in g_arch and "input_nc" not in g_arch:
            g_arch = {"nz": nets["E"].cfg.nz, **g_arch}
    nets["G"] = _load_one(parts["G"], "G", g_arch)
    for name in ("D", "D2"):
        if name in parts:
            nets[name] = _load_one(parts[name], name, {})
    _check_pair(nets, what=str(source) if isinstance(source, (str, os.PathLike)) else "BicycleGAN model")
    return nets


def _check_pair(nets: dict, *, what: str) -> None:
    G, E = nets.get("G"), nets.get("E")
    if G is not None and E is not None:
        if G.cfg.nz != E.cfg.nz:
            raise ModelFormatError(f"{what}: G takes codes of size {G.cfg.nz} but E produces {E.cfg.nz}: the files "
                                   "belong to different models")
        if G.cfg.output_nc != E.cfg.input_nc:
            raise ModelFormatError(f"{what}: G makes {G.cfg.output_nc}-channel images but E reads "
                                   f"{E.cfg.input_nc} channels: the files belong to different models")


__all__ = ["load_bicyclegan_generator", "load_bicyclegan_encoder", "load_bicyclegan_discriminator",
           "load_bicyclegan", "generator_config", "encoder_config", "discriminator_config", "RELEASED_FILES"]
