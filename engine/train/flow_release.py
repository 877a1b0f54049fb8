"""The release of a trained StyleFlow flow as the embedded default's attribute flow (``assets/flow.pt``).

``release_flow(flow_file, out_dir)`` checks that the flow was trained on the generator released in ``out_dir``
(the sha256 recorded by ``train flow`` must match ``out_dir/generator.pt``: a flow only means something in the W
space it was trained on), writes ``flow.pt`` in the project's format and ``flow.json``: sha256, architecture, the
training command and data recipe, steps and time, the held-out negative log-likelihood (curve from the run's
``eval.csv``), and the latency and accuracy of one attribute edit on the released generator, faithful and fast.
"""
from __future__ import annotations

import csv
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from ..algorithms.flow_edit import AttributeEdit, apply_edits
from ..assets import DEFAULT_FLOW, DEFAULT_GENERATOR, default_estimator_path
from ..errors import ModelFormatError
from ..estimator_eval import cpu_model
from ..loading import file_sha256, load_generator
from ..models.estimator import load_estimator
from ..models.flow import load_flow, save_flow
from ..project import EditState
from ..render import mixed_ws, read_condition, render_ws


def _percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]


def edit_figures(flow, G, estimator, *, runs: int = 10, seed: int = 0) -> dict:
    """Latency (ms, median / p95) of one age edit (both solves) on seed ``seed``'s face, faithful and fast, and
    the largest difference between the two edited latents."""
    state = EditState(seed=seed)
    w = mixed_ws(G, state)  # [1, num_ws, w_dim]
    cond0 = read_condition(estimator, render_ws(G, w, state))
    age = float(cond0[0, 9 + 6])
    edit = (AttributeEdit("attribute", "age", age + 20.0),)
    out, times = {}, {}
    for fast in (False, True):
        ms = []
        for _ in range(runs):
            t0 = time.perf_counter()
            w_new, _ = apply_edits(flow, w, cond0, edit, fast=fast)
            ms.append((time.perf_counter() - t0) * 1e3)
        out[fast], times[fast] = w_new, ms
    return {
        "edit": "age +20 years on seed 0 (encode + decode)", "runs": runs, "threads": torch.get_num_threads(),
        "faithful_ms": {"median": round(statistics.median(times[False]), 1),
                        "p95": round(_percentile(times[False], 0.95), 1)},
        "fast_ms": {"median": round(statistics.median(times[True]), 1),
                    "p95": round(_percentile(times[True], 0.95), 1)},
        "fast_vs_faithful_max_abs_w": float((out[True] - out[False]).abs().max()),
        "edit_size_max_abs_w": float((out[False] - w).abs().max()),
    }


def _eval_curve(run_dir: Path) -> list[dict]:
    path = run_dir / "eval.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def release_flow(flow_file: str | os.PathLike, out_dir: str | os.PathLike, *, runs: int = 10,
                 estimator: str | os.PathLike | None = None, command_line: str = "") -> dict:
    """Release ``flow_file`` (``RUN/flow.pt`` of ``train flow``) next to the generator it belongs to. -> manifest"""
    flow_file, out_dir = Path(flow_file), Path(out_dir)
    flow = load_flow(flow_file)
    extras = flow.extras
    g_path = out_dir / DEFAULT_GENERATOR
    if not g_path.is_file():
        raise ModelFormatError(f"there is no generator at {g_path} to release the flow for")
    g_sha = file_sha256(g_path)
    if extras.get("generator_sha256") != g_sha:
        raise ModelFormatError(f"{flow_file} was trained on generator {str(extras.get('generator_sha256'))[:12]}..., "
                               f"not on {g_path.name} ({g_sha[:12]}...): train a flow for this generator first")
    out_path = out_dir / DEFAULT_FLOW
    save_flow(out_path, flow, extras=extras)  # before timing: running the flow bumps its evaluation counters
    G = load_generator(g_path)
    est = load_estimator(estimator if estimator is not None else default_estimator_path()).eval()
    figures = edit_figures(flow, G, est, runs=runs)
    manifest = {
        "file": DEFAULT_FLOW, "sha256": file_sha256(out_path), "bytes": out_path.stat().st_size,
        "format": "face-editor/styleflow", "parameters": sum(p.numel() for p in flow.parameters()),
        "architecture": flow.cfg.to_dict(), "generator_sha256": g_sha,
        "command": extras.get("command_line"), "data": json.loads(extras.get("data", "{}")),
        "train_config": json.loads(extras.get("train_config", "{}")),
        "training_steps": extras.get("training_steps"), "training_time_s": extras.get("training_time_s"),
        "hardware": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "torch": torch.__version__},
        "held_out_nll_nats_per_dim": extras.get("val_nll_nats_per_dim"),
        "held_out_nll_curve": _eval_curve(flow_file.parent),
        "edit": figures, "release_command": command_line,
    }
    (out_dir / "flow.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def add_release_flow_command(sub) -> None:
    p = sub.add_parser("release-flow", help="release a trained flow as the embedded default's attribute flow",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("flow", help="RUN/flow.pt written by train flow")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "assets"),
                   help="the assets folder holding generator.pt (default: this checkout's)")
    p.add_argument("--runs", type=int, default=10, help="timed edits per solver for the manifest")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    torch.set_num_threads(args.threads)
    m = release_flow(args.flow, args.out, runs=args.runs, command_line=shlex.join(["main.py", *sys.argv[1:]]))
    e = m["edit"]
    print(f"released {Path(args.out) / DEFAULT_FLOW} (sha256 {m['sha256'][:12]}...): held-out NLL "
          f"{m['held_out_nll_nats_per_dim']} nats/dim; one edit {e['faithful_ms']['median']} ms faithful, "
          f"{e['fast_ms']['median']} ms fast (max |dw| {e['fast_vs_faithful_max_abs_w']:.2e})")
    return 0
