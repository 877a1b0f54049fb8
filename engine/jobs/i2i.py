"""Worker jobs for the image-to-image back-ends (BicycleGAN, TUNIT) beside the layer swap: a strip of N samples of
one input, a BicycleGAN z sweep, the samples written to a folder, and a folder of photos translated.

A request (``I2IRequest``) names the model file (sha256 pinned), the input (the document's face, the photo it was
inverted from, or an image file), whether the input is first turned into a line drawing, and what to sample:
BicycleGAN codes from seeds ``seed`` … ``seed + n - 1`` (or a slerp sweep from ``seed`` towards ``sweep_to``), TUNIT
the mean style of every cluster (or of the chosen ones); a reference image adds its encoded sample. Each sample
carries a ``SampleSpec`` that reproduces it, and exported PNGs keep it (with the face's project) in their metadata.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.assets import ASSETS_DIR, DEFAULT_BICYCLEGAN, DEFAULT_TUNIT, manifest
from engine.errors import PhotoError
from engine.files.i2i import (
    METHOD_NAMES,
    I2IModel,
    cluster_style,
    code_for_seed,
    fit_input,
    line_drawing,
    load_i2i,
    reference_code,
    sweep_code,
    translate,
)
from engine.files.images import to_uint8
from engine.files.storage import file_sha256
from engine.jobs.export import save_image
from engine.jobs.photo import cached_photo
from engine.jobs.render import render_in_worker
from engine.jobs.translate import FolderSummary, batch_photos
from engine.photos.align import AlignTransform, align_image, face_transform, whole_image_transform
from engine.photos.faces import detect_faces
from engine.project import EditState, ModelRef, ProjectError
from engine.worker import JobContext

log = logging.getLogger(__name__)

INPUTS = ("face", "photo", "file")
MAX_SAMPLES = 64


@dataclass(frozen=True)
class ShippedI2I:
    """An image-to-image model shipped in ``assets/``: its method, pinned reference and manifest."""

    method: str
    ref: ModelRef
    info: dict = field(compare=False, repr=False)

    def label(self) -> str:
        domains = self.info.get("domains")
        if isinstance(domains, dict) and domains.get("A") and domains.get("B"):
            return f"{METHOD_NAMES[self.method]}: {domains['A']} → {domains['B']}"
        if isinstance(domains, list) and domains:
            return f"{METHOD_NAMES[self.method]}: {' / '.join(map(str, domains))}"
        return METHOD_NAMES[self.method]


def shipped_i2i(folder: Path = ASSETS_DIR) -> list[ShippedI2I]:
    """The embedded BicycleGAN and TUNIT models present in ``folder`` (with their manifests)."""
    found = []
    for method, name in (("bicyclegan", DEFAULT_BICYCLEGAN), ("tunit", DEFAULT_TUNIT)):
        path, info = Path(folder) / name, manifest(name, folder=Path(folder))
        if path.is_file() and info is not None:
            found.append(ShippedI2I(method, ModelRef(path=str(path.resolve()), sha256=info.get("sha256")), info))
    return found


def pin(ref: ModelRef) -> ModelRef:
    """``ref`` with an absolute path and, for a file, its sha256 (a folder of released files is not pinned)."""
    path = Path(ref.path)
    if ref.sha256 is not None or path.is_dir():
        return ModelRef(path=str(path.resolve()), sha256=ref.sha256)
    if not path.is_file():
        raise ProjectError(f"the model file {path} does not exist (moved or deleted?)")
    return ModelRef(path=str(path.resolve()), sha256=file_sha256(path))


def cached_i2i(ctx: JobContext, ref: ModelRef) -> I2IModel:
    """The image-to-image model ``ref`` names, from the worker's cache; a file that changed is refused."""
    def load() -> I2IModel:
        path = Path(ref.path)
        if not path.exists():
            raise ProjectError(f"the model file {path} does not exist (moved or deleted?)")
        if ref.sha256 is not None and path.is_file() and file_sha256(path) != ref.sha256:
            raise ProjectError(f"{path.name} is not the file these samples were made with (sha256 differs)")
        return load_i2i(path).to(ctx.device)

    return ctx.models.get(("i2i", ref.path, ref.sha256), load)


