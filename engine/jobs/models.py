"""What the model manager shows and checks: the facts of every opened and recent model file (format, architecture,
resolution, precision, device, memory use, what it pairs with) and whether a file can be paired with the document's
generator, as its e4e encoder, its attribute flow (CNF) or a fine-tune of it.

A pairing is checked before use (``pairing_problem``): an encoder's W+ latents must be the generator's (rows and
width: ``engine.models.e4e.check_pairing``), a flow's latent width must be the generator's and its condition layout
known, and a fine-tune must have the generator's architecture. ``PairJob`` opens a file, checks it and pins it;
``ModelsJob`` lists the facts. Files already in the worker's cache are described as they are loaded (device,
precision, memory); others are opened on the CPU to read their facts, then dropped.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.assets import default_flow_path
from engine.errors import ModelFormatError
from engine.files.flows import load_flow
from engine.files.storage import file_sha256
from engine.jobs.photo import encoder_for, paired_e4e
from engine.jobs.render import cached_file, cached_model, open_file, pinned, resolve_model_path
from engine.models.e4e import E4E, check_pairing
from engine.models.flow import ConditionalCNF
from engine.models.stylegan2 import Generator
from engine.project import EditState, ModelRef, ProjectError
from engine.worker import JobContext

log = logging.getLogger(__name__)

ROLES = ("encoder", "flow", "fine-tune")  # what a file can be paired with a generator as
ROLE_NAMES = {"generator": "generator", "encoder": "e4e encoder", "flow": "attribute flow (CNF)",
              "fine-tune": "fine-tune"}


def memory_bytes(*modules) -> int:
    """Bytes the parameters and buffers of ``modules`` hold (each tensor storage counted once); an ``E4E`` counts
    its encoder, average latent and generator."""
    seen, total = set(), 0
    for m in modules:
        if isinstance(m, E4E):
            parts = [m.encoder, m.generator]
            tensors = [] if m.latent_avg is None else [m.latent_avg]
        else:
            parts, tensors = [m], []
        for part in parts:
            if isinstance(part, torch.nn.Module):
                tensors += [*part.parameters(), *part.buffers()]
        for t in tensors:
            key = (t.device, t.untyped_storage().data_ptr()) if t.device.type != "meta" else id(t)
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
    return total


def _modules(obj) -> list[torch.nn.Module]:
    if isinstance(obj, E4E):
        return [m for m in (obj.encoder, obj.generator) if m is not None]
    return [obj] if isinstance(obj, torch.nn.Module) else []


def precision_of(obj) -> str:
    """The floating precisions a model's weights are in, most values first: 'float32', 'float16 + float32'."""
    counts: Counter = Counter()
    for m in _modules(obj):
        for p in m.parameters():
            if p.is_floating_point():
                counts[str(p.dtype).removeprefix("torch.")] += p.numel()
    return " + ".join(name for name, _ in counts.most_common()) or "none"


def device_of(obj) -> str:
    """Where a model's weights are ('cpu', 'cuda:0', ...)."""
    for m in _modules(obj):
        for p in m.parameters():
            return str(p.device)
    return "none"


def _generator_text(G: Generator) -> str:
    return f"StyleGAN2 {G.img_resolution} px, {G.num_ws} × {G.w_dim} W+"


def architecture_of(obj) -> str:
    """The architecture in words: 'StyleGAN2 1024 px, 18 × 512 W+', 'e4e IR-SE, 18 × 512 W+ (+ StyleGAN2 …)'."""
    if isinstance(obj, E4E):
        cfg = obj.cfg
        text = f"e4e {cfg.mode.upper().replace('_', '-')} encoder, {cfg.input_size} px in, {cfg.n_styles} × " \
               f"{cfg.w_dim} W+"
        return text if obj.generator is None else f"{text}; its {_generator_text(obj.generator)}"
    if isinstance(obj, Generator):
        return _generator_text(obj)
    if isinstance(obj, ConditionalCNF):
        return f"StyleFlow CNF, w {obj.cfg.input_dim}, condition of {obj.cfg.cond_dim} values"
    return type(obj).__name__


