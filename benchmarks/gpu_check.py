"""The GPU check: every generator format at every precision on one device against the shared fixtures, and the
latency of what the editor does at full size, written as one JSON file.

1. Fixtures: the StyleGAN2 fixture networks as users hold them (an NVIDIA ``.pkl`` written from the NVIDIA fixture,
   the rosinality ``.pt``, and this project's own file converted from each) are loaded through ``load_generator``
   at float32, float16, bfloat16 (and float64 where the device has it) on ``--device``; every image case runs there
   and its largest error against the fixture's expected tensor is reported (absolute, and relative to the image's
   largest magnitude), with the loader's 8-bit measurement against float32 (``PrecisionReport``) or its refusal.
2. Latency, median and p95 over ``--runs`` after ``--warmup`` (``torch.cuda.synchronize`` around each run on CUDA):
   one frame of a random-weight FFHQ config-f generator (1024 px, 512 channels, 8 mapping layers; batch 1, stored
   noise) at float32 / float16 / bfloat16; one StyleFlow slider edit with the released CNF architecture (W+ [1, 18,
   512] -> z -> W+, the engine's fast RK4 path); one e4e encode with the full-size published architecture (IR-SE 50,
   from the key manifest) of an aligned 256 px face. Targets on an H100 (issue 21): frame <= 5 ms at float16, edit
   <= 5 ms, encode <= 10 ms.
3. Memory: the meta-device estimate (``engine.models.memory``) of the three loaded together, and on CUDA the
   allocator's peak with them loaded and run.

``--quick`` (for a CPU, a couple of minutes): the frame at 64 px instead of 1024 (a CPU has no fast float16
kernels: a 256 px float16 frame takes some 35 s there), one warm-up run unless ``--warmup`` says otherwise, float64
skipped, the encoder at float32 only.

    python benchmarks/gpu_check.py --out gpu_check.json                    # on a CUDA machine
    python benchmarks/gpu_check.py --device cpu --quick --runs 3 --out cpu_check.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.e4e_encode import full_size_encoder  # noqa: E402
from benchmarks.flow import edit, edit_inputs, released  # noqa: E402
from engine.convert.e4e import encoder_config  # noqa: E402
from engine.errors import PrecisionError  # noqa: E402
from engine.files.checkpoints import save_generator  # noqa: E402
from engine.files.loading import load_generator  # noqa: E402
from engine.models import memory  # noqa: E402
from engine.models.flow import FlowConfig  # noqa: E402
from engine.models.precision import measure_precision, precision_name  # noqa: E402
from engine.models.stylegan2 import Generator, GeneratorConfig, channels_from_base  # noqa: E402
from engine.runtime import full_float32  # noqa: E402
from tests.engine import nvlabs_pickle_writer as writer  # noqa: E402
from tests.engine.test_stylegan2_fixtures import _run_nvlabs, _run_rosinality  # noqa: E402

PRECISIONS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def config_f(resolution: int) -> GeneratorConfig:
    """FFHQ config-f: channel_base 32768, at most 512 channels, 512-dim z and w, 8 mapping layers."""
    return GeneratorConfig(img_resolution=resolution, z_dim=512, w_dim=512, mapping_layers=8,
                           channels=channels_from_base(resolution, channel_base=32768, channel_max=512))


def stats(times_ms: list[float]) -> dict:
    v = sorted(times_ms)
    p95 = v[min(len(v) - 1, round(0.95 * (len(v) - 1)))]
    return {"median_ms": round(statistics.median(v), 3), "p95_ms": round(p95, 3), "min_ms": round(v[0], 3),
            "runs": len(v)}


def timed(fn, *, device: torch.device, runs: int, warmup: int) -> dict:
    """Median / p95 / min milliseconds of ``fn()`` over ``runs`` after ``warmup`` calls, synchronised on CUDA."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        sync()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(1000 * (time.perf_counter() - t0))
    return stats(times)


