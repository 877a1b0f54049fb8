"""``python main.py synth``: a synthetic face dataset (images + labels.json) from the synthetic face world."""
from __future__ import annotations

import argparse
import sys

from engine.cli.common import command_parser, say
from engine.synth import DOMAINS, write_dataset

DESCRIPTION = ("Render N synthetic faces in one visual domain with their ground-truth attributes and lighting "
               "(labels.json): the data the estimator, the flow and the generators train on.")

EXAMPLES = """
python main.py synth --domain photo --n 10000 --size 64 --out data/photo64
python main.py synth --domain toon --n 500 --seed 3 --out data/toon
"""


def cmd_synth(args) -> int:
    from tqdm import tqdm

    with tqdm(total=args.n, unit="img", desc=f"synth {args.domain} {args.size}px", file=sys.stderr,
              disable=args.quiet) as bar:
        path = write_dataset(args.out, domain=args.domain, n=args.n, size=args.size, seed=args.seed,
                             batch=args.batch, progress=lambda done, total: bar.update(done - bar.n))
    say(args, f"wrote {args.n} images and {path}")
    return 0


def add_command(sub: argparse._SubParsersAction, *, help: str) -> None:
    p = command_parser(sub, "synth", help=help, description=DESCRIPTION, examples=EXAMPLES)
    p.add_argument("--domain", default="photo", choices=DOMAINS, help="visual style (default: photo)")
    p.add_argument("--n", type=int, default=1000, help="number of images (default: 1000)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
    p.add_argument("--out", required=True, help="output folder for NNNNN.png and labels.json")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    p.add_argument("--batch", type=int, default=64, help="faces rendered per batch (default: 64)")
    p.set_defaults(func=cmd_synth)
