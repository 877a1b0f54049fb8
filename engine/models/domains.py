"""The domain classifier: a small residual CNN that tells which visual domain (photo, toon, edges, ...) an image is in.

It measures domain translation: how much a translated face looks like its target domain (the classifier's
probability of that domain, ``confidence``) and TUNIT's translation accuracy (the share of outputs classified as the
target domain). Trained on the synthetic world (``engine.train.domains``), where every domain draws the same faces.

Layout of a file (a ``torch.save`` of plain containers, loadable with ``weights_only=True``)::

    {"format": "face-editor/domains", "format_version": 1,
     "arch": DomainConfig.to_dict(), "state_dict": {...}, "extras": {...}}   # extras: free-form metadata
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from engine.files.checkpoints import atomic_torch_save, load_module, module_checkpoint
from engine.files.configs import DictForm
from engine.models.estimator import check_stages, fit_images, init_weights, residual_trunk
from engine.models.meta import skip_init

FORMAT = "face-editor/domains"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DomainConfig(DictForm, what="the domain classifier's architecture"):
    """Architecture and class names of a domain classifier; everything needed to rebuild it.

    domain_names: one name per class (the logits' order). input_size: the side images are resized to.
    stem_width: channels of the full-resolution stem; widths/blocks: channels and residual blocks per stage, stage k
    running at ``input_size / 2**(k+1)`` pixels. The head reads the mean and standard deviation of the last stage.
    """

    domain_names: tuple[str, ...]
    input_size: int = 64
    widths: tuple[int, ...] = (16, 32, 48, 64)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    stem_width: int = 16

    def __post_init__(self):
        for name in ("domain_names", "widths", "blocks"):
            cast = str if name == "domain_names" else int
            object.__setattr__(self, name, tuple(cast(v) for v in getattr(self, name)))
        names = self.domain_names
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"domain_names must hold at least two distinct names, got {list(names)}")
        check_stages(self)

    @property
    def num_domains(self) -> int:
        return len(self.domain_names)


class DomainClassifier(nn.Module):
    """Image [B,3,H,W] in [-1,1] (any H, W: resized to ``cfg.input_size``) -> logits [B, num_domains]."""

    def __init__(self, cfg: DomainConfig, *, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        self.stem, self.stages, cin = residual_trunk(cfg)
        self.head = skip_init(nn.Linear, 2 * cin, cfg.num_domains)
        self.extras: dict = {}
        init_weights(self, seed=seed)
        with torch.no_grad():
            self.head.weight.mul_(0.1)

    @property
    def domain_names(self) -> tuple[str, ...]:
        return self.cfg.domain_names

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean and standard deviation over space of the last stage. [B,3,H,W] -> [B, 2 * widths[-1]]"""
        # contiguous layout: channels_last backward corrupted memory with some widths (12) on torch 2.13 CPU
        h = self.stages(self.stem(fit_images(x, self.cfg.input_size)))  # [B, C, s, s]
        return torch.cat([h.mean(dim=(2, 3)), h.flatten(2).std(dim=2, unbiased=False)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over ``domain_names``. [B,3,H,W] -> [B, num_domains]"""
        return self.head(self.features(x))


def domain_index(model: DomainClassifier, domain: str) -> int:
    """The class index of ``domain``; ValueError naming the choices when the classifier does not know it."""
    if domain not in model.domain_names:
        raise ValueError(f"the domain classifier knows no domain {domain!r}; it knows {', '.join(model.domain_names)}")
    return model.domain_names.index(domain)


@torch.no_grad()
def classify(model: DomainClassifier, images: torch.Tensor, *, batch: int = 256) -> torch.Tensor:
    """Domain probabilities (softmax, columns in ``model.domain_names`` order) of RGB ``images`` [B,3,H,W] in
    [-1,1]. Any H, W: the images are resized (antialiased bilinear) to the size the classifier was trained at, so
    images far from ``cfg.input_size`` lose or invent detail the classifier may read. The model runs in eval mode
    and on its own device; the result is on the images' device. -> [B, num_domains]"""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W] RGB in [-1, 1], got shape {tuple(images.shape)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        parts = [torch.softmax(model(images[i:i + batch].to(device)), dim=1) for i in range(0, len(images), batch)]
    finally:
        model.train(was_training)
    out = torch.cat(parts) if parts else torch.zeros(0, model.cfg.num_domains, device=device)
    return out.to(images.device)


def confidence(model: DomainClassifier, images: torch.Tensor, domain: str) -> torch.Tensor:
    """The probability that each image is in ``domain`` (see ``classify``). [B,3,H,W] -> [B]"""
    return classify(model, images)[:, domain_index(model, domain)]


def domains_checkpoint(model: DomainClassifier, *, extras: dict | None = None) -> dict:
    """The project-format dict of ``model`` (CPU tensors)."""
    return module_checkpoint(model, fmt=FORMAT, version=FORMAT_VERSION, meta=extras)


def save_domains(path: str | os.PathLike, model: DomainClassifier, *, extras: dict | None = None) -> None:
    """Write ``model`` in the project's format, atomically."""
    atomic_torch_save(domains_checkpoint(model, extras=extras), path)


def load_domains(path_or_dict) -> DomainClassifier:
    """A domain classifier (in eval mode) from a project-format file or dict; ModelFormatError says what is
    wrong. Files are read with ``weights_only=True``."""
    return load_module(path_or_dict, fmt=FORMAT, version=FORMAT_VERSION, noun="a domain classifier",
                       label="domain classifier", config_cls=DomainConfig, module_cls=DomainClassifier)


__all__ = ["DomainConfig", "DomainClassifier", "domain_index", "classify", "confidence", "domains_checkpoint",
           "save_domains", "load_domains", "FORMAT", "FORMAT_VERSION"]