@dataclass(frozen=True)
class I2IInput:
    """The input image: ``face`` (the state's face before any layer-swap translation), ``photo`` (the aligned crop
    of the photo the face was inverted from) or ``file`` (the image at ``path``)."""

    kind: str = "face"
    path: str | None = None

    def __post_init__(self):
        if self.kind not in INPUTS:
            raise ProjectError(f"the input is one of {INPUTS}, got {self.kind!r}")
        if (self.kind == "file") != (self.path is not None):
            raise ProjectError("an image-file input needs its path (and only a file input has one)")

    def label(self) -> str:
        return {"face": "the face", "photo": "the photo"}.get(self.kind) or Path(self.path).name

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": self.path}


def input_image(ctx: JobContext, state: EditState, source: I2IInput) -> np.ndarray:
    """uint8 [H, W, 3] of the input."""
    if source.kind == "face":
        return render_in_worker(ctx, state, translate=False)
    if source.kind == "photo":
        if state.photo is None:
            raise ProjectError("this face was not made from a photo: open one first (File ▸ Open photo)")
        photo = cached_photo(ctx, state.photo.path, state.photo.sha256)
        return align_image(photo.pixels, AlignTransform(state.photo.quad, state.photo.size))
    ctx.photos.clear()  # a fresh read: the file may have changed since
    return cached_photo(ctx, source.path).pixels


@dataclass(frozen=True)
class SampleSpec:
    """What made one sample: a BicycleGAN code from ``seed`` (or the slerp from ``seed`` towards ``sweep_to`` at
    ``t``), a TUNIT ``cluster``'s mean style, or the code/style of the ``reference`` image."""

    seed: int | None = None
    sweep_to: int | None = None
    t: float = 0.0
    cluster: int | None = None
    reference: str | None = None

    def label(self, model: I2IModel | None = None) -> str:
        if self.reference is not None:
            return f"from {Path(self.reference).name}"
        if self.cluster is not None:
            return model.cluster_label(self.cluster) if model is not None else f"cluster {self.cluster}"
        if self.sweep_to is not None:
            return f"z {self.seed} → {self.sweep_to} at {self.t:.2f}"
        return f"z seed {self.seed}"

    def stem(self) -> str:
        if self.reference is not None:
            return f"ref-{Path(self.reference).stem}"
        if self.cluster is not None:
            return f"cluster{self.cluster}"
        if self.sweep_to is not None:
            return f"z{self.seed:05d}-{self.sweep_to:05d}-t{round(self.t * 1000):04d}"
        return f"z{self.seed:05d}"


@dataclass(frozen=True)
class I2IRequest:
    """What to translate and how: the model, the input, ``lines`` (turn the input into a line drawing first;
    None: when the model translates from line drawings), and the samples (see ``specs``)."""

    model: ModelRef
    input: I2IInput = I2IInput()
    lines: bool | None = None
    n: int = 4
    seed: int = 0
    sweep_to: int | None = None
    ts: tuple[float, ...] = ()
    clusters: tuple[int, ...] | None = None
    reference: str | None = None

    def __post_init__(self):
        if not 0 <= self.n <= MAX_SAMPLES:
            raise ProjectError(f"ask for 0 to {MAX_SAMPLES} samples, got {self.n}")
        if any(not 0.0 <= t <= 1.0 for t in self.ts):
            raise ProjectError(f"sweep fractions are within [0, 1], got {self.ts}")

    def only(self, spec: SampleSpec) -> I2IRequest:
        """This request narrowed to the one sample ``spec`` (for its export)."""
        if spec.reference is not None:
            return dataclasses.replace(self, reference=spec.reference, n=0, sweep_to=None, ts=(), clusters=())
        if spec.cluster is not None:
            return dataclasses.replace(self, reference=None, clusters=(spec.cluster,))
        if spec.sweep_to is not None:
            return dataclasses.replace(self, reference=None, seed=spec.seed, sweep_to=spec.sweep_to, ts=(spec.t,))
        return dataclasses.replace(self, reference=None, seed=spec.seed, n=1, sweep_to=None, ts=())

    def specs(self, model: I2IModel) -> list[SampleSpec]:
        """BicycleGAN: the sweep's ``ts`` from ``seed`` to ``sweep_to`` when set, else seeds ``seed`` … ``seed +
        n - 1``; TUNIT: ``clusters`` (None: every cluster the model has a style for). A reference adds its sample
        first."""
        out = [SampleSpec(reference=self.reference)] if self.reference is not None else []
        if model.method == "tunit":
            clusters = sorted(model.styles) if self.clusters is None else list(self.clusters)
            return out + [SampleSpec(cluster=k) for k in clusters]
        if model.nz == 0:  # a code-less generator has one output
            return out or [SampleSpec(seed=self.seed)]
        if self.sweep_to is not None:
            return out + [SampleSpec(seed=self.seed, sweep_to=self.sweep_to, t=t) for t in self.ts]
        return out + [SampleSpec(seed=self.seed + i) for i in range(self.n)]


