"""Attribute edits by measured directions (``engine.algorithms.directions``) for the render jobs.

Which method edits a state (``edit_method``): ``'flow'`` is StyleFlow's (``apply_edits``); ``'directions'`` the
generator's measured directions with the closed loop; ``'auto'`` the directions when the model has them (the
embedded default's ``assets/directions.pt``, or ``<model>.directions.pt`` beside a model file, measured on that very
file) and the flow otherwise. Directions need the flow's condition to be theirs (same entries in the same order).

An edit list turns into absolute targets (``direction_targets``): each attribute's last value, the lighting blended
from every preset's latest weight around the face's own, and each lock at the face's unedited reading. While a slider
is held the solve runs ``DRAG_PASSES`` closed-loop passes (locks wait), once it is let go ``SETTLE_PASSES`` that
measure the face's own response, hold the locks and keep the other attributes near where they were
(``solve_targets``). While a slider is held, each frame after the first starts from the secant gain that the face
shown before it measured (``DragGains``) and needs no pass of its own: one render a frame instead of two. Simulated
8-frame drags over the benchmark's steps (32 held-out faces per row): the same mean error per frame as a pass of
its own (0.545 sd), less entanglement (0.275 against 0.307 sd) and less overshoot (age up 1.02 against 1.14).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from engine.algorithms.directions import MAX_STEP_SD, Directions, secant_gain, solve_edit
from engine.algorithms.flow_edit import AttributeEdit, blend_lighting
from engine.algorithms.flow_layout import ConditionLayout, LayoutError
from engine.assets import ASSETS_DIR, DEFAULT_DIRECTIONS, DEFAULT_GENERATOR, default_directions_path, manifest
from engine.files.directions import load_directions
from engine.project import EDIT_METHODS, ModelRef, ProjectError

DRAG_PASSES = 1
SETTLE_PASSES = 3
# Levenberg-Marquardt damping of the settled passes (standard-deviation units): the response of a saturating reading
# is far from linear, and a full Newton step overshoots (measured on the default: 0.02 doubles the entanglement of
# 0.3, and 1.0 with SETTLE_HOLD 1 gives the most natural faces at the edges of the sliders).
LOCAL_DAMPING = 1.0
# How strongly the settled passes keep the attributes not asked for where they were (an asked target's weight is 1):
# 1.0 kept a man's beard while he was made a woman (0.50 of the benchmark's gender step down, 0.60 at 0.5); 0.5 stays
# well under the linear baseline's entanglement at equal success (benchmarks/attribute_edits.py).
SETTLE_HOLD = 0.5
# With locks, the settled solve starts from the face's own response (no open-loop move) and takes LOCKED_PASSES
# passes of at most LOCKED_STEP_SD each, holding the locks with LOCK_WEIGHT and then guarding them (solve_edit's
# ``guard``). Measured on 15 lock cases of the default: 3 passes of 1 sd held the locks but reached 0.45 of the asks,
# 6 of 0.5 sd 0.64 (the rest are asks this generator cannot make without the locked reading: a beard on a woman).
LOCK_WEIGHT = 100.0
LOCKED_PASSES = 6
LOCKED_STEP_SD = 0.5
SIDECAR_SUFFIX = ".directions.pt"


def directions_file(ref: ModelRef) -> Path | None:
    """The direction file of model ``ref`` (embedded default: the asset; a file: ``<stem>.directions.pt`` beside
    it), or None when there is none."""
    if ref.is_default:
        return default_directions_path() if (ASSETS_DIR / DEFAULT_DIRECTIONS).is_file() else None
    path = Path(ref.path)
    side = path.with_name(path.stem + SIDECAR_SUFFIX)
    return side if side.is_file() else None


def load_model_directions(ref: ModelRef, *, sha256: str | None, device="cpu") -> Directions | None:
    """The measured directions of model ``ref`` whose file has ``sha256`` (None: unknown, not checked), or None.
    A direction file measured on another generator is refused (``ModelFormatError``)."""
    path = directions_file(ref)
    if path is None:
        return None
    if ref.is_default:
        sha256 = (manifest(DEFAULT_GENERATOR) or {}).get("sha256")
    return load_directions(path, generator_sha256=sha256)[0].to(device)


def resolve_method(method: str, directions: Directions | None, layout: ConditionLayout) -> str:
    """``'directions'`` or ``'flow'`` for a state's ``edit_method`` with these directions (None: the model has
    none) and the flow's ``layout``; ProjectError when ``'directions'`` is asked and cannot be used."""
    if method not in EDIT_METHODS:
        raise ProjectError(f"the edit method must be one of {EDIT_METHODS}, got {method!r}")
    if method == "flow":
        return "flow"
    usable = directions is not None and directions.names == layout.condition_names
    if usable:
        return "directions"
    if method == "auto":
        return "flow"
    if directions is None:
        raise ProjectError("this model has no measured edit directions (measure them with: main.py train directions "
                           "--model MODEL); use the flow method instead")
    raise ProjectError("the edit directions were measured for another condition "
                       f"({len(directions.names)} entries) than this flow's ({layout.cond_dim}); use the flow method")