def _to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def fixture_files(fixtures: Path, folder: Path) -> dict[str, tuple[Path, dict, object]]:
    """{format: (file, fixture, case runner)}: the NVIDIA pickle, the rosinality checkpoint, and this project's own
    file written from each (native)."""
    ros = torch.load(fixtures / "stylegan2" / "rosinality_s32.pt", weights_only=True)
    nv = torch.load(fixtures / "stylegan2" / "nvlabs_s32.pt", weights_only=True)
    ck, cfg = nv["checkpoint"], nv["config"]
    pkl = folder / "nvlabs_s32.pkl"
    pkl.write_bytes(writer.nvlabs_pickle_bytes(ck["G_ema"], ck["D"], cfg["G_init_kwargs"], cfg["D_init_kwargs"],
                                               protocol=4, module_src=writer.module_source(folder / "executed")))
    pt = folder / "rosinality_s32.pt"
    torch.save(ros["checkpoint"], pt)
    native_nv, native_ros = folder / "native_from_nvlabs.pt", folder / "native_from_rosinality.pt"
    save_generator(native_nv, load_generator(pkl))
    save_generator(native_ros, load_generator(pt))
    return {"nvidia-pkl": (pkl, nv, _run_nvlabs), "rosinality-pt": (pt, ros, _run_rosinality),
            "native (from nvidia)": (native_nv, nv, _run_nvlabs), "native (from rosinality)": (native_ros, ros,
                                                                                               _run_rosinality)}


@torch.no_grad()
def check_fixtures(fixtures: Path, device: torch.device, dtypes) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, (path, fx, run) in fixture_files(fixtures, Path(tmp)).items():
            rows = {}
            for dtype in dtypes:
                name = precision_name(dtype)
                t0 = time.perf_counter()
                try:
                    G = load_generator(path, dtype=dtype, device=device)
                except PrecisionError as e:
                    rows[name] = {"refused": str(e)}
                    continue
                load_s = time.perf_counter() - t0
                worst_abs = worst_rel = 0.0
                cases = 0
                for case in fx["cases"].values():
                    if "image" not in case["expected"]:
                        continue
                    moved = dict(case, inputs=_to(case["inputs"], device))
                    image = run(G, None, moved)["image"].double().cpu()
                    expected = case["expected"]["image"].double()
                    err = float((image - expected).abs().max())
                    worst_abs, worst_rel = max(worst_abs, err), max(worst_rel, err / float(expected.abs().max()))
                    cases += 1
                report = getattr(G, "precision_report", None)
                rows[name] = {"image_cases": cases, "max_abs": worst_abs, "max_rel_to_image_range": worst_rel,
                              "eps": torch.finfo(dtype).eps, "load_s": round(load_s, 3),
                              "report": report.to_dict() if report is not None else None}
            out[fmt] = rows
    return out


def frame_timings(resolution: int, device: torch.device, dtypes, *, runs: int, warmup: int) -> dict:
    cfg = config_f(resolution)
    base = Generator(cfg, seed=0).eval().requires_grad_(False).to(device)
    ws = base.mapping(torch.randn(1, cfg.z_dim, generator=torch.Generator().manual_seed(1)).to(device))
    out = {"resolution": resolution, "parameters": sum(p.numel() for p in base.parameters())}
    for dtype in dtypes:
        G = Generator(cfg, seed=0).eval().requires_grad_(False).to(device).to_precision(dtype)
        row = timed(lambda G=G: G.synthesis(ws, noise_mode="const"), device=device, runs=runs, warmup=warmup)
        if dtype in (torch.float16, torch.bfloat16):
            row["vs_float32"] = measure_precision(base, G, samples=2).to_dict()
        out[precision_name(dtype)] = row
        del G
    return out


def flow_timing(device: torch.device, *, runs: int, warmup: int) -> dict:
    flow = released(1, stressed=False).to(device)
    w, src, tgt = (t.to(device) for t in edit_inputs(0))
    row = timed(lambda: edit(flow, w, src, tgt, fast=True, steps=3), device=device, runs=runs, warmup=warmup)
    row["parameters"] = sum(p.numel() for p in flow.parameters())
    return row