@dataclass(frozen=True)
class I2IStrip:
    """Samples of one input: ``input_image`` is what the network read (fitted, maybe a line drawing), ``notice``
    says how the input was changed to fit (None when it was not)."""

    request: I2IRequest
    state: EditState
    method: str
    input_image: np.ndarray = field(repr=False)
    specs: tuple[SampleSpec, ...]
    labels: tuple[str, ...]
    images: tuple[np.ndarray, ...] = field(repr=False)
    notice: str | None
    ms: float


def _prepared(ctx: JobContext, model: I2IModel, image: np.ndarray,
              lines: bool | None) -> tuple[torch.Tensor, str | None]:
    x, notice = fit_input(image, model.size)
    x = x.to(ctx.device)
    return (line_drawing(x) if (model.wants_lines if lines is None else lines) else x), notice


def _reference(ctx: JobContext, model: I2IModel, path: str) -> torch.Tensor:
    ref, _ = fit_input(cached_photo(ctx, path).pixels, model.size)
    return reference_code(model, ref.to(ctx.device))


def sample_codes(ctx: JobContext, model: I2IModel, specs: list[SampleSpec]) -> torch.Tensor:
    """One code (BicycleGAN z) or style (TUNIT) per spec. -> [N, nz or sty_dim]"""
    codes = []
    for s in specs:
        if s.reference is not None:
            codes.append(_reference(ctx, model, s.reference))
        elif s.cluster is not None:
            codes.append(cluster_style(model, s.cluster))
        elif model.nz == 0:
            codes.append(torch.zeros(0))
        elif s.sweep_to is not None:
            codes.append(sweep_code(model.nz, s.seed, s.sweep_to, s.t))
        else:
            codes.append(code_for_seed(model.nz, s.seed))
    return torch.stack([c.to(ctx.device) for c in codes])


def run_request(ctx: JobContext, model: I2IModel, x: torch.Tensor, specs: list[SampleSpec]) -> list[np.ndarray]:
    """The samples of prepared input ``x`` [1, 3, S, S] for ``specs``."""
    if not specs:
        return []
    with torch.no_grad():
        return list(to_uint8(translate(model, x, sample_codes(ctx, model, specs))))


@dataclass(frozen=True)
class I2IJob:
    """The samples of ``request`` for the state's input (see ``I2IRequest.specs``)."""

    state: EditState
    request: I2IRequest

    def __call__(self, ctx: JobContext) -> I2IStrip:
        t0 = time.perf_counter()
        model = cached_i2i(ctx, self.request.model)
        if self.request.clusters is None and model.method == "tunit" and not model.styles \
                and self.request.reference is None:
            raise ProjectError(f"{model.label} stores no cluster styles: translate with a reference image")
        x, notice = _prepared(ctx, model, input_image(ctx, self.state, self.request.input), self.request.lines)
        ctx.check()
        specs = self.request.specs(model)
        images = run_request(ctx, model, x, specs)
        return I2IStrip(self.request, self.state, model.method, to_uint8(x)[0], tuple(specs),
                        tuple(s.label(model) for s in specs), tuple(images), notice,
                        (time.perf_counter() - t0) * 1e3)


def sample_extras(request: I2IRequest, spec: SampleSpec, method: str) -> dict:
    """What goes into an exported sample's metadata to reproduce it (beside the face's project)."""
    ref = None
    if spec.reference is not None:
        ref = {"path": spec.reference, "sha256": file_sha256(spec.reference)}
    path = Path(request.model.path)
    sha = request.model.sha256 or (file_sha256(path) if path.is_file() else None)
    return {"i2i": {"method": method, "model": {"path": str(path), "sha256": sha},
                    "input": request.input.to_dict(), "lines": request.lines,
                    "sample": dataclasses.asdict(spec) | {"reference": ref}}}


