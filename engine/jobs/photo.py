"""Worker jobs for photos: read a photo and find its faces, invert an aligned face into the generator, and paste the
edited face back into the photo at full resolution.

An inversion starts from the encoder's guess when one fits the generator (``encoder_for``: an e4e encoder paired with
it, ``EditState.encoder``, or the model file's own when it is an e4e checkpoint, each with e4e's preprocessing; else
``assets/encoder.pt`` for the embedded default), refines it with the optimiser (``engine.algorithms.projection``), hands
out a preview every few steps, and ends in a new ``EditState`` whose base is the inverted latent, with the optimised
noise maps and the photo's alignment, so every other panel then works on the photo. Refining optimises that base latent
further and keeps whatever was edited on top of it (style mixing, attribute edits, locks), and never ends below the PSNR
it started from. ``ReconstructionJob`` measures any state's photo latent against its photo (the readout after an undo or
when a project is reopened).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.algorithms.pivotal import TuneSettings, pivotal_tune, save_deltas
from engine.algorithms.projection import InversionSettings, invert
from engine.algorithms.similarity import psnr, ssim
from engine.assets import default_encoder_path, manifest
from engine.files.images import to_uint8
from engine.files.storage import file_sha256
from engine.jobs.render import (
    cached_file,
    cached_model,
    open_file,
    render_in_worker,
    source_ws,
    state_model,
    state_noise,
)
from engine.models.e4e import E4E, encode, prepare_photos
from engine.models.encoder import load_encoder
from engine.models.stylegan2 import Generator
from engine.photos.align import AlignTransform, align_image, face_transform, paste_back
from engine.photos.blend import blend_back, canonical_face, face_outline
from engine.photos.faces import Face, available_detectors, detect_faces
from engine.photos.read import Photo, load_photo
from engine.project import EditState, ModelRef, NoiseMaps, PhotoRef, ProjectError, Source
from engine.worker import JobContext

log = logging.getLogger(__name__)

PREVIEW_EVERY = 10

# The photo round trip's defaults (the editor's photo panel, ``main.py invert``, ``benchmarks/inversion.py --photos``):
# a short fit of the latent, then the generator tuned around it ("keep the person") for what is left of
# PHOTO_SECONDS. On the astronaut photo (2-core CPU, 1 engine thread) W+ alone reaches 26.2 dB in 400 steps (11.9 s;
# 28.3 dB takes 1500 steps, 39 s) with an identity distance of 0.56, near dlib's same-person threshold; 150 steps
# (4.6 s) then 5 s of tuning reach 31.1 dB, SSIM 0.92, identity 0.30, and 12 s of tuning 33.9 dB.
PHOTO_STEPS = 150
PHOTO_SECONDS = 10.0
MIN_TUNE_SECONDS = 2.0  # the quick tuning's least time, when the fit itself took most of the budget
TUNE_FINISH_SECONDS = 0.5  # what a tuning takes after its time is up: the rounded model's render, the file written

REFINE_LR_SCALE = 0.1  # Refine's step size against a fresh inversion's: from a 26.15 dB fit of the astronaut, 50 / 200
# steps reach 26.20 / 26.41 dB (at full size: 26.15, nothing better, / 26.49; at 0.03: 26.19 / 26.35)


TUNINGS = ("quick", "person", "off")  # what follows a fit: the quick tuning, "keep the person"'s, none


def quick_tuning(fit_seconds: float, *, budget: float = PHOTO_SECONDS) -> TuneSettings:
    """The default round trip's tuning after a fit that took ``fit_seconds``: ``TuneSettings``' steps, stopped so
    that the fit and the tuning together take ``budget`` seconds (at least ``MIN_TUNE_SECONDS`` of tuning)."""
    return TuneSettings(seconds=max(MIN_TUNE_SECONDS, budget - fit_seconds - TUNE_FINISH_SECONDS))


def tuning_after(outcome: InversionOutcome, mode: str, *, person: TuneSettings) -> TuneSettings | None:
    """The tuning ``mode`` (one of ``TUNINGS``) asks after the fit ``outcome``: ``quick_tuning`` of its time, or
    ``person``; None for ``'off'``, and after an encoder-only guess (it stays instant) or a stopped fit."""
    if mode not in TUNINGS:
        raise ValueError(f"the tuning must be one of {TUNINGS}, got {mode!r}")
    if mode == "off" or outcome.steps == 0 or outcome.stopped:
        return None
    return quick_tuning(outcome.seconds) if mode == "quick" else person


def alignment_recipe(G: Generator) -> str:
    """How photos are cut out for ``G``: our synthetic-world models were trained on the synthetic framing,
    anything else (FFHQ models) on the FFHQ alignment."""
    data = getattr(getattr(G, "model_info", None), "training_data", None) or ""
    return "synthetic" if data.startswith("synth:") else "ffhq"


def cached_photo(ctx: JobContext, path: str, sha256: str | None = None) -> Photo:
    """The photo at ``path`` through the worker's photo cache; refuses a file that changed since (sha256)."""
    photo = ctx.photos.get(("photo", str(path)), lambda: load_photo(path))
    if sha256 is not None and photo.sha256 != sha256:
        ctx.photos.clear()
        photo = ctx.photos.get(("photo", str(path)), lambda: load_photo(path))
        if photo.sha256 != sha256:
            raise ProjectError(f"{Path(path).name} is not the photo this face was made from (it changed on disk)")
    return photo


