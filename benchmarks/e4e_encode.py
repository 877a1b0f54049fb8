"""How long one e4e encode takes with the published FFHQ architecture (IR-SE 50, 18 x 512 W+, 267 M parameters).

The network is built from the architecture the loader infers from the published file's key manifest
(``shared/reference/e4e/e4e_ffhq_encode_manifest.json``) and given random weights (timing does not depend on the
values; BatchNorm statistics are set to mean 0, variance 1 so nothing overflows). One aligned 256 x 256 face is
encoded ``--repeats`` times after a warm-up, per thread count; prints JSON (median and min seconds per encode).

    python benchmarks/e4e_encode.py [--threads 1 2] [--repeats 5] [--device cpu]
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

from engine.convert.e4e import encoder_config  # noqa: E402
from engine.models.e4e import Encoder4Editing  # noqa: E402

MANIFEST = ROOT.parent / "shared" / "reference" / "e4e" / "e4e_ffhq_encode_manifest.json"


def full_size_encoder(device: str, *, manifest: Path = MANIFEST) -> Encoder4Editing:
    entries = json.loads(Path(manifest).read_text())["state_dict"]
    sd = {k[len("encoder."):]: torch.empty(shape, dtype=getattr(torch, dtype), device="meta")
          for k, shape, dtype in entries if k.startswith("encoder.")}
    cfg, _ = encoder_config(sd, {"stylegan_size": 1024, "encoder_type": "Encoder4Editing"}, what="manifest")
    with torch.device("meta"):
        net = Encoder4Editing(cfg)
    net = net.to_empty(device=device)
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.fill_(1.0)
            elif name.endswith("running_mean") or name.endswith("num_batches_tracked"):
                t.zero_()
            elif t.ndim >= 2:  # conv / linear weights: He-scaled so activations keep their size
                t.normal_(0.0, (2.0 / t[0].numel()) ** 0.5, generator=g)
            else:
                t.fill_(0.25 if ".2.weight" in name else 1.0 if name.endswith("weight") else 0.0)
        for block in net.styles:
            block.linear.weight.normal_(generator=g)
    return net.eval().requires_grad_(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    t0 = time.perf_counter()
    net = full_size_encoder(args.device)
    build = time.perf_counter() - t0
    x = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1)).to(args.device) * 2 - 1
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    out = {"device": args.device, "parameters": sum(p.numel() for p in net.parameters()), "build_s": build,
           "torch": torch.__version__, "runs": {}}
    for threads in args.threads:
        torch.set_num_threads(threads)
        times = []
        with torch.inference_mode():
            codes = net(x)  # warm-up
            sync()
            for _ in range(args.repeats):
                t = time.perf_counter()
                codes = net(x)
                sync()
                times.append(time.perf_counter() - t)
        assert codes.shape == (1, 18, 512) and bool(torch.isfinite(codes).all())
        out["runs"][f"{threads} threads"] = {"median_s": statistics.median(times), "min_s": min(times)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