def direction_targets(layout: ConditionLayout, cond0: torch.Tensor, edits: Sequence[AttributeEdit],
                      locks: Sequence[str], presets: torch.Tensor | None) -> dict[int, torch.Tensor]:
    """The targets {condition index: value [B]} an edit list asks of a face whose unedited reading is ``cond0``
    [B, C]: each attribute's last value, the lighting blended from every preset's latest weight, every lock held at
    ``cond0`` unless it is itself edited."""
    targets: dict[int, torch.Tensor] = {}
    weights: dict[int, float] = {}
    n = layout.num_light
    for edit in edits:
        if edit.kind == "attribute":
            targets[layout.index(edit.key)] = torch.full((len(cond0),), edit.value, dtype=cond0.dtype)
            continue
        if not n:
            raise LayoutError("this flow's condition has no lighting coefficients: there is no lighting to edit")
        if presets is None or edit.key >= len(presets):
            raise ValueError(f"lighting preset {edit.key} does not exist "
                             f"({0 if presets is None else len(presets)} presets)")
        weights[edit.key] = edit.value
    if weights:
        light = blend_lighting(cond0[:, :n], presets.to(cond0), [weights.get(j, 0.0) for j in range(len(presets))])
        targets.update({i: light[:, i] for i in range(n)})
    for name in locks:
        targets.setdefault(layout.index(name), cond0[:, layout.index(name)])
    return targets


class DragGains:
    """One face's live solves, frame to frame while a slider is held: the secant gain [B, K] last measured for each
    set of targeted entries, and the newest live solve's steps waiting for the reading of the frame it made."""

    def __init__(self, directions: Directions):
        self._scale = directions.scale.double().cpu()
        self._gains: dict[tuple[int, ...], torch.Tensor] = {}
        self._pending: tuple[object, tuple[int, ...], torch.Tensor, torch.Tensor] | None = None

    def gain(self, entries: tuple[int, ...]) -> torch.Tensor | None:
        """The gain [B, K] measured for a solve of the targets ``entries``; None before one was shown."""
        return self._gains.get(entries)

    def solved(self, key, entries: tuple[int, ...], beta: torch.Tensor, cond0: torch.Tensor) -> None:
        """A live solve of the targets ``entries`` for the frame ``key`` took steps ``beta`` [B, K] from the reading
        ``cond0`` [B, K]."""
        self._pending = (key, entries, beta.double().cpu(), cond0.double().cpu())

    def waits_for(self, key) -> bool:
        """Whether the newest live solve was the frame ``key``'s and moved the face, so that its reading is wanted
        (``shown``)."""
        return self._pending is not None and self._pending[0] == key and bool(self._pending[2].any())

    def shown(self, key, read: torch.Tensor) -> None:
        """The frame ``key`` reads ``read`` [B, K]: the gain of its solve, for the next frame's (an entry that did
        not move keeps the gain it had)."""
        if not self.waits_for(key):
            return
        _, entries, beta, start = self._pending
        prior = self._gains.get(entries, torch.ones_like(beta))
        self._gains[entries] = secant_gain(beta, read.double().cpu() - start, self._scale, prior)
        self._pending = None


