"""The attribute estimator: a small residual CNN that reads StyleFlow's attributes and the SH lighting from a face.

It plays the role Microsoft's Face API plays in StyleFlow (labelling generated faces for the flow's training
data), measures edits, and its penultimate embedding (``features``) serves a Fréchet distance.

Layout of a file (a ``torch.save`` of plain containers, loadable with ``weights_only=True``)::

    {"format": "face-editor/estimator", "format_version": 1,
     "arch": cfg.to_dict(), "state_dict": {...}, "extras": {...}}   # extras: free-form metadata

Outputs are standardised: continuous output k is ``(value - target_mean[k]) / target_std[k]``; binary outputs
(``cfg.binary``) are logits. ``predict`` undoes both (real units, probabilities).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.files.checkpoints import atomic_torch_save, load_module, module_checkpoint
from engine.files.configs import DictForm
from engine.models.meta import skip_init

FORMAT = "face-editor/estimator"
FORMAT_VERSION = 1


def check_stages(cfg) -> None:
    """The residual stages of a config (``widths``, ``blocks``, ``stem_width``, ``input_size``) can be built:
    one width and block count per stage, all positive, and an input that survives every stage's halving."""
    if not cfg.widths or len(cfg.widths) != len(cfg.blocks):
        raise ValueError(f"widths and blocks need one entry per stage, got {list(cfg.widths)} and {list(cfg.blocks)}")
    if min(cfg.widths) <= 0 or min(cfg.blocks) <= 0 or cfg.stem_width <= 0:
        raise ValueError("widths, blocks and stem_width must be positive")
    if cfg.input_size < 2 ** (len(cfg.widths) + 1):
        raise ValueError(f"input_size {cfg.input_size} is too small for {len(cfg.widths)} stages")


@dataclass(frozen=True)
class EstimatorConfig(DictForm, what="the estimator's architecture"):
    """Architecture and output coding of an estimator; everything needed to rebuild it.

    widths/blocks: channels and residual blocks per stage; stage k runs at ``input_size / 2**(k+1)`` pixels.
    output_names: one name per output; binary: the names read as probabilities (sigmoid of a logit).
    target_mean/target_std: per-output standardisation of the continuous targets (0/1 for binary outputs).
    """

    output_names: tuple[str, ...]
    binary: tuple[str, ...] = ()
    target_mean: tuple[float, ...] | None = None
    target_std: tuple[float, ...] | None = None
    input_size: int = 64
    widths: tuple[int, ...] = (32, 64, 128, 192)
    blocks: tuple[int, ...] = (1, 1, 2, 1)
    stem_width: int = 24
    feature_dim: int = 256

    def __post_init__(self):
        n = len(self.output_names)
        names = tuple(str(s) for s in self.output_names)
        mean = tuple(float(v) for v in (self.target_mean if self.target_mean is not None else [0.0] * n))
        std = tuple(float(v) for v in (self.target_std if self.target_std is not None else [1.0] * n))
        for name, value in (("output_names", names), ("binary", tuple(str(s) for s in self.binary)),
                            ("target_mean", mean), ("target_std", std),
                            ("widths", tuple(int(w) for w in self.widths)),
                            ("blocks", tuple(int(b) for b in self.blocks))):
            object.__setattr__(self, name, value)
        if n == 0 or len(set(names)) != n:
            raise ValueError(f"output_names must be distinct and non-empty, got {list(names)}")
        if unknown := sorted(set(self.binary) - set(names)):
            raise ValueError(f"binary outputs {unknown} are not among output_names")
        if len(mean) != n or len(std) != n:
            raise ValueError(f"target_mean and target_std need {n} values each, got {len(mean)} and {len(std)}")
        if min(std) <= 0:
            raise ValueError(f"target_std must be positive, got {list(std)}")
        check_stages(self)
        if self.feature_dim <= 0:
            raise ValueError(f"feature_dim must be positive, got {self.feature_dim}")

    @property
    def num_outputs(self) -> int:
        return len(self.output_names)

    @property
    def binary_mask(self) -> tuple[bool, ...]:
        """Per output: whether it is binary."""
        return tuple(name in self.binary for name in self.output_names)


