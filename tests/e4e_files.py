"""Synthetic e4e files in the published layout, for the engine's and the editor's tests: the reference fixture's
encoder (``reference/e4e/e4e_tiny.pt``) with a decoder written in rosinality's layout by the project's own converter
(``generator_to_rosinality``) from a small random generator of the encoder's W+ shape. Every size is read from the
fixture (its encoder's config), none is written here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.convert.rosinality import generator_to_rosinality
from engine.files.e4e import load_e4e
from engine.files.loading import mean_w
from engine.models.stylegan2 import Generator, GeneratorConfig


def fixture_checkpoint(reference_dir: Path) -> dict:
    """The e4e fixture's checkpoint (encoder only, the real on-disk layout; ``reference_dir``: the conftest's)."""
    return torch.load(reference_dir / "e4e" / "e4e_tiny.pt", weights_only=True)["checkpoint"]


def generator_for(n_styles: int, w_dim: int, *, seed: int = 0, channels: int = 8) -> Generator:
    """A small random generator whose W+ latents are [n_styles, w_dim] (resolution 2 ** ((n_styles + 2) // 2)), with
    noise strengths and w_avg set so it renders faces of some contrast."""
    res = 2 ** ((n_styles + 2) // 2)
    blocks = int(np.log2(res)) - 1
    G = Generator(GeneratorConfig(img_resolution=res, channels=(channels,) * blocks, z_dim=w_dim, w_dim=w_dim,
                                  mapping_layers=2), seed=seed).eval()
    with torch.no_grad():
        G.w_avg = mean_w(G, n=512, seed=seed)
    return G


def published_checkpoint(reference_dir: Path, *, seed: int = 0) -> tuple[dict, Generator]:
    """(an e4e checkpoint dict as e4e's training writes it, the generator its ``decoder.*`` part was written from):
    the fixture's ``encoder.*`` weights and options, the decoder in rosinality layout, and ``latent_avg`` the
    decoder's w_avg repeated on every row (as training starts from the generator's average)."""
    checkpoint = fixture_checkpoint(reference_dir)
    cfg = load_e4e(checkpoint).cfg
    G = generator_for(cfg.n_styles, cfg.w_dim, seed=seed)
    decoder, w_avg = generator_to_rosinality(G)
    sd = {**checkpoint["state_dict"], **{f"decoder.{k}": v for k, v in decoder.items()}}
    ck = {"state_dict": sd, "opts": dict(checkpoint["opts"]),
          "latent_avg": w_avg.reshape(1, -1).repeat(cfg.n_styles, 1)}
    return ck, G


def write_published(reference_dir: Path, path: str | Path, *, seed: int = 0) -> tuple[Path, Generator]:
    """``published_checkpoint`` saved with ``torch.save`` at ``path``; returns (path, the decoder's generator)."""
    ck, G = published_checkpoint(reference_dir, seed=seed)
    torch.save(ck, path)
    return Path(path), G


def encoder_only(reference_dir: Path, path: str | Path) -> Path:
    """The fixture's encoder alone (no decoder) saved at ``path``, for pairing with a separate generator."""
    torch.save(fixture_checkpoint(reference_dir), path)
    return Path(path)
