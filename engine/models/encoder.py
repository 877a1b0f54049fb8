"""A small convolutional encoder that maps an aligned face to a W+ latent of one generator: the inversion's first guess.

The network is a residual CNN (no normalisation layers, so train and eval behave alike): a 1x1 ``fromrgb``, one
residual block per resolution ``R, R/2, ..., 8`` (3x3 conv, strided 3x3 conv, and an average-pooled 1x1 shortcut),
a 3x3 conv at 4x4 down to ``head_channels``, then two fully connected layers. The last one predicts every W+ row
as an offset in a *normalised* W space: ``ws = w_avg + w_scale * offsets``, where the buffers ``w_avg`` (the
generator's truncation target) and ``w_scale`` (the per-dimension spread of its mapped latents) are stored with the
weights. The last layer starts at zero, so an untrained encoder answers ``w_avg`` for every image.

Layout of a file (a ``torch.save`` of plain containers, loadable with ``weights_only=True``)::

    {"format": "face-editor/encoder", "format_version": 1,
     "arch": cfg.to_dict(), "state_dict": {...},          # includes the w_avg / w_scale buffers
     "info": {...}}                                              # plain JSON-like values: generator_sha256, kimg, ...

The weights may be stored in float16 (the released encoder is: half the file, the same figures to 1e-3 dB); the
buffers are always float32, and a loaded encoder computes in float32.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ModelFormatError
from engine.files.checkpoints import atomic_torch_save, load_module, module_checkpoint
from engine.files.configs import DictForm
from engine.models.meta import skip_init
from engine.models.ops import LRELU_SLOPE, SQRT2
from engine.models.stylegan2 import GeneratorConfig, channels_from_base

FORMAT = "face-editor/encoder"
FORMAT_VERSION = 1


def _log2(resolution: int) -> int:
    r = int(resolution)
    if r < 8 or r & (r - 1):
        raise ValueError(f"the encoder's resolution must be a power of two >= 8, got {resolution}")
    return r.bit_length() - 1


@dataclass(frozen=True)
class EncoderConfig(DictForm, what="the encoder's architecture"):
    """Architecture of an encoder; everything needed to rebuild it.

    resolution: input size (images of another size are resized to it). num_ws / w_dim: the W+ shape it predicts.
    channels: widths at resolutions ``resolution, resolution/2, ..., 4`` (one per level).
    head_channels: channels of the 4x4 map flattened into the first FC layer; hidden: width of that layer.
    """

    resolution: int
    num_ws: int
    w_dim: int
    channels: tuple[int, ...]
    head_channels: int = 64
    hidden: int = 256
    img_channels: int = 3

    def __post_init__(self):
        n = _log2(self.resolution)
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != n - 1:
            raise ValueError(f"channels must list one width per resolution {self.resolution}..4 ({n - 1} values), "
                             f"got {len(self.channels)}")
        for name in ("num_ws", "w_dim", "head_channels", "hidden", "img_channels"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if min(self.channels) <= 0:
            raise ValueError(f"channels must be positive, got {list(self.channels)}")

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Resolutions of the levels, input first: R, R/2, ..., 4."""
        return tuple(self.resolution >> i for i in range(len(self.channels)))

    @classmethod
    def for_generator(cls, g: GeneratorConfig, *, resolution: int | None = None, channel_base: int = 2048,
                      channel_max: int = 128, channel_min: int = 16, head_channels: int = 64,
                      hidden: int = 256) -> EncoderConfig:
        """An encoder for generator config ``g``: input at ``resolution`` (default: the generator's, at most 256),
        widths ``min(max(channel_base / res, channel_min), channel_max)``."""
        res = int(resolution or min(g.img_resolution, 256))
        widths = channels_from_base(res, channel_base=channel_base, channel_max=channel_max)  # at 4 .. res
        return cls(resolution=res, num_ws=g.num_ws, w_dim=g.w_dim,
                   channels=tuple(min(max(c, channel_min), channel_max) for c in reversed(widths)),
                   head_channels=head_channels, hidden=hidden, img_channels=g.img_channels)


