"""The input fingerprint of requirements.lock: what `make lock` compiled from, and what the lock test compares.

``python scripts/lock.py`` prints the SHA-256 of pyproject.toml's dependency tables (requires-python,
dependencies, every optional-dependencies extra) in a canonical form; ``make lock`` writes it as the
lock's first line, and tests/test_lock.py fails when pyproject.toml's dependencies no longer match it.
Comments and formatting in pyproject.toml do not change it; adding, removing or re-ranging a package does.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "# pyproject-dependencies-sha256:"


def dependency_tables(pyproject: Path = ROOT / "pyproject.toml") -> dict:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return {
        "requires-python": project.get("requires-python"),
        "dependencies": sorted(project.get("dependencies", [])),
        "optional-dependencies": {k: sorted(v) for k, v in sorted(project.get("optional-dependencies", {}).items())},
    }


def inputs_sha256(pyproject: Path = ROOT / "pyproject.toml") -> str:
    canonical = json.dumps(dependency_tables(pyproject), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


if __name__ == "__main__":
    sys.stdout.write(f"{MARKER} {inputs_sha256()}\n")
