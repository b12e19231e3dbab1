"""Secrets never come back in an error: no flag abbreviation, no echo of a secret-bearing option's value.

Through the real CLI (``python -m flagstream.cli``, a subprocess): argparse used to expand
``--sasl-password SECRET`` to ``--sasl-password-file SECRET`` and print the secret in its error.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from flagstream.cli import build_parser

SECRET = "Tr0ub4dor&3-not-for-logs"


def flagstream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flagstream.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.parametrize("argv", [
    ["stream", "--sasl-password", SECRET],            # once abbreviated to --sasl-password-file
    ["stream", f"--sasl-password={SECRET}"],
    ["review", "--sasl-pass", SECRET],
    ["produce", "x.jsonl", "--ssl-password", SECRET],
    ["config", "show", "--sasl-password", SECRET],    # secrets are not flags, even for config show
    ["stream", "--api-token", SECRET],
])
def test_a_secret_given_on_the_command_line_is_refused_without_echo(argv: list[str]) -> None:
    out = flagstream(*argv)
    assert out.returncode == 2
    assert SECRET not in out.stderr and SECRET not in out.stdout
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "unrecognized arguments" in out.stderr and "***" in out.stderr


def test_flags_are_never_abbreviated() -> None:
    out = flagstream("config", "show", "--batch", "7")  # --batch-size exists; a prefix must not reach it
    assert out.returncode == 2 and "unrecognized arguments: --batch 7" in out.stderr


def test_every_parser_refuses_abbreviations() -> None:
    parser = build_parser()
    seen = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen.extend(action.choices.values())
    assert len(seen) > 5
    assert all(p.allow_abbrev is False for p in seen), [p.prog for p in seen if p.allow_abbrev]


def test_a_command_error_naming_a_secret_option_value_redacts_it(tmp_path) -> None:
    # The value reaches a real option (--sasl-password-file) and fails later, in the config layer's
    # "cannot be read" line: that line is printed, the value is not.
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "a", "text": "b"}\n', encoding="utf-8")
    out = flagstream("produce", str(posts), "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "SCRAM-SHA-512",
                     "--sasl-username", "u",
                     "--sasl-password-file", str(tmp_path / SECRET), "--bootstrap-servers", "127.0.0.1:1")
    assert out.returncode == 2
    assert "sasl_password_file *** cannot be read" in out.stderr
    assert SECRET not in out.stderr and out.stderr.count("\n") == 1
