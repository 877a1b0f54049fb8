"""LPIPS-VGG (Zhang et al. 2018, "net-lin" v0.1) for users who have its weights on disk.

Two files are needed, neither of which ships with the editor (no download happens, ever):

* the VGG16 backbone: torchvision's ImageNet state dict ``vgg16-397923af.pth`` (``features.N.weight/bias`` and,
  ignored here, ``classifier.*``);
* the LPIPS linear heads: lpips' ``weights/v0.1/vgg.pth`` (``lin0.model.1.weight`` ... ``lin4.model.1.weight``).

Both are read with ``torch.load(weights_only=True)``; any other content is refused with a ``ModelFormatError``.
The distance: inputs in [-1, 1] are shifted and scaled per channel, VGG16 features are taken after relu1_2,
relu2_2, relu3_3, relu4_3 and relu5_3, each feature vector is normalised to unit length over channels, the
squared difference is weighted per channel by the head and averaged over positions; the five layers are summed.
The layer pattern must be VGG16's; the widths are read from the files (and must agree between the two).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ModelFormatError, describe
from engine.files.guard import refuse_broken_files
from engine.files.storage import read_model_file

# VGG16 ("configuration D"): convs per stage; a 2x2 max pool precedes every stage but the first.
STAGE_CONVS = (2, 2, 3, 3, 3)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
HEADS_FILE = "vgg.pth"
MIN_SIZE = 16


def _conv_indices() -> list[list[int]]:
    """torchvision's ``features`` indices of the convs, per stage (each conv is followed by a ReLU)."""
    out, i = [], 0
    for k, n in enumerate(STAGE_CONVS):
        if k:
            i += 1  # the max pool
        out.append([i + 2 * j for j in range(n)])
        i += 2 * n
    return out


class LPIPS(nn.Module):
    """LPIPS-VGG distance: ``forward(a, b)`` with images [B, 3, H, W] in [-1, 1] -> [B]."""

    def __init__(self, widths: tuple[int, ...]):
        super().__init__()
        if len(widths) != len(STAGE_CONVS):
            raise ValueError(f"LPIPS-VGG needs {len(STAGE_CONVS)} stage widths, got {widths}")
        self.widths = tuple(int(w) for w in widths)
        self.stages = nn.ModuleList()
        prev = 3
        for width, n in zip(self.widths, STAGE_CONVS):
            convs = nn.ModuleList()
            for _ in range(n):
                convs.append(nn.Conv2d(prev, width, 3, padding=1))
                prev = width
            self.stages.append(convs)
        self.heads = nn.ModuleList(nn.Conv2d(w, 1, 1, bias=False) for w in self.widths)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised features after each stage's last ReLU: five [B, C_k, H / 2^k, W / 2^k]."""
        x = (x - self.shift) / self.scale
        out = []
        for k, convs in enumerate(self.stages):
            if k:
                x = F.max_pool2d(x, 2)
            for conv in convs:
                x = F.relu(conv(x))
            out.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.ndim != 4 or a.shape != b.shape or a.shape[1] != 3:
            raise ValueError(f"LPIPS expects two RGB images of the same shape [B, 3, H, W], got {tuple(a.shape)} "
                             f"and {tuple(b.shape)}")
        if min(a.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"LPIPS-VGG needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels, got "
                             f"{a.shape[-2]}x{a.shape[-1]}")
        n = a.shape[0]
        feats = self.features(torch.cat([a, b]).float())
        total = a.new_zeros(n, dtype=torch.float32)
        for f, head in zip(feats, self.heads):
            d = (f[:n] - f[n:]).square()  # [B, C, h, w]
            total = total + head(d).mean(dim=(1, 2, 3))
        return total


def _read(path: Path, what: str) -> dict:
    kind, obj = read_model_file(path)
    if kind != "torch" or not isinstance(obj, dict):
        raise ModelFormatError(f"{path.name} is not a {what} (expected a PyTorch state dict)")
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise ModelFormatError(f"{path.name} is not a {what}: entry {k!r} is {describe(v)}")
    return obj


