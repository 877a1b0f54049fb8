"""Face editor entry point: ``python main.py`` starts the editor; subcommands run headless engine tasks."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from editor.app import add_arguments
    from engine.cli.main import add_commands

    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Face editor: StyleGAN2 generation and editing. Without a command, starts the editor.",
    )
    add_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        from editor.app import run as run_editor

        return run_editor(args)
    from engine.cli.main import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