def encoder_timings(fixtures: Path, device: torch.device, dtypes, *, runs: int, warmup: int) -> dict:
    net = full_size_encoder(str(device), manifest=fixtures / "e4e" / "e4e_ffhq_encode_manifest.json")
    x = (torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    out = {"parameters": sum(p.numel() for p in net.parameters())}
    for dtype in dtypes:
        net = net.to(dtype)
        xd = x.to(dtype)
        out[precision_name(dtype)] = timed(lambda: net(xd), device=device, runs=runs, warmup=warmup)
    return out


def memory_check(fixtures: Path, device: torch.device, quick: bool) -> dict:
    """The meta-device estimate for FFHQ-1024 + the CNF + the e4e encoder, at float32 and float16 (the generator;
    the others run in float32), and on CUDA the allocator's peak with the three loaded and run once."""
    entries = json.loads((fixtures / "e4e" / "e4e_ffhq_encode_manifest.json").read_text())["state_dict"]
    sd = {k.removeprefix("encoder."): torch.empty(s, dtype=getattr(torch, d), device="meta")
          for k, s, d in entries if k.startswith("encoder.")}
    e_cfg, _ = encoder_config(sd, {"stylegan_size": 1024, "encoder_type": "Encoder4Editing"}, what="manifest")
    side = [memory.flow_memory(FlowConfig(), num_ws=18), memory.encoder_memory(e_cfg)]
    out = {}
    for dtype in (torch.float32, torch.float16):
        parts = [memory.generator_memory(config_f(1024), dtype=dtype), *side]
        out[precision_name(dtype)] = {"estimate_bytes": memory.loaded_memory(parts),
                                      "parts": [p.to_dict() for p in parts],
                                      "cuda_overhead_bytes": memory.CUDA_OVERHEAD}
    if device.type == "cuda" and not quick:
        for dtype in (torch.float32, torch.float16):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            G = Generator(config_f(1024), seed=0).eval().requires_grad_(False).to(device).to_precision(dtype)
            flow = released(1, stressed=False).to(device)
            enc = full_size_encoder(str(device), manifest=fixtures / "e4e" / "e4e_ffhq_encode_manifest.json")
            with torch.inference_mode():
                G.synthesis(G.mapping(torch.zeros(1, 512, device=device)), noise_mode="const")
                w, src, tgt = (t.to(device) for t in edit_inputs(0))
                edit(flow, w, src, tgt, fast=True, steps=3)
                enc(torch.zeros(1, 3, 256, 256, device=device))
            torch.cuda.synchronize()
            out[precision_name(dtype)]["cuda_peak_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
            out[precision_name(dtype)]["cuda_peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
            del G, flow, enc
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="torch device (default cuda)")
    ap.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared" / "reference",
                    help="the shared reference folder (default ../shared/reference beside the checkout)")
    ap.add_argument("--runs", type=int, default=50, help="timed runs per measurement (default 50)")
    ap.add_argument("--warmup", type=int, help="untimed runs first (default 10, 1 with --quick)")
    ap.add_argument("--out", type=Path, help="write the JSON here (it is printed as well)")
    ap.add_argument("--quick", action="store_true", help="for a CPU: 64 px frames, one warm-up, no float64, encoder "
                                                         "in float32")
    args = ap.parse_args(argv)
    if args.warmup is None:
        args.warmup = 1 if args.quick else 10
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: this machine (or this build of torch) has no CUDA GPU; use --device cpu --quick")
    if device.type == "cuda":
        full_float32()  # as the worker does: float32 is float32, not TF32
    t_start = time.perf_counter()
    reduced = (torch.float32, torch.float16, torch.bfloat16)
    report = {
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "quick": args.quick, "runs": args.runs, "warmup": args.warmup,
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        "targets_h100_ms": {"frame_1024_float16": 5, "flow_edit": 5, "e4e_encode": 10},
    }
    report["fixtures"] = check_fixtures(args.fixtures, device, reduced if args.quick else PRECISIONS)
    timing = dict(runs=args.runs, warmup=args.warmup)
    report["frame"] = frame_timings(64 if args.quick else 1024, device, reduced, **timing)
    report["flow_edit"] = flow_timing(device, **timing)
    report["e4e_encode"] = encoder_timings(args.fixtures, device, (torch.float32,) if args.quick or
                                           device.type != "cuda" else (torch.float32, torch.float16), **timing)
    report["memory"] = memory_check(args.fixtures, device, args.quick)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
