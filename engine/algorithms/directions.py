"""Conditional latent directions with a closed loop: attribute and lighting edits that reach what they ask.

InterFaceGAN's conditional manipulation (Shen et al., 2020), in the generator's own W space and measured rather
than assumed:

* ``covariance_directions``: from labelled latents (W [N, w_dim], readings C [N, K]) the linear read-out
  A = C_cw Σ_w⁻¹ and, per condition entry k, the smallest move in the Mahalanobis metric of W that changes entry k
  by one unit and every other entry by zero: D = C_wc (A C_wc)⁻¹ (columns d_k with A d_k = e_k). The moves stay
  along directions W actually varies in, so edited latents stay typical.
* ``Directions``: per entry, a W+ move [num_ws, w_dim] (d_k on the rows measured to edit that entry best, zero
  elsewhere, scaled so one step moves the reading by one raw unit) and the measured response matrix
  R [K, K] (R[i, j]: how far entry i's reading moves per step along entry j's move), both from
  ``engine.train.directions`` for one generator and estimator.
* ``solve_edit``: the edited and locked entries S get targets; the other entries are free. The open-loop move is
  β_S = R_SS⁻¹ (t_S − c0_S); each closed-loop pass renders and reads the face (``measure``) and adds
  R_SS⁻¹ (t_S − reading_S) (a quasi-Newton step with the measured response). The result is a pure function of the
  latent, its starting reading, the targets and the pass count, so a project replays it bit for bit.

Targets are absolute (the slider value is the asked reading, never accumulated), so the order of the edits does
not matter; a target the generator cannot reach ends short and says so through the reading of the face shown.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

# A step along one entry's move is clamped to this many standard deviations of that entry: beyond, the latent
# leaves what the generator was trained on and the face breaks rather than changes.
MAX_STEP_SD = 4.0
# The most a latent moves from where it started, per W+ row, in units of ``Directions.reach`` (a typical distance
# between two faces): a larger move leaves the faces the generator makes, and the estimator's readings stop meaning
# anything there even when they hit their targets (on the default, 0.6 already gave glasses as dark blobs and
# beards as smudges on faces that read 1.0 for them, and 0.8 ghostly faces for baldness; 0.35 stopped a man's face
# made a woman's well short of the asked reading, 0.5 looks the same as 0.35 on the slider-ends sheet).
MAX_SHIFT = 0.5
# An entry is editable when one standard deviation of its reading takes at most this many reaches.
MAX_LENGTH = 0.5
# Moves longer than this (reaches per standard deviation) are damped by the square of how much longer they are.
LENGTH_FREE = 0.2
# Tikhonov damping of the response's inverse, in standard-deviation units (``damped_inverse``).
DAMPING = 0.02
# The closed loop rescales each move by its secant gain at the face (reading change per step over the last two
# steps, relative to the calibration's), kept in this range so a saturated reading cannot ask for a huge step.
GAIN_RANGE = (0.25, 4.0)
# ... measured only over a step of at least this many standard deviations (smaller ones mostly see the other moves).
SECANT_MIN_SD = 0.2
# With ``local`` passes, the entries in ``hold`` (the unlocked other attributes) are kept near their starting reading
# with this weight against the targets' 1: they move where the target needs them to, and no further.
HOLD_WEIGHT = 0.3
# Entries in ``guard`` (the locks) end within this many standard deviations of their target: a face whose passes
# left one further is pulled back along its move, to the largest fraction of it that holds them (``GUARD_STEPS``
# bisections), so a lock holds even where the asked edit cannot happen without it (a beard on a woman's face).
GUARD_SD = 0.15  # 0.1 left 0.14 of a gender step with every other attribute locked (any of 7 noisy readings trips
# it), 0.25 let a locked beard drift 0.12 on average; 0.15 keeps every mean drift of the benchmark within 0.1
GUARD_STEPS = 5


def covariance_directions(w: torch.Tensor, cond: torch.Tensor, *, ridge: float = 1e-3) -> torch.Tensor:
    """Conditional directions in W from labelled latents. w: [N, w_dim]; cond: [N, K] readings. -> D [K, w_dim]
    with A D^T = I for the least-squares read-out A (``ridge``: relative regularisation of Σ_w)."""
    if w.ndim != 2 or cond.ndim != 2 or len(w) != len(cond):
        raise ValueError(f"need w [N, w_dim] and cond [N, K] of one N, got {tuple(w.shape)} and {tuple(cond.shape)}")
    if len(w) <= w.shape[1] + cond.shape[1]:
        raise ValueError(f"{len(w)} labelled latents are too few to fit {cond.shape[1]} directions in a "
                         f"{w.shape[1]}-dimensional W (need more than {w.shape[1] + cond.shape[1]})")
    w, cond = w.double(), cond.double()
    wc, cc = w - w.mean(0), cond - cond.mean(0)
    n = len(w)
    sigma = wc.T @ wc / n  # [w_dim, w_dim]
    sigma = sigma + ridge * sigma.diagonal().mean() * torch.eye(len(sigma), dtype=sigma.dtype)
    cross = wc.T @ cc / n  # [w_dim, K]
    read = torch.linalg.solve(sigma, cross).T  # [K, w_dim]: A
    gram = read @ cross  # [K, K]: A C_wc, symmetric positive definite
    return torch.linalg.solve(gram, cross.T).float()  # [K, w_dim]: rows d_k, A d_k = e_k


@dataclass(frozen=True)
class Directions:
    """Measured edit moves for one generator: ``names`` the condition entries (layout order), ``moves``
    [K, num_ws, w_dim] one raw unit of each entry, ``response`` [K, K] the measured reading change of entry i per
    step along move j, ``scale`` [K] each entry's standard deviation over the generator's faces (raw units),
    ``rows`` the W+ rows each move uses."""

    names: tuple[str, ...]
    moves: torch.Tensor
    response: torch.Tensor
    scale: torch.Tensor
    rows: tuple[tuple[int, ...], ...]
    reach: float  # the mean per-row W distance between two of the generator's faces: how far a latent may move

    def __post_init__(self):
        k = len(self.names)
        if self.moves.ndim != 3 or self.moves.shape[0] != k:
            raise ValueError(f"moves must be [{k}, num_ws, w_dim], got {tuple(self.moves.shape)}")
        if self.response.shape != (k, k) or self.scale.shape != (k,) or len(self.rows) != k:
            raise ValueError(f"response must be [{k}, {k}], scale [{k}] and rows {k} long, got "
                             f"{tuple(self.response.shape)}, {tuple(self.scale.shape)} and {len(self.rows)}")
        if not (torch.isfinite(self.moves).all() and torch.isfinite(self.response).all()
                and torch.isfinite(self.scale).all() and (self.scale > 0).all()):
            raise ValueError("the directions hold non-finite numbers or a scale that is not positive")
        if not (math.isfinite(self.reach) and self.reach > 0):
            raise ValueError(f"the directions' reach must be a positive number, got {self.reach!r}")

    @property
    def num_ws(self) -> int:
        return self.moves.shape[1]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"the directions have no entry {name!r} (they edit {list(self.names)})") from None

    def to(self, device) -> Directions:
        return Directions(self.names, self.moves.to(device), self.response, self.scale, self.rows, self.reach)

    @property
    def length(self) -> torch.Tensor:
        """[K] how far (largest per-row W distance, in units of ``reach``) one standard deviation of each entry
        moves the latent."""
        return self.moves.norm(dim=2).amax(1).double().cpu() * self.scale.double() / self.reach

    @property
    def editable(self) -> tuple[bool, ...]:
        """Entries whose standard deviation is within ``MAX_LENGTH`` of reach: the others would break the face
        before they moved, so edits leave them where they are."""
        return tuple(bool(v) for v in self.length <= MAX_LENGTH)


def damped_inverse(response: torch.Tensor, scale: torch.Tensor, *, damping: float) -> torch.Tensor:
    """(R̃ᵀR̃ + λI)⁻¹R̃ᵀ for the response R [S, S] in standard-deviation units (R̃ = diag(1/s) R diag(s)), back in
    raw units: the step [S] that best reaches a reading change [S] without large steps along weak moves."""
    r = response / scale[:, None] * scale[None, :]
    eye = torch.eye(len(r), dtype=r.dtype)
    inv = torch.linalg.solve(r.T @ r + damping * eye, r.T)
    return inv * scale[:, None] / scale[None, :]


def local_response(directions: Directions, w: torch.Tensor, now: torch.Tensor, index: torch.Tensor,
                   measure: Callable[[torch.Tensor], torch.Tensor], *, step_sd: float = 0.5) -> torch.Tensor:
    """The reading change of entries ``index`` [S] per step along each of their moves at latents ``w``
    [B, num_ws, w_dim] whose reading is ``now`` [B, S]: forward differences of ``step_sd`` standard deviations,
    one batch of B * S faces. -> [B, S (reading), S (move)]"""
    b, s = len(w), len(index)
    h = step_sd * directions.scale.double()[index]  # [S]
    moves = directions.moves.to(w)[index] * h.to(w)[:, None, None]  # [S, num_ws, w_dim]
    probes = (w[:, None] + moves[None]).reshape(b * s, *w.shape[1:])
    read = measure(probes)[:, index].double().reshape(b, s, s)  # [B, move, reading]
    return ((read - now[:, None, :]) / h[None, :, None]).transpose(1, 2)


def _weighted_step(change: torch.Tensor, error: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor,
                   damping: torch.Tensor) -> torch.Tensor:
    """The damped weighted least-squares step [B, S] for a local response ``change`` [B, S, S] and reading errors
    [B, S], in standard-deviation units (``scale`` [S]) with a weight [S] per reading and a damping [S] per move."""
    j = change / scale[None, :, None] * scale[None, None, :]
    jt = j.transpose(1, 2) * weight[None, None, :]
    lhs = jt @ j + torch.diag(damping)[None]
    return torch.linalg.solve(lhs, jt @ (error / scale)[:, :, None])[:, :, 0] * scale


def rows_move(direction: torch.Tensor, rows: Sequence[int], num_ws: int) -> torch.Tensor:
    """A W+ move [num_ws, w_dim]: ``direction`` [w_dim] on ``rows``, zero on the others."""
    move = torch.zeros(num_ws, direction.shape[-1], dtype=direction.dtype, device=direction.device)
    move[list(rows)] = direction
    return move


def secant_gain(moved: torch.Tensor, change: torch.Tensor, scale: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Each move's effect on its own entry at a face, relative to calibration: the reading ``change`` [B, S] over
    the step ``moved`` [B, S] (both in the entries' raw units, ``scale`` [S] their standard deviations), clamped to
    ``GAIN_RANGE``; ``prior`` [B, S] where the step was under ``SECANT_MIN_SD`` (it mostly saw the other moves)."""
    seen = moved.abs() > SECANT_MIN_SD * scale
    secant = change / torch.where(seen, moved, torch.ones_like(moved))
    return torch.where(seen, secant.clamp(GAIN_RANGE[0], GAIN_RANGE[1]), prior)


