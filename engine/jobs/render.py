"""Edit state -> pixels: latents from seeds, truncation, style mixing, noise, synthesis; and the worker jobs.

Everything the editor asks of the engine goes through the jobs here (plain callables ``job(ctx)`` for
``engine.worker.Worker``): they load models through the worker's cache, run on the worker's device and return
immutable results whose images are uint8 [H, W, 3] arrays owned by the result.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.algorithms.condition_fit import ConditionFit, condition_mean, fit_condition
from engine.algorithms.flow_edit import LIGHTING_PRESETS, FastSteps, apply_edits, flow_layout_of
from engine.algorithms.flow_layout import STYLEFLOW, ConditionLayout
from engine.algorithms.latents import broadcast_w, make_noise, mix_styles, seed_to_z, truncate
from engine.algorithms.layer_swap import layer_swap, multimodal_styles
from engine.algorithms.pivotal import apply_deltas, load_deltas
from engine.assets import default_estimator_path, default_flow_path, default_generator_path
from engine.convert.styleflow import STATED
from engine.files.e4e import open_model
from engine.files.flows import load_flow
from engine.files.images import to_uint8
from engine.files.storage import file_sha256
from engine.jobs.directions import DragGains, load_model_directions, resolve_method, solve_directions
from engine.models.e4e import E4E
from engine.models.estimator import load_estimator
from engine.models.precision import chosen_precision, precision_name
from engine.models.stylegan2 import Generator, GeneratorConfig
from engine.project import EditState, ModelRef, ProjectError, Source, Translation
from engine.worker import Cancelled, JobContext

log = logging.getLogger(__name__)


def row_resolutions(cfg: GeneratorConfig) -> tuple[int, ...]:
    """The resolution each W+ row mostly controls: rows 2k and 2k+1 belong to 4 * 2**k px."""
    return tuple(min(4 * 2 ** (i // 2), cfg.img_resolution) for i in range(cfg.num_ws))


@dataclass(frozen=True)
class ModelSummary:
    """What the model panel shows about a loaded generator."""

    ref: ModelRef
    format: str
    description: str
    notes: tuple[str, ...]
    resolution: int
    num_ws: int
    w_dim: int
    z_dim: int
    row_resolutions: tuple[int, ...]
    parameters: int
    path: str
    encoder: str | None = None  # the file's own photo encoder in words (an e4e checkpoint's), None without one
    precision: str = "float32"  # what the generator runs in ('float16': NVIDIA's mixed precision)


def resolve_model_path(ref: ModelRef) -> Path:
    return default_generator_path() if ref.is_default else Path(ref.path)


def open_file(ref: ModelRef, *, device: torch.device | str = "cpu") -> Generator | E4E:
    """What the model file ``ref`` names holds, on ``device``: a generator, or an e4e model (its encoder and, when
    the file has one, its generator; ``engine.files.e4e.open_model``). A pinned sha256 that no longer matches the
    file is an error."""
    path = resolve_model_path(ref)
    if not path.is_file():
        raise ProjectError(f"the model file {path} does not exist (moved or deleted?)")
    if ref.sha256 is not None and file_sha256(path) != ref.sha256:
        raise ProjectError(f"{path.name} is not the file this project was made with (sha256 differs): the image "
                           "would not be reproduced")
    return open_model(path).to(device)


def generator_of(opened: Generator | E4E, ref: ModelRef) -> Generator:
    """The generator of an opened file; an e4e file without one is refused (pair it with a generator instead)."""
    if not isinstance(opened, E4E):
        return opened
    if opened.generator is None:
        raise ProjectError(f"{ref.label()} is an e4e encoder without a generator: open the generator it was trained "
                           "for, then pair this encoder with it (File > Pair e4e encoder…)")
    return opened.generator


def load_model(ref: ModelRef, *, device: torch.device | str = "cpu") -> Generator:
    """The generator ``ref`` names (an e4e file's own generator for an e4e checkpoint), on ``device``."""
    return generator_of(open_file(ref, device=device), ref)


def at_precision(opened: Generator | E4E, precision: str, device: torch.device | str) -> Generator | E4E:
    """An opened file with its generator at the precision chosen by name (``chosen_precision``: 'auto' is float16
    on CUDA unless that would show); an e4e file's encoder stays float32."""
    if not isinstance(opened, E4E):
        return chosen_precision(opened, precision, device)
    if opened.generator is None:
        return opened
    return dataclasses.replace(opened, generator=chosen_precision(opened.generator, precision, device))


def cached_file(ctx: JobContext, ref: ModelRef) -> Generator | E4E:
    """``open_file(ref)`` through the worker's model cache (opened on first use), its generator at the context's
    precision: one entry per file, so an e4e file's encoder and generator are cached together."""
    precision = getattr(ctx, "precision", "auto")  # a context that names none runs at 'auto'
    return ctx.models.get(("model", ref.path, ref.sha256, precision),
                          lambda: at_precision(open_file(ref, device=ctx.device), precision, ctx.device))


def cached_model(ctx: JobContext, ref: ModelRef) -> Generator:
    """The generator for ``ref`` from the worker's model cache (loaded on first use)."""
    return generator_of(cached_file(ctx, ref), ref)


def load_tuning(ref: ModelRef) -> dict[str, torch.Tensor]:
    """The "keep the person" weight differences ``ref`` names; a missing file, or one whose sha256 is not the
    pinned one, is refused (the face would not be reproduced)."""
    path = Path(ref.path)
    if not path.is_file():
        raise ProjectError(f"the 'keep the person' tuning {path} does not exist (moved or deleted?): invert the photo "
                           "again, or turn the mode off")
    if ref.sha256 is not None and file_sha256(path) != ref.sha256:
        raise ProjectError(f"{path.name} is not the 'keep the person' tuning this face was made with (sha256 differs)")
    try:
        return load_deltas(path)
    except ValueError as exc:
        raise ProjectError(str(exc)) from None


def state_model(ctx: JobContext, state: EditState) -> Generator:
    """The generator ``state`` renders with: ``state.model``, tuned by ``state.tuning`` when it has one (cached)."""
    G = cached_model(ctx, state.model)
    if state.tuning is None:
        return G
    key = ("tuned", state.model.path, state.model.sha256, state.tuning.path, state.tuning.sha256,
           getattr(ctx, "precision", "auto"))

    def tune() -> Generator:
        try:
            return apply_deltas(G, load_tuning(state.tuning))
        except ValueError as exc:
            raise ProjectError(str(exc)) from None

    return ctx.models.get(key, tune)


def summarize(G: Generator, ref: ModelRef, *, encoder: str | None = None) -> ModelSummary:
    info = G.model_info
    sha = info.sha256 or ref.sha256
    return ModelSummary(
        ref=ModelRef(path=ref.path, sha256=sha), format=info.format, description=info.description,
        notes=tuple(info.notes), resolution=G.img_resolution, num_ws=G.num_ws, w_dim=G.w_dim, z_dim=G.z_dim,
        row_resolutions=row_resolutions(G.cfg), parameters=sum(p.numel() for p in G.parameters()),
        path=str(info.path or resolve_model_path(ref)), encoder=encoder, precision=precision_name(G.precision),
    )


@torch.no_grad()
def source_ws(G: Generator, source: Source, *, psi: float, cutoff: int | None) -> torch.Tensor:
    """One source as W+ [1, num_ws, w_dim] on G's device: seeds are mapped and truncated, latents used as is."""
    device = G.w_avg.device
    if source.seed is not None:
        z = seed_to_z(source.seed, G.z_dim).to(device)  # [1, z_dim]
        return truncate(G.mapping(z), G.w_avg, psi, cutoff=cutoff)
    w = torch.from_numpy(source.array().copy()).to(device).unsqueeze(0)  # [1, w_dim] or [1, num_ws, w_dim]
    if w.shape[-1] != G.w_dim:
        raise ProjectError(f"latent {source.label()!r} has w_dim {w.shape[-1]}, this model needs {G.w_dim}")
    return broadcast_w(w, G.num_ws)


@torch.no_grad()
def mixed_ws(G: Generator, state: EditState) -> torch.Tensor:
    """The W+ latent [1, num_ws, w_dim] before attribute edits (base seed, truncation, style mixing)."""
    base = source_ws(G, state.base or Source(seed=state.seed), psi=state.psi, cutoff=state.cutoff)
    if not state.mixed():
        return base
    if len(state.rows) != G.num_ws:
        raise ProjectError(f"the mixing rows cover {len(state.rows)} W+ rows; this model has {G.num_ws}")
    used = sorted(set(state.rows))
    stack = [base if k == 0 else source_ws(G, state.sources[k - 1], psi=state.psi, cutoff=state.cutoff)
             for k in used]
    index = {k: i for i, k in enumerate(used)}
    return mix_styles(torch.stack(stack), [index[r] for r in state.rows])  # [1, num_ws, w_dim]


def measured(estimator, layout: ConditionLayout) -> tuple[bool, ...]:
    """Which condition entries of ``layout`` the attribute estimator reads (``ConditionLayout.match``)."""
    return tuple(c is not None for c in layout.match(estimator.cfg.output_names))


@torch.no_grad()
def read_condition(estimator, image: np.ndarray, *, layout: ConditionLayout = STYLEFLOW) -> torch.Tensor:
    """The estimator's reading of a uint8 image [H, W, 3] (or images [B, H, W, 3]) as a flow condition [1, C]
    ([B, C]) in ``layout``'s order (raw units). Entries the estimator does not read (``measured``) take
    ``layout.neutral()``: lighting 0, an attribute the middle of its range."""
    x = torch.from_numpy(np.ascontiguousarray(image))
    x = (x.permute(2, 0, 1)[None] if x.ndim == 3 else x.permute(0, 3, 1, 2)).float() / 127.5 - 1  # [B, 3, H, W]
    values = estimator.to_units(estimator(x.to(next(estimator.parameters()).device)))  # [1, K], estimator order
    columns = layout.match(estimator.cfg.output_names)
    if all(c is not None for c in columns):
        return values[:, list(columns)].float()
    out = torch.tensor(layout.neutral(), dtype=torch.float32, device=values.device).expand(len(values), -1).clone()
    read = [i for i, c in enumerate(columns) if c is not None]
    out[:, read] = values[:, [columns[i] for i in read]].float()
    return out  # [B, C]


@dataclass(frozen=True)
class FlowTools:
    """What attribute edits need besides the generator: the flow, the estimator, the lighting presets [J, L], the
    flow's condition layout, which of its entries the estimator reads, and a name per preset."""

    flow: torch.nn.Module
    estimator: torch.nn.Module
    presets: torch.Tensor | None
    layout: ConditionLayout
    measured: tuple[bool, ...]
    preset_names: tuple[str, ...] = ()

    def check_locks(self, locks) -> None:
        """ProjectError for a lock on an attribute the estimator cannot read: it could not be held."""
        blind = [a for a in locks if not self.measured[self.layout.index(a)]]
        if blind:
            raise ProjectError(f"cannot hold {', '.join(blind)}: the attribute estimator does not read "
                               f"{'it' if len(blind) == 1 else 'them'}, so a drift could not be measured")


def state_ws(G: Generator, state: EditState, *, tools: FlowTools | None = None,
             cond0: torch.Tensor | None = None, live: bool = False) -> torch.Tensor:
    """The W+ latent [1, num_ws, w_dim] the state describes: mixing, then the attribute edits (by the model's
    measured directions or the flow, ``edit_method``), starting from ``cond0`` [1, C] (the unedited face's starting
    condition; when None, the estimator's reading, or with ``attribute_source == 'flow'`` the flow's reading from it,
    as ``cached_condition``). ``live``: the cheaper solve shown while a slider is held."""
    ws = mixed_ws(G, state)
    if not state.edits:
        return ws
    if tools is None:
        raise ProjectError("this image has attribute edits: they need the attribute flow and estimator")
    tools.check_locks(state.locks)
    directions = load_model_directions(state.model, sha256=G.model_info.sha256 or state.model.sha256,
                                       device=ws.device)
    by_directions = resolve_method(state.edit_method, directions, tools.layout) == "directions"
    estimated = None  # the estimator's reading: the flow's start when none is given, the directions' always
    if cond0 is None or by_directions:
        estimated = read_condition(tools.estimator, render_ws(G, ws, state), layout=tools.layout)
    if cond0 is None:
        cond0 = estimated
        if state.attribute_source == "flow":
            cond0 = read_from_flow(tools, ws, cond0).condition
    return edit_ws(G, state, tools, ws, cond0, estimated, directions, live=live)[0]


def edit_ws(G: Generator, state: EditState, tools: FlowTools, ws: torch.Tensor, cond0: torch.Tensor,
            estimated: torch.Tensor | None, directions, *, live: bool, gains: DragGains | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The state's edits applied to ``ws`` [1, num_ws, w_dim]: by measured ``directions`` from the estimator's
    reading ``estimated`` [1, C] (the closed loop reads the estimator; a live solve carries its gain in ``gains``,
    as the frame ``state``), or by the flow from ``cond0`` [1, C]. -> (w, the condition aimed at [1, C])"""
    if resolve_method(state.edit_method, directions, tools.layout) == "directions":
        return solve_directions(directions, ws, estimated.to(ws.device), tools.layout, state.edits,
                                locks=state.locks, presets=tools.presets, measure=reader(G, state, tools), live=live,
                                gains=gains, key=state)
    return apply_edits(tools.flow, ws, cond0.to(ws.device), state.edits, fast=state.flow_fast,
                       presets=tools.presets, locks=state.locks, measure=reader(G, state, tools), layout=tools.layout)


def reader(G: Generator, state: EditState, tools: FlowTools):
    """``measure(w) -> [B, C]``: the estimator's reading of latents ``w`` [B, num_ws, w_dim] rendered like
    ``state`` (its noise), in 8-bit levels as the canvas shows them."""
    return lambda w: read_condition(tools.estimator, render_ws(G, w, state, batch=True), layout=tools.layout)


def state_noise(G: Generator, state: EditState) -> list[torch.Tensor] | None:
    """The state's stored noise maps (an inversion's), else seeded maps for ``noise_mode='random'`` (reproducible
    from ``noise_seed``); None otherwise."""
    if state.noise_maps is not None:
        maps = state.noise_maps.arrays()
        want = [(r, r) for r in G.cfg.noise_resolutions]
        if [m.shape[-2:] for m in maps] != want:
            raise ProjectError(f"the stored noise maps ({len(maps)}) do not fit this model's {len(want)} layers")
        return [torch.from_numpy(m.copy()).reshape(1, 1, *m.shape[-2:]).to(G.w_avg.device) for m in maps]
    if state.noise_mode != "random":
        return None
    return make_noise(G.cfg.noise_resolutions, seed=state.noise_seed, device=G.w_avg.device)


@torch.no_grad()
def render_ws(G: Generator, ws: torch.Tensor, state: EditState, *, max_resolution: int | None = None,
              batch: bool = False) -> np.ndarray:
    """Synthesize W+ [1, num_ws, w_dim] with the state's noise -> uint8 [H, W, 3] (``batch``: W+ [B, num_ws, w_dim]
    -> uint8 [B, H, W, 3], every face with the state's noise)."""
    noise = state_noise(G, state)
    mode = "const" if noise is not None else state.noise_mode
    img = G.synthesis(ws, noise_mode=mode, noise=noise, max_resolution=max_resolution)
    return np.ascontiguousarray(to_uint8(img) if batch else to_uint8(img)[0])  # owned: shareable with Qt


def render_state(G: Generator, state: EditState, *, max_resolution: int | None = None,
                 tools: FlowTools | None = None, cond0: torch.Tensor | None = None) -> np.ndarray:
    """The state's image as uint8 [H, W, 3]; ``max_resolution`` renders a cheaper preview at that size."""
    return render_ws(G, state_ws(G, state, tools=tools, cond0=cond0), state, max_resolution=max_resolution)


def preset_names(extras: dict, count: int) -> tuple[str, ...]:
    """A name per lighting preset: the file's (``lighting_preset_names``), StyleFlow's six, or 'preset k'."""
    names = extras.get("lighting_preset_names")
    if isinstance(names, (list, tuple)) and len(names) == count and all(isinstance(n, str) for n in names):
        return tuple(names)
    if count == len(LIGHTING_PRESETS):
        return tuple(LIGHTING_PRESETS)
    return tuple(f"preset {k + 1}" for k in range(count))


def load_flow_tools(ref: ModelRef, *, layout: ConditionLayout | None = None,
                    device: torch.device | str = "cpu") -> FlowTools:
    """The flow ``ref`` names (path None: the embedded default's) with its condition layout (``layout``: the user's,
    for a file that does not state one; ``load_flow``), the embedded estimator, and the flow file's lighting presets
    (``extras['lighting_presets']`` [J, L], if it has them). A flow whose layout is unknown is refused (LayoutError,
    saying what to pass)."""
    path = default_flow_path() if ref.is_default else Path(ref.path)
    if not path.is_file():
        raise ProjectError(f"the attribute flow file {path} does not exist (moved or deleted?)")
    if ref.sha256 is not None and file_sha256(path) != ref.sha256:
        raise ProjectError(f"{path.name} is not the flow file this project was made with (sha256 differs)")
    flow = load_flow(path, layout=layout).to(device)
    layout = flow_layout_of(flow)
    presets = flow.extras.get("lighting_presets")
    if presets is not None:
        presets = torch.as_tensor(presets, dtype=torch.float32)
        if presets.ndim != 2 or presets.shape[1] != layout.num_light:
            raise ProjectError(f"{path.name}: its lighting presets have shape {tuple(presets.shape)}, but its layout "
                               f"has {layout.num_light} lighting coefficients")
    names = () if presets is None else preset_names(flow.extras, len(presets))
    if "fast_steps" in flow.extras:  # chosen at release for this flow's dynamics
        flow = FastSteps(flow, flow.extras["fast_steps"])
    estimator = load_estimator(default_estimator_path()).to(device).eval()
    log.info("attribute edits with %s (%s; %d lighting presets) and the embedded estimator", path.name,
             layout.describe(), len(names))
    return FlowTools(flow, estimator, presets, layout, measured(estimator, layout), names)


@dataclass(frozen=True)
class FlowProbe:
    """What opening a flow file found: its pinned reference, condition size, the layout the file states or implies
    (None: the user must give one) and, in words, where that layout comes from."""

    ref: ModelRef
    cond_dim: int
    layout: ConditionLayout | None
    stated: bool  # the file itself states the layout (no need to ask)
    layout_source: str
    description: str


@dataclass(frozen=True)
class FlowProbeJob:
    """Load a flow file on the worker (hash, architecture, layout) before the editor switches to it."""

    ref: ModelRef

    def __call__(self, ctx: JobContext) -> FlowProbe:
        ref = pinned(self.ref)
        flow = load_flow(default_flow_path() if ref.is_default else Path(ref.path))
        return FlowProbe(ref, flow.cfg.cond_dim, flow.layout, flow.layout_source == STATED, flow.layout_source,
                         flow.info.description)


def cached_tools(ctx: JobContext, state: EditState) -> FlowTools:
    """The flow tools of ``state.flow`` with ``state.flow_layout``, from the worker's model cache."""
    ref, layout = state.flow, state.flow_layout
    return ctx.models.get(("flow", ref.path, ref.sha256, layout),
                          lambda: load_flow_tools(ref, layout=layout, device=ctx.device))


def estimator_condition(ctx: JobContext, G: Generator, state: EditState, tools: FlowTools) -> torch.Tensor:
    """The estimator's reading [1, C] of the state's face before attribute edits, memoised per face."""
    base = state.replace(edits=(), locks=(), attribute_source="estimator")
    return ctx.memo.get(("cond0", base),
                        lambda: read_condition(tools.estimator, render_state(G, base), layout=tools.layout))


def read_from_flow(tools: FlowTools, ws: torch.Tensor, start: torch.Tensor, **callbacks) -> ConditionFit:
    """``fit_condition`` of the face ``ws`` [1, num_ws, w_dim] from ``start`` [1, C] (the estimator's reading; the
    entries it does not read start at the flow's training mean) with the tools' flow and layout, the attributes the
    estimator reads as yes/no snapped to an end."""
    binary = tuple(getattr(tools.estimator.cfg, "binary", ()))
    read = torch.tensor(tools.measured, dtype=torch.bool, device=start.device)
    start = torch.where(read, start, condition_mean(tools.flow, tools.layout).to(start))
    return fit_condition(tools.flow, ws, start, layout=tools.layout, binary=binary, **callbacks)


def flow_condition(ctx: JobContext, G: Generator, state: EditState, tools: FlowTools, start: torch.Tensor, *,
                   progress=None) -> ConditionFit:
    """The flow's own reading of the state's face before attribute edits (``fit_condition`` on its mixed W+ from
    ``start`` [1, C], the estimator's binary attributes snapped), memoised per face. Cancelled with the job (raises
    ``Cancelled``; nothing is memoised then). ``progress(step, steps, log-likelihood)`` as the fit goes."""
    base = state.replace(edits=(), locks=(), attribute_source="flow")

    def fit() -> ConditionFit:
        result = read_from_flow(tools, mixed_ws(G, base), start, progress=progress, cancelled=ctx.cancelled)
        if result.stopped:
            raise Cancelled("the attribute reading was stopped")
        return result

    return ctx.memo.get(("cond0-flow", base), fit)


def cached_condition(ctx: JobContext, G: Generator, state: EditState, tools: FlowTools) -> torch.Tensor:
    """The starting condition [1, C] of the state's face before attribute edits, memoised per face: the estimator's
    reading, or with ``attribute_source == 'flow'`` the flow's own reading from it (``flow_condition``)."""
    start = estimator_condition(ctx, G, state, tools)
    if state.attribute_source != "flow":
        return start
    return flow_condition(ctx, G, state, tools, start).condition


def cached_directions(ctx: JobContext, G: Generator, state: EditState):
    """The model's measured edit directions (``load_model_directions``) from the worker's cache, or None."""
    ref = state.model
    return ctx.models.get(("directions", ref.path, ref.sha256),
                          lambda: load_model_directions(ref, sha256=G.model_info.sha256 or ref.sha256,
                                                        device=ctx.device))


def drag_gains(ctx: JobContext, G: Generator, state: EditState) -> DragGains:
    """The live solves' carried gains of the state's face (``DragGains``), from the worker's memo."""
    face = state.replace(edits=(), locks=())
    return ctx.memo.get(("drag-gains", face), lambda: DragGains(cached_directions(ctx, G, state)))


def quick_differs(ctx: JobContext, G: Generator, state: EditState) -> bool:
    """Whether the state's live (quick) solve differs from its settled one: it has attribute edits, made by measured
    directions (the flow has one solve)."""
    if not state.edits:
        return False
    tools = cached_tools(ctx, state)
    return resolve_method(state.edit_method, cached_directions(ctx, G, state), tools.layout) == "directions"


def worker_ws(ctx: JobContext, G: Generator, state: EditState, *, live: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The state's W+ latent [1, num_ws, w_dim] and, with attribute edits, the condition they aim at [1, C], using
    the worker's caches. Edited latents are memoised per state: the frame, its attribute reading and a latent
    export of the same state share one solve. ``live``: the cheaper solve shown while a slider is held."""
    if not state.edits:
        return mixed_ws(G, state), None
    tools = cached_tools(ctx, state)
    tools.check_locks(state.locks)
    live = live and quick_differs(ctx, G, state)

    def solve():
        return edit_ws(G, state, tools, mixed_ws(G, state), cached_condition(ctx, G, state, tools),
                       estimator_condition(ctx, G, state, tools), cached_directions(ctx, G, state), live=live,
                       gains=drag_gains(ctx, G, state) if live else None)

    return ctx.memo.get(("edited", state, live), solve)


def render_in_worker(ctx: JobContext, state: EditState, *, max_resolution: int | None = None,
                     translate: bool = True, live: bool = False) -> np.ndarray:
    """``render_state`` with the worker's cached models (and flow tools when the state has attribute edits);
    with a translation (and ``translate``), the image of the target model instead (``render_translation``); with a
    "keep the person" tuning, through the tuned model (``state_model``)."""
    G = state_model(ctx, state)
    ws = worker_ws(ctx, G, state, live=live)[0]
    if translate and state.translation is not None:
        target = cached_model(ctx, state.translation.target)
        return render_translation(G, target, ws, state)
    return render_ws(G, ws, state, max_resolution=max_resolution)


@torch.no_grad()
def translation_styles(target: Generator, tr: Translation) -> torch.Tensor | None:
    """The latent [1, w_dim] or [1, num_ws, w_dim] driving the target's layers; None: the face's own."""
    if tr.style is None:
        return None
    if tr.style.seed is not None:
        return multimodal_styles(target, n=1, seed=tr.style.seed, psi=tr.style_psi)  # [1, w_dim]
    return source_ws(target, tr.style, psi=1.0, cutoff=None)  # a reference's latent, used as is


@torch.no_grad()
def render_translation(G: Generator, target: Generator, ws: torch.Tensor, state: EditState) -> np.ndarray:
    """The face ``ws`` [1, num_ws, w_dim] translated by ``state.translation`` (always at full resolution), with the
    state's noise in both models: uint8 [H, W, 3]."""
    tr = state.translation
    if target.cfg != G.cfg:
        raise ProjectError(f"{tr.target.label()} has another architecture than the face's model: a translation "
                           "needs a model fine-tuned from it")
    noise = state_noise(G, state)
    mode = "const" if noise is not None else state.noise_mode
    img = layer_swap(G, target, ws, depth=tr.depth, ws_target=translation_styles(target, tr), mode=tr.mode,
                     blend=tr.blend, noise_base=noise, noise_target=noise, noise_mode=mode)
    return np.ascontiguousarray(to_uint8(img)[0])


def preview_resolution(G: Generator, limit: int | None) -> int | None:
    """The block to stop at for a preview no larger than ``limit`` px (None: full resolution)."""
    if limit is None or limit >= G.img_resolution:
        return None
    fitting = [r for r in G.cfg.resolutions if r <= limit]
    return fitting[-1] if fitting else G.cfg.resolutions[0]


@dataclass(frozen=True)
class RenderResult:
    state: EditState
    image: np.ndarray  # uint8 [H, W, 3]
    full: bool  # False for a reduced-resolution preview
    ms: float  # engine time for this frame
    device: str
    precision: str = "float32"  # the generator's, e.g. 'float16'
    live: bool = False  # the quick solve of attribute edits; the settled frame of the same state follows on request


@dataclass(frozen=True)
class RenderJob:
    """Render one state; ``preview_limit`` (px) asks for a reduced-resolution frame while a slider moves; ``live``
    asks for the quick solve of measured-direction edits (the result says whether it was one: a settled frame
    differs)."""

    state: EditState
    preview_limit: int | None = None
    live: bool = False

    def __call__(self, ctx: JobContext) -> RenderResult:
        t0 = time.perf_counter()
        G = cached_model(ctx, self.state.model)
        res = preview_resolution(G, self.preview_limit)
        live = self.live and quick_differs(ctx, G, self.state)
        image = render_in_worker(ctx, self.state, max_resolution=res, live=live)
        gains = drag_gains(ctx, G, self.state) if live else None
        if gains is not None and gains.waits_for(self.state) and self.state.translation is None \
                and image.shape[0] == G.img_resolution:  # the frame shown measures the next live frame's gain
            tools = cached_tools(ctx, self.state)
            gains.shown(self.state, read_condition(tools.estimator, image, layout=tools.layout))
        ms = (time.perf_counter() - t0) * 1e3
        log.debug("rendered %s in %.1f ms", "a frame" if res is None else f"a {res} px preview", ms)
        return RenderResult(self.state, image, res is None, ms, str(ctx.device), precision_name(G.precision), live)


@dataclass(frozen=True)
class ModelJob:
    """Load (and cache) a generator, or an e4e file's generator and encoder together; returns its
    ``ModelSummary``."""

    ref: ModelRef

    def __call__(self, ctx: JobContext) -> ModelSummary:
        ctx.progress(0.0, f"loading {self.ref.label()}")
        ref = pinned(self.ref)
        opened = cached_file(ctx, ref)
        encoder = opened.info.description if isinstance(opened, E4E) else None
        return summarize(generator_of(opened, ref), ref, encoder=encoder)


def pinned(ref: ModelRef) -> ModelRef:
    """``ref`` with an absolute path and the file's sha256 (the embedded default and pinned refs as they are)."""
    if ref.is_default or ref.sha256 is not None:
        return ref
    return ModelRef(path=str(Path(ref.path).resolve()), sha256=file_sha256(ref.path))


@dataclass(frozen=True)
class ThumbnailResult:
    sources: tuple[Source, ...]
    images: tuple[np.ndarray, ...]  # uint8 [h, w, 3] each


@dataclass(frozen=True)
class ThumbnailJob:
    """Small previews of mixing sources, rendered with the state's truncation and noise."""

    state: EditState
    sources: tuple[Source, ...]
    limit: int = 64

    def __call__(self, ctx: JobContext) -> ThumbnailResult:
        G = cached_model(ctx, self.state.model)
        res = preview_resolution(G, self.limit)
        images = []
        for src in self.sources:
            ctx.check()
            ws = source_ws(G, src, psi=self.state.psi, cutoff=self.state.cutoff)
            images.append(render_ws(G, ws, self.state, max_resolution=res))
        return ThumbnailResult(self.sources, tuple(images))


@dataclass(frozen=True)
class LatentJob:
    """The current W+ latent as float32 [num_ws, w_dim] (for export)."""

    state: EditState

    def __call__(self, ctx: JobContext) -> np.ndarray:
        G = state_model(ctx, self.state)
        return worker_ws(ctx, G, self.state)[0][0].cpu().numpy().astype(np.float32)


@dataclass(frozen=True)
class AttributeReading:
    """What the attributes panel shows, each a condition [C] in the flow's ``layout`` order (lighting, then the
    attributes); ``measured`` says which entries the estimator reads (the others hold the layout's neutral value);
    ``preset_names`` names the flow's lighting presets (none: the flow has no presets)."""

    state: EditState
    base: np.ndarray  # the face's starting condition before attribute edits (``cached_condition``)
    target: np.ndarray  # the condition the edits asked for
    current: np.ndarray  # the estimator's reading of the edited face
    layout: ConditionLayout = STYLEFLOW
    measured: tuple[bool, ...] = ()
    preset_names: tuple[str, ...] = ()
    method: str = "flow"  # the method that edits this state: "directions" or "flow"
    methods: tuple[str, ...] = ("flow",)  # the methods this model and flow offer
    spread: tuple[float, ...] = ()  # each entry's standard deviation over the model's faces (directions' scale)


@dataclass(frozen=True)
class AttributeReadJob:
    """Read the face's attributes before and after the state's edits (for the sliders' current values)."""

    state: EditState

    def __call__(self, ctx: JobContext) -> AttributeReading:
        G = state_model(ctx, self.state)  # the face as shown: tuned when the state has a tuning
        tools = cached_tools(ctx, self.state)
        cond0 = cached_condition(ctx, G, self.state, tools)
        target, current = cond0, estimator_condition(ctx, G, self.state, tools)  # the flow's reading may start it
        if self.state.edits:
            w, target = worker_ws(ctx, G, self.state)
            current = read_condition(tools.estimator, render_ws(G, w, self.state), layout=tools.layout)
        directions = cached_directions(ctx, G, self.state)
        method = resolve_method(self.state.edit_method, directions, tools.layout)
        usable = resolve_method("auto", directions, tools.layout) == "directions"
        return AttributeReading(self.state, *(c[0].cpu().numpy() for c in (cond0, target, current)),
                                layout=tools.layout, measured=tools.measured, preset_names=tools.preset_names,
                                method=method, methods=("directions", "flow") if usable else ("flow",),
                                spread=tuple(directions.scale.tolist()) if usable else ())
