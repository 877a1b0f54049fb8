"""Exports: images (PNG with parameters, JPEG, WebP), latents (.npy / .pt) and batch export of a seed range."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.files.images import save_png, to_pil
from engine.files.storage import file_sha256
from engine.jobs.render import render_in_worker
from engine.project import EditState, ModelRef, ProjectError, project_dict
from engine.worker import JobContext

log = logging.getLogger(__name__)

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
LATENT_FORMATS = (".npy", ".pt")


def image_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise ProjectError(f"cannot export an image as {suffix or 'a file without extension'}: use "
                           f"{', '.join(IMAGE_FORMATS)}")
    return IMAGE_FORMATS[suffix]


def _pinned(ref: ModelRef) -> ModelRef:
    """``ref`` with its sha256 filled in when it names an existing file without one."""
    if ref.path is None or ref.sha256 is not None or not Path(ref.path).is_file():
        return ref
    return dataclasses.replace(ref, sha256=file_sha256(ref.path))


def pinned_state(state: EditState) -> EditState:
    """``state`` with the sha256 of every model file it names (generator, flow, translation target), so that an
    export, which keeps only file names, still says exactly which files made it."""
    tr = state.translation
    return state.replace(model=_pinned(state.model), flow=_pinned(state.flow),
                         translation=None if tr is None else dataclasses.replace(tr, target=_pinned(tr.target)))


def save_image(path: str | os.PathLike, image: np.ndarray, *, state: EditState | None = None,
               extras: dict | None = None, quality: int = 95) -> Path:
    """Write uint8 [H, W, 3] at full resolution; PNG keeps the project (state, with ``extras``) in a
    ``face-editor`` text chunk, naming files by name and sha256 only."""
    path = Path(path)
    fmt = image_format(path)
    log.debug("writing %s (%d x %d px)", path.name, image.shape[1], image.shape[0])
    if fmt == "PNG":
        return save_png(path, image,
                        parameters=None if state is None else project_dict(pinned_state(state), extras=extras))
    to_pil(image).save(path, format=fmt, quality=quality)
    return path


def save_latent(path: str | os.PathLike, ws: np.ndarray) -> Path:
    """Write a W+ latent [num_ws, w_dim] as ``.npy`` or as a ``.pt`` tensor (readable with weights_only)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, np.asarray(ws, dtype=np.float32))
    elif suffix == ".pt":
        torch.save(torch.from_numpy(np.asarray(ws, dtype=np.float32).copy()), path)
    else:
        raise ProjectError(f"cannot export a latent as {suffix or 'a file without extension'}: use .npy or .pt")
    return path


def load_latent(path: str | os.PathLike) -> np.ndarray:
    """Read a latent saved as ``.npy`` (no pickles) or ``.pt`` (weights_only): float32 [w_dim] or [num_ws, w_dim]."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            a = np.load(path, allow_pickle=False)
        elif suffix == ".pt":
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                obj = next((v for k, v in obj.items() if k in ("w", "ws", "latent", "projected_w")), None)
            if not isinstance(obj, torch.Tensor):
                raise ProjectError(f"{path.name} holds no latent tensor")
            a = obj.detach().float().numpy()
        else:
            raise ProjectError(f"latents are read from .npy or .pt files, not {suffix or 'files without extension'}")
    except (OSError, ValueError, RuntimeError) as e:
        if isinstance(e, ProjectError):
            raise
        raise ProjectError(f"cannot read a latent from {path.name} ({e})") from e
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim not in (1, 2):
        raise ProjectError(f"{path.name} holds shape {a.shape}, not a latent W [w_dim] or W+ [num_ws, w_dim]")
    return a


def seed_face(state: EditState, seed: int) -> EditState:
    """``state`` on ``seed``'s own face: the same truncation, mixing, attribute edits and translation; a photo's (or
    a latent's) face, its noise maps and photo do not carry over, as when a new seed is picked in the editor."""
    return state.replace(seed=seed, base=None, noise_maps=None, photo=None)


@dataclass(frozen=True)
class BatchExportJob:
    """Render ``seeds`` with the state's other settings (``seed_face``) into ``folder`` as ``seed{N:05d}.<ext>``;
    returns paths."""

    state: EditState
    seeds: tuple[int, ...]
    folder: str
    ext: str = ".png"

    def __call__(self, ctx: JobContext) -> tuple[str, ...]:
        t0 = time.perf_counter()
        image_format(f"x{self.ext}")
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for i, seed in enumerate(self.seeds):
            ctx.check()
            state = seed_face(self.state, seed)
            path = save_image(folder / f"seed{seed:05d}{self.ext}", render_in_worker(ctx, state), state=state)
            written.append(str(path))
            ctx.progress((i + 1) / len(self.seeds), f"{i + 1} of {len(self.seeds)} images")
        log.info("batch export: %d images to %s in %.1f s", len(written), folder, time.perf_counter() - t0)
        return tuple(written)