@dataclass(frozen=True)
class I2IExportJob:
    """Write the samples of ``request`` into ``folder`` as ``<prefix><method>-<sample>.png`` (each PNG keeps the
    face's project and how the sample was made); returns the paths written."""

    state: EditState
    request: I2IRequest
    folder: str
    prefix: str = ""

    def __call__(self, ctx: JobContext) -> tuple[str, ...]:
        model = cached_i2i(ctx, self.request.model)
        x, _ = _prepared(ctx, model, input_image(ctx, self.state, self.request.input), self.request.lines)
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        specs = self.request.specs(model)
        written = []
        for i, spec in enumerate(specs):
            ctx.check()
            image = run_request(ctx, model, x, [spec])[0]
            path = folder / f"{self.prefix}{model.method}-{spec.stem()}.png"
            written.append(str(save_image(path, image, state=self.state,
                                          extras=sample_extras(self.request, spec, model.method))))
            ctx.progress((i + 1) / len(specs), f"{i + 1} of {len(specs)} samples")
        return tuple(written)


@dataclass(frozen=True)
class SaveImageJob:
    """Write an image already made (a sample on screen) to ``path``; a PNG keeps the face's project and, for an
    image-to-image sample (``request``, ``spec``, ``method``), how it was made. -> the path written"""

    path: str
    image: np.ndarray = field(repr=False, compare=False)
    state: EditState | None = None
    request: I2IRequest | None = None
    spec: SampleSpec | None = None
    method: str = ""

    def __call__(self, ctx: JobContext) -> str:
        extras = None if self.request is None else sample_extras(self.request, self.spec, self.method)
        return str(save_image(self.path, self.image, state=self.state, extras=extras))


@dataclass(frozen=True)
class I2IFolderJob:
    """Every photo in ``folder`` translated with ``request`` (its input ignored): the best face detected and cut out
    (``align``; else the whole image), then every sample written as ``<photo stem>-<method>-<sample>.png`` into
    ``out``. Photos without a face, or unreadable, are skipped and reported; cancel stops after the current photo."""

    request: I2IRequest
    folder: str
    out: str
    align: bool = True
    detector: str = "auto"

    def __call__(self, ctx: JobContext) -> FolderSummary:
        t0 = time.perf_counter()
        named, out = batch_photos(self.folder, self.out)
        model = cached_i2i(ctx, self.request.model)
        specs = self.request.specs(model)
        codes = sample_codes(ctx, model, specs) if specs else None
        written, no_face, failed = [], [], []
        for i, (path, stem) in enumerate(named):
            ctx.check()
            head = f"{i + 1} of {len(named)}: {path.name}"
            ctx.progress(i / len(named), head)
            try:
                photo = cached_photo(ctx, str(path))
            except PhotoError as e:
                failed.append((path.name, str(e)))
                continue
            if self.align:
                faces = detect_faces(photo.pixels, detector=self.detector)
                if not faces:
                    no_face.append(path.name)
                    continue
                transform = face_transform(faces[0], size=model.size, recipe=model.recipe)
            else:
                transform = whole_image_transform(*photo.size, size=model.size)
            x, _ = _prepared(ctx, model, align_image(photo.pixels, transform), self.request.lines)
            with torch.no_grad():
                images = to_uint8(translate(model, x, codes))
            for spec, image in zip(specs, images):
                written.append(str(save_image(out / f"{stem}-{model.method}-{spec.stem()}.png", image)))
        ctx.progress(1.0, f"{len(named)} photos")
        log.info("translated the photos of %s with %s in %.1f s: %d images written, %d photos without a face, %d "
                 "unreadable", self.folder, model.label, time.perf_counter() - t0, len(written), len(no_face),
                 len(failed))
        return FolderSummary(tuple(written), tuple(no_face), tuple(failed), time.perf_counter() - t0)


__all__ = ["ShippedI2I", "shipped_i2i", "pin", "cached_i2i", "I2IInput", "input_image", "SampleSpec", "I2IRequest",
           "I2IStrip", "I2IJob", "I2IExportJob", "I2IFolderJob", "SaveImageJob", "sample_extras", "run_request",
           "sample_codes", "INPUTS"]
