"""The release of a trained StyleFlow flow as the embedded default's attribute flow (``assets/flow.pt``).

``release_flow(flow_file, out_dir)`` checks that the flow was trained on the generator released in ``out_dir``
(the sha256 recorded by ``train flow`` must match ``out_dir/generator.pt``: a flow only means something in the W
space it was trained on), writes ``flow.pt`` in the project's format and ``flow.json``: sha256, architecture, the
training command and data recipe, steps and time, the held-out negative log-likelihood (curve from the run's
``eval.csv``), and the latency and accuracy of one attribute edit on the released generator, faithful and fast.
The fast mode's step count is chosen per flow (trained flows need more steps than random ones) and stored in the
flow's extras as ``fast_steps``.
"""
from __future__ import annotations

import csv
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from engine.algorithms.flow_edit import AttributeEdit, FastSteps, apply_edits, flow_layout_of
from engine.assets import ASSETS_DIR, DEFAULT_FLOW, DEFAULT_GENERATOR, default_estimator_path
from engine.errors import ModelFormatError
from engine.files.flows import load_flow, save_flow
from engine.files.loading import load_generator
from engine.files.paths import command_line
from engine.files.storage import file_sha256
from engine.jobs.render import mixed_ws, read_condition, render_ws
from engine.models.estimator import load_estimator
from engine.project import EditState
from engine.train.release.estimator import cpu_model


def _percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round(q * (len(v) - 1)))]


FAST_STEP_CHOICES = (3, 4, 6, 8, 10, 12, 16, 24)
FAST_TOLERANCE = 5e-3  # largest |w_fast - w_faithful| over the test edits: far below a visible change (measured)


def edit_figures(flow, G, estimator, *, runs: int = 10, faces: int = 4) -> dict:
    """Choose the fast mode's RK4 step count for this flow and measure it: for an age edit of +20 years on seeds
    0..faces-1, the smallest ``FAST_STEP_CHOICES`` whose edited latents stay within ``FAST_TOLERANCE`` of the
    faithful ones (and the 8-bit pixel difference that leaves), then the latency (ms, median / p95) of one edit,
    both solves, on seed 0, faithful and fast. The flow's condition layout must have an age attribute."""
    layout = flow_layout_of(flow)
    age = layout.index("age")
    cases = []
    for seed in range(faces):
        state = EditState(seed=seed)
        w = mixed_ws(G, state)  # [1, num_ws, w_dim]
        cond0 = read_condition(estimator, render_ws(G, w, state), layout=layout)
        edit = (AttributeEdit("attribute", "age", float(cond0[0, age]) + 20.0),)
        cases.append((state, w, cond0, edit, apply_edits(flow, w, cond0, edit, fast=False)[0]))
    chosen = None
    for steps in FAST_STEP_CHOICES:
        fast = [apply_edits(FastSteps(flow, steps), w, c, e, fast=True)[0] for _, w, c, e, _ in cases]
        err = max(float((f - ref).abs().max()) for f, (*_, ref) in zip(fast, cases))
        px = max(int(np.abs(render_ws(G, f, st).astype(int) - render_ws(G, ref, st).astype(int)).max())
                 for f, (st, *_, ref) in zip(fast, cases))
        chosen = {"fast_steps": steps, "fast_vs_faithful_max_abs_w": err, "fast_vs_faithful_max_px": px}
        if err <= FAST_TOLERANCE:
            break
    _, w, cond0, edit, ref = cases[0]
    bound = FastSteps(flow, chosen["fast_steps"])
    times = {}
    for fast in (False, True):
        ms = []
        for _ in range(runs):
            t0 = time.perf_counter()
            apply_edits(bound, w, cond0, edit, fast=fast)
            ms.append((time.perf_counter() - t0) * 1e3)
        times[fast] = {"median": round(statistics.median(ms), 1), "p95": round(_percentile(ms, 0.95), 1)}
    return {"edit": "age +20 years (encode + decode)", "faces": faces, "runs": runs,
            "threads": torch.get_num_threads(), "tolerance_w": FAST_TOLERANCE, **chosen,
            "edit_size_max_abs_w": float((ref - w).abs().max()), "faithful_ms": times[False], "fast_ms": times[True]}


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
    state = {k: v.clone() for k, v in flow.state_dict().items()}  # running the flow bumps its evaluation counters
    G = load_generator(g_path)
    est = load_estimator(estimator if estimator is not None else default_estimator_path()).eval()
    figures = edit_figures(flow, G, est, runs=runs)
    flow.load_state_dict(state)
    extras = {**extras, "fast_steps": figures["fast_steps"]}
    out_path = out_dir / DEFAULT_FLOW
    save_flow(out_path, flow, extras=extras)
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
    p.add_argument("--out", default=str(ASSETS_DIR),
                   help="the assets folder holding generator.pt (default: this checkout's)")
    p.add_argument("--runs", type=int, default=10, help="timed edits per solver for the manifest")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    torch.set_num_threads(args.threads)
    m = release_flow(args.flow, args.out, runs=args.runs, command_line=command_line())
    e = m["edit"]
    print(f"released {Path(args.out) / DEFAULT_FLOW} (sha256 {m['sha256'][:12]}...): held-out NLL "
          f"{m['held_out_nll_nats_per_dim']} nats/dim; one edit {e['faithful_ms']['median']} ms faithful, "
          f"{e['fast_ms']['median']} ms fast (max |dw| {e['fast_vs_faithful_max_abs_w']:.2e})")
    return 0
