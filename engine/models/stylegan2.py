"""StyleGAN2 generator (mapping + synthesis) and residual discriminator in plain PyTorch.

State-dict keys follow NVIDIA's stylegan2-ada-pytorch layout (``mapping.fc0.weight``, ``synthesis.b8.conv0.weight``,
``b32.fromrgb.weight`` ...) minus the constant ``resample_filter`` buffers, which are recomputed. Numerics follow
``shared/reference/stylegan2/FACTS.md``: equalised learning rate, modulated/demodulated 3x3 convs, [1,3,3,1] FIR
resampling, 'skip' generator and 'resnet' discriminator, optional activation clamping (``conv_clamp``).

Every internal tensor follows the weights' dtype and device: a network moved with ``.double()`` runs in float64,
and ``Generator.to_precision`` runs synthesis blocks in float16 / bfloat16 the way NVIDIA's mixed precision does
(see ``to_precision``): the mapping, ``w_avg``, the truncation, the styles and the demodulation stay in float32,
the skip image accumulates in float32, and only the convolutions' weights and activations are reduced.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.algorithms.latents import broadcast_w, truncate
from engine.files.configs import DictForm
from engine.models.ops import LRELU_SLOPE, SQRT2, bias_lrelu, fir_taps, upfirdn2d

NOISE_MODES = ("const", "none", "random")
REDUCED_DTYPES = (torch.float16, torch.bfloat16)  # the precisions to_precision runs synthesis blocks in
DEFAULT_REDUCED_RES = 4  # top resolutions in reduced precision when a file states no num_fp16_res (NVIDIA's default)


def _log2_resolution(resolution: int) -> int:
    r = int(resolution)
    if r < 4 or r & (r - 1):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
    return r.bit_length() - 1


def channels_from_base(resolution: int, *, channel_base: int, channel_max: int) -> tuple[int, ...]:
    """NVIDIA's channel rule ``min(channel_base // res, channel_max)`` for res = 4, 8, ..., resolution."""
    n = _log2_resolution(resolution)
    return tuple(min(channel_base // 2**i, channel_max) for i in range(2, n + 1))


def _normalise_tables(cfg) -> None:
    """Store a config's channel table and filter taps as tuples and check the table has one width per level."""
    n = _log2_resolution(cfg.img_resolution)
    object.__setattr__(cfg, "channels", tuple(int(c) for c in cfg.channels))
    object.__setattr__(cfg, "resample_filter", tuple(cfg.resample_filter))
    if len(cfg.channels) != n - 1:
        raise ValueError(f"channels must list one width per resolution 4..{cfg.img_resolution} ({n - 1} values), "
                         f"got {len(cfg.channels)}")
    if min(cfg.channels) <= 0:
        raise ValueError(f"channels must be positive, got {cfg.channels}")


@dataclass(frozen=True)
class GeneratorConfig(DictForm, what="the generator's architecture"):
    """Architecture of a StyleGAN2 generator; everything needed to rebuild it without command-line flags.

    channels: feature channels of the synthesis blocks at resolutions 4, 8, ..., img_resolution.
    mapping_features: width of the hidden mapping layers (None: w_dim).
    """

    img_resolution: int
    channels: tuple[int, ...]
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_features: int | None = None
    mapping_lr_mult: float = 0.01
    img_channels: int = 3
    conv_clamp: float | None = None
    num_fp16_res: int = 0
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)
    use_noise: bool = True

    def __post_init__(self):
        _normalise_tables(self)
        for name in ("z_dim", "w_dim", "mapping_layers", "img_channels"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Block resolutions 4, 8, ..., img_resolution."""
        return tuple(2**i for i in range(2, _log2_resolution(self.img_resolution) + 1))

    @property
    def num_ws(self) -> int:
        """Number of W+ rows: 2 * log2(resolution) - 2."""
        return 2 * _log2_resolution(self.img_resolution) - 2

    @property
    def noise_resolutions(self) -> tuple[int, ...]:
        """Resolution of each noise input, in rosinality's order: layer i works at 2 ** ((i + 5) // 2)."""
        return tuple(2 ** ((i + 5) // 2) for i in range(self.num_ws - 1))


@dataclass(frozen=True)
class DiscriminatorConfig(DictForm, what="the discriminator's architecture"):
    """Architecture of a residual StyleGAN2 discriminator.

    channels: widths at resolutions 4, 8, ..., img_resolution (the block at res maps channels[res] ->
    channels[res/2]). mbstd_group_size None means the whole batch forms one group.
    """

    img_resolution: int
    channels: tuple[int, ...]
    img_channels: int = 3
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    conv_clamp: float | None = None
    num_fp16_res: int = 0
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)

    def __post_init__(self):
        _normalise_tables(self)

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(2**i for i in range(2, _log2_resolution(self.img_resolution) + 1))


class FullyConnected(nn.Module):
    """Equalised-learning-rate linear layer: ``y = x (W * lr_mult / sqrt(in))^T + b * lr_mult``."""

    def __init__(self, in_features: int, out_features: int, *, lr_mult: float = 1.0, bias_init: float = 0.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))  # [out, in]
        self.bias = nn.Parameter(torch.empty(out_features))  # [out]
        self.lr_mult = float(lr_mult)
        self.bias_init = float(bias_init)
        self.activation = activation
        self.weight_gain = self.lr_mult / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in] -> [B, out]
        w = self.weight * self.weight_gain
        b = self.bias * self.lr_mult if self.lr_mult != 1 else self.bias
        if self.activation:
            return bias_lrelu(F.linear(x, w), b)
        return torch.addmm(b.unsqueeze(0), x, w.t())


class MappingNetwork(nn.Module):
    """z -> w: normalise z's second moment, then ``mapping_layers`` equalised FC layers with leaky ReLU."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        hidden = cfg.mapping_features or cfg.w_dim
        widths = [cfg.z_dim] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        for i in range(cfg.mapping_layers):
            self.add_module(f"fc{i}", FullyConnected(widths[i], widths[i + 1], lr_mult=cfg.mapping_lr_mult,
                                                     activation=True))
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        self.num_layers = cfg.mapping_layers
        self.num_ws = cfg.num_ws
        self.z_dim = cfg.z_dim

    def forward(self, z: torch.Tensor, *, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """z [B, z_dim] -> ws [B, num_ws, w_dim] (all rows equal unless a cutoff truncates only some)."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [B, {self.z_dim}], got shape {tuple(z.shape)}")
        x = z.to(self.fc0.weight.dtype)
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = x.unsqueeze(1).expand(-1, self.num_ws, -1)  # [B, num_ws, w_dim]
        return truncate(ws, self.w_avg, truncation_psi, cutoff=truncation_cutoff)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv with demodulation (optionally 2x upsampling), noise, bias, leaky ReLU, clamp."""

    def __init__(self, in_channels: int, out_channels: int, *, w_dim: int, resolution: int, up: bool,
                 conv_clamp: float | None, taps: torch.Tensor, use_noise: bool = True):
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))  # [O, I, 3, 3]
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.up = up
        self.resolution = resolution
        self.conv_clamp = conv_clamp
        self.use_noise = use_noise
        if use_noise:
            self.noise_strength = nn.Parameter(torch.empty([]))
            self.register_buffer("noise_const", torch.empty(resolution, resolution))  # [r, r]
        self.register_buffer("taps", taps.clone(), persistent=False)

    def _weight_sq(self, dtype: torch.dtype) -> torch.Tensor:
        """Sum of squared weights per (out, in) pair [O, I] in ``dtype`` (the styles'); cached while the weights are
        unchanged (inference)."""
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return self.weight.to(dtype).square().sum(dim=(2, 3))
        key = (self.weight._version, self.weight.data_ptr(), self.weight.device, self.weight.dtype, dtype)
        if getattr(self, "_wsq_key", None) != key:
            self._wsq = self.weight.detach().to(dtype).square().sum(dim=(2, 3))
            self._wsq_key = key
        return self._wsq

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """x [B, I, r', r'] (r' = r/2 when upsampling), w [B, w_dim], noise [B|1, 1, r, r] or None.

        Computes lrelu(demod * conv(x * s) + strength * noise + bias) * sqrt(2). The sqrt(2) gain is folded into
        the linear part (leaky ReLU is positively homogeneous). For a single sample whose modulated weights are
        smaller than its activations, s and demod are folded into the weights (one conv, no activation passes).
        x is in the weights' dtype; s and demod are computed in the affine layer's (float32 in a reduced-precision
        block), and a reduced-precision layer always folds them into its weights (one grouped conv for a batch), as
        NVIDIA's inference does: the folded weights are demodulated, so no intermediate sum can overflow float16.
        """
        b, i_ch, h, w_ = x.shape
        o_ch = self.weight.shape[0]
        dtype = self.weight.dtype
        s = self.affine(w.to(self.affine.weight.dtype))  # [B, I]
        d = (s.square() @ self._weight_sq(s.dtype).t() + 1e-8).rsqrt() * SQRT2  # [B, O] demodulation and gain
        bias = self.bias * SQRT2
        reduced = dtype in REDUCED_DTYPES
        if b > 1 and reduced:
            x = self._grouped(x, (d[:, :, None] * s[:, None, :]).to(dtype)) + bias.view(1, -1, 1, 1)
        elif b == 1 and (reduced or o_ch * i_ch * 9 < (i_ch + o_ch) * h * w_ * (4 if self.up else 1)):
            wm = self.weight * (d[0][:, None] * s[0][None, :]).to(dtype)[:, :, None, None]  # [O, I, 3, 3]
            if self.up:
                x = F.conv_transpose2d(x, wm.transpose(0, 1), stride=2)  # [1, O, 2r'+1, 2r'+1]
                x = upfirdn2d(x, self.taps, pad=(1, 1), gain=4)  # [1, O, r, r]
                x = x + bias.view(1, -1, 1, 1)
            else:
                x = F.conv2d(x, wm, bias, padding=1)
        else:
            x = x * s[:, :, None, None]
            if self.up:
                x = F.conv_transpose2d(x, self.weight.transpose(0, 1), stride=2)
                x = upfirdn2d(x, self.taps, pad=(1, 1), gain=4)
            else:
                x = F.conv2d(x, self.weight, padding=1)
            x = torch.addcmul(bias.view(1, -1, 1, 1), x, d[:, :, None, None])
        if noise is not None:
            x = x.add_(noise.to(dtype) * (self.noise_strength * SQRT2))
        x = F.leaky_relu_(x, LRELU_SLOPE)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x

    def _grouped(self, x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        """Each sample's conv with its own folded weights ``weight * coef`` (coef [B, O, I]): one grouped conv.
        x [B, I, r', r'] -> [B, O, r, r] (upsampled like the unfolded path when ``up``), no bias."""
        b, i_ch, h, w_ = x.shape
        o_ch = self.weight.shape[0]
        wm = self.weight.unsqueeze(0) * coef[:, :, :, None, None]  # [B, O, I, 3, 3]
        xg = x.reshape(1, b * i_ch, h, w_)  # [1, B*I, r', r']
        if self.up:
            y = F.conv_transpose2d(xg, wm.transpose(1, 2).reshape(b * i_ch, o_ch, 3, 3), stride=2, groups=b)
            y = upfirdn2d(y, self.taps, pad=(1, 1), gain=4)
        else:
            y = F.conv2d(xg, wm.reshape(b * o_ch, i_ch, 3, 3), padding=1, groups=b)
        return y.reshape(b, o_ch, *y.shape[2:])


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation, plus bias (and clamp)."""

    def __init__(self, in_channels: int, out_channels: int, *, w_dim: int, conv_clamp: float | None):
        super().__init__()
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))  # [3, I, 1, 1]
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # [B, I, r, r] -> [B, 3, r, r]
        s = (self.affine(w.to(self.affine.weight.dtype)) * self.weight_gain).to(self.weight.dtype)  # [B, I]
        if x.shape[0] == 1:
            y = F.conv2d(x, self.weight * s.view(1, -1, 1, 1), self.bias)
        else:
            y = F.conv2d(x * s[:, :, None, None], self.weight, self.bias)
        return y.clamp(-self.conv_clamp, self.conv_clamp) if self.conv_clamp is not None else y


