"""Latent-space algorithms as pure functions: seeds to z, truncation, W / W+ broadcasting, style mixing, noise.

All randomness is explicit: a seed (or a ``torch.Generator``) goes in, the same tensors come out. Nothing here
touches a global random number generator.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch


def seed_to_z(seed: int, z_dim: int) -> torch.Tensor:
    """The z of a seed, exactly as NVIDIA's ``gen_images.py`` draws it: ``RandomState(seed).randn(1, z_dim)``.

    Returns float32 [1, z_dim] on the CPU, so seed N gives the face users know from NVIDIA's scripts.
    """
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"a seed must be an integer in [0, 2**32), got {seed}")
    if z_dim <= 0:
        raise ValueError(f"z_dim must be positive, got {z_dim}")
    z = np.random.RandomState(int(seed)).randn(1, int(z_dim))  # float64, as NVIDIA draws it
    return torch.from_numpy(z).to(torch.float32)


def seeds_to_z(seeds: Iterable[int], z_dim: int) -> torch.Tensor:
    """Stack ``seed_to_z`` for several seeds: [len(seeds), z_dim]."""
    rows = [seed_to_z(s, z_dim) for s in seeds]
    if not rows:
        raise ValueError("no seeds given")
    return torch.cat(rows, dim=0)


def parse_seeds(text: str) -> list[int]:
    """Parse a seed list such as ``"0-7"``, ``"1,5,9"`` or ``"0-3,10"`` (ranges are inclusive)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            if sep:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"cannot read seeds {text!r}: use a list like '0-7' or '1,5,9'") from None
    if not seeds:
        raise ValueError(f"cannot read seeds {text!r}: no seed in it")
    for s in seeds:
        if not 0 <= s < 2**32:
            raise ValueError(f"seed {s} is out of range [0, 2**32)")
    return seeds


def broadcast_w(w: torch.Tensor, num_ws: int) -> torch.Tensor:
    """Turn a W latent [B, w_dim] into W+ [B, num_ws, w_dim]; a W+ input is checked and returned as is."""
    if w.ndim == 2:
        return w.unsqueeze(1).expand(-1, num_ws, -1)
    if w.ndim == 3:
        if w.shape[1] != num_ws:
            raise ValueError(f"W+ latent has {w.shape[1]} rows, the generator needs num_ws={num_ws}")
        return w
    raise ValueError(f"expected a W latent [B, w_dim] or W+ [B, num_ws, w_dim], got shape {tuple(w.shape)}")


def truncate(
    ws: torch.Tensor, w_avg: torch.Tensor, psi: float, *, cutoff: int | None = None
) -> torch.Tensor:
    """The truncation trick ``w_avg + psi * (w - w_avg)`` on rows ``[:cutoff]`` of W+ (all rows if cutoff is None).

    ws: [B, num_ws, w_dim]; w_avg: [w_dim]. psi = 1 returns ws unchanged; psi > 1 extrapolates (as NVIDIA does).
    """
    if ws.ndim != 3:
        raise ValueError(f"truncate expects W+ [B, num_ws, w_dim], got shape {tuple(ws.shape)}")
    if w_avg.shape != (ws.shape[2],):
        raise ValueError(f"w_avg has shape {tuple(w_avg.shape)}, expected [{ws.shape[2]}]")
    if psi == 1:
        return ws
    if cutoff is None:
        return torch.lerp(w_avg.to(ws.dtype), ws, psi)
    if cutoff < 0:
        raise ValueError(f"truncation cutoff must be >= 0, got {cutoff}")
    head = torch.lerp(w_avg.to(ws.dtype), ws[:, :cutoff], psi)
    return torch.cat([head, ws[:, cutoff:]], dim=1)


def mix_styles(sources: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """Style mixing: W+ row i is taken from source ``rows[i]``.

    sources: [K, B, num_ws, w_dim] (K source latents, each W+); rows: num_ws source indices in [0, K).
    Returns [B, num_ws, w_dim]. The classic two-source mix at index k is ``rows = [0]*k + [1]*(num_ws-k)``.
    """
    if sources.ndim != 4:
        raise ValueError(f"mix_styles expects sources [K, B, num_ws, w_dim], got shape {tuple(sources.shape)}")
    k, _, num_ws, _ = sources.shape
    if len(rows) != num_ws:
        raise ValueError(f"need one source index per W+ row: got {len(rows)} for num_ws={num_ws}")
    idx = torch.as_tensor(list(rows), dtype=torch.long)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= k):
        raise ValueError(f"source indices must be in [0, {k}), got {list(rows)}")
    return sources[idx, :, torch.arange(num_ws)].transpose(0, 1).contiguous()  # [B, num_ws, w_dim]


def crossover_rows(num_ws: int, index: int) -> list[int]:
    """Source rows for a two-latent mix: rows ``[:index]`` from source 0, the rest from source 1."""
    if not 0 <= index <= num_ws:
        raise ValueError(f"crossover index must be in [0, {num_ws}], got {index}")
    return [0] * index + [1] * (num_ws - index)


def make_noise(
    resolutions: Sequence[int], *, seed: int, batch: int = 1, device=None, dtype=torch.float32
) -> list[torch.Tensor]:
    """Seeded per-layer noise maps, one [batch, 1, r, r] tensor per resolution, drawn in order."""
    g = torch.Generator().manual_seed(int(seed))
    out = [torch.randn(batch, 1, r, r, generator=g, dtype=dtype) for r in resolutions]
    return [n.to(device) for n in out] if device is not None else out