@dataclass(frozen=True, eq=False)
class PhotoEncoder:
    """An encoder that fits a generator: ``guess(aligned)`` turns an aligned face uint8 [R, R, 3] (R = the
    generator's resolution) into a W+ latent [1, num_ws, w_dim] on the generator's device in one pass. ``kind``:
    "e4e" (an e4e file's encoder: its own preprocessing, ``prepare_photos``) or "shipped" (``assets/encoder.pt``)."""

    kind: str
    name: str
    guess: Callable[[np.ndarray], torch.Tensor]


def paired_e4e(ctx: JobContext, model: ModelRef, encoder: ModelRef) -> E4E:
    """The e4e file ``encoder`` paired with the generator ``model`` names (its W+ shape checked, ``check_pairing``),
    through the worker's model cache. Refused: a file that is no e4e encoder, or whose latents do not fit."""
    G = cached_model(ctx, model)

    def pair() -> E4E:
        opened = open_file(encoder, device=ctx.device)
        if not isinstance(opened, E4E):
            raise ProjectError(f"{encoder.label()} is a generator, not an e4e encoder: pair an e4e checkpoint "
                               "(such as e4e_ffhq_encode.pt) with the model")
        return opened.pair_with(G, name=f"the generator {model.label()}")

    return ctx.models.get(("e4e", encoder.path, encoder.sha256, model.path, model.sha256), pair)


def encoder_for(ctx: JobContext, model: ModelRef, *, paired: ModelRef | None = None) -> PhotoEncoder | None:
    """The encoder a photo inversion into the generator ``model`` starts from: the e4e file ``paired`` with it,
    else the model file's own e4e encoder (an e4e checkpoint opened as the model), else the shipped encoder when it
    was trained for the model (same sha256); None when there is none (the optimiser starts at w_avg)."""
    G = cached_model(ctx, model)
    opened = cached_file(ctx, model)
    e4e = paired_e4e(ctx, model, paired) if paired is not None else opened if isinstance(opened, E4E) else None
    if e4e is not None:
        name = (paired or model).label()
        return PhotoEncoder("e4e", name, lambda aligned: encode(e4e, prepare_photos(e4e, aligned)).to(G.w_avg.device))
    sha = getattr(getattr(G, "model_info", None), "sha256", None)
    info = manifest("encoder")
    if sha is None or info is None or info.get("generator_sha256") != sha:
        return None
    net = ctx.models.get(("encoder", sha), lambda: load_encoder(default_encoder_path()).to(ctx.device).eval())
    return PhotoEncoder("shipped", default_encoder_path().name,
                        lambda aligned: net(to_target(aligned, G.w_avg.device)))


