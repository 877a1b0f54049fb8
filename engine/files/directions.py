"""Direction files: a generator's measured edit moves (``engine.algorithms.directions.Directions``) on disk.

A ``torch.save`` dictionary read weights-only: the format tag, the condition entries' names, the moves
[K, num_ws, w_dim], the response [K, K], the scales [K], each move's rows, the reach (a typical per-row W distance
between two faces, which bounds every edit) and the sha256 of the generator and the estimator they were measured
with (a file for another generator is refused before it can move a latent).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from engine.algorithms.directions import Directions
from engine.errors import ModelFormatError
from engine.files.checkpoints import atomic_torch_save
from engine.files.storage import read_model_file

FORMAT = "face-editor/directions"
VERSION = 1


def save_directions(path: str | os.PathLike, directions: Directions, *, generator_sha256: str,
                    estimator_sha256: str, extras: dict | None = None) -> Path:
    """Write ``directions`` measured on the generator and estimator of those sha256 (atomic)."""
    atomic_torch_save({"format": FORMAT, "version": VERSION, "names": list(directions.names),
                       "moves": directions.moves.contiguous(), "response": directions.response.contiguous(),
                       "scale": directions.scale.contiguous(), "rows": [list(r) for r in directions.rows],
                       "reach": float(directions.reach),
                       "generator_sha256": generator_sha256, "estimator_sha256": estimator_sha256,
                       "extras": dict(extras or {})}, path)
    return Path(path)


def load_directions(path: str | os.PathLike, *, generator_sha256: str | None = None
                    ) -> tuple[Directions, dict]:
    """Read a direction file -> (Directions, {"generator_sha256", "estimator_sha256", "extras"}).
    ``generator_sha256``: refuse the file unless it was measured on that generator."""
    path = Path(path)
    kind, ckpt = read_model_file(path)
    if kind != "torch" or not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelFormatError(f"{path.name} is not a direction file (format {FORMAT!r})")
    if ckpt.get("version") != VERSION:
        raise ModelFormatError(f"{path.name} is a version {ckpt.get('version')!r} direction file; this editor reads "
                               f"version {VERSION}")
    try:
        names = tuple(str(n) for n in ckpt["names"])
        rows = tuple(tuple(int(r) for r in rs) for rs in ckpt["rows"])
        moves, response, scale = (ckpt[k] for k in ("moves", "response", "scale"))
        if not all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in (moves, response, scale)):
            raise TypeError("moves, response and scale must be floating-point tensors")
        directions = Directions(names, moves.float(), response.float(), scale.float(), rows, float(ckpt["reach"]))
        if any(not 0 <= r < directions.num_ws for rs in rows for r in rs):
            raise ValueError(f"rows {rows} name W+ rows beyond the moves' {directions.num_ws}")
        facts = {"generator_sha256": str(ckpt["generator_sha256"]), "estimator_sha256": str(ckpt["estimator_sha256"]),
                 "extras": dict(ckpt.get("extras") or {})}
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFormatError(f"{path.name}: a damaged direction file ({e})") from None
    if generator_sha256 is not None and facts["generator_sha256"] != generator_sha256:
        raise ModelFormatError(f"{path.name} was measured on another generator (sha256 "
                               f"{facts['generator_sha256'][:12]}…, this one is {generator_sha256[:12]}…)")
    return directions, facts


__all__ = ["FORMAT", "VERSION", "save_directions", "load_directions"]
