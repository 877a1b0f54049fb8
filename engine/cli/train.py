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


def add_train_commands(sub: argparse._SubParsersAction, *, help: str = "train generators, the estimator, flows, "
                       "encoders and image-to-image models (see: train --help)") -> argparse._SubParsersAction:
    """Register ``train`` with every trainer and release on a ``main.py`` subparser set; returns the ``train``
    subcommand set."""
    train = sub.add_parser("train", help=help, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    models = train.add_subparsers(dest="train_model", metavar="MODEL", required=True)
    add_stylegan2_command(models)
    add_release_commands(models)
    add_latent_commands(models)
    add_synthetic_commands(models)
    return models


__all__ = ["add_train_commands"]
