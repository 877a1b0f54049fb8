"""NVIDIA stylegan2-ada-pytorch / stylegan3 (``networks_stylegan2``) state dicts -> our configs and weights.

The native layout of ``engine.models.stylegan2`` already uses NVIDIA's key names, so conversion is: infer the
architecture from the weight shapes, cross-check it with the constructor kwargs when they are known
(``init_kwargs``, either stylegan2-ada's nested form or stylegan3's flattened form), check the constant
``resample_filter`` buffers, and drop them.
"""
from __future__ import annotations

import re

from engine.convert.common import check_same_filters, require, short_list
from engine.errors import ModelFormatError
from engine.models.ops import fir_filter_2d
from engine.models.stylegan2 import DiscriminatorConfig, GeneratorConfig, channels_from_base

# Constructor kwargs that change nothing in fp32 inference (training or GPU-speed settings).
_HARMLESS_G_KWARGS = {
    "w_avg_beta", "fused_modconv_default", "fp16_channels_last", "num_fp16_res", "conv_clamp",
    "channel_base", "channel_max", "use_fp16", "layer_features", "embed_features", "lr_multiplier",
    "num_layers", "architecture", "resample_filter", "use_noise", "activation", "z_dim", "w_dim", "c_dim",
    "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs", "num_ws",
}
_HARMLESS_D_KWARGS = {
    "c_dim", "img_resolution", "img_channels", "architecture", "channel_base", "channel_max", "num_fp16_res",
    "conv_clamp", "cmap_dim", "block_kwargs", "mapping_kwargs", "epilogue_kwargs", "mbstd_group_size",
    "mbstd_num_channels", "activation", "resample_filter", "fp16_channels_last", "freeze_layers",
}

_STYLEGAN3_KEY = re.compile(r"synthesis\.(input\.|L\d+_)")


def is_generator_state_dict(sd) -> bool:
    return isinstance(sd, dict) and any(k.startswith("synthesis.") for k in sd) and any(
        k.startswith("mapping.") for k in sd)


def is_discriminator_state_dict(sd) -> bool:
    return isinstance(sd, dict) and any(re.fullmatch(r"b4\.(conv|fc|out)\.weight", k) for k in sd)


def _flatten_kwargs(kwargs: dict | None) -> dict:
    """Merge stylegan2-ada's nested ``synthesis_kwargs`` into the top level (stylegan3's flattened form)."""
    if not kwargs:
        return {}
    flat = {k: v for k, v in kwargs.items() if k != "synthesis_kwargs"}
    for k, v in (kwargs.get("synthesis_kwargs") or {}).items():
        flat.setdefault(k, v)
    return flat


def _check_known(kwargs: dict, allowed: set[str], *, what: str) -> None:
    unknown = [k for k in kwargs if k not in allowed]
    require(not unknown, f"{what}: unknown constructor arguments {short_list(unknown)}; refusing to guess "
                         "their meaning")


def _filters(sd: dict, *, what: str) -> tuple[float, ...]:
    return check_same_filters({k: v for k, v in sd.items() if k.endswith("resample_filter")}, what=what)


