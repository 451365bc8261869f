"""The ``tidewater`` command line: dispatches to ``tidewater.commands.<name>``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Expected failures (bad settings, an unreachable chain, Docker down) are
raised as :class:`CommandError` or :class:`SettingsError` and printed as one line, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tidewater import __version__
from tidewater.errors import CommandError
from tidewater.settings import SettingsError

__all__ = ["COMMANDS", "CommandError", "build_parser", "main"]

COMMANDS = ("chain", "serve", "engine", "demo", "admin", "receipt", "db")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidewater", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tidewater {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"tidewater.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tidewater.commands.{name}":
                raise
            continue
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (CommandError, SettingsError) as exc:
        print(f"tidewater {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
