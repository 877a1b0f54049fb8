"""The headless commands of ``main.py``: which there are, their parsers built only when chosen, and running one.

A command's module (``engine.cli.<name>``) is imported when the command is parsed, not when ``main.py`` starts:
the editor and ``main.py --help`` pay for the list of names only. User mistakes end with one ``error:`` line and
exit status 2; anything else with one sentence, exit status 1, and the traceback in the log file.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from engine.cli.common import UserError, end_progress_bars
from engine.errors import ErrorReport, ModelFormatError
from engine.logs import log_path, log_to_stderr, setup_logging
from engine.runtime import tune_allocator

log = logging.getLogger(__name__)


# name -> (one line for main.py --help, the module whose add_command(sub, help=) builds its parser)
COMMANDS: dict[str, tuple[str, str]] = {
    "edit": ("edit a face without the window: a seed, latent or photo, truncation, style mixing, attribute and "
             "lighting edits, translation; writes the image, the W+ latent and a project", "engine.cli.edit"),
    "render": ("re-render a project file exactly as the editor shows it (at another size, or pasted into its "
               "photo)", "engine.cli.render"),
    "invert": ("find the face in a photo and invert it into a generator (writes the reconstruction, the pasted-back "
               "photo, the latent and a project)", "engine.cli.invert"),
    "translate": ("translate a photo or a folder of photos: layer swap into a fine-tuned model, BicycleGAN or "
                  "TUNIT", "engine.cli.translate"),
    "attributes": ("the attribute estimator's reading of a face image or a latent (JSON)", "engine.cli.attributes"),
    "generate": ("write images (and their W+ latents) for a range of seeds", "engine.cli.generate"),
    "info": ("print the detected format and architecture of a model file (for an attribute flow: its condition "
             "layout)", "engine.cli.info"),
    "distance": ("how far a fine-tuned generator is from its base (the model distance), optionally per layer-swap "
                 "depth", "engine.cli.distance"),
    "synth": ("write a synthetic face dataset (images + labels.json)", "engine.cli.synth"),
    "train": ("train generators, the estimator, flows, encoders and image-to-image models (see: train --help)",
              "engine.cli.train"),
}


def _build(sub: argparse._SubParsersAction, help: str, module: str) -> None:
    """Import a command's module (only now: a command's imports cost nothing until it is chosen) and let it add
    its parser."""
    importlib.import_module(module).add_command(sub, help=help)


class LazyCommands(argparse._SubParsersAction):
    """Subcommands listed by name and help line, each parser built (its module imported) when it is chosen."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._builders: dict[str, tuple[str, str]] = {}

    def add_lazy(self, name: str, help: str, module: str) -> None:
        self.add_parser(name, help=help)  # a stand-in: the name for parsing and its line in the help
        self._builders[name] = (help, module)

    def parser(self, name: str) -> argparse.ArgumentParser:
        """Command ``name``'s parser, built now if it was not yet."""
        if name in self._builders:
            help, module = self._builders.pop(name)
            del self._name_parser_map[name]
            listed = len(self._choices_actions)
            _build(self, help, module)
            del self._choices_actions[listed:]  # the stand-in's help line is already listed
        return self._name_parser_map[name]

    def __call__(self, parser, namespace, values, option_string=None):
        if values:
            self.parser(values[0])
        super().__call__(parser, namespace, values, option_string)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the headless commands on a ``main.py`` subparser set: lazily on a ``LazyCommands`` set, else (a
    plain ``add_subparsers()``) built at once."""
    for name, (help, module) in COMMANDS.items():
        if isinstance(sub, LazyCommands):
            sub.add_lazy(name, help, module)
        else:
            _build(sub, help, module)


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run a parsed subcommand (``argv``: the arguments it was parsed from, for the log). ``args.global_quiet``
    (``main.py -q``) and ``args.verbose`` (``-v``, ``-vv``) set the quiet mode and the log on stderr. User errors
    become one ``error:`` line on stderr and exit status 2; anything else one sentence, exit status 1, with the
    traceback in the log file (set FACE_EDITOR_DEBUG=1 to see tracebacks on the terminal instead)."""
    args.quiet = bool(getattr(args, "quiet", False) or getattr(args, "global_quiet", False))
    tune_allocator()
    setup_logging()
    engine_log = logging.getLogger("engine")
    level = engine_log.level
    stderr = log_to_stderr(verbose=getattr(args, "verbose", 0) or 0, quiet=args.quiet)
    log.info("command: %s", " ".join(sys.argv[1:] if argv is None else argv) or args.command)
    try:
        return _run(args)
    finally:  # the stderr log belongs to this command (a test or a caller may run another)
        engine_log.removeHandler(stderr)
        engine_log.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        end_progress_bars()
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        end_progress_bars()
        if os.environ.get("FACE_EDITOR_DEBUG"):
            raise
        report = ErrorReport.from_exception(e)
        user = isinstance(e, UserError | ModelFormatError | ValueError | OSError)  # the input's fault, not ours
        log.log(logging.WARNING if user else logging.ERROR, "%s: %s", "refused" if user else "failed",
                report.message, exc_info=e, extra={"stderr": False})  # the error line below says it there
        print(f"error: {report.message}" + ("" if user else f" ({log_path()})"), file=sys.stderr)
        return 2 if user else 1
