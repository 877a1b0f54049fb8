"""Pivotal tuning ("keep the person"; Roich et al. 2021, PTI): after a photo is inverted, tune the generator's
synthesis weights around the found latent (the pivot) so that the pivot renders the photo, while latents around it
keep rendering what they did (a locality regulariser), so edits still work on the tuned model.

The loss is ``MSE(G'(pivot), photo) + locality_weight * MSE(G'(w_r), G(w_r))`` over images in [-1, 1], where
the ``w_r`` are ``locality_samples`` fixed latents a step ``locality_alpha`` (in W units) from the pivot towards
random mapped latents (PTI's locality regularisation; PTI also uses LPIPS, which cannot be had offline here, so the
fit is pixel MSE, which is what PSNR measures). Adam with a constant learning rate. The mapping network and the
generator's stored noise are left alone; every other synthesis parameter is tuned.

The result is the weight difference, kept as float16 (``TUNED_DTYPE``): ``apply_deltas`` adds it to a copy of
the generator, and the figures a tuning reports are those of that rounded model, so a file of the deltas
(``save_deltas`` / ``load_deltas``, a ``torch.save`` of plain tensors read with ``weights_only=True``) reopens to
exactly the same pixels.
"""
from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.algorithms.similarity import psnr, ssim
from engine.files.checkpoints import atomic_torch_save
from engine.models.stylegan2 import Generator

__all__ = ["TuneSettings", "TuneResult", "pivotal_tune", "apply_deltas", "save_deltas", "load_deltas",
           "DELTAS_FORMAT", "TUNED_DTYPE"]

DELTAS_FORMAT = "face-editor/pivotal-deltas"
TUNED_DTYPE = torch.float16


@dataclass(frozen=True)
class TuneSettings:
    """``steps``: Adam steps at most; ``seconds``: stop earlier once this much wall time has passed (None: no
    limit); ``lr``: Adam's step; ``locality_*``: the regulariser (weight 0 turns it off), on every
    ``locality_every``-th step (it doubles a step's cost)."""

    steps: int = 300
    seconds: float | None = 20.0
    lr: float = 3e-3
    locality_weight: float = 0.1
    locality_samples: int = 4
    locality_alpha: float = 10.0
    locality_every: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"tuning steps must be at least 0, got {self.steps}")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError(f"the tuning time limit must be positive, got {self.seconds}")
        if not self.lr > 0 or self.locality_weight < 0 or self.locality_samples < 0 or self.locality_alpha < 0 \
                or self.locality_every < 1:
            raise ValueError("the tuning's learning rate must be positive and its locality settings at least 0")


@dataclass(frozen=True, eq=False)
class TuneResult:
    """``deltas``: parameter name (``G.synthesis``'s) -> float16 difference; ``image`` [1, 3, R, R] the pivot
    rendered by the rounded tuned model, clamped; ``psnr``/``ssim`` against the target, ``start_psnr`` before."""

    deltas: dict[str, torch.Tensor]
    image: torch.Tensor
    psnr: float
    ssim: float
    start_psnr: float
    steps: int
    seconds: float
    stopped: bool


def _tunable(G: Generator) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in G.synthesis.named_parameters() if p.dtype.is_floating_point}


def apply_deltas(G: Generator, deltas: dict[str, torch.Tensor]) -> Generator:
    """A copy of ``G`` whose synthesis parameters are ``G``'s plus ``deltas`` (name -> tensor, rounded to
    ``TUNED_DTYPE``; ``G`` is not modified). Refused: a name the model lacks, or a shape that does not fit."""
    params = _tunable(G)
    for name, d in deltas.items():
        if name not in params:
            raise ValueError(f"the tuned weights name a layer this model lacks ({name}): they were made for another "
                             "model")
        if tuple(d.shape) != tuple(params[name].shape):
            raise ValueError(f"the tuned weights of {name} have the shape {tuple(d.shape)}, the model's is "
                             f"{tuple(params[name].shape)}: they were made for another model")
    tuned = copy.deepcopy(G)
    with torch.no_grad():
        for name, p in _tunable(tuned).items():
            if name in deltas:
                p.add_(deltas[name].to(TUNED_DTYPE).to(device=p.device, dtype=p.dtype))
    return tuned


def _locality_ws(G: Generator, pivot: torch.Tensor, settings: TuneSettings) -> torch.Tensor:
    """[K, num_ws, w_dim]: the pivot moved ``locality_alpha`` towards K seeded random mapped latents."""
    gen = torch.Generator().manual_seed(settings.seed)
    z = torch.randn(settings.locality_samples, G.z_dim, generator=gen).to(pivot.device)
    w = G.mapping(z)  # [K, num_ws, w_dim]
    direction = w - pivot
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return pivot + settings.locality_alpha * direction


