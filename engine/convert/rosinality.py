"""rosinality ``stylegan2-pytorch`` checkpoints (``.pt``) -> our configs and NVIDIA-layout weights.

Handles every layout of FACTS.md §15: converted-from-TF files (``g_ema`` + ``latent_avg``, optional ``g``/``d``),
``train.py`` checkpoints (``args`` Namespace, no ``latent_avg``) and the released ``550000.pt`` (no noise buffers).
The architecture is inferred from the weights; constant blur kernels are checked, never required.
"""
from __future__ import annotations

import re

import torch

from engine.convert.common import apply_key_table, check_same_filters, identity, require
from engine.errors import ModelFormatError
from engine.models.stylegan2 import DiscriminatorConfig, GeneratorConfig


def is_generator_state_dict(sd) -> bool:
    return isinstance(sd, dict) and "style.1.weight" in sd and any(k.startswith("convs.") for k in sd)


def is_discriminator_state_dict(sd) -> bool:
    return isinstance(sd, dict) and "final_linear.0.weight" in sd


def is_checkpoint(obj) -> bool:
    """A rosinality checkpoint dict: ``g_ema`` and/or ``g`` / ``d`` state dicts with rosinality keys."""
    return isinstance(obj, dict) and any(
        is_generator_state_dict(obj.get(k)) or is_discriminator_state_dict(obj.get(k)) for k in ("g_ema", "g", "d"))


