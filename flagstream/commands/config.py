"""``flagstream config show``: the effective configuration, secrets masked."""

from __future__ import annotations

import argparse

import yaml

from flagstream.config import Settings
from flagstream.options import add_config_flags, settings_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show the effective configuration (secrets masked)")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    show = csub.add_parser("show", help="print the merged YAML + environment + flags config")
    add_config_flags(show, *Settings.model_fields)
    show.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    print(yaml.safe_dump(settings.masked(), sort_keys=False, allow_unicode=True), end="")
    return 0