def pairing_problem(G: Generator, other, role: str, *, layout=None) -> str | None:
    """Why ``other`` (an opened file) cannot be paired with the generator ``G`` as ``role`` (see ``ROLES``), in a
    sentence; None when it can. ``layout``: the condition layout the user gave a flow (else the file's own)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "encoder":
        if not isinstance(other, E4E):
            return "it is not an e4e encoder checkpoint (such as e4e_ffhq_encode.pt)"
        try:
            check_pairing(other.cfg, G)
        except ModelFormatError as e:
            return str(e)
        return None
    if role == "flow":
        if not isinstance(other, ConditionalCNF):
            return "it is not a StyleFlow attribute flow (CNF)"
        if other.cfg.input_dim != G.w_dim:
            return (f"the flow edits latents of {other.cfg.input_dim} values, but the generator's W has {G.w_dim}: "
                    "choose the flow trained for this generator")
        if (layout or other.layout) is None:
            return (f"the flow's condition layout (what its {other.cfg.cond_dim} values mean) is unknown: give it in "
                    "Attributes > Flow layout…")
        return None
    if not isinstance(other, Generator):
        return "it is not a StyleGAN2 generator"
    if other.cfg != G.cfg:
        return (f"it has another architecture ({_generator_text(other)}) than the generator ({_generator_text(G)}): "
                "a fine-tune must be trained from this generator")
    return None


@dataclass(frozen=True)
class ModelFacts:
    """One row of the model manager.

    ``role``: 'generator', 'encoder', 'flow' or 'fine-tune' (``ROLE_NAMES`` says it in words); ``memory``: bytes
    its weights hold; ``loaded``: in the worker's cache now (else opened to read these facts and dropped, so
    ``device`` / ``precision`` are where it would be); ``in_use``: the document uses it; ``pairs``: what it is paired
    with, in words; ``problem``: why the document's generator cannot use it (None: it can)."""

    path: str
    name: str
    role: str
    format: str
    architecture: str
    resolution: int | None
    precision: str
    device: str
    memory: int
    loaded: bool
    in_use: bool
    pairs: tuple[str, ...] = ()
    problem: str | None = None


def _facts(obj, *, path: str, role: str, loaded: bool, in_use: bool, pairs=(), problem=None) -> ModelFacts:
    info = getattr(obj, "info", None) if isinstance(obj, (E4E, ConditionalCNF)) else getattr(obj, "model_info", None)
    G = obj.generator if isinstance(obj, E4E) else obj if isinstance(obj, Generator) else None
    return ModelFacts(path=path, name=Path(path).name, role=role, format=getattr(info, "format", "") or "",
                      architecture=architecture_of(obj), resolution=None if G is None else G.img_resolution,
                      precision=precision_of(obj), device=device_of(obj), memory=memory_bytes(obj), loaded=loaded,
                      in_use=in_use, pairs=tuple(pairs), problem=problem)


def open_any(ref: ModelRef, *, device="cpu"):
    """A generator or e4e file (``open_file``), else a flow file; the generator loader's refusal when neither."""
    try:
        return open_file(ref, device=device)
    except ModelFormatError as refused:
        try:
            return load_flow(resolve_model_path(ref)).to(device)
        except ModelFormatError:
            raise refused from None


def _flow_path(ref: ModelRef) -> str:
    return str(default_flow_path() if ref.is_default else Path(ref.path))


