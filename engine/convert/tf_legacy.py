"""Legacy TensorFlow StyleGAN2 networks (NVlabs/stylegan2 ``.pkl``) -> NVIDIA PyTorch state dicts and kwargs.

Input: the :class:`~engine.files.pickles.TFNetwork` records that ``pickles.read_tf_pickle`` makes (``Gs`` with
components ``mapping`` and ``synthesis``, and optionally ``D``). Output: state dicts with the exact key names,
shapes and order of stylegan2-ada-pytorch's ``G_ema`` / ``D`` (``resample_filter`` buffers included), plus
NVIDIA-style constructor kwargs inferred from the variable shapes, so that ``engine.convert.nvlabs`` loads them.

Conversion rules (FACTS.md §17): dense weights ``[in, out]`` are transposed; conv weights ``[kh, kw, I, O]``
become ``[O, I, kh, kw]``, the generator's ``Conv0_up`` weights additionally flipped spatially; ``mod_weight``
``[S, I]`` is transposed into ``affine.weight`` and ``mod_bias + 1`` becomes ``affine.bias`` (TensorFlow adds the
1 at run time); ``4x4/Const/const`` drops its batch dim; ``noise{i}`` ``[1, 1, r, r]`` becomes the ``noise_const``
of layer ``i`` (layer order of FACTS.md §1); ``Gs``'s ``dlatent_avg`` becomes ``mapping.w_avg``.
Only unconditional StyleGAN2 models with a 'skip' generator and a 'resnet' discriminator are accepted.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from engine.convert.common import short_list
from engine.errors import ModelFormatError

_TAPS = (1.0, 3.0, 3.0, 1.0)
_MAPPING_LR = 0.01


def _resample_filter() -> torch.Tensor:
    taps = torch.tensor(_TAPS, dtype=torch.float32)
    f = torch.outer(taps, taps)
    return f / f.sum()


def _collect(record, prefix: str = "") -> dict[str, np.ndarray]:
    """All variables of a network and its components, named ``component/.../variable``."""
    out = {prefix + name: value for name, value in record.variables.items()}
    for name, comp in record.components.items():
        out.update(_collect(comp, f"{prefix}{name}/"))
    return out


def _static_values(record, key: str) -> list:
    """Every value the network or one of its components was constructed with for ``key``."""
    values = [record.static_kwargs[key]] if key in record.static_kwargs else []
    for comp in record.components.values():
        values += _static_values(comp, key)
    return values


class _Variables:
    """The variables of one network, consumed by name so that leftovers can be reported as unknown."""

    def __init__(self, arrays: dict[str, np.ndarray], *, what: str):
        self.arrays = dict(arrays)
        self.what = what
        for name in [n for n in self.arrays if n == "lod" or n.endswith("/lod")]:
            value = np.asarray(self.arrays.pop(name))
            if value.size != 1 or float(value.reshape(-1)[0]) != 0.0:
                raise ModelFormatError(f"{what}: variable {name!r} (progressive-growing level of detail) is "
                                       f"{value.reshape(-1)[:4].tolist()}, not 0; only fully grown networks work")

    def has(self, name: str) -> bool:
        return name in self.arrays

    def take(self, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if name not in self.arrays:
            raise ModelFormatError(f"{self.what}: variable {name!r} is missing")
        value = np.asarray(self.arrays.pop(name))
        if tuple(value.shape) != tuple(shape):
            raise ModelFormatError(f"{self.what}: variable {name!r} has shape {list(value.shape)}, expected "
                                   f"{list(shape)}")
        if value.dtype.kind != "f":
            raise ModelFormatError(f"{self.what}: variable {name!r} has dtype {value.dtype}, not floating point")
        return torch.from_numpy(np.array(value, dtype=np.float32, order="C"))

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.arrays:
            raise ModelFormatError(f"{self.what}: variable {name!r} is missing")
        return tuple(np.shape(self.arrays[name]))

    def finish(self) -> None:
        if self.arrays:
            raise ModelFormatError(f"{self.what}: unknown variables {short_list(self.arrays)}; this is not a "
                                   "StyleGAN2 network the editor knows")


def _conv(weight: torch.Tensor, *, flip: bool = False) -> torch.Tensor:
    """TensorFlow conv weight ``[kh, kw, I, O]`` -> PyTorch ``[O, I, kh, kw]``."""
    w = weight.permute(3, 2, 0, 1)
    return (w.flip([2, 3]) if flip else w).contiguous()


def _dense(weight: torch.Tensor) -> torch.Tensor:
    return weight.t().contiguous()


def _channel_rule(channels: dict[int, int], hint: int | None) -> tuple[int, int]:
    """``(channel_base, channel_max)`` reproducing ``min(channel_base // res, channel_max)`` if one does.

    TensorFlow's ``fmap_base`` (``hint``) is half of NVIDIA's ``channel_base``. If no rule reproduces the table,
    the product ``channels * res`` at the highest resolution is returned; the explicit table is authoritative.
    """
    channel_max = max(channels.values())
    candidates = ([2 * int(hint)] if hint else []) + [channels[r] * r for r in sorted(channels, reverse=True)]
    for base in candidates:
        if all(min(base // r, channel_max) == c for r, c in channels.items()):
            return base, channel_max
    top = max(channels)
    return channels[top] * top, channel_max


def _check_static(record, *, what: str, supported: dict) -> None:
    for key, allowed in supported.items():
        for value in _static_values(record, key):
            if value not in allowed:
                raise ModelFormatError(f"{what}: built with {key}={value!r}; the editor supports "
                                       f"{' or '.join(repr(a) for a in allowed)} only")


def _check_unconditional(record, v: _Variables, *, what: str) -> None:
    label_sizes = [int(x) for x in _static_values(record, "label_size") if x]
    labelled = [n for n in v.arrays if re.search(r"(^|/)(LabelConcat|LabelEmbed)(/|$)", n)]
    if label_sizes or labelled:
        found = f"label_size={label_sizes[0]}" if label_sizes else f"variable {labelled[0]!r}"
        raise ModelFormatError(f"{what}: a label-conditioned model ({found}, c_dim > 0); the editor supports "
                               "unconditional models only")


def _resolutions(found: list[int], *, what: str, kind: str) -> list[int]:
    found = sorted(set(found))
    if not found:
        raise ModelFormatError(f"{what}: no {kind} layers found")
    top = found[-1]
    if top < 4 or top & (top - 1) or found != [2**i for i in range(2, top.bit_length())]:
        raise ModelFormatError(f"{what}: {kind} layers at resolutions {found} do not form a chain 4, 8, ..., {top}")
    return found


def _modulated(v: _Variables, tf: str, nv: str, *, in_ch: int, out_ch: int, w_dim: int, kernel: int,
               flip: bool = False, noise: str | None = None, res: int = 0) -> dict[str, torch.Tensor]:
    """One modulated conv (``noise`` given) or ToRGB layer, in NVIDIA's key order."""
    out = {f"{nv}.weight": _conv(v.take(f"{tf}/weight", (kernel, kernel, in_ch, out_ch)), flip=flip)}
    if noise is not None:
        out[f"{nv}.noise_strength"] = v.take(f"{tf}/noise_strength", ())
    out[f"{nv}.bias"] = v.take(f"{tf}/bias", (out_ch,))
    if noise is not None:
        out[f"{nv}.resample_filter"] = _resample_filter()
        out[f"{nv}.noise_const"] = v.take(noise, (1, 1, res, res))[0, 0].contiguous()
    out[f"{nv}.affine.weight"] = _dense(v.take(f"{tf}/mod_weight", (w_dim, in_ch)))
    out[f"{nv}.affine.bias"] = v.take(f"{tf}/mod_bias", (in_ch,)) + 1
    return out


def _generator(gs) -> tuple[dict[str, torch.Tensor], dict]:
    what = "TensorFlow generator"
    missing = [c for c in ("mapping", "synthesis") if c not in gs.components]
    if missing:
        raise ModelFormatError(f"{what}: components {sorted(gs.components)} lack {missing}; expected 'mapping' and "
                               "'synthesis' (a StyleGAN2 Gs network)")
    v = _Variables(_collect(gs), what=what)
    _check_unconditional(gs, v, what=what)
    if not any(n.endswith("/mod_weight") for n in v.arrays):
        raise ModelFormatError(f"{what}: no modulated convolutions ('mod_weight' variables): this looks like a "
                               "StyleGAN1 model; only StyleGAN2 is supported")
    skips = [n for n in v.arrays if re.fullmatch(r"synthesis/\d+x\d+/Skip/weight", n)]
    if skips:
        raise ModelFormatError(f"{what}: synthesis architecture 'resnet' (variable {skips[0]!r}); only 'skip' is "
                               "supported")
    _check_static(gs, what=what, supported={
        "architecture": ("skip",), "nonlinearity": ("lrelu",), "mapping_nonlinearity": ("lrelu",),
        "resample_kernel": ([1, 3, 3, 1], None), "normalize_latents": (True,), "use_noise": (True,)})

    resolutions = _resolutions(
        [int(m.group(1)) for n in v.arrays if (m := re.fullmatch(r"synthesis/(\d+)x\1/ToRGB/weight", n))],
        what=what, kind="ToRGB")
    top = resolutions[-1]
    channels = {4: v.shape("synthesis/4x4/Const/const")[1]}
    for r in resolutions[1:]:
        channels[r] = v.shape(f"synthesis/{r}x{r}/Conv1/weight")[-1]
    w_dim = v.shape("synthesis/4x4/Conv/mod_weight")[0]
    img_channels = v.shape(f"synthesis/{top}x{top}/ToRGB/weight")[-1]

    sd: dict[str, torch.Tensor] = {}
    layer = 0
    for r in resolutions:
        c = channels[r]
        if r == 4:
            sd["synthesis.b4.const"] = v.take("synthesis/4x4/Const/const", (1, c, 4, 4))[0].contiguous()
            sd["synthesis.b4.resample_filter"] = _resample_filter()
            sd.update(_modulated(v, "synthesis/4x4/Conv", "synthesis.b4.conv1", in_ch=c, out_ch=c, w_dim=w_dim,
                                 kernel=3, noise=f"synthesis/noise{layer}", res=r))
            layer += 1
        else:
            sd[f"synthesis.b{r}.resample_filter"] = _resample_filter()
            sd.update(_modulated(v, f"synthesis/{r}x{r}/Conv0_up", f"synthesis.b{r}.conv0", in_ch=channels[r // 2],
                                 out_ch=c, w_dim=w_dim, kernel=3, flip=True, noise=f"synthesis/noise{layer}", res=r))
            sd.update(_modulated(v, f"synthesis/{r}x{r}/Conv1", f"synthesis.b{r}.conv1", in_ch=c, out_ch=c,
                                 w_dim=w_dim, kernel=3, noise=f"synthesis/noise{layer + 1}", res=r))
            layer += 2
        sd.update(_modulated(v, f"synthesis/{r}x{r}/ToRGB", f"synthesis.b{r}.torgb", in_ch=c, out_ch=img_channels,
                             w_dim=w_dim, kernel=1))

    sd["mapping.w_avg"] = v.take("dlatent_avg", (w_dim,))
    n_dense = len([n for n in v.arrays if re.fullmatch(r"mapping/Dense\d+/weight", n)])
    if n_dense == 0:
        raise ModelFormatError(f"{what}: the mapping network has no Dense layers")
    z_dim = v.shape("mapping/Dense0/weight")[0]
    widths = [v.shape(f"mapping/Dense{i}/weight")[1] for i in range(n_dense)]
    width_in = z_dim
    for i, width_out in enumerate(widths):
        if i == n_dense - 1 and width_out != w_dim:
            raise ModelFormatError(f"{what}: the last mapping layer outputs {width_out} features, the synthesis "
                                   f"network expects w_dim={w_dim}")
        sd[f"mapping.fc{i}.weight"] = _dense(v.take(f"mapping/Dense{i}/weight", (width_in, width_out)))
        sd[f"mapping.fc{i}.bias"] = v.take(f"mapping/Dense{i}/bias", (width_out,))
        width_in = width_out
    v.finish()

    hidden = set(widths[:-1])
    if len(hidden) > 1:
        raise ModelFormatError(f"{what}: mapping layers of unequal widths {widths}; unsupported")
    mapping_kwargs: dict = {"num_layers": n_dense}
    if hidden and hidden != {w_dim}:
        mapping_kwargs["layer_features"] = hidden.pop()
    lrmul = _static_values(gs, "mapping_lrmul")
    if lrmul and float(lrmul[0]) != _MAPPING_LR:
        mapping_kwargs["lr_multiplier"] = float(lrmul[0])
    fmap_base = _static_values(gs, "fmap_base")
    channel_base, channel_max = _channel_rule(channels, fmap_base[0] if fmap_base else None)
    conv_clamp = _static_values(gs, "conv_clamp")
    kwargs = {
        "z_dim": z_dim, "w_dim": w_dim,
        "mapping_kwargs": mapping_kwargs,
        "synthesis_kwargs": {"channel_base": channel_base, "channel_max": channel_max, "num_fp16_res": 0,
                             "conv_clamp": conv_clamp[0] if conv_clamp else None},
        "c_dim": 0, "img_resolution": top, "img_channels": img_channels,
        "channels": channels,
    }
    return sd, kwargs


def _discriminator(d) -> tuple[dict[str, torch.Tensor], dict]:
    what = "TensorFlow discriminator"
    v = _Variables(_collect(d), what=what)
    _check_unconditional(d, v, what=what)
    _check_static(d, what=what, supported={
        "architecture": ("resnet",), "nonlinearity": ("lrelu",), "resample_kernel": ([1, 3, 3, 1], None)})
    from_rgb = sorted(int(m.group(1)) for n in v.arrays if (m := re.fullmatch(r"(\d+)x\1/FromRGB/weight", n)))
    if len(from_rgb) != 1:
        raise ModelFormatError(f"{what}: FromRGB layers at resolutions {from_rgb}; a 'resnet' discriminator has "
                               "exactly one")
    top = from_rgb[0]
    blocks = _resolutions([4] + [int(m.group(1)) for n in v.arrays
                                 if (m := re.fullmatch(r"(\d+)x\1/Conv0/weight", n))], what=what, kind="Conv0")
    if blocks[-1] != top:
        raise ModelFormatError(f"{what}: FromRGB works at {top}x{top} but the blocks go up to {blocks[-1]}")
    img_channels = v.shape(f"{top}x{top}/FromRGB/weight")[2]
    channels = {r: v.shape(f"{r}x{r}/Conv0/weight")[-1] for r in blocks[1:]}
    channels[4] = v.shape("4x4/Conv/weight")[-1]
    mbstd_channels = v.shape("4x4/Conv/weight")[2] - channels[4]
    features = [int(x) for x in _static_values(d, "mbstd_num_features")] or [1]
    if mbstd_channels != features[0]:
        raise ModelFormatError(f"{what}: the 4x4 conv reads {mbstd_channels} extra (minibatch-stddev) channels, "
                               f"but the network was built with mbstd_num_features={features[0]}")
    group = _static_values(d, "mbstd_group_size")
    group_size = (None if group[0] is None else int(group[0])) if group else 4
    dense_out = v.shape("4x4/Dense0/weight")[-1]
    if dense_out != channels[4]:
        raise ModelFormatError(f"{what}: 4x4/Dense0 has {dense_out} outputs; NVIDIA's layout needs {channels[4]} "
                               "(the 4x4 channel count)")
    out_shape = v.shape("Output/weight")
    if len(out_shape) != 2 or out_shape[1] != 1:
        raise ModelFormatError(f"{what}: the output layer has shape {list(out_shape)}, not [C, 1]: a "
                               "label-conditioned (projection) discriminator, unsupported")

    sd: dict[str, torch.Tensor] = {}
    for r in reversed(blocks[1:]):
        c, c_out = channels[r], channels[r // 2]
        sd[f"b{r}.resample_filter"] = _resample_filter()
        if r == top:
            sd[f"b{r}.fromrgb.weight"] = _conv(v.take(f"{r}x{r}/FromRGB/weight", (1, 1, img_channels, c)))
            sd[f"b{r}.fromrgb.bias"] = v.take(f"{r}x{r}/FromRGB/bias", (c,))
            sd[f"b{r}.fromrgb.resample_filter"] = _resample_filter()
        for tf, nv, cin, cout in (("Conv0", "conv0", c, c), ("Conv1_down", "conv1", c, c_out)):
            sd[f"b{r}.{nv}.weight"] = _conv(v.take(f"{r}x{r}/{tf}/weight", (3, 3, cin, cout)))
            sd[f"b{r}.{nv}.bias"] = v.take(f"{r}x{r}/{tf}/bias", (cout,))
            sd[f"b{r}.{nv}.resample_filter"] = _resample_filter()
        sd[f"b{r}.skip.weight"] = _conv(v.take(f"{r}x{r}/Skip/weight", (1, 1, c, c_out)))
        sd[f"b{r}.skip.resample_filter"] = _resample_filter()
    c4 = channels[4]
    sd["b4.conv.weight"] = _conv(v.take("4x4/Conv/weight", (3, 3, c4 + mbstd_channels, c4)))
    sd["b4.conv.bias"] = v.take("4x4/Conv/bias", (c4,))
    sd["b4.conv.resample_filter"] = _resample_filter()
    sd["b4.fc.weight"] = _dense(v.take("4x4/Dense0/weight", (c4 * 16, c4)))
    sd["b4.fc.bias"] = v.take("4x4/Dense0/bias", (c4,))
    sd["b4.out.weight"] = _dense(v.take("Output/weight", (c4, 1)))
    sd["b4.out.bias"] = v.take("Output/bias", (1,))
    v.finish()

    fmap_base = _static_values(d, "fmap_base")
    channel_base, channel_max = _channel_rule(channels, fmap_base[0] if fmap_base else None)
    conv_clamp = _static_values(d, "conv_clamp")
    kwargs = {
        "block_kwargs": {}, "mapping_kwargs": {},
        "epilogue_kwargs": {"mbstd_group_size": group_size, "mbstd_num_channels": mbstd_channels},
        "channel_base": channel_base, "channel_max": channel_max, "num_fp16_res": 0,
        "conv_clamp": conv_clamp[0] if conv_clamp else None,
        "c_dim": 0, "img_resolution": top, "img_channels": img_channels, "architecture": "resnet",
        "channels": dict(sorted(channels.items())),
    }
    return sd, kwargs


def tf_to_nvlabs(gs_record, d_record=None) -> tuple[dict[str, torch.Tensor], dict, dict[str, torch.Tensor] | None,
                                                     dict | None]:
    """Convert a TensorFlow ``Gs`` (and optionally ``D``) record to NVIDIA PyTorch state dicts and kwargs.

    Returns ``(G_state_dict, G_init_kwargs, D_state_dict, D_init_kwargs)``; the D entries are None without
    ``d_record``. Both kwargs dicts carry the explicit channel table ``{resolution: channels}`` under
    ``'channels'`` besides NVIDIA's ``channel_base`` / ``channel_max`` (TensorFlow tables need not follow them).
    """
    g_sd, g_kwargs = _generator(gs_record)
    if d_record is None:
        return g_sd, g_kwargs, None, None
    d_sd, d_kwargs = _discriminator(d_record)
    return g_sd, g_kwargs, d_sd, d_kwargs


__all__ = ["tf_to_nvlabs"]
