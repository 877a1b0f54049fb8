"""Visual domains and the ``render_faces`` entry point: one ``Scene`` rendered as a photo, a cartoon, a line
drawing, a pencil sketch, a painting or pop art. Every style reads the same layers, so the same parameters give
the same face in every domain.

All styles return RGB in [0,1], [B,3,H,W]. Widths are in image widths, so a style looks the same at any size.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from engine.models.ops import gaussian_blur
from engine.synth.scene import Scene, build_scene, coverage, line_profile, smoothstep

# irradiance / pi = sum_k A_k c_k Y_k(n), A = (pi, 2pi/3, pi/4) / pi per SH order
_SH_WEIGHTS = torch.tensor([1.0, 2 / 3, 2 / 3, 2 / 3, 0.25, 0.25, 0.25, 0.25, 0.25])
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def irradiance(scene: Scene) -> torch.Tensor:
    """Diffuse shading E(n)/pi from the 9 SH lighting coefficients; 1 on the unlit background. [B,1,H,W]"""
    n = scene.normal
    x, y, z = n[:, 0:1], n[:, 1:2], n[:, 2:3]
    basis = (torch.full_like(x, 0.282095), 0.488603 * y, 0.488603 * z, 0.488603 * x, 1.092548 * x * y,
             1.092548 * y * z, 0.315392 * (3 * z * z - 1), 1.092548 * x * z, 0.546274 * (x * x - y * y))
    c = (scene.sh * _SH_WEIGHTS).view(-1, 9, 1, 1, 1).unbind(1)
    e = sum(ck * bk for ck, bk in zip(c, basis)).clamp(min=0.04)
    return torch.lerp(torch.ones_like(e), e, scene.lit)


def _specular(scene: Scene, *, power: float) -> torch.Tensor:
    """Blinn-Phong highlight towards the viewer, weighted by each surface's shine. [B,1,H,W]"""
    half = scene.light + torch.tensor([0.0, 0.0, 1.0])
    half = (half / half.norm(dim=1, keepdim=True)).view(-1, 3, 1, 1)
    intensity = (scene.sh[:, 1:4].norm(dim=1) / (math.pi * 0.488603)).view(-1, 1, 1, 1)
    return scene.shine * intensity * (scene.normal * half).sum(1, keepdim=True).clamp(min=0) ** power


def _blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """``gaussian_blur`` with ``sigma`` in image widths, 2.5 sigma each side (skipped below a third of a pixel)."""
    s = sigma * img.shape[-1]
    return img if s < 0.33 else gaussian_blur(img, s, radius=max(1, math.ceil(2.5 * s)))


def _shaded(scene: Scene) -> torch.Tensor:
    """Albedo lit by the SH environment, with creases and contact shadows. [B,3,H,W]"""
    px = 1.0 / scene.size
    occlusion = 1.0 - 0.22 * line_profile(scene.edge, 0.008 + px) * scene.lit
    return scene.albedo * scene.tex * irradiance(scene) * (1.0 - 0.4 * scene.crease) * occlusion


def photo(scene: Scene) -> torch.Tensor:
    """Soft shaded, textured, slightly blurred, vignetted."""
    img = _shaded(scene) + 0.45 * _specular(scene, power=24.0)
    img = _blur(img, 0.0045)
    vignette = 1.0 - 0.25 * (scene.x ** 2 + scene.y ** 2)
    return (img * vignette).clamp(0, 1)


def toon(scene: Scene) -> torch.Tensor:
    """Flat saturated colours, two-tone cel shading and bold black outlines."""
    px = 1.0 / scene.size
    e = irradiance(scene)
    ambient = (scene.sh[:, 0] / (2 * math.sqrt(math.pi))).view(-1, 1, 1, 1)
    cel = torch.where(e > ambient + 0.12, 1.08, 0.78)
    cel = torch.lerp(torch.ones_like(cel), cel, scene.lit)
    grey = (scene.albedo * _LUMA).sum(1, keepdim=True)
    flat = (grey + 1.35 * (scene.albedo - grey)).clamp(0, 1) * cel
    line = torch.maximum(coverage(scene.edge - max(0.007, 0.6 * px), px), (scene.crease > 0.6).float() * 0.8)
    return (flat * (1 - line)).clamp(0, 1)


def edges(scene: Scene) -> torch.Tensor:
    """A line drawing: dark contours and folds on white."""
    px = 1.0 / scene.size
    line = torch.maximum(coverage(scene.edge - max(0.005, 0.6 * px), px), 0.8 * smoothstep(0.25, 0.7, scene.crease))
    return (1.0 - 0.92 * line).expand(-1, 3, -1, -1).contiguous()


