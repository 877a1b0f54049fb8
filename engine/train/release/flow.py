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

import json
import os
from pathlib import Path

import numpy as np
import torch

from engine.algorithms.flow_edit import AttributeEdit, FastSteps, apply_edits, flow_layout_of
from engine.assets import DEFAULT_FLOW, default_estimator_path
from engine.files.flows import load_flow, save_flow
from engine.files.loading import load_generator
from engine.files.paths import write_json
from engine.jobs.render import mixed_ws, read_condition, render_ws
from engine.models.estimator import load_estimator
from engine.project import EditState
from engine.train.release.manifest import (
    eval_curve,
    file_facts,
    hardware,
    latency_ms,
    release_facts,
    released_generator,
)

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
    times = {fast: latency_ms(lambda f=fast: apply_edits(bound, w, cond0, edit, fast=f), runs=runs)
             for fast in (False, True)}
    return {"edit": "age +20 years (encode + decode)", "faces": faces, "runs": runs,
            "threads": torch.get_num_threads(), "tolerance_w": FAST_TOLERANCE, **chosen,
            "edit_size_max_abs_w": float((ref - w).abs().max()), "faithful_ms": times[False], "fast_ms": times[True]}


def release_flow(flow_file: str | os.PathLike, out_dir: str | os.PathLike, *, runs: int = 10,
                 estimator: str | os.PathLike | None = None, command_line: str = "") -> dict:
    """Release ``flow_file`` (``RUN/flow.pt`` of ``train flow``) next to the generator it belongs to. -> manifest"""
    flow_file, out_dir = Path(flow_file), Path(out_dir)
    flow = load_flow(flow_file)
    extras = flow.extras
    g_path, g_sha = released_generator(out_dir, extras.get("generator_sha256"), source=flow_file, what="a flow")
    state = {k: v.clone() for k, v in flow.state_dict().items()}  # running the flow bumps its evaluation counters
    G = load_generator(g_path)
    est = load_estimator(estimator if estimator is not None else default_estimator_path()).eval()
    figures = edit_figures(flow, G, est, runs=runs)
    flow.load_state_dict(state)
    extras = {**extras, "fast_steps": figures["fast_steps"]}
    out_path = out_dir / DEFAULT_FLOW
    save_flow(out_path, flow, extras=extras)
    command = extras.get("command_line") or ""
    manifest = {
        **file_facts(out_path), "format": "face-editor/styleflow",
        "parameters": sum(p.numel() for p in flow.parameters()), "architecture": flow.cfg.to_dict(),
        "generator_sha256": g_sha, "command": command, "data": json.loads(extras.get("data", "{}")),
        "train_config": json.loads(extras.get("train_config", "{}")),
        "training_steps": extras.get("training_steps"), "training_time_s": extras.get("training_time_s"),
        "hardware": hardware(command=command), **release_facts(flow_file, command_line=command_line),
        "held_out_nll_nats_per_dim": extras.get("val_nll_nats_per_dim"),
        "held_out_nll_curve": eval_curve(flow_file.parent), "edit": figures,
    }
    return write_json(out_dir / f"{Path(DEFAULT_FLOW).stem}.json", manifest)


__all__ = ["FAST_STEP_CHOICES", "FAST_TOLERANCE", "edit_figures", "release_flow"]
