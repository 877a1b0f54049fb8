"""Reading a face's condition from the conditional flow itself: the c under which its latent is most likely.

StyleFlow edits need each face's condition (lighting and attributes, ``flow_layout.ConditionLayout``), which
StyleFlow took from external estimators. A conditional flow models ``log p(w | c)``, so the condition can be read
from the flow alone (maximum likelihood over c, the flow's weights fixed):

    c* = argmax_c  log p(w | c) = sum log N(z(w, c); 0, I) - sum_rows integral tr(df/dx) dt (+ batch-norm log|det|)

``log_likelihood`` evaluates that on a fast solver (fixed-step RK4 over x and the log-density together, the
divergence by Hutchinson's estimator with a fixed Rademacher probe drawn from a seeded ``torch.Generator``, so the
objective is a smooth, deterministic function of c) and stays differentiable in c. ``fit_condition`` climbs it,
plus a Gaussian prior over conditions (the training data's mean and spread, weighted per W+ row, ``PRIOR``: the
posterior's mode rather than the bare maximum, which drifts out of the training range), with Adam in units of the
condition's spread (the flow's training-data standard deviations when its file records them), projected onto
bounds after every step: the layout's slider ranges, widened to the training data's extremes when known (a face
may lie outside the sliders' range), the lighting bounded by the data only. Binary attributes
(glasses, and whatever the caller names) are relaxed to their range's interval; ``snap`` then tries both ends and
keeps whichever of the relaxed value and the two ends the flow finds most likely.

Shapes: w [B, num_ws, w_dim] (W+, each row a point sharing its sample's condition, as StyleFlow) or [B, w_dim];
conditions [B, C] in the layout's order. Nothing here mutates the flow or touches the global RNG.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from engine.algorithms.flow_edit import flow_layout_of
from engine.algorithms.flow_layout import ConditionLayout
from engine.models.flow import CNF, FAST_STEPS, MovingBatchNorm

DIVERGENCES = ("approximate", "exact", "none")
# The objective needs the likelihood's shape in c, not an edit's precision: on the embedded flow (10 fast steps for
# its edits) 2 RK4 steps and 20 Adam steps of 0.3 read the same conditions as 4 and 40 of 0.15 (mean errors within
# 0.03 data standard deviations, benchmarks/flow_attributes.py) in an eighth of the time.
SOLVER_STEPS = 2
# Weight of the Gaussian prior over conditions (training mean and spread) per W+ row; 0: plain maximum likelihood.
# The flow scores every row as a point of its own, so a face's evidence counts once per row; without a prior the
# maximum wanders to conditions the training data never had (lighting at its extremes, measured on the embedded
# flow: mean errors of 1-2 data standard deviations), with 2 per row every reading beats the training mean's.
PRIOR = 2.0
_LOG_2PI = math.log(2 * math.pi)


def _module(flow):
    """The ``ConditionalCNF`` of ``flow`` and the fast solver's step count (``FastSteps`` carries its own)."""
    module = getattr(flow, "flow", flow)
    if not hasattr(module, "chain") or not hasattr(module, "cfg"):
        raise ValueError("reading a condition needs a conditional flow (a loaded StyleFlow CNF)")
    return module, int(getattr(flow, "steps", FAST_STEPS))


def _check_w(module, w: torch.Tensor) -> None:
    if w.ndim not in (2, 3) or w.shape[-1] != module.cfg.input_dim:
        raise ValueError(f"w must be a W+ latent [B, num_ws, {module.cfg.input_dim}] or W [B, {module.cfg.input_dim}],"
                         f" got shape {tuple(w.shape)}")


def _probe(shape: torch.Size, seed: int, device, dtype) -> torch.Tensor:
    """A Rademacher probe (+-1 entries) of ``shape`` from its own generator."""
    g = torch.Generator().manual_seed(int(seed))
    return (torch.randint(0, 2, tuple(shape), generator=g) * 2 - 1).to(device=device, dtype=dtype)


