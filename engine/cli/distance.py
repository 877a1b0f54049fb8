"""``python main.py distance BASE TARGET``: how far a fine-tuned generator has drifted from its base (UI2I's model
distance), and with ``--depths`` how far the layer-swapped hybrid is at every swap depth."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.cli.common import UserError, add_compute, command_parser, start
from engine.jobs.translate import DistanceJob
from engine.project import ModelRef

DESCRIPTION = ("The mean RMS pixel difference between the two models' images of the same latents (images in "
               "[-1, 1]; 0 = identical), and with --depths that of the layer-swapped hybrid at each swap depth.")

EXAMPLES = """
python main.py distance assets/generator.pt assets/toon.pt
python main.py distance base.pt finetuned.pt --depths --n 32 --json
"""


def cmd_distance(args) -> int:
    for name in (args.base, args.target):
        if not Path(name).is_file():
            raise UserError(f"{name} is not a file")
    if args.n < 1:
        raise UserError("--n must be at least 1")
    base, target = (ModelRef(path=str(Path(p).resolve())) for p in (args.base, args.target))
    ctx, bar = start(args, "distance", delay=1.0)
    result = bar.run(DistanceJob(base, target, n=args.n, seed=args.seed, depths=args.depths), ctx)
    bar.close()
    if args.json:
        print(json.dumps({"base": base.path, "target": target.path, "n": result.n, "seed": result.seed,
                          "distance": result.distance,
                          "profile": None if result.profile is None else {str(d): v for d, v in
                                                                          result.profile.items()}}, indent=2))
        return 0
    if args.quiet:
        return 0
    print(f"model distance {Path(base.path).name} -> {Path(target.path).name}: {result.distance:.4f}")
    print(f"  (RMS pixel difference of the two models' images of the same {result.n} latents from seed "
          f"{result.seed}, images in [-1, 1]; 0 = identical)")
    if result.profile is not None:
        print("per swap depth (the base's layers up to that resolution, the target's above):")
        print(f"  {'none':>8}  {result.distance:.4f}  (the target alone)")
        for depth, value in result.profile.items():
            print(f"  {f'{depth} px':>8}  {value:.4f}")
    return 0


def add_command(sub: argparse._SubParsersAction, *, help: str) -> None:
    p = command_parser(sub, "distance", help=help, description=DESCRIPTION, examples=EXAMPLES)
    p.add_argument("base", help="the base generator file (any supported format)")
    p.add_argument("target", help="the generator fine-tuned from it")
    p.add_argument("--n", type=int, default=64, help="latents to average over (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first latent (default 0)")
    p.add_argument("--depths", action="store_true", help="also the layer-swapped hybrid at every swap depth")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_compute(p)
    p.set_defaults(func=cmd_distance)
