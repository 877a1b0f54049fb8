"""The compare-methods window's work on the embedded default: N samples of one face by each method.

For ``--faces`` faces of the default generator (seeds ``--seed``.., psi 0.7), times the three rows of the window
as the worker runs them with warm caches: the layer swap's N sampled appearances (``StyleGridJob``, shipped toon
target), BicycleGAN's N codes (``I2IJob``, the face turned into a line drawing) and TUNIT's cluster styles. The
baseline in the same run is rendering the face alone. Also BicycleGAN's diversity on these faces: the mean
pairwise L1 distance between its N samples ([0, 1] pixels), to compare with the release figure measured on
synthetic line drawings. Writes JSON to stdout (progress on stderr).

    python benchmarks/translation_methods.py [--faces 16] [--n 4] [--threads 1]
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def stats(ms: list[float]) -> dict:
    return {"median_ms": round(float(np.median(ms)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=16)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--seed", type=int, default=70_000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from engine.jobs.i2i import I2IJob, I2IRequest, shipped_i2i
    from engine.jobs.render import render_in_worker
    from engine.jobs.translate import StyleGridJob, shipped_targets
    from engine.project import EditState, ModelRef, Translation
    from engine.worker import InlineContext

    ctx = InlineContext(device=torch.device("cpu"))
    toon = next(t for t in shipped_targets() if t.domain == "toon")
    i2i = {s.method: s for s in shipped_i2i()}
    times: dict[str, list[float]] = {"face render (baseline)": [], "layer swap": [], "BicycleGAN": [], "TUNIT": []}
    diversity = []
    for k in range(args.faces + 1):  # the first face warms the caches and is not counted
        state = EditState(model=ModelRef(), seed=args.seed + k, psi=0.7)
        swapped = state.replace(translation=Translation(toon.ref))
        runs = {"face render (baseline)": lambda: render_in_worker(ctx, state, translate=False),
                "layer swap": lambda: StyleGridJob(swapped, seed=0, n=args.n)(ctx),
                "BicycleGAN": lambda: I2IJob(state, I2IRequest(i2i["bicyclegan"].ref, n=args.n))(ctx),
                "TUNIT": lambda: I2IJob(state, I2IRequest(i2i["tunit"].ref))(ctx)}
        for name, run in runs.items():
            ctx.memo.clear()  # no result reused between rows or faces
            t0 = time.perf_counter()
            out = run()
            if k:
                times[name].append((time.perf_counter() - t0) * 1e3)
            if k and name == "BicycleGAN":
                images = [im.astype(np.float32) / 255 for im in out.images]
                diversity.append(np.mean([np.abs(a - b).mean() for a, b in itertools.combinations(images, 2)]))
        print(f"face {k}/{args.faces}", file=sys.stderr)
    base = np.median(times["face render (baseline)"])
    result = {"faces": args.faces, "n": args.n, "threads": args.threads,
              "rows": {name: stats(ms) | {"ratio_to_face_render": round(float(np.median(ms) / base), 2)}
                       for name, ms in times.items()},
              "bicyclegan_diversity_on_faces": round(float(np.mean(diversity)), 4),
              "bicyclegan_diversity_release": i2i["bicyclegan"].info.get("figures", {}).get("diversity")}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
