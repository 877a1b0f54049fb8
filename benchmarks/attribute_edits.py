"""Attribute and lighting edits on the embedded default: measured directions and the flow against a linear baseline.

For each attribute and each direction (up and down by ``STEPS``), up to ``--faces`` held-out faces (seed 777) whose
target stays inside what the generator makes (the 0.1st..99.9th percentile of its faces' readings) are edited to
their own reading plus or minus the step. Methods:

* ``directions``: the editor's default (``engine.jobs.directions.solve_targets``): the model's measured
  directions, settled (the frame shown once a slider is let go);
* ``directions_live``: the first frame while the slider is held (one secant pass; the frames after it carry its
  gain instead, ``engine.jobs.directions.DragGains``);
* ``directions_locked``: settled with the other 7 attributes locked;
* ``flow`` / ``flow_locked``: StyleFlow's edit (``apply_edits``, fast solver, the layout's W+ rows), without and with
  the locks (``--no-flow`` skips them);
* ``linear``: InterFaceGAN's baseline, w moved along the attribute's least-squares direction in W (fitted on
  ``--fit-n`` fresh labelled faces) on all rows, with its step chosen by bisection so that its mean success equals
  the compared method's: entanglement is compared at equal success (``linear_vs``).

Success is the mean of reading change / asked change; entanglement the mean absolute change of the other 7
attributes in units of their standard deviation; ``locked_drift_sd`` the largest mean drift of a locked attribute.
Lighting: each of the flow's presets at full weight asks its lighting; success is the reading change projected on the
asked change, relative to it; ``face_vs_elsewhere`` the mean pixel change inside the face over that well outside the
head. Writes JSON to stdout, a table to stderr.

    python benchmarks/attribute_edits.py [--faces 64] [--fit-n 3000] [--threads 2] [--no-flow]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = {"gender": 0.8, "glasses": 0.8, "yaw": 15.0, "pitch": 10.0, "baldness": 0.5, "beard": 0.6, "age": 20.0,
         "expression": 0.5}
BISECTIONS = 10


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=64)
    ap.add_argument("--pool", type=int, default=1500, help="held-out faces the edited ones are drawn from")
    ap.add_argument("--fit-n", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-flow", action="store_true", help="skip StyleFlow's edits (the slowest part)")
    ap.add_argument("--only", default=None, help="comma-separated attributes to measure (default: all, and lighting)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from engine.algorithms.flow_edit import ATTRIBUTES, NUM_LIGHT, AttributeEdit, apply_edits
    from engine.assets import default_directions_path, default_estimator_path, default_generator_path
    from engine.files.directions import load_directions
    from engine.files.loading import load_generator
    from engine.jobs.directions import DRAG_PASSES, SETTLE_PASSES, solve_targets
    from engine.jobs.render import load_flow_tools
    from engine.models.estimator import load_estimator
    from engine.project import ModelRef
    from engine.train.directions import face_regions
    from engine.train.flow_data import label_images, sample_flow_data
    from engine.train.release.generator import quantised

    t_start = time.perf_counter()
    G = load_generator(default_generator_path())
    est = load_estimator(default_estimator_path()).eval()
    tools = load_flow_tools(ModelRef())
    directions, _ = load_directions(default_directions_path())
    fit = sample_flow_data(G, est, args.fit_n, seed=12345, batch=250)
    w_fit, c_fit = torch.from_numpy(fit["w"][:, 0]), torch.from_numpy(fit["cond"])
    std = c_fit.std(0)  # [17]
    lo, hi = c_fit.quantile(0.001, 0), c_fit.quantile(0.999, 0)  # what the generator makes
    X = torch.cat([w_fit, torch.ones(len(w_fit), 1)], 1).double()
    coef_all = torch.linalg.lstsq(X, c_fit.double()).solution[:-1].float()  # [w_dim, 17]
    pool = sample_flow_data(G, est, args.pool, seed=777, batch=250)
    W, C = torch.from_numpy(pool["w"]), torch.from_numpy(pool["cond"])
    inner, outer = face_regions(G.img_resolution)
    attr_idx = list(range(NUM_LIGHT, NUM_LIGHT + len(ATTRIBUTES)))

    @torch.no_grad()
    def render(ws):
        return torch.cat([quantised(G.synthesis(ws[i:i + 128], noise_mode="const")) for i in range(0, len(ws), 128)])

    def measure(ws):
        return label_images(est, render(ws)).float()

    def scores(ws, w0, c0, img0, k, asked, held=()):
        img = render(ws)
        r = label_images(est, img).float()
        if k is None:  # lighting: projection of the change on the asked change
            d = r[:, :NUM_LIGHT] - c0[:, :NUM_LIGHT]
            success = ((d * asked).sum(1) / (asked * asked).sum(1)).mean().item()
            others = attr_idx
        else:
            success = ((r[:, k] - c0[:, k]) / asked).mean().item()
            others = [j for j in attr_idx if j != k]
        drift = (r[:, others] - c0[:, others]).abs() / std[others]  # [F, 7 or 8]
        change = (img - img0).abs().mean(1)  # [F, R, R]
        out = {"success": round(success, 3), "entanglement_sd": round(drift.mean().item(), 4),
               "latent_l2": round((ws - w0).flatten(1).norm(dim=1).mean().item(), 3),
               "pixel_l1": round((change * 127.5).mean().item(), 2),
               "face_vs_elsewhere": round((change[:, inner].mean() / change[:, outer].mean()).item(), 2)}
        if held:
            cols = [others.index(j) for j in held]
            out["locked_drift_sd"] = round(drift[:, cols].mean(0).max().item(), 4)
        return out

    def linear_at(success, w0, c0, img0, k, asked, step_of):
        lo_m, hi_m = 0.0, 8.0
        for _ in range(BISECTIONS):
            mid = (lo_m + hi_m) / 2
            if scores(w0 + step_of(mid), w0, c0, img0, k, asked)["success"] < success:
                lo_m = mid
            else:
                hi_m = mid
        m = (lo_m + hi_m) / 2
        return scores(w0 + step_of(m), w0, c0, img0, k, asked) | {"step_multiplier": round(m, 3)}

    def flow_edit(w0, c0, edits_of, locks=()):
        return torch.cat([apply_edits(tools.flow, w0[i:i + 1], c0[i:i + 1], edits_of(i), fast=True,
                                      presets=tools.presets, locks=locks, measure=measure, layout=tools.layout)[0]
                          for i in range(len(w0))])

    report = {"faces": args.faces, "pool": args.pool, "fit_n": args.fit_n, "threads": args.threads,
              "passes": {"live": DRAG_PASSES, "settled": SETTLE_PASSES}, "attributes": {}, "lighting": {}}
    for a in (ATTRIBUTES if args.only is None else args.only.split(",")):
        k = NUM_LIGHT + ATTRIBUTES.index(a)
        others = [o for o in ATTRIBUTES if o != a]
        held = [j for j in attr_idx if j != k]
        direction = coef_all[:, k] / coef_all[:, k].norm()  # [w_dim]
        for sign, label in ((1, "up"), (-1, "down")):
            target_all = C[:, k] + sign * STEPS[a]
            ok = ((target_all >= lo[k]) & (target_all <= hi[k])).nonzero()[:, 0][:args.faces]
            row = {"asked": sign * STEPS[a], "n": len(ok)}
            if len(ok) < 8:
                report["attributes"][f"{a} {label}"] = row | {"note": "fewer than 8 faces can take this step"}
                continue
            w0, c0, target = W[ok], C[ok], target_all[ok]
            asked = target - c0[:, k]
            img0 = render(w0)
            results = {}
            for name, live, locks in (("directions", False, False), ("directions_live", True, False),
                                      ("directions_locked", False, True)):
                targets = {k: target} | ({j: c0[:, j] for j in held} if locks else {})
                w = solve_targets(directions, w0, c0, targets, free=attr_idx, measure=measure, live=live,
                                  locked=held if locks else ())
                results[name] = scores(w, w0, c0, img0, k, asked, held if locks else ())
            if not args.no_flow:
                edits = lambda i: (AttributeEdit("attribute", a, float(target[i])),)  # noqa: E731
                results["flow"] = scores(flow_edit(w0, c0, edits), w0, c0, img0, k, asked)
                results["flow_locked"] = scores(flow_edit(w0, c0, edits, others), w0, c0, img0, k, asked, held)

            def step_of(m, asked=asked, direction=direction, k=k):
                return m * direction[None, None, :] * (asked / coef_all[:, k].norm())[:, None, None]

            results["linear_vs"] = {name: linear_at(results[name]["success"], w0, c0, img0, k, asked, step_of)
                                    for name in ("directions", "directions_locked", "flow") if name in results}
            report["attributes"][f"{a} {label}"] = row | results
            print(f"{a:>10} {label:>4} n={len(ok):3d} " + "  ".join(
                f"{n} {r['success']:.2f}/{r['entanglement_sd']:.3f}" + (f" held {r['locked_drift_sd']:.3f}" if
                                                                          "locked_drift_sd" in r else "")
                for n, r in results.items() if n != "linear_vs")
                + "  linear@" + " ".join(f"{n}:{r['entanglement_sd']:.3f}" for n, r in results["linear_vs"].items()),
                file=sys.stderr)
    if tools.presets is not None and args.only is None:
        faces = torch.arange(min(args.faces, len(W)))
        w0, c0 = W[faces], C[faces]
        img0 = render(w0)
        pinv = torch.linalg.pinv(coef_all[:, :NUM_LIGHT].T)  # [w_dim, 9]: the plain least-squares lighting move
        for j, preset in enumerate(tools.presets):
            name = tools.preset_names[j] if j < len(tools.preset_names) else f"preset {j}"
            asked = preset[None, :] - c0[:, :NUM_LIGHT]  # [F, 9]
            targets = {i: preset[i].expand(len(w0)) for i in range(NUM_LIGHT)}
            w = solve_targets(directions, w0, c0, targets, free=attr_idx, measure=measure, live=False)
            results = {"directions": scores(w, w0, c0, img0, None, asked)}
            if not args.no_flow:
                edits = lambda i, j=j: (AttributeEdit("lighting", j, 1.0),)  # noqa: E731
                results["flow"] = scores(flow_edit(w0, c0, edits), w0, c0, img0, None, asked)

            def step_of(m, asked=asked):
                return m * (asked @ pinv.T)[:, None, :]

            results["linear_vs"] = {"directions": linear_at(results["directions"]["success"], w0, c0, img0, None,
                                                            asked, step_of)}
            report["lighting"][name] = results
            print(f"{'light':>10} {name:>13} " + "  ".join(
                f"{n} {r['success']:.2f}/{r['entanglement_sd']:.3f} face/else {r['face_vs_elsewhere']:.2f}"
                for n, r in results.items() if n != "linear_vs")
                + f"  linear {results['linear_vs']['directions']['entanglement_sd']:.3f}", file=sys.stderr)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
