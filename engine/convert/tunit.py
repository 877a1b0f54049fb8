"""Loaders for TUNIT files: a training folder (``checkpoint.txt`` naming the ``model_<epoch>.ckpt`` to load), a
``model_<epoch>.ckpt`` itself, its dict, and the project's own ``face-editor/tunit`` format.

A ``model_<epoch>.ckpt`` holds ``epoch``, ``{C,C_EMA,D,G,G_EMA}_state_dict``, the optimiser states
``{c,d,g}_optimizer`` and ``inceptionNet_state_dict`` (TUNIT_FACTS §7); the optimiser and FID-network entries are
not needed and skipped. Architectures are inferred from the weights: the guiding network's VGG layout (conv widths
and max-pools; a trailing max-pool is assumed, as every VGG configuration has one, unless ``features`` is given),
the generator's width, depth, residual blocks and style size, the discriminator's size, widths and K. Multi-GPU
``module.`` prefixes and the pre-2020-06-17 residual-block names (``blocks``/``block``) are mapped; everything else
must match exactly or ``ModelFormatError`` names the keys.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from engine.convert.common import short_list
from engine.convert.i2i_common import (
    build_config,
    build_strict,
    is_state_dict,
    read_own_networks,
    read_source,
    strip_module_prefix,
    tensor_at,
)
from engine.errors import ModelFormatError, describe
from engine.files.guard import refuse_broken_files
from engine.models.tunit import (
    FORMAT,
    FORMAT_VERSION,
    KINDS,
    GuidingConfig,
    TunitDiscriminatorConfig,
    TunitGeneratorConfig,
)

NETWORK_KEYS = {"G_state_dict": "G", "G_EMA_state_dict": "G_EMA", "C_state_dict": "C",
                "C_EMA_state_dict": "C_EMA", "D_state_dict": "D"}
SKIPPED_KEYS = ("c_optimizer", "d_optimizer", "g_optimizer", "inceptionNet_state_dict")
CHECKPOINT_LIST = "checkpoint.txt"


@dataclass
class TunitModel:
    """The networks of a TUNIT checkpoint (eval mode), keyed ``G``, ``G_EMA``, ``C``, ``C_EMA``, ``D`` (those the
    file holds), its epoch (None when unknown) and notes on what the loader adapted."""

    networks: dict[str, nn.Module]
    epoch: int | None = None
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def generator(self) -> nn.Module:
        """The generator to translate with: G_EMA when present (the reference's inference network), else G."""
        return self._pick("G_EMA", "G")

    @property
    def style_encoder(self) -> nn.Module:
        """The guiding network that gives style codes: C_EMA when present, else C."""
        return self._pick("C_EMA", "C")

    @property
    def cluster_net(self) -> nn.Module:
        """The guiding network that assigns clusters: C (the reference uses C, not C_EMA), else C_EMA."""
        return self._pick("C", "C_EMA")

    def _pick(self, first: str, second: str) -> nn.Module:
        if first in self.networks:
            return self.networks[first]
        if second in self.networks:
            return self.networks[second]
        raise ModelFormatError(f"{self.source}: the checkpoint holds neither {first} nor {second}")


def _rename_old_resblocks(sd: dict) -> tuple[dict, bool]:
    """Keys written before 2020-06-17 used ``blocks``/``block`` where residual blocks now use ``model``."""
    out, changed = {}, False
    for k, v in sd.items():
        new = re.sub(r"\.blocks?\.", ".model.", k) if k.startswith(("cnt_encoder.", "decoder.")) else k
        changed |= new != k
        out[new] = v
    return out, changed


def _count(sd: dict, pattern: str) -> int:
    n = 0
    while pattern.format(n) in sd:
        n += 1
    return n


def generator_config(sd: dict, *, what: str = "TUNIT generator", **arch) -> TunitGeneratorConfig:
    """Infer the generator's config from its state dict; ``arch`` overrides fields."""
    first = tensor_at(sd, "cnt_encoder.model.0.conv.weight", 4, what=what)
    n_downs = _count(sd, "cnt_encoder.model.{}.conv.weight") - 1
    if n_downs < 1:
        raise ModelFormatError(f"{what}: no stride-2 convolutions in the content encoder")
    n_res = _count(sd, f"cnt_encoder.model.{n_downs + 1}.model.{{}}.model.0.conv.weight")
    mlp0 = tensor_at(sd, "mlp.model.0.fc.weight", 2, what=what)
    inferred = dict(nf=first.shape[0], n_downs=n_downs, n_res=n_res, sty_dim=mlp0.shape[1], nf_mlp=mlp0.shape[0],
                    mlp_blocks=_count(sd, "mlp.model.{}.fc.weight"))
    return build_config(TunitGeneratorConfig, inferred, arch, what=what)


def guiding_config(sd: dict, *, what: str = "TUNIT guiding network", **arch) -> GuidingConfig:
    """Infer the guiding network's VGG layout and head sizes from its state dict; ``arch`` overrides fields."""
    convs = sorted(int(m.group(1)) for k, v in sd.items()
                   if (m := re.fullmatch(r"features\.(\d+)\.weight", k)) and isinstance(v, torch.Tensor)
                   and v.ndim == 4)
    if not convs:
        raise ModelFormatError(f"{what}: no 'features.N.weight' convolutions")
    features: list = []
    pos = 0
    for i in convs:
        if i < pos:
            raise ModelFormatError(f"{what}: convolutions at features.{i} overlap (conv, BatchNorm, ReLU take 3 "
                                   "slots each)")
        features += ["M"] * (i - pos)
        features.append(sd[f"features.{i}.weight"].shape[0])
        pos = i + 3
    features.append("M")
    disc = tensor_at(sd, "disc.weight", 2, what=what)
    cont = tensor_at(sd, "cont.weight", 2, what=what)
    inferred = dict(features=tuple(features), sty_dim=cont.shape[0], output_k=disc.shape[0])
    return build_config(GuidingConfig, inferred, arch, what=what)


def discriminator_config(sd: dict, *, what: str = "TUNIT discriminator", **arch) -> TunitDiscriminatorConfig:
    """Infer the discriminator's size, widths and K from its state dict; ``arch`` overrides fields."""
    first = tensor_at(sd, "main.0.weight", 4, what=what)
    blocks = sum(1 for k in sd if re.fullmatch(r"main\.\d+\.conv1\.weight", k))
    if blocks < 2 or blocks % 2:
        raise ModelFormatError(f"{what}: {blocks} residual blocks; the layout has two per stage")
    repeat = blocks // 2
    last = tensor_at(sd, f"main.{blocks + 4}.weight", 4, what=what)
    widths = [sd[k].shape[0] for k in sd if re.fullmatch(r"main\.\d+\.conv2\.weight", k)]
    inferred = dict(img_size=2 ** (repeat + 2), dim_in=first.shape[0], max_conv_dim=max(widths),
                    output_k=last.shape[0])
    return build_config(TunitDiscriminatorConfig, inferred, arch, what=what)


INFER = {"G": generator_config, "G_EMA": generator_config, "C": guiding_config, "C_EMA": guiding_config,
         "D": discriminator_config}


def network_from_state_dict(name: str, sd: dict, *, what: str | None = None, notes: list | None = None,
                            **arch) -> nn.Module:
    """One network (``G``, ``G_EMA``, ``C``, ``C_EMA`` or ``D``) from a TUNIT state dict, eval mode."""
    if name not in KINDS:
        raise ValueError(f"name must be one of {list(KINDS)}, got {name!r}")
    what = what or f"TUNIT {name}"
    if not is_state_dict(sd):
        raise ModelFormatError(f"{what}: expected a state dict, found {describe(sd)}")
    sd = strip_module_prefix(sd, what=what)
    sd, renamed = _rename_old_resblocks(sd)
    if renamed and notes is not None:
        notes.append(f"{name}: old residual-block key names (blocks/block) mapped to model")
    cfg = INFER[name](sd, what=what, **arch)
    return build_strict(KINDS[name][0], cfg, sd, what=what)


def _resolve_folder(folder: Path) -> Path:
    listing = folder / CHECKPOINT_LIST
    if not listing.is_file():
        ckpts = sorted(folder.glob("model_*.ckpt"))
        raise ModelFormatError(f"{folder}: no {CHECKPOINT_LIST} in this folder"
                               + (f" (it holds {short_list(p.name for p in ckpts)}; open one of them)" if ckpts
                                  else ""))
    lines = [ln.strip() for ln in listing.read_text(errors="replace").splitlines() if ln.strip()]
    if not lines:
        raise ModelFormatError(f"{listing}: empty; it should name the model_<epoch>.ckpt to load")
    named = lines[-1]
    for candidate in (folder / named, folder / Path(named.replace("\\", "/")).name):
        if candidate.is_file():
            return candidate
    raise ModelFormatError(f"{listing} names {named!r}, which is not in {folder}")


@refuse_broken_files
def load_tunit(source, **arch) -> TunitModel:
    """A TUNIT model from a training folder (``checkpoint.txt``), a ``model_<epoch>.ckpt``, its loaded dict, or a
    project-format file/dict. ``arch`` maps a network name to config overrides, e.g. ``C={"features": [...]}``."""
    if unknown := sorted(set(arch) - set(KINDS)):
        raise ValueError(f"overrides must be keyed by network ({list(KINDS)}), got {unknown}")
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        source = _resolve_folder(Path(source))
    obj, what = read_source(source, what="TUNIT checkpoint")
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        nets = read_own_networks(obj, fmt=FORMAT, version=FORMAT_VERSION, kinds=KINDS, what=what)
        epoch = (obj.get("extras") or {}).get("epoch")
        return TunitModel(nets, epoch=epoch if isinstance(epoch, int) else None, source=what)
    if not isinstance(obj, dict):
        raise ModelFormatError(f"{what}: not a TUNIT checkpoint (found {describe(obj)})")
    present = [k for k in NETWORK_KEYS if k in obj]
    if not present:
        raise ModelFormatError(f"{what}: not a TUNIT checkpoint: none of {list(NETWORK_KEYS)} among its keys "
                               f"{short_list(obj, 6)}")
    if unknown := [k for k in obj if k not in NETWORK_KEYS and k not in SKIPPED_KEYS and k != "epoch"]:
        raise ModelFormatError(f"{what}: unexpected top-level keys {short_list(unknown)} for a model_<epoch>.ckpt")
    notes: list[str] = []
    nets = {NETWORK_KEYS[k]: network_from_state_dict(NETWORK_KEYS[k], obj[k], what=f"{what} ({k})", notes=notes,
                                                     **arch.get(NETWORK_KEYS[k], {}))
            for k in present}
    _check_compatible(nets, what=what)
    epoch = obj.get("epoch")
    if isinstance(epoch, torch.Tensor) and epoch.numel() == 1:
        epoch = int(epoch)
    return TunitModel(nets, epoch=epoch if isinstance(epoch, int) else None, source=what, notes=notes)


def _check_compatible(nets: dict, *, what: str) -> None:
    sty = {n: m.cfg.sty_dim for n, m in nets.items() if n != "D"}
    if len(set(sty.values())) > 1:
        raise ModelFormatError(f"{what}: the networks disagree on the style code size {sty}")
    k = {n: m.cfg.output_k for n, m in nets.items() if n in ("C", "C_EMA", "D")}
    if len(set(k.values())) > 1:
        raise ModelFormatError(f"{what}: the networks disagree on the number of clusters {k}")


__all__ = ["load_tunit", "TunitModel", "network_from_state_dict", "generator_config", "guiding_config",
           "discriminator_config", "NETWORK_KEYS", "CHECKPOINT_LIST"]
