"""Worker jobs of the Translate panel: check a target model, the untranslated face, a grid of appearance samples,
the model distance, the samples written to a folder, and a folder of photos translated with the current settings.

The translation itself is part of the edit state (``EditState.translation``) and rendered by ``RenderJob``; these
jobs are what the panel needs around it. ``shipped_targets`` lists the fine-tuned generators in ``assets/`` (a
manifest ``<domain>.json`` with ``"kind": "finetuned-generator"`` beside its ``<domain>.pt``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.algorithms.layer_swap import model_distance_profile
from engine.algorithms.projection import InversionSettings
from engine.assets import ASSETS_DIR
from engine.errors import PhotoError
from engine.jobs.export import save_image
from engine.jobs.photo import InvertJob, ScanJob
from engine.jobs.render import ModelSummary, cached_model, pinned, render_in_worker, summarize
from engine.photos.align import face_transform
from engine.project import EditState, ModelRef, ProjectError, Source
from engine.worker import JobContext

log = logging.getLogger(__name__)

TARGET_KIND = "finetuned-generator"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
DISTANCE_LATENTS = 32


@dataclass(frozen=True)
class ShippedTarget:
    """A fine-tuned generator shipped in ``assets/``: its domain, the model reference (sha256 pinned from the
    manifest), the sha256 of the model it was fine-tuned from, and the manifest itself."""

    domain: str
    ref: ModelRef
    base_sha256: str | None
    info: dict = field(compare=False, repr=False)

    def label(self) -> str:
        return self.domain.replace("_", " ").capitalize()


def shipped_targets(folder: Path = ASSETS_DIR) -> list[ShippedTarget]:
    """The fine-tuned targets in ``folder`` whose model file is present, sorted by domain. Manifests of other
    kinds, unreadable manifests and manifests whose ``.pt`` is missing are left out."""
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict) or info.get("kind") != TARGET_KIND:
            continue
        model = path.with_suffix(".pt")
        if not model.is_file():
            continue
        found.append(ShippedTarget(str(info.get("domain") or path.stem),
                                   ModelRef(path=str(model.resolve()), sha256=info.get("sha256")),
                                   info.get("base_sha256"), info))
    return sorted(found, key=lambda t: t.domain)


def _check_target(ctx: JobContext, state: EditState):
    """(base generator, target generator) of a translated state; refuses a state without a translation and a
    target of another architecture."""
    tr = state.translation
    if tr is None:
        raise ProjectError("no translation is set: choose a target model first")
    G = cached_model(ctx, state.model)
    T = cached_model(ctx, tr.target)
    if T.cfg != G.cfg:
        raise ProjectError(f"{tr.target.label()} has another architecture than the face's model: a translation "
                           "needs a model fine-tuned from it")
    return G, T


def with_style(state: EditState, style: Source | None) -> EditState:
    """``state`` with its translation's appearance replaced by ``style``."""
    return state.replace(translation=dataclasses.replace(state.translation, style=style))


@dataclass(frozen=True)
class TargetInfo:
    """A target model checked against the face's model: its pinned reference and summary."""

    base: ModelRef
    ref: ModelRef
    summary: ModelSummary


@dataclass(frozen=True)
class TargetJob:
    """Load ``target`` (pinning its sha256) and check that it has the architecture of ``base`` (the face's model)."""

    base: ModelRef
    target: ModelRef

    def __call__(self, ctx: JobContext) -> TargetInfo:
        ctx.progress(0.0, f"loading {self.target.label()}")
        ref = pinned(self.target)
        T = cached_model(ctx, ref)
        G = cached_model(ctx, self.base)
        if T.cfg != G.cfg:
            raise ProjectError(f"{ref.label()} has another architecture ({T.img_resolution} px, w {T.w_dim}) than "
                               f"the face's model ({G.img_resolution} px, w {G.w_dim}): a translation needs a "
                               "model fine-tuned from it")
        return TargetInfo(self.base, ref, summarize(T, ref))


@dataclass(frozen=True)
class SourceRender:
    state: EditState
    image: np.ndarray = field(repr=False)  # uint8 [H, W, 3], the face before its translation


