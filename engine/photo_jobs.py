"""Worker jobs for photos: read a photo and find its faces, invert an aligned face into the generator, and paste
the edited face back into the photo at full resolution.

An inversion starts from the encoder's guess when one fits the generator (``assets/encoder.pt`` for the embedded
default), refines it with the optimiser (``engine.algorithms.projection``), hands out a preview every few steps,
and ends in a new ``EditState`` whose base is the inverted latent, with the optimised noise maps and the photo's
alignment, so every other panel then works on the photo.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .algorithms.projection import InversionSettings, invert
from .algorithms.similarity import psnr, ssim
from .align import AlignTransform, align_image, paste_back
from .assets import default_encoder_path, manifest
from .faces import Face, detect_faces
from .imageio import to_uint8
from .models.encoder import load_encoder
from .models.stylegan2 import Generator
from .photo import Photo, load_photo
from .project import EditState, NoiseMaps, PhotoRef, ProjectError, Source
from .render import cached_model, render_in_worker

PREVIEW_EVERY = 10


def alignment_recipe(G: Generator) -> str:
    """How photos are cut out for ``G``: our synthetic-world models were trained on the synthetic framing,
    anything else (FFHQ models) on the FFHQ alignment."""
    data = getattr(getattr(G, "model_info", None), "training_data", None) or ""
    return "synthetic" if data.startswith("synth:") else "ffhq"


def cached_photo(ctx, path: str, sha256: str | None = None) -> Photo:
    """The photo at ``path`` through the worker's photo cache; refuses a file that changed since (sha256)."""
    photo = ctx.photos.get(("photo", str(path)), lambda: load_photo(path))
    if sha256 is not None and photo.sha256 != sha256:
        ctx.photos.clear()
        photo = ctx.photos.get(("photo", str(path)), lambda: load_photo(path))
        if photo.sha256 != sha256:
            raise ProjectError(f"{Path(path).name} is not the photo this face was made from (it changed on disk)")
    return photo


def encoder_for(ctx, G: Generator):
    """The shipped encoder if it was trained for ``G`` (same sha256), else None (the optimiser starts at w_avg)."""
    sha = getattr(getattr(G, "model_info", None), "sha256", None)
    info = manifest("encoder")
    if sha is None or info is None or info.get("generator_sha256") != sha:
        return None
    return ctx.models.get(("encoder", sha), lambda: load_encoder(default_encoder_path()).to(ctx.device).eval())


def to_target(image: np.ndarray, device) -> torch.Tensor:
    """uint8 [R, R, 3] -> float [1, 3, R, R] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().to(device) / 127.5 - 1


@dataclass(frozen=True)
class PhotoScan:
    """A loaded photo, its faces (best first), and how ``size``-px faces are cut out for the current model."""

    photo: Photo = field(repr=False)
    faces: tuple[Face, ...]
    recipe: str
    size: int
    ms: float


@dataclass(frozen=True, eq=False)
class ScanJob:
    """Read the photo at ``path`` and detect its faces, for the generator ``state.model``."""

    path: str
    state: EditState
    detector: str = "auto"

    def __call__(self, ctx) -> PhotoScan:
        t0 = time.perf_counter()
        ctx.progress(0.0, f"reading {Path(self.path).name}")
        G = cached_model(ctx, self.state.model)
        ctx.photos.clear()  # a fresh read: the file may have changed since it was last opened
        photo = cached_photo(ctx, self.path)
        ctx.check()
        ctx.progress(0.5, "finding faces")
        faces = tuple(detect_faces(photo.pixels, detector=self.detector))
        return PhotoScan(photo, faces, alignment_recipe(G), G.img_resolution, (time.perf_counter() - t0) * 1e3)


@dataclass(frozen=True)
class InversionStep:
    """A partial result: the reconstruction after ``step`` of ``total`` steps, with its quality."""

    step: int
    total: int
    psnr: float
    ssim: float
    image: np.ndarray | None = field(default=None, repr=False)  # uint8 [R, R, 3]
    aligned: np.ndarray | None = field(default=None, repr=False)  # uint8 [R, R, 3], with the first step only


@dataclass(frozen=True)
class InversionOutcome:
    """The document's new state (base = the inverted latent), the aligned photo and the reconstruction."""

    state: EditState
    aligned: np.ndarray = field(repr=False)  # uint8 [R, R, 3]
    image: np.ndarray = field(repr=False)  # uint8 [R, R, 3]
    psnr: float
    ssim: float
    steps: int
    seconds: float
    encoder: bool
    stopped: bool