def to_target(image: np.ndarray, device) -> torch.Tensor:
    """uint8 [R, R, 3] -> float [1, 3, R, R] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float().to(device) / 127.5 - 1


def photo_latent(state: EditState) -> EditState:
    """What a reconstruction readout depends on: the model, the photo's latent and noise maps, and the photo; not
    what is edited on top of them (seed, truncation, mixing, attribute edits, translation); its "keep the person"
    tuning is part of it."""
    return EditState(model=state.model, base=state.base, noise_maps=state.noise_maps, photo=state.photo,
                     tuning=state.tuning)


@torch.no_grad()
def reconstruct(G: Generator, state: EditState, target: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """The rendering [1, 3, R, R] (clamped) of the state's photo latent with its noise maps (else the model's
    constant noise), and its PSNR (dB) and SSIM against ``target`` [1, 3, R, R]: the numbers the editor shows."""
    key = photo_latent(state)
    ws = source_ws(G, key.base, psi=key.psi, cutoff=key.cutoff)  # a latent is used as is: [1, num_ws, w_dim]
    image = G.synthesis(ws, noise_mode="const", noise=state_noise(G, key)).clamp(-1, 1)
    return image, float(psnr(image, target)[0]), float(ssim(image, target)[0])


def photo_of(ctx: JobContext, ref: PhotoRef) -> Photo:
    """The photo a face was inverted from, through the worker's cache; a missing or changed file is an error."""
    if not Path(ref.path).is_file():
        raise ProjectError(f"the photo {ref.name} is no longer at {ref.path}")
    return cached_photo(ctx, ref.path, ref.sha256)


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

    def __call__(self, ctx: JobContext) -> PhotoScan:
        t0 = time.perf_counter()
        ctx.progress(0.0, f"reading {Path(self.path).name}")
        G = cached_model(ctx, self.state.model)
        ctx.photos.clear()  # a fresh read: the file may have changed since it was last opened
        photo = cached_photo(ctx, self.path)
        ctx.check()
        ctx.progress(0.5, "finding faces")
        faces = tuple(detect_faces(photo.pixels, detector=self.detector))
        ms = (time.perf_counter() - t0) * 1e3
        log.info("%s: %d x %d px, %d face(s) found in %.0f ms", Path(self.path).name, *photo.size, len(faces), ms)
        return PhotoScan(photo, faces, alignment_recipe(G), G.img_resolution, ms)


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
    """The document's new state (base = the inverted latent), the aligned photo and the reconstruction.

    ``psnr``/``ssim``: the kept code's (``reconstruct``); ``start_psnr``: the starting code's; ``steps``: optimiser
    steps run; ``kept_step``: the step whose code was kept (``steps`` for the final code, 0 when a refine found
    nothing better than its start and kept the state's base as it was); ``refine``: it refined ``state``'s base.
    """

    state: EditState
    aligned: np.ndarray = field(repr=False)  # uint8 [R, R, 3]
    image: np.ndarray = field(repr=False)  # uint8 [R, R, 3]
    psnr: float
    ssim: float
    steps: int
    seconds: float
    encoder: bool
    stopped: bool
    start_psnr: float
    kept_step: int
    refine: bool