def _rhs(block: CNF, t: torch.Tensor, x: torch.Tensor, c: torch.Tensor, probe: torch.Tensor | None,
         divergence: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(dx/dt [B, ..., D], tr(df/dx) [B, ..., 1] or None), differentiable in c (and x)."""
    tc = torch.cat([t.to(x).expand(x.shape[0], 1), c], dim=1)  # [B, 1+C]
    if divergence == "none":
        return block.odefunc.diffeq(tc, x), None
    with torch.enable_grad():
        if not x.requires_grad:
            x = x.requires_grad_(True)
        dx = block.odefunc.diffeq(tc, x)
        if divergence == "approximate":
            div = (torch.autograd.grad(dx, x, probe, create_graph=True)[0] * probe).sum(-1, keepdim=True)
        else:
            div = sum(torch.autograd.grad(dx[..., i].sum(), x, create_graph=True)[0][..., i:i + 1]
                      for i in range(x.shape[-1]))
    return dx, div


def _integrate(block: CNF, x: torch.Tensor, c: torch.Tensor, *, steps: int, probe: torch.Tensor | None,
               divergence: str) -> tuple[torch.Tensor, torch.Tensor]:
    """RK4 over [0, T] of (x, integral of tr(df/dx)). -> (x(T) [B, ..., D], integral [B, ..., 1])."""
    times = block.times(x, reverse=False, steps=steps)
    acc = x.new_zeros(*x.shape[:-1], 1)
    for k in range(steps):
        t0, h = times[k], times[k + 1] - times[k]
        k1, d1 = _rhs(block, t0, x, c, probe, divergence)
        k2, d2 = _rhs(block, t0 + h / 2, x + h / 2 * k1, c, probe, divergence)
        k3, d3 = _rhs(block, t0 + h / 2, x + h / 2 * k2, c, probe, divergence)
        k4, d4 = _rhs(block, t0 + h, x + h * k3, c, probe, divergence)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if d1 is not None:
            acc = acc + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
    return x, acc


def log_likelihood(flow, w: torch.Tensor, cond: torch.Tensor, *, steps: int | None = None,
                   divergence: str = "approximate", probe_seed: int = 0) -> torch.Tensor:
    """log p(w | cond) per sample, in nats, on the fast solver; differentiable in ``cond``. -> [B]

    w: [B, num_ws, w_dim] or [B, w_dim]; cond: [B, C]. steps: RK4 steps per block (default: the flow's fast-mode
    count). divergence: 'approximate' (Hutchinson, one fixed Rademacher probe from ``probe_seed``), 'exact' (the
    trace, one backward pass per latent dimension: small flows only) or 'none' (the Gaussian term and the batch
    norms only, no volume change; cheaper, and blind to how the flow compresses space). Batch norm layers must be
    in eval mode (running statistics).
    """
    module, fast_steps = _module(flow)
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    _check_w(module, w)
    steps = fast_steps if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"the solver needs at least 1 step, got {steps}")
    c = module._inputs(w, cond)  # [B, C]
    x = w.to(c.dtype)
    log_det = x.new_zeros(*x.shape[:-1], 1)  # accumulated log|dz/dw| per row
    for i, block in enumerate(module.chain):
        if isinstance(block, CNF):
            probe = _probe(x.shape, probe_seed + i, x.device, x.dtype) if divergence == "approximate" else None
            x, div = _integrate(block, x, c, steps=steps, probe=probe, divergence=divergence)
            log_det = log_det + div
        elif isinstance(block, MovingBatchNorm):
            if block.training:
                raise RuntimeError("reading a condition uses running batch-norm statistics: call flow.eval() first")
            x, delta = block(x, x.new_zeros(*x.shape[:-1], 1))
            log_det = log_det - delta  # the block returns logp - log|det|
        else:
            raise ValueError(f"cannot read a condition through a flow layer of kind {type(block).__name__}")
    prior = -0.5 * (x * x + _LOG_2PI).flatten(1).sum(1)  # [B]
    return prior + log_det.flatten(1).sum(1)


def condition_scale(flow, layout: ConditionLayout) -> torch.Tensor:
    """The spread of each condition value [C]: the training data's standard deviation when the flow file records it
    (``extras['cond_std']``), else a quarter of an attribute's slider range and 1 for a lighting coefficient."""
    stats = _stats(flow, layout, "cond_std")
    fallback = [1.0] * layout.num_light + [(a.range[1] - a.range[0]) / 4 for a in layout.attributes]
    if stats is None:
        return torch.tensor(fallback)
    return torch.tensor([s if s > 1e-6 else f for s, f in zip(stats, fallback)])


def condition_bounds(flow, layout: ConditionLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """(low [C], high [C]) a reading may take: each attribute's slider range, widened to the training data's
    extremes (``extras['cond_min']`` / ``['cond_max']``) when the file records them; lighting within the data's
    extremes, else unbounded."""
    lo = [-math.inf] * layout.num_light + [a.range[0] for a in layout.attributes]
    hi = [math.inf] * layout.num_light + [a.range[1] for a in layout.attributes]
    data_lo, data_hi = _stats(flow, layout, "cond_min"), _stats(flow, layout, "cond_max")
    if data_lo is not None and data_hi is not None:
        for i in range(layout.cond_dim):
            light = i < layout.num_light
            lo[i] = data_lo[i] if light else min(lo[i], data_lo[i])
            hi[i] = data_hi[i] if light else max(hi[i], data_hi[i])
    return torch.tensor(lo), torch.tensor(hi)


def condition_mean(flow, layout: ConditionLayout) -> torch.Tensor:
    """The training conditions' mean [C] when the flow file records it (``extras['cond_mean']``), else the
    layout's neutral condition (lighting 0, attributes at the middle of their range)."""
    stats = _stats(flow, layout, "cond_mean")
    return torch.tensor(stats if stats is not None else layout.neutral())


def _stats(flow, layout: ConditionLayout, key: str) -> list[float] | None:
    """A per-condition statistic from the flow file's extras, when it is there, fits the layout's size and (if the
    file names its columns) names the layout's columns."""
    extras = getattr(getattr(flow, "flow", flow), "extras", None) or getattr(flow, "extras", None) or {}
    values, names = extras.get(key), extras.get("cond_names")
    if not isinstance(values, (list, tuple)) or len(values) != layout.cond_dim:
        return None
    if names is not None and tuple(names) != layout.condition_names:
        return None
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


@dataclass(frozen=True)
class ConditionFit:
    """The result of ``fit_condition``: the condition read [B, C], its log-likelihood [B] (nats), the start [B, C]
    and the log-likelihood after every step [steps_run + 1, B] (row 0: the start's), ``stopped``: cancelled before
    the last step."""

    condition: torch.Tensor
    log_likelihood: torch.Tensor
    start: torch.Tensor
    trajectory: torch.Tensor
    steps_run: int
    stopped: bool = False


def fit_condition(flow, w: torch.Tensor, start: torch.Tensor | None = None, *, layout: ConditionLayout | None = None,
                  steps: int = 20, lr: float = 0.3, solver_steps: int | None = SOLVER_STEPS,
                  divergence: str = "approximate", prior: float = PRIOR,
                  bounds: tuple[torch.Tensor, torch.Tensor] | None = None, scale: torch.Tensor | None = None,
                  binary: Sequence[str] = ("glasses",), snap: bool = True, probe_seed: int = 0,
                  progress: Callable[[int, int, float], None] | None = None,
                  cancelled: Callable[[], bool] | None = None) -> ConditionFit:
    """The condition [B, C] under which the flow finds ``w`` most likely, from ``start``.

    w: [B, num_ws, w_dim] or [B, w_dim]; start: [B, C] or [C] (an estimator's reading; None: the training
    conditions' mean, ``condition_mean``). layout: the flow's (default ``flow_layout_of``). steps: Adam steps of
    ``lr`` in units of ``scale`` [C] (default ``condition_scale``). solver_steps / divergence / probe_seed: the
    objective (``log_likelihood``); prior: the weight per W+ row of the Gaussian prior ``N(condition_mean, scale)``
    added to it (0: maximum likelihood alone); the trajectory and log-likelihoods include the prior term.
    bounds: (low [C], high [C]), default ``condition_bounds``; the start is clamped into them and every step
    projected back. binary: attribute names read as yes/no (those the layout lacks are ignored); with ``snap``,
    each is finally set to whichever of its relaxed value and its range's two ends is most likely.
    progress(step, steps, mean log-likelihood) after every step; cancelled() is asked before every step, and a
    True stops the fit with the best condition so far (``stopped``, no snapping).
    Returns the best condition seen per sample (never less likely than the clamped start).
    """
    module, _ = _module(flow)
    layout = flow_layout_of(flow, layout)
    layout.check_size(module.cfg.cond_dim)
    _check_w(module, w)
    if steps < 0 or not lr > 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    dtype, device, n = torch.float32, w.device, w.shape[0]
    lo, hi = condition_bounds(flow, layout) if bounds is None else bounds
    lo, hi = (torch.as_tensor(b, dtype=dtype).to(device).reshape(-1) for b in (lo, hi))
    sc = (condition_scale(flow, layout) if scale is None else torch.as_tensor(scale, dtype=dtype)).to(device)
    for what, t in (("low bounds", lo), ("high bounds", hi), ("scale", sc)):
        if t.shape != (layout.cond_dim,):
            raise ValueError(f"the {what} must hold {layout.cond_dim} values, got {tuple(t.shape)}")
    if not bool((lo <= hi).all()) or not bool((sc > 0).all()):
        raise ValueError("the bounds must run from low to high and the scale must be positive")
    c0 = condition_mean(flow, layout) if start is None else torch.as_tensor(start, dtype=dtype)
    c0 = c0.to(device=device, dtype=dtype)
    c0 = c0.expand(n, -1) if c0.ndim == 1 else c0
    if c0.shape != (n, layout.cond_dim):
        raise ValueError(f"the start must be [{n}, {layout.cond_dim}] or [{layout.cond_dim}], got {tuple(c0.shape)}")
    c0 = torch.maximum(torch.minimum(c0, hi), lo)
    w = w.detach().to(dtype)

    mean = condition_mean(flow, layout).to(device)
    weight = prior * (w.shape[1] if w.ndim == 3 else 1)  # the flow counts every row as a point

    def objective(c: torch.Tensor) -> torch.Tensor:
        ll = log_likelihood(flow, w, c, steps=solver_steps, divergence=divergence, probe_seed=probe_seed)
        return ll - 0.5 * weight * (((c - mean) / sc) ** 2).sum(1) if weight else ll

    u = torch.zeros_like(c0, requires_grad=True)  # (c - c0) / scale
    opt = torch.optim.Adam([u], lr=lr)
    best, best_ll = c0.clone(), torch.full((n,), -math.inf, device=device)
    trajectory, stopped, done = [], False, 0
    for step in range(steps + 1):
        if step and cancelled is not None and cancelled():
            stopped = True
            break
        c = c0 + u * sc
        ll = objective(c)  # [B]
        with torch.no_grad():
            better = ll > best_ll
            best = torch.where(better[:, None], c.detach(), best)
            best_ll = torch.where(better, ll.detach(), best_ll)
        trajectory.append(ll.detach())
        done = step
        if step and progress is not None:
            progress(step, steps, float(ll.detach().mean()))
        if step == steps:
            break
        opt.zero_grad(set_to_none=True)
        (-ll.sum()).backward()
        opt.step()
        with torch.no_grad():  # project onto the bounds
            u.copy_((torch.maximum(torch.minimum(c0 + u * sc, hi), lo) - c0) / sc)
    if snap and not stopped:
        best, best_ll = _snap(objective, best, best_ll, layout, binary, lo, hi)
    return ConditionFit(best.detach(), best_ll.detach(), c0, torch.stack(trajectory), done, stopped)


@torch.no_grad()
def _snap(objective, cond: torch.Tensor, ll: torch.Tensor, layout: ConditionLayout, binary: Sequence[str],
          lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each binary attribute at its relaxed value or either end of its range, whichever is most likely."""
    names = [layout.canonical(b) for b in binary if b in layout.names or _known(layout, b)]
    for name in dict.fromkeys(names):
        i = layout.index(name)
        ends = (max(float(lo[i]), layout.spec(name).range[0]), min(float(hi[i]), layout.spec(name).range[1]))
        for value in ends:
            trial = cond.clone()
            trial[:, i] = value
            trial_ll = objective(trial)
            better = trial_ll > ll
            cond = torch.where(better[:, None], trial, cond)
            ll = torch.where(better, trial_ll, ll)
    return cond, ll


def _known(layout: ConditionLayout, name: str) -> bool:
    try:
        layout.canonical(name)
    except ValueError:
        return False
    return True


__all__ = ["DIVERGENCES", "SOLVER_STEPS", "PRIOR", "ConditionFit", "log_likelihood", "fit_condition",
           "condition_bounds", "condition_scale", "condition_mean"]
