"""What every ``train ...`` command shares: one declaration of the run options (``--out``, ``--resume``, ``--seed``,
``--device``, ``--threads``, ``--max-minutes``, ``--quiet`` and the intervals the trainer's config has) and of the
release options, the config fields a command line set, and starting, running and reporting a trainer.

``--resume`` continues a training checkpoint: bare, ``OUT/checkpoint.pt`` (which must exist); ``auto``,
``OUT/checkpoint.pt`` when it exists (else the run starts fresh); or a path. A fresh run refuses an ``--out``
that holds another run. Settings given on the command line of a resumed run must match the checkpoint's, except
the run's length and the intervals (``engine.train.loop.RESUMABLE``).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from engine.assets import ASSETS_DIR
from engine.files.checkpoints import resume_path
from engine.files.paths import command_line
from engine.runtime import set_threads
from engine.train.loop import CHECKPOINT_NAME

Option = tuple[str, type | None, str]  # (config field = argparse destination, argparse type, help)

# the intervals a config may have
INTERVALS: dict[str, Option] = {
    "--eval-every": ("eval_every", int, "held-out evaluation interval"),
    "--checkpoint-every": ("checkpoint_every", int, "training checkpoint interval"),
    "--snapshot-every": ("snapshot_every", int, "model snapshot interval, 0 = off"),
    "--sample-every": ("sample_every", int, "sample grid interval, 0 = off"),
    "--log-every": ("log_every", int, "metrics.csv row interval"),
}
THREADS_HELP = ("CPU threads per process (default: PyTorch's choice; on a shared machine or with several CPU "
                "processes, cores / processes)")


def int_list(text: str) -> tuple[int, ...]:
    """``--widths 8,16,32``: comma-separated integers."""
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _shown(value) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_config_options(group, defaults, options: dict[str, Option]) -> None:
    """One option per entry ``flag: (field, type, help)`` that sets config field ``field`` (its destination); unset
    it is None (the config's default, or the checkpoint's setting), and the help names the default of the config
    ``defaults`` unless it says one itself."""
    for flag, (field, kind, text) in options.items():
        shown = "" if "(default" in text else f" (default {_shown(getattr(defaults, field))})"
        group.add_argument(flag, dest=field, type=kind, metavar=flag.lstrip("-").replace("-", "_").upper(),
                           help=(text + shown).strip())


def add_run_options(p: argparse.ArgumentParser, defaults, *, files: str, seeds: str,
                    device: str | None = None) -> argparse._ArgumentGroup:
    """The options every trainer command has: ``--out`` (``files``: what the run folder holds), ``--resume``,
    ``--seed`` (``seeds``: what it seeds), ``--device`` (when the trainer runs on other devices than the CPU;
    ``device`` is its default), ``--threads``, ``--max-minutes``, ``--quiet`` and an option for each interval the
    config ``defaults`` has. Returns the schedule group, for a command's own schedule options."""
    run = p.add_argument_group("run")
    run.add_argument("--out", required=True, help=f"run folder ({files})")
    run.add_argument("--resume", nargs="?", const=True, metavar="PATH|auto",
                     help="continue a training checkpoint: OUT/checkpoint.pt (bare --resume), PATH, or 'auto': "
                          "OUT/checkpoint.pt if present, else start fresh")
    add_config_options(run, defaults, {"--seed": ("seed", int, f"seed of {seeds}")})
    if device is not None:
        run.add_argument("--device", default=device, help=f"auto, cpu, cuda or cuda:N (default {device})")
    run.add_argument("--threads", type=int, help=THREADS_HELP)
    run.add_argument("--max-minutes", type=float, help="stop (with a checkpoint and the model) after this much "
                     "training")
    run.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    schedule = p.add_argument_group("schedule (in steps)")
    add_config_options(schedule, defaults, {k: v for k, v in INTERVALS.items() if hasattr(defaults, v[0])})
    return schedule


def given_fields(args: argparse.Namespace, *tables: dict[str, Option]) -> dict:
    """The config fields the command line set: ``--seed``, the intervals, and the options of ``tables``."""
    names = ["seed", *(f for f, _, _ in INTERVALS.values()), *(f for t in tables for f, _, _ in t.values())]
    return {f: getattr(args, f) for f in names if getattr(args, f, None) is not None}


def logger(args: argparse.Namespace, *, main_process: bool = True) -> Callable[[str], None]:
    """Messages on stderr, unless ``--quiet`` (or not the main process of a distributed run)."""
    if args.quiet or not main_process:
        return lambda msg: None
    return lambda msg: print(msg, file=sys.stderr)


def start_trainer(args: argparse.Namespace, trainer_cls, *, given: dict, log: Callable, fresh: Callable | None = None,
                  resumed: Callable | None = None, **kwargs):
    """The trainer a ``train ...`` command runs, after ``--threads`` took effect. ``--resume`` with a checkpoint:
    ``resumed(state, overrides=given, ...)`` (default ``trainer_cls.from_state``); otherwise, after checking that
    ``--out`` holds no other run, ``fresh(command_line=..., ...)`` (default: ``trainer_cls`` of the config
    ``given`` describes). Both get ``out_dir``, ``progress`` and ``kwargs``; ``given``: the config fields the
    command line set."""
    set_threads(args.threads)
    common = dict(out_dir=args.out, progress=not args.quiet, **kwargs)
    resume = Path(args.out) / CHECKPOINT_NAME if args.resume is True else args.resume
    path = resume_path(None if resume is None else str(resume), args.out, name=CHECKPOINT_NAME,
                       what=f"{trainer_cls.kind} training checkpoint")
    if path is not None:
        trainer = (resumed or trainer_cls.from_state)(trainer_cls.read_state(path), overrides=given, **common)
        log(f"resuming {path} at step {trainer.step} ({trainer.images_seen} images)")
        return trainer
    trainer_cls.refuse_existing_run(args.out)
    if fresh is None:
        return trainer_cls(trainer_cls.config_cls(**given), command_line=command_line(), **common)
    return fresh(command_line=command_line(), **common)


def run_trainer(args: argparse.Namespace, trainer, *, log: Callable) -> int:
    """Train to the end (or ``--max-minutes``), saying what (``trainer.describe()``) and how it ended
    (``trainer.summary()``); 0 when done or stopped by the time limit, 130 when interrupted."""
    log(f"training {trainer.describe()}")
    status = trainer.train(max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes)
    log(f"{status} at step {trainer.step} ({trainer.images_seen} images, {trainer.elapsed_s / 60:.1f} min of "
        f"training): {trainer.summary()}")
    return 130 if status == "interrupted" else 0


def add_release_command(sub, name: str, *, help: str, description: str | None, source: str, source_help: str,
                        func: Callable, out_help: str = "output folder (default: this checkout's assets/)",
                        ) -> argparse.ArgumentParser:
    """A ``train release-...`` command: the file to release (positional ``source``), ``--out`` (default: this
    checkout's assets/) and ``--threads`` (default 1: the manifest's figures can differ in the last digits with
    another count); ``func`` runs it after ``--threads`` took effect."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument(source, help=source_help)
    p.add_argument("--out", default=str(ASSETS_DIR), help=out_help)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1; figures can differ in the last "
                   "digits with another count)")

    def run(args: argparse.Namespace) -> int:
        set_threads(args.threads)
        return func(args)

    p.set_defaults(func=run)
    return p


__all__ = ["Option", "INTERVALS", "int_list", "add_config_options", "add_run_options", "given_fields", "logger",
           "start_trainer", "run_trainer", "add_release_command"]