def _block_res(j: int) -> int:
    """Resolution of ``convs.{j}`` / ``to_rgbs.{j // 2}``: the upsampling conv of block k = j // 2 is at 2^(k+3)."""
    return 2 ** (j // 2 + 3)


def _check_not_swagan(sd: dict, *, what: str) -> None:
    if any(".iwt." in k or ".dwt." in k or k.startswith("from_rgbs.") for k in sd):
        raise ModelFormatError(f"{what}: this is a SWAGAN checkpoint (rosinality --arch swagan, wavelet-based), "
                               "which the editor does not support; use a StyleGAN2 model")


def _conv_rules(src: str, dst: str) -> list:
    """Key rules of one modulated conv (``StyledConv``) at ``src`` -> NVIDIA layer ``dst`` (a callable on m)."""
    return [
        (rf"{src}\.conv\.weight", lambda m: f"{dst(m)}.weight", lambda t: t[0]),
        (rf"{src}\.conv\.modulation\.(weight|bias)", lambda m: f"{dst(m)}.affine.{m.group(m.re.groups)}", identity),
        (rf"{src}\.noise\.weight", lambda m: f"{dst(m)}.noise_strength", lambda t: t.reshape([])),
        (rf"{src}\.activate\.bias", lambda m: f"{dst(m)}.bias", identity),
        (rf"{src}\.conv\.blur\.kernel", lambda m: None, identity),
    ]


def _torgb_rules(src: str, dst: str) -> list:
    return [
        (rf"{src}\.conv\.weight", lambda m: f"{dst(m)}.weight", lambda t: t[0]),
        (rf"{src}\.conv\.modulation\.(weight|bias)", lambda m: f"{dst(m)}.affine.{m.group(m.re.groups)}", identity),
        (rf"{src}\.bias", lambda m: f"{dst(m)}.bias", lambda t: t.reshape(-1)),
        (rf"{src}\.upsample\.kernel", lambda m: None, identity),
    ]


def generator_from_rosinality(sd: dict, *, latent_avg: torch.Tensor | None = None, args=None,
                              what: str = "rosinality generator") -> tuple[GeneratorConfig, dict, list[str]]:
    """Convert a rosinality ``g_ema`` state dict; returns (config, native state dict, notes)."""
    _check_not_swagan(sd, what=what)
    if args is not None and getattr(args, "arch", "stylegan2") != "stylegan2":
        raise ModelFormatError(f"{what}: trained with --arch {args.arch!r}; only 'stylegan2' is supported")
    notes: list[str] = []
    n_layers = 1 + max((int(m.group(1)) for k in sd if (m := re.fullmatch(r"convs\.(\d+)\.conv\.weight", k))),
                       default=-1)
    require("input.input" in sd and "conv1.conv.weight" in sd and "to_rgb1.conv.weight" in sd,
            f"{what}: the 4x4 block (input.input, conv1, to_rgb1) is missing")
    require(n_layers % 2 == 0, f"{what}: odd number of synthesis convs ({n_layers}); the file is incomplete")
    n_blocks = n_layers // 2
    resolution = 2 ** (n_blocks + 2)
    n_rgbs = sum(1 for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    require(n_rgbs == n_blocks, f"{what}: {n_rgbs} to_rgbs for {n_blocks} upsampling blocks; the file is incomplete")
    n_mlp = sum(1 for k in sd if re.fullmatch(r"style\.\d+\.weight", k))
    require(all(f"style.{i}.weight" in sd for i in range(1, n_mlp + 1)),
            f"{what}: mapping layers style.1..style.{n_mlp} are not contiguous")
    style_dim = sd["style.1.weight"].shape[1]

    def noise_dst(m):
        i = int(m.group(1))
        if i == 0:
            return "synthesis.b4.conv1.noise_const"
        return f"synthesis.b{2 ** ((i + 5) // 2)}.conv{(i - 1) % 2}.noise_const"

    rules = [
        (r"style\.(\d+)\.(weight|bias)", lambda m: f"mapping.fc{int(m.group(1)) - 1}.{m.group(2)}", identity),
        (r"input\.input", lambda m: "synthesis.b4.const", lambda t: t[0]),
        (r"noises\.noise_(\d+)", noise_dst, lambda t: t[0, 0]),
        *_conv_rules("conv1", lambda m: "synthesis.b4.conv1"),
        *_torgb_rules("to_rgb1", lambda m: "synthesis.b4.torgb"),
        *_conv_rules(r"convs\.(\d+)", lambda m: f"synthesis.b{_block_res(int(m.group(1)))}.conv{int(m.group(1)) % 2}"),
        *_torgb_rules(r"to_rgbs\.(\d+)", lambda m: f"synthesis.b{2 ** (int(m.group(1)) + 3)}.torgb"),
    ]
    native, constants = apply_key_table(sd, rules, what=what)
    taps = check_same_filters({k: sd[k] for k in constants}, what=what)
    channels = tuple([native["synthesis.b4.conv1.weight"].shape[0]] +
                     [native[f"synthesis.b{2 ** (k + 3)}.conv1.weight"].shape[0] for k in range(n_blocks)])
    cfg = GeneratorConfig(
        img_resolution=resolution, channels=channels, z_dim=style_dim, w_dim=style_dim, mapping_layers=n_mlp,
        img_channels=native["synthesis.b4.torgb.weight"].shape[0], resample_filter=taps,
    )
    if args is not None:
        for name, got in (("size", resolution), ("latent", style_dim), ("n_mlp", n_mlp)):
            if hasattr(args, name):
                require(int(getattr(args, name)) == got,
                        f"{what}: the checkpoint's args say {name}={getattr(args, name)}, the weights have {got}")
    if latent_avg is not None:
        require(latent_avg.numel() == style_dim,
                f"{what}: latent_avg has {latent_avg.numel()} values, expected {style_dim}")
        native["mapping.w_avg"] = latent_avg.reshape(style_dim).to(torch.float32)
    else:
        notes.append("the file has no latent_avg")
    if "synthesis.b4.conv1.noise_const" not in native:
        notes.append("the file has no stored noise buffers")
    return cfg, native, notes


def discriminator_from_rosinality(sd: dict, *, what: str = "rosinality discriminator"
                                  ) -> tuple[DiscriminatorConfig, dict, list[str]]:
    """Convert a rosinality ``d`` state dict; returns (config, native state dict, notes)."""
    _check_not_swagan(sd, what=what)
    n = 1 + max((int(m.group(1)) for k in sd if (m := re.fullmatch(r"convs\.(\d+)\.conv1\.0\.weight", k))),
                default=0)
    require(n >= 2 and "convs.0.0.weight" in sd, f"{what}: no residual blocks / fromRGB layer found")
    resolution = 2 ** (n + 1)

    def res(m):
        return resolution // 2 ** (int(m.group(1)) - 1)

    rules = [
        (r"convs\.0\.0\.weight", lambda m: f"b{resolution}.fromrgb.weight", identity),
        (r"convs\.0\.1\.bias", lambda m: f"b{resolution}.fromrgb.bias", identity),
        (r"convs\.(\d+)\.conv1\.0\.weight", lambda m: f"b{res(m)}.conv0.weight", identity),
        (r"convs\.(\d+)\.conv1\.1\.bias", lambda m: f"b{res(m)}.conv0.bias", identity),
        (r"convs\.(\d+)\.conv2\.0\.kernel", lambda m: None, identity),
        (r"convs\.(\d+)\.conv2\.1\.weight", lambda m: f"b{res(m)}.conv1.weight", identity),
        (r"convs\.(\d+)\.conv2\.2\.bias", lambda m: f"b{res(m)}.conv1.bias", identity),
        (r"convs\.(\d+)\.skip\.0\.kernel", lambda m: None, identity),
        (r"convs\.(\d+)\.skip\.1\.weight", lambda m: f"b{res(m)}.skip.weight", identity),
        (r"final_conv\.0\.weight", lambda m: "b4.conv.weight", identity),
        (r"final_conv\.1\.bias", lambda m: "b4.conv.bias", identity),
        (r"final_linear\.0\.(weight|bias)", lambda m: f"b4.fc.{m.group(1)}", identity),
        (r"final_linear\.1\.(weight|bias)", lambda m: f"b4.out.{m.group(1)}", identity),
    ]
    native, constants = apply_key_table(sd, rules, what=what)
    taps = check_same_filters({k: sd[k] for k in constants}, what=what)
    ch4 = native["b4.conv.weight"].shape[0]
    channels = (ch4,) + tuple(native[f"b{2 ** i}.conv0.weight"].shape[0] for i in range(3, n + 2))
    cfg = DiscriminatorConfig(
        img_resolution=resolution, channels=channels, img_channels=native[f"b{resolution}.fromrgb.weight"].shape[1],
        mbstd_group_size=4, mbstd_num_channels=native["b4.conv.weight"].shape[1] - ch4, resample_filter=taps,
    )
    return cfg, native, []


def _rosinality_conv(sd: dict, src: str, dst: str, *, blur: torch.Tensor | None) -> dict:
    """One of our modulated convs (``dst`` prefix in ``sd``) as a rosinality ``StyledConv`` at ``src``."""
    out = {f"{src}.conv.weight": sd[f"{dst}.weight"][None]}  # [1, O, I, 3, 3]
    if blur is not None:
        out[f"{src}.conv.blur.kernel"] = blur.clone()
    out[f"{src}.conv.modulation.weight"] = sd[f"{dst}.affine.weight"]
    out[f"{src}.conv.modulation.bias"] = sd[f"{dst}.affine.bias"]
    out[f"{src}.noise.weight"] = sd[f"{dst}.noise_strength"].reshape(1)
    out[f"{src}.activate.bias"] = sd[f"{dst}.bias"]
    return out


def _rosinality_torgb(sd: dict, src: str, dst: str, *, upsample: torch.Tensor | None) -> dict:
    out = {f"{src}.bias": sd[f"{dst}.bias"].reshape(1, -1, 1, 1)}
    if upsample is not None:
        out[f"{src}.upsample.kernel"] = upsample.clone()
    out[f"{src}.conv.weight"] = sd[f"{dst}.weight"][None]  # [1, C, I, 1, 1]
    out[f"{src}.conv.modulation.weight"] = sd[f"{dst}.affine.weight"]
    out[f"{src}.conv.modulation.bias"] = sd[f"{dst}.affine.bias"]
    return out


def generator_to_rosinality(G, *, what: str = "the generator") -> tuple[dict, torch.Tensor]:
    """One of our generators as a rosinality ``g_ema`` state dict (the key order and shapes rosinality's
    ``Generator`` writes, blur / upsample kernels and noise buffers included) and its ``latent_avg`` [w_dim]:
    ``generator_from_rosinality`` reads them back to the same weights. Refused (``ModelFormatError``) when the
    architecture is not one rosinality's ``Generator`` can express (z_dim and mapping width = w_dim, mapping
    learning rate 0.01, RGB, no activation clamping)."""
    cfg = G.cfg
    problems = [text for bad, text in (
        (cfg.z_dim != cfg.w_dim, f"z_dim {cfg.z_dim} differs from w_dim {cfg.w_dim}"),
        (cfg.mapping_features not in (None, cfg.w_dim), f"mapping width {cfg.mapping_features} is not w_dim"),
        (cfg.mapping_lr_mult != 0.01, f"mapping learning-rate multiplier {cfg.mapping_lr_mult} is not 0.01"),
        (cfg.img_channels != 3, f"{cfg.img_channels} image channels, not RGB"),
        (cfg.conv_clamp is not None, f"activations clamped at {cfg.conv_clamp}"),
        (not cfg.use_noise, "no noise inputs")) if bad]
    if problems:
        raise ModelFormatError(f"{what} cannot be written in rosinality's layout: {'; '.join(problems)}")
    sd = {k: v.detach().to("cpu", torch.float32).clone() for k, v in G.state_dict().items()}
    taps = torch.tensor(cfg.resample_filter, dtype=torch.float32)
    kernel = torch.outer(taps, taps) / taps.sum() ** 2 * 4  # rosinality's make_kernel(k) * factor**2, factor 2
    out = {}
    for i in range(cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]  # [1, C, 4, 4]
    out.update(_rosinality_conv(sd, "conv1", "synthesis.b4.conv1", blur=None))
    out.update(_rosinality_torgb(sd, "to_rgb1", "synthesis.b4.torgb", upsample=None))
    n_blocks = len(cfg.resolutions) - 1
    for j in range(2 * n_blocks):
        out.update(_rosinality_conv(sd, f"convs.{j}", f"synthesis.b{_block_res(j)}.conv{j % 2}",
                                    blur=kernel if j % 2 == 0 else None))
    for k in range(n_blocks):
        out.update(_rosinality_torgb(sd, f"to_rgbs.{k}", f"synthesis.b{2 ** (k + 3)}.torgb", upsample=kernel))
    for i, r in enumerate(cfg.noise_resolutions):
        dst = "synthesis.b4.conv1" if i == 0 else f"synthesis.b{2 ** ((i + 5) // 2)}.conv{(i - 1) % 2}"
        out[f"noises.noise_{i}"] = sd[f"{dst}.noise_const"].reshape(1, 1, r, r)
    return out, sd["mapping.w_avg"]
