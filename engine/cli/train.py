"""``python main.py train ...``: the ``train`` command group, every trainer and every release.

StyleGAN2 and its releases (``engine.cli.train_stylegan2``), the models of a generator's latent space: StyleFlow's
flow and the inversion encoder (``engine.cli.train_latent``), and the models of the synthetic face world: the
attribute estimator, the domain classifier, TUNIT and BicycleGAN (``engine.cli.train_synthetic``). Their shared
options are declared once (``engine.cli.train_options``); the trainers share one loop (``engine.train.loop``).
"""
from __future__ import annotations

import argparse

from engine.cli.train_latent import add_latent_commands
from engine.cli.train_stylegan2 import add_release_commands, add_stylegan2_command
from engine.cli.train_synthetic import add_synthetic_commands

DESCRIPTION = """Train a model, or release a trained one into assets/. Every trainer writes a run folder (--out):
checkpoint.pt, the model, metrics.csv, config.json and, for those with a held-out set, eval.csv and eval.json.
--resume auto continues a stopped run bit for bit; --max-minutes stops one with a checkpoint.

examples:
  python main.py train stylegan2 --data synth:photo --resolution 64 --out runs/face64 --kimg 500
  python main.py train stylegan2 --data synth:photo --out runs/face64 --resume auto
  python main.py train attributes --out runs/estimator --steps 6000 --batch 64
  python main.py train flow --out runs/flow --n 10000 --steps 8000
  python main.py train release-generator runs/face64/snapshots/network-000192kimg.pt
"""


def add_train_commands(sub: argparse._SubParsersAction, *, help: str = "train generators, the estimator, flows, "
                       "encoders and image-to-image models (see: train --help)") -> argparse._SubParsersAction:
    """Register ``train`` with every trainer and release on a ``main.py`` subparser set; returns the ``train``
    subcommand set."""
    train = sub.add_parser("train", help=help, description=DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    models = train.add_subparsers(dest="train_model", metavar="MODEL", required=True)
    add_stylegan2_command(models)
    add_release_commands(models)
    add_latent_commands(models)
    add_synthetic_commands(models)
    return models


def add_command(sub: argparse._SubParsersAction, *, help: str) -> None:
    """``main.py train``, registered like every command (``engine.cli.main.COMMANDS``)."""
    add_train_commands(sub, help=help)


__all__ = ["add_command", "add_train_commands"]
