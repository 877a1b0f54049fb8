"""The e4e photo encoder (Tov et al. 2021, "Designing an Encoder for StyleGAN Image Manipulation"): an aligned face
-> a W+ latent of the StyleGAN2 generator it was trained with, in one forward pass.

Architecture (``Encoder4Editing``; attribute names follow the published checkpoints' ``encoder.*`` keys):

* ``input_layer``: 3x3 conv (no bias), BatchNorm, PReLU at full resolution.
* ``body``: IR (or IR-SE, with a squeeze-excitation module) bottleneck units in four blocks (3, 4, 14, 3 units in the
  published 50-layer network); each block's first unit halves the resolution. Unit: ``res_layer(x) +
  shortcut_layer(x)``, where ``res_layer`` = BN, 3x3 conv, PReLU, strided 3x3 conv, BN [, SE] and the shortcut is a
  strided subsampling (same width) or a strided 1x1 conv + BN (new width).
* taps: the last units of blocks 2, 3, 4 give ``c1`` (input/4), ``c2`` (input/8), ``c3`` (input/16).
* FPN: ``p2 = up(c3) + latlayer1(c2)``, ``p1 = up(p2) + latlayer2(c1)`` (bilinear, ``align_corners=True``).
* ``styles``: one ``GradualStyleBlock`` per W+ row: strided 3x3 convs + LeakyReLU(0.01) down to 1x1, then an
  equalised linear layer. Rows ``< coarse_ind`` read ``c3``, rows ``< middle_ind`` read ``p2``, the rest ``p1``.
* codes: ``w0 = styles[0](c3)`` for every row, plus ``delta_i = styles[i](...)`` on row ``i`` for ``i = 1 ..
  min(stage, n_styles - 1)``; inference uses every delta (``stage=None``). The codes are offsets from the generator's
  average latent: ``W+ = codes + latent_avg`` (``encode``).

BatchNorm layers use their running statistics (call ``eval()``, as the loader does). The module computes in
float32; the input is RGB in [-1, 1] at ``cfg.input_size`` (256 for the published models), see ``prepare_photos``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from engine.errors import ModelFormatError
from engine.files.configs import DictForm
from engine.files.loading import ModelInfo
from engine.models.stylegan2 import FullyConnected, Generator

MODES = ("ir", "ir_se")
STYLE_SLOPE = 0.01  # nn.LeakyReLU's default, what the style blocks use
AVERAGES = ("file", "generator", "none")


@dataclass(frozen=True)
class E4EConfig(DictForm, what="the e4e encoder's architecture"):
    """Architecture of an ``Encoder4Editing``; everything needed to rebuild it (the loader infers it from the weights).

    mode: "ir_se" (bottlenecks with squeeze-excitation, the published models) or "ir".
    stem_channels: width of ``input_layer``. depths / units: width and unit count of each of the four body blocks.
    se_reduction: the SE bottleneck is ``depth // se_reduction`` wide (None for "ir").
    n_styles / w_dim: the W+ shape [n_styles, w_dim]. coarse_ind / middle_ind: style rows below ``coarse_ind`` read
    ``c3``, below ``middle_ind`` ``p2``, the rest ``p1``. input_size: the square input side (a multiple of 16).
    """

    mode: str
    stem_channels: int
    depths: tuple[int, ...]
    units: tuple[int, ...]
    se_reduction: int | None
    n_styles: int
    w_dim: int
    coarse_ind: int
    middle_ind: int
    input_size: int

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if len(self.depths) != 4 or len(self.units) != 4:
            raise ValueError(f"the body has four blocks: depths and units need 4 entries each, got {len(self.depths)} "
                             f"and {len(self.units)}")
        if min(self.depths) <= 0 or min(self.units) <= 0 or self.stem_channels <= 0:
            raise ValueError(f"widths and unit counts must be positive, got stem {self.stem_channels}, depths "
                             f"{self.depths}, units {self.units}")
        if (self.mode == "ir_se") != (self.se_reduction is not None):
            raise ValueError(f"se_reduction is needed by mode 'ir_se' and only by it (mode {self.mode!r}, "
                             f"se_reduction {self.se_reduction})")
        if self.se_reduction is not None and not 0 < self.se_reduction <= min(self.depths):
            raise ValueError(f"se_reduction must be between 1 and the narrowest depth {min(self.depths)}, got "
                             f"{self.se_reduction}")
        if self.n_styles < 1 or self.w_dim < 1:
            raise ValueError(f"n_styles and w_dim must be positive, got {self.n_styles} and {self.w_dim}")
        if not 1 <= self.coarse_ind <= self.middle_ind <= self.n_styles:
            raise ValueError(f"need 1 <= coarse_ind <= middle_ind <= n_styles, got {self.coarse_ind}, "
                             f"{self.middle_ind}, {self.n_styles}")
        side = self.input_size // 16
        if self.input_size % 16 or side < 2 or side & (side - 1):
            raise ValueError(f"input_size must be 16 times a power of two >= 2, got {self.input_size}")

    @property
    def taps(self) -> tuple[int, int, int]:
        """Body unit indices of c1, c2, c3: the last units of blocks 2, 3, 4 (6, 20, 23 in the 50-layer network)."""
        ends = np.cumsum(self.units) - 1
        return int(ends[1]), int(ends[2]), int(ends[3])

    def style_spatial(self, i: int) -> int:
        """Side of the feature map style row ``i`` reads: c3 (input/16), p2 (input/8) or p1 (input/4)."""
        base = self.input_size // 16
        return base if i < self.coarse_ind else 2 * base if i < self.middle_ind else 4 * base


class SqueezeExcite(nn.Module):
    """Channel attention: global average -> 1x1 conv (C -> C/r) -> ReLU -> 1x1 conv -> sigmoid, times the input."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W]
        s = F.adaptive_avg_pool2d(x, 1)  # [B, C, 1, 1]
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class Bottleneck(nn.Module):
    """One IR / IR-SE unit: ``res_layer(x) + shortcut_layer(x)``, [B, in, H, W] -> [B, depth, H/s, W/s]."""

    def __init__(self, in_channels: int, depth: int, stride: int, *, se_reduction: int | None):
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)  # plain strided subsampling, no parameters
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        layers = [nn.BatchNorm2d(in_channels), nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
                  nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth)]
        if se_reduction is not None:
            layers.append(SqueezeExcite(depth, se_reduction))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class GradualStyleBlock(nn.Module):
    """A feature map [B, in, S, S] -> one W+ row [B, out]: log2(S) strided 3x3 convs with LeakyReLU to 1x1, then an
    equalised linear layer."""

    def __init__(self, in_channels: int, out_channels: int, spatial: int):
        super().__init__()
        layers: list[nn.Module] = []
        for k in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_channels if k == 0 else out_channels, out_channels, 3, 2, 1),
                       nn.LeakyReLU(STYLE_SLOPE)]
        self.convs = nn.Sequential(*layers)
        self.linear = FullyConnected(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)  # [B, out, 1, 1] for the input size the block was built for
        if x.shape[-2:] != (1, 1):
            raise ValueError(f"a style block's features reduced to {tuple(x.shape[-2:])}, not 1x1: the input image "
                             "has the wrong size")
        return self.linear(x.flatten(1))  # [B, out]


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x`` bilinearly resized (corners aligned) to ``y``'s size, plus ``y``."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


