"""Batch-1 generator latency (mapping + synthesis) on the CPU for the real FFHQ architectures, random weights.

Each variant runs in its own process (so allocator settings do not leak between them), one after the other:
``engine`` is this project's generator as the app and CLI run it; ``plain`` is the textbook port in
``plain_stylegan2.py`` on the same weights. Reports median and p95 in ms and the ratio engine / plain.

    python benchmarks/generator.py                     # FFHQ-256 and FFHQ-1024, 15 timed runs each
    python benchmarks/generator.py --arch ffhq256 --runs 30 --threads 2
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Channel tables at resolutions 4, 8, ..., R (manifests in shared/reference/stylegan2/manifests/).
ARCHS = {
    "ffhq256": dict(img_resolution=256, channels=(512, 512, 512, 512, 512, 256, 128)),  # rosinality 256, cm=2
    "ffhq1024": dict(img_resolution=1024, channels=(512, 512, 512, 512, 512, 256, 128, 64, 32)),  # config-f
}


def _measure(arch: str, variant: str, runs: int, warmup: int, threads: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(threads)
    from engine import Generator, GeneratorConfig

    if variant == "engine":
        from engine.runtime import tune_allocator

        tune_allocator()
    G = Generator(GeneratorConfig(**ARCHS[arch]), seed=0).eval()
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0))
    if variant == "engine":
        def step():
            return G(z, noise_mode="const")
    else:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from plain_stylegan2 import plain_forward

        def step():
            return plain_forward(G, z)

    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            t = time.perf_counter()
            img = step()
            dt = time.perf_counter() - t
            if i >= warmup:
                times.append(dt * 1000)
        ref = G(z, noise_mode="const")
    times.sort()
    return {"arch": arch, "variant": variant, "runs": runs, "median_ms": statistics.median(times),
            "p95_ms": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
            "max_abs_diff_vs_engine": float((img - ref).abs().max())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=[*ARCHS, "all"], default="all")
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", default="engine,plain")
    p.add_argument("--child", nargs=2, metavar=("ARCH", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(*args.child, args.runs, args.warmup, args.threads)))
        return 0
    archs = list(ARCHS) if args.arch == "all" else [args.arch]
    rows = []
    for arch in archs:
        for variant in args.variants.split(","):
            runs = args.runs if arch == "ffhq256" else max(3, args.runs // 3)
            out = subprocess.run([sys.executable, __file__, "--child", arch, variant, "--runs", str(runs),
                                  "--warmup", str(args.warmup), "--threads", str(args.threads)],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{arch:9s} {variant:7s} median {r['median_ms']:8.1f} ms   p95 {r['p95_ms']:8.1f} ms   "
                  f"(runs {r['runs']}, max |diff| vs engine {r['max_abs_diff_vs_engine']:.1e})", flush=True)
    for arch in archs:
        got = {r["variant"]: r for r in rows if r["arch"] == arch}
        if "engine" in got and "plain" in got:
            print(f"{arch}: engine / plain = {got['engine']['median_ms'] / got['plain']['median_ms']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