def sketch(scene: Scene) -> torch.Tensor:
    """Pencil on paper: diagonal hatching where the face is dark, graphite contours, grey."""
    px = 1.0 / scene.size
    tone = (_shaded(scene) * _LUMA).sum(1, keepdim=True)
    dark = ((1.0 - tone) * (0.3 + 0.7 * scene.lit) - 0.3).clamp(0, 1)
    freq = 2 * math.pi * 22.0
    h1 = 0.5 + 0.5 * torch.sin(freq * (scene.x + scene.y) + 0.5 * scene.noise[:, 0:1])
    h2 = 0.5 + 0.5 * torch.sin(freq * (scene.x - scene.y) + 0.5 * scene.noise[:, 1:2])
    hatch = smoothstep(0.3, 0.7, h1 * dark * 2.0) + 0.8 * smoothstep(0.3, 0.7, h2 * (dark - 0.3) * 2.5)
    width = max(0.005, 0.7 * px) * (1.0 + 0.35 * scene.noise[:, 2:3]).clamp(0.4, 1.6)
    line = torch.maximum(coverage(scene.edge - width, px) * 0.85, 0.6 * smoothstep(0.3, 0.8, scene.crease))
    paper = 0.95 + 0.012 * scene.noise[:, 2:3]
    value = paper * (1.0 - 0.5 * hatch.clamp(0, 1)) * (1.0 - line) + 0.12 * line
    tint = torch.tensor([1.0, 0.98, 0.94]).view(1, 3, 1, 1)
    return (value * tint).clamp(0, 1)


def painting(scene: Scene) -> torch.Tensor:
    """Oil-paint look: wobbly strokes, blurred and posterised saturated colour, canvas weave, warm varnish."""
    img = _shaded(scene) + 0.25 * _specular(scene, power=10.0)
    b, _, h, w = img.shape
    grid = torch.stack(torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")[::-1], -1)
    shift = 0.008 * scene.noise[:, 1:3].permute(0, 2, 3, 1)
    img = F.grid_sample(img, grid.unsqueeze(0) + shift, mode="bilinear", padding_mode="border", align_corners=True)
    img = _blur(img, 0.005)
    grey = (img * _LUMA).sum(1, keepdim=True)
    img = grey + 1.45 * (img - grey)
    img = torch.lerp(img, torch.round(img * 5.0) / 5.0, 0.45)
    strokes = 1.0 + 0.07 * torch.tanh(scene.noise[:, 3:4] + scene.noise[:, 0:1])
    weave = 1.0 + 0.035 * torch.sin(scene.x * 2 * math.pi * 40) * torch.sin(scene.y * 2 * math.pi * 40)
    varnish = torch.tensor([1.05, 0.99, 0.85]).view(1, 3, 1, 1)
    return (img * strokes * weave * varnish).clamp(0, 1)


def pop(scene: Scene) -> torch.Tensor:
    """Pop-art print: four vivid flat inks by brightness, halftone dots in the mid tone, thick outlines."""
    px = 1.0 / scene.size
    tone = (_shaded(scene) * _LUMA).sum(1, keepdim=True)
    hue = scene.hue.view(-1, 1, 1, 1)
    inks = [_hue_rgb(hue + off, sat, val) for off, sat, val in
            ((0.0, 0.85, 0.95), (0.5, 0.45, 1.0), (0.15, 0.9, 0.95), (0.7, 0.9, 0.45))]
    bg, light, mid, dark = inks
    dots = (torch.sin(scene.x * 2 * math.pi * 18) * torch.sin(scene.y * 2 * math.pi * 18) > 0.2).float()
    mid_tex = torch.lerp(mid, dark, 0.55 * dots)
    figure = torch.where(tone > 0.62, light, torch.where(tone > 0.36, mid_tex, dark))
    img = torch.lerp(bg.expand_as(figure), figure, (scene.lit > 0.5).float())
    line = coverage(scene.edge - max(0.009, 0.7 * px), px)
    return (img * (1 - line)).clamp(0, 1)


def _hue_rgb(h: torch.Tensor, s: float, v: float) -> torch.Tensor:
    """HSV (hue tensor [B,1,1,1]) -> RGB [B,3,1,1]."""
    k = (torch.tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1) + h * 6.0) % 6.0
    return v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


STYLES = {"photo": photo, "toon": toon, "edges": edges, "sketch": sketch, "painting": painting, "pop": pop}

DOMAINS: tuple[str, ...] = tuple(STYLES)
MIN_SIZE, MAX_SIZE = 16, 2048
CHUNK_PIXELS = 1 << 16  # faces are rendered in chunks of about this many pixels: cache-sized tensors run ~2x faster


def check_domain(domain: str) -> str:
    """``domain`` if it is known, else a ValueError naming the choices."""
    if domain not in STYLES:
        raise ValueError(f"unknown synthetic domain {domain!r}; choose one of: {', '.join(DOMAINS)}")
    return domain


def check_size(size: int) -> int:
    """``size`` if it is a usable image side, else a ValueError."""
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"image size must be an integer between {MIN_SIZE} and {MAX_SIZE} pixels, got {size!r}")
    return size


def render_faces(params, *, size: int, domain: str = "photo") -> torch.Tensor:
    """Faces of ``params`` [B, NUM_PARAMS] (or one [NUM_PARAMS]) drawn in ``domain``: RGB in [0,1], [B,3,size,size]."""
    check_domain(domain)
    check_size(size)
    params = np.asarray(params, dtype=np.float64)
    if params.ndim == 1:
        params = params[None]
    chunk = max(1, CHUNK_PIXELS // (size * size))
    with torch.inference_mode():
        parts = [STYLES[domain](build_scene(params[i:i + chunk], size=size)) for i in range(0, len(params), chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, 3, size, size)
