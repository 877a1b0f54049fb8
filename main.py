"""Face editor entry point: ``python main.py`` starts the editor; subcommands run headless engine tasks."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from engine.cli import add_commands

    parser = argparse.ArgumentParser(
        prog="main.py",
        description="Face editor: StyleGAN2 generation and editing. Without a command, starts the editor.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        print("\nThe editor window is not built yet; use the commands above.", file=sys.stderr)
        return 0
    from engine.cli import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