def generator_from_nvlabs(sd: dict, init_kwargs: dict | None = None, *,
                          what: str = "NVIDIA generator") -> tuple[GeneratorConfig, dict, list[str]]:
    """Infer the config of an NVIDIA-layout generator state dict; returns (config, native state dict, notes)."""
    if any(_STYLEGAN3_KEY.match(k) for k in sd):
        raise ModelFormatError(f"{what}: this is a StyleGAN3 (alias-free, stylegan3-t/-r) generator, which the "
                               "editor does not support; use a StyleGAN2 model")
    notes: list[str] = []
    kw = _flatten_kwargs(init_kwargs)
    _check_known(kw, _HARMLESS_G_KWARGS, what=what)
    mapping_kwargs = dict(kw.get("mapping_kwargs") or {})
    require(int(kw.get("c_dim", 0) or 0) == 0 and "mapping.embed.weight" not in sd,
            f"{what}: a class-conditional generator (c_dim > 0); the editor supports unconditional models only")
    arch = kw.get("architecture", "skip")
    require(arch == "skip", f"{what}: synthesis architecture {arch!r} is not supported (only 'skip', as in FFHQ "
                            "models)")
    require(kw.get("activation", "lrelu") == "lrelu", f"{what}: activation {kw.get('activation')!r} unsupported")

    for key in ("synthesis.b4.const", "synthesis.b4.conv1.weight", "synthesis.b4.conv1.affine.weight",
                "synthesis.b4.torgb.weight", "mapping.fc0.weight"):
        require(key in sd, f"{what}: required weight {key!r} is missing")
    res = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"synthesis\.b(\d+)\.conv1\.weight", k)))
    resolution = res[-1]
    expected = [2**i for i in range(2, resolution.bit_length())]
    require(res == expected, f"{what}: synthesis blocks {res} do not form a chain 4, 8, ..., {resolution}")
    channels = tuple(sd[f"synthesis.b{r}.conv1.weight"].shape[0] for r in res)
    n_fc = sum(1 for k in sd if re.fullmatch(r"mapping\.fc\d+\.weight", k))
    fc0 = sd["mapping.fc0.weight"]
    w_dim = sd["synthesis.b4.conv1.affine.weight"].shape[1]
    use_noise = "synthesis.b4.conv1.noise_strength" in sd
    hidden = fc0.shape[0] if n_fc > 1 else None
    cfg = GeneratorConfig(
        img_resolution=resolution,
        channels=channels,
        z_dim=fc0.shape[1],
        w_dim=w_dim,
        mapping_layers=n_fc,
        mapping_features=None if hidden == w_dim else hidden,
        mapping_lr_mult=float(mapping_kwargs.get("lr_multiplier", kw.get("lr_multiplier", 0.01))),
        img_channels=sd["synthesis.b4.torgb.weight"].shape[0],
        conv_clamp=kw.get("conv_clamp"),
        num_fp16_res=int(kw.get("num_fp16_res", 0) or 0),
        resample_filter=_filters(sd, what=what),
        use_noise=use_noise,
    )
    for name, got in (("img_resolution", resolution), ("z_dim", cfg.z_dim), ("w_dim", cfg.w_dim),
                      ("img_channels", cfg.img_channels)):
        if name in kw:
            require(int(kw[name]) == got, f"{what}: init kwargs say {name}={kw[name]} but the weights have {got}")
    if "num_layers" in mapping_kwargs:
        require(int(mapping_kwargs["num_layers"]) == n_fc,
                f"{what}: init kwargs say {mapping_kwargs['num_layers']} mapping layers, the weights have {n_fc}")
    _check_channel_rule(kw, resolution, channels, what=what)
    if init_kwargs is None:
        notes.append("no constructor kwargs: architecture inferred from the weights, conv_clamp assumed None")
    native = {k: v for k, v in sd.items() if not k.endswith("resample_filter")}
    if "mapping.w_avg" not in native:
        notes.append("the file has no w_avg")
    return cfg, native, notes


def _check_channel_rule(kw: dict, resolution: int, channels: tuple[int, ...], *, what: str) -> None:
    """When the init kwargs state channel_base and channel_max, the weights' channel table must follow them."""
    if "channel_base" in kw and "channel_max" in kw:
        rule = channels_from_base(resolution, channel_base=int(kw["channel_base"]),
                                  channel_max=int(kw["channel_max"]))
        require(rule == channels, f"{what}: channel table {channels} of the weights disagrees with channel_base="
                                  f"{kw['channel_base']}, channel_max={kw['channel_max']}")