def _conv(cin: int, cout: int, k: int, *, stride: int = 1) -> nn.Conv2d:
    """A bias-free 'same' convolution left uninitialised (``init_weights`` fills it from an explicit seed)."""
    return skip_init(nn.Conv2d, cin, cout, k, stride=stride, padding=k // 2, bias=False)


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a (strided 1x1 conv + BN) shortcut, then ReLU. [B,Ci,H,W] -> [B,Co,H/s,W/s]"""

    def __init__(self, cin: int, cout: int, *, stride: int):
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride=stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = _conv(cout, cout, 3)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv(cin, cout, 1, stride=stride), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


def residual_trunk(cfg) -> tuple[nn.Sequential, nn.Sequential, int]:
    """The stem (3x3 conv, BN, ReLU to ``stem_width``) and the residual stages (``widths`` x ``blocks``, the first
    block of each halving) of a config, and the channels they end with. [B,3,S,S] -> [B, widths[-1], S/2^k, S/2^k]"""
    stem = nn.Sequential(_conv(3, cfg.stem_width, 3), nn.BatchNorm2d(cfg.stem_width), nn.ReLU())
    layers, cin = [], cfg.stem_width
    for width, count in zip(cfg.widths, cfg.blocks):
        for i in range(count):
            layers.append(ResidualBlock(cin, width, stride=2 if i == 0 else 1))
            cin = width
    return stem, nn.Sequential(*layers), cin


class AttributeEstimator(nn.Module):
    """Image [B,3,H,W] in [-1,1] (any H, W: resized to ``cfg.input_size``) -> raw outputs [B, num_outputs]."""

    def __init__(self, cfg: EstimatorConfig, *, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.stem, self.stages, cin = residual_trunk(cfg)
        self.embed = skip_init(nn.Linear, cin, cfg.feature_dim)
        self.head = skip_init(nn.Linear, cfg.feature_dim, cfg.num_outputs)
        self.register_buffer("target_mean", torch.tensor(cfg.target_mean), persistent=False)
        self.register_buffer("target_std", torch.tensor(cfg.target_std), persistent=False)
        self.register_buffer("is_binary", torch.tensor(cfg.binary_mask), persistent=False)
        self.extras: dict = {}
        init_weights(self, seed=seed)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding. [B,3,H,W] in [-1,1] -> [B, feature_dim]"""
        x = fit_images(x, self.cfg.input_size)
        h = self.stages(self.stem(x.contiguous(memory_format=torch.channels_last)))
        return F.relu(self.embed(h.mean(dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised continuous outputs and binary logits. [B,3,H,W] -> [B, num_outputs]"""
        return self.head(self.features(x))

    def to_units(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw outputs -> real units (probabilities for binary outputs). [B, K] -> [B, K]"""
        return torch.where(self.is_binary, torch.sigmoid(raw), raw * self.target_std + self.target_mean)

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Name -> [B] values in real units (probabilities for binary outputs). Call ``eval()`` first."""
        values = self.to_units(self(x))
        return {name: values[:, k] for k, name in enumerate(self.cfg.output_names)}


def fit_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """RGB images [B, 3, H, W] checked and resized to the training size (antialiased bilinear). -> [B, 3, S, S]
    float32"""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W] RGB in [-1, 1], got shape {tuple(x.shape)}")
    x = x.to(torch.float32)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def init_weights(module: nn.Module, *, seed: int) -> None:
    """He-normal convolutions and linear layers from one explicit seed; the last BN of each residual branch at 0."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()
        for m in module.modules():
            if isinstance(m, ResidualBlock):
                m.bn2.weight.zero_()
        if isinstance(module, AttributeEstimator):
            module.head.weight.mul_(0.1)


def estimator_checkpoint(model: AttributeEstimator, *, extras: dict | None = None) -> dict:
    """The project-format dict of ``model`` (float32 CPU tensors)."""
    return module_checkpoint(model, fmt=FORMAT, version=FORMAT_VERSION, meta=extras)


def save_estimator(path: str | os.PathLike, model: AttributeEstimator, *, extras: dict | None = None) -> None:
    """Write ``model`` in the project's format, atomically."""
    atomic_torch_save(estimator_checkpoint(model, extras=extras), path)


def load_estimator(path_or_dict) -> AttributeEstimator:
    """An estimator (in eval mode) from a project-format file or dict; ModelFormatError says what is wrong."""
    return load_module(path_or_dict, fmt=FORMAT, version=FORMAT_VERSION, noun="an attribute estimator",
                       label="estimator", config_cls=EstimatorConfig, module_cls=AttributeEstimator)


__all__ = ["EstimatorConfig", "AttributeEstimator", "ResidualBlock", "residual_trunk", "check_stages", "fit_images",
           "init_weights", "estimator_checkpoint", "save_estimator", "load_estimator", "FORMAT", "FORMAT_VERSION"]
