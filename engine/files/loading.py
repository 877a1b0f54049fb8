"""One entry point for every StyleGAN2 file users have: detect the format, convert, build our modules.

``load_generator(source)`` / ``load_discriminator(source)`` accept a path or an already-loaded checkpoint dict.
Formats: the project's own checkpoints; rosinality ``.pt`` (all layouts); NVIDIA ``.pkl`` (stylegan2-ada /
stylegan3, read without executing embedded source); NVIDIA state dicts with ``init_kwargs``; legacy TensorFlow
pickles. Anything else is refused with a ``ModelFormatError`` that names what was found.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.convert import nvlabs, rosinality, tf_legacy
from engine.convert.common import short_list
from engine.errors import ModelFormatError, describe
from engine.files import checkpoints
from engine.files.guard import FILE_FAULTS, build_module, refuse_broken_files
from engine.files.storage import file_sha256, read_model_file
from engine.models.precision import at_precision
from engine.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

log = logging.getLogger(__name__)

W_AVG_SAMPLES = 4096
W_AVG_SEED = 0x5EED
NOISE_SEED = 0



@dataclass(frozen=True)
class ModelInfo:
    """Where a network came from: the detected format, a one-line description and conversion notes."""

    format: str
    description: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    sha256: str | None = None
    path: str | None = None
    training_data: str | None = None  # what our own checkpoints record they were trained on, e.g. "synth:photo"


def _nvlabs_g_kwargs(obj: dict):
    for key in ("G_init_kwargs", "init_kwargs"):
        kw = obj.get(key)
        if isinstance(kw, dict) and ("z_dim" in kw or "w_dim" in kw or "synthesis_kwargs" in kw):
            return kw
    return None


def _nvlabs_d_kwargs(obj: dict):
    for key in ("D_init_kwargs", "init_kwargs"):
        kw = obj.get(key)
        if isinstance(kw, dict) and not ("z_dim" in kw or "w_dim" in kw or "synthesis_kwargs" in kw):
            return kw
    return None


def _generator_parts(kind: str, obj, label: str) -> tuple[GeneratorConfig, dict, list[str], str, str]:
    """(config, native state dict, notes, format id, description) for any supported content."""
    if kind == "nvlabs-pickle":
        rec = obj.get("G_ema") or obj.get("G")
        if rec is None or not hasattr(rec, "state_dict"):
            raise ModelFormatError(f"{label}: an NVIDIA pickle without a 'G_ema' or 'G' network")
        which = "G_ema" if obj.get("G_ema") is not None else "G"
        cfg, sd, notes = nvlabs.generator_from_nvlabs(rec.state_dict, rec.init_kwargs, what=label)
        return cfg, sd, notes, "nvlabs-pickle", f"NVIDIA network pickle ({which}, class {rec.class_name})"
    if kind == "tf-pickle":
        gs, _ = _tf_networks(obj, label)
        g_sd, g_kw, _, _ = tf_legacy.tf_to_nvlabs(gs)
        g_kw = dict(g_kw)
        channels = g_kw.pop("channels", None)
        g_kw.get("synthesis_kwargs", {}).pop("channel_base", None)
        g_kw.get("synthesis_kwargs", {}).pop("channel_max", None)
        cfg, sd, notes = nvlabs.generator_from_nvlabs(g_sd, g_kw, what=label)
        if channels is not None and tuple(channels[r] for r in cfg.resolutions) != cfg.channels:
            raise ModelFormatError(f"{label}: the converted channel table disagrees with the weights")
        return cfg, sd, notes, "tf-pickle", "legacy TensorFlow StyleGAN2 pickle (Gs)"
    if checkpoints.is_own_checkpoint(obj):
        cfg, sd = checkpoints.generator_from_own(obj, what=label)
        return cfg, sd, [], "face-editor", "face-editor checkpoint"
    if rosinality.is_checkpoint(obj):
        key = "g_ema" if rosinality.is_generator_state_dict(obj.get("g_ema")) else "g"
        if not rosinality.is_generator_state_dict(obj.get(key)):
            raise ModelFormatError(f"{label}: a rosinality checkpoint without a generator ('g_ema' or 'g')")
        args = obj.get("args")
        cfg, sd, notes = rosinality.generator_from_rosinality(obj[key], latent_avg=obj.get("latent_avg"),
                                                              args=args, what=label)
        if key == "g":
            notes.append("no 'g_ema' in the file: using the raw (non-averaged) generator 'g'")
        layout = "train.py checkpoint" if "g_optim" in obj else "converted checkpoint"
        return cfg, sd, notes, "rosinality", f"rosinality stylegan2-pytorch {layout} ({key})"
    if rosinality.is_generator_state_dict(obj):
        cfg, sd, notes = rosinality.generator_from_rosinality(obj, what=label)
        return cfg, sd, notes, "rosinality", "rosinality generator state dict"
    if isinstance(obj, dict):
        for key in ("G_ema", "G"):
            if nvlabs.is_generator_state_dict(obj.get(key)):
                cfg, sd, notes = nvlabs.generator_from_nvlabs(obj[key], _nvlabs_g_kwargs(obj), what=label)
                return cfg, sd, notes, "nvlabs-state-dict", f"NVIDIA state dict ({key})"
        if nvlabs.is_generator_state_dict(obj):
            cfg, sd, notes = nvlabs.generator_from_nvlabs(obj, None, what=label)
            return cfg, sd, notes, "nvlabs-state-dict", "NVIDIA generator state dict"
    raise ModelFormatError(f"{label}: no StyleGAN2 generator found in {describe(obj)}")


def _discriminator_parts(kind: str, obj, label: str) -> tuple[DiscriminatorConfig, dict, list[str], str, str]:
    if kind == "nvlabs-pickle":
        rec = obj.get("D")
        if rec is None or not hasattr(rec, "state_dict"):
            raise ModelFormatError(f"{label}: an NVIDIA pickle without a 'D' network")
        cfg, sd, notes = nvlabs.discriminator_from_nvlabs(rec.state_dict, rec.init_kwargs, what=label)
        return cfg, sd, notes, "nvlabs-pickle", f"NVIDIA network pickle (D, class {rec.class_name})"
    if kind == "tf-pickle":
        gs, d = _tf_networks(obj, label)
        if d is None:
            raise ModelFormatError(f"{label}: the TensorFlow pickle holds no discriminator")
        _, _, d_sd, d_kw = tf_legacy.tf_to_nvlabs(gs, d)
        d_kw = {k: v for k, v in d_kw.items() if k not in ("channels", "channel_base", "channel_max")}
        cfg, sd, notes = nvlabs.discriminator_from_nvlabs(d_sd, d_kw, what=label)
        return cfg, sd, notes, "tf-pickle", "legacy TensorFlow StyleGAN2 pickle (D)"
    if checkpoints.is_own_checkpoint(obj):
        cfg, sd = checkpoints.discriminator_from_own(obj, what=label)
        return cfg, sd, [], "face-editor", "face-editor checkpoint"
    if isinstance(obj, dict) and rosinality.is_discriminator_state_dict(obj.get("d")):
        cfg, sd, notes = rosinality.discriminator_from_rosinality(obj["d"], what=label)
        return cfg, sd, notes, "rosinality", "rosinality stylegan2-pytorch checkpoint (d)"
    if rosinality.is_discriminator_state_dict(obj):
        cfg, sd, notes = rosinality.discriminator_from_rosinality(obj, what=label)
        return cfg, sd, notes, "rosinality", "rosinality discriminator state dict"
    if isinstance(obj, dict):
        if nvlabs.is_discriminator_state_dict(obj.get("D")):
            cfg, sd, notes = nvlabs.discriminator_from_nvlabs(obj["D"], _nvlabs_d_kwargs(obj), what=label)
            return cfg, sd, notes, "nvlabs-state-dict", "NVIDIA state dict (D)"
        if nvlabs.is_discriminator_state_dict(obj):
            cfg, sd, notes = nvlabs.discriminator_from_nvlabs(obj, None, what=label)
            return cfg, sd, notes, "nvlabs-state-dict", "NVIDIA discriminator state dict"
        if rosinality.is_checkpoint(obj) or nvlabs.is_generator_state_dict(obj.get("G_ema")):
            raise ModelFormatError(f"{label}: the checkpoint holds a generator but no discriminator")
    raise ModelFormatError(f"{label}: no StyleGAN2 discriminator found in {describe(obj)}")


def _tf_networks(obj, label: str):
    """(Gs, D) records of a legacy TensorFlow pickle ``(G, D, Gs)``."""
    if not isinstance(obj, tuple) or len(obj) != 3:
        raise ModelFormatError(f"{label}: expected a TensorFlow pickle holding (G, D, Gs)")
    return obj[2], obj[1]


def _source(source) -> tuple[str, object, str, str | None, str | None]:
    """(kind, content, label, sha256, path) of a path or an in-memory checkpoint."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        kind, content = read_model_file(path)
        return kind, content, path.name, file_sha256(path), str(path)
    if isinstance(source, dict):
        return "torch", source, "checkpoint dict", None, None
    raise ModelFormatError(f"cannot load a model from {describe(source)}: pass a path or a checkpoint dict")


