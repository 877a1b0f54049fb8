"""What every command shares: the user-error type, one argument style (the model, device, precision, thread, quiet
and verbose options, help with examples, one-line parse errors), the progress bar fed by job events, and closing
progress bars before an error line."""
from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

import torch

from engine.devices import resolve_device
from engine.models.precision import PRECISION_HELP, PRECISIONS
from engine.project import ModelRef
from engine.runtime import full_float32, set_threads
from engine.worker import InlineContext

NEGATIVE_VALUE = re.compile(r"^-\.?\d")  # no option's name starts so
DEVICE_HELP = "auto, cpu, cuda, cuda:N or mps (default auto)"


class UserError(ValueError):
    """A problem with the command's input, reported as one line (as every ``ValueError`` is)."""


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one ``error:`` line (and exit status 2), naming where the help is.
    A value that starts with a minus and a digit is a value, not an option (``--box -10,-10,50,50``, ``--psi -1e-2``;
    argparse alone takes only plain negative numbers)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_VALUE  # argparse's hook for what looks like a negative number

    def error(self, message: str):
        end_progress_bars()
        self.exit(2, f"error: {' '.join(message.split())} (see: {self.prog} --help)\n")


def command_parser(sub: argparse._SubParsersAction, name: str, *, help: str, description: str,
                   examples: str) -> argparse.ArgumentParser:
    """A command's parser on ``sub``, its description (paragraphs, wrapped here) and an ``examples:`` epilog (one
    example a line) kept as written, and the ``-q`` / ``-v`` options every command takes."""
    text = "\n\n".join(textwrap.fill(" ".join(par.split()), 100) for par in description.split("\n\n"))
    p = sub.add_parser(name, help=help, description=text, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines()))
    add_verbosity(p)
    return p


def add_verbosity(p: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` (no progress bar or summary) and ``-v/--verbose`` (the engine's log on stderr: INFO, -vv
    DEBUG); ``main.py`` takes both before the command too."""
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="log what the engine does on stderr (-vv: in detail)")


def add_model(p: argparse.ArgumentParser, what: str = "generator file (any supported format)") -> None:
    p.add_argument("--model", metavar="FILE", help=f"{what}; default: the embedded default model")


def add_compute(p: argparse.ArgumentParser) -> None:
    """``--device``, ``--precision`` (the generators') and ``--threads``."""
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--precision", default="auto", choices=PRECISIONS, metavar="PRECISION",
                   help=f"generator precision: {PRECISION_HELP}")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's; use fewer on a busy machine)")


def model_ref(path: str | None) -> ModelRef:
    """``--model``: the file (absolute; it must exist) or the embedded default."""
    if path is None:
        return ModelRef()
    if not Path(path).exists():
        raise UserError(f"{path}: no such model file")
    return ModelRef(path=str(Path(path).resolve()))


def setup_compute(args) -> torch.device:
    """The device a command asked for (``--device``, checked: ``DeviceError`` names the choices; on CUDA float32 is
    full float32, ``full_float32``) and its CPU thread count (``--threads``, when it has one; below 1 is refused)."""
    device = resolve_device(args.device)
    if device.type == "cuda":
        full_float32()
    set_threads(getattr(args, "threads", None))
    return device


class JobBar:
    """One tqdm bar on stderr for the jobs a command runs (off with ``quiet``). ``run(job, ctx, until=f)`` runs a
    job whose progress reports fill the bar from where it stands up to ``f`` (of 1); an inversion's partial results
    show their step and PSNR. ``delay``: seconds before the bar shows (a command that is usually quick shows
    none)."""

    STEPS = 1000

    def __init__(self, desc: str, *, quiet: bool, delay: float = 0.0):
        from tqdm import tqdm

        self.desc = desc
        self.bar = tqdm(total=self.STEPS, desc=desc, file=sys.stderr, disable=quiet, delay=delay,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")
        self._span = (0.0, 1.0)

    def context(self, device: torch.device, *, precision: str = "auto") -> InlineContext:
        """A job context on ``device`` (generators at ``precision``) whose progress reports and partial results feed
        this bar."""
        return InlineContext(device=device, precision=precision, on_progress=self.progress, on_partial=self.partial)

    def run(self, job, ctx, *, until: float = 1.0):
        lo = self.bar.n / self.STEPS
        self._span = (lo, max(lo, until))
        result = job(ctx)
        self._show(self._span[1])
        return result

    def _show(self, fraction: float) -> None:
        self.bar.update(round(self.STEPS * min(max(fraction, 0.0), 1.0)) - self.bar.n)  # drawn as tqdm times it

    def progress(self, fraction: float, _message: str = "") -> None:
        lo, hi = self._span
        self._show(lo + (hi - lo) * fraction)

    def partial(self, result) -> None:
        if hasattr(result, "psnr") and hasattr(result, "step"):
            self.bar.set_description_str(f"{self.desc} · step {result.step}/{result.total} · PSNR {result.psnr:.1f} dB",
                                         refresh=False)

    def close(self) -> None:
        self.bar.close()


def start(args, desc: str, *, delay: float = 0.0) -> tuple[InlineContext, JobBar]:
    """The command's device, precision and threads (``setup_compute``), its progress bar (shown after ``delay``
    seconds) and a job context feeding it."""
    device = setup_compute(args)
    bar = JobBar(desc, quiet=args.quiet, delay=delay)
    return bar.context(device, precision=args.precision), bar


def say(args, text: str) -> None:
    """A command's summary on stdout, unless ``--quiet``."""
    if not args.quiet:
        print(text)


def end_progress_bars() -> None:
    """Close every open tqdm bar, so that what is printed next starts its own line (a bar left mid-line would
    have the ``error:`` line appended to it)."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
