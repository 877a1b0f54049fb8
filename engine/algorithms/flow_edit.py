"""StyleFlow's attribute and lighting edits over a conditional flow between W+ and its Gaussian base Z.

An edit (StyleFlow's UI, FACTS §9): encode the current W+ latent to z under the current condition, change the
condition (one attribute, or the lighting), decode z under the new condition, copy the W+ rows the edited quantity
does not own back from the current latent **bit-identically**, and take the result as the new current latent
(re-encoded under the new condition for the next edit). Edits therefore compound in latent space while each
condition value is overwritten, never accumulated.

Condition layout (``flow_layout.ConditionLayout``): which value of the condition is which, and the W+ rows each
edit may change. Every function takes ``layout=``; the pure ones default to ``STYLEFLOW`` (17 values per face, raw
units, FACTS §8: 9 SH lighting coefficients, then the 8 ``ATTRIBUTES`` ``gender, glasses`` (0..1), ``yaw, pitch``
(degrees), ``baldness, beard`` (0..1), ``age`` (years), ``expression`` (smile, 0..1)); those that run a flow default
to the flow's own layout (``flow_layout_of``). The module constants below are StyleFlow's layout.

The flow is anything with ``w_to_z(w, cond, *, fast)`` and ``z_to_w(z, cond, *, fast)`` (``engine.models.flow``'s
``ConditionalCNF``). Every flow call runs under ``torch.no_grad()`` with the global RNG forked and seeded with
``NOISE_SEED``: the faithful solver draws its divergence noise from it and that noise nudges w slightly (FACTS §5),
so seeding makes an edit, and a replay of an edit list, reproduce bit for bit while leaving the caller's RNG alone.

Everything here is a pure function or a frozen dataclass over tensors; nothing mutates a module or its inputs.
Works on any W+ latent (a seed, a style-mix, an inverted photo): only ``w`` and its condition are needed.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from engine.algorithms.flow_layout import ALIASES, STYLEFLOW, ConditionLayout, LayoutError, missing_layout_message
from engine.files.configs import DictForm

# StyleFlow's layout (``STYLEFLOW``) as plain constants
ATTRIBUTES: tuple[str, ...] = STYLEFLOW.names
NUM_LIGHT = STYLEFLOW.num_light  # 2nd-order spherical-harmonics lighting coefficients
COND_DIM = STYLEFLOW.cond_dim  # 17
CONDITION_NAMES: tuple[str, ...] = STYLEFLOW.condition_names

# StyleFlow's sliders (FACTS §9): integer positions 0..SLIDER_STEPS map linearly onto an attribute's range; the
# target condition is ``original + degree * (slider value - original)``, unclamped.
SLIDER_STEPS = 80
SLIDER_RANGES: dict[str, tuple[float, float]] = {a.name: a.range for a in STYLEFLOW.attributes}
DEGREES: dict[str, float] = {a.name: a.degree for a in STYLEFLOW.attributes}

# W+ rows each edit may change, for StyleGAN2's 18-row (1024 px) layout; all other rows are restored.
STYLEFLOW_NUM_WS = STYLEFLOW.num_ws
CHANGED_ROWS: dict[str, tuple[int, ...]] = {a.name: a.rows for a in STYLEFLOW.attributes}
LIGHTING_ROWS: tuple[int, ...] = STYLEFLOW.lighting_rows

# StyleFlow's six lighting presets: rows of its released ``light.npy`` (FACTS §9).
LIGHTING_PRESETS: dict[str, int] = {"left_to_right": 8, "right_to_left": 33, "down_to_up": 641, "up_to_down": 547,
                                    "no_light": 28, "front_light": 34}

NOISE_SEED = 0


def flow_layout_of(flow, layout: ConditionLayout | None = None) -> ConditionLayout:
    """The layout edits with ``flow`` use: ``layout`` when given (it must fit the flow's condition size), else the
    flow's own (``flow.layout``, which ``load_flow`` sets from the file or the user). A flow object without that
    attribute is taken as StyleFlow's layout when its condition size (``flow.cfg.cond_dim``) is StyleFlow's 17 or
    unknown; otherwise, and for a flow whose layout is unknown (``flow.layout`` None), LayoutError says what to
    pass."""
    cfg = getattr(flow, "cfg", None)
    cond_dim = getattr(cfg, "cond_dim", None)
    if layout is not None:
        if cond_dim is not None:
            layout.check_size(cond_dim)
        return layout
    if hasattr(flow, "layout"):
        if flow.layout is None:
            raise LayoutError(getattr(flow, "layout_source", None) or missing_layout_message(_label(flow), cond_dim))
        return flow.layout
    if cond_dim in (None, STYLEFLOW.cond_dim):
        return STYLEFLOW
    raise LayoutError(missing_layout_message(_label(flow), cond_dim))


def _label(flow) -> str:
    info = getattr(flow, "info", None)
    path = getattr(info, "path", None)
    return os.path.basename(path) if isinstance(path, str) else "this flow"


def attribute_name(name: str, *, layout: ConditionLayout = STYLEFLOW) -> str:
    """The layout's name for an attribute (``'smile'`` -> ``'expression'`` in StyleFlow's); ValueError for an
    unknown one."""
    return layout.canonical(name)


def attribute_index(name: str, *, layout: ConditionLayout = STYLEFLOW) -> int:
    """Column of attribute ``name`` in the condition vector (9 .. 16 in StyleFlow's layout)."""
    return layout.index(name)


def slider_value(name: str, position: int, *, layout: ConditionLayout = STYLEFLOW) -> float:
    """StyleFlow's slider position 0..SLIDER_STEPS -> the slider's value in the attribute's range."""
    lo, hi = layout.spec(name).range
    return position / SLIDER_STEPS * (hi - lo) + lo


def slider_target(name: str, value: float, original: float, *, layout: ConditionLayout = STYLEFLOW) -> float:
    """Condition value for slider value ``value`` of a face whose measured value is ``original`` (``degree`` rule)."""
    return original + layout.spec(name).degree * (value - original)


def slider_from_target(name: str, target: float, original: float, *, layout: ConditionLayout = STYLEFLOW) -> float:
    """Inverse of ``slider_target``: the slider value that yields condition value ``target``."""
    return original + (target - original) / layout.spec(name).degree


def rows_mask(rows: Sequence[int], num_ws: int, *, what: str = "the edit", layout_num_ws: int | None = 18
              ) -> torch.Tensor:
    """Boolean W+ row mask [num_ws] from row indices written for a ``layout_num_ws``-row layout.

    Row i of every StyleGAN2 controls resolution ``4 * 2**(i // 2)`` whatever the output size, so the row index is
    the resolution band: a generator with fewer rows (lower resolution) keeps the indices below its ``num_ws`` and a
    generator with more rows never changes the extra ones. ValueError when no row is left (the generator has no
    layer at the resolutions the edit works on). ``layout_num_ws`` None: the rows are the generator's own, and a row
    it does not have is a ValueError.
    """
    if num_ws <= 0:
        raise ValueError(f"num_ws must be positive, got {num_ws}")
    if layout_num_ws is None and any(not 0 <= r < num_ws for r in rows):
        raise ValueError(f"{what} changes W+ rows {list(rows)}, but this generator has only {num_ws} rows "
                         f"(0..{num_ws - 1}): give the layout rows of this generator")
    mask = torch.zeros(num_ws, dtype=torch.bool)
    kept = [r for r in rows if 0 <= r < num_ws]
    if not kept:
        res = sorted({4 * 2 ** (r // 2) for r in rows})
        raise ValueError(f"{what} changes W+ rows {list(rows)} (resolutions {res} px), but this generator has only "
                         f"{num_ws} rows")
    mask[kept] = True
    return mask


def attribute_mask(name: str, num_ws: int, *, layout: ConditionLayout = STYLEFLOW) -> torch.Tensor:
    """Rows an edit of attribute ``name`` changes. -> bool [num_ws]"""
    spec = layout.spec(name)
    return rows_mask(spec.rows, num_ws, what=f"a {spec.name} edit", layout_num_ws=layout.num_ws)


def lighting_mask(num_ws: int, *, layout: ConditionLayout = STYLEFLOW) -> torch.Tensor:
    """Rows a lighting edit changes. -> bool [num_ws]"""
    if not layout.num_light:
        raise LayoutError("this flow's condition has no lighting coefficients: there is no lighting to edit")
    return rows_mask(layout.lighting_rows, num_ws, what="a lighting edit", layout_num_ws=layout.num_ws)


def _check_cond(cond: torch.Tensor, layout: ConditionLayout) -> None:
    if cond.ndim != 2 or cond.shape[1] != layout.cond_dim:
        raise ValueError(f"a condition must be [B, {layout.cond_dim}] ({layout.num_light} lighting values then "
                         f"{len(layout.attributes)} attributes), got shape {tuple(cond.shape)}")


def _check_pair(w: torch.Tensor, cond: torch.Tensor, layout: ConditionLayout) -> None:
    if w.ndim != 3:
        raise ValueError(f"w must be a W+ latent [B, num_ws, w_dim], got shape {tuple(w.shape)}")
    _check_cond(cond, layout)
    if cond.shape[0] != w.shape[0]:
        raise ValueError(f"w has batch {w.shape[0]} but the condition has batch {cond.shape[0]}")


def set_attribute(cond: torch.Tensor, name: str, value: float | torch.Tensor, *,
                  layout: ConditionLayout = STYLEFLOW) -> torch.Tensor:
    """A copy of ``cond`` [B, C] with attribute ``name`` set to ``value`` (a number or [B]); overwrites."""
    _check_cond(cond, layout)
    out = cond.clone()
    out[:, layout.index(name)] = torch.as_tensor(value, dtype=cond.dtype, device=cond.device)
    return out


def set_lighting(cond: torch.Tensor, light: torch.Tensor, *, layout: ConditionLayout = STYLEFLOW) -> torch.Tensor:
    """A copy of ``cond`` [B, C] with the lighting set to ``light`` ([L] or [B, L], L = ``layout.num_light``)."""
    _check_cond(cond, layout)
    n = layout.num_light
    light = torch.as_tensor(light, dtype=cond.dtype, device=cond.device)
    if not n or light.shape[-1:] != (n,) or light.ndim > 2:
        raise ValueError(f"lighting must be [{n}] or [B, {n}], got shape {tuple(light.shape)}")
    out = cond.clone()
    out[:, :n] = light
    return out


def blend_lighting(light_orig: torch.Tensor, presets: torch.Tensor, weights: Sequence[float] | torch.Tensor
                   ) -> torch.Tensor:
    """StyleFlow's preset blend ``light_orig + sum_j weights[j] * (presets[j] - light_orig)``.

    light_orig: [B, L] (the face's measured lighting); presets: [J, L]; weights: J preset slider values (0..1 in
    StyleFlow's UI, not clamped here). -> [B, L]
    """
    weights = torch.as_tensor(weights, dtype=light_orig.dtype, device=light_orig.device)
    if light_orig.ndim != 2:
        raise ValueError(f"light_orig must be [B, L], got shape {tuple(light_orig.shape)}")
    n = light_orig.shape[1]
    if presets.ndim != 2 or presets.shape[1] != n or weights.shape != presets.shape[:1]:
        raise ValueError(f"need presets [J, {n}] and J weights, got shapes {tuple(presets.shape)} and "
                         f"{tuple(weights.shape)}")
    delta = presets.to(light_orig).unsqueeze(0) - light_orig.unsqueeze(1)  # [B, J, L]
    return light_orig + (weights[None, :, None] * delta).sum(dim=1)


@contextlib.contextmanager
def _seeded_noise(device: torch.device) -> Iterator[None]:
    """Fork the global RNG (CPU and ``device``), seed it with NOISE_SEED, no autograd."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(NOISE_SEED)
        yield


def encode(flow, w: torch.Tensor, cond: torch.Tensor, *, fast: bool = False,
           layout: ConditionLayout | None = None) -> torch.Tensor:
    """W+ latent [B, num_ws, w_dim] under condition [B, C] -> its base point z [B, num_ws, w_dim]."""
    _check_pair(w, cond, flow_layout_of(flow, layout))
    with _seeded_noise(w.device):
        return flow.w_to_z(w, cond, fast=fast)


def decode(flow, z: torch.Tensor, cond: torch.Tensor, *, fast: bool = False,
           layout: ConditionLayout | None = None) -> torch.Tensor:
    """Base point z [B, num_ws, w_dim] under condition [B, C] -> W+ latent [B, num_ws, w_dim]."""
    _check_pair(z, cond, flow_layout_of(flow, layout))
    with _seeded_noise(z.device):
        return flow.z_to_w(z, cond, fast=fast)


def edit_attribute(flow, w: torch.Tensor, z: torch.Tensor | None, cond_now: torch.Tensor, cond_target: torch.Tensor,
                   *, rows_mask: torch.Tensor, fast: bool = False, layout: ConditionLayout | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One StyleFlow edit (FACTS §9 steps 4-7). -> (w_new, z_new), both [B, num_ws, w_dim].

    w: the current latent; z: ``encode(flow, w, cond_now)`` (None: computed here; pass the ``z_new`` of the previous
    edit to skip that solve); cond_now/cond_target: [B, C]; rows_mask: bool [num_ws], the rows that may change
    (``attribute_mask`` / ``lighting_mask``). Rows outside the mask are copied from ``w`` bit-identically; ``z_new``
    is ``w_new`` re-encoded under ``cond_target``, the ``z`` for the next edit.
    """
    layout = flow_layout_of(flow, layout)
    _check_pair(w, cond_now, layout)
    _check_pair(w, cond_target, layout)
    if rows_mask.dtype != torch.bool or rows_mask.shape != (w.shape[1],):
        raise ValueError(f"rows_mask must be a bool tensor [{w.shape[1]}], got {rows_mask.dtype} "
                         f"{tuple(rows_mask.shape)}")
    if z is None:
        z = encode(flow, w, cond_now, fast=fast, layout=layout)
    elif z.shape != w.shape:
        raise ValueError(f"z has shape {tuple(z.shape)}, expected the latent's {tuple(w.shape)}")
    w_raw = decode(flow, z, cond_target, fast=fast, layout=layout)  # [B, num_ws, w_dim]
    w_new = torch.where(rows_mask.to(w.device)[None, :, None], w_raw.to(w.dtype), w)
    return w_new, encode(flow, w_new, cond_target, fast=fast, layout=layout)


class FastSteps:
    """A flow whose fast mode takes ``steps`` solver steps: trained flows need more than random ones, so the
    release measures the count per flow (``engine.train.release.flow``) and stores it with the weights. Its
    ``cfg`` and ``layout`` are the wrapped flow's."""

    def __init__(self, flow, steps: int):
        self.flow, self.steps = flow, int(steps)
        self.cfg = getattr(flow, "cfg", None)

    @property
    def layout(self) -> ConditionLayout:
        return flow_layout_of(self.flow)

    def w_to_z(self, w: torch.Tensor, cond: torch.Tensor, *, fast: bool = False) -> torch.Tensor:
        return self.flow.w_to_z(w, cond, fast=fast, fast_steps=self.steps)

    def z_to_w(self, z: torch.Tensor, cond: torch.Tensor, *, fast: bool = False) -> torch.Tensor:
        return self.flow.z_to_w(z, cond, fast=fast, fast_steps=self.steps)


@dataclass(frozen=True)
class AttributeEdit(DictForm, what="the attribute edit"):
    """One step of an edit list.

    ``kind='attribute'``: ``key`` an attribute name of the flow's layout (``'smile'`` is stored as ``'expression'``;
    the layout resolves either), ``value`` its new condition value in raw units (already through ``slider_target``).
    ``kind='lighting'``: ``key`` a preset index j, ``value`` that preset's blend weight v_j (``blend_lighting``).
    Whether the attribute exists is the layout's question, answered when the edit is applied.
    """

    kind: str
    key: str | int
    value: float

    def __post_init__(self):
        if self.kind == "attribute":
            if not isinstance(self.key, str) or not self.key:
                raise ValueError(f"an attribute edit needs an attribute name, got {self.key!r}")
            object.__setattr__(self, "key", ALIASES.get(self.key, self.key))
        elif self.kind == "lighting":
            if isinstance(self.key, bool) or not isinstance(self.key, int) or self.key < 0:
                raise ValueError(f"a lighting edit needs a preset index >= 0, got {self.key!r}")
        else:
            raise ValueError(f"edit kind must be 'attribute' or 'lighting', got {self.kind!r}")
        value = float(self.value)
        if not math.isfinite(value):
            raise ValueError(f"edit value must be finite, got {self.value!r}")
        object.__setattr__(self, "value", value)


def merge_edit(edits: Sequence[AttributeEdit], new_edit: AttributeEdit) -> tuple[AttributeEdit, ...]:
    """``edits`` with ``new_edit`` appended, or replacing the last edit when that one edits the same quantity
    (a slider drag is one edit). A reset is the empty list."""
    edits = tuple(edits)
    if edits and (edits[-1].kind, edits[-1].key) == (new_edit.kind, new_edit.key):
        return edits[:-1] + (new_edit,)
    return edits + (new_edit,)


def apply_edits(flow, w: torch.Tensor, cond0: torch.Tensor, edits: Sequence[AttributeEdit], *, fast: bool = False,
                presets: torch.Tensor | None = None, locks: Sequence[str] = (),
                measure: Callable[[torch.Tensor], torch.Tensor] | None = None,
                layout: ConditionLayout | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Replay ``edits`` in order from base latent ``w`` [B, num_ws, w_dim] and its measured condition ``cond0``
    [B, C]. -> (w_final, cond_final).

    ``layout``: what the condition holds (default: the flow's own, ``flow_layout_of``). Each edit encodes the current
    latent under the current condition, decodes under the edited condition, restores the rows outside the edit's
    mask and becomes the current latent; the result equals calling ``edit_attribute`` edit by edit bit for bit.
    Lighting edits blend ``presets`` [J, L] around ``cond0``'s lighting with every preset's latest weight, as
    StyleFlow's lighting sliders do.

    ``locks``: attributes to hold at their current condition value. The flow keeps the condition of the others
    fixed, but the face it decodes can still drift (entanglement); after every edit ``measure(w) -> [B, C]`` (the
    estimator's reading of the rendered latent) finds the locked attributes' drift and one more solve, restricted
    to their rows, moves them back: encode under the measured values, decode under the held ones. An edit of a
    locked attribute itself still applies (its new value is then the one held).
    """
    layout = flow_layout_of(flow, layout)
    _check_pair(w, cond0, layout)
    locks = tuple(dict.fromkeys(layout.canonical(a) for a in locks))
    if locks and measure is None:
        raise ValueError(f"locked attributes need measure(w) -> [B, {layout.cond_dim}] to read the edited face")
    num_ws, n = w.shape[1], layout.num_light
    if presets is not None and (presets.ndim != 2 or presets.shape[1] != n):
        raise ValueError(f"the lighting presets must be [J, {n}] for this flow's {n} lighting coefficients, got "
                         f"shape {tuple(presets.shape)}")
    weights: dict[int, float] = {}
    cond = cond0
    z = None
    for edit in edits:
        if edit.kind == "attribute":
            key = layout.canonical(edit.key)
            target = set_attribute(cond, key, edit.value, layout=layout)
            mask = attribute_mask(key, num_ws, layout=layout)
        else:
            if not n:
                raise LayoutError("this flow's condition has no lighting coefficients: there is no lighting to edit")
            if presets is None:
                raise ValueError(f"a lighting edit needs the lighting presets (presets=[J, {n}])")
            if edit.key >= presets.shape[0]:
                raise ValueError(f"lighting preset {edit.key} does not exist ({presets.shape[0]} presets)")
            weights[edit.key] = edit.value
            v = [weights.get(j, 0.0) for j in range(presets.shape[0])]
            target = set_lighting(cond, blend_lighting(cond0[:, :n], presets, v), layout=layout)
            mask = lighting_mask(num_ws, layout=layout)
        w, z = edit_attribute(flow, w, z, cond, target, rows_mask=mask, fast=fast, layout=layout)
        cond = target
        held = [a for a in locks if not (edit.kind == "attribute" and layout.canonical(edit.key) == a)]
        if held:
            w, z = _hold(flow, w, cond, held, measure(w), fast=fast, layout=layout)
    return w, cond


def _hold(flow, w: torch.Tensor, cond: torch.Tensor, held: Sequence[str], reading: torch.Tensor, *,
          fast: bool, layout: ConditionLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the ``held`` attributes of latent ``w`` from their ``reading`` [B, C] back to ``cond`` [B, C]."""
    _check_cond(reading, layout)
    now = cond.clone()
    mask = torch.zeros(w.shape[1], dtype=torch.bool)
    for name in held:
        i = layout.index(name)
        now[:, i] = reading[:, i].to(cond)
        mask |= attribute_mask(name, w.shape[1], layout=layout)
    return edit_attribute(flow, w, None, now, cond, rows_mask=mask, fast=fast, layout=layout)


__all__ = ["ATTRIBUTES", "ALIASES", "NUM_LIGHT", "COND_DIM", "CONDITION_NAMES", "SLIDER_STEPS", "SLIDER_RANGES",
           "DEGREES", "STYLEFLOW_NUM_WS", "CHANGED_ROWS", "LIGHTING_ROWS", "LIGHTING_PRESETS", "NOISE_SEED",
           "STYLEFLOW", "ConditionLayout", "LayoutError", "flow_layout_of", "attribute_name", "attribute_index",
           "slider_value", "slider_target", "slider_from_target", "rows_mask", "attribute_mask", "lighting_mask",
           "set_attribute", "set_lighting", "blend_lighting", "encode", "decode", "edit_attribute", "FastSteps",
           "AttributeEdit", "merge_edit", "apply_edits"]