def _vgg_weights(sd: dict, name: str) -> tuple[tuple[int, ...], dict]:
    """Check a torchvision VGG16 state dict; returns (stage widths, our state-dict entries for the convs)."""
    what = "torchvision VGG16 state dict (vgg16-*.pth)"
    indices = _conv_indices()
    expected = {f"features.{i}.{p}" for stage in indices for i in stage for p in ("weight", "bias")}
    feats = {k for k in sd if k.startswith("features.")}
    if feats != expected:
        missing, unexpected = sorted(expected - feats), sorted(feats - expected)
        raise ModelFormatError(f"{name} is not a {what}: missing {missing[:4]}, unexpected {unexpected[:4]} "
                               "(batch-norm VGGs and other networks are not supported)")
    widths, out, prev = [], {}, 3
    for k, stage in enumerate(indices):
        width = sd[f"features.{stage[0]}.weight"].shape[0]
        for j, i in enumerate(stage):
            w, b = sd[f"features.{i}.weight"], sd[f"features.{i}.bias"]
            if tuple(w.shape) != (width, prev, 3, 3) or tuple(b.shape) != (width,):
                raise ModelFormatError(f"{name} is not a {what}: features.{i} has weight {tuple(w.shape)}, "
                                       f"expected ({width}, {prev}, 3, 3)")
            out[f"stages.{k}.{j}.weight"], out[f"stages.{k}.{j}.bias"] = w, b
            prev = width
        widths.append(width)
    return tuple(widths), out


def _head_weights(sd: dict, widths: tuple[int, ...], name: str) -> dict:
    what = "LPIPS v0.1 VGG linear-head file (lpips/weights/v0.1/vgg.pth)"
    expected = {f"lin{k}.model.1.weight" for k in range(len(widths))}
    if set(sd) != expected:
        raise ModelFormatError(f"{name} is not an {what}: it holds {sorted(sd)[:6]}")
    out = {}
    for k, width in enumerate(widths):
        w = sd[f"lin{k}.model.1.weight"]
        if tuple(w.shape) != (1, width, 1, 1):
            raise ModelFormatError(f"{name}: lin{k} has shape {tuple(w.shape)}, the VGG backbone needs "
                                   f"(1, {width}, 1, 1); the heads do not belong to this backbone")
        out[f"heads.{k}.weight"] = w
    return out


def installed_heads_path() -> Path | None:
    """lpips' ``vgg.pth`` inside an installed ``lpips`` package (found without importing it), or None."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights" / "v0.1" / HEADS_FILE
        if path.is_file():
            return path
    return None


def resolve_lpips_files(path: str | os.PathLike, heads: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(backbone file, heads file) from a user's choice.

    ``path`` is the VGG16 file or a folder holding exactly one ``vgg16*.pth``; the heads are ``heads`` when
    given, else ``vgg.pth`` beside the backbone, else the one inside an installed lpips package.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.glob("vgg16*.pth") if p.is_file())
        if len(found) != 1:
            raise ModelFormatError(f"{path} must hold exactly one torchvision VGG16 file (vgg16-*.pth), found "
                                   f"{[p.name for p in found]}")
        backbone = found[0]
    elif path.is_file():
        backbone = path
    else:
        raise ModelFormatError(f"no such LPIPS backbone file or folder: {path}")
    if heads is not None:
        head_path = Path(heads)
        if not head_path.is_file():
            raise ModelFormatError(f"no such LPIPS head file: {head_path}")
    elif (backbone.parent / HEADS_FILE).is_file() and backbone.name != HEADS_FILE:
        head_path = backbone.parent / HEADS_FILE
    else:
        head_path = installed_heads_path()
        if head_path is None:
            raise ModelFormatError(f"no LPIPS linear heads found: put lpips' {HEADS_FILE} (weights/v0.1) next to "
                                   f"{backbone.name} or pass its path")
    return backbone, head_path


@refuse_broken_files
def load_lpips(path: str | os.PathLike, heads: str | os.PathLike | None = None) -> LPIPS:
    """LPIPS-VGG from a VGG16 backbone file (or folder) and the v0.1 heads (see ``resolve_lpips_files``)."""
    backbone, head_path = resolve_lpips_files(path, heads)
    widths, sd = _vgg_weights(_read(backbone, "torchvision VGG16 state dict"), backbone.name)
    sd.update(_head_weights(_read(head_path, "LPIPS head file"), widths, head_path.name))
    model = LPIPS(widths)
    sd.update({k: v for k, v in model.state_dict().items() if k in ("shift", "scale")})
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model


__all__ = ["LPIPS", "load_lpips", "resolve_lpips_files", "installed_heads_path"]
