"""Attributes read from the flow itself (``condition_fit.fit_condition``) vs the attribute estimator, on the embedded
default (assets/generator.pt + assets/flow.pt).

Two sets of held-out faces, one face at a time (as the editor reads them):

* ``synthetic``: ``--faces`` faces of the synthetic world (parameters from seed ``--seed``, never seen in training),
  rendered as photos at the generator's resolution; the truth is the world's own condition (``synth.attributes``).
  The estimator reads the image; the flow reads the face's W+ from the embedded inversion encoder (a photo's path
  into the editor), starting from the estimator's reading (``cnf_from_estimator``) and from the training mean
  without any estimator (``cnf_alone``).
* ``generated``: ``--faces`` latents of the generator (seed ``--seed``); there is no world truth, so the reference
  is the estimator's reading of the rendered face (what the flow was trained to pair with w). ``cnf_alone`` starts
  from the training mean. ``training_mean`` (the flow file's mean training condition for every face) is the guess
with no reading at all.

Per set and condition value: mean absolute error of each reading against the truth (or reference) and between the
flow's and the estimator's readings; the training data's standard deviation for scale; the mean over the attributes
and over the lighting in those units. Time per face (median, p95) of each fit, and of one fit on StyleFlow's
released architecture (random weights, 18 x 512 W+) for the "few seconds" target; wall-clock and process CPU
time (the CPU time is what a busy machine does not inflate), with the load average. JSON to stdout.

    python benchmarks/flow_attributes.py [--faces 24] [--seed 2147483646] [--threads 1] [--steps 20]

Measured (24 faces each, 1 thread, 2 shared CPU cores, load ~4-5; mean errors in training standard deviations,
attributes / lighting): synthetic photos, truth: estimator 0.22 / 0.18, flow from the estimator's reading
0.78 / 0.88, flow alone 0.76 / 0.86, training mean 1.00 / 1.02. Generated faces against the estimator: flow alone
0.55 / 0.56, training mean 0.86 / 0.67. CPU time per face 0.4 s (p95 0.6 s), 2.2 s for the released architecture.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _times(ms: list[float]) -> dict:
    return {"median": round(statistics.median(ms), 1), "p95": round(float(np.percentile(ms, 95)), 1), "n": len(ms)}


def _errors(names, pairs: dict, scale: torch.Tensor, num_light: int) -> dict:
    """{comparison: {name: mean abs error, '_attributes_in_std', '_lighting_in_std'}} over faces."""
    out = {}
    for key, (a, b) in pairs.items():
        err = (a - b).abs().mean(0)  # [C]
        rel = err / scale
        row = {n: round(float(e), 4) for n, e in zip(names, err)}
        row["_attributes_in_std"] = round(float(rel[num_light:].mean()), 3)
        if num_light:
            row["_lighting_in_std"] = round(float(rel[:num_light].mean()), 3)
        out[key] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=24)
    ap.add_argument("--seed", type=int, default=2147483646)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20, help="Adam steps per fit")
    ap.add_argument("--released-runs", type=int, default=3, help="fits timed on the released architecture (0: none)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from engine import synth
    from engine.algorithms.condition_fit import PRIOR, SOLVER_STEPS, condition_mean, condition_scale, fit_condition
    from engine.algorithms.flow_edit import FastSteps
    from engine.assets import default_encoder_path, default_estimator_path, default_flow_path, default_generator_path
    from engine.files.flows import load_flow
    from engine.files.loading import load_generator
    from engine.models.encoder import load_encoder
    from engine.models.estimator import load_estimator
    from engine.models.flow import ConditionalCNF, FlowConfig
    from engine.train.release.generator import quantised

    G = load_generator(default_generator_path())
    est = load_estimator(default_estimator_path()).eval()
    enc = load_encoder(default_encoder_path()).eval()
    raw = load_flow(default_flow_path())
    flow = FastSteps(raw, raw.extras["fast_steps"]) if "fast_steps" in raw.extras else raw
    layout = raw.layout
    names = layout.condition_names
    scale = condition_scale(flow, layout)
    binary = tuple(n for n in est.cfg.output_names if n in est.cfg.binary and n in layout.names)

    cpu_ms: dict[str, list[float]] = {}

    def fit(w, start, key):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fit_condition(flow, w, start, steps=args.steps, binary=binary)
        cpu_ms.setdefault(key, []).append((time.process_time() - c0) * 1e3)
        return result.condition, (time.perf_counter() - t0) * 1e3

    def estimate(images):  # images [B, 3, R, R] in [-1, 1] -> [B, C] in layout order
        columns = layout.match(est.cfg.output_names)
        if any(c is None for c in columns):
            raise SystemExit("the estimator does not read every value of the flow's condition")
        with torch.no_grad():
            return est.to_units(est(images))[:, list(columns)]

    report = {"benchmark": "flow_attributes", "faces": args.faces, "seed": args.seed, "adam_steps": args.steps,
              "solver_steps": SOLVER_STEPS, "prior_per_row": PRIOR, "binary": list(binary), "threads": args.threads,
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "flow": raw.info.description, "condition": list(names), "data_std": [round(float(s), 4) for s in scale]}

    # synthetic world faces: truth known
    params = synth.sample_params(args.faces, seed=args.seed)
    truth_np = synth.attributes(params)  # [N, 17] in synth.CONDITION_NAMES order
    cols = layout.match(synth.CONDITION_NAMES)
    truth = torch.from_numpy(truth_np[:, list(cols)]).float()  # [N, C] layout order
    images = synth.render_faces(params, size=G.img_resolution, domain="photo").float() * 2 - 1  # [N, 3, R, R]
    images = quantised(images)
    with torch.no_grad():
        ws = enc(images)  # [N, num_ws, w_dim]
    est_read = estimate(images)
    from_est, alone, t_est, t_alone = [], [], [], []
    for i in range(args.faces):
        c, ms = fit(ws[i:i + 1], est_read[i:i + 1], "synthetic_from_estimator")
        from_est.append(c)
        t_est.append(ms)
        c, ms = fit(ws[i:i + 1], None, "synthetic_alone")
        alone.append(c)
        t_alone.append(ms)
    from_est, alone = torch.cat(from_est), torch.cat(alone)
    mean = condition_mean(flow, layout).expand_as(truth)  # the guess without any reading
    report["synthetic"] = {
        "truth": "synthetic world parameters; W+ from the embedded inversion encoder",
        "mean_abs_error": _errors(names, {
            "estimator_vs_truth": (est_read, truth), "cnf_from_estimator_vs_truth": (from_est, truth),
            "cnf_alone_vs_truth": (alone, truth), "training_mean_vs_truth": (mean, truth),
            "cnf_from_estimator_vs_estimator": (from_est, est_read), "cnf_alone_vs_estimator": (alone, est_read)},
            scale, layout.num_light),
        "ms_per_face": {"cnf_from_estimator": _times(t_est), "cnf_alone": _times(t_alone)}}

    # generator samples: the estimator's reading is the reference
    z = torch.randn(args.faces, G.z_dim, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        ws = G.mapping(z)
        ref = estimate(quantised(G.synthesis(ws, noise_mode="const")))
    alone, t_alone = [], []
    for i in range(args.faces):
        c, ms = fit(ws[i:i + 1], None, "generated_alone")
        alone.append(c)
        t_alone.append(ms)
    alone = torch.cat(alone)
    pairs = {"cnf_alone_vs_estimator": (alone, ref), "training_mean_vs_estimator": (mean[:1].expand_as(ref), ref)}
    report["generated"] = {"reference": "the estimator's reading of the rendered face (the flow's training labels)",
                           "mean_abs_error": _errors(names, pairs, scale, layout.num_light),
                           "ms_per_face": {"cnf_alone": _times(t_alone)}}

    if args.released_runs:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            big = ConditionalCNF(FlowConfig()).eval()  # cnf(512, '512-512-512-512-512', 17, 1)
        w = torch.randn(1, 18, 512, generator=torch.Generator().manual_seed(1))
        big_times = []
        for _ in range(args.released_runs):
            t0, c0 = time.perf_counter(), time.process_time()
            fit_condition(big, w, None, steps=args.steps, binary=binary)
            big_times.append((time.perf_counter() - t0) * 1e3)
            cpu_ms.setdefault("released_architecture", []).append((time.process_time() - c0) * 1e3)
        report["released_architecture_ms_per_face"] = _times(big_times)
    report["cpu_ms_per_face"] = {k: _times(v) for k, v in cpu_ms.items()}
    report["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
