"""requirements.lock is current, complete and hashed; the runtime needs no training-only package.

The lock is what ``make demo`` / ``make test`` install (``pip install --require-hashes``). These checks
run offline: the lock's first line records the fingerprint of pyproject.toml's dependency tables it
was compiled from (``scripts/lock.py``); any dependency change without ``make lock`` fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
sys.path.insert(0, str(ROOT / "scripts"))
from lock import MARKER, inputs_sha256  # noqa: E402

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def locked() -> dict[str, tuple[str, list[str]]]:
    """{canonical name: (version, [sha256 hashes])} from the lock."""
    out: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        m = PIN.match(line)
        if m:
            current = canonicalize_name(m.group(1))
            out[current] = (m.group(2), [])
        if current and "--hash=sha256:" in line:
            out[current][1].extend(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        if not line.startswith((" ", "\t")) and not m:
            current = None
    return out


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs.extend(extra)
    return [Requirement(r) for r in reqs]


def test_lock_is_current_with_pyproject() -> None:
    first = LOCK.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(MARKER), f"{LOCK.name} has no '{MARKER}' first line; run 'make lock'"
    assert first.split()[-1] == inputs_sha256(), (
        "pyproject.toml's dependencies changed since requirements.lock was compiled; run 'make lock' and commit it")


def test_every_declared_package_is_pinned_within_its_range() -> None:
    pins = locked()
    problems = []
    for req in declared():
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name} missing")
        elif not req.specifier.contains(Version(pins[name][0]).public, prereleases=True) and \
                not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req.name}=={pins[name][0]} outside {req.specifier}")
    assert not problems, f"requirements.lock does not satisfy pyproject.toml ({'; '.join(problems)}); run 'make lock'"


def test_every_pin_is_exact_and_hashed() -> None:
    pins = locked()
    assert len(pins) > 20
    unhashed = sorted(n for n, (_, hashes) in pins.items() if not hashes)
    assert not unhashed, f"pins without --hash: {unhashed}"
    body = [ln for ln in LOCK.read_text(encoding="utf-8").splitlines()
            if ln and not ln.startswith(("#", " ", "\t", "--find-links"))]
    loose = [ln for ln in body if not PIN.match(ln)]
    assert not loose, f"lines that are not exact pins: {loose[:5]}"


def test_torch_is_the_cpu_build_pinned_by_its_wheel_hash() -> None:
    version, hashes = locked()["torch"]
    assert version == "2.13.0+cpu" and len(hashes) == 1
    assert "--find-links" in LOCK.read_text(encoding="utf-8")
    assert not any(n.startswith("nvidia-") for n in locked()), "a CUDA dependency slipped into the lock"


TRAIN_ONLY = ("datasets", "matplotlib")


def test_training_only_packages_are_an_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert not runtime & set(TRAIN_ONLY)
    assert {canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["train"]} >= set(TRAIN_ONLY)


@pytest.mark.timeout(300)
def test_the_runtime_scores_without_the_training_extra(tmp_path: Path) -> None:
    """``flagstream rescore`` with the shipped transformer, in a process where datasets and matplotlib
    cannot be imported (as after ``pip install flagstream`` without ``[train]``)."""
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "a", "text": "lemon cake recipe"}\n{"id": "b", "text": "join the fight"}\n',
                     encoding="utf-8")
    out = tmp_path / "scores.jsonl"
    block = "import sys; [sys.modules.__setitem__(m, None) for m in %r]; " % (TRAIN_ONLY,)
    code = block + "from flagstream.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "rescore", str(posts), "-o", str(out)],
                          capture_output=True, text=True, timeout=280, cwd=ROOT,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.read_text(encoding="utf-8").count("\n") == 2


def test_a_training_command_without_the_extra_says_so_in_one_line() -> None:
    block = "import sys; [sys.modules.__setitem__(m, None) for m in %r]; " % (TRAIN_ONLY,)
    code = block + "from flagstream.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "train", "--max-steps", "1"], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "flagstream[train]" in proc.stderr and "Traceback" not in proc.stderr