def pivotal_tune(G: Generator, ws: torch.Tensor, target: torch.Tensor, *, noise: list[torch.Tensor] | None = None,
                 settings: TuneSettings = TuneSettings(),
                 progress: Callable[[int, int, float, torch.Tensor | None], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, preview_every: int = 10) -> TuneResult:
    """Tune a copy of ``G`` so that the pivot ``ws`` [1, num_ws, w_dim] renders ``target`` [1, 3, R, R] in [-1, 1]
    (with ``noise``, the inversion's maps, else the generator's constant noise); ``G`` is not modified.

    progress(step, total, psnr, preview) after every step (preview: the image [1, 3, R, R], clamped, every
    ``preview_every`` steps, else None); should_stop() before every step ends the tuning early with what it has."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError("pivotal tuning needs autograd: call it outside torch.inference_mode()")
    if ws.ndim != 3 or ws.shape[0] != 1 or tuple(ws.shape[1:]) != (G.num_ws, G.w_dim):
        raise ValueError(f"the pivot must be W+ [1, {G.num_ws}, {G.w_dim}], got {tuple(ws.shape)}")
    if tuple(target.shape) != (1, 3, G.img_resolution, G.img_resolution):
        raise ValueError(f"the target must be [1, 3, {G.img_resolution}, {G.img_resolution}], got "
                         f"{tuple(target.shape)}")
    t0 = time.perf_counter()
    pivot = ws.detach().float()
    with torch.no_grad():
        start_psnr = float(psnr(G.synthesis(pivot, noise_mode="const", noise=noise).clamp(-1, 1), target)[0])
        local_ws = _locality_ws(G, pivot, settings) if settings.locality_weight > 0 and settings.locality_samples \
            else None
        local_ref = None if local_ws is None else G.synthesis(local_ws, noise_mode="const")
    tuned = copy.deepcopy(G).float()
    for p in tuned.parameters():
        p.requires_grad_(False)
    params = _tunable(tuned)
    originals = {n: p.detach().clone() for n, p in params.items()}
    for p in params.values():
        p.requires_grad_(True)
    opt = torch.optim.Adam(params.values(), lr=settings.lr)
    steps, stopped = 0, False
    with torch.enable_grad():
        for step in range(settings.steps):
            if (should_stop is not None and should_stop()) or (
                    settings.seconds is not None and time.perf_counter() - t0 > settings.seconds):
                stopped = True
                break
            image = tuned.synthesis(pivot, noise_mode="const", noise=noise)
            loss = F.mse_loss(image, target)
            if local_ws is not None and step % settings.locality_every == 0:
                k = step // settings.locality_every % len(local_ws)
                loss = loss + settings.locality_weight * F.mse_loss(
                    tuned.synthesis(local_ws[k:k + 1], noise_mode="const"), local_ref[k:k + 1])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps = step + 1
            if progress is not None:
                show = steps % preview_every == 0 or steps == settings.steps
                with torch.no_grad():
                    clamped = image.detach().clamp(-1, 1)
                    progress(steps, settings.steps, float(psnr(clamped, target)[0]), clamped if show else None)
    deltas = {n: (p.detach() - originals[n]).to(TUNED_DTYPE).cpu() for n, p in params.items()}
    deltas = {n: d for n, d in deltas.items() if bool(d.any())}
    with torch.no_grad():
        image = apply_deltas(G, deltas).synthesis(pivot, noise_mode="const", noise=noise).clamp(-1, 1)
    return TuneResult(deltas, image, float(psnr(image, target)[0]), float(ssim(image, target)[0]), start_psnr,
                      steps, time.perf_counter() - t0, stopped)


def save_deltas(path: str | os.PathLike, deltas: dict[str, torch.Tensor], *, extras: dict | None = None) -> None:
    """Write ``deltas`` (name -> tensor, stored as float16) atomically: ``{"format", "format_version", "deltas",
    "extras"}``, plain containers only."""
    atomic_torch_save({"format": DELTAS_FORMAT, "format_version": 1,
                       "deltas": {n: d.detach().to(TUNED_DTYPE).cpu().contiguous() for n, d in deltas.items()},
                       "extras": dict(extras or {})}, path)


def load_deltas(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The deltas of a file ``save_deltas`` wrote (read with ``weights_only=True``); ValueError for anything else."""
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same refusal
        raise ValueError(f"{os.path.basename(path)} is not a readable tuning file ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != DELTAS_FORMAT or not isinstance(d.get("deltas"), dict):
        raise ValueError(f"{os.path.basename(path)} is not a 'keep the person' tuning file")
    deltas = d["deltas"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) and v.dtype == TUNED_DTYPE
               for k, v in deltas.items()):
        raise ValueError(f"{os.path.basename(path)} holds something other than float16 weight differences")
    return dict(deltas)
