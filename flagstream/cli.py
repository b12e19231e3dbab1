"""``flagstream`` command line: one subcommand per module in :mod:`flagstream.commands`.

Every user error (bad flag value, bad config, missing model, unreachable broker at start) ends as
one line on stderr and exit code 2, never a traceback: lower layers raise a subclass of
:class:`~flagstream.errors.UserError` (``ConfigError``, ``ModelDirError``, ...) and this module prints it.

Flags are never abbreviated (``allow_abbrev=False``): an abbreviation let ``--sasl-password SECRET``
resolve to ``--sasl-password-file SECRET``. And no usage error ever repeats the value given to an
option whose name mentions a password, passphrase, secret or token: it is replaced by ``***``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from flagstream import __version__
from flagstream.errors import UserError

# Subcommand name -> module in flagstream.commands exposing add_parser(subparsers) and run(args) -> int.
COMMANDS: dict[str, str] = {
    "broker": "broker",
    "stream": "stream",
    "produce": "produce",
    "review": "review",
    "dlq": "dlq",
    "decide": "decide",
    "console": "console",
    "demo": "demo",
    "rescore": "rescore",
    "train": "train",
    "evaluate": "evaluate",
    "calibrate": "calibrate",
    "export-decisions": "export_decisions",
    "shadow-report": "shadow_report",
    "bank": "trust.bank",
    "statements": "trust.statements",
    "config": "config",
}

SECRET_WORDS = ("pass", "secret", "token")


class UsageError(Exception):
    """A command line argparse rejected; :func:`main` prints it (redacted) as one line."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog, self.message = prog, message


DESCRIPTION = ("Score social posts for extremist propaganda and sectarian hate: a Kafka stream pipeline, batch "
               "rescoring, and the tools around them. 'flagstream COMMAND --help' describes each command.")


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False  # every parser, subcommands included
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # one line, not a usage dump; main() redacts and prints it
        raise UsageError(self.prog, message)


def secret_values(argv: Sequence[str]) -> list[str]:
    """Values the user gave to any option whose name looks secret-bearing (``--x-password V``, ``--x-token=V``)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if not arg.startswith("-"):
            continue
        name, eq, value = arg.partition("=")
        if not any(word in name.lower() for word in SECRET_WORDS):
            continue
        if eq:
            out.append(value)
        elif i + 1 < len(argv):
            out.append(argv[i + 1])
    return [v for v in out if v]


def redact(message: str, secrets: Sequence[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        message = message.replace(value, "***")
    return message


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flagstream", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"flagstream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in COMMANDS.values():
        importlib.import_module(f"flagstream.commands.{module}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        message = redact(exc.message, secret_values(argv))
        print(f"flagstream: error: {message} (see '{exc.prog} --help')", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UserError as exc:  # the one place a typed UserError (flagstream.errors) becomes one line
        message = redact(str(exc), secret_values(argv))
        print(f"flagstream {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
