"""StyleFlow's conditional continuous normalizing flow (Abdal et al. 2021; the CNF of FFJORD / PointFlow).

A chain ``[BN, CNF, BN, CNF, ..., BN]`` maps W+ latents to a standard Gaussian, conditioned on lighting and
attributes. Each CNF block integrates ``dx/dt = f(t, x, c)`` with torchdiffeq from 0 to ``T = sqrt_end_time**2``
(a learned end time) and the log-density along with it, ``dlogp/dt = -tr(df/dx)``, estimated as StyleFlow does
with Hutchinson's estimator (one Gaussian noise draw per block per call, from the global RNG) or exactly.
``f`` is a stack of ConcatSquash layers whose gates and biases are linear in ``[t, c]``; tanh between layers.

Directions follow StyleFlow: ``flow(w, c)`` maps W -> Z, ``flow(z, c, reverse=True)`` maps Z -> W. Rows of a W+
latent ([B, num_ws, dim]) are independent points that share their sample's condition; a 2-D [B, dim] layout works
too. The module and buffer names reproduce the released ``modellarge10k.pt`` state dict, so those weights load
as they are (``engine.files.flows.load_flow``). ``w_to_z`` / ``z_to_w`` are the editing entry points: the faithful
path reproduces StyleFlow's numbers; ``fast=True`` integrates x alone (no divergence) with a fixed-step RK4, see
``FAST_METHOD`` / ``FAST_STEPS`` and ``benchmarks/flow.py`` for its measured error and speed.

Project file layout (a ``torch.save`` of plain containers, loadable with ``weights_only=True``)::

    {"format": "face-editor/styleflow", "format_version": 1,
     "arch": FlowConfig as a dict, "state_dict": {...}, "extras": {...}}    # extras: free-form metadata

What the condition values mean (``flow_layout.ConditionLayout``) is stored as ``extras["condition_layout"]``
(``ConditionLayout.to_dict()``); reading and writing these files is ``engine.files.flows``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from engine.files.configs import DictForm

FORMAT = "face-editor/styleflow"
FORMAT_VERSION = 1
DIVERGENCES = ("approximate", "exact")
ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_SOLVERS = ("euler", "midpoint", "rk4")
# The fast edit path: x alone, fixed-step RK4. Measured (benchmarks/flow.py, tests): w within 4e-4 of the faithful
# path (whose own solver error is up to 6e-4), within 1.2e-4 of the exact flow; ~4x faster per edit.
FAST_METHOD = "rk4"
FAST_STEPS = 3


@dataclass(frozen=True)
class FlowConfig(DictForm, what="the flow's architecture"):
    """Everything StyleFlow's builder ``cnf(input_dim, dims, zdim, num_blocks)`` and its fixed settings define.

    Defaults are the released model: ``cnf(512, '512-512-512-512-512', 17, 1)``, dopri5 at atol = rtol = 1e-5,
    Hutchinson divergence, moving batch norm (eps 1e-4, decay 0.1) around every block, learned end time from T=1.
    input_dim: the latent width (W); hidden_dims: widths of the ODE net's hidden layers; cond_dim: the condition
    size (9 SH lighting coefficients + 8 attributes in StyleFlow). end_time: the initial T (``sqrt_end_time`` starts
    at its square root; fixed when ``train_end_time`` is off). step_size: required by the fixed-step solvers.
    adjoint: gradients through ``odeint_adjoint`` (StyleFlow's training); forward values are the same either way.
    """

    input_dim: int = 512
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512, 512)
    cond_dim: int = 17
    num_blocks: int = 1
    batch_norm: bool = True
    bn_eps: float = 1e-4
    bn_decay: float = 0.1
    end_time: float = 1.0
    train_end_time: bool = True
    solver: str = "dopri5"
    atol: float = 1e-5
    rtol: float = 1e-5
    step_size: float | None = None
    divergence: str = "approximate"
    adjoint: bool = True

    def __post_init__(self):
        object.__setattr__(self, "hidden_dims", tuple(int(h) for h in self.hidden_dims))
        if self.input_dim <= 0 or self.cond_dim < 0 or self.num_blocks <= 0 or any(h <= 0 for h in self.hidden_dims):
            raise ValueError(f"input_dim, hidden_dims and num_blocks must be positive and cond_dim >= 0, got "
                             f"{self.input_dim}, {list(self.hidden_dims)}, {self.num_blocks}, {self.cond_dim}")
        if self.solver not in ADAPTIVE_SOLVERS + FIXED_SOLVERS:
            raise ValueError(f"unknown solver {self.solver!r}; choose one of {ADAPTIVE_SOLVERS + FIXED_SOLVERS}")
        if self.solver in FIXED_SOLVERS and not (self.step_size and self.step_size > 0):
            raise ValueError(f"the fixed-step solver {self.solver!r} needs a positive step_size")
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {self.divergence!r}")
        if self.end_time <= 0 or self.atol <= 0 or self.rtol <= 0 or self.bn_eps <= 0:
            raise ValueError("end_time, atol, rtol and bn_eps must be positive")

    @classmethod
    def styleflow(cls, input_dim: int, dims: str, zdim: int, num_blocks: int, **settings) -> FlowConfig:
        """The config of StyleFlow's builder call ``cnf(input_dim, dims, zdim, num_blocks)`` (dims like '512-512')."""
        return cls(input_dim=input_dim, hidden_dims=tuple(int(d) for d in dims.split("-")), cond_dim=zdim,
                   num_blocks=num_blocks, **settings)

    @property
    def layer_dims(self) -> list[tuple[int, int]]:
        """(in, out) of every ConcatSquash layer: input_dim -> hidden... -> input_dim."""
        widths = (self.input_dim, *self.hidden_dims, self.input_dim)
        return list(zip(widths[:-1], widths[1:]))


class MovingBatchNorm(nn.Module):
    """StyleFlow's MovingBatchNorm1d (lag 0): per-feature normalisation with a log-scale weight, invertible.

    Eval (and always in reverse): running statistics. Train, forward: the batch statistics over all leading axes
    (unbiased variance), and ``running -= decay * (running - batch)``, ``step += 1``.
    """

    def __init__(self, dim: int, *, eps: float = 1e-4, decay: float = 0.1):
        super().__init__()
        self.eps, self.decay = eps, decay
        self.weight = nn.Parameter(torch.zeros(dim))  # log-scale
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("step", torch.zeros(1))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def _statistics(self, x: torch.Tensor, reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.training or reverse:
            return self.running_mean, self.running_var
        flat = x.reshape(-1, x.shape[-1])  # [N, D]: batch and rows together
        mean, var = flat.mean(0), flat.var(0)
        with torch.no_grad():
            self.running_mean -= self.decay * (self.running_mean - mean)
            self.running_var -= self.decay * (self.running_var - var)
            self.step += 1
        return mean, var

    def forward(self, x: torch.Tensor, logp: torch.Tensor, *, reverse: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [..., D], logp [..., 1] -> (y [..., D], logp [..., 1])."""
        mean, var = self._statistics(x, reverse)
        log_scale = (-0.5 * torch.log(var + self.eps) + self.weight).expand_as(x)  # log |dy/dx| per feature
        log_det = log_scale.sum(-1, keepdim=True)
        if reverse:
            y = (x - self.bias) * torch.exp(-self.weight) * torch.exp(0.5 * torch.log(var + self.eps)) + mean
            return y, logp + log_det
        y = (x - mean) * torch.exp(-0.5 * torch.log(var + self.eps)) * torch.exp(self.weight) + self.bias
        return y, logp - log_det


class ConcatSquashLinear(nn.Module):
    """``Linear(x) * sigmoid(Gate([t, c])) + Bias([t, c])``: gate and bias are per sample, shared by its rows."""

    def __init__(self, dim_in: int, dim_out: int, dim_tc: int):
        super().__init__()
        self._layer = nn.Linear(dim_in, dim_out)
        self._hyper_bias = nn.Linear(dim_tc, dim_out, bias=False)
        self._hyper_gate = nn.Linear(dim_tc, dim_out)

    def forward(self, tc: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """tc [B, 1+C], x [B, ..., in] -> [B, ..., out]."""
        lead = (tc.shape[0],) + (1,) * (x.dim() - 2) + (-1,)
        gate = torch.sigmoid(self._hyper_gate(tc)).view(lead)
        return self._layer(x) * gate + self._hyper_bias(tc).view(lead)


class ODEnet(nn.Module):
    """The velocity field f(t, x, c): ConcatSquash layers with tanh between them (none after the last)."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.layers = nn.ModuleList(ConcatSquashLinear(i, o, 1 + cfg.cond_dim) for i, o in cfg.layer_dims)

    def forward(self, tc: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = x
        for k, layer in enumerate(self.layers):
            h = layer(tc, h)
            if k < len(self.layers) - 1:
                h = torch.tanh(h)
        return h


class ODEfunc(nn.Module):
    """Right-hand side of the augmented ODE ``(x, logp, c)``: (f, -divergence, 0). Counts evaluations."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.diffeq = ODEnet(cfg)
        self.divergence = cfg.divergence
        self.register_buffer("_num_evals", torch.tensor(0.0))
        self.noise: torch.Tensor | None = None  # Hutchinson noise of the latest call, shape of x

    def velocity(self, t: torch.Tensor, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """f(t, x, c) alone (the fast path). t scalar, x [B, ..., D], c [B, C]."""
        self._num_evals += 1
        return self.diffeq(self._tc(t, x, c), x)

    @staticmethod
    def _tc(t: torch.Tensor, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.cat([t.detach().to(x).expand(x.shape[0], 1), c], dim=1)  # [B, 1+C]

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x, _, c = state
        self._num_evals += 1
        create_graph = torch.is_grad_enabled()  # training: the divergence must be differentiable too
        with torch.enable_grad():
            if not (create_graph and x.requires_grad):
                x = x.detach().requires_grad_(True)
            dx = self.diffeq(self._tc(t, x, c), x)
            if self.divergence == "approximate":
                e_jac = torch.autograd.grad(dx, x, self.noise, create_graph=create_graph)[0]
                div = (e_jac * self.noise).sum(-1, keepdim=True)
            else:
                div = sum(torch.autograd.grad(dx[..., i].sum(), x, create_graph=create_graph, retain_graph=True)[0]
                          [..., i:i + 1] for i in range(x.shape[-1]))
        if not create_graph:
            dx, div = dx.detach(), div.detach()
        return dx, -div, torch.zeros_like(c)


class CNF(nn.Module):
    """One continuous block: integrate (x, logp, c) over [0, T] (or [T, 0] in reverse) with torchdiffeq."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.train_end_time:
            self.sqrt_end_time = nn.Parameter(torch.tensor(math.sqrt(cfg.end_time)))
        self.odefunc = ODEfunc(cfg)

    def times(self, x: torch.Tensor, *, reverse: bool, steps: int = 1) -> torch.Tensor:
        """``steps + 1`` times from 0 to T (T to 0 in reverse), in x's dtype."""
        end = self.sqrt_end_time * self.sqrt_end_time if self.cfg.train_end_time else torch.tensor(self.cfg.end_time)
        t = torch.linspace(0, 1, steps + 1, dtype=x.dtype, device=x.device) * end.to(x)
        return t.flip(0) if reverse else t

    def _options(self) -> dict:
        return {"step_size": self.cfg.step_size} if self.cfg.solver in FIXED_SOLVERS else {}

    def forward(self, x: torch.Tensor, logp: torch.Tensor, c: torch.Tensor, *, reverse: bool = False,
                noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, ..., D], logp [B, ..., 1], c [B, C]; noise: this call's Hutchinson noise (default: drawn)."""
        func = self.odefunc
        func._num_evals.fill_(0)
        if func.divergence == "approximate":
            if noise is not None and noise.shape != x.shape:
                raise ValueError(f"divergence noise has shape {tuple(noise.shape)}, x has {tuple(x.shape)}")
            func.noise = noise.to(x) if noise is not None else torch.randn_like(x)
        from torchdiffeq import odeint, odeint_adjoint  # imported on the first solve: 0.4 s (scipy) off start-up

        solve = odeint_adjoint if self.cfg.adjoint and torch.is_grad_enabled() else odeint
        # the noise stays set after the solve: the adjoint method's backward pass evaluates the function again
        xs, logps, _ = solve(func, (x, logp, c), self.times(x, reverse=reverse), atol=self.cfg.atol,
                             rtol=self.cfg.rtol, method=self.cfg.solver, options=self._options())
        return xs[-1], logps[-1]

    def transport(self, x: torch.Tensor, c: torch.Tensor, *, reverse: bool, method: str, steps: int) -> torch.Tensor:
        """x alone along the flow, with a fixed-step solver: no log-density, no divergence."""
        from torchdiffeq import odeint

        self.odefunc._num_evals.fill_(0)
        xs = odeint(lambda t, y: self.odefunc.velocity(t, y, c), x, self.times(x, reverse=reverse, steps=steps),
                    method=method)
        return xs[-1]


class ConditionalCNF(nn.Module):
    """StyleFlow's ``SequentialFlow``: ``chain`` = [BN, CNF, BN, ..., BN] (or CNFs alone without batch norm)."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.cfg = cfg
        blocks: list[nn.Module] = []
        for _ in range(cfg.num_blocks):
            if cfg.batch_norm:
                blocks.append(MovingBatchNorm(cfg.input_dim, eps=cfg.bn_eps, decay=cfg.bn_decay))
            blocks.append(CNF(cfg))
        if cfg.batch_norm:
            blocks.append(MovingBatchNorm(cfg.input_dim, eps=cfg.bn_eps, decay=cfg.bn_decay))
        self.chain = nn.ModuleList(blocks)
        self.info = None  # a loading.ModelInfo once loaded from a file

    def _inputs(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[-1] != self.cfg.input_dim:
            raise ValueError(f"x must be [B, ..., {self.cfg.input_dim}], got {tuple(x.shape)}")
        c = cond.reshape(cond.shape[0], -1).to(x)  # [B, C]; StyleFlow passes [B, C, 1, 1]
        if c.shape != (x.shape[0], self.cfg.cond_dim):
            raise ValueError(f"cond must hold {self.cfg.cond_dim} values per sample for a batch of {x.shape[0]}, "
                             f"got {tuple(cond.shape)}")
        return c

    def _order(self, reverse: bool) -> list[int]:
        return list(range(len(self.chain)))[::-1] if reverse else list(range(len(self.chain)))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, logpx: torch.Tensor | None = None, *,
                reverse: bool = False, noise: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """W -> Z (``reverse=True``: Z -> W). x [B, num_ws, D] or [B, D]; cond [B, C] or [B, C, 1, 1].

        Returns ``(y, logp)`` with ``logp = logpx -+ log|det|``, [B, num_ws, 1]. Without logpx, y is StyleFlow's
        ``model(x, c)`` and logp the summed change (as for zero logpx, up to the solver tolerance).
        noise: Hutchinson noise per block, ``{"chain.<i>": tensor like x}`` (replays a recorded call); blocks
        not named draw ``torch.randn_like(x)`` from the global RNG, in the order they run (as StyleFlow).
        """
        c = self._inputs(x, cond)
        noise = dict(noise or {})
        unknown = set(noise) - {f"chain.{i}" for i, m in enumerate(self.chain) if isinstance(m, CNF)}
        if unknown:
            raise ValueError(f"noise for unknown blocks {sorted(unknown)}")
        zeros = torch.zeros(*x.shape[:-1], 1).to(x)
        logp = zeros if logpx is None else logpx
        for i in self._order(reverse):
            block = self.chain[i]
            if isinstance(block, CNF) and logpx is None:
                # StyleFlow without logpx: every block integrates its own zero log-density (a different step
                # sequence than carrying it); the changes are summed
                x, delta = block(x, zeros, c, reverse=reverse, noise=noise.get(f"chain.{i}"))
                logp = logp + delta
            elif isinstance(block, CNF):
                x, logp = block(x, logp, c, reverse=reverse, noise=noise.get(f"chain.{i}"))
            else:
                x, logp = block(x, logp, reverse=reverse)
        return x, logp

    def _transport(self, x: torch.Tensor, cond: torch.Tensor, *, reverse: bool, fast: bool, fast_steps: int
                   ) -> torch.Tensor:
        if not fast:  # as StyleFlow's UI calls it: with a zero log-density, which takes part in step control
            return self(x, cond, torch.zeros(*x.shape[:-1], 1).to(x), reverse=reverse)[0]
        c = self._inputs(x, cond)
        logp = x.new_zeros(())
        for i in self._order(reverse):
            block = self.chain[i]
            if isinstance(block, CNF):
                x = block.transport(x, c, reverse=reverse, method=FAST_METHOD, steps=fast_steps)
            elif block.training:
                raise RuntimeError("the fast path uses running batch-norm statistics: call flow.eval() first")
            else:
                x = block(x, logp, reverse=reverse)[0]
        return x

    @torch.no_grad()
    def w_to_z(self, w: torch.Tensor, cond: torch.Tensor, *, fast: bool = False, fast_steps: int = FAST_STEPS
               ) -> torch.Tensor:
        """W+ latents [B, num_ws, D] -> base points z, no gradients. fast: x alone, ``fast_steps`` RK4 steps."""
        return self._transport(w, cond, reverse=False, fast=fast, fast_steps=fast_steps)

    @torch.no_grad()
    def z_to_w(self, z: torch.Tensor, cond: torch.Tensor, *, fast: bool = False, fast_steps: int = FAST_STEPS
               ) -> torch.Tensor:
        """Base points z [B, num_ws, D] -> W+ latents under ``cond``, no gradients. fast: as in ``w_to_z``."""
        return self._transport(z, cond, reverse=True, fast=fast, fast_steps=fast_steps)

    @property
    def nfe(self) -> dict[str, int]:
        """ODE function evaluations of the latest call, per block: ``{"chain.<i>": n}``."""
        return {f"chain.{i}": int(m.odefunc._num_evals) for i, m in enumerate(self.chain) if isinstance(m, CNF)}