def _to_float32(sd: dict, label: str) -> dict:
    if not isinstance(sd, dict):
        raise ModelFormatError(f"{label}: the weights are {describe(sd)}, not a dictionary of tensors")
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise ModelFormatError(f"{label}: entry {k!r} is {describe(v)}, not a tensor")
        out[k] = v.detach().to("cpu", torch.float32)
    return out


def _load_strict(module: torch.nn.Module, sd: dict, label: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected {short_list(unexpected)}")
        raise ModelFormatError(f"{label}: weights do not fit the inferred architecture ({'; '.join(parts)})")
    for k, v in sd.items():
        if own[k].shape != v.shape:
            raise ModelFormatError(f"{label}: {k} has shape {tuple(v.shape)}, the architecture needs "
                                   f"{tuple(own[k].shape)}")
    module.load_state_dict(sd, strict=True)


def build_generator(cfg: GeneratorConfig, sd: dict, *, label: str = "generator",
                    notes: list[str] | None = None) -> Generator:
    """A generator from a config and native weights; fills what files may lack (noise, w_avg) reproducibly."""
    notes = notes if notes is not None else []
    G = build_module(Generator, cfg, what=label, seed=NOISE_SEED)  # stored noise defaults to seeded N(0, 1) maps
    sd = _to_float32(sd, label)
    own = G.state_dict()
    filled = [k for k in own if k.endswith("noise_const") and k not in sd]
    for k in filled:
        sd[k] = own[k]
    if filled:
        notes.append(f"{len(filled)} stored noise maps missing: using fixed noise from seed {NOISE_SEED}")
    compute_w_avg = "mapping.w_avg" not in sd
    if compute_w_avg:
        sd["mapping.w_avg"] = own["mapping.w_avg"]
    _load_strict(G, sd, label)
    G.eval().requires_grad_(False)
    if compute_w_avg:
        G.w_avg = mean_w(G, n=W_AVG_SAMPLES, seed=W_AVG_SEED)
        notes.append(f"w_avg computed as the mean of {W_AVG_SAMPLES} mapped z (seed {W_AVG_SEED})")
    return G


@torch.no_grad()
def mean_w(G: Generator, *, n: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED, batch: int = 1024) -> torch.Tensor:
    """Mean of ``G.mapping(z)`` over ``n`` z drawn from a seeded generator. [w_dim]"""
    g = torch.Generator().manual_seed(int(seed))
    total = torch.zeros(G.w_dim, dtype=torch.float64)
    done = 0
    while done < n:
        b = min(batch, n - done)
        z = torch.randn(b, G.z_dim, generator=g)
        total += G.mapping(z.to(G.w_avg.device))[:, 0].double().sum(0).cpu()
        done += b
    return (total / n).to(torch.float32)


@refuse_broken_files
def load_generator(source, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
                   ) -> Generator:
    """Load a StyleGAN2 generator from a path or a checkpoint dict; returns an eval-mode module, float32 on the CPU
    unless ``dtype`` / ``device`` say otherwise.

    The module carries ``G.model_info`` (format, description, conversion notes, sha256 of the file). ``dtype``:
    float32 (the default) or float64 for the whole network, float16 / bfloat16 for NVIDIA's mixed precision; a
    reduced precision is measured against the file's float32 weights on ``device`` and refused with a
    ``PrecisionError`` (figures and what to use instead) when it would change the images visibly
    (``engine.models.precision.at_precision``; the measurement is kept as ``G.precision_report``).
    """
    G = read_generator(source)
    if dtype is None and device is None:
        return G
    return at_precision(G, dtype or torch.float32, device=device or "cpu")


@refuse_broken_files
def read_generator(source) -> Generator:
    """The generator a path or a checkpoint dict holds, as the file gives it: an eval-mode float32 CPU module with
    ``G.model_info`` (``load_generator`` without ``dtype`` / ``device``)."""
    t0 = time.perf_counter()
    kind, obj, label, sha, path = _source(source)
    cfg, sd, notes, fmt, desc = _generator_parts(kind, obj, label)
    log.debug("%s: a %s file, detected as %s", label, kind, desc)
    notes = list(notes)
    G = build_generator(cfg, sd, label=label, notes=notes)
    extras = obj.get("extras") if fmt == "face-editor" else None
    data = extras.get("data") if isinstance(extras, dict) else None
    G.model_info = ModelInfo(format=fmt, description=desc, notes=tuple(notes), sha256=sha, path=path,
                             training_data=data if isinstance(data, str) and data else None)
    log.info("loaded generator %s (%s [%s], %d px, %d W+ rows, sha256 %s) in %.2f s", label, desc, fmt,
             cfg.img_resolution, cfg.num_ws, sha, time.perf_counter() - t0)
    for note in notes:
        log.debug("%s: %s", label, note)
    return G


def _build_discriminator(cfg: DiscriminatorConfig, sd: dict, label: str) -> Discriminator:
    D = build_module(Discriminator, cfg, what=label)
    _load_strict(D, _to_float32(sd, label), label)
    return D.eval().requires_grad_(False)


@refuse_broken_files
def load_discriminator(source) -> Discriminator:
    """Load a StyleGAN2 discriminator from a path or a checkpoint dict; returns an eval-mode CPU module."""
    kind, obj, label, sha, path = _source(source)
    cfg, sd, notes, fmt, desc = _discriminator_parts(kind, obj, label)
    D = _build_discriminator(cfg, sd, label)
    D.model_info = ModelInfo(format=fmt, description=desc, notes=tuple(notes), sha256=sha, path=path)
    return D


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@refuse_broken_files
def inspect_model(source) -> dict:
    """What a file holds: format, description, configs, notes, checked by building its networks from its weights as
    ``load_generator`` / ``load_discriminator`` do (``parameters`` counts the generator's; a file whose generator
    does not load is refused with the loader's ``ModelFormatError``; a discriminator that does not load is
    ``discriminator_error``)."""
    kind, obj, label, sha, path = _source(source)
    g_cfg, g_sd, g_notes, fmt, desc = _generator_parts(kind, obj, label)
    notes = list(g_notes)
    G = build_generator(g_cfg, g_sd, label=label, notes=notes)
    info = {"path": path, "sha256": sha, "format": fmt, "description": desc, "generator": g_cfg.to_dict(),
            "num_ws": g_cfg.num_ws, "parameters": _parameters(G), "notes": notes, "discriminator": None}
    del G
    try:
        d_cfg, d_sd, d_notes, _, _ = _discriminator_parts(kind, obj, label)
        info["discriminator_parameters"] = _parameters(_build_discriminator(d_cfg, d_sd, label))
        info["discriminator"] = d_cfg.to_dict()
        info["notes"] += d_notes
    except (ModelFormatError, *FILE_FAULTS) as e:
        info["discriminator_error"] = str(e) if isinstance(e, ModelFormatError) else \
            f"{label}: its discriminator's weights are damaged or not laid out as expected"
    return info
