"""TUNIT (Baek et al. 2021): guiding network C, FUNIT-style generator G with an AdaIN decoder, multi-task D with FRN.

Module trees and state-dict keys are those of ``clovaai/tunit`` (``C_state_dict``, ``G_EMA_state_dict`` ... of a
``model_<epoch>.ckpt``), so released files load without renaming; numerics follow
``shared/reference/i2i/TUNIT_FACTS.md`` §1:

* C (``GuidingNet``): VGG-with-BatchNorm ``features`` (3x3 conv, BN, ReLU; ``'M'`` = 2x2 max-pool), global average
  pooling, heads ``disc`` (cluster logits, K) and ``cont`` (style code). No L2 normalisation.
* G: content encoder (7x7 conv, ``n_downs`` stride-2 4x4 convs, residual blocks; instance norm, reflect padding)
  to a 16x16 map at the nominal size; decoder (AdaIN residual blocks, ``n_downs`` x [nearest x2, 5x5 conv, AdaIN,
  ReLU], 7x7 conv, tanh); ``mlp`` maps a style code to every AdaIN layer's (bias, weight), in module order.
  The reference assigns those parameters to its modules before each decode; here they are passed explicitly
  (``G.adain_params(s)``), so G holds no per-call state. The unused AdaIN ``running_mean``/``running_var`` buffers
  are kept so state dicts round-trip.
* D: StarGAN v2 body with FRN (``ActFirstResBlk``), one logit per pseudo-domain; ``D(x, y)`` -> (logit of y, map).

Constructors take a frozen config; ``seed=None`` leaves the weights uninitialised (for loaders, which fill every
tensor), an integer initialises them like the reference from that seed.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.files.configs import DictForm
from engine.models.i2i_common import as_batch, check_positive, i2i_checkpoint, network_entry, pair_batches
from engine.models.meta import materialise

VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
ADAIN_EPS = 1e-5
FRN_EPS = 1e-6
RES_SCALE = 0.1  # FUNIT residual blocks: x + 0.1 * residual
CONTENT_SIZE = 16  # the content map is 16x16 at the nominal image size


@dataclass(frozen=True)
class GuidingConfig(DictForm, what="the guiding network's architecture"):
    """Architecture of the guiding network: ``features`` lists conv widths and ``'M'`` (2x2 max-pool), as VGG's cfg;
    sty_dim: style code size (``cont``); output_k: number of clusters K (``disc``)."""

    features: tuple = VGG11
    sty_dim: int = 128
    output_k: int = 10

    def __post_init__(self):
        feats = tuple(v if v == "M" else int(v) for v in self.features)
        object.__setattr__(self, "features", feats)
        check_positive(self, "sty_dim", "output_k")
        widths = [v for v in feats if v != "M"]
        if not widths or min(widths) <= 0:
            raise ValueError(f"features must hold at least one positive conv width, got {list(feats)}")

    @property
    def feature_dim(self) -> int:
        return [v for v in self.features if v != "M"][-1]


@dataclass(frozen=True)
class TunitGeneratorConfig(DictForm, what="the TUNIT generator's architecture"):
    """Architecture of the generator: nf: width of the first conv (the reference: 64 below 256 px, 32 at 256);
    n_downs: stride-2 convs (log2(img_size / 16)); n_res: residual blocks in encoder and decoder; sty_dim: style
    code size; nf_mlp / mlp_blocks: hidden width and linear layers of the style MLP."""

    nf: int = 64
    n_downs: int = 3
    n_res: int = 2
    sty_dim: int = 128
    nf_mlp: int = 256
    mlp_blocks: int = 3

    def __post_init__(self):
        check_positive(self, "nf", "n_downs", "sty_dim", "nf_mlp")
        if self.n_res < 0 or self.mlp_blocks < 2:
            raise ValueError(f"n_res must be >= 0 and mlp_blocks >= 2, got {self.n_res} and {self.mlp_blocks}")

    @property
    def content_dim(self) -> int:
        return self.nf * 2**self.n_downs

    @property
    def img_size(self) -> int:
        """The nominal (training) image size; any multiple of 2**n_downs of at least twice that works."""
        return CONTENT_SIZE * 2**self.n_downs

    def adain_channels(self) -> tuple[int, ...]:
        """Channels of every AdaIN layer in module order."""
        c = self.content_dim
        return (c,) * (2 * self.n_res) + tuple(c // 2**(i + 1) for i in range(self.n_downs))

    @property
    def num_adain_params(self) -> int:
        return 2 * sum(self.adain_channels())


@dataclass(frozen=True)
class TunitDiscriminatorConfig(DictForm, what="the TUNIT discriminator's architecture"):
    """Architecture of the discriminator: img_size (a power of two; log2(img_size) - 2 stages), dim_in: first
    width (the reference: 64 below 256 px, 32 at 256), max_conv_dim: width cap, output_k: number of domains."""

    img_size: int = 128
    dim_in: int = 64
    max_conv_dim: int = 1024
    output_k: int = 10

    def __post_init__(self):
        check_positive(self, "dim_in", "max_conv_dim", "output_k")
        s = int(self.img_size)
        if s < 8 or s & (s - 1):
            raise ValueError(f"img_size must be a power of two >= 8, got {self.img_size}")

    @property
    def repeat_num(self) -> int:
        return int(self.img_size).bit_length() - 3

    def widths(self) -> tuple[int, ...]:
        """Channels entering each stage, then the final width."""
        out = [self.dim_in]
        for _ in range(self.repeat_num):
            out.append(min(out[-1] * 2, self.max_conv_dim))
        return tuple(out)


class AdaIN2d(nn.Module):
    """Per-sample-per-channel normalisation with a per-sample affine from the style MLP (train and eval alike).

    [B, C, H, W], weight/bias [B, C] -> [B, C, H, W]. ``running_mean``/``running_var`` exist only for the keys.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = F.batch_norm(x.reshape(1, b * c, h * w), None, None, weight.reshape(-1), bias.reshape(-1),
                         training=True, eps=ADAIN_EPS)  # [1, B*C, H*W]: statistics per sample and channel
        return y.view(b, c, h, w)


