"""The trainers on the synthetic face world and their releases: ``train attributes`` (the attribute estimator),
``train domains`` / ``release-domains`` (the domain classifier), ``train tunit`` / ``release-tunit``,
``train bicyclegan`` / ``release-bicyclegan``."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from engine.assets import DEFAULT_BICYCLEGAN, DEFAULT_DOMAINS, DEFAULT_TUNIT
from engine.cli import train_options as opts
from engine.files.paths import command_line
from engine.train import bicyclegan, domains, estimator, tunit
from engine.train.loop import BEST_NAME
from engine.train.release.bicyclegan import GRID_NAME as BICYCLEGAN_GRID
from engine.train.release.bicyclegan import release_bicyclegan
from engine.train.release.domains import release_domains
from engine.train.release.estimator import release
from engine.train.release.tunit import release_tunit

SEEDS = "initialisation, faces and augmentation"


def _feature_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(0 if v.strip().upper() == "M" else int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated widths and M, got {text!r}") from None


# option -> (config field, type, help): the options of each trainer beyond the shared ones
ATTRIBUTES: dict[str, opts.Option] = {
    "--steps": ("steps", int, "optimiser steps"), "--batch": ("batch_size", int, "faces per step"),
    "--size": ("size", int, "image side the network reads"), "--lr": ("lr", float, "peak Adam learning rate"),
    "--photo-fraction": ("photo_fraction", float, "share of photos per batch"),
    "--widths": ("widths", opts.int_list, "channels per stage"),
    "--blocks": ("blocks", opts.int_list, "residual blocks per stage"),
    "--eval-n": ("eval_n", int, "held-out faces per domain")}
DOMAINS: dict[str, opts.Option] = {
    "--steps": ("steps", int, "optimiser steps"),
    "--batch": ("batch_size", int, "images per step, a multiple of the number of domains"),
    "--size": ("size", int, "image side the network reads"), "--lr": ("lr", float, "peak Adam learning rate"),
    "--blur": ("blur", float, "largest augmentation blur sigma in pixels"),
    "--widths": ("widths", opts.int_list, "channels per stage"),
    "--blocks": ("blocks", opts.int_list, "residual blocks per stage"),
    "--stem-width": ("stem_width", int, "channels of the stem"),
    "--eval-n": ("eval_n", int, "held-out faces per domain")}
TUNIT: dict[str, opts.Option] = {
    "--domains": ("domains", lambda t: tuple(t.split(",")), "domains mixed without labels"),
    "--clusters": ("clusters", int, "clusters K"), "--steps": ("steps", int, "iterations"),
    "--batch": ("batch_size", int, "images per step"), "--size": ("size", int, "image side"),
    "--lr": ("lr", float, "G and D RMSprop learning rate"), "--lr-c": ("lr_c", float, "C Adam learning rate"),
    "--separated": ("separated", int, "steps training only C"),
    "--ema-start": ("ema_start", int, "step at which G_EMA starts"),
    "--c-features": ("c_features", _feature_list, "C's conv widths, M = max-pool (default " + ",".join(
        "M" if v == 0 else str(v) for v in tunit.TunitTrainConfig().c_features) + ")"),
    "--sty-dim": ("sty_dim", int, "style code size"), "--g-nf": ("g_nf", int, "generator base width"),
    "--g-downs": ("g_downs", int, "generator down-samplings"), "--d-dim": ("d_dim", int, "discriminator base width"),
    "--eval-n": ("eval_n", int, "held-out faces per domain")}
BICYCLEGAN: dict[str, opts.Option] = {
    "--steps": ("steps", int, "iterations"), "--batch": ("batch_size", int, "(A, B) pairs per iteration, even"),
    "--size": ("size", int, "image side, a power of two >= 32"), "--source": ("source", None, "domain of A"),
    "--target": ("target", None, "domain of B"), "--lr": ("lr", float, "Adam learning rate"),
    "--nz": ("nz", int, "code size"), "--ngf": ("ngf", int, "generator width"), "--nef": ("nef", int, "encoder width"),
    "--ndf": ("ndf", int, "discriminator width"), "--eval-n": ("eval_n", int, "held-out faces")}


def _trainer_command(sub, name: str, module, trainer_cls, options: dict, *, help: str, files: str,
                     seeds: str = SEEDS, then: Callable | None = None) -> argparse.ArgumentParser:
    """``train NAME``: the shared run options, ``options`` (with the defaults of the trainer's config), the module's
    docstring as its description; it runs ``_train(trainer_cls, options, then=then)``."""
    p = sub.add_parser(name, help=help, description=module.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = trainer_cls.config_cls()
    opts.add_run_options(p, defaults, files=files, seeds=seeds)
    opts.add_config_options(p.add_argument_group("recipe"), defaults, options)
    p.set_defaults(func=_train(trainer_cls, options, then=then))
    return p


def _train(trainer_cls, options: dict, *, then: Callable | None = None) -> Callable[[argparse.Namespace], int]:
    """``train ...`` of a synthetic-world trainer: start (or resume) it with the settings of ``options``, run it,
    then ``then(args, trainer)`` if given."""
    def run(args: argparse.Namespace) -> int:
        log = opts.logger(args)
        trainer = opts.start_trainer(args, trainer_cls, given=opts.given_fields(args, options), log=log)
        code = opts.run_trainer(args, trainer, log=log)
        if then is not None:
            then(args, trainer)
        return code
    return run


def _released(args: argparse.Namespace, name: str, manifest: dict, figures: str) -> int:
    print(f"released {Path(args.out) / name} (sha256 {manifest['sha256'][:12]}..., step {manifest['steps']}): "
          f"{figures}", file=sys.stderr)
    return 0


# ---- train attributes -----------------------------------------------------------------------------------------


def export_estimator(args: argparse.Namespace, trainer: estimator.EstimatorTrainer) -> None:
    """``train attributes --export PATH``: release the run's best state to PATH."""
    if args.export:
        manifest = release(Path(args.out) / BEST_NAME, args.export, eval_n=max(trainer.cfg.eval_n, 1024),
                           command_line=command_line())
        opts.logger(args)(f"released {args.export} (sha256 {manifest['sha256']})")


# ---- train domains / release-domains ------------------------------------------------------------------------


def run_release_domains(args: argparse.Namespace) -> int:
    """``train release-domains SOURCE``: write ``domains.pt`` and ``domains.json`` into ``--out``."""
    if args.eval_n < 1 or args.generator_n < 1:
        raise ValueError(f"--eval-n and --generator-n must be at least 1, got {args.eval_n} and {args.generator_n}")
    m = release_domains(args.source, args.out, eval_n=args.eval_n, generator=args.generator,
                        generator_n=args.generator_n, command_line=command_line())
    g = ", ".join(f"psi {r['psi']:g}: {100 * r['accuracy']:.1f}%" for r in m["generator_check"]["results"])
    return _released(args, DEFAULT_DOMAINS, m, f"\n{domains.format_figures(m['held_out'])}\nblurred by "
                     f"{m['held_out_blurred']['sigma_px']:g} px: {100 * m['held_out_blurred']['mean_accuracy']:.1f}%; "
                     f"generator images classified as photo: {g}")


# ---- train tunit / release-tunit ------------------------------------------------------------------------------


def run_release_tunit(args: argparse.Namespace) -> int:
    """``train release-tunit SOURCE``: write ``tunit.pt``, ``tunit.json`` and ``tunit-grid.png`` into ``--out``."""
    if args.eval_n < 1:
        raise ValueError(f"--eval-n must be at least 1, got {args.eval_n}")
    m = release_tunit(args.source, args.out, eval_n=args.eval_n, classifier=args.classifier,
                      command_line=command_line())
    return _released(args, DEFAULT_TUNIT, m, "\n" + tunit.format_figures(m["held_out"]))


# ---- train bicyclegan / release-bicyclegan --------------------------------------------------------------------


def run_release_bicyclegan(args: argparse.Namespace) -> int:
    """``train release-bicyclegan SOURCE``: write ``bicyclegan.pt``, ``bicyclegan.json`` and the grid into --out."""
    m = release_bicyclegan(args.source, args.out, eval_n=args.eval_n, samples=args.samples, half=not args.float32,
                           command_line=command_line())
    return _released(args, DEFAULT_BICYCLEGAN, m, f"{bicyclegan.format_figures(m['figures'])}; grid "
                     f"{Path(args.out) / BICYCLEGAN_GRID}")


def add_synthetic_commands(sub) -> None:
    """Register the synthetic-world trainers and their releases on the ``train`` subcommand set."""
    p = _trainer_command(sub, "attributes", estimator, estimator.EstimatorTrainer, ATTRIBUTES,
                         help="train the attribute estimator on the synthetic face world", then=export_estimator,
                         files="checkpoint.pt, estimator.pt, best.pt, metrics.csv, eval.csv, eval.json")
    p.add_argument("--export", metavar="PATH", help="at the end, release OUT/best.pt to PATH with a manifest "
                   "PATH.json (sha256, command, seeds, hardware, held-out figures)")

    _trainer_command(sub, "domains", domains, domains.DomainTrainer, DOMAINS,
                     help="train the domain classifier on the synthetic face world",
                     files="checkpoint.pt, domains.pt, best.pt, metrics.csv, eval.csv, eval.json")
    p = opts.add_release_command(sub, "release-domains", help="release a trained domain classifier as "
                                 "assets/domains.pt with its manifest", description=release_domains.__doc__,
                                 source="source", func=run_release_domains, source_help="RUN/best.pt, RUN/domains.pt "
                                 "or RUN/checkpoint.pt of a 'train domains' run")
    p.add_argument("--eval-n", type=int, default=512, help="held-out faces per domain (default 512)")
    p.add_argument("--generator", help="generator for the photo sanity check (default: the embedded default)")
    p.add_argument("--generator-n", type=int, default=256, help="generated images per psi (default 256)")

    _trainer_command(sub, "tunit", tunit, tunit.TunitTrainer, TUNIT,
                     help="train TUNIT on an unlabeled mixture of synthetic domains",
                     files="checkpoint.pt, tunit.pt, best.pt, metrics.csv, eval.csv, eval.json")
    p = opts.add_release_command(sub, "release-tunit", help="release a trained TUNIT as assets/tunit.pt with its "
                                 "manifest and grid", description=release_tunit.__doc__, source="source",
                                 func=run_release_tunit, source_help="RUN/best.pt, RUN/tunit.pt or "
                                 "RUN/checkpoint.pt of a 'train tunit' run")
    p.add_argument("--eval-n", type=int, default=128, help="held-out faces per domain (default 128)")
    p.add_argument("--classifier", help="domain classifier for the accuracy (default: the embedded one)")

    _trainer_command(sub, "bicyclegan", bicyclegan, bicyclegan.BicycleGANTrainer, BICYCLEGAN,
                     seeds="initialisation, faces and codes",
                     help="train BicycleGAN on paired synthetic faces (edges -> photo)",
                     files="checkpoint.pt, bicyclegan.pt, metrics.csv, eval.csv, eval.json")
    p = opts.add_release_command(sub, "release-bicyclegan", help="release a trained BicycleGAN as "
                                 "assets/bicyclegan.pt with its manifest and sample grid",
                                 description=release_bicyclegan.__doc__, source="source",
                                 func=run_release_bicyclegan, source_help="RUN/bicyclegan.pt or RUN/checkpoint.pt of "
                                 "a 'train bicyclegan' run")
    p.add_argument("--eval-n", type=int, default=256, help="held-out faces (default 256)")
    p.add_argument("--samples", type=int, default=10, help="random codes per face for diversity (default 10)")
    p.add_argument("--float32", action="store_true", help="store float32 weights (default: float16, half the size)")


__all__ = ["add_synthetic_commands", "export_estimator", "run_release_domains", "run_release_tunit",
           "run_release_bicyclegan"]