class SynthesisBlock(nn.Module):
    """One resolution of the 'skip' synthesis network: [const], [conv0 (up)], conv1, torgb."""

    def __init__(self, in_channels: int, out_channels: int, *, resolution: int, cfg: GeneratorConfig,
                 taps: torch.Tensor):
        super().__init__()
        self.resolution = resolution
        kw = dict(w_dim=cfg.w_dim, resolution=resolution, conv_clamp=cfg.conv_clamp, taps=taps,
                  use_noise=cfg.use_noise)
        if resolution == 4:
            self.const = nn.Parameter(torch.empty(out_channels, 4, 4))  # [C, 4, 4]
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=True, **kw)
        self.conv1 = SynthesisLayer(out_channels, out_channels, up=False, **kw)
        self.torgb = ToRGB(out_channels, cfg.img_channels, w_dim=cfg.w_dim, conv_clamp=cfg.conv_clamp)
        self.register_buffer("taps", taps.clone(), persistent=False)

    @property
    def num_conv(self) -> int:
        return 1 if self.resolution == 4 else 2

    @property
    def dtype(self) -> torch.dtype:
        """The precision the block's convolutions run in (its weights')."""
        return self.conv1.weight.dtype

    def reduce_precision(self, dtype: torch.dtype) -> None:
        """Weights, biases, constant and stored noise in ``dtype``; the affine (style) layers keep theirs."""
        for m in self.modules():
            if isinstance(m, FullyConnected):
                continue
            for name, p in m.named_parameters(recurse=False):
                p.data = p.data.to(dtype)
            for name, buf in m.named_buffers(recurse=False):
                setattr(m, name, buf.to(dtype))


class SynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] -> image [B, img_channels, R, R] (raw, not clamped)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        taps = fir_taps(cfg.resample_filter)
        prev = 0
        for res, ch in zip(cfg.resolutions, cfg.channels):
            self.add_module(f"b{res}", SynthesisBlock(prev, ch, resolution=res, cfg=cfg, taps=taps))
            prev = ch
        self.num_ws = cfg.num_ws
        self.w_dim = cfg.w_dim

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{r}") for r in self.cfg.resolutions]

    def noise_layers(self) -> list[SynthesisLayer]:
        """The noise-taking layers in rosinality's noise order (b4.conv1, b8.conv0, b8.conv1, ...)."""
        layers = []
        for blk in self.blocks():
            if blk.resolution > 4:
                layers.append(blk.conv0)
            layers.append(blk.conv1)
        return layers

    @property
    def w_dtype(self) -> torch.dtype:
        """The precision of the styles and of the skip image (the affine layers'): float32 unless moved to float64."""
        return self.b4.conv1.affine.weight.dtype

    def _resolve_noise(self, batch: int, noise_mode: str, noise, generator, device) -> list:
        """Per-layer noise; random maps are drawn in float32 (the same maps at every precision), each layer casts
        its map to its own dtype."""
        layers = self.noise_layers()
        if not self.cfg.use_noise:
            return [None] * len(layers)
        if noise is not None:
            if len(noise) != len(layers):
                raise ValueError(f"noise must hold {len(layers)} tensors (one per layer), got {len(noise)}")
            out = []
            for i, (n, layer) in enumerate(zip(noise, layers)):
                r = layer.resolution
                if n.ndim != 4 or n.shape[1:] != (1, r, r) or n.shape[0] not in (1, batch):
                    raise ValueError(f"noise[{i}] must be [1 or {batch}, 1, {r}, {r}], got {tuple(n.shape)}")
                out.append(n.to(device=device))
            return out
        if noise_mode == "const":
            return [layer.noise_const[None, None] for layer in layers]
        if noise_mode == "none":
            return [None] * len(layers)
        if noise_mode == "random":
            if generator is None:
                generator = torch.Generator(device=device)
                generator.seed()  # fresh OS entropy, never the global generator
            return [torch.randn(batch, 1, layer.resolution, layer.resolution, generator=generator,
                                device=device, dtype=torch.float32) for layer in layers]
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")

    def resolve_noise(self, batch: int, *, noise_mode: str = "const", noise: list | None = None,
                      generator: torch.Generator | None = None, device=None) -> list:
        """The per-layer noise ``forward`` would use, one entry per noise layer (None where noise is off), for
        running the network block by block with ``block_convs`` / ``block_torgb``."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        device = device if device is not None else self.b4.const.device
        return self._resolve_noise(batch, noise_mode, noise, generator, device)

    def _block_index(self, resolution: int) -> int:
        """First W+ row (and noise entry) of block ``resolution``: 0 for the 4x4 block, 2 log2(r) - 5 above."""
        if resolution not in self.cfg.resolutions:
            raise ValueError(f"resolution must be one of {self.cfg.resolutions}, got {resolution}")
        return 0 if resolution == 4 else 2 * _log2_resolution(resolution) - 5

    def block_convs(self, resolution: int, x: torch.Tensor | None, ws: torch.Tensor, noises: list) -> torch.Tensor:
        """The convs of one block: features x [B, C_prev, r/2, r/2] (None for the 4x4 block, which starts from its
        constant) -> features [B, C, r, r] (in the block's dtype) before the block's ToRGB. ws [B, num_ws, w_dim];
        noises from ``resolve_noise``. Running every block with ``block_convs`` then ``block_torgb`` is ``forward``."""
        i = self._block_index(resolution)
        blk = getattr(self, f"b{resolution}")
        if resolution == 4:
            b = ws.shape[0]
            x = blk.const.unsqueeze(0).expand(b, -1, -1, -1).contiguous(memory_format=torch.channels_last)
            return blk.conv1(x, ws[:, 0], noises[0])
        x = blk.conv0(x.to(blk.dtype), ws[:, i], noises[i])
        return blk.conv1(x, ws[:, i + 1], noises[i + 1])

    def block_torgb(self, resolution: int, x: torch.Tensor, img: torch.Tensor | None,
                    ws: torch.Tensor) -> torch.Tensor:
        """One block's ToRGB of features x [B, C, r, r] added to the upsampled skip image img [B, 3, r/2, r/2]
        (None for the 4x4 block) -> the skip image at this block [B, 3, r, r], in ``w_dtype``."""
        i = self._block_index(resolution)
        blk = getattr(self, f"b{resolution}")
        y = blk.torgb(x.to(blk.dtype), ws[:, i + blk.num_conv]).to(self.w_dtype)
        return y if img is None else upfirdn2d(img, blk.taps, up=2, pad=(2, 1), gain=4) + y

    def forward(self, ws: torch.Tensor, *, noise_mode: str = "const", noise: list | None = None,
                generator: torch.Generator | None = None, max_resolution: int | None = None) -> torch.Tensor:
        """``max_resolution`` stops after that block and returns the skip-path image there [B, C, r, r] (a cheap
        preview: the blocks above it only add detail)."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [B, {self.num_ws}, {self.w_dim}], got shape {tuple(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        ws = ws.to(self.w_dtype)
        b = ws.shape[0]
        if max_resolution is not None and max_resolution not in self.cfg.resolutions:
            raise ValueError(f"max_resolution must be one of {self.cfg.resolutions}, got {max_resolution}")
        noises = iter(self._resolve_noise(b, noise_mode, noise, generator, ws.device))
        x = img = None
        w_idx = 0
        for blk in self.blocks():
            if blk.resolution == 4:
                # [B, C, 4, 4], channels-last: oneDNN's convs run faster on it (measured 280 -> 248 ms at 256 px)
                x = blk.const.unsqueeze(0).expand(b, -1, -1, -1).contiguous(memory_format=torch.channels_last)
            else:
                x = blk.conv0(x.to(blk.dtype), ws[:, w_idx], next(noises))
                w_idx += 1
            x = blk.conv1(x, ws[:, w_idx], next(noises))
            y = blk.torgb(x, ws[:, w_idx + 1]).to(ws.dtype)  # the skip image accumulates at the styles' precision
            img = y if img is None else upfirdn2d(img, blk.taps, up=2, pad=(2, 1), gain=4) + y
            w_idx += 1
            if blk.resolution == max_resolution:
                break
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: ``G.mapping(z) -> ws``, ``G.synthesis(ws) -> image``, ``G(z) -> image``."""

    def __init__(self, cfg: GeneratorConfig, *, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)
        init_weights(self, seed=seed)

    z_dim = property(lambda self: self.cfg.z_dim)
    w_dim = property(lambda self: self.cfg.w_dim)
    num_ws = property(lambda self: self.cfg.num_ws)
    img_resolution = property(lambda self: self.cfg.img_resolution)
    img_channels = property(lambda self: self.cfg.img_channels)

    @property
    def w_avg(self) -> torch.Tensor:
        """The truncation target [w_dim] (a buffer saved with the weights)."""
        return self.mapping.w_avg

    @w_avg.setter
    def w_avg(self, value: torch.Tensor) -> None:
        value = torch.as_tensor(value, dtype=self.mapping.w_avg.dtype)
        if value.numel() != self.w_dim:
            raise ValueError(f"w_avg must have {self.w_dim} values, got shape {tuple(value.shape)}")
        with torch.no_grad():
            self.mapping.w_avg.copy_(value.reshape(self.w_dim))

    def forward(self, z: torch.Tensor, *, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                noise_mode: str = "const", noise: list | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, noise=noise, generator=generator)

    def synthesize_w(self, w: torch.Tensor, **kwargs) -> torch.Tensor:
        """Render a W [B, w_dim] or W+ [B, num_ws, w_dim] latent."""
        return self.synthesis(broadcast_w(w, self.num_ws), **kwargs)

    @property
    def precision(self) -> torch.dtype:
        """The precision of the top synthesis block's convolutions (where most of the work is)."""
        return self.synthesis.blocks()[-1].dtype

    def reduced_resolutions(self, reduced_res: int | None = None) -> tuple[int, ...]:
        """The block resolutions ``to_precision`` reduces: NVIDIA's rule for ``num_fp16_res = n``, blocks at
        ``res >= max(2 ** (log2(R) + 1 - n), 8)`` (never the 4x4 block). n: ``reduced_res``, else the file's
        ``num_fp16_res``, else ``DEFAULT_REDUCED_RES``."""
        n = reduced_res if reduced_res is not None else (self.cfg.num_fp16_res or DEFAULT_REDUCED_RES)
        if n < 0:
            raise ValueError(f"reduced_res must be >= 0, got {n}")
        lowest = max(2 ** (_log2_resolution(self.img_resolution) + 1 - n), 8)
        return tuple(r for r in self.cfg.resolutions if r >= lowest)

    def to_precision(self, dtype: torch.dtype, *, reduced_res: int | None = None) -> Generator:
        """Run in ``dtype`` (in place; returns self). float32 / float64: the whole network in that dtype.
        float16 / bfloat16: NVIDIA's mixed precision: the network in float32, then the convolutions of the blocks
        ``reduced_resolutions(reduced_res)`` in ``dtype`` (weights, biases, stored noise; their style layers stay
        float32); the mapping, ``w_avg``, truncation, styles, demodulation and the skip image stay float32.
        Reducing rounds the weights: keep a float32 copy to go back."""
        if dtype not in (torch.float32, torch.float64) + REDUCED_DTYPES:
            raise ValueError(f"a generator runs in float32, float64, float16 or bfloat16, not {dtype}")
        if dtype in REDUCED_DTYPES:
            self.to(torch.float32)
            for r in self.reduced_resolutions(reduced_res):
                getattr(self.synthesis, f"b{r}").reduce_precision(dtype)
        else:
            self.to(dtype)
        return self


class Conv2dLayer(nn.Module):
    """Equalised conv (optionally FIR-filtered 2x downsampling), bias, optional leaky ReLU, clamp."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activation: bool = True, down: bool = False, conv_clamp: float | None = None,
                 taps: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.activation = activation
        self.down = down
        self.conv_clamp = conv_clamp
        self.kernel_size = kernel_size
        self.register_buffer("taps", taps.clone(), persistent=False)

    def forward(self, x: torch.Tensor, *, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        k = self.kernel_size
        if self.down:
            p = (self.taps.numel() - 2) + (k - 1)
            pad = ((p + 1) // 2, p // 2)
            if k == 1:
                x = F.conv2d(upfirdn2d(x, self.taps, down=2, pad=pad), w)
            else:
                x = F.conv2d(upfirdn2d(x, self.taps, pad=pad), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=k // 2)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        if self.activation:
            return bias_lrelu(x, self.bias, gain=gain, clamp=clamp)
        if self.bias is not None:
            x = x + self.bias.view(1, -1, 1, 1)
        x = x * gain if gain != 1 else x
        return x.clamp(-clamp, clamp) if clamp is not None else x


class DiscriminatorBlock(nn.Module):
    """Residual block at one resolution: [fromrgb], conv0, conv1 (down), 1x1 skip (down); (main + skip) / sqrt 2."""

    def __init__(self, tmp_channels: int, out_channels: int, *, first: bool, img_channels: int,
                 conv_clamp: float | None, taps: torch.Tensor):
        super().__init__()
        if first:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, conv_clamp=conv_clamp, taps=taps)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, conv_clamp=conv_clamp, taps=taps)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, down=True, conv_clamp=conv_clamp, taps=taps)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, activation=False, down=True, taps=taps)
        self.first = first

    def forward(self, x: torch.Tensor, img: torch.Tensor | None) -> torch.Tensor:
        if self.first:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


def minibatch_stddev(x: torch.Tensor, *, group_size: int | None, num_channels: int) -> torch.Tensor:
    """Append the minibatch standard deviation channel(s): [B, C, H, W] -> [B, C + num_channels, H, W].

    Groups are strided (sample b belongs to group b mod (B / G)); population variance over each group.
    """
    b, c, h, w = x.shape
    g = min(group_size, b) if group_size is not None else b
    if b % g:
        raise ValueError(f"batch size {b} must be divisible by the minibatch-stddev group size {g}")
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)  # [G, n, F, c, H, W]
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()  # [n, F, c, H, W]
    y = y.mean(dim=(2, 3, 4)).reshape(-1, f, 1, 1)  # [n, F, 1, 1]
    y = y.repeat(g, 1, h, w)  # [B, F, H, W]
    return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch stddev, conv, fc, out."""

    def __init__(self, channels: int, *, cfg: DiscriminatorConfig, taps: torch.Tensor):
        super().__init__()
        self.conv = Conv2dLayer(channels + cfg.mbstd_num_channels, channels, 3, conv_clamp=cfg.conv_clamp,
                                taps=taps)
        self.fc = FullyConnected(channels * 16, channels, activation=True)
        self.out = FullyConnected(channels, 1)
        self.group_size = cfg.mbstd_group_size
        self.num_channels = cfg.mbstd_num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, 4, 4] -> [B, 1]
        if self.num_channels > 0:
            x = minibatch_stddev(x, group_size=self.group_size, num_channels=self.num_channels)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: image [B, C, R, R] in [-1, 1] -> logits [B, 1]."""

    def __init__(self, cfg: DiscriminatorConfig, *, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        taps = fir_taps(cfg.resample_filter)
        ch = dict(zip(cfg.resolutions, cfg.channels))
        for res in reversed(cfg.resolutions[1:]):
            self.add_module(f"b{res}", DiscriminatorBlock(ch[res], ch[res // 2], first=res == cfg.img_resolution,
                                                          img_channels=cfg.img_channels,
                                                          conv_clamp=cfg.conv_clamp, taps=taps))
        self.b4 = DiscriminatorEpilogue(ch[4], cfg=cfg, taps=taps)
        init_weights(self, seed=seed)

    img_resolution = property(lambda self: self.cfg.img_resolution)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        r, c = self.cfg.img_resolution, self.cfg.img_channels
        if img.ndim != 4 or img.shape[1:] != (c, r, r):
            raise ValueError(f"images must be [B, {c}, {r}, {r}], got shape {tuple(img.shape)}")
        x = None
        img = img.to(self.b4.conv.weight.dtype)
        for res in reversed(self.cfg.resolutions[1:]):
            x = getattr(self, f"b{res}")(x, img)
        return self.b4(x)


def init_weights(module: nn.Module, *, seed: int) -> None:
    """Initialise every parameter and noise buffer the StyleGAN2 way from one explicit seed.

    Weights ~ N(0, 1) / lr_mult (equalised learning rate), biases at their init value (1 for modulation),
    noise strengths 0, constant input and stored noise ~ N(0, 1).
    """
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, FullyConnected):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.lr_mult)
                m.bias.fill_(m.bias_init)
            elif isinstance(m, (SynthesisLayer, ToRGB, Conv2dLayer)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                if m.bias is not None:
                    m.bias.zero_()
                if isinstance(m, SynthesisLayer) and m.use_noise:
                    m.noise_strength.zero_()
                    m.noise_const.copy_(torch.randn(m.noise_const.shape, generator=g))
            elif isinstance(m, SynthesisBlock) and m.resolution == 4:
                m.const.copy_(torch.randn(m.const.shape, generator=g))


__all__ = [
    "GeneratorConfig", "DiscriminatorConfig", "Generator", "Discriminator", "channels_from_base",
    "minibatch_stddev", "init_weights", "REDUCED_DTYPES",
]
