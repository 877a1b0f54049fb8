"""Image similarity: PSNR, SSIM (Wang et al. 2004) and multi-scale SSIM (Wang, Simoncelli, Bovik 2003).

Pure PyTorch, differentiable, batched. Images are [B, C, H, W] in the same value range (``data_range`` is its
width: 2 for [-1, 1] images, the project's convention). SSIM uses the paper's constants: an 11x11 Gaussian
window with sigma 1.5, K1 = 0.01, K2 = 0.03, statistics over the valid part of the image (no padding), averaged
over channels and positions. MS-SSIM uses the paper's five scale weights; for images too small for five scales
it uses as many scales as fit (the smallest scale must still hold one window) with the first weights renormalised.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from engine.models.ops import gaussian_blur

WINDOW = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 4 or a.shape != b.shape:
        raise ValueError(f"expected two images of the same shape [B, C, H, W], got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 2.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: ``10 log10(data_range^2 / MSE)``. [B] (inf for equal images)"""
    _check_pair(a, b)
    mse = (a.float() - b.float()).square().flatten(1).mean(1)  # [B]
    return 10 * torch.log10(data_range**2 / mse)


def _ssim_terms(a: torch.Tensor, b: torch.Tensor, *, data_range: float, window: int,
                sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(SSIM, contrast-structure) per image, each averaged over channels and valid positions. [B], [B]"""
    if min(a.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window} pixels (its window), got "
                         f"{a.shape[-2]}x{a.shape[-1]}")
    if window % 2 != 1:
        raise ValueError(f"the SSIM window must be an odd number of pixels, got {window}")
    a, b = a.float(), b.float()

    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    # the five local means in one blur (a small image's time is the ops' overhead): [B, 5C, h, w]
    means = gaussian_blur(torch.cat([a, b, a * a, b * b, a * b], 1), sigma, radius=window // 2, padding="valid")
    mu_a, mu_b, ex_aa, ex_bb, ex_ab = means.chunk(5, 1)
    var_a = ex_aa - mu_a.square()
    var_b = ex_bb - mu_b.square()
    cov = ex_ab - mu_a * mu_b
    cs = (2 * cov + c2) / (var_a + var_b + c2)  # [B, C, h, w]
    lum = (2 * mu_a * mu_b + c1) / (mu_a.square() + mu_b.square() + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 2.0, window: int = WINDOW,
         sigma: float = SIGMA) -> torch.Tensor:
    """Structural similarity per image [B]; 1 for identical images. Needs H, W >= window."""
    _check_pair(a, b)
    return _ssim_terms(a, b, data_range=data_range, window=window, sigma=sigma)[0]


def ms_ssim_scales(size: int, *, window: int = WINDOW) -> int:
    """How many MS-SSIM scales an image of side ``size`` allows: halvings while one window still fits, at most 5."""
    if size < window:
        raise ValueError(f"MS-SSIM needs images of at least {window}x{window} pixels, got side {size}")
    return min(len(MS_SSIM_WEIGHTS), int(math.floor(math.log2(size / window))) + 1)


def ms_ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 2.0, scales: int | None = None,
            window: int = WINDOW, sigma: float = SIGMA) -> torch.Tensor:
    """Multi-scale SSIM per image [B]: ``prod_j cs_j^w_j * ssim_M^w_M`` over 2x2-average-pooled scales.

    ``scales`` None: as many as the image allows (``ms_ssim_scales``). Negative contrast-structure terms are
    clipped to a small positive value so fractional powers (and their gradients) stay finite.
    """
    _check_pair(a, b)
    most = ms_ssim_scales(min(a.shape[-2:]), window=window)
    scales = most if scales is None else int(scales)
    if not 1 <= scales <= most:
        raise ValueError(f"an image of {a.shape[-2]}x{a.shape[-1]} allows 1..{most} MS-SSIM scales, got {scales}")
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], device=a.device, dtype=torch.float32)
    weights = weights / weights.sum()
    a, b = a.float(), b.float()
    out = torch.ones(a.shape[0], device=a.device, dtype=torch.float32)
    for j in range(scales):
        s, cs = _ssim_terms(a, b, data_range=data_range, window=window, sigma=sigma)
        term = s if j == scales - 1 else cs
        out = out * term.clamp_min(1e-6).pow(weights[j])
        if j < scales - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return out


__all__ = ["psnr", "ssim", "ms_ssim", "ms_ssim_scales", "MS_SSIM_WEIGHTS"]