@dataclass(frozen=True)
class SourceRenderJob:
    """The state's face without its translation, at full resolution (the "before" of a translation)."""

    state: EditState

    def __call__(self, ctx: JobContext) -> SourceRender:
        return SourceRender(self.state, render_in_worker(ctx, self.state, translate=False))


@dataclass(frozen=True)
class StyleGrid:
    """Appearance samples of one face: ``images[i]`` is the state rendered with style seed ``seeds[i]``."""

    state: EditState
    seeds: tuple[int, ...]
    images: tuple[np.ndarray, ...] = field(repr=False)  # uint8 [H, W, 3] each, full resolution


@dataclass(frozen=True)
class StyleGridJob:
    """Render the state's face with ``n`` sampled appearances, seeds ``seed`` … ``seed + n - 1`` (each sample is
    exactly ``render_in_worker`` of the state with ``style=Source(seed=...)``, so a clicked sample is reproduced)."""

    state: EditState
    seed: int
    n: int = 8

    def __call__(self, ctx: JobContext) -> StyleGrid:
        if self.n < 1:
            raise ValueError(f"a style grid needs at least one sample, got n={self.n}")
        _check_target(ctx, self.state)
        seeds = tuple(range(self.seed, self.seed + self.n))
        images = []
        for i, s in enumerate(seeds):
            ctx.check()
            images.append(render_in_worker(ctx, with_style(self.state, Source(seed=s))))
            ctx.progress((i + 1) / self.n, f"style {i + 1} of {self.n}")
        return StyleGrid(self.state, seeds, tuple(images))


@dataclass(frozen=True)
class SamplesExportJob:
    """Write the state's face with each style seed into ``folder`` as ``style{seed:05d}.png`` (the project inside
    each PNG reproduces it); returns the paths written."""

    state: EditState
    seeds: tuple[int, ...]
    folder: str

    def __call__(self, ctx: JobContext) -> tuple[str, ...]:
        _check_target(ctx, self.state)
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for i, s in enumerate(self.seeds):
            ctx.check()
            state = with_style(self.state, Source(seed=s))
            written.append(str(save_image(folder / f"style{s:05d}.png", render_in_worker(ctx, state), state=state)))
            ctx.progress((i + 1) / len(self.seeds), f"{i + 1} of {len(self.seeds)} samples")
        log.info("wrote %d appearance samples to %s", len(written), folder)
        return tuple(written)


@dataclass(frozen=True)
class ModelDistance:
    """``distance``: mean RMS difference (images in [-1, 1]) between the base's and the target's images of the same
    ``n`` latents; ``profile``: the same for the layer-swapped hybrid at each depth (None when not asked)."""

    base: ModelRef
    target: ModelRef
    n: int
    seed: int
    distance: float
    profile: dict[int, float] | None = None


@dataclass(frozen=True)
class DistanceJob:
    """The model distance between ``base`` and ``target`` over ``n`` latents from ``seed`` (memoised per pair);
    ``depths`` also measures the hybrid at every swap depth."""

    base: ModelRef
    target: ModelRef
    n: int = DISTANCE_LATENTS
    seed: int = 0
    depths: bool = False

    def __call__(self, ctx: JobContext) -> ModelDistance:
        def measure() -> ModelDistance:
            ctx.progress(0.0, f"measuring how far {self.target.label()} is from its base")
            G, T = cached_model(ctx, self.base), cached_model(ctx, self.target)
            profile = model_distance_profile(G, T, n=self.n, seed=self.seed, depths=None if self.depths else (0,))
            return ModelDistance(self.base, self.target, self.n, self.seed, profile[0],
                                 {d: v for d, v in profile.items() if d} if self.depths else None)

        return ctx.memo.get(("model-distance", self), measure)


@dataclass(frozen=True)
class FolderSummary:
    """What a folder translation did: PNGs written, photos without a face, photos that could not be read."""

    written: tuple[str, ...]
    no_face: tuple[str, ...]
    failed: tuple[tuple[str, str], ...]  # (file name, reason)
    seconds: float


