"""The ``tidewater`` command line: dispatches to the modules of ``tidewater.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Expected failures (bad settings, an unreachable chain, Docker down) are
raised as :class:`CommandError` or :class:`SettingsError` and printed as one line, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from tidewater import __version__
from tidewater.commands import admin, chain, db, demo, engine, receipt, serve
from tidewater.errors import CommandError
from tidewater.settings import SettingsError

__all__ = ["COMMANDS", "CommandError", "build_parser", "main"]

#: Each subcommand's module, in ``--help`` order.
COMMANDS: dict[str, ModuleType] = {
    "chain": chain,
    "serve": serve,
    "engine": engine,
    "demo": demo,
    "admin": admin,
    "receipt": receipt,
    "db": db,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tidewater", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tidewater {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
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
