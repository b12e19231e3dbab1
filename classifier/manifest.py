"""Model directories: a ``manifest.json`` that names, versions and fingerprints every file.

A model directory is code-adjacent: whoever can swap a file in it changes what gets flagged. So a
directory loads only if every weight file is safetensors (or plain JSON/text), every file is listed
in the manifest with its SHA-256, and nothing unlisted sits beside them. Pickle never loads.

A manifest beside the files it vouches for proves integrity, not origin: whoever swaps the files can
rewrite it too. So an operator may pin the SHA-256 of the manifest itself (``model_manifest_sha256``
in the config, passed here as ``expected_sha256``); the manifest in turn lists every model file and,
for a model built on a packaged base, every file of that base (:func:`tree_digests`), all with full
SHA-256. One pinned hash then fixes every byte that decides a verdict.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flagstream.classifier.normalize import NORMALIZER_VERSION
from flagstream.errors import UserError

MANIFEST_NAME = "manifest.json"
# Files a person may edit or add without re-fingerprinting the model.
UNHASHED = frozenset({MANIFEST_NAME, "MODEL_CARD.md", "README.md", ".gitattributes"})
ALLOWED_SUFFIXES = frozenset({".safetensors", ".json", ".txt", ".md", ".model", ".png"})
FORBIDDEN_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt", ".npy", ".npz"})


class ModelDirError(UserError, ValueError):
    """A model directory that is missing, incomplete, tampered with or unsafe (one line for the user)."""


# Tokens per post when a manifest or a training config names none (the MiniLM recipe's length): the one default.
DEFAULT_MAX_LENGTH = 128


@dataclass
class ModelManifest:
    name: str
    version: str
    kind: str  # "linear" | "transformer"
    labels: list[str]
    thresholds: dict[str, float]
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    normalizer_version: str = NORMALIZER_VERSION
    created_at: str = ""
    base: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    root: Path | None = None
    sha256: str = ""  # of manifest.json as read (not stored in it): what model_manifest_sha256 pins

    def path(self, name: str) -> Path:
        assert self.root is not None
        return self.root / name

    @property
    def max_length(self) -> int:
        """Tokens per post the model was trained with: what inference and recalibration must use too."""
        return int(self.extra.get("max_length", DEFAULT_MAX_LENGTH))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks: the one file hash (manifests, the e5 image, Spark's model pin)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digests(root: Path) -> dict[str, str]:
    """``{relative path: full SHA-256}`` of every file under ``root`` (compiled caches excluded)."""
    root = Path(root)
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def compare_digests(expected: dict[str, str], actual: dict[str, str]) -> str | None:
    """None when equal, else one line naming the first differing files (changed, missing, unexpected)."""
    changed = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    parts = [f"{what}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
             for what, names in (("changed", changed), ("missing", missing), ("unexpected", unexpected)) if names]
    return "; ".join(parts) or None


def write_manifest(root: Path, manifest: ModelManifest) -> Path:
    """Fingerprint every file under ``root`` and write the manifest; refuses unsafe formats."""
    root = Path(root)
    files: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in UNHASHED:
            continue
        if path.suffix in FORBIDDEN_SUFFIXES or path.suffix not in ALLOWED_SUFFIXES:
            raise ModelDirError(f"{rel}: refusing to ship {path.suffix or 'suffix-less'} files in a model; use safetensors")
        files[rel] = sha256_file(path)
    manifest.files = files
    manifest.created_at = manifest.created_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    data = asdict(manifest)
    data.pop("root")
    data.pop("sha256")
    (root / MANIFEST_NAME).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest.root = root
    return root / MANIFEST_NAME


def read_manifest(root: Path, verify: bool = True, expected_sha256: str | None = None) -> ModelManifest:
    """Load and (by default) verify a model directory against its manifest.

    ``expected_sha256`` (the operator's ``model_manifest_sha256``) refuses any manifest whose bytes
    differ, before anything else of the directory is trusted.
    """
    root = Path(root)
    mpath = root / MANIFEST_NAME
    if not root.is_dir():
        raise ModelDirError(f"model directory {root} does not exist; pass --model DIR or train one with 'flagstream train'")
    if not mpath.exists():
        raise ModelDirError(f"{root} has no {MANIFEST_NAME}; it is not a flagstream model directory")
    raw = mpath.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if expected_sha256 and digest != expected_sha256.lower():
        raise ModelDirError(
            f"{mpath} has SHA-256 {digest[:16]}..., but model_manifest_sha256 pins {expected_sha256[:16]}...; "
            "refusing a model that is not the approved one (re-pin only after reviewing the new model)"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
        data.pop("sha256", None)
        manifest = ModelManifest(**data)
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
        raise ModelDirError(f"{mpath} is not a valid manifest ({exc})") from None
    manifest.root, manifest.sha256 = root, digest
    if manifest.normalizer_version != NORMALIZER_VERSION:
        raise ModelDirError(
            f"{root} was trained with text normaliser v{manifest.normalizer_version}, this flagstream has "
            f"v{NORMALIZER_VERSION}; retrain the model or use a matching flagstream release"
        )
    missing_thr = set(manifest.labels) - set(manifest.thresholds)
    if missing_thr:
        raise ModelDirError(f"{mpath} has no threshold for {sorted(missing_thr)}")
    if verify:
        verify_files(manifest)
    return manifest


def verify_files(manifest: ModelManifest) -> None:
    root = manifest.root
    assert root is not None
    present = {
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    } - UNHASHED
    unexpected = sorted(present - set(manifest.files))
    if unexpected:
        raise ModelDirError(f"{root}: unexpected file(s) not in the manifest: {', '.join(unexpected)}; refusing to load")
    for rel, digest in manifest.files.items():
        path = root / rel
        if not path.exists():
            raise ModelDirError(f"{root}: {rel} is listed in the manifest but missing")
        if Path(rel).suffix in FORBIDDEN_SUFFIXES:
            raise ModelDirError(f"{root}: {rel} is a pickle-style file; refusing to load")
        if sha256_file(path) != digest:
            raise ModelDirError(f"{root}: {rel} does not match its manifest hash (changed after release); refusing to load")
