"""Face editor entry point: ``python main.py`` starts the editor; subcommands run headless engine tasks."""
from __future__ import annotations

import argparse
import sys

EPILOG = """examples:
  python main.py                                   the editor (--model, --project, --photo open files in it)
  python main.py edit --seed 7 --set age=60 --out face.png
  python main.py render face.fproj --size 1024 --out face-1024.png
  python main.py COMMAND --help                    a command's options and examples
"""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: the editor's options, ``-v`` / ``-q``, and the commands (each one's parser is built
    only when it is chosen: ``engine.cli.main.LazyCommands``)."""
    from editor.app import add_arguments
    from engine.cli.common import CommandParser
    from engine.cli.main import LazyCommands, add_commands

    parser = CommandParser(
        prog="main.py", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Face editor: StyleGAN2 generation and editing. Without a command, starts the editor.",
    )
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what the engine does on stderr (-vv: in detail)")
    parser.add_argument("-q", "--quiet", dest="global_quiet", action="store_true",
                        help="commands: no progress bars or summaries, only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", action=LazyCommands)
    add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.command is None:
        from editor.app import run as run_editor

        if args.verbose:
            from engine.logs import log_to_stderr

            log_to_stderr(verbose=args.verbose)
        return run_editor(args)
    from engine.cli.main import run

    return run(args, argv)


if __name__ == "__main__":
    sys.exit(main())