class Conv2dBlock(nn.Module):
    """Reflect pad -> conv -> norm (``in`` / ``adain`` / ``none``) -> activation (``relu`` / ``tanh`` / ``none``)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, pad: int, *, norm: str, act: str):
        super().__init__()
        self.pad = pad
        if norm == "in":
            self.norm = nn.InstanceNorm2d(cout)
        elif norm == "adain":
            self.norm = AdaIN2d(cout)
        else:
            self.norm = None
        self.conv = nn.Conv2d(cin, cout, k, stride)  # after the norm: the reference's key order
        self.act = act

    def forward(self, x: torch.Tensor, adain: Iterator | None = None) -> torch.Tensor:
        x = self.conv(F.pad(x, (self.pad,) * 4, mode="reflect"))
        if isinstance(self.norm, AdaIN2d):
            x = self.norm(x, *next(adain))
        elif self.norm is not None:
            x = self.norm(x)
        if self.act == "relu":
            return F.relu(x)
        return torch.tanh(x) if self.act == "tanh" else x


class ResBlock(nn.Module):
    """x + 0.1 * (conv3x3-norm-ReLU -> conv3x3-norm). [B, C, H, W] -> same."""

    def __init__(self, dim: int, norm: str):
        super().__init__()
        self.model = nn.Sequential(Conv2dBlock(dim, dim, 3, 1, 1, norm=norm, act="relu"),
                                   Conv2dBlock(dim, dim, 3, 1, 1, norm=norm, act="none"))

    def forward(self, x: torch.Tensor, adain: Iterator | None = None) -> torch.Tensor:
        return x + RES_SCALE * self.model[1](self.model[0](x, adain), adain)


class ResBlocks(nn.Module):
    def __init__(self, n: int, dim: int, norm: str):
        super().__init__()
        self.model = nn.Sequential(*[ResBlock(dim, norm) for _ in range(n)])

    def forward(self, x: torch.Tensor, adain: Iterator | None = None) -> torch.Tensor:
        for block in self.model:
            x = block(x, adain)
        return x


class ContentEncoder(nn.Module):
    """[B, 3, H, W] -> content [B, nf * 2**n_downs, H / 2**n_downs, W / 2**n_downs]."""

    def __init__(self, cfg: TunitGeneratorConfig):
        super().__init__()
        layers: list[nn.Module] = [Conv2dBlock(3, cfg.nf, 7, 1, 3, norm="in", act="relu")]
        for i in range(cfg.n_downs):
            layers.append(Conv2dBlock(cfg.nf * 2**i, cfg.nf * 2**(i + 1), 4, 2, 1, norm="in", act="relu"))
        layers.append(ResBlocks(cfg.n_res, cfg.content_dim, "in"))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Decoder(nn.Module):
    """content [B, C, h, w] + AdaIN parameters -> image [B, 3, h * 2**n_downs, w * 2**n_downs] in [-1, 1]."""

    def __init__(self, cfg: TunitGeneratorConfig):
        super().__init__()
        c = cfg.content_dim
        layers: list[nn.Module] = [ResBlocks(cfg.n_res, c, "adain")]
        for _ in range(cfg.n_downs):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       Conv2dBlock(c, c // 2, 5, 1, 2, norm="adain", act="relu")]
            c //= 2
        layers.append(Conv2dBlock(c, 3, 7, 1, 3, norm="none", act="tanh"))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, adain: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        params = iter(adain)
        for layer in self.model:
            x = layer(x) if isinstance(layer, nn.Upsample) else layer(x, params)
        return x


class LinearBlock(nn.Module):
    def __init__(self, cin: int, cout: int, *, act: bool):
        super().__init__()
        self.fc = nn.Linear(cin, cout)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        return F.relu(x) if self.act else x


class MLP(nn.Module):
    """style [B, sty_dim] -> AdaIN parameters [B, P]."""

    def __init__(self, cfg: TunitGeneratorConfig):
        super().__init__()
        n = cfg.nf_mlp
        blocks = [LinearBlock(cfg.sty_dim, n, act=True)]
        blocks += [LinearBlock(n, n, act=True) for _ in range(cfg.mlp_blocks - 2)]
        blocks.append(LinearBlock(n, cfg.num_adain_params, act=False))
        self.model = nn.Sequential(*blocks)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.model(s.reshape(s.shape[0], -1))


class Generator(nn.Module):
    """G(x, s): content of x [B, 3, H, W] rendered with style codes s [B, sty_dim] -> [B, 3, H, W] in [-1, 1]."""

    def __init__(self, cfg: TunitGeneratorConfig, *, seed: int | None = 0):
        super().__init__()
        self.cfg = cfg
        with torch.device("meta"):
            self.cnt_encoder = ContentEncoder(cfg)
            self.decoder = Decoder(cfg)
            self.mlp = MLP(cfg)
        materialise(self)
        if seed is not None:
            init_generator(self, seed=seed)

    def check_input(self, x: torch.Tensor) -> None:
        m = 2**self.cfg.n_downs
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"G expects RGB images [B, 3, H, W], got shape {tuple(x.shape)}")
        if x.shape[2] % m or x.shape[3] % m or min(x.shape[2:]) < 2 * m:
            raise ValueError(f"G ({self.cfg.n_downs} down-samplings) takes heights and widths that are multiples of "
                             f"{m} and at least {2 * m}; got {x.shape[2]}x{x.shape[3]}: resize the image to "
                             f"{self.cfg.img_size}x{self.cfg.img_size}")

    def content(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, content_dim, H / 2**n_downs, W / 2**n_downs]."""
        self.check_input(x)
        return self.cnt_encoder(x)

    def adain_params(self, s: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per AdaIN layer in module order, (weight [B, C], bias [B, C]) from the MLP output: of each layer's
        2C values the first C are the bias ("mean"), the next C the weight ("std")."""
        if s.ndim != 2 or s.shape[1] != self.cfg.sty_dim:
            raise ValueError(f"style codes must be [B, {self.cfg.sty_dim}], got shape {tuple(s.shape)}")
        p = self.mlp(s)  # [B, P]
        out, start = [], 0
        for c in self.cfg.adain_channels():
            out.append((p[:, start + c:start + 2 * c], p[:, start:start + c]))
            start += 2 * c
        return out

    def decode(self, content: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """content [B, C, h, w], style [B, sty_dim] -> image [B, 3, h * 2**n_downs, w * 2**n_downs]."""
        if content.ndim != 4 or content.shape[1] != self.cfg.content_dim:
            raise ValueError(f"content must be [B, {self.cfg.content_dim}, h, w], got shape {tuple(content.shape)}")
        if s.shape[0] != content.shape[0]:
            raise ValueError(f"one style code per content map: got {s.shape[0]} codes for {content.shape[0]} maps")
        return self.decoder(content, self.adain_params(s))

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return self.decode(self.content(x), s)


class GuidingNetwork(nn.Module):
    """C(x): [B, 3, H, W] -> {"cont": style codes [B, sty_dim], "disc": cluster logits [B, K]} (any H, W >= the
    total pooling factor)."""

    def __init__(self, cfg: GuidingConfig, *, seed: int | None = 0):
        super().__init__()
        self.cfg = cfg
        with torch.device("meta"):
            layers: list[nn.Module] = []
            cin = 3
            for v in cfg.features:
                if v == "M":
                    layers.append(nn.MaxPool2d(2, 2))
                else:
                    layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
                    cin = v
            self.features = nn.Sequential(*layers)
            self.disc = nn.Linear(cfg.feature_dim, cfg.output_k)
            self.cont = nn.Linear(cfg.feature_dim, cfg.sty_dim)
        materialise(self)
        if seed is not None:
            init_guiding(self, seed=seed)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> globally averaged features [B, feature_dim]."""
        m = 2 ** sum(v == "M" for v in self.cfg.features)
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[2:]) < m:
            raise ValueError(f"C expects RGB images [B, 3, H, W] with sides >= {m}, got shape {tuple(x.shape)}")
        return F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)

    def moco(self, x: torch.Tensor) -> torch.Tensor:
        """Style codes [B, sty_dim]."""
        return self.cont(self.pooled(x))

    def iic(self, x: torch.Tensor) -> torch.Tensor:
        """Cluster logits [B, K]."""
        return self.disc(self.pooled(x))

    def forward(self, x: torch.Tensor, sty: bool = False):
        h = self.pooled(x)
        if sty:
            return self.cont(h)
        return {"cont": self.cont(h), "disc": self.disc(h)}