@dataclass(frozen=True)
class E4EFeatures:
    """The encoder's intermediate maps for one batch (``Encoder4Editing.features``)."""

    stem: torch.Tensor  # [B, stem_channels, S, S]
    c1: torch.Tensor  # [B, depths[1], S/4, S/4]
    c2: torch.Tensor  # [B, depths[2], S/8, S/8]
    c3: torch.Tensor  # [B, depths[3], S/16, S/16]
    p2: torch.Tensor  # [B, depths[3], S/8, S/8]
    p1: torch.Tensor  # [B, depths[3], S/4, S/4]
    styles: torch.Tensor  # [B, n_styles, w_dim] raw block outputs: row 0 = w0, row i > 0 = delta_i
    codes: torch.Tensor  # [B, n_styles, w_dim] what ``forward`` returns at inference


class Encoder4Editing(nn.Module):
    """images [B, 3, S, S] in [-1, 1] (RGB, S = cfg.input_size) -> codes [B, n_styles, w_dim] (offsets from the
    generator's average latent). See the module docstring."""

    def __init__(self, cfg: E4EConfig, *, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        with torch.random.fork_rng(devices=[]):  # layer init draws from a local seed, never the caller's RNG
            torch.manual_seed(int(seed))
            self.input_layer = nn.Sequential(nn.Conv2d(3, cfg.stem_channels, 3, 1, 1, bias=False),
                                             nn.BatchNorm2d(cfg.stem_channels), nn.PReLU(cfg.stem_channels))
            units, width = [], cfg.stem_channels
            for depth, count in zip(cfg.depths, cfg.units):
                for k in range(count):
                    units.append(Bottleneck(width, depth, 2 if k == 0 else 1, se_reduction=cfg.se_reduction))
                    width = depth
            self.body = nn.Sequential(*units)
            top = cfg.depths[3]  # c3's width, also the FPN's
            self.styles = nn.ModuleList(GradualStyleBlock(top, cfg.w_dim, cfg.style_spatial(i))
                                        for i in range(cfg.n_styles))
            self.latlayer1 = nn.Conv2d(cfg.depths[2], top, 1)
            self.latlayer2 = nn.Conv2d(cfg.depths[1], top, 1)
            for block in self.styles:
                nn.init.normal_(block.linear.weight)
                nn.init.zeros_(block.linear.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        s = self.cfg.input_size
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, {s}, {s}], got shape {tuple(x.shape)}")

    def _body(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(stem, c1, c2, c3) of images [B, 3, S, S]."""
        self._check_input(x)
        stem = self.input_layer(x)  # [B, stem_channels, S, S]
        taps = self.cfg.taps
        out = {}
        h = stem
        for i, unit in enumerate(self.body):
            h = unit(h)
            if i in taps:
                out[i] = h
        return stem, out[taps[0]], out[taps[1]], out[taps[2]]

    def _source(self, i: int, c3: torch.Tensor, p2, p1) -> torch.Tensor:
        return c3 if i < self.cfg.coarse_ind else p2 if i < self.cfg.middle_ind else p1

    def forward(self, x: torch.Tensor, *, stage: int | None = None) -> torch.Tensor:
        """codes [B, n_styles, w_dim] of images x [B, 3, S, S]. stage: add deltas 1 .. stage only (the training's
        progressive stages; 0 = w0 on every row); None = every delta (inference)."""
        n = self.cfg.n_styles
        last = n - 1 if stage is None else min(int(stage), n - 1)
        if last < 0:
            raise ValueError(f"stage must be >= 0, got {stage}")
        _, c1, c2, c3 = self._body(x)
        w0 = self.styles[0](c3)  # [B, w_dim]
        w = w0.unsqueeze(1).repeat(1, n, 1)  # [B, n_styles, w_dim]
        p2 = _upsample_add(c3, self.latlayer1(c2)) if last >= self.cfg.coarse_ind else None  # [B, C, S/8, S/8]
        p1 = _upsample_add(p2, self.latlayer2(c1)) if last >= self.cfg.middle_ind else None  # [B, C, S/4, S/4]
        for i in range(1, last + 1):
            w[:, i] += self.styles[i](self._source(i, c3, p2, p1))
        return w

    def features(self, x: torch.Tensor) -> E4EFeatures:
        """Every intermediate map of images x [B, 3, S, S] and all style blocks' raw outputs (for checks)."""
        stem, c1, c2, c3 = self._body(x)
        p2 = _upsample_add(c3, self.latlayer1(c2))
        p1 = _upsample_add(p2, self.latlayer2(c1))
        styles = torch.stack([block(self._source(i, c3, p2, p1)) for i, block in enumerate(self.styles)], 1)
        codes = styles[:, :1] + torch.cat([torch.zeros_like(styles[:, :1]), styles[:, 1:]], 1)
        return E4EFeatures(stem, c1, c2, c3, p2, p1, styles, codes)


@dataclass(frozen=True, eq=False)
class E4E:
    """An opened e4e model: the encoder, how its codes become W+ latents, and the generator they are meant for.

    latent_avg: [n_styles, w_dim] the file's average latent (None when it has none). average: what ``encode`` adds
    to the codes: "file" (``latent_avg``), "generator" (the generator's ``w_avg``, for files trained to start from
    the average that do not store it) or "none". generator: the file's own decoder (a rosinality StyleGAN2), or one
    paired with ``pair_with``, or None. input_shape: (H, W) photos are resized to (``prepare_photos``).
    opts: the training options the file stores (a plain dict, possibly empty). info: where it came from.
    """

    encoder: Encoder4Editing
    latent_avg: torch.Tensor | None
    average: str
    opts: dict
    generator: Generator | None
    input_shape: tuple[int, int]
    info: ModelInfo

    def __post_init__(self):
        if self.average not in AVERAGES:
            raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {self.average!r}")
        cfg = self.encoder.cfg
        if self.latent_avg is not None and tuple(self.latent_avg.shape) != (cfg.n_styles, cfg.w_dim):
            raise ValueError(f"latent_avg must be [{cfg.n_styles}, {cfg.w_dim}], got {tuple(self.latent_avg.shape)}")
        if self.average == "file" and self.latent_avg is None:
            raise ValueError("average 'file' needs a latent_avg")
        if self.generator is not None:
            check_pairing(cfg, self.generator)

    @property
    def cfg(self) -> E4EConfig:
        return self.encoder.cfg

    def pair_with(self, generator: Generator, *, name: str | None = None) -> E4E:
        """This model with ``generator`` as the one its latents are rendered by (refused, naming both, when its W+
        shape differs). ``name`` names the generator in messages (default: its file's name)."""
        check_pairing(self.cfg, generator, name=name, encoder_name=_name(self.info))
        return dataclasses.replace(self, generator=generator)

    def to(self, device) -> E4E:
        """The same model on ``device`` (encoder, average and generator)."""
        return dataclasses.replace(
            self, encoder=self.encoder.to(device),
            latent_avg=None if self.latent_avg is None else self.latent_avg.to(device),
            generator=None if self.generator is None else self.generator.to(device))


def _name(info: ModelInfo | None, default: str = "the e4e encoder") -> str:
    path = getattr(info, "path", None)
    return f"the e4e encoder {Path(path).name}" if path else default


def check_pairing(cfg: E4EConfig, generator: Generator, *, name: str | None = None,
                  encoder_name: str = "the e4e encoder") -> None:
    """Refuse (``ModelFormatError``, naming both) a generator whose W+ latents are not the encoder's
    [n_styles, w_dim] (the average latent, checked to be [n_styles, w_dim] on loading, then fits it too)."""
    if name is None:
        path = getattr(getattr(generator, "model_info", None), "path", None)
        name = f"the generator {Path(path).name}" if path else "the generator"
    if (generator.num_ws, generator.w_dim) != (cfg.n_styles, cfg.w_dim):
        size = 2 ** ((cfg.n_styles + 2) // 2)
        raise ModelFormatError(f"{encoder_name} makes W+ latents of {cfg.n_styles} rows x {cfg.w_dim} values (a "
                               f"{size} px StyleGAN2), but {name} takes {generator.num_ws} rows x {generator.w_dim} "
                               f"values ({generator.img_resolution} px): choose a generator of the architecture the "
                               "encoder was trained for")


def encode(e4e: E4E, images: torch.Tensor, *, stage: int | None = None) -> torch.Tensor:
    """W+ latents [B, n_styles, w_dim] of aligned faces ``images`` [B, 3, H, W] (RGB in [-1, 1], H x W =
    ``e4e.input_shape``; ``prepare_photos`` makes them): the encoder's codes plus the average latent
    (``e4e.average``). ``stage``: progressive stage (None: every delta, as inference uses). No gradients."""
    h, w = e4e.input_shape
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, h, w):
        raise ValueError(f"images must be [B, 3, {h}, {w}] (RGB in [-1, 1]; prepare_photos resizes photos), got "
                         f"shape {tuple(images.shape)}")
    param = next(e4e.encoder.parameters())
    with torch.no_grad():
        codes = e4e.encoder(images.to(param.device, torch.float32), stage=stage)  # [B, n_styles, w_dim]
        if e4e.average == "file":
            return codes + e4e.latent_avg.to(codes.device)[None]
        if e4e.average == "generator":
            if e4e.generator is None:
                raise ValueError(f"{_name(e4e.info)} stores no average latent: its latents are relative to the "
                                 "generator's, so pair it with its generator before encoding")
            return codes + e4e.generator.w_avg.to(codes.device)[None, None]
        return codes


def prepare_photos(e4e: E4E, images) -> torch.Tensor:
    """Aligned faces as e4e's inference expects them: [B, 3, H, W] float32 RGB in [-1, 1], H x W = input_shape.

    ``images``: uint8 RGB arrays [h, w, 3] or [B, h, w, 3] (resized like torchvision's ``Resize`` of a PIL image:
    PIL's bilinear filter, antialiased, on the 8-bit image; then ``(k / 255 - 0.5) / 0.5``), or a float tensor
    [B, 3, h, w] already in [-1, 1] (resized by antialiased bilinear interpolation). The faces must be aligned as
    the encoder's training data were: FFHQ's recipe (``engine.photos.align.face_transform(face, size=256,
    recipe="ffhq")`` then ``align_image``; e4e aligns straight to 256 px with dlib's 68 landmarks).
    """
    h, w = e4e.input_shape
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"image tensors must be float [B, 3, H, W] in [-1, 1], got {images.dtype} "
                             f"{tuple(images.shape)}")
        x = images.to(torch.float32)
        if tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        return x
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"photos must be uint8 RGB arrays [H, W, 3] or [B, H, W, 3], got {a.dtype} {a.shape}")
    if a.shape[1:3] != (h, w):
        a = np.stack([np.asarray(Image.fromarray(im).resize((w, h), Image.BILINEAR)) for im in a])
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).to(torch.float32) / 255  # [B, 3, H, W]
    return (x - 0.5) / 0.5


__all__ = ["E4EConfig", "Encoder4Editing", "E4EFeatures", "E4E", "check_pairing", "encode", "prepare_photos"]
