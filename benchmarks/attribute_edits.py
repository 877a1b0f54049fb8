"""StyleFlow edits vs a linear baseline on the embedded default: success, entanglement, change elsewhere.

For each attribute, ``--faces`` faces (seeds 0..) are edited towards a target (a fixed step from the face's own
reading). Two methods:

* ``flow``: the state's StyleFlow edit (``apply_edits``, fast solver), with StyleFlow's W+ row masks;
* ``flow_locked``: the same with the other 7 attributes locked (the editor's lock buttons: after the edit, their
  measured drift is moved back by one more solve on their rows);
* ``linear``: InterFaceGAN-style, w moved along the attribute's least-squares regression direction in W (fitted on
  ``--fit-n`` fresh labelled samples), on the same rows, with one step size per attribute chosen (bisection) so that
  its mean success equals the flow's: comparisons are at equal success.

Per method and attribute: success (mean of reading change / asked change), entanglement (mean absolute change of
the other 7 attributes, each in units of its standard deviation over the samples), latent distance (L2 of the W+
change) and pixel distance (mean absolute 8-bit change). Writes JSON to stdout.

    python benchmarks/attribute_edits.py [--faces 64] [--fit-n 3000] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = {"gender": 0.8, "glasses": 0.8, "yaw": 15.0, "pitch": 10.0, "baldness": 0.5, "beard": 0.6, "age": 20.0,
         "expression": 0.5}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=64)
    ap.add_argument("--fit-n", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from engine.algorithms.flow_edit import ATTRIBUTES, NUM_LIGHT, AttributeEdit, apply_edits, attribute_mask
    from engine.assets import default_estimator_path, default_flow_path, default_generator_path
    from engine.files.flows import load_flow
    from engine.files.images import to_uint8
    from engine.files.loading import load_generator
    from engine.models.estimator import load_estimator
    from engine.train.flow_data import label_images, sample_flow_data

    G = load_generator(default_generator_path())
    est = load_estimator(default_estimator_path()).eval()
    flow = load_flow(default_flow_path())
    fit = sample_flow_data(G, est, args.fit_n, seed=12345, batch=250)
    w_fit = torch.from_numpy(fit["w"][:, 0])  # [N, w_dim]: W (all rows equal before mixing)
    c_fit = torch.from_numpy(fit["cond"])
    std = c_fit[:, NUM_LIGHT:].std(0)  # [8]
    X = torch.cat([w_fit, torch.ones(len(w_fit), 1)], 1).double()

    faces = sample_flow_data(G, est, args.faces, seed=777, batch=64)
    w0 = torch.from_numpy(faces["w"])  # [F, num_ws, w_dim]
    c0 = torch.from_numpy(faces["cond"])  # [F, 17]

    @torch.no_grad()
    def render_read(ws):
        imgs = G.synthesis(ws, noise_mode="const")
        q = torch.from_numpy(to_uint8(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1
        return q, label_images(est, q)[:, NUM_LIGHT:]

    img0, r0 = render_read(w0)

    @torch.no_grad()
    def measure(ws):  # the full condition reading [B, 17], as the editor's locks read it
        q = torch.from_numpy(to_uint8(G.synthesis(ws, noise_mode="const"))).permute(0, 3, 1, 2).float() / 127.5 - 1
        return label_images(est, q).float()

    def scores(ws, a, asked):
        img, r = render_read(ws)
        k = ATTRIBUTES.index(a)
        success = ((r[:, k] - r0[:, k]) / asked).mean().item()
        others = [j for j in range(len(ATTRIBUTES)) if j != k]
        ent = ((r[:, others] - r0[:, others]).abs() / std[others]).mean().item()
        return {"success": round(success, 3), "entanglement_sd": round(ent, 4),
                "latent_l2": round((ws - w0).flatten(1).norm(dim=1).mean().item(), 3),
                "pixel_l1": round(((img - img0).abs() * 127.5).mean().item(), 2)}

    report = {"faces": args.faces, "fit_n": args.fit_n, "threads": args.threads, "attributes": {}}
    for a in ATTRIBUTES:
        k = ATTRIBUTES.index(a)
        base = c0[:, NUM_LIGHT + k]
        target = base + STEPS[a]
        asked = target - base
        w_flow = torch.cat([apply_edits(flow, w0[i:i + 1], c0[i:i + 1],
                                        (AttributeEdit("attribute", a, float(target[i])),), fast=True)[0]
                            for i in range(len(w0))])
        flow_s = scores(w_flow, a, asked)
        others = [o for o in ATTRIBUTES if o != a]
        w_locked = torch.cat([apply_edits(flow, w0[i:i + 1], c0[i:i + 1],
                                          (AttributeEdit("attribute", a, float(target[i])),), fast=True,
                                          locks=others, measure=measure)[0]
                              for i in range(len(w0))])
        locked_s = scores(w_locked, a, asked)
        coef = torch.linalg.lstsq(X, c_fit[:, NUM_LIGHT + k:NUM_LIGHT + k + 1].double()).solution[:-1, 0].float()
        direction = coef / coef.norm()  # [w_dim]; attribute units per unit step: coef.norm()
        mask = attribute_mask(a, G.num_ws)[None, :, None]

        def linear(step):
            return torch.where(mask, w0 + step * direction * (asked / coef.norm())[:, None, None], w0)

        lo, hi = 0.0, 8.0
        for _ in range(14):  # equal success: the step multiplier whose mean success matches the flow's
            mid = (lo + hi) / 2
            if scores(linear(mid), a, asked)["success"] < flow_s["success"]:
                lo = mid
            else:
                hi = mid
        lin_s = scores(linear((lo + hi) / 2), a, asked) | {"step_multiplier": round((lo + hi) / 2, 3)}
        report["attributes"][a] = {"asked": STEPS[a], "flow": flow_s, "flow_locked": locked_s, "linear": lin_s}
        print(a, report["attributes"][a], file=sys.stderr)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
