"""Model directories: a ``manifest.json`` that names, versions and fingerprints every file.

A model directory is code-adjacent: whoever can swap a file in it changes what gets flagged. So a
directory loads only if every weight file is safetensors (or plain JSON/text), every file is listed
in the manifest with its SHA-256, and nothing unlisted sits beside them. Pickle never loads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from classifier.normalize import NORMALIZER_VERSION

MANIFEST_NAME = "manifest.json"
# Files a person may edit or add without re-fingerprinting the model.
UNHASHED = frozenset({MANIFEST_NAME, "MODEL_CARD.md", "README.md", ".gitattributes"})
ALLOWED_SUFFIXES = frozenset({".safetensors", ".json", ".txt", ".md", ".model", ".png"})
FORBIDDEN_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt", ".npy", ".npz"})


class ModelDirError(ValueError):
    """A model directory that is missing, incomplete, tampered with or unsafe."""


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

    def path(self, name: str) -> Path:
        assert self.root is not None
        return self.root / name


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
    (root / MANIFEST_NAME).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest.root = root
    return root / MANIFEST_NAME


def read_manifest(root: Path, verify: bool = True) -> ModelManifest:
    """Load and (by default) verify a model directory against its manifest."""
    root = Path(root)
    mpath = root / MANIFEST_NAME
    if not root.is_dir():
        raise ModelDirError(f"model directory {root} does not exist; pass --model DIR or train one with 'flagstream train'")
    if not mpath.exists():
        raise ModelDirError(f"{root} has no {MANIFEST_NAME}; it is not a flagstream model directory")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
        manifest = ModelManifest(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelDirError(f"{mpath} is not a valid manifest ({exc})") from None
    manifest.root = root
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