def discriminator_from_nvlabs(sd: dict, init_kwargs: dict | None = None, *,
                              what: str = "NVIDIA discriminator") -> tuple[DiscriminatorConfig, dict, list[str]]:
    """Infer the config of an NVIDIA-layout residual discriminator; returns (config, native state dict, notes)."""
    notes: list[str] = []
    kw = dict(init_kwargs or {})
    _check_known(kw, _HARMLESS_D_KWARGS, what=what)
    epilogue = dict(kw.get("epilogue_kwargs") or {})
    require(int(kw.get("c_dim", 0) or 0) == 0 and not any(k.startswith("mapping.") for k in sd),
            f"{what}: a class-conditional discriminator (c_dim > 0) is not supported")
    arch = kw.get("architecture", "resnet")
    require(arch == "resnet", f"{what}: discriminator architecture {arch!r} is not supported (only 'resnet')")
    first = [int(m.group(1)) for k in sd if (m := re.fullmatch(r"b(\d+)\.fromrgb\.weight", k))]
    require(len(first) == 1, f"{what}: expected exactly one fromrgb layer (a 'resnet' discriminator), "
                             f"found {len(first)}")
    resolution = first[0]
    blocks = sorted(int(m.group(1)) for k in sd if (m := re.fullmatch(r"b(\d+)\.conv0\.weight", k)))
    expected = [2**i for i in range(3, resolution.bit_length())]
    require(blocks == expected, f"{what}: blocks {blocks} do not form a chain 8, ..., {resolution}")
    require("b4.conv.weight" in sd and "b4.out.weight" in sd, f"{what}: the 4x4 epilogue is missing")
    require(sd["b4.out.weight"].shape[0] == 1, f"{what}: a projection (conditional) output is not supported")
    ch4 = sd["b4.conv.weight"].shape[0]
    channels = (ch4,) + tuple(sd[f"b{r}.conv0.weight"].shape[0] for r in expected)
    mbstd_channels = sd["b4.conv.weight"].shape[1] - ch4
    group = epilogue.get("mbstd_group_size", kw.get("mbstd_group_size", 4))
    if init_kwargs is None or "mbstd_group_size" not in {**epilogue, **kw}:
        notes.append("minibatch-stddev group size not recorded: assumed 4 (NVIDIA's default)")
    cfg = DiscriminatorConfig(
        img_resolution=resolution,
        channels=channels,
        img_channels=sd[f"b{resolution}.fromrgb.weight"].shape[1],
        mbstd_group_size=None if group is None else int(group),
        mbstd_num_channels=int(mbstd_channels),
        conv_clamp=kw.get("conv_clamp"),
        num_fp16_res=int(kw.get("num_fp16_res", 0) or 0),
        resample_filter=_filters(sd, what=what),
    )
    if "img_resolution" in kw:
        require(int(kw["img_resolution"]) == resolution,
                f"{what}: init kwargs say img_resolution={kw['img_resolution']}, the weights have {resolution}")
    _check_channel_rule(kw, resolution, channels, what=what)
    native = {k: v for k, v in sd.items() if not k.endswith("resample_filter")}
    return cfg, native, notes


def generator_to_nvlabs(cfg: GeneratorConfig, sd: dict) -> tuple[dict, dict]:
    """Our generator weights as an NVIDIA state dict (with resample filters) plus stylegan2-ada init kwargs."""
    out = dict(sd)
    f = fir_filter_2d(cfg.resample_filter)
    for r in cfg.resolutions:
        out[f"synthesis.b{r}.resample_filter"] = f.clone()
        for layer in ("conv0", "conv1"):
            if f"synthesis.b{r}.{layer}.weight" in sd:
                out[f"synthesis.b{r}.{layer}.resample_filter"] = f.clone()
    kwargs = {
        "z_dim": cfg.z_dim, "w_dim": cfg.w_dim, "c_dim": 0, "img_resolution": cfg.img_resolution,
        "img_channels": cfg.img_channels,
        "mapping_kwargs": {"num_layers": cfg.mapping_layers, "lr_multiplier": cfg.mapping_lr_mult},
        "synthesis_kwargs": {"num_fp16_res": cfg.num_fp16_res, "conv_clamp": cfg.conv_clamp},
    }
    return out, kwargs


__all__ = ["generator_from_nvlabs", "discriminator_from_nvlabs", "generator_to_nvlabs",
           "is_generator_state_dict", "is_discriminator_state_dict"]
