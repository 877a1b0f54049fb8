"""CPU latency and accuracy of one StyleFlow slider edit: both solves (w -> z, then z -> w'), batch 1, 18 W+ rows.

The released architecture (512-dim, five 512 hidden layers, condition 17, one block) with random weights, in two
variants: PyTorch's default init ("init", gentle dynamics) and "stressed" (the fixture's re-draws: layer weights x3,
condition columns of the hyper layers x0.15, gate biases 0.5 N(0,1), T = 1.21, random batch-norm statistics),
whose velocity field bends more, as a trained one may. Faithful = StyleFlow's dopri5 at 1e-5 with the Hutchinson
log-density; fast = x alone, fixed-step RK4. Errors are max |w_fast - w_faithful| and the relative L2 error of the
decoded w' against the faithful path, and against a float64 solve at 1e-9 (the "exact" flow).

    python benchmarks/flow.py [--runs 20] [--threads 2] [--steps 3 4 6]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.models import flow as F  # noqa: E402


def summary(values: list[float]) -> dict:
    v = sorted(values)
    p95 = v[min(len(v) - 1, round(0.95 * (len(v) - 1)))]
    return {"median_ms": round(statistics.median(v), 2), "p95_ms": round(p95, 2)}


def released(seed: int, *, stressed: bool) -> F.ConditionalCNF:
    torch.manual_seed(seed)
    flow = F.ConditionalCNF(F.FlowConfig()).eval()
    if not stressed:
        return flow
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in flow.named_parameters():
            if name.endswith("_layer.weight"):
                p.mul_(3)
            elif name.endswith(("_hyper_bias.weight", "_hyper_gate.weight")):
                p[:, 1:].mul_(0.15)
            elif name.endswith("_hyper_gate.bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith("sqrt_end_time"):
                p.fill_(1.1)
        for m in flow.chain:
            if isinstance(m, F.MovingBatchNorm):
                m.weight.copy_(0.15 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.5 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=g))
    return flow


def edit_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w [1, 18, 512], the source condition and a target with the age raised by 15 years (raw units)."""
    g = torch.Generator().manual_seed(seed)
    w = 0.8 * torch.randn(1, 18, 512, generator=g)
    light = torch.cat([torch.tensor([[0.85]]), 0.2 * torch.randn(1, 8, generator=g)], 1)
    attrs = torch.tensor([[0.0, 0.0, 5.0, -3.0, 0.1, 0.0, 30.0, 0.7]])  # gender .. expression
    src = torch.cat([light, attrs], 1)  # [1, 17]
    tgt = src.clone()
    tgt[0, 9 + 6] += 15.0
    return w, src, tgt


def edit(flow: F.ConditionalCNF, w, src, tgt, *, fast: bool, steps: int) -> torch.Tensor:
    return flow.z_to_w(flow.w_to_z(w, src, fast=fast, fast_steps=steps), tgt, fast=fast, fast_steps=steps)


def timed(fn) -> list[float]:
    t0 = time.perf_counter()
    fn()
    return [1000 * (time.perf_counter() - t0)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, nargs="+", default=[3, 4, 6])
    args = ap.parse_args(argv)
    report: dict = {"fast_default_steps": F.FAST_STEPS, "accuracy": {}, "latency": {}}
    w, src, tgt = edit_inputs(0)
    torch.set_num_threads(max(args.threads))
    for variant in ("init", "stressed"):
        flow = released(1, stressed=variant == "stressed")
        exact = F.ConditionalCNF(F.FlowConfig(atol=1e-9, rtol=1e-9)).double().eval()
        exact.load_state_dict(flow.state_dict())
        ref = edit(flow, w, src, tgt, fast=False, steps=0)
        w_exact = edit(exact, w.double(), src.double(), tgt.double(), fast=False, steps=0).float()
        rows = {"faithful": {"max_abs_vs_exact": float((ref - w_exact).abs().max()),
                             "edit_size_max_abs": float((ref - w).abs().max())}}
        for steps in args.steps:
            fast = edit(flow, w, src, tgt, fast=True, steps=steps)
            back = flow.z_to_w(flow.w_to_z(fast, tgt, fast=True, fast_steps=steps), src, fast=True, fast_steps=steps)
            rows[f"fast_rk4_{steps}"] = {
                "max_abs_vs_faithful": float((fast - ref).abs().max()),
                "rel_l2_vs_faithful": float((fast - ref).norm() / ref.norm()),
                "max_abs_vs_exact": float((fast - w_exact).abs().max()),
                "undo_round_trip_max_abs": float((back - w).abs().max()),
            }
        report["accuracy"][variant] = rows
    flows = {v: released(1, stressed=v == "stressed") for v in ("init", "stressed")}
    methods = {f"faithful_{v}": (lambda f=f: edit(f, w, src, tgt, fast=False, steps=0)) for v, f in flows.items()}
    methods.update({f"fast_rk4_{n}": (lambda n=n: edit(flows["init"], w, src, tgt, fast=True, steps=n))
                    for n in args.steps})  # the fast path's cost does not depend on the weights
    for threads in args.threads:
        torch.set_num_threads(threads)
        times = {name: [] for name in methods}
        for fn in methods.values():
            fn()  # warm-up
        for _ in range(args.runs):  # round robin: a load change on the machine hits every method alike
            for name, fn in methods.items():
                times[name] += timed(fn)
        row = {name: summary(t) for name, t in times.items()}
        for name in row:
            row[name]["ratio_to_faithful_init"] = round(row[name]["median_ms"] / row["faithful_init"]["median_ms"], 3)
        report["latency"][f"{threads}_threads"] = row
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