def solve_targets(directions: Directions, w: torch.Tensor, cond0: torch.Tensor, targets: dict[int, torch.Tensor],
                  *, free: Sequence[int], measure: Callable[[torch.Tensor], torch.Tensor], live: bool,
                  locked: Sequence[int] = (), gains: DragGains | None = None, key=None) -> torch.Tensor:
    """Reach ``targets`` ({entry: value [B]}, locks included) from latents ``w`` [B, num_ws, w_dim] read as ``cond0``
    [B, C]. Live (a slider held): the open-loop move and ``DRAG_PASSES`` secant passes, or with ``gains`` holding a
    gain for these entries none, the move scaled by that gain (the frame ``key``'s steps are left in ``gains`` for
    its reading). Settled: ``SETTLE_PASSES`` passes that measure each face's own response, hold the ``free``
    entries (the attributes not asked for) softly near their start and the ``locked`` targets with
    ``LOCK_WEIGHT``, guarded (the edit falls short rather than a lock drifts). -> [B, num_ws, w_dim]"""
    if live:
        entries = tuple(sorted(targets))
        gain = gains.gain(entries) if gains is not None else None
        moved, beta = solve_edit(directions, w, cond0, targets, passes=DRAG_PASSES if gain is None else 0,
                                 measure=measure, gain=gain)
        if gains is not None:
            gains.solved(key, entries, beta, cond0)
        return moved
    hold = {i: cond0[:, i] for i in free if i not in targets}
    locked = [i for i in locked if i in targets]
    if locked:
        passes, open_loop, pass_sd = LOCKED_PASSES, False, LOCKED_STEP_SD
    else:
        passes, open_loop, pass_sd = SETTLE_PASSES, True, MAX_STEP_SD
    return solve_edit(directions, w, cond0, targets, passes=passes, measure=measure, local=True, hold=hold,
                      hold_weight=SETTLE_HOLD, damping=LOCAL_DAMPING, weights={i: LOCK_WEIGHT for i in locked},
                      guard=locked, open_loop=open_loop, pass_sd=pass_sd)[0]


def solve_directions(directions: Directions, w: torch.Tensor, cond0: torch.Tensor, layout: ConditionLayout,
                     edits: Sequence[AttributeEdit], *, locks: Sequence[str], presets: torch.Tensor | None,
                     measure: Callable[[torch.Tensor], torch.Tensor], live: bool, gains: DragGains | None = None,
                     key=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The edited latent [B, num_ws, w_dim] and the condition it aims at [B, C] (``cond0`` with the targets); a
    live solve carries its gain in ``gains`` (``solve_targets``) as the frame ``key``."""
    targets = direction_targets(layout, cond0, edits, () if live else locks, presets)  # locks hold once let go
    free = range(layout.num_light, layout.cond_dim)
    asked = {layout.index(e.key) for e in edits if e.kind == "attribute"}
    locked = [] if live else [i for i in map(layout.index, locks) if i not in asked]
    moved = solve_targets(directions, w, cond0.to(w), targets, free=free, measure=measure, live=live, locked=locked,
                          gains=gains, key=key)
    aim = cond0.clone()
    for i, value in targets.items():
        aim[:, i] = value.to(aim)
    return moved, aim


__all__ = ["DragGains", "DRAG_PASSES", "SETTLE_PASSES", "LOCAL_DAMPING", "SETTLE_HOLD", "LOCK_WEIGHT", "LOCKED_PASSES",
           "LOCKED_STEP_SD", "SIDECAR_SUFFIX", "directions_file", "load_model_directions", "resolve_method",
           "direction_targets", "solve_targets", "solve_directions"]