@dataclass(frozen=True)
class ModelsJob:
    """The facts of the files ``state`` uses (its generator, its paired encoder, its flow, its fine-tune) and of the
    ``recent`` model files (paths, newest first), each checked against the state's generator. A file in use that
    cannot be paired (or read) gets a row saying why instead of failing the job."""

    state: EditState
    recent: tuple[str, ...] = ()

    def __call__(self, ctx: JobContext) -> tuple[ModelFacts, ...]:
        st = self.state
        ctx.progress(0.0, "describing the models")
        G = cached_model(ctx, st.model)
        model_path = str(resolve_model_path(st.model))
        try:
            encoder = encoder_for(ctx, st.model, paired=st.encoder)
        except (ModelFormatError, ProjectError):
            encoder = None  # the paired encoder's own row says why
        own = encoder is not None and encoder.kind == "e4e" and st.encoder is None
        pairs = [] if encoder is None else ["encoder: its own (e4e)"] if own else [f"encoder: {encoder.name}"]
        pairs.append(f"CNF: {Path(_flow_path(st.flow)).name}")
        if st.translation is not None:
            pairs.append(f"fine-tune: {st.translation.target.label()}")
        rows = [_facts(cached_file(ctx, st.model), path=model_path, role="generator", loaded=True, in_use=True,
                       pairs=pairs)]
        done = {model_path}
        uses = [("encoder", st.encoder)] if st.encoder is not None else []
        uses.append(("flow", st.flow))
        if st.translation is not None:
            uses.append(("fine-tune", st.translation.target))
        for role, ref in uses:
            path = _flow_path(ref) if role == "flow" else str(resolve_model_path(ref))
            rows.append(ctx.memo.get(("model facts", role, ref, st.model, st.flow_layout),
                                     lambda r=ref, role=role, path=path: self._in_use(ctx, G, r, role, path)))
            done.add(path)
        recent = [p for p in self.recent if str(Path(p).resolve()) not in done]
        for i, path in enumerate(recent):
            ctx.check()
            ctx.progress((i + 1) / (len(recent) + 1), f"reading {Path(path).name}")
            rows.append(ctx.memo.get(("model facts", str(path), file_sha256(path), st.model),
                                     lambda p=path: self._recent(G, p)))
        return tuple(rows)

    def _in_use(self, ctx: JobContext, G: Generator, ref: ModelRef, role: str, path: str) -> ModelFacts:
        """A file the document uses with its generator: the worker's copy when it has one, else opened for its
        facts (on the worker's device) and dropped."""
        st = self.state
        pairs = (f"generator: {st.model.label()}",)
        try:
            if role == "fine-tune":
                obj, loaded = cached_file(ctx, ref), True
            elif role == "encoder":
                try:
                    obj, loaded = paired_e4e(ctx, st.model, ref), True
                except ModelFormatError:
                    obj, loaded = open_file(ref, device=ctx.device), False  # refused: described, not kept
            else:
                obj, loaded = load_flow(path).to(ctx.device), False
        except (ModelFormatError, ProjectError) as e:
            return _unreadable(path, role, str(e), in_use=True)
        return _facts(obj, path=path, role=role, loaded=loaded, in_use=True, pairs=pairs,
                      problem=pairing_problem(G, obj, role, layout=st.flow_layout if role == "flow" else None))

    @staticmethod
    def _recent(G: Generator, path: str) -> ModelFacts:
        """A recent file, opened on the CPU for its facts: an e4e file is checked as the generator's encoder."""
        try:
            obj = open_any(ModelRef(path=str(path)))
        except (ModelFormatError, ProjectError) as e:
            return _unreadable(str(path), "generator", str(e), in_use=False)
        if isinstance(obj, E4E):
            return _facts(obj, path=str(path), role="encoder", loaded=False, in_use=False,
                          problem=pairing_problem(G, obj, "encoder"))
        if isinstance(obj, ConditionalCNF):
            return _facts(obj, path=str(path), role="flow", loaded=False, in_use=False,
                          problem=pairing_problem(G, obj, "flow"))
        return _facts(obj, path=str(path), role="generator", loaded=False, in_use=False)


def _unreadable(path: str, role: str, why: str, *, in_use: bool) -> ModelFacts:
    return ModelFacts(path=path, name=Path(path).name, role=role, format="", architecture="", resolution=None,
                      precision="", device="", memory=0, loaded=False, in_use=in_use, problem=why)


@dataclass(frozen=True)
class Pairing:
    """A checked pairing: the file (pinned: absolute path and sha256), its role and its facts."""

    ref: ModelRef
    role: str
    facts: ModelFacts


@dataclass(frozen=True)
class PairJob:
    """Open ``ref`` and check that the generator of ``state`` can use it as ``role`` (``pairing_problem``);
    a file it cannot use is refused with a ``ModelFormatError`` that says why."""

    state: EditState
    ref: ModelRef
    role: str

    def __call__(self, ctx: JobContext) -> Pairing:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        ctx.progress(0.0, f"checking {self.ref.label()}")
        ref = pinned(self.ref)
        G = cached_model(ctx, self.state.model)
        obj = open_any(ref, device=ctx.device)
        problem = pairing_problem(G, obj, self.role, layout=self.state.flow_layout if self.role == "flow" else None)
        if problem is not None:
            raise ModelFormatError(f"{ref.label()} cannot be the {ROLE_NAMES[self.role]} of "
                                   f"{self.state.model.label()}: {problem}")
        if self.role == "encoder":  # the checked encoder is what inversions will use: keep it paired
            paired_e4e(ctx, self.state.model, ref)
        log.info("paired %s with %s as its %s", ref.label(), self.state.model.label(), ROLE_NAMES[self.role])
        return Pairing(ref, self.role, _facts(obj, path=str(Path(ref.path)), role=self.role, loaded=True,
                                              in_use=False, pairs=(f"generator: {self.state.model.label()}",)))


__all__ = ["ROLES", "ROLE_NAMES", "ModelFacts", "ModelsJob", "Pairing", "PairJob", "memory_bytes", "precision_of",
           "device_of", "architecture_of", "pairing_problem"]
