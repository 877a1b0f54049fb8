"""BicycleGAN (Zhu et al. 2017): U-Net generator G(A, z), VAE encoder E(B) -> (mu, logvar), multi-scale PatchGAN D.

Module trees and state-dict keys are those of ``junyanz/BicycleGAN`` (``latest_net_G.pth`` ...), so released files
load without renaming; numerics follow ``shared/reference/i2i/BICYCLEGAN_FACTS.md`` §1:

* G, z added to all layers (``where_add='all'``): every U-Net level concatenates z, tiled to its input's size, before
  its stride-2 down-convolution; keys ``model.down.0`` / ``model.submodule...down.1`` / ``...up.1``.
  z added to the input only (``where_add='input'``, pix2pix-style blocks): keys ``model.model.0``,
  ``model.model.1.model.1`` ... Both: ``num_downs`` levels (unet_256: 8, unet_128: 7) with widths
  ``ngf * min(2**k, 8)``; up-sampling ``basic`` (4x4 transposed conv) or ``bilinear`` (x2 + reflect pad + 3x3 conv).
* E: ``resnet`` (E_ResNet, a stride-2 conv then residual blocks with average pooling) or ``conv`` (E_NLayers); both
  end in AvgPool2d(8) and two linear heads ``fc`` (mu) and ``fcVar`` (log-variance).
* D: ``num_D`` PatchGANs (``model_0`` ... or ``model`` for one scale); scale i sees the image average-pooled i times.

Norms: ``instance`` (no parameters), ``batch`` (affine + running statistics), ``none``. The reference runs its
LeakyReLUs in place; where that rewrites a tensor that is used again (the skip of the input-only U-Net, the shortcut
of an un-normalised residual block), the rewritten value is used here too.

Constructors take a frozen config; ``seed=None`` leaves the weights uninitialised (for loaders, which fill every
tensor), an integer initialises them like the reference's ``init_net`` from that seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.files.configs import DictForm
from engine.models.i2i_common import (
    as_batch,
    check_positive,
    device_of,
    i2i_checkpoint,
    network_entry,
    pair_batches,
)
from engine.models.meta import materialise

NORMS = ("instance", "batch", "none")
NONLINEARITIES = ("relu", "lrelu", "elu")
UPSAMPLES = ("basic", "bilinear")
WHERE_ADD = ("all", "input")
ENCODERS = ("resnet", "conv")
INIT_TYPES = ("xavier", "normal", "kaiming", "orthogonal")

LRELU_SLOPE = 0.2
ENCODER_POOL = 8  # E's final AvgPool2d(8): the feature map must be 8..15 px for a 1x1 result


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")


@dataclass(frozen=True)
class UnetConfig(DictForm, what="the U-Net generator's architecture"):
    """Architecture of a BicycleGAN U-Net generator.

    input_nc/output_nc: image channels of A and B; nz: code size; ngf: width of the outermost level;
    num_downs: U-Net levels (inputs must be divisible by 2**num_downs); nl: non-linearity of the up path;
    use_dropout: Dropout(0.5) in the 8*ngf middle levels (train mode only).
    """

    input_nc: int = 3
    output_nc: int = 3
    nz: int = 8
    ngf: int = 64
    num_downs: int = 8
    norm: str = "instance"
    nl: str = "relu"
    upsample: str = "basic"
    where_add: str = "all"
    use_dropout: bool = False

    def __post_init__(self):
        check_positive(self, "input_nc", "output_nc", "ngf")
        if self.nz < 0:
            raise ValueError(f"nz must be >= 0, got {self.nz}")
        _choice("norm", self.norm, NORMS)
        _choice("nl", self.nl, NONLINEARITIES)
        _choice("upsample", self.upsample, UPSAMPLES)
        _choice("where_add", self.where_add, WHERE_ADD)
        if self.num_downs < 5:
            raise ValueError(f"num_downs must be >= 5 (4 widening levels and an innermost one), got {self.num_downs}")
        if self.where_add == "all" and self.nz == 0:
            raise ValueError("where_add='all' needs nz > 0 (the reference falls back to 'input' without a code)")

    def width(self, level: int) -> int:
        """Channels produced by the down-convolution of U-Net level ``level`` (0 = outermost)."""
        return self.ngf * min(2**level, 8)

    @property
    def size_multiple(self) -> int:
        """Input heights and widths must be multiples of this (the bottleneck is 1x1 at this size)."""
        return 2**self.num_downs


@dataclass(frozen=True)
class BicycleEncoderConfig(DictForm, what="the BicycleGAN encoder's architecture"):
    """Architecture of a BicycleGAN encoder.

    kind: ``resnet`` (E_ResNet) or ``conv`` (E_NLayers); input_nc: image channels (G's output_nc);
    n_layers: stride-2 reductions (resnet_256 / conv_256: 5, *_128: 4); vae_like: a log-variance head ``fcVar``.
    """

    kind: str = "resnet"
    input_nc: int = 3
    nz: int = 8
    nef: int = 64
    n_layers: int = 5
    norm: str = "instance"
    vae_like: bool = True

    def __post_init__(self):
        _choice("kind", self.kind, ENCODERS)
        _choice("norm", self.norm, NORMS)
        check_positive(self, "input_nc", "nz", "nef")
        if self.n_layers < 2:
            raise ValueError(f"n_layers must be >= 2, got {self.n_layers}")

    def widths(self) -> tuple[int, ...]:
        """Channels after the first conv and after each following block/conv."""
        if self.kind == "resnet":
            return tuple(self.nef * min(4, n + 1) for n in range(self.n_layers))
        return tuple(self.nef * min(2**n, 4) for n in range(self.n_layers))

    @property
    def image_size(self) -> int:
        """The size the encoder was designed for (sides from ``image_size`` to ``2 * image_size - 1`` work)."""
        return ENCODER_POOL * 2**self.n_layers


@dataclass(frozen=True)
class MultiscaleDiscriminatorConfig(DictForm, what="the discriminator's architecture"):
    """Architecture of a multi-scale PatchGAN discriminator.

    ndf: first-layer width of each scale (scale i sees the image downsampled i times; the reference uses
    ``round(ndf / 2**i)``); n_layers: stride-2 convs per scale (basic_256_multi: 3, basic_128_multi: 2).
    One scale is stored under ``model.*``, several under ``model_0.*``, ``model_1.*`` ...
    """

    input_nc: int = 3
    ndf: tuple[int, ...] = (64, 32)
    n_layers: int = 3
    norm: str = "instance"

    def __post_init__(self):
        object.__setattr__(self, "ndf", tuple(int(v) for v in self.ndf))
        _choice("norm", self.norm, NORMS)
        check_positive(self, "input_nc", "n_layers")
        if not self.ndf or min(self.ndf) <= 0:
            raise ValueError(f"ndf must list a positive width per scale, got {list(self.ndf)}")

    @property
    def num_D(self) -> int:
        return len(self.ndf)

    def widths(self, scale: int) -> tuple[int, ...]:
        """Output channels of the convs of one scale (the last is 1)."""
        base = self.ndf[scale]
        return tuple(base * min(2**n, 8) for n in range(self.n_layers + 1)) + (1,)


def default_ndf(ndf: int, num_D: int) -> tuple[int, ...]:
    """The reference's per-scale widths for ``--ndf`` and ``--num_Ds``: ``round(ndf / 2**i)``."""
    return tuple(int(round(ndf / 2**i)) for i in range(num_D))


def _norm(kind: str, channels: int) -> nn.Module | None:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return None


def _nonlinearity(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU()
    if kind == "lrelu":
        return nn.LeakyReLU(LRELU_SLOPE)
    return nn.ELU()


def _upsample(cin: int, cout: int, kind: str) -> list[nn.Module]:
    """x2 up-sampling layer(s): a 4x4 transposed conv, or bilinear x2 + reflect pad + 3x3 conv."""
    if kind == "basic":
        return [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
    return [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.ReflectionPad2d(1),
            nn.Conv2d(cin, cout, 3)]


def _tile(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B, nz] -> [B, nz, H, W] with H, W of ``like``."""
    return z[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3])


def _up_layers(inner_nc: int, outer_nc: int, cfg: UnetConfig, *, innermost: bool, outermost: bool,
               dropout: bool) -> list[nn.Module]:
    """The up path of a U-Net level (both block kinds): non-linearity, up-sampling to ``outer_nc`` channels (from
    the inner features, concatenated with their skip below the innermost level), then Tanh at the outermost level,
    else the norm and the optional Dropout(0.5)."""
    layers = [_nonlinearity(cfg.nl)] + _upsample(inner_nc if innermost else 2 * inner_nc, outer_nc, cfg.upsample)
    if outermost:
        layers.append(nn.Tanh())
    else:
        if (n := _norm(cfg.norm, outer_nc)) is not None:
            layers.append(n)
        if dropout:
            layers.append(nn.Dropout(0.5))
    return layers


class UnetBlockZ(nn.Module):
    """One level of the z-to-all-layers U-Net (reference ``UnetBlock_with_z``).

    [B, x_nc, H, W] and z [B, nz] -> [B, outer_nc + x_nc, H, W] (outermost: [B, outer_nc, H, W]).
    """

    def __init__(self, x_nc: int, outer_nc: int, inner_nc: int, nz: int, submodule: UnetBlockZ | None, *,
                 outermost: bool, cfg: UnetConfig, dropout: bool):
        super().__init__()
        self.outermost = outermost
        innermost = submodule is None
        down: list[nn.Module] = [] if outermost else [nn.LeakyReLU(LRELU_SLOPE)]
        down.append(nn.Conv2d(x_nc + nz, inner_nc, 4, stride=2, padding=1))
        if not outermost and not innermost and (n := _norm(cfg.norm, inner_nc)) is not None:
            down.append(n)
        self.down = nn.Sequential(*down)
        self.submodule = submodule
        self.up = nn.Sequential(*_up_layers(inner_nc, outer_nc, cfg, innermost=innermost, outermost=outermost,
                                            dropout=dropout))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.down(torch.cat([x, _tile(z, x)], 1))  # [B, inner, H/2, W/2]
        if self.submodule is not None:
            h = self.submodule(h, z)  # [B, 2*inner, H/2, W/2]
        h = self.up(h)  # [B, outer, H, W]
        return h if self.outermost else torch.cat([h, x], 1)


class UnetBlock(nn.Module):
    """One level of the input-only U-Net (reference ``UnetBlock``, pix2pix-style): keys ``model.{i}``.

    [B, x_nc, H, W] -> [B, outer_nc + x_nc, H, W] (outermost: [B, outer_nc, H, W]). The skip carries
    LeakyReLU(x): the reference's in-place LeakyReLU at the head of ``model`` rewrites x before it is concatenated.
    """

    def __init__(self, x_nc: int, outer_nc: int, inner_nc: int, submodule: UnetBlock | None, *,
                 outermost: bool, cfg: UnetConfig, dropout: bool):
        super().__init__()
        self.outermost = outermost
        innermost = submodule is None
        layers: list[nn.Module] = [] if outermost else [nn.LeakyReLU(LRELU_SLOPE)]
        layers.append(nn.Conv2d(x_nc, inner_nc, 4, stride=2, padding=1))
        if not outermost and not innermost and (n := _norm(cfg.norm, inner_nc)) is not None:
            layers.append(n)
        if submodule is not None:
            layers.append(submodule)
        layers += _up_layers(inner_nc, outer_nc, cfg, innermost=innermost, outermost=outermost, dropout=dropout)
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.model(x)
        return h if self.outermost else torch.cat([h, F.leaky_relu(x, LRELU_SLOPE)], 1)


class UnetGenerator(nn.Module):
    """G(A, z): [B, input_nc, H, W] in [-1, 1] and z [B, nz] -> B-like image [B, output_nc, H, W] in [-1, 1]."""

    def __init__(self, cfg: UnetConfig, *, seed: int | None = 0):
        super().__init__()
        self.cfg = cfg
        with torch.device("meta"):
            self.model = self._build(cfg)
        materialise(self)
        if seed is not None:
            init_weights(self, seed=seed)

    @staticmethod
    def _build(cfg: UnetConfig) -> nn.Module:
        add_all = cfg.where_add == "all"
        block = None
        for level in reversed(range(cfg.num_downs)):
            outermost = level == 0
            x_nc = cfg.input_nc if outermost else cfg.width(level - 1)
            outer_nc = cfg.output_nc if outermost else x_nc
            dropout = cfg.use_dropout and 4 <= level < cfg.num_downs - 1
            if add_all:
                block = UnetBlockZ(x_nc, outer_nc, cfg.width(level), cfg.nz, block, outermost=outermost, cfg=cfg,
                                   dropout=dropout)
            else:
                x_nc += cfg.nz if outermost else 0
                block = UnetBlock(x_nc, outer_nc, cfg.width(level), block, outermost=outermost, cfg=cfg,
                                  dropout=dropout)
        return block

    def check_input(self, x: torch.Tensor, z: torch.Tensor | None) -> None:
        """Raise ValueError naming the dimension when ``x`` / ``z`` cannot go through this generator."""
        cfg = self.cfg
        if x.ndim != 4 or x.shape[1] != cfg.input_nc:
            raise ValueError(f"G expects images [B, {cfg.input_nc}, H, W], got shape {tuple(x.shape)}")
        m = cfg.size_multiple
        if x.shape[2] % m or x.shape[3] % m:
            raise ValueError(f"G ({cfg.num_downs} U-Net levels) takes heights and widths that are multiples of {m}; "
                             f"got {x.shape[2]}x{x.shape[3]}: resize the image (e.g. to {m}x{m})")
        if cfg.nz == 0:
            if z is not None and z.numel():
                raise ValueError("this generator takes no code (nz = 0); pass z=None")
            return
        if z is None or z.ndim != 2 or z.shape != (x.shape[0], cfg.nz):
            got = None if z is None else tuple(z.shape)
            raise ValueError(f"G expects codes z [{x.shape[0]}, {cfg.nz}] (one per image), got {got}")

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        self.check_input(x, z)
        if self.cfg.where_add == "all":
            return self.model(x, z)
        if self.cfg.nz:
            x = torch.cat([x, _tile(z.to(x.dtype), x)], 1)  # [B, input_nc + nz, H, W]
        return self.model(x)


class BasicBlock(nn.Module):
    """E_ResNet's residual block: [B, cin, H, W] -> [B, cout, H/2, W/2].

    main = [norm] LReLU conv3x3(cin, cin) [norm] LReLU (conv3x3(cin, cout), avgpool2); shortcut = (avgpool2,
    conv1x1). Without a norm the reference's in-place LeakyReLU also feeds the shortcut.
    """

    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__()
        layers = []
        if (n := _norm(norm, cin)) is not None:
            layers.append(n)
        layers += [nn.LeakyReLU(LRELU_SLOPE), nn.Conv2d(cin, cin, 3, padding=1)]
        if (n := _norm(norm, cin)) is not None:
            layers.append(n)
        layers += [nn.LeakyReLU(LRELU_SLOPE), nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.AvgPool2d(2))]
        self.conv = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(cin, cout, 1))
        self.act_first = norm == "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.leaky_relu(x, LRELU_SLOPE) if self.act_first else x
        return self.conv(x) + self.shortcut(skip)


class Encoder(nn.Module):
    """E(B): [B, input_nc, S, S] -> (mu [B, nz], logvar [B, nz]) (only mu when ``vae_like`` is off)."""

    def __init__(self, cfg: BicycleEncoderConfig, *, seed: int | None = 0):
        super().__init__()
        self.cfg = cfg
        widths = cfg.widths()
        with torch.device("meta"):
            if cfg.kind == "resnet":
                # registration order of the reference (heads first) so state dicts list keys alike
                self.fc = nn.Sequential(nn.Linear(widths[-1], cfg.nz))
                if cfg.vae_like:
                    self.fcVar = nn.Sequential(nn.Linear(widths[-1], cfg.nz))
                layers = [nn.Conv2d(cfg.input_nc, widths[0], 4, stride=2, padding=1)]
                layers += [BasicBlock(widths[n - 1], widths[n], cfg.norm) for n in range(1, cfg.n_layers)]
                layers += [nn.LeakyReLU(LRELU_SLOPE), nn.AvgPool2d(ENCODER_POOL)]
                self.conv = nn.Sequential(*layers)
            else:
                layers = [nn.Conv2d(cfg.input_nc, widths[0], 4, stride=2, padding=1), nn.LeakyReLU(LRELU_SLOPE)]
                for n in range(1, cfg.n_layers):
                    layers.append(nn.Conv2d(widths[n - 1], widths[n], 4, stride=2, padding=1))
                    if (norm := _norm(cfg.norm, widths[n])) is not None:
                        layers.append(norm)
                    layers.append(nn.LeakyReLU(LRELU_SLOPE))
                layers.append(nn.AvgPool2d(ENCODER_POOL))
                self.conv = nn.Sequential(*layers)
                self.fc = nn.Sequential(nn.Linear(widths[-1], cfg.nz))
                if cfg.vae_like:
                    self.fcVar = nn.Sequential(nn.Linear(widths[-1], cfg.nz))
        materialise(self)
        if seed is not None:
            init_weights(self, seed=seed)

    def check_input(self, x: torch.Tensor) -> None:
        cfg = self.cfg
        if x.ndim != 4 or x.shape[1] != cfg.input_nc:
            raise ValueError(f"E expects images [B, {cfg.input_nc}, H, W], got shape {tuple(x.shape)}")
        lo = cfg.image_size
        if not all(lo <= s < 2 * lo for s in x.shape[2:]):
            raise ValueError(f"E ({cfg.kind}, {cfg.n_layers} reductions) takes {lo}x{lo} images (sides {lo} to "
                             f"{2 * lo - 1}); got {x.shape[2]}x{x.shape[3]}: resize the image to {lo}x{lo}")

    def forward(self, x: torch.Tensor):
        self.check_input(x)
        h = self.conv(x).flatten(1)  # [B, widths[-1]]
        mu = self.fc(h)  # [B, nz]
        return (mu, self.fcVar(h)) if self.cfg.vae_like else mu


def _patch_layers(cfg: MultiscaleDiscriminatorConfig, scale: int) -> nn.Sequential:
    w = cfg.widths(scale)
    layers: list[nn.Module] = [nn.Conv2d(cfg.input_nc, w[0], 4, stride=2, padding=1), nn.LeakyReLU(LRELU_SLOPE)]
    for n in range(1, cfg.n_layers + 1):
        layers.append(nn.Conv2d(w[n - 1], w[n], 4, stride=2 if n < cfg.n_layers else 1, padding=1))
        if (norm := _norm(cfg.norm, w[n])) is not None:
            layers.append(norm)
        layers.append(nn.LeakyReLU(LRELU_SLOPE))
    layers.append(nn.Conv2d(w[-2], 1, 4, stride=1, padding=1))
    return nn.Sequential(*layers)


class MultiscaleDiscriminator(nn.Module):
    """D(x): [B, input_nc, H, W] -> list of num_D patch logit maps [B, 1, h_i, w_i] (no sigmoid)."""

    def __init__(self, cfg: MultiscaleDiscriminatorConfig, *, seed: int | None = 0):
        super().__init__()
        self.cfg = cfg
        with torch.device("meta"):
            if cfg.num_D == 1:
                self.model = _patch_layers(cfg, 0)
            for i in range(cfg.num_D if cfg.num_D > 1 else 0):
                self.add_module(f"model_{i}", _patch_layers(cfg, i))
        materialise(self)
        if seed is not None:
            init_weights(self, seed=seed)

    def scales(self) -> list[nn.Sequential]:
        return [self.model] if self.cfg.num_D == 1 else [getattr(self, f"model_{i}") for i in range(self.cfg.num_D)]

    def output_sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        """Patch-map sizes for an input of h x w (non-positive sizes mean the input is too small)."""
        out = []
        for _ in range(self.cfg.num_D):
            oh, ow = h, w
            for _ in range(self.cfg.n_layers):
                oh, ow = oh // 2, ow // 2
            out.append((oh - 2, ow - 2))
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        return out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.cfg.input_nc:
            raise ValueError(f"D expects images [B, {self.cfg.input_nc}, H, W], got shape {tuple(x.shape)}")
        if min(min(s) for s in self.output_sizes(x.shape[2], x.shape[3])) < 1:
            raise ValueError(f"D ({self.cfg.num_D} scales, {self.cfg.n_layers} layers) cannot take "
                             f"{x.shape[2]}x{x.shape[3]} images: too small")
        out = []
        for i, net in enumerate(self.scales()):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)  # [B, C, ceil(H/2), ...]
            out.append(net(x))
        return out


def init_weights(module: nn.Module, *, seed: int, init_type: str = "xavier", gain: float = 0.02) -> None:
    """The reference's ``init_net`` from an explicit seed: conv/linear weights by ``init_type`` (xavier-normal with
    ``gain`` by default), biases 0; BatchNorm weight N(1, 0.02), bias 0, running statistics reset."""
    _choice("init_type", init_type, INIT_TYPES)
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                if init_type == "xavier":
                    nn.init.xavier_normal_(m.weight, gain=gain, generator=g)
                elif init_type == "normal":
                    nn.init.normal_(m.weight, 0.0, gain, generator=g)
                elif init_type == "kaiming":
                    nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", generator=g)
                else:
                    nn.init.orthogonal_(m.weight, gain=gain, generator=g)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                nn.init.normal_(m.weight, 1.0, 0.02, generator=g)
                m.bias.zero_()


def sample_codes(n: int, nz: int, *, seed: int) -> torch.Tensor:
    """``n`` codes z ~ N(0, I) of size ``nz`` from an explicit seed (same seed, same codes). -> [n, nz] float32"""
    if n < 0 or nz <= 0:
        raise ValueError(f"need n >= 0 and nz > 0, got n={n}, nz={nz}")
    return torch.randn(n, nz, generator=torch.Generator().manual_seed(int(seed)))


def slerp(z0: torch.Tensor, z1: torch.Tensor, t) -> torch.Tensor:
    """Spherical interpolation between codes (the reference's video sweep); linear where they are parallel.

    z0, z1 [..., nz]; t a number (-> [..., nz]) or a 1-D sequence of T fractions (-> [T, ..., nz]).
    """
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and {tuple(z1.shape)}")
    t = torch.as_tensor(t, dtype=z0.dtype, device=z0.device)
    if t.ndim > 1:
        raise ValueError(f"t must be a number or a 1-D sequence, got shape {tuple(t.shape)}")
    tt = t.reshape(t.shape + (1,) * z0.ndim)  # [T, 1, ..., 1] or scalar
    cos = (F.normalize(z0, dim=-1) * F.normalize(z1, dim=-1)).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)  # [..., 1]
    so = torch.sin(omega)
    parallel = so.abs() < 1e-7
    safe = torch.where(parallel, torch.ones_like(so), so)
    spherical = torch.sin((1 - tt) * omega) / safe * z0 + torch.sin(tt * omega) / safe * z1
    return torch.where(parallel, (1 - tt) * z0 + tt * z1, spherical)


@torch.no_grad()
def translate(G: UnetGenerator, image: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
    """Translate with codes: image [B, input_nc, H, W] (or [input_nc, H, W]) in [-1, 1], z [N, nz] (or [nz]).

    One image and N codes give N samples of it; B images and one code share the code; otherwise B must equal N.
    Runs on G's device. -> [max(B, N), output_nc, H, W] in [-1, 1]
    """
    x = as_batch(image, G)
    if G.cfg.nz == 0:
        return G(x, None)
    if z is None:
        raise ValueError(f"this generator needs codes z [N, {G.cfg.nz}]")
    z = (z.unsqueeze(0) if z.ndim == 1 else z).to(device_of(G), torch.float32)
    x, z = pair_batches(x, z, mismatch="{b} images and {n} codes: give one image, one code, or as many codes as "
                                       "images")
    return G(x, z)


@torch.no_grad()
def encode(E: Encoder, image: torch.Tensor) -> torch.Tensor:
    """The code of a reference B image, as the reference's test.py uses it: E's mean (no sampling).

    image [B, input_nc, S, S] (or [input_nc, S, S]) in [-1, 1] -> mu [B, nz]
    """
    out = E(as_batch(image, E))
    return out[0] if isinstance(out, tuple) else out


FORMAT = "face-editor/bicyclegan"
FORMAT_VERSION = 1
KINDS = {"G": (UnetGenerator, UnetConfig), "E": (Encoder, BicycleEncoderConfig),
         "D": (MultiscaleDiscriminator, MultiscaleDiscriminatorConfig),
         "D2": (MultiscaleDiscriminator, MultiscaleDiscriminatorConfig)}


def bicyclegan_checkpoint(networks: dict[str, nn.Module], *, extras: dict | None = None) -> dict:
    """The project-format dict of some of ``{"G", "E", "D", "D2"}``: each network with its config."""
    return i2i_checkpoint(networks, fmt=FORMAT, version=FORMAT_VERSION, kinds=KINDS, family="BicycleGAN",
                          extras=extras)


__all__ = ["UnetConfig", "BicycleEncoderConfig", "MultiscaleDiscriminatorConfig", "UnetGenerator", "Encoder",
           "MultiscaleDiscriminator", "UnetBlockZ", "UnetBlock", "BasicBlock", "init_weights", "default_ndf",
           "network_entry", "bicyclegan_checkpoint", "sample_codes", "slerp", "translate", "encode", "FORMAT",
           "FORMAT_VERSION", "KINDS"]
