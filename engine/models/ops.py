"""Pure-PyTorch reference ops: FIR resampling (upfirdn2d) and biased leaky ReLU for the StyleGAN2 networks, and
the one Gaussian blur (line drawings, synthetic styles, augmentation, SSIM's window).

Nothing here compiles or touches CUDA; every op runs wherever its input tensor lives.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2
MIN_SIGMA = 1e-3  # px: a narrower Gaussian is a single tap of 1 (the image unchanged)
BLUR_PADDINGS = ("replicate", "valid")


def fir_taps(taps: tuple[float, ...] | list[float], *, device=None, dtype=torch.float32) -> torch.Tensor:
    """The normalised 1-D taps of a separable FIR filter: the 2-D filter is ``outer(t, t)`` and sums to 1."""
    t = torch.as_tensor(taps, dtype=torch.float64, device="cpu")  # checked here, also under a meta device context
    if t.ndim != 1 or t.numel() == 0 or float(t.sum()) == 0.0:
        raise ValueError(f"a FIR filter needs a non-empty 1-D list of taps with a non-zero sum, got {taps!r}")
    return (t / t.sum()).to(device=device, dtype=dtype)


def fir_filter_2d(taps: tuple[float, ...] | list[float]) -> torch.Tensor:
    """The 2-D filter ``outer(t, t)`` (sum 1) as NVlabs stores it in its ``resample_filter`` buffers. [k, k]"""
    t = fir_taps(taps)
    return torch.outer(t, t)


def upfirdn2d(
    x: torch.Tensor,
    taps: torch.Tensor,
    *,
    up: int = 1,
    down: int = 1,
    pad: tuple[int, int] = (0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative crops), FIR-filter with ``outer(taps, taps) * gain``, subsample.

    x: [B, C, H, W]; taps: normalised 1-D taps [k] (see ``fir_taps``). The same padding is used on both axes.
    Output: [B, C, (H*up + pad0 + pad1 - k + down) // down, ...]. The filter is applied as a true convolution
    (flipped taps) in one depthwise pass.
    """
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)  # [B, C, H, 1, W, 1]
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])  # zeros after every sample
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    conv_pad = 0
    if p0 == p1 and p0 > 0:
        conv_pad = p0  # symmetric zero padding inside the conv: no padded copy
    elif p0 or p1:
        x = F.pad(x, [p0, p1, p0, p1])
    k = taps.numel()
    t = taps.flip(0).to(dtype=x.dtype, device=x.device)
    f = (torch.outer(t, t) * gain).view(1, 1, k, k).expand(c, 1, k, k)  # one depthwise 2-D pass
    x = F.conv2d(x, f, padding=conv_pad, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def bias_lrelu(x: torch.Tensor, bias: torch.Tensor | None, *, gain: float = 1.0, clamp: float | None = None):
    """``clamp(lrelu(x + bias, 0.2) * sqrt(2) * gain, -clamp, clamp)``; bias broadcasts over dim 1."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    x = F.leaky_relu(x, LRELU_SLOPE)
    x = x * (SQRT2 * gain)
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def gaussian_taps(sigma: float | torch.Tensor, *, radius: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised Gaussian taps ``exp(-t^2 / (2 sigma^2))`` at t = -radius..radius pixels (K = 2 radius + 1).

    sigma: a number -> [K]; a tensor [B] (one per image) -> [B, K]. A sigma below ``MIN_SIGMA`` counts as
    ``MIN_SIGMA``: its taps are a single 1, so sigma 0 leaves an image unchanged."""
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)  # [K]
    if isinstance(sigma, torch.Tensor):
        s = sigma.to(device=device, dtype=dtype).clamp_min(MIN_SIGMA)[:, None]  # [B, 1]
        k = torch.exp(-t.square() / (2 * s.square()))  # [B, K]
        return k / k.sum(1, keepdim=True)
    s = max(float(sigma), MIN_SIGMA)
    k = torch.exp(-t.square() / (2 * s * s))
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float | torch.Tensor, *, radius: int | None = None,
                  padding: str = "replicate") -> torch.Tensor:
    """Separable Gaussian blur (rows, then columns) of x [B, C, H, W], each channel on its own.

    sigma: in pixels, a number for every image or a tensor [B] with one per image (then ``radius`` is required).
    radius: taps each side (default ``max(1, ceil(3 sigma))``). padding: ``"replicate"`` the border pixels ->
    [B, C, H, W], or ``"valid"`` (no padding, only the positions the whole window covers) -> [B, C, H - 2r, W - 2r].
    """
    if padding not in BLUR_PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(BLUR_PADDINGS)}, got {padding!r}")
    if radius is None:
        if isinstance(sigma, torch.Tensor):
            raise ValueError("a blur with one sigma per image needs its radius")
        radius = max(1, math.ceil(3 * sigma))
    b, c, h, w = x.shape
    taps = gaussian_taps(sigma, radius=radius, device=x.device, dtype=x.dtype)
    if taps.ndim == 1:
        return _separable(x, taps.expand(c, -1), radius, padding)
    y = _separable(x.reshape(1, b * c, h, w), taps.repeat_interleave(c, 0), radius, padding)  # [1, B*C, h', w']
    return y.view(b, c, *y.shape[-2:])


def _separable(x: torch.Tensor, taps: torch.Tensor, radius: int, padding: str) -> torch.Tensor:
    """Channel g of x [N, G, H, W] filtered by taps[g] [G, K] along the rows, then the columns."""
    g = taps.shape[0]
    if padding != "valid":
        x = F.pad(x, (radius, radius, 0, 0), mode=padding)
    x = F.conv2d(x, taps[:, None, None, :], groups=g)
    if padding != "valid":
        x = F.pad(x, (0, 0, radius, radius), mode=padding)
    return F.conv2d(x, taps[:, None, :, None], groups=g)