class _Share:
    """The ``JobContext`` a sub-job sees: its progress mapped into [lo, hi] of the whole, its partials dropped."""

    def __init__(self, ctx: JobContext, lo: float, hi: float, prefix: str):
        self._ctx, self._lo, self._hi, self._prefix = ctx, lo, hi, prefix
        self.device, self.models, self.memo, self.photos = ctx.device, ctx.models, ctx.memo, ctx.photos
        self.precision = getattr(ctx, "precision", "auto")

    def cancelled(self) -> bool:
        return self._ctx.cancelled()

    def check(self) -> None:
        self._ctx.check()

    def progress(self, fraction: float, message: str = "") -> None:
        self._ctx.progress(self._lo + (self._hi - self._lo) * float(fraction),
                           f"{self._prefix} · {message}" if message else self._prefix)

    def partial(self, result) -> None:
        pass


def folder_photos(folder: str | Path) -> list[Path]:
    """The photos directly inside ``folder`` (by suffix), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ProjectError(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def batch_photos(folder: str | Path, out: str | Path) -> tuple[list[tuple[Path, str]], Path]:
    """The photos of a folder batch, each with the stem its outputs are named by (photo.jpg and photo.png both in
    the folder: photo-jpg, photo-png), and the output folder, created. Refuses a folder without photos and writing
    into the photos' own folder."""
    photos = folder_photos(folder)
    if not photos:
        raise ProjectError(f"there are no photos ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    out = Path(out)
    if out.resolve() == Path(folder).resolve():
        raise ProjectError("write the translations into another folder than the photos (they could overwrite them)")
    out.mkdir(parents=True, exist_ok=True)
    stems = [p.stem for p in photos]
    return [(p, p.stem if stems.count(p.stem) == 1 else f"{p.stem}-{p.suffix[1:].lower()}") for p in photos], out


@dataclass(frozen=True)
class TranslateFolderJob:
    """Every photo in ``folder``: detect its best face, align it, invert it into the face's model (encoder guess
    when one fits, then the optimiser with ``settings``) and translate it with the state's translation; writes
    ``<photo stem>.png`` (with its project) into ``out``. A photo without a face or unreadable is skipped and
    reported; cancelling stops after the current photo's current step."""

    state: EditState
    folder: str
    out: str
    settings: InversionSettings = field(default_factory=InversionSettings)
    use_encoder: bool = True
    optimise: bool = True
    detector: str = "auto"

    def __call__(self, ctx: JobContext) -> FolderSummary:
        t0 = time.perf_counter()
        if self.state.translation is None:
            raise ProjectError("no translation is set: choose a target model first")
        named, out = batch_photos(self.folder, self.out)
        photos = [path for path, _ in named]
        base = self.state.replace(base=None, noise_maps=None, photo=None)
        written, no_face, failed = [], [], []
        for i, (path, stem) in enumerate(named):
            name = f"{stem}.png"
            ctx.check()
            lo, hi = i / len(photos), (i + 1) / len(photos)
            head = f"{i + 1} of {len(photos)}: {path.name}"
            try:
                scan = ScanJob(str(path), base, detector=self.detector)(_Share(ctx, lo, lo, head))
            except PhotoError as e:
                failed.append((path.name, str(e)))
                continue
            if not scan.faces:
                no_face.append(path.name)
                ctx.progress(hi, f"{head} · no face")
                continue
            transform = face_transform(scan.faces[0], size=scan.size, recipe=scan.recipe)
            outcome = InvertJob(base, str(path), transform, self.settings, use_encoder=self.use_encoder,
                                optimise=self.optimise)(_Share(ctx, lo, hi, head))
            ctx.check()
            image = render_in_worker(ctx, outcome.state)
            written.append(str(save_image(out / name, image, state=outcome.state)))
            ctx.progress(hi, f"{head} · done")
        log.info("translated the photos of %s in %.1f s: %d written, %d without a face, %d unreadable", self.folder,
                 time.perf_counter() - t0, len(written), len(no_face), len(failed))
        return FolderSummary(tuple(written), tuple(no_face), tuple(failed), time.perf_counter() - t0)
