#!/bin/sh
# `make lock`: regenerate requirements.lock from pyproject.toml, every package pinned with SHA-256 hashes
# (runtime + every extra: what `make demo` / `make test` install). Re-run after any dependency change,
# e.g. after merging branches that add packages; tests/test_lock.py fails until you do.
#
# Existing pins are kept where still allowed (pip-compile prefers them), so a re-run only moves what the
# change requires; `LOCK_UPGRADE=1 make lock` moves everything to the newest allowed versions.
# torch: the lock pins the CPU build 2.13.0+cpu by the hash of its wheel, which pip finds in
# TORCH_WHEELS (default /opt/wheels on these machines; elsewhere, put the torch-2.13.0+cpu wheel for
# cp311 from the PyTorch CPU index there). The CUDA build on PyPI has another hash and is refused.
set -eu
cd "$(dirname "$0")/.."
TOOLS="${LOCK_VENV:-.venv-lock}"
TORCH_WHEELS="${TORCH_WHEELS:-/opt/wheels}"
if [ ! -x "$TOOLS/bin/pip-compile" ]; then
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q --disable-pip-version-check "pip-tools==7.6.2"
fi
upgrade=""
[ "${LOCK_UPGRADE:-0}" = "1" ] && upgrade="--upgrade"
tmp="requirements.lock.tmp"
trap 'rm -f "$tmp"' EXIT
[ -f requirements.lock ] && cp requirements.lock "$tmp"
CUSTOM_COMPILE_COMMAND="make lock" "$TOOLS/bin/pip-compile" -q $upgrade --generate-hashes --allow-unsafe \
    --all-extras --strip-extras --no-emit-index-url --find-links "$TORCH_WHEELS" --output-file "$tmp" pyproject.toml
{ "$TOOLS/bin/python" scripts/lock.py; grep -v '^# pyproject-dependencies-sha256:' "$tmp"; } > requirements.lock
rm -f "$tmp"
echo "requirements.lock: $(grep -c '^[A-Za-z0-9]' requirements.lock) packages pinned with hashes"
