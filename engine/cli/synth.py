"""``python main.py synth``: a synthetic face dataset (images + labels.json) from the synthetic face world."""
from __future__ import annotations

import argparse
import sys

from engine.cli.common import command_parser, say
from engine.synth import add_synth_arguments, run_synth

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
        path = run_synth(args, progress=lambda done, total: bar.update(done - bar.n))
    say(args, f"wrote {args.n} images and {path}")
    return 0


def add_command(sub: argparse._SubParsersAction, *, help: str) -> None:
    p = command_parser(sub, "synth", help=help, description=DESCRIPTION, examples=EXAMPLES)
    add_synth_arguments(p)
    p.set_defaults(func=cmd_synth)
