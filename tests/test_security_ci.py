"""The TLS suite runs in CI every time: a missing stunnel4 fails CI instead of skipping quietly.

``scripts/install-test-deps.sh`` is run for real, with a PATH that holds only ``id`` (so neither
stunnel, openssl nor apt-get can be found, as on a machine without them).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support.tls import missing_tool, running_in_ci

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "install-test-deps.sh"


def _run_installer(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("id", "tr"):
        (bare / tool).symlink_to(next(Path(d) / tool for d in ("/usr/bin", "/bin") if (Path(d) / tool).exists()))
    return subprocess.run(["/bin/sh", str(SCRIPT)], env={"PATH": str(bare), **env}, capture_output=True, text=True,
                          timeout=60)


def test_installer_fails_in_ci_when_it_cannot_install(tmp_path: Path) -> None:
    out = _run_installer(tmp_path, CI="true")
    assert out.returncode == 1
    assert "stunnel4" in out.stderr and "CI needs it" in out.stderr


def test_installer_only_warns_outside_ci(tmp_path: Path) -> None:
    out = _run_installer(tmp_path, CI="false")
    assert out.returncode == 0
    assert "TLS/browser/Spark tests will be skipped" in out.stderr and "stunnel4" in out.stderr


def test_a_missing_tls_tool_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLAGSTREAM_REQUIRE_TLS_TESTS", raising=False)
    monkeypatch.setenv("CI", "true")
    assert running_in_ci()
    with pytest.raises(pytest.fail.Exception, match="in CI the TLS suite must run"):
        missing_tool("stunnel4 is not installed")
    monkeypatch.setenv("CI", "")
    assert not running_in_ci()
    with pytest.raises(pytest.skip.Exception, match="install-test-deps"):
        missing_tool("stunnel4 is not installed")


def test_ci_entry_point_installs_the_tls_tools() -> None:
    """.ci/run -> make test -> scripts/install-test-deps.sh, whose failure stops the build."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    test_recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/install-test-deps.sh" in test_recipe and "if [ -x" not in test_recipe
    ci_run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci_run and "FLAGSTREAM_REQUIRE_TLS_TESTS=1" in ci_run
    assert os.access(SCRIPT, os.X_OK)
