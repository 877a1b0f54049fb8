"""Pieces shared by the image-to-image models (BicycleGAN, TUNIT): their configs' checks, inputs as a batch on a
network's device, images paired with codes, and the project's multi-network checkpoint dict (read back by
``engine.convert.i2i_common.read_own_networks``)."""
from __future__ import annotations

import torch
from torch import nn


def check_positive(cfg, *names: str) -> None:
    """Raise ``ValueError`` naming the first of the fields ``names`` of ``cfg`` that is not positive."""
    for name in names:
        if int(getattr(cfg, name)) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(cfg, name)}")


def device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def as_batch(images: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """[C, H, W] or [B, C, H, W] -> [B, C, H, W] float32 on ``module``'s device."""
    return (images.unsqueeze(0) if images.ndim == 3 else images).to(device_of(module), torch.float32)


def pair_batches(x: torch.Tensor, codes: torch.Tensor, *, mismatch: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pair x [B, ...] with codes [N, D]: one x and N codes repeat x N times, B of x and one code repeat the code
    B times, otherwise B must equal N (``ValueError(mismatch.format(b=B, n=N))``). -> ([M, ...], [M, D]), M = max(B, N)
    """
    b, n = x.shape[0], codes.shape[0]
    if b == 1 and n > 1:
        return x.expand(n, *x.shape[1:]), codes
    if n == 1 and b > 1:
        return x, codes.expand(b, -1)
    if b != n:
        raise ValueError(mismatch.format(b=b, n=n))
    return x, codes


def network_entry(model: nn.Module) -> dict:
    """``{"arch", "state_dict"}`` of one network for the project's checkpoint format (CPU copies)."""
    return {"arch": model.cfg.to_dict(),
            "state_dict": {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}}


def i2i_checkpoint(networks: dict[str, nn.Module], *, fmt: str, version: int, kinds: dict, family: str,
                   extras: dict | None = None) -> dict:
    """The project-format dict ``{"format", "format_version", "networks", "extras"}`` of some of the networks
    ``kinds`` names (``family`` names the model in the error for any other)."""
    if unknown := sorted(set(networks) - set(kinds)):
        raise ValueError(f"unknown {family} networks {unknown}; expected some of {list(kinds)}")
    return {"format": fmt, "format_version": version,
            "networks": {name: network_entry(m) for name, m in networks.items()}, "extras": dict(extras or {})}