@dataclass(frozen=True, eq=False)
class InvertJob:
    """Invert the face ``photo`` cut out by ``transform`` into ``state.model``.

    ``use_encoder``: start from the encoder's guess when one fits the model; ``optimise`` False keeps that guess
    as it is (encoder only);
    ``refine``: start from ``state``'s own inverted latent and noise instead (more steps on the same photo), keep
    the best step (by PSNR, the start included), and keep the state's mixing, attribute edits and locks, which
    apply on top of the refined latent; a fresh inversion starts the face over without them.
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

    def __call__(self, ctx: JobContext) -> InversionOutcome:
        t0 = time.perf_counter()
        G = cached_model(ctx, self.state.model)
        if self.transform.size != G.img_resolution:
            raise ValueError(f"the face was aligned to {self.transform.size} px; this model makes "
                             f"{G.img_resolution} px images")
        photo = cached_photo(ctx, self.photo_path)
        aligned = align_image(photo.pixels, self.transform)  # uint8 [R, R, 3]
        target = to_target(aligned, G.w_avg.device)
        init_ws, init_noise, encoded = self._start(ctx, G, target, aligned)
        total = self.settings.steps if self.optimise else 0
        log.info("%s %s: %d optimiser steps from %s", "refining" if self.refine else "inverting",
                 Path(self.photo_path).name, total, "the encoder's guess" if encoded else
                 "its latent" if self.refine else "the mean latent")
        start_ws = G.w_avg.expand(1, G.num_ws, -1) if init_ws is None else init_ws  # [1, num_ws, w_dim]
        start = self.state.replace(base=Source.from_latent(start_ws.detach().cpu().numpy(), name="start"),
                                   noise_maps=None if init_noise is None else NoiseMaps.from_arrays(
                                       [n.detach().cpu()[0, 0].numpy() for n in init_noise]))
        first, start_psnr, start_ssim = reconstruct(G, start, target)
        ctx.partial(InversionStep(0, total, start_psnr, start_ssim, to_uint8(first)[0], aligned))

        def progress(step, total_steps, metrics, preview):
            ctx.progress(step / max(total_steps, 1), f"step {step}/{total_steps}")
            if preview is not None:
                ctx.partial(InversionStep(step, total_steps, float(metrics["psnr"]), float(metrics["ssim"]),
                                          to_uint8(preview)[0]))

        if total > 0:
            settings = self.settings
            if self.refine:  # a fitted code is fine-tuned: full-size first steps would throw the fit away
                settings = dataclasses.replace(settings, lr=settings.lr * REFINE_LR_SCALE, rampup=0.0)
            result = invert(G, target, settings=settings, init_ws=init_ws, init_noise=init_noise,
                            progress=progress, should_stop=lambda: self.stop.is_set() or ctx.cancelled(),
                            preview_every=PREVIEW_EVERY, keep_best=self.refine)
            ctx.check()
            ws, noise, steps, kept = result.ws, result.noise, result.steps, result.kept_step
        else:
            ws, noise, steps, kept = start_ws, init_noise, 0, 0
        ref = PhotoRef(str(Path(self.photo_path).resolve()), photo.sha256, self.transform.quad, self.transform.size)
        fitted = dict(base=Source.from_latent(ws.detach().cpu().numpy(), name=Path(self.photo_path).name),
                      noise_maps=NoiseMaps.from_arrays([n.detach().cpu()[0, 0].numpy() for n in noise])
                      if noise and self._own_noise() else None, photo=ref, tuning=None)  # a tuning fits its pivot
        state = self.state.replace(**fitted) if self.refine else self.state.replace(**fitted, rows=(), edits=(),
                                                                                    locks=())
        image, quality_psnr, quality_ssim = reconstruct(G, state, target)
        if self.refine and (kept == 0 or quality_psnr < start_psnr):  # nothing better: the start as it was
            state, image, quality_psnr, quality_ssim, kept = self.state, first, start_psnr, start_ssim, 0
        log.info("%s inverted in %.1f s: %d steps%s, PSNR %.2f dB (from %.2f), SSIM %.4f", Path(self.photo_path).name,
                 time.perf_counter() - t0, steps, " (stopped)" if self.stop.is_set() else "", quality_psnr,
                 start_psnr, quality_ssim)
        return InversionOutcome(state, aligned, to_uint8(image)[0], quality_psnr, quality_ssim, steps,
                                time.perf_counter() - t0, encoded, self.stop.is_set(), start_psnr, kept, self.refine)

    def _own_noise(self) -> bool:
        """Whether the result has noise maps of its own (else it renders with the model's constant noise)."""
        s = self.settings
        return self.optimise and (s.optimize_noise or s.noise_init != "const"
                                  or (self.refine and self.state.noise_maps is not None))

    def _start(self, ctx: JobContext, G: Generator, target: torch.Tensor, aligned: np.ndarray):
        """(init_ws [1, num_ws, w_dim] or None, init_noise or None, whether the encoder gave the guess)."""
        st = self.state
        if self.refine and st.base is not None:
            ws = torch.from_numpy(st.base.array().copy()).to(target.device)[None]
            noise = None if st.noise_maps is None else [torch.from_numpy(m.copy())[None, None].to(target.device)
                                                        for m in st.noise_maps.arrays()]
            return ws, noise, False
        encoder = encoder_for(ctx, st.model, paired=st.encoder) if self.use_encoder else None
        if encoder is None:
            if not self.optimise:
                raise ValueError("no encoder fits this model, so the inversion needs the optimiser")
            return None, None, False
        with torch.no_grad():
            return encoder.guess(aligned), None, True


@dataclass(frozen=True)
class PasteResult:
    state: EditState
    aligned: np.ndarray = field(repr=False)  # uint8 [R, R, 3], the photo's face as the model sees it
    pasted: np.ndarray = field(repr=False)  # uint8 [H, W, 3], the edited face blended into the photo
    ms: float


def matching_face(faces, transform: AlignTransform, *, recipe: str, tolerance: float = 0.15) -> Face | None:
    """The detected face whose alignment (by ``recipe``) is ``transform``'s crop, within ``tolerance`` sides of
    its centre and size; None when no face fits (a manual box, or a face no longer found)."""
    centre, side = np.mean(transform.quad, axis=0), transform.side
    best, best_error = None, tolerance
    for face in faces:
        t = face_transform(face, size=transform.size, recipe=recipe)
        error = max(float(np.hypot(*(np.mean(t.quad, axis=0) - centre))) / side, abs(t.side / side - 1.0))
        if error <= best_error:
            best, best_error = face, error
    return best


def photo_outline(ctx: JobContext, photo: Photo, transform: AlignTransform, recipe: str) -> np.ndarray:
    """The outline [K, 2] (photo pixels) of the face in ``transform``'s crop: detected again (dlib's 68 points
    when installed, which give the jaw line, else MTCNN's 5; cached per photo and crop), else a face of average
    proportions where the crop puts one (``canonical_face``)."""

    def find() -> np.ndarray:
        for detector in [d for d in ("dlib68", "mtcnn") if d in available_detectors()]:
            face = matching_face(detect_faces(photo.pixels, detector=detector), transform, recipe=recipe)
            if face is not None:
                return face_outline(face)
        return face_outline(canonical_face(transform))

    return ctx.photos.get(("outline", photo.sha256, transform.quad, recipe), find)


@dataclass(frozen=True)
class PasteJob:
    """Render ``state`` (which must come from a photo) and blend the face back into the photo.

    ``seamless`` (default): along the face's outline, in the photo's colours and keeping its fine detail
    (``engine.photos.blend.blend_back``, measured against the unedited reconstruction); else the whole crop square
    with a feathered edge (``paste_back``)."""

    state: EditState
    seamless: bool = True

    def __call__(self, ctx: JobContext) -> PasteResult:
        t0 = time.perf_counter()
        ref = self.state.photo
        if ref is None:
            raise ProjectError("this face does not come from a photo")
        photo = photo_of(ctx, ref)
        transform = AlignTransform(quad=ref.quad, size=ref.size)
        face = render_in_worker(ctx, self.state)
        ctx.check()
        aligned = align_image(photo.pixels, transform)
        if not self.seamless:
            pasted = paste_back(photo.pixels, face, transform)
        else:
            G = state_model(ctx, self.state)
            reference = None
            if self.state.base is not None:
                image, _, _ = reconstruct(G, self.state, to_target(aligned, G.w_avg.device))
                reference = to_uint8(image)[0]
                if reference.shape != face.shape:  # a translated face of another size: measured against itself
                    reference = None
            outline = photo_outline(ctx, photo, transform, alignment_recipe(G))
            ctx.check()
            pasted = blend_back(photo.pixels, face, transform, outline=outline, reference=reference)
        return PasteResult(self.state, aligned, pasted, (time.perf_counter() - t0) * 1e3)


@dataclass(frozen=True)
class Reconstruction:
    """How closely a state's photo latent renders its photo: ``key`` (``photo_latent`` of the state measured), the
    photo's aligned face, the latent's rendering (uint8 [R, R, 3] each), PSNR (dB) and SSIM between them."""

    key: EditState
    aligned: np.ndarray = field(repr=False)
    image: np.ndarray = field(repr=False)
    psnr: float
    ssim: float


@dataclass(frozen=True)
class ReconstructionJob:
    """Measure ``state``'s photo latent against its photo (the same numbers an inversion reports)."""

    state: EditState

    def __call__(self, ctx: JobContext) -> Reconstruction:
        key = photo_latent(self.state)
        ref = key.photo
        if ref is None or key.base is None:
            raise ProjectError("this face does not come from a photo")
        photo = photo_of(ctx, ref)
        G = state_model(ctx, key)
        if ref.size != G.img_resolution:
            raise ProjectError(f"the face was aligned to {ref.size} px; this model makes {G.img_resolution} px images")
        aligned = align_image(photo.pixels, AlignTransform(quad=ref.quad, size=ref.size))  # uint8 [R, R, 3]
        image, quality_psnr, quality_ssim = reconstruct(G, key, to_target(aligned, G.w_avg.device))
        return Reconstruction(key, aligned, to_uint8(image)[0], quality_psnr, quality_ssim)


def tuning_folder() -> Path:
    """Where "keep the person" tunings are written: ``$FACE_EDITOR_TUNING_DIR``, else
    ``$XDG_DATA_HOME/face-editor/tunings`` (``~/.local/share/face-editor/tunings``)."""
    if os.environ.get("FACE_EDITOR_TUNING_DIR"):
        return Path(os.environ["FACE_EDITOR_TUNING_DIR"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "face-editor" / "tunings"


@dataclass(frozen=True)
class TuneOutcome:
    """A "keep the person" tuning: the state with its ``tuning`` (the deltas file, pinned by sha256), the tuned
    reconstruction uint8 [R, R, 3], its PSNR / SSIM against the aligned photo (``start_psnr``: untuned), the steps
    run, wall seconds, whether it was stopped early, and the file's size in bytes."""

    state: EditState
    image: np.ndarray = field(repr=False)
    psnr: float
    ssim: float
    start_psnr: float
    steps: int
    seconds: float
    stopped: bool
    bytes: int


@dataclass(frozen=True, eq=False)
class TuneJob:
    """Tune ``state.model`` around ``state``'s photo latent ("keep the person", ``engine.algorithms.pivotal``) and
    write the float16 weight differences to ``folder`` (default ``tuning_folder()``) as ``tuning-<sha256>.pt``; the
    new state names that file. Progress and partial ``InversionStep`` previews as an inversion gives; ``stop`` ends
    the tuning early and keeps it, cancelling discards it. The state's edits stay (they apply on the tuned model)."""

    state: EditState
    settings: TuneSettings = TuneSettings()
    folder: str | None = None
    stop: threading.Event = field(default_factory=threading.Event, compare=False)

    def __call__(self, ctx: JobContext) -> TuneOutcome:
        ref = self.state.photo
        if ref is None or self.state.base is None:
            raise ProjectError("only a face inverted from a photo can be tuned to keep the person")
        photo = photo_of(ctx, ref)
        G = cached_model(ctx, self.state.model)
        if ref.size != G.img_resolution:
            raise ProjectError(f"the face was aligned to {ref.size} px; this model makes {G.img_resolution} px images")
        aligned = align_image(photo.pixels, AlignTransform(quad=ref.quad, size=ref.size))
        target = to_target(aligned, G.w_avg.device)
        key = photo_latent(self.state).replace(tuning=None)
        ws = source_ws(G, key.base, psi=key.psi, cutoff=key.cutoff)  # [1, num_ws, w_dim]
        total = self.settings.steps

        def progress(step, steps, quality, preview):
            ctx.progress(step / max(steps, 1), f"keeping the person: step {step}/{steps}")
            if preview is not None:
                ctx.partial(InversionStep(step, steps, quality, float(ssim(preview, target)[0]), to_uint8(preview)[0]))

        ctx.progress(0.0, f"keeping the person: {total} steps at most")
        result = pivotal_tune(G, ws, target, noise=state_noise(G, key), settings=self.settings, progress=progress,
                              should_stop=lambda: self.stop.is_set() or ctx.cancelled(), preview_every=PREVIEW_EVERY)
        ctx.check()
        folder = Path(self.folder) if self.folder is not None else tuning_folder()
        folder.mkdir(parents=True, exist_ok=True)
        draft = folder / f".tuning-{os.getpid()}-{threading.get_ident()}.pt"
        save_deltas(draft, result.deltas, extras={"photo_sha256": ref.sha256, "psnr": round(result.psnr, 3),
                                                   "steps": result.steps})
        sha = file_sha256(draft)
        path = folder / f"tuning-{sha}.pt"
        draft.replace(path)  # content-addressed: the same tuning twice is the same file
        state = self.state.replace(tuning=ModelRef(str(path.resolve()), sha))
        log.info("kept the person: %d steps in %.1f s, PSNR %.2f dB (from %.2f), %d kB", result.steps, result.seconds,
                 result.psnr, result.start_psnr, path.stat().st_size // 1024)
        return TuneOutcome(state, to_uint8(result.image)[0], result.psnr, result.ssim, result.start_psnr,
                           result.steps, result.seconds, result.stopped, path.stat().st_size)
