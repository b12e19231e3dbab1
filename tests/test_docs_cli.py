"""Docs that stay true: the README's command table is the CLI's command list, and ``--help`` reads cleanly."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

from flagstream.cli import COMMANDS, build_parser
from support.process import ROOT as PROJECT_ROOT

# Developer commands whose many tuning flags live in --help, not in the README table.
FLAGS_IN_HELP_ONLY = {"train", "evaluate"}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _own_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Flags of the command itself, not the config flags every command shares (documented once)."""
    out = set()
    for a in parser._actions:
        if not a.option_strings or a.help == argparse.SUPPRESS or a.dest in ("help", "config"):
            continue
        if (a.help or "").startswith("(config:"):
            continue
        out.add(max(a.option_strings, key=len))
    return out


def _all_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def _readme_rows() -> list[tuple[list[str], str]]:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `flagstream "):
            continue
        for cell in re.findall(r"`(flagstream [^`]*)`", line.split(" | ")[0]):
            rows.append((cell.split(), line))
    return rows


def test_readme_command_table_matches_the_cli() -> None:
    parser = build_parser()
    commands = _subparsers(parser)
    assert set(commands) == set(COMMANDS)  # every module is built
    rows = _readme_rows()
    documented = {words[1] for words, _ in rows}
    assert documented == set(commands), (f"missing from README: {set(commands) - documented}; "
                                         f"not a command: {documented - set(commands)}")
    for words, line in rows:
        p = commands[words[1]]
        subs = _subparsers(p)
        if len(words) > 2 and words[2] in subs:
            p = subs[words[2]]
        for flag in re.findall(r"--[a-z][a-z0-9-]*", " ".join(words)):
            assert flag in _all_flags(p), f"README mentions {flag} for {' '.join(words[:3])}, the CLI has no such flag"
    for name, p in commands.items():
        cells = " ".join(" ".join(words) for words, _ in rows if words[1] == name)
        if name in FLAGS_IN_HELP_ONLY:
            assert any("--help" in line for words, line in rows if words[1] == name)
            continue
        targets = [p, *_subparsers(p).values()]
        missing = {f for t in targets for f in _own_flags(t)} - set(re.findall(r"--[a-z][a-z0-9-]*", cells))
        assert not missing, f"README command table omits {sorted(missing)} of flagstream {name}"
        for sub in _subparsers(p):
            assert f"flagstream {name} {sub}" in cells or sub == "list", f"README omits flagstream {name} {sub}"


def test_top_level_help_is_plain_text_and_describes_every_command() -> None:
    res = subprocess.run([sys.executable, "-m", "flagstream.cli", "--help"], capture_output=True, text=True,
                         cwd=PROJECT_ROOT)
    assert res.returncode == 0
    assert ":mod:" not in res.stdout and "``" not in res.stdout and ":class:" not in res.stdout
    for name, p in _subparsers(build_parser()).items():
        action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
        helps = {c.dest: c.help for c in action._choices_actions}
        assert helps.get(name), f"flagstream {name} has no description in --help"
        assert name in res.stdout