def solve_edit(directions: Directions, w0: torch.Tensor, cond0: torch.Tensor,
               targets: Mapping[int, float | torch.Tensor], *, passes: int = 0,
               measure: Callable[[torch.Tensor], torch.Tensor] | None = None, tolerance_sd: float = 0.05,
               damping: float = DAMPING, local: bool = False, hold: Mapping[int, float | torch.Tensor] | None = None,
               hold_weight: float = HOLD_WEIGHT, weights: Mapping[int, float] | None = None,
               guard: Sequence[int] = (), open_loop: bool = True, pass_sd: float = MAX_STEP_SD,
               gain: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Move latents ``w0`` [B, num_ws, w_dim] (starting readings ``cond0`` [B, K]) so the entries of ``targets``
    ({entry index: raw value, a number or [B]}; locked entries are targets at their held value) read their targets.

    ``passes`` closed-loop corrections after the open-loop move (quasi-Newton: the response's inverse, each move
    rescaled by its secant gain at that face), each reading the faces with ``measure(w) -> [B, K]``;
    a face stops once every target is within ``tolerance_sd`` of its entry's standard deviation (so each face of a
    batch ends exactly as it would alone). Steps are clamped to ±``MAX_STEP_SD`` standard deviations; the response is
    inverted with Tikhonov ``damping`` (``damped_inverse``), so an entry the generator barely moves asks for a
    bounded step rather than a huge one. ``local``: each pass measures the faces' own response to every move
    (``local_response``) and takes a damped weighted least-squares step of at most ``pass_sd`` standard deviations
    per move (a trust region: the response is measured at the face and holds near it) over the targets and the
    entries of ``hold`` ({entry: value}, held softly with ``hold_weight``; a face with held entries takes every
    pass), the first from ``w0`` itself without ``open_loop`` (the calibrated response does not know how this face
    trades one entry for another), each move damped more the longer it is
    (``LENGTH_FREE``); ``gain`` [B, K] (one per entry; the targets' are used) starts the secant passes and the
    open-loop move from a gain measured before (``secant_gain``: a slider's previous frame) instead of calibration's 1;
    ``weights`` ({entry: weight}) overrides the weight of a
    target's reading error in that step (1 by default: a lock is a target held harder), and the targets in ``guard``
    end within ``GUARD_SD`` of theirs (``_pull_back``: the edit falls short instead). Entries that are not
    ``editable`` are dropped from the targets and the hold, and every latent stays within ``MAX_SHIFT`` reaches of
    where it started (per W+ row).
    -> (w [B, num_ws, w_dim], steps β [B, K])
    """
    k, b = len(directions.names), len(w0)
    if w0.ndim != 3 or w0.shape[1:] != directions.moves.shape[1:]:
        raise ValueError(f"w must be [B, {directions.num_ws}, {directions.moves.shape[2]}] for these directions, got "
                         f"{tuple(w0.shape)}")
    if cond0.shape != (b, k):
        raise ValueError(f"the starting reading must be [{b}, {k}], got {tuple(cond0.shape)}")
    if (passes or guard) and measure is None:
        raise ValueError("closed-loop passes and guarded entries need measure(w) -> [B, K] to read the edited face")
    beta = torch.zeros(b, k, dtype=torch.float64)
    if any(not 0 <= i < k for i in (*targets, *(hold or {}), *(weights or {}))):
        raise ValueError(f"target entries {sorted(targets)} are outside 0..{k - 1}")
    editable = directions.editable
    targets = {i: v for i, v in targets.items() if editable[i]}  # the others cannot move without breaking the face
    if not targets:
        return w0, beta.float()
    guard = [i for i in guard if i in targets]
    hold = {i: v for i, v in (hold or {}).items() if i not in targets and editable[i]} if local else {}
    index = torch.tensor(sorted(targets), dtype=torch.long)
    everything = torch.tensor(sorted({*targets, *hold}), dtype=torch.long)  # targets, then held softly
    wanted = {**hold, **targets}
    goal_all = torch.stack([torch.as_tensor(wanted[int(i)], dtype=torch.float64).expand(b) for i in everything], 1)
    if not torch.isfinite(goal_all).all():
        raise ValueError("edit targets must be finite")
    is_target = torch.tensor([int(i) in targets for i in everything])
    goal = goal_all[:, is_target]  # [B, S]
    scale = directions.scale.double()[index]
    inverse = damped_inverse(directions.response.double()[index][:, index], scale, damping=damping)  # [S, S]
    moves = directions.moves.to(w0)

    budget = MAX_SHIFT * directions.reach
    stiff = damping * (directions.length / LENGTH_FREE).clamp(min=1.0) ** 2  # [K]: long moves cost more

    def apply(steps: torch.Tensor) -> torch.Tensor:  # the steps [B, K] scaled in place to the shift budget
        shift = torch.einsum("bk,kij->bij", steps.to(w0), moves)  # [B, num_ws, w_dim]
        factor = (budget / shift.norm(dim=2).amax(1).double().clamp(min=1e-12)).clamp(max=1.0)  # [B]
        steps.mul_(factor[:, None])
        return w0 + shift * factor.to(w0)[:, None, None]

    def clamp(steps: torch.Tensor, s: torch.Tensor, limit: float = MAX_STEP_SD) -> torch.Tensor:  # ±limit sd
        return steps.clamp(-limit * s, limit * s)

    def step(steps: torch.Tensor, error: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:  # clamped quasi-Newton
        return clamp(steps + (error @ inverse.T) / gain, scale)

    if gain is None:
        gain = torch.ones_like(goal)  # [B, S]: each move's effect on its own entry at this face, against calibration
    elif gain.shape != (b, k):
        raise ValueError(f"the starting gain must be [{b}, {k}] (one per entry), got {tuple(gain.shape)}")
    else:
        gain = gain.to(goal)[:, index]
    last_beta, last_read = torch.zeros_like(goal), cond0[:, index].double()
    w = w0
    if open_loop or not local:
        beta[:, index] = step(last_beta, goal - last_read, gain)
        w = apply(beta)
    weight = torch.tensor([(weights or {}).get(int(i), 1.0 if int(i) in targets else hold_weight)
                           for i in everything], dtype=torch.float64)  # [S']
    for n in range(passes):
        read = cond0 if n == 0 and w is w0 else measure(w)
        now = read[:, index].double()  # [B, S]
        error = goal - now
        active = (error.abs() > tolerance_sd * scale).any(1) | bool(hold)  # [B]
        if not active.any():
            break
        rows = active.nonzero()[:, 0].unsqueeze(1)
        if local:
            now_all = read[:, everything].double()
            s_all = directions.scale.double()[everything]
            change = local_response(directions, w, now_all, everything, measure)  # [B, S', S']
            move = clamp(_weighted_step(change, goal_all - now_all, s_all, weight, stiff[everything]), s_all, pass_sd)
            beta[rows, everything] = clamp(beta[:, everything] + move, s_all)[active]
            w = apply(beta)
            continue
        gain = secant_gain(beta[:, index] - last_beta, now - last_read, scale, gain)
        last_beta, last_read = beta[:, index].clone(), now
        beta[rows, index] = step(beta[:, index], error, gain)[active]
        w = apply(beta)
    if guard:
        w, beta = _pull_back(w0, w, beta, goal_all, everything, guard, directions.scale.double(), measure)
    return w, beta.float()


def _pull_back(w0: torch.Tensor, w: torch.Tensor, beta: torch.Tensor, goal: torch.Tensor, entries: torch.Tensor,
               guard: Sequence[int], scale: torch.Tensor, measure: Callable[[torch.Tensor], torch.Tensor]
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents ``w`` [B, num_ws, w_dim] (from ``w0``, steps ``beta`` [B, K]) whose ``guard`` entries read more than
    ``GUARD_SD`` from their ``goal`` [B, S'] (over ``entries`` [S']) taken back to the largest fraction of their move
    that keeps every guard entry within it (a lock's goal is its starting reading: the start holds it)."""
    cols = torch.tensor([entries.tolist().index(i) for i in guard])
    guarded = torch.tensor(guard)

    def holds(x: torch.Tensor, aim: torch.Tensor) -> torch.Tensor:  # [B]
        return ((measure(x)[:, guarded].double() - aim).abs() <= GUARD_SD * scale[guarded]).all(1)

    bad = ~holds(w, goal[:, cols])
    if not bad.any():
        return w, beta
    lo, hi = torch.zeros(int(bad.sum()), dtype=torch.float64), torch.ones(int(bad.sum()), dtype=torch.float64)
    start, move, aim = w0[bad], (w - w0)[bad], goal[bad][:, cols]
    for _ in range(GUARD_STEPS):
        mid = (lo + hi) / 2
        ok = holds(start + mid.to(w)[:, None, None] * move, aim)
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    w, beta = w.clone(), beta.clone()
    w[bad] = start + lo.to(w)[:, None, None] * move
    beta[bad] *= lo[:, None]
    return w, beta


__all__ = ["MAX_STEP_SD", "MAX_SHIFT", "MAX_LENGTH", "LENGTH_FREE", "DAMPING", "GAIN_RANGE", "SECANT_MIN_SD",
           "HOLD_WEIGHT", "GUARD_SD", "GUARD_STEPS", "damped_inverse", "secant_gain",
           "covariance_directions", "Directions", "local_response", "rows_move", "solve_edit"]