@dataclass(frozen=True, eq=False)
class InvertJob:
    """Invert the face ``photo`` cut out by ``transform`` into ``state.model``.

    ``use_encoder``: start from the encoder's guess when one fits the model; ``optimise`` False keeps that guess
    as it is (encoder only);
    ``refine``: start from ``state``'s own inverted latent and noise instead (more steps on the same photo).
    ``stop`` ends the optimisation early and keeps its result; cancelling the request discards it.
    """

    state: EditState
    photo_path: str
    transform: AlignTransform
    settings: InversionSettings
    use_encoder: bool = True
    optimise: bool = True
    refine: bool = False
    stop: threading.Event = field(default_factory=threading.Event, compare=False)

    def __call__(self, ctx) -> InversionOutcome:
        t0 = time.perf_counter()
        G = cached_model(ctx, self.state.model)
        if self.transform.size != G.img_resolution:
            raise ValueError(f"the face was aligned to {self.transform.size} px; this model makes "
                             f"{G.img_resolution} px images")
        photo = cached_photo(ctx, self.photo_path)
        aligned = align_image(photo.pixels, self.transform)  # uint8 [R, R, 3]
        target = to_target(aligned, G.w_avg.device)
        init_ws, init_noise, encoded = self._start(ctx, G, target)
        total = self.settings.steps if self.optimise else 0
        with torch.no_grad():
            first = G.synthesis(G.w_avg.expand(1, G.num_ws, -1) if init_ws is None else init_ws,
                                noise_mode="const", noise=init_noise)
        ctx.partial(InversionStep(0, total, float(psnr(first, target)), float(ssim(first, target)),
                                  to_uint8(first)[0], aligned))

        def progress(step, total_steps, metrics, preview):
            ctx.progress(step / max(total_steps, 1), f"step {step}/{total_steps}")
            if preview is not None:
                ctx.partial(InversionStep(step, total_steps, float(metrics["psnr"]), float(metrics["ssim"]),
                                          to_uint8(preview)[0]))

        if total > 0:
            result = invert(G, target, settings=self.settings, init_ws=init_ws, init_noise=init_noise,
                            progress=progress, should_stop=lambda: self.stop.is_set() or ctx.cancelled(),
                            preview_every=PREVIEW_EVERY)
            ctx.check()
            ws, noise, image, steps = result.ws, result.noise, result.image, result.steps
        else:
            noise = init_noise
            with torch.no_grad():
                image = G.synthesis(init_ws, noise_mode="const", noise=noise)
            ws, steps = init_ws, 0
        recon = to_uint8(image)[0]
        quality_psnr = float(psnr(image, target))
        quality_ssim = float(ssim(image, target))
        state = self.state.replace(
            base=Source.from_latent(ws.detach().cpu().numpy(), name=Path(self.photo_path).name),
            noise_maps=NoiseMaps.from_arrays([n.detach().cpu()[0, 0].numpy() for n in noise])
            if noise and self._own_noise() else None,
            photo=PhotoRef(str(Path(self.photo_path).resolve()), photo.sha256, self.transform.quad,
                           self.transform.size),
            rows=(), edits=(), locks=())
        return InversionOutcome(state, aligned, recon, quality_psnr, quality_ssim, steps,
                                time.perf_counter() - t0, encoded, self.stop.is_set())

    def _own_noise(self) -> bool:
        """Whether the result has noise maps of its own (else it renders with the model's constant noise)."""
        s = self.settings
        return self.optimise and (s.optimize_noise or s.noise_init != "const"
                                  or (self.refine and self.state.noise_maps is not None))

    def _start(self, ctx, G: Generator, target: torch.Tensor):
        """(init_ws [1, num_ws, w_dim] or None, init_noise or None, whether the encoder gave the guess)."""
        st = self.state
        if self.refine and st.base is not None:
            ws = torch.from_numpy(st.base.array().copy()).to(target.device)[None]
            noise = None if st.noise_maps is None else [torch.from_numpy(m.copy())[None, None].to(target.device)
                                                        for m in st.noise_maps.arrays()]
            return ws, noise, False
        encoder = encoder_for(ctx, G) if self.use_encoder else None
        if encoder is None:
            if not self.optimise:
                raise ValueError("no encoder fits this model, so the inversion needs the optimiser")
            return None, None, False
        with torch.no_grad():
            return encoder(target), None, True


@dataclass(frozen=True)
class PasteResult:
    state: EditState
    aligned: np.ndarray = field(repr=False)  # uint8 [R, R, 3], the photo's face as the model sees it
    pasted: np.ndarray = field(repr=False)  # uint8 [H, W, 3], the edited face blended into the photo
    ms: float


@dataclass(frozen=True)
class PasteJob:
    """Render ``state`` (which must come from a photo) and blend the face back into the photo."""

    state: EditState

    def __call__(self, ctx) -> PasteResult:
        t0 = time.perf_counter()
        ref = self.state.photo
        if ref is None:
            raise ProjectError("this face does not come from a photo")
        if not Path(ref.path).is_file():
            raise ProjectError(f"the photo {ref.name} is no longer at {ref.path}")
        photo = cached_photo(ctx, ref.path, ref.sha256)
        transform = AlignTransform(quad=ref.quad, size=ref.size)
        face = render_in_worker(ctx, self.state)
        ctx.check()
        aligned = align_image(photo.pixels, transform)
        pasted = paste_back(photo.pixels, face, transform)
        return PasteResult(self.state, aligned, pasted, (time.perf_counter() - t0) * 1e3)
