"""GAN inversion: find the latent (and noise maps) whose rendering matches an aligned photo.

Three parameterisations (``METHODS``):

* ``"sefa"``: UI2I's improved inversion (``UI2I_FACTS.md`` §4): one row vector v [1, w_dim], started at the mean
  of 10 000 seeded N(0, 1) samples (about 0), mapped to W by the SeFa basis, ``w = v @ eigvec``, and broadcast to
  every layer (W, not W+); no truncation.
* ``"w"``: plain W optimisation, started at the generator's mean w.
* ``"w+"``: one w per layer (W+), started at the mean w, with an optional pull of the rows towards their mean
  (``w_plus_regularize``: mean over rows of the squared distance to the row mean) that keeps the code nearer W,
  where the editing tools were fitted.

Noise maps: with ``optimize_noise`` they are optimised jointly, as the reference does (drawn from the seed, kept
in check with the noise regulariser weighted 1e5, renormalised to zero mean / unit std after each step); the
result then holds maps that must be rendered with it. Without, they stay at their start (``noise_init="const"``:
the generator's stored maps, so ``G.synthesis(ws, noise_mode="const")`` reproduces the result). Adam with the
reference learning-rate schedule (linear warm-up over the first 5 %, cosine ramp-down over the last 25 %).

The reference loss is LPIPS-VGG, whose VGG16 weights cannot be downloaded here; the default loss instead is pixel
MSE plus (1 - MS-SSIM) with as many scales as the image size allows (``loss="ms-ssim"``). A user with the LPIPS
files on disk sets ``loss="lpips"`` and ``lpips_path``. ``InversionSettings.ui2i`` gives the reference's settings.
The result holds the **final** code, not the reference's step-100 snapshot (§4.4); with ``keep_best`` (how the
editor refines an inversion) it holds the step whose rendering had the best PSNR, the start included.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.algorithms.sefa import sefa_factor
from engine.algorithms.similarity import ms_ssim, ms_ssim_scales, psnr, ssim
from engine.files.configs import DictForm
from engine.models.stylegan2 import REDUCED_DTYPES, Generator

METHODS = ("sefa", "w", "w+")
LOSSES = ("ms-ssim", "lpips")
NOISE_INITS = ("random", "const")
V_INIT_SAMPLES = 10_000
LPIPS_MAX_SIZE = 256
MIN_RESOLUTION = 16


@dataclass(frozen=True)
class InversionSettings(DictForm, what="the inversion settings"):
    """Everything that decides an inversion (saved with a project so a result can be reproduced).

    loss: ``"ms-ssim"``: ``mse_weight * MSE + l1_weight * L1 + perceptual_weight * (1 - MS-SSIM)``;
    ``"lpips"``: the same with LPIPS-VGG as the perceptual term (needs ``lpips_path``: the VGG16 file or a
    folder holding it; ``lpips_heads_path``: lpips' ``vgg.pth`` when it is not beside it). Pixel terms are on
    images in [-1, 1]. ``ms_ssim_scales`` None: as many as the resolution allows. ``w_plus_regularize`` only
    acts on method ``"w+"``.
    noise_init: ``"random"`` (seeded N(0, 1), as the reference) or ``"const"`` (the generator's stored maps).
    The defaults were tuned on the embedded default generator (``benchmarks/inversion.py``): W+ with a light row
    pull, 400 steps, MSE + 0.1 (1 - MS-SSIM), and the generator's own noise maps left as they are, so the
    editor's usual rendering (constant noise) shows exactly the measured reconstruction; optimising noise from a
    random start did not reconstruct better there (31.8 vs 31.9 dB) and would tie the code to its noise maps.
    """

    method: str = "w+"
    steps: int = 400
    lr: float = 0.1
    rampup: float = 0.05
    rampdown: float = 0.25
    noise_regularize: float = 1e5
    optimize_noise: bool = False
    noise_init: str = "const"
    seed: int = 0
    loss: str = "ms-ssim"
    mse_weight: float = 1.0
    l1_weight: float = 0.0
    perceptual_weight: float = 0.1
    ms_ssim_scales: int | None = None
    w_plus_regularize: float = 1e-4
    lpips_path: str | None = None
    lpips_heads_path: str | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"inversion method must be one of {METHODS}, got {self.method!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"inversion loss must be one of {LOSSES}, got {self.loss!r}")
        if self.noise_init not in NOISE_INITS:
            raise ValueError(f"noise_init must be one of {NOISE_INITS}, got {self.noise_init!r}")
        if int(self.steps) < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not (0 <= self.rampup <= 1 and 0 <= self.rampdown <= 1):
            raise ValueError(f"rampup and rampdown are fractions of the run in [0, 1], got {self.rampup}, "
                             f"{self.rampdown}")
        for name in ("noise_regularize", "mse_weight", "l1_weight", "perceptual_weight", "w_plus_regularize"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.ms_ssim_scales is not None and int(self.ms_ssim_scales) < 1:
            raise ValueError(f"ms_ssim_scales must be >= 1 or None, got {self.ms_ssim_scales}")
        if not 0 <= int(self.seed) < 2**63:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        if self.loss == "lpips" and not self.lpips_path:
            raise ValueError("loss 'lpips' needs lpips_path (the VGG16 weights vgg16-*.pth or their folder)")

    @classmethod
    def ui2i(cls, lpips_path: str | None = None, lpips_heads_path: str | None = None,
             **overrides) -> "InversionSettings":
        """The reference's projector_factor.py settings: SeFa parameterisation, 1000 steps, noise maps from the seed
        optimised with the 1e5 regulariser, lr 0.1 with its ramps; loss LPIPS alone when ``lpips_path`` is given,
        else the offline loss at its default weights."""
        kw = dict(method="sefa", steps=1000, optimize_noise=True, noise_init="random", noise_regularize=1e5, lr=0.1,
                  rampup=0.05, rampdown=0.25, w_plus_regularize=0.0)
        if lpips_path is not None:
            kw |= dict(loss="lpips", mse_weight=0.0, l1_weight=0.0, perceptual_weight=1.0, lpips_path=str(lpips_path),
                       lpips_heads_path=lpips_heads_path)
        return cls(**(kw | overrides))


@dataclass
class InversionResult:
    """The final code and what it renders (CPU tensors).

    ws [1, num_ws, w_dim]; noise: the optimised maps [1, 1, r, r] in ``G.synthesis`` order (render with
    ``G.synthesis(ws, noise=noise)`` to reproduce ``image``; empty for generators without noise);
    image [1, 3, H, W] clamped to [-1, 1]; psnr (dB) and ssim against the target; steps run; wall seconds;
    kept_step: how many optimiser steps the returned code had taken (``steps`` for the final code; with
    ``keep_best`` an earlier, better one, 0 being the start itself).
    """

    ws: torch.Tensor
    noise: list[torch.Tensor]
    image: torch.Tensor
    psnr: float
    ssim: float
    steps: int
    seconds: float
    kept_step: int


def lr_at(step: int, total: int, *, lr: float, rampup: float, rampdown: float) -> float:
    """The projector's learning rate at ``step`` of ``total``: linear warm-up over the first ``rampup`` of the run,
    cosine ramp-down over the last ``rampdown`` (either 0 disables that ramp)."""
    t = step / total
    down = min(1.0, (1 - t) / rampdown) if rampdown > 0 else 1.0
    up = min(1.0, t / rampup) if rampup > 0 else 1.0
    return lr * (0.5 - 0.5 * math.cos(down * math.pi)) * up


def noise_regularize(noises: list[torch.Tensor]) -> torch.Tensor:
    """Sum over maps and over their 2x2-average-pooled versions down to 8x8 of the squared mean products of the
    map with itself shifted by one pixel along x and along y (penalises spatially correlated noise)."""
    total = None
    for n in noises:  # [B, 1, r, r]
        size = n.shape[-1]
        while True:
            term = (n * torch.roll(n, 1, dims=3)).mean().square() + (n * torch.roll(n, 1, dims=2)).mean().square()
            total = term if total is None else total + term
            if size <= 8:
                break
            n = n.reshape(n.shape[0], n.shape[1], size // 2, 2, size // 2, 2).mean(dim=(3, 5))
            size //= 2
    return total if total is not None else torch.zeros(())


def _check_target(G: Generator, target: torch.Tensor) -> None:
    r, c = G.img_resolution, G.img_channels
    if not isinstance(target, torch.Tensor) or target.ndim != 4 or tuple(target.shape) != (1, c, r, r):
        shape = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise ValueError(f"the target must be one aligned image [1, {c}, {r}, {r}] in [-1, 1] at the generator's "
                         f"resolution, got {shape}")
    if not torch.isfinite(target).all():
        raise ValueError("the target image holds NaN or infinite values")


def _init_w(G: Generator, init_ws: torch.Tensor | None, device) -> torch.Tensor:
    """The starting W+ [1, num_ws, w_dim]: ``init_ws`` (W [1, w_dim] or W+) or the mean w."""
    if init_ws is None:
        return G.w_avg.detach().to(device).view(1, 1, -1).expand(1, G.num_ws, -1).clone()
    ws = init_ws.detach().to(device, torch.float32)
    if ws.ndim == 2:
        ws = ws.unsqueeze(1).expand(-1, G.num_ws, -1)
    if ws.ndim != 3 or tuple(ws.shape) != (1, G.num_ws, G.w_dim):
        raise ValueError(f"init_ws must be [1, {G.w_dim}] or [1, {G.num_ws}, {G.w_dim}], got "
                         f"{tuple(init_ws.shape)}")
    return ws.clone()


def _parameterise(G: Generator, method: str, init_ws: torch.Tensor | None, gen: torch.Generator, device):
    """The optimised latent and its map to W+ [1, num_ws, w_dim] for a method."""
    ws0 = _init_w(G, init_ws, device)  # [1, num_ws, w_dim]
    if method == "sefa":
        eigvec = sefa_factor(G)[0].to(device)  # [w_dim, w_dim], columns = directions
        if init_ws is None:  # the mean of 10 000 N(0, I) samples: about 0
            latent = torch.randn(V_INIT_SAMPLES, G.w_dim, generator=gen).mean(0, keepdim=True).to(device)
        else:
            latent = ws0.mean(1) @ eigvec.t()  # [1, w_dim]; eigvec is orthogonal, so latent @ eigvec = w

        def to_ws(v):
            return (v @ eigvec).unsqueeze(1).expand(-1, G.num_ws, -1)
    elif method == "w":
        latent = ws0.mean(1)  # [1, w_dim]

        def to_ws(w):
            return w.unsqueeze(1).expand(-1, G.num_ws, -1)
    else:
        latent = ws0

        def to_ws(ws):
            return ws
    return latent, to_ws


class _Reconstruction:
    """The image term of the objective for one settings / resolution."""

    def __init__(self, settings: InversionSettings, resolution: int, device, lpips_model=None):
        self.s = settings
        self.lpips = None
        if settings.loss == "lpips" and settings.perceptual_weight > 0:
            if lpips_model is None:
                from engine.models.lpips import load_lpips

                lpips_model = load_lpips(settings.lpips_path, settings.lpips_heads_path)
            self.lpips = lpips_model.to(device)
            self.pool = max(1, resolution // LPIPS_MAX_SIZE)
        elif settings.perceptual_weight > 0:
            most = ms_ssim_scales(resolution)
            self.scales = most if settings.ms_ssim_scales is None else int(settings.ms_ssim_scales)
            if self.scales > most:
                raise ValueError(f"a {resolution} px generator allows at most {most} MS-SSIM scales, "
                                 f"settings ask for {self.scales}")

    def __call__(self, img: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        s = self.s
        loss = img.new_zeros(())
        if s.mse_weight:
            loss = loss + s.mse_weight * F.mse_loss(img, target)
        if s.l1_weight:
            loss = loss + s.l1_weight * F.l1_loss(img, target)
        if s.perceptual_weight:
            if self.lpips is not None:
                a, b = (F.avg_pool2d(img, self.pool), F.avg_pool2d(target, self.pool)) if self.pool > 1 \
                    else (img, target)
                loss = loss + s.perceptual_weight * self.lpips(a, b).sum()
            else:
                loss = loss + s.perceptual_weight * (1 - ms_ssim(img, target, scales=self.scales)).sum()
        return loss


def invert(G: Generator, target: torch.Tensor, *, settings: InversionSettings,
           init_ws: torch.Tensor | None = None, init_noise: list[torch.Tensor] | None = None,
           progress: Callable[[int, int, dict, torch.Tensor | None], None] | None = None,
           should_stop: Callable[[], bool] | None = None, preview_every: int = 10,
           lpips_model=None, keep_best: bool = False) -> InversionResult:
    """Invert ``target`` [1, 3, H, W] in [-1, 1] (H = W = G's resolution) into G; see the module docstring.

    init_ws: a starting latent (W [1, w_dim] or W+ [1, num_ws, w_dim], e.g. from an encoder); W+ rows are
    averaged for the W methods; for ``"sefa"`` the start is ``v = w @ eigvec^T`` (so ``v @ eigvec = w``).
    init_noise: starting noise maps [1, 1, r, r] in ``G.synthesis`` order (e.g. a previous result's, to refine
    it), instead of ``settings.noise_init``.
    progress(step, total, {"psnr", "ssim", "loss"}, preview) after every step (metrics of the image that step
    rendered; preview: that image [1, 3, H, W] clamped, every ``preview_every`` steps and at the last, else None).
    should_stop() is asked before every step; when it says True the run ends and the current code is returned
    (``result.steps`` tells how many steps ran). lpips_model: an already loaded ``LPIPS`` to reuse (else loaded
    from ``settings.lpips_path`` when the loss needs it). keep_best: return the code (and noise) whose rendering had
    the highest PSNR against the target among every step's, the start's and the final one's, instead of the final
    code, so the result is never worse than the start (refining an already fitted code, where the restarted
    learning-rate schedule can knock it off its optimum). G is not modified (its parameters' ``requires_grad``
    flags are restored). A float16 / bfloat16 generator is inverted through a float32 copy of its rounded weights
    (the network it renders with, in float32 arithmetic): a mean loss over a 1024 px image has gradients near 1e-7
    per pixel, which float16 cannot hold, and the optimised noise maps stay float32.
    """
    _check_target(G, target)
    if torch.is_inference_mode_enabled():
        raise RuntimeError("invert needs autograd: call it outside torch.inference_mode() (no_grad is fine)")
    if G.img_resolution < MIN_RESOLUTION:
        raise ValueError(f"inversion needs a generator of at least {MIN_RESOLUTION} px, got {G.img_resolution}")
    if int(preview_every) < 1:
        raise ValueError(f"preview_every must be >= 1, got {preview_every}")
    start = time.perf_counter()
    if G.precision in REDUCED_DTYPES:
        G = copy.deepcopy(G).to_precision(torch.float32)
    s = settings
    device = G.w_avg.device
    target = target.detach().to(device, torch.float32)
    gen = torch.Generator().manual_seed(int(s.seed))
    loss_fn = _Reconstruction(s, G.img_resolution, device, lpips_model)

    latent, to_ws = _parameterise(G, s.method, init_ws, gen, device)  # drawn first: v does not depend on noise
    layers = G.synthesis.noise_layers() if G.cfg.use_noise else []
    if init_noise is not None:
        if len(init_noise) != len(layers) or any(tuple(n.shape) != (1, 1, la.resolution, la.resolution)
                                                 for n, la in zip(init_noise, layers)):
            raise ValueError(f"init_noise must be {len(layers)} maps [1, 1, r, r] in the synthesis order, got "
                             f"{[tuple(n.shape) for n in init_noise]}")
        noises = [n.detach().to(device, torch.float32).clone() for n in init_noise]
    elif s.noise_init == "random":
        noises = [torch.randn(1, 1, layer.resolution, layer.resolution, generator=gen).to(device)
                  for layer in layers]
    else:
        noises = [layer.noise_const.detach().to(device).view(1, 1, *layer.noise_const.shape).clone()
                  for layer in layers]
    latent.requires_grad_(True)
    trained = [latent] + ([n.requires_grad_(True) for n in noises] if s.optimize_noise else [])
    opt = torch.optim.Adam(trained, lr=s.lr)

    flags = [(p, p.requires_grad) for p in G.parameters()]
    steps_run = 0
    best = None  # with keep_best: (psnr, steps taken, latent, noise maps, its clamped image)
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.enable_grad():  # also when the caller runs under no_grad
            for step in range(s.steps):
                if should_stop is not None and should_stop():
                    break
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, s.steps, lr=s.lr, rampup=s.rampup, rampdown=s.rampdown)
                ws = to_ws(latent)  # [1, num_ws, w_dim]
                img = G.synthesis(ws, noise=noises or None)  # [1, 3, H, W], the code after `step` steps
                shown = img.detach().clamp(-1, 1)
                quality = float(psnr(shown, target)[0]) if progress is not None or keep_best else None
                if keep_best and (best is None or quality > best[0]):
                    best = (quality, step, latent.detach().clone(), [n.detach().clone() for n in noises], shown)
                loss = loss_fn(img, target)
                if s.method == "w+" and s.w_plus_regularize:
                    loss = loss + s.w_plus_regularize * (ws - ws.mean(1, keepdim=True)).square().sum(2).mean()
                if s.optimize_noise and noises and s.noise_regularize:
                    loss = loss + s.noise_regularize * noise_regularize(noises)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if s.optimize_noise:
                    with torch.no_grad():
                        for n in noises:
                            n.sub_(n.mean()).div_(n.std())
                steps_run = step + 1
                if progress is not None:
                    with torch.no_grad():
                        metrics = {"psnr": quality, "ssim": float(ssim(shown, target)[0]), "loss": float(loss)}
                    last = steps_run == s.steps
                    progress(steps_run, s.steps, metrics,
                             shown.cpu() if steps_run % preview_every == 0 or last else None)
        with torch.no_grad():
            ws = to_ws(latent.detach()).contiguous()
            final_noise = [n.detach().clone() for n in noises]
            image = G.synthesis(ws, noise=final_noise or None).clamp(-1, 1)
            final_psnr, kept_step = float(psnr(image, target)[0]), steps_run
            if best is not None and best[0] > final_psnr:  # an earlier step rendered closer than the final code
                final_psnr, kept_step, kept, final_noise, image = best
                ws = to_ws(kept).contiguous()
            quality = final_psnr, float(ssim(image, target)[0])
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return InversionResult(ws=ws.cpu(), noise=[n.cpu() for n in final_noise], image=image.cpu(),
                           psnr=quality[0], ssim=quality[1], steps=steps_run, seconds=time.perf_counter() - start,
                           kept_step=kept_step)


__all__ = ["METHODS", "LOSSES", "InversionSettings", "InversionResult", "lr_at", "noise_regularize", "invert"]