class FRN(nn.Module):
    """Filter response normalisation with a thresholded linear unit: max(gamma * x / rms_HW(x) + beta, tau)."""

    def __init__(self, channels: int):
        super().__init__()
        self.tau = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * torch.rsqrt(x.pow(2).mean(dim=(2, 3), keepdim=True) + FRN_EPS)
        return torch.max(self.gamma * x + self.beta, self.tau)


class ActFirstResBlk(nn.Module):
    """(shortcut + residual) / sqrt(2); residual = FRN conv3x3 [avgpool2] FRN conv3x3, shortcut = [conv1x1 without
    bias when widths differ] [avgpool2]. [B, cin, H, W] -> [B, cout, H or H/2, W or W/2]."""

    def __init__(self, cin: int, cout: int, *, downsample: bool):
        super().__init__()
        self.norm1 = FRN(cin)
        self.norm2 = FRN(cin)
        self.conv1 = nn.Conv2d(cin, cin, 3, 1, 1)
        self.conv2 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.downsample = downsample
        self.conv1x1 = nn.Conv2d(cin, cout, 1, 1, 0, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sc = x if self.conv1x1 is None else self.conv1x1(x)
        r = self.conv1(self.norm1(x))
        if self.downsample:
            sc, r = F.avg_pool2d(sc, 2), F.avg_pool2d(r, 2)
        r = self.conv2(self.norm2(r))
        k = torch.rsqrt(torch.tensor(2.0, device=x.device, dtype=x.dtype))
        return k * sc + k * r


class Discriminator(nn.Module):
    """D(x, y): images [B, 3, S, S], pseudo-domains y [B] -> (logit [B] = out[b, y_b], map [B, K, 1, 1])."""

    def __init__(self, cfg: TunitDiscriminatorConfig, *, seed: int | None = 0):
        super().__init__()
        self.cfg = cfg
        w = cfg.widths()
        with torch.device("meta"):
            blocks: list[nn.Module] = [nn.Conv2d(3, w[0], 3, 1, 1)]
            for i in range(cfg.repeat_num):
                blocks += [ActFirstResBlk(w[i], w[i], downsample=False),
                           ActFirstResBlk(w[i], w[i + 1], downsample=True)]
            blocks += [nn.LeakyReLU(0.2), nn.Conv2d(w[-1], w[-1], 4, 1, 0), nn.LeakyReLU(0.2),
                       nn.Conv2d(w[-1], cfg.output_k, 1, 1, 0)]
            self.main = nn.Sequential(*blocks)
        materialise(self)
        if seed is not None:
            init_discriminator(self, seed=seed)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.cfg.img_size
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (s, s):
            raise ValueError(f"D takes RGB images [B, 3, {s}, {s}] (its training size), got shape {tuple(x.shape)}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"D needs one domain index per image: y [{x.shape[0]}], got shape {tuple(y.shape)}")
        feat = self.main(x)  # [B, K, 1, 1]
        logit = feat.flatten(1).gather(1, y.long().view(-1, 1)).squeeze(1)  # [B]
        return logit, feat


def _kaiming_fan_in(module: nn.Module, g: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", generator=g)
            if m.bias is not None:
                m.bias.zero_()


def init_generator(G: Generator, *, seed: int) -> None:
    """Kaiming-normal (fan_in) conv/linear weights, zero biases, AdaIN buffers 0/1; from an explicit seed."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        _kaiming_fan_in(G, g)
        for m in G.modules():
            if isinstance(m, AdaIN2d):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)


def init_guiding(C: GuidingNetwork, *, seed: int) -> None:
    """Convs kaiming-normal (fan_out, ReLU), BN (1, 0) with fresh statistics, linear N(0, 0.01), biases 0."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in C.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
                m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01, generator=g)
                m.bias.zero_()


def init_discriminator(D: Discriminator, *, seed: int) -> None:
    """Kaiming-normal (fan_in) conv weights, zero biases, FRN tau 0 / gamma 1 / beta 0; from an explicit seed."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        _kaiming_fan_in(D, g)
        for m in D.modules():
            if isinstance(m, FRN):
                m.tau.zero_()
                m.gamma.fill_(1.0)
                m.beta.zero_()


@torch.no_grad()
def reference_style(C: GuidingNetwork, image: torch.Tensor) -> torch.Tensor:
    """Style codes of reference images (use C_EMA in eval mode, as the reference's inference does).

    image [B, 3, H, W] (or [3, H, W]) in [-1, 1] -> [B, sty_dim]
    """
    return C.moco(as_batch(image, C))


@torch.no_grad()
def cluster_labels(C: GuidingNetwork, images: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
    """Cluster of each image: argmax of C's cluster logits (the reference assigns with C, not C_EMA). -> [N] int64"""
    x = as_batch(images, C)
    return torch.cat([C.iic(x[i:i + batch_size]).argmax(dim=1) for i in range(0, x.shape[0], batch_size)])


@torch.no_grad()
def cluster_styles(C: GuidingNetwork, images: torch.Tensor, labels: torch.Tensor | None = None, *,
                   C_cluster: GuidingNetwork | None = None, batch_size: int = 64) -> dict[int, torch.Tensor]:
    """Mean style code per cluster (the reference's "AVG" domain styles): codes from ``C`` (C_EMA), clusters from
    ``labels`` or, when None, from ``C_cluster`` (C; defaults to ``C``). images [N, 3, H, W] in [-1, 1].

    -> {cluster id: [sty_dim]} for the clusters that received images, in increasing id order.
    """
    x = as_batch(images, C)
    if labels is None:
        labels = cluster_labels(C_cluster or C, x, batch_size=batch_size)
    labels = torch.as_tensor(labels).reshape(-1).to(x.device)
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"one label per image: got {labels.shape[0]} labels for {x.shape[0]} images")
    codes = torch.cat([C.moco(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])  # [N, sty_dim]
    return {int(k): codes[labels == k].mean(dim=0) for k in torch.unique(labels).tolist()}


@torch.no_grad()
def translate(G: Generator, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """Render the content of images with style codes: content [B, 3, H, W] (or [3, H, W]) in [-1, 1], style
    [S, sty_dim] (or [sty_dim]). One image and S styles give S results; B images and one style share it;
    otherwise B must equal S. Use G_EMA in eval mode. -> [max(B, S), 3, H, W] in [-1, 1]
    """
    c = G.content(as_batch(content, G))  # [B, C, h, w]
    s = (style.unsqueeze(0) if style.ndim == 1 else style).to(c.device, torch.float32)
    c, s = pair_batches(c, s, mismatch="{b} images and {n} style codes: give one image, one style, or as many of each")
    return G.decode(c, s)


FORMAT = "face-editor/tunit"
FORMAT_VERSION = 1
KINDS = {"G": (Generator, TunitGeneratorConfig), "G_EMA": (Generator, TunitGeneratorConfig),
         "C": (GuidingNetwork, GuidingConfig), "C_EMA": (GuidingNetwork, GuidingConfig),
         "D": (Discriminator, TunitDiscriminatorConfig)}


def tunit_checkpoint(networks: dict[str, nn.Module], *, extras: dict | None = None) -> dict:
    """The project-format dict of some of ``{"G", "G_EMA", "C", "C_EMA", "D"}``, each with its config."""
    return i2i_checkpoint(networks, fmt=FORMAT, version=FORMAT_VERSION, kinds=KINDS, family="TUNIT", extras=extras)


__all__ = ["GuidingConfig", "TunitGeneratorConfig", "TunitDiscriminatorConfig", "GuidingNetwork", "Generator",
           "Discriminator", "AdaIN2d", "FRN", "ActFirstResBlk", "Conv2dBlock", "ResBlock", "ResBlocks",
           "ContentEncoder", "Decoder", "MLP", "init_generator", "init_guiding", "init_discriminator",
           "network_entry", "tunit_checkpoint", "reference_style", "cluster_labels", "cluster_styles", "translate",
           "VGG11", "FORMAT", "FORMAT_VERSION", "KINDS"]