def _conv(cin: int, cout: int, k: int, *, stride: int = 1) -> nn.Conv2d:
    """A 'same' convolution left uninitialised (``init_weights`` fills it from an explicit seed)."""
    return skip_init(nn.Conv2d, cin, cout, k, stride=stride, padding=k // 2)


class DownBlock(nn.Module):
    """lrelu(conv3x3) then lrelu(strided conv3x3), plus avgpool + 1x1 shortcut; sum / sqrt 2.
    [B, Ci, r, r] -> [B, Co, r/2, r/2]"""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv0 = _conv(cin, cin, 3)
        self.conv1 = _conv(cin, cout, 3, stride=2)
        self.skip = skip_init(nn.Conv2d, cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv1(F.leaky_relu(self.conv0(x), LRELU_SLOPE)), LRELU_SLOPE)
        return (y + self.skip(F.avg_pool2d(x, 2))) / SQRT2


class Encoder(nn.Module):
    """Image [B, 3, H, W] in [-1, 1] -> W+ latent [B, num_ws, w_dim] of the generator it was trained for.

    ``info``: metadata stored with the weights (``generator_sha256`` of that generator, ``kimg``, held-out
    ``figures`` ...); empty for a fresh network.
    """

    def __init__(self, cfg: EncoderConfig, *, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.fromrgb = _conv(cfg.img_channels, c[0], 1)
        self.blocks = nn.ModuleList(DownBlock(c[i], c[i + 1]) for i in range(len(c) - 1))
        self.conv4 = _conv(c[-1], cfg.head_channels, 3)
        self.fc = skip_init(nn.Linear, cfg.head_channels * 16, cfg.hidden)
        self.head = skip_init(nn.Linear, cfg.hidden, cfg.num_ws * cfg.w_dim)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        self.register_buffer("w_scale", torch.ones(cfg.w_dim))
        self.info: dict = {}
        init_weights(self, seed=seed)

    def set_latent_stats(self, w_avg: torch.Tensor, w_scale: torch.Tensor) -> None:
        """Set the normalised space: the centre [w_dim] and the per-dimension scale [w_dim] (positive)."""
        w_avg, w_scale = (torch.as_tensor(t, dtype=torch.float32).reshape(-1) for t in (w_avg, w_scale))
        if w_avg.numel() != self.cfg.w_dim or w_scale.numel() != self.cfg.w_dim:
            raise ValueError(f"w_avg and w_scale need {self.cfg.w_dim} values each, got {w_avg.numel()} and "
                             f"{w_scale.numel()}")
        if not (w_scale > 0).all():
            raise ValueError("w_scale must be positive")
        with torch.no_grad():
            self.w_avg.copy_(w_avg)
            self.w_scale.copy_(w_scale)

    def prepare(self, img: torch.Tensor) -> torch.Tensor:
        """Check the shape and resize a square image to the input size (antialiased bilinear). -> [B, 3, R, R]"""
        if img.ndim != 4 or img.shape[1] != self.cfg.img_channels or img.shape[2] != img.shape[3]:
            raise ValueError(f"images must be square [B, {self.cfg.img_channels}, H, H] in [-1, 1], got shape "
                             f"{tuple(img.shape)}")
        x = img.to(self.w_avg.device, torch.float32)
        r = self.cfg.resolution
        if x.shape[-1] != r:
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        return x

    def offsets(self, img: torch.Tensor) -> torch.Tensor:
        """The prediction in the normalised space. [B, 3, H, H] -> [B, num_ws, w_dim]"""
        x = F.leaky_relu(self.fromrgb(self.prepare(img)), LRELU_SLOPE)  # [B, C0, R, R]
        for block in self.blocks:
            x = block(x)  # halves the resolution
        x = F.leaky_relu(self.conv4(x), LRELU_SLOPE)  # [B, head_channels, 4, 4]
        h = F.leaky_relu(self.fc(x.flatten(1)), LRELU_SLOPE)  # [B, hidden]
        return self.head(h).view(-1, self.cfg.num_ws, self.cfg.w_dim)

    def normalise(self, ws: torch.Tensor) -> torch.Tensor:
        """W+ -> the normalised space. [B, num_ws, w_dim] -> same"""
        return (ws - self.w_avg) / self.w_scale

    def denormalise(self, offsets: torch.Tensor) -> torch.Tensor:
        """The normalised space -> W+. [B, num_ws, w_dim] -> same"""
        return self.w_avg + offsets * self.w_scale

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, H] in [-1, 1] -> ws [B, num_ws, w_dim]"""
        return self.denormalise(self.offsets(img))


def init_weights(module: Encoder, *, seed: int) -> None:
    """He-normal convolutions and linear layers (leaky ReLU gain) from one explicit seed, zero biases, the W+
    head at zero (the encoder starts at ``w_avg``)."""
    g = torch.Generator().manual_seed(int(seed))
    gain = math.sqrt(2.0 / (1.0 + LRELU_SLOPE**2))
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (gain / math.sqrt(fan_in)))
                if m.bias is not None:
                    m.bias.zero_()
        module.head.weight.zero_()


def check_compatible(encoder: Encoder, g: GeneratorConfig) -> None:
    """Refuse an encoder whose W+ shape is not the generator's (``ModelFormatError``). Whether it was trained for
    that very generator is ``encoder.info['generator_sha256'] == G.model_info.sha256``."""
    c = encoder.cfg
    if (c.num_ws, c.w_dim) != (g.num_ws, g.w_dim):
        raise ModelFormatError(f"the encoder predicts W+ [{c.num_ws}, {c.w_dim}], the generator takes "
                               f"[{g.num_ws}, {g.w_dim}]: it belongs to another generator")


STORAGE_DTYPES = (torch.float32, torch.float16)


def encoder_checkpoint(encoder: Encoder, *, info: dict | None = None, dtype: torch.dtype = torch.float32) -> dict:
    """The project-format dict of ``encoder``: CPU copies of the weights in ``dtype`` (float32 or float16) and of
    the buffers in float32."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"encoder weights are stored as float32 or float16, not {dtype}")
    info = dict(info or {})
    try:
        json.dumps(info)
    except (TypeError, ValueError) as e:
        raise ValueError(f"encoder info must hold plain values (str, numbers, lists, dicts): {e}") from None
    return module_checkpoint(encoder, fmt=FORMAT, version=FORMAT_VERSION, meta_key="info", meta=info,
                             weights_dtype=dtype)


def save_encoder(path: str | os.PathLike, encoder: Encoder, *, info: dict | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
    """Write ``encoder`` with ``info`` in the project's format (weights in ``dtype``), atomically."""
    atomic_torch_save(encoder_checkpoint(encoder, info=info, dtype=dtype), path)


def load_encoder(source) -> Encoder:
    """An encoder (eval mode, CPU) from a project-format file or dict, with ``encoder.info``; anything else is a
    ``ModelFormatError`` that says what was found."""
    return load_module(source, fmt=FORMAT, version=FORMAT_VERSION, noun="an encoder", label="encoder",
                       config_cls=EncoderConfig, module_cls=Encoder, meta_key="info", state_dtypes=STORAGE_DTYPES,
                       check=lambda e: None if (e.w_scale > 0).all() else "its w_scale is not positive everywhere")


__all__ = ["EncoderConfig", "Encoder", "DownBlock", "init_weights", "check_compatible", "encoder_checkpoint",
           "save_encoder", "load_encoder", "FORMAT", "FORMAT_VERSION", "STORAGE_DTYPES"]
