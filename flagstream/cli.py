"""``flagstream`` command line: one subcommand per module in :mod:`flagstream.commands`.

Every user error (bad flag value, bad config, missing model, unreachable broker at start) ends as
one line on stderr and exit code 2, never a traceback: the commands raise :class:`UserError` (or a
:class:`~flagstream.config.ConfigError` / :class:`~classifier.manifest.ModelDirError`) and this module
prints it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from flagstream import __version__
from flagstream.errors import UserError

# Subcommand name -> module in flagstream.commands exposing add_parser(subparsers) and run(args) -> int.
COMMANDS: dict[str, str] = {
    "broker": "broker",
    "stream": "stream",
    "produce": "produce",
    "review": "review",
    "demo": "demo",
    "rescore": "rescore",
    "train": "train",
    "evaluate": "evaluate",
    "calibrate": "calibrate",
    "config": "config",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not a usage dump
        self.exit(2, f"flagstream: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flagstream", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"flagstream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(f"flagstream.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"flagstream.commands.{module}":
                continue  # command not built yet
            raise
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - user-facing boundary
        from classifier.manifest import ModelDirError
        from flagstream.config import ConfigError

        if isinstance(exc, (UserError, ConfigError, ModelDirError)):
            print(f"flagstream {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
