"""StyleFlow's attribute and lighting edits over a conditional flow between W+ and its Gaussian base Z.

An edit (StyleFlow's UI, FACTS §9): encode the current W+ latent to z under the current condition, change the
condition (one attribute, or the lighting), decode z under the new condition, copy the W+ rows the edited quantity
does not own back from the current latent **bit-identically**, and take the result as the new current latent
(re-encoded under the new condition for the next edit). Edits therefore compound in latent space while each
condition value is overwritten, never accumulated.

Condition layout (17 values per face, raw units, FACTS §8): 9 SH lighting coefficients, then the 8 ``ATTRIBUTES``
``gender, glasses`` (0..1), ``yaw, pitch`` (degrees), ``baldness, beard`` (0..1), ``age`` (years),
``expression`` (smile, 0..1).

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

ATTRIBUTES: tuple[str, ...] = ("gender", "glasses", "yaw", "pitch", "baldness", "beard", "age", "expression")
ALIASES: dict[str, str] = {"smile": "expression"}  # the attribute estimator calls expression 'smile'
NUM_LIGHT = 9  # 2nd-order spherical-harmonics lighting coefficients
COND_DIM = NUM_LIGHT + len(ATTRIBUTES)  # 17
CONDITION_NAMES: tuple[str, ...] = tuple(f"sh{i}" for i in range(NUM_LIGHT)) + ATTRIBUTES

# StyleFlow's sliders (FACTS §9): integer positions 0..SLIDER_STEPS map linearly onto SLIDER_RANGES; the target
# condition is ``original + DEGREES[name] * (slider value - original)``, unclamped.
SLIDER_STEPS = 80
SLIDER_RANGES: dict[str, tuple[float, float]] = {
    "gender": (0.0, 1.0), "glasses": (0.0, 1.0), "yaw": (-20.0, 20.0), "pitch": (-20.0, 20.0),
    "baldness": (0.0, 1.0), "beard": (0.0, 1.0), "age": (0.0, 65.0), "expression": (0.0, 1.0)}
DEGREES: dict[str, float] = {"gender": 1.5, "glasses": 2.5, "yaw": 1.0, "pitch": 1.0, "baldness": 2.0,
                             "beard": 1.7, "age": 0.93, "expression": 1.0}

# W+ rows each edit may change, for StyleGAN2's 18-row (1024 px) layout; all other rows are restored.
STYLEFLOW_NUM_WS = 18
CHANGED_ROWS: dict[str, tuple[int, ...]] = {
    "gender": tuple(range(0, 8)), "glasses": (2, 3), "yaw": tuple(range(0, 4)), "pitch": tuple(range(0, 4)),
    "baldness": tuple(range(0, 6)), "beard": tuple(range(5, 10)), "age": tuple(range(4, 8)),
    "expression": (4, 5)}
LIGHTING_ROWS: tuple[int, ...] = tuple(range(7, 12))

# StyleFlow's six lighting presets: rows of its released ``light.npy`` (FACTS §9).
LIGHTING_PRESETS: dict[str, int] = {"left_to_right": 8, "right_to_left": 33, "down_to_up": 641, "up_to_down": 547,
                                    "no_light": 28, "front_light": 34}

NOISE_SEED = 0


def attribute_name(name: str) -> str:
    """The canonical attribute name (``'smile'`` -> ``'expression'``); ValueError for an unknown one."""
    canonical = ALIASES.get(name, name)
    if canonical not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {name!r}; known: {', '.join(ATTRIBUTES)}")
    return canonical


def attribute_index(name: str) -> int:
    """Column of attribute ``name`` in the condition vector (9 .. 16)."""
    return NUM_LIGHT + ATTRIBUTES.index(attribute_name(name))


def slider_value(name: str, position: int) -> float:
    """StyleFlow's slider position 0..SLIDER_STEPS -> the slider's value in ``SLIDER_RANGES[name]``."""
    lo, hi = SLIDER_RANGES[attribute_name(name)]
    return position / SLIDER_STEPS * (hi - lo) + lo


def slider_target(name: str, value: float, original: float) -> float:
    """Condition value for slider value ``value`` of a face whose measured value is ``original`` (``degree`` rule)."""
    return original + DEGREES[attribute_name(name)] * (value - original)


def slider_from_target(name: str, target: float, original: float) -> float:
    """Inverse of ``slider_target``: the slider value that yields condition value ``target``."""
    return original + (target - original) / DEGREES[attribute_name(name)]


def rows_mask(rows: Sequence[int], num_ws: int, *, what: str = "the edit") -> torch.Tensor:
    """Boolean W+ row mask [num_ws] from row indices given for the 18-row layout.

    Row i of every StyleGAN2 controls resolution ``4 * 2**(i // 2)`` whatever the output size, so the row index is
    the resolution band: a generator with fewer rows (lower resolution) keeps the indices below its ``num_ws`` and a
    generator with more rows never changes the extra ones. ValueError when no row is left (the generator has no
    layer at the resolutions the edit works on).
    """
    if num_ws <= 0:
        raise ValueError(f"num_ws must be positive, got {num_ws}")
    mask = torch.zeros(num_ws, dtype=torch.bool)
    kept = [r for r in rows if 0 <= r < num_ws]
    if not kept:
        res = sorted({4 * 2 ** (r // 2) for r in rows})
        raise ValueError(f"{what} changes W+ rows {list(rows)} (resolutions {res} px), but this generator has only "
                         f"{num_ws} rows")
    mask[kept] = True
    return mask


def attribute_mask(name: str, num_ws: int) -> torch.Tensor:
    """Rows an edit of attribute ``name`` changes. -> bool [num_ws]"""
    name = attribute_name(name)
    return rows_mask(CHANGED_ROWS[name], num_ws, what=f"a {name} edit")


def lighting_mask(num_ws: int) -> torch.Tensor:
    """Rows a lighting edit changes. -> bool [num_ws]"""
    return rows_mask(LIGHTING_ROWS, num_ws, what="a lighting edit")


def _check_cond(cond: torch.Tensor) -> None:
    if cond.ndim != 2 or cond.shape[1] != COND_DIM:
        raise ValueError(f"a condition must be [B, {COND_DIM}] (9 SH lighting values then {len(ATTRIBUTES)} "
                         f"attributes), got shape {tuple(cond.shape)}")


def _check_pair(w: torch.Tensor, cond: torch.Tensor) -> None:
    if w.ndim != 3:
        raise ValueError(f"w must be a W+ latent [B, num_ws, w_dim], got shape {tuple(w.shape)}")
    _check_cond(cond)
    if cond.shape[0] != w.shape[0]:
        raise ValueError(f"w has batch {w.shape[0]} but the condition has batch {cond.shape[0]}")


def set_attribute(cond: torch.Tensor, name: str, value: float | torch.Tensor) -> torch.Tensor:
    """A copy of ``cond`` [B, 17] with attribute ``name`` set to ``value`` (a number or [B]); overwrites."""
    _check_cond(cond)
    out = cond.clone()
    out[:, attribute_index(name)] = torch.as_tensor(value, dtype=cond.dtype, device=cond.device)
    return out


def set_lighting(cond: torch.Tensor, sh9: torch.Tensor) -> torch.Tensor:
    """A copy of ``cond`` [B, 17] with the lighting set to ``sh9`` ([9] or [B, 9]); overwrites."""
    _check_cond(cond)
    sh9 = torch.as_tensor(sh9, dtype=cond.dtype, device=cond.device)
    if sh9.shape[-1:] != (NUM_LIGHT,) or sh9.ndim > 2:
        raise ValueError(f"lighting must be [{NUM_LIGHT}] or [B, {NUM_LIGHT}], got shape {tuple(sh9.shape)}")
    out = cond.clone()
    out[:, :NUM_LIGHT] = sh9
    return out


def blend_lighting(light_orig: torch.Tensor, presets: torch.Tensor, weights: Sequence[float] | torch.Tensor
                   ) -> torch.Tensor:
    """StyleFlow's preset blend ``light_orig + sum_j weights[j] * (presets[j] - light_orig)``.

    light_orig: [B, 9] (the face's measured lighting); presets: [J, 9]; weights: J preset slider values (0..1 in
    StyleFlow's UI, not clamped here). -> [B, 9]
    """
    weights = torch.as_tensor(weights, dtype=light_orig.dtype, device=light_orig.device)
    if light_orig.ndim != 2 or light_orig.shape[1] != NUM_LIGHT:
        raise ValueError(f"light_orig must be [B, {NUM_LIGHT}], got shape {tuple(light_orig.shape)}")
    if presets.ndim != 2 or presets.shape[1] != NUM_LIGHT or weights.shape != presets.shape[:1]:
        raise ValueError(f"need presets [J, {NUM_LIGHT}] and J weights, got shapes {tuple(presets.shape)} and "
                         f"{tuple(weights.shape)}")
    delta = presets.to(light_orig).unsqueeze(0) - light_orig.unsqueeze(1)  # [B, J, 9]
    return light_orig + (weights[None, :, None] * delta).sum(dim=1)


@contextlib.contextmanager
def _seeded_noise(device: torch.device) -> Iterator[None]:
    """Fork the global RNG (CPU and ``device``), seed it with NOISE_SEED, no autograd."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(NOISE_SEED)
        yield


def encode(flow, w: torch.Tensor, cond: torch.Tensor, *, fast: bool = False) -> torch.Tensor:
    """W+ latent [B, num_ws, w_dim] under condition [B, 17] -> its base point z [B, num_ws, w_dim]."""
    _check_pair(w, cond)
    with _seeded_noise(w.device):
        return flow.w_to_z(w, cond, fast=fast)


def decode(flow, z: torch.Tensor, cond: torch.Tensor, *, fast: bool = False) -> torch.Tensor:
    """Base point z [B, num_ws, w_dim] under condition [B, 17] -> W+ latent [B, num_ws, w_dim]."""
    _check_pair(z, cond)
    with _seeded_noise(z.device):
        return flow.z_to_w(z, cond, fast=fast)


def edit_attribute(flow, w: torch.Tensor, z: torch.Tensor | None, cond_now: torch.Tensor, cond_target: torch.Tensor,
                   *, rows_mask: torch.Tensor, fast: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One StyleFlow edit (FACTS §9 steps 4-7). -> (w_new, z_new), both [B, num_ws, w_dim].

    w: the current latent; z: ``encode(flow, w, cond_now)`` (None: computed here; pass the ``z_new`` of the previous
    edit to skip that solve); cond_now/cond_target: [B, 17]; rows_mask: bool [num_ws], the rows that may change
    (``attribute_mask`` / ``lighting_mask``). Rows outside the mask are copied from ``w`` bit-identically; ``z_new``
    is ``w_new`` re-encoded under ``cond_target``, the ``z`` for the next edit.
    """
    _check_pair(w, cond_now)
    _check_pair(w, cond_target)
    if rows_mask.dtype != torch.bool or rows_mask.shape != (w.shape[1],):
        raise ValueError(f"rows_mask must be a bool tensor [{w.shape[1]}], got {rows_mask.dtype} "
                         f"{tuple(rows_mask.shape)}")
    if z is None:
        z = encode(flow, w, cond_now, fast=fast)
    elif z.shape != w.shape:
        raise ValueError(f"z has shape {tuple(z.shape)}, expected the latent's {tuple(w.shape)}")
    w_raw = decode(flow, z, cond_target, fast=fast)  # [B, num_ws, w_dim]
    w_new = torch.where(rows_mask.to(w.device)[None, :, None], w_raw.to(w.dtype), w)
    return w_new, encode(flow, w_new, cond_target, fast=fast)


class FastSteps:
    """A flow whose fast mode takes ``steps`` solver steps: trained flows need more than random ones, so the
    release measures the count per flow (``engine.train.flow_release``) and stores it with the weights."""

    def __init__(self, flow, steps: int):
        self.flow, self.steps = flow, int(steps)

    def w_to_z(self, w: torch.Tensor, cond: torch.Tensor, *, fast: bool = False) -> torch.Tensor:
        return self.flow.w_to_z(w, cond, fast=fast, fast_steps=self.steps)

    def z_to_w(self, z: torch.Tensor, cond: torch.Tensor, *, fast: bool = False) -> torch.Tensor:
        return self.flow.z_to_w(z, cond, fast=fast, fast_steps=self.steps)


@dataclass(frozen=True)
class AttributeEdit:
    """One step of an edit list.

    ``kind='attribute'``: ``key`` an attribute name (``ATTRIBUTES``; ``'smile'`` is accepted and stored as
    ``'expression'``), ``value`` its new condition value in raw units (already through ``slider_target``).
    ``kind='lighting'``: ``key`` a preset index j, ``value`` that preset's blend weight v_j (``blend_lighting``).
    """

    kind: str
    key: str | int
    value: float

    def __post_init__(self):
        if self.kind == "attribute":
            if not isinstance(self.key, str):
                raise ValueError(f"an attribute edit needs an attribute name, got {self.key!r}")
            object.__setattr__(self, "key", attribute_name(self.key))
        elif self.kind == "lighting":
            if isinstance(self.key, bool) or not isinstance(self.key, int) or self.key < 0:
                raise ValueError(f"a lighting edit needs a preset index >= 0, got {self.key!r}")
        else:
            raise ValueError(f"edit kind must be 'attribute' or 'lighting', got {self.kind!r}")
        value = float(self.value)
        if not math.isfinite(value):
            raise ValueError(f"edit value must be finite, got {self.value!r}")
        object.__setattr__(self, "value", value)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "key": self.key, "value": self.value}

    @classmethod
    def from_dict(cls, d: dict) -> "AttributeEdit":
        return cls(kind=d["kind"], key=d["key"], value=d["value"])


def merge_edit(edits: Sequence[AttributeEdit], new_edit: AttributeEdit) -> tuple[AttributeEdit, ...]:
    """``edits`` with ``new_edit`` appended, or replacing the last edit when that one edits the same quantity
    (a slider drag is one edit). A reset is the empty list."""
    edits = tuple(edits)
    if edits and (edits[-1].kind, edits[-1].key) == (new_edit.kind, new_edit.key):
        return edits[:-1] + (new_edit,)
    return edits + (new_edit,)


def apply_edits(flow, w: torch.Tensor, cond0: torch.Tensor, edits: Sequence[AttributeEdit], *, fast: bool = False,
                presets: torch.Tensor | None = None, locks: Sequence[str] = (),
                measure: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Replay ``edits`` in order from base latent ``w`` [B, num_ws, w_dim] and its measured condition ``cond0``
    [B, 17]. -> (w_final, cond_final).

    Each edit encodes the current latent under the current condition, decodes under the edited condition, restores
    the rows outside the edit's mask and becomes the current latent; the result equals calling ``edit_attribute``
    edit by edit bit for bit. Lighting edits blend ``presets`` [J, 9] around ``cond0``'s lighting with every
    preset's latest weight, as StyleFlow's lighting sliders do.

    ``locks``: attributes to hold at their current condition value. The flow keeps the condition of the others
    fixed, but the face it decodes can still drift (entanglement); after every edit ``measure(w) -> [B, 17]`` (the
    estimator's reading of the rendered latent) finds the locked attributes' drift and one more solve, restricted
    to their rows, moves them back: encode under the measured values, decode under the held ones. An edit of a
    locked attribute itself still applies (its new value is then the one held).
    """
    _check_pair(w, cond0)
    locks = tuple(dict.fromkeys(attribute_name(a) for a in locks))
    if locks and measure is None:
        raise ValueError("locked attributes need measure(w) -> [B, 17] to read the edited face")
    num_ws = w.shape[1]
    weights: dict[int, float] = {}
    cond = cond0
    z = None
    for edit in edits:
        if edit.kind == "attribute":
            target = set_attribute(cond, edit.key, edit.value)
            mask = attribute_mask(edit.key, num_ws)
        else:
            if presets is None:
                raise ValueError("a lighting edit needs the lighting presets (presets=[J, 9])")
            if edit.key >= presets.shape[0]:
                raise ValueError(f"lighting preset {edit.key} does not exist ({presets.shape[0]} presets)")
            weights[edit.key] = edit.value
            v = [weights.get(j, 0.0) for j in range(presets.shape[0])]
            target = set_lighting(cond, blend_lighting(cond0[:, :NUM_LIGHT], presets, v))
            mask = lighting_mask(num_ws)
        w, z = edit_attribute(flow, w, z, cond, target, rows_mask=mask, fast=fast)
        cond = target
        held = [a for a in locks if not (edit.kind == "attribute" and edit.key == a)]
        if held:
            w, z = _hold(flow, w, cond, held, measure(w), fast=fast)
    return w, cond


def _hold(flow, w: torch.Tensor, cond: torch.Tensor, held: Sequence[str], reading: torch.Tensor, *,
          fast: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the ``held`` attributes of latent ``w`` from their ``reading`` [B, 17] back to ``cond`` [B, 17]."""
    now = cond.clone()
    mask = torch.zeros(w.shape[1], dtype=torch.bool)
    for name in held:
        i = attribute_index(name)
        now[:, i] = reading[:, i].to(cond)
        mask |= attribute_mask(name, w.shape[1])
    return edit_attribute(flow, w, None, now, cond, rows_mask=mask, fast=fast)


__all__ = ["ATTRIBUTES", "ALIASES", "NUM_LIGHT", "COND_DIM", "CONDITION_NAMES", "SLIDER_STEPS", "SLIDER_RANGES",
           "DEGREES", "STYLEFLOW_NUM_WS", "CHANGED_ROWS", "LIGHTING_ROWS", "LIGHTING_PRESETS", "NOISE_SEED",
           "attribute_name", "attribute_index", "slider_value", "slider_target", "slider_from_target", "rows_mask",
           "attribute_mask", "lighting_mask", "set_attribute", "set_lighting", "blend_lighting", "encode", "decode",
           "edit_attribute", "FastSteps", "AttributeEdit", "merge_edit", "apply_edits"]
