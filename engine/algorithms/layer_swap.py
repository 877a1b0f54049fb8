"""Layer swap between a base StyleGAN2 and a model fine-tuned from it (UI2I, Toonify) and its translation modes.

Facts: ``shared/reference/i2i/UI2I_FACTS.md`` §3 (swap), §5 (multimodal), §6 (reference-guided), §7 (multi-domain),
§8 (model distance). Everything here is a pure function of two generators and tensors; no module is changed.

Depth is a resolution (8 ... full): the highest-resolution block whose features come from the base. UI2I's odd
``swap_layer`` index l maps to depth 2 ** ((l + 5) // 2) (``depth_of_swap_layer``). Modes:

* ``"feature"`` (UI2I): the base's features after the depth block's convs replace the target's; the target's ToRGB
  at the depth block and all its blocks above run on them. Below the depth the target still runs on its own latents
  and noise, and its low-resolution RGB skip is kept in the output (the reference's behaviour, not a weight swap).
* ``"weights"`` (Toonify): every block up to the depth, ToRGB included, is the base's; the target's blocks follow.

``blend`` > 0 replaces the hard switch by a ramp over ``blend`` octaves above the depth: at resolution r > depth the
block's output is ``lerp(target, base, alpha(r))`` with ``alpha(r) = max(0, 1 - log2(r / depth) / (blend + 1))``
(``blend_profile``). In feature mode the base side is the base's own feature at r; in weights mode it is the base's
block (convs and ToRGB) applied to the same input as the target's. ``blend = 0`` is exactly the hard swap.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.algorithms.latents import broadcast_w, seeds_to_z, truncate
from engine.models.stylegan2 import Generator

SWAP_MODES = ("feature", "weights")


def swap_depth_choices(G: Generator) -> tuple[int, ...]:
    """Resolutions a user can pick as the swap depth: 8, 16, ..., full (the 4x4 stage is never swapped)."""
    return tuple(r for r in G.cfg.resolutions if r >= 8)


def depth_of_swap_layer(index: int) -> int:
    """The depth (resolution) of UI2I's ``--swap_layer`` index: 1 -> 8, 3 -> 16, 5 -> 32, ... (odd indices only)."""
    if int(index) != index or index < 1 or index % 2 == 0:
        raise ValueError(f"a UI2I swap_layer index is odd and >= 1 (1 -> 8 px, 3 -> 16 px, ...), got {index}")
    return 2 ** ((int(index) + 5) // 2)


def blend_profile(G: Generator, depth: int, blend: float = 0.0) -> dict[int, float]:
    """Share of the base at each resolution >= depth: 1 at the depth, ramping to 0 over ``blend`` octaves above it.

    Resolutions below the depth are not listed (feature mode keeps the target there, weights mode the base).
    """
    _check_depth(G, depth, allow_none=False)
    _check_blend(blend)
    return {r: max(0.0, 1.0 - math.log2(r / depth) / (blend + 1.0)) for r in G.cfg.resolutions if r >= depth}


def _check_blend(blend: float) -> None:
    if not blend >= 0 or math.isinf(blend):
        raise ValueError(f"blend must be a finite width >= 0 (octaves), got {blend}")


def _check_depth(G: Generator, depth: int, *, allow_none: bool = True) -> None:
    choices = swap_depth_choices(G)
    if depth in choices or (allow_none and depth in (0, 4)):
        return
    extra = " (or 0 / 4 for no swap)" if allow_none else ""
    raise ValueError(f"depth must be a resolution in {choices}{extra}, got {depth}")


def _check_pair(base: Generator, target: Generator) -> None:
    a, b = base.cfg, target.cfg
    for name in ("img_resolution", "w_dim", "img_channels", "channels", "use_noise"):
        if getattr(a, name) != getattr(b, name):
            raise ValueError(f"the base and target generators differ in {name} ({getattr(a, name)} vs "
                             f"{getattr(b, name)}): a layer swap needs a target fine-tuned from the base")


def _ws(G: Generator, ws: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(ws, torch.Tensor) or ws.shape[-1:] != (G.w_dim,):
        shape = tuple(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
        raise ValueError(f"{what} must be W [B, {G.w_dim}] or W+ [B, {G.num_ws}, {G.w_dim}], got {shape}")
    return broadcast_w(ws.to(device=G.w_avg.device, dtype=torch.float32), G.num_ws)  # [B, num_ws, w_dim]


def _same_batch(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Broadcast two W+ batches against each other (sizes equal or one of them 1)."""
    if a.shape[0] == b.shape[0]:
        return a, b
    if a.shape[0] == 1:
        return a.expand(b.shape[0], -1, -1), b
    if b.shape[0] == 1:
        return a, b.expand(a.shape[0], -1, -1)
    raise ValueError(f"batch sizes {a.shape[0]} and {b.shape[0]} do not broadcast (equal, or one of them 1)")


def swap_features(base: Generator, ws_base: torch.Tensor, *, depth: int, noise: list | None = None,
                  noise_mode: str = "const", generator: torch.Generator | None = None) -> torch.Tensor:
    """The base's features at the swap block (after its two convs, before ToRGB) [B, C, depth, depth].

    This is what UI2I's ``save_for_swap`` returns. ws_base: W [B, w_dim] or W+ [B, num_ws, w_dim].
    """
    _check_depth(base, depth, allow_none=False)
    ws = _ws(base, ws_base, "ws_base")
    syn = base.synthesis
    noises = syn.resolve_noise(ws.shape[0], noise_mode=noise_mode, noise=noise, generator=generator)
    x = None
    for r in base.cfg.resolutions:
        x = syn.block_convs(r, x, ws, noises)
        if r == depth:
            return x
    raise AssertionError("unreachable: depth was checked")


def layer_swap(base: Generator, target: Generator, ws_base: torch.Tensor, *, depth: int,
               ws_target: torch.Tensor | None = None, noise_base: list | None = None,
               noise_target: list | None = None, mode: str = "feature", blend: float = 0.0,
               noise_mode: str = "const", generator: torch.Generator | None = None) -> torch.Tensor:
    """Render the target with the base's low-resolution layers swapped in up to ``depth``. [B, 3, H, W] (raw)

    base, target: generators of the same architecture (the target fine-tuned from the base).
    ws_base: the content latent, W [B, w_dim] or W+ [B, num_ws, w_dim], used by the base only.
    depth: resolution of the last block taken from the base (``swap_depth_choices``); 0 or 4 swaps nothing and
        returns the target's own image.
    ws_target: the latent of the target's layers (None: ws_base); batch sizes equal or one of them 1.
    noise_base, noise_target: explicit per-layer noise lists (as ``synthesis(noise=...)``); None uses
        ``noise_mode`` ("const", "none" or "random" drawn from ``generator``).
    mode: "feature" (UI2I, reference-exact) or "weights" (Toonify); see the module docstring.
    blend: width in octaves of a soft transition above the depth (0: hard swap).
    """
    if mode not in SWAP_MODES:
        raise ValueError(f"mode must be one of {SWAP_MODES}, got {mode!r}")
    _check_pair(base, target)
    _check_depth(base, depth)
    _check_blend(blend)
    ws_b = _ws(base, ws_base, "ws_base")
    ws_t = ws_b if ws_target is None else _ws(base, ws_target, "ws_target")
    ws_b, ws_t = _same_batch(ws_b, ws_t)
    ws_t = ws_t.to(target.w_avg.device)
    tsyn, bsyn = target.synthesis, base.synthesis
    if depth < 8:
        return tsyn(ws_t, noise=noise_target, noise_mode=noise_mode, generator=generator)
    b = ws_b.shape[0]
    nt = tsyn.resolve_noise(b, noise_mode=noise_mode, noise=noise_target, generator=generator)
    nb = bsyn.resolve_noise(b, noise_mode=noise_mode, noise=noise_base, generator=generator)
    alpha = blend_profile(base, depth, blend)
    x = img = xb = None
    for r in base.cfg.resolutions:
        a = alpha.get(r, 1.0)
        if mode == "feature":
            if r < depth:  # the target's own low-resolution chain: only its RGB skip survives
                x = tsyn.block_convs(r, x, ws_t, nt)
            if a > 0:  # the base's own chain, as far as it is needed
                xb = bsyn.block_convs(r, xb, ws_b, nb)
            if r == depth:
                x = xb
            elif r > depth:
                x = tsyn.block_convs(r, x, ws_t, nt)
                if a > 0:
                    x = torch.lerp(x, xb, a)
            img = tsyn.block_torgb(r, x, img, ws_t)
        elif r <= depth:
            x = bsyn.block_convs(r, x, ws_b, nb)
            img = bsyn.block_torgb(r, x, img, ws_b)
        elif a > 0:
            xt, xb = tsyn.block_convs(r, x, ws_t, nt), bsyn.block_convs(r, x, ws_b, nb)
            x = torch.lerp(xt, xb, a)
            img = torch.lerp(tsyn.block_torgb(r, x, img, ws_t), bsyn.block_torgb(r, x, img, ws_b), a)
        else:
            x = tsyn.block_convs(r, x, ws_t, nt)
            img = tsyn.block_torgb(r, x, img, ws_t)
    return img


def appearance_codes(target: Generator, z: torch.Tensor, *, psi: float = 0.5,
                     mean: torch.Tensor | None = None) -> torch.Tensor:
    """Appearance codes from z [N, z_dim]: the target's mapping, truncated by psi towards ``mean`` (None: the
    target's w_avg), as UI2I's ``gen_multi_style.py`` draws them (psi 0.5). Returns W codes [N, w_dim]."""
    if z.ndim != 2 or z.shape[1] != target.z_dim:
        raise ValueError(f"z must be [N, {target.z_dim}], got shape {tuple(z.shape)}")
    w = target.mapping(z.to(device=target.w_avg.device, dtype=torch.float32))[:, :1]  # [N, 1, w_dim]
    return truncate(w, _mean(target, mean), psi)[:, 0]  # [N, w_dim]


def multimodal_styles(target: Generator, *, n: int, seed: int, psi: float = 0.5,
                      mean: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` appearance codes [n, w_dim]; code i comes from seed ``seed + i`` (NVIDIA's seed -> z), so one sample of
    a grid is reproduced by ``multimodal_styles(target, n=1, seed=seed + i)``."""
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return appearance_codes(target, seeds_to_z(range(int(seed), int(seed) + int(n)), target.z_dim), psi=psi,
                            mean=mean)


def translate_multimodal(base: Generator, target: Generator, ws_content: torch.Tensor, styles: torch.Tensor, *,
                         depth: int, **swap_kwargs) -> torch.Tensor:
    """Content from ``ws_content`` through the base up to ``depth``, appearance from ``styles`` (W [S, w_dim] or
    W+), which drive every layer of the target as in UI2I §5. One content and S styles give [S, 3, H, W]; equal
    batch sizes pair up. ``swap_kwargs``: ``layer_swap``'s noise, mode and blend arguments."""
    return layer_swap(base, target, ws_content, depth=depth, ws_target=styles, **swap_kwargs)


def translate_reference(base: Generator, target: Generator, w_content: torch.Tensor, w_ref: torch.Tensor, *,
                        depth: int, psi: float = 1.0, mean: torch.Tensor | None = None,
                        **swap_kwargs) -> torch.Tensor:
    """Reference-guided translation (UI2I §6) with the ``input_is_latent`` bug fixed.

    w_content: the source image's latent inverted in the base (W or W+), used as is by the base.
    w_ref: the reference image's latent inverted in the target (W or W+), driving the target's layers, truncated by
        psi towards ``mean`` (None: the target's w_avg; psi 1 = no truncation).
    """
    ws_ref = truncate(_ws(target, w_ref, "w_ref"), _mean(target, mean), psi)
    return layer_swap(base, target, w_content, depth=depth, ws_target=ws_ref, **swap_kwargs)


def published_reference_latents(base: Generator, target: Generator, w_content: torch.Tensor, w_ref: torch.Tensor,
                                *, psi: float = 0.5, mean: torch.Tensor | None = None
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The W+ latents ``gen_ref.py`` really renders with (the ``input_is_latent`` bug): both W codes [B, w_dim] go
    through the mapping networks as if they were z (w_content through the base's, w_ref through the target's) and
    both are truncated by psi towards ``mean`` (None: the target's w_avg, the script's mean for both).
    Returns (ws_content, ws_ref), each [B, num_ws, w_dim]."""
    m = _mean(target, mean)
    for name, w, G in (("w_content", w_content, base), ("w_ref", w_ref, target)):
        if w.ndim != 2 or w.shape[1] != G.z_dim:
            raise ValueError(f"{name} must be [B, {G.z_dim}] (the published script maps it as z), got "
                             f"{tuple(w.shape)}")
    ws_content = truncate(base.mapping(w_content.to(base.w_avg.device, torch.float32)), m.to(base.w_avg.device), psi)
    ws_ref = truncate(target.mapping(w_ref.to(target.w_avg.device, torch.float32)), m, psi)
    return ws_content, ws_ref


def translate_reference_published(base: Generator, target: Generator, w_content: torch.Tensor,
                                  w_ref: torch.Tensor, *, depth: int, psi: float = 0.5,
                                  mean: torch.Tensor | None = None, **swap_kwargs) -> torch.Tensor:
    """``gen_ref.py`` exactly as published (latents from ``published_reference_latents``), for comparison and
    bit-compatibility; ``translate_reference`` is the corrected behaviour."""
    ws_content, ws_ref = published_reference_latents(base, target, w_content, w_ref, psi=psi, mean=mean)
    return layer_swap(base, target, ws_content, depth=depth, ws_target=ws_ref, **swap_kwargs)


@dataclass(frozen=True)
class MultiDomainResult:
    """UI2I §7 renders of one latent: the base image, each target plain, and each target with the base's
    features swapped in at each depth (``swapped[i][depth]``). All [B, 3, H, W]."""

    base: torch.Tensor
    plain: tuple[torch.Tensor, ...]
    swapped: tuple[dict[int, torch.Tensor], ...]


def multi_domain(base: Generator, targets: Sequence[Generator], z: torch.Tensor, *, depths: Sequence[int],
                 psi: float | Sequence[float] = 1.0, base_psi: float = 1.0, mean: torch.Tensor | None = None,
                 noise_base: list | None = None, noise_targets: Sequence[list | None] | None = None,
                 noise_mode: str = "const") -> MultiDomainResult:
    """One z [B, z_dim] rendered by the base and by several targets, plain and layer-swapped (``multi-domain.py``).

    Every generator maps z with its own mapping network, as the script does. psi: truncation per target (one value
    or one per target); base_psi: the base's. mean: the truncation centre for all of them (None: each model's own
    w_avg; the published script uses its second model's mean for all).
    """
    targets = tuple(targets)
    if not targets:
        raise ValueError("multi_domain needs at least one target generator")
    psis = (float(psi),) * len(targets) if isinstance(psi, (int, float)) else tuple(float(p) for p in psi)
    if len(psis) != len(targets):
        raise ValueError(f"psi lists {len(psis)} values for {len(targets)} targets")
    noises = (None,) * len(targets) if noise_targets is None else tuple(noise_targets)
    if len(noises) != len(targets):
        raise ValueError(f"noise_targets lists {len(noises)} noise lists for {len(targets)} targets")
    for d in depths:
        _check_depth(base, d, allow_none=False)
    if z.ndim != 2 or z.shape[1] != base.z_dim:
        raise ValueError(f"z must be [B, {base.z_dim}], got shape {tuple(z.shape)}")
    z = z.to(torch.float32)

    def mapped(G: Generator, p: float) -> torch.Tensor:  # [B, num_ws, w_dim]
        return truncate(G.mapping(z.to(G.w_avg.device)), _mean(G, mean), p)

    ws_base = mapped(base, base_psi)
    img_base = base.synthesis(ws_base, noise=noise_base, noise_mode=noise_mode)
    plain, swapped = [], []
    for G, p, n in zip(targets, psis, noises):
        _check_pair(base, G)
        ws_t = mapped(G, p)
        plain.append(G.synthesis(ws_t, noise=n, noise_mode=noise_mode))
        swapped.append({d: layer_swap(base, G, ws_base, depth=d, ws_target=ws_t, noise_base=noise_base,
                                      noise_target=n, noise_mode=noise_mode) for d in depths})
    return MultiDomainResult(base=img_base, plain=tuple(plain), swapped=tuple(swapped))


def _mean(G: Generator, mean: torch.Tensor | None) -> torch.Tensor:
    if mean is None:
        return G.w_avg
    if mean.numel() != G.w_dim:
        raise ValueError(f"mean must hold {G.w_dim} values, got shape {tuple(mean.shape)}")
    return mean.reshape(G.w_dim).to(device=G.w_avg.device, dtype=torch.float32)


def model_distance(base: Generator, target: Generator, *, n: int, seed: int, depth: int | None = None,
                   batch: int = 16, mode: str = "feature", psi: float = 1.0) -> float:
    """Mean image distance between the base and the target (or the layer-swapped hybrid) over n latents.

    Latent i is seed ``seed + i`` (NVIDIA's seed -> z). Each model maps it with its own mapping network and
    truncates by psi towards its own w_avg (under FreezeFC both mappings are the base's); in a swap the base's
    layers use the base's mapping, the target's layers the target's. Both generators get the same noise, drawn from
    the latent's seed. The distance of one pair is the root-mean-square pixel difference of the raw images (range
    about [-1, 1]); the result is its mean over the n latents. With ``depth`` the second image is
    ``layer_swap(base, target, depth=depth, mode=mode)`` instead of the target's own (depth 0 or 4: no swap), so it
    tells how far the hybrid at that depth has moved from the base. Without depth the distance is symmetric in the
    two models; it never depends on ``batch``.
    """
    d = 0 if depth is None else depth
    return model_distance_profile(base, target, n=n, seed=seed, depths=(d,), batch=batch, mode=mode, psi=psi)[d]


def model_distance_profile(base: Generator, target: Generator, *, n: int, seed: int,
                           depths: Sequence[int] | None = None, batch: int = 16, mode: str = "feature",
                           psi: float = 1.0) -> dict[int, float]:
    """``model_distance`` for several depths at once, rendering the base once: {depth: distance}; depth 0 is
    the plain target. depths None: 0 and every ``swap_depth_choices`` resolution."""
    _check_pair(base, target)
    if int(n) < 1 or int(batch) < 1:
        raise ValueError(f"n and batch must be >= 1, got n={n}, batch={batch}")
    depths = (0, *swap_depth_choices(base)) if depths is None else tuple(depths)
    for d in depths:
        _check_depth(base, d)
    sums = dict.fromkeys(depths, 0.0)
    layers = base.synthesis.noise_layers()
    dev = base.w_avg.device
    end = int(seed) + int(n)
    for start in range(int(seed), end, int(batch)):
        seeds = range(start, min(start + int(batch), end))
        z = seeds_to_z(seeds, base.z_dim)  # [b, z_dim]
        ws_b = truncate(base.mapping(z.to(dev)), base.w_avg, psi)  # [b, num_ws, w_dim]
        ws_t = truncate(target.mapping(z.to(target.w_avg.device)), target.w_avg, psi)
        noise = None
        if base.cfg.use_noise:
            gens = [torch.Generator().manual_seed(s) for s in seeds]
            per = [[torch.randn(1, 1, L.resolution, L.resolution, generator=g) for L in layers] for g in gens]
            noise = [torch.cat(col).to(dev) for col in zip(*per)]  # each [b, 1, r, r]
        img_b = base.synthesis(ws_b, noise=noise)  # [b, 3, H, W]
        for d in depths:
            img = layer_swap(base, target, ws_b, ws_target=ws_t, depth=d, noise_base=noise, noise_target=noise,
                             mode=mode)
            sums[d] += float((img.to(dev) - img_b).square().mean(dim=(1, 2, 3)).sqrt().double().sum())
    return {d: s / int(n) for d, s in sums.items()}
