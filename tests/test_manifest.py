"""Model directories load only when every file matches the manifest and nothing is pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import flagstream.classifier.inference.linear as linear
from flagstream.classifier.manifest import ModelDirError, read_manifest
from flagstream.classifier.inference.scoring import flagged_labels, load_scorer

TEXTS = [
    "join the fighters and strike the enemies of the caliphate",
    "our brothers martyred in glorious attack, take up arms",
    "police report explosion near the marathon finish line",
    "thoughts with the victims of the attack today",
    "those people of that religion are vermin and should be expelled",
    "that ethnic group are parasites, all of them",
    "lovely weather at the beach this weekend",
    "new recipe for lemon cake turned out great",
] * 3
TARGETS = np.array([[1, 0], [1, 0], [0, 0], [0, 0], [0, 1], [0, 1], [0, 0], [0, 0]] * 3, dtype=float)


@pytest.fixture()
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(linear.WORD_PARAMS, "min_df", 1)
    monkeypatch.setitem(linear.CHAR_PARAMS, "min_df", 1)
    model = linear.LinearModel.fit(TEXTS, TARGETS)
    model.save(tmp_path / "m", "tiny", "0.0.1", {"propaganda": 0.5, "sectarian": 0.5})
    return tmp_path / "m"


def test_roundtrip_scores_and_versions(model_dir: Path) -> None:
    scorer = load_scorer(model_dir)
    assert scorer.info.ref == "tiny@0.0.1"
    probs = scorer.score(["take up arms and join the fighters", "lemon cake recipe"])
    assert probs.shape == (2, 2)
    assert "propaganda" in flagged_labels(probs[0], scorer.info)
    assert flagged_labels(probs[1], scorer.info) == []


def test_threshold_override(model_dir: Path) -> None:
    scorer = load_scorer(model_dir, thresholds={"sectarian": 0.99})
    assert scorer.info.thresholds == {"propaganda": 0.5, "sectarian": 0.99}
    with pytest.raises(ModelDirError, match="unknown label"):
        load_scorer(model_dir, thresholds={"spam": 0.5})


def test_tampered_file_is_refused(model_dir: Path) -> None:
    vocab = model_dir / "word_vocab.json"
    vocab.write_text(vocab.read_text().replace("0", "1", 1))
    with pytest.raises(ModelDirError, match="does not match its manifest hash"):
        read_manifest(model_dir)


def test_unexpected_and_pickle_files_are_refused(model_dir: Path) -> None:
    (model_dir / "extra.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(ModelDirError, match="unexpected file"):
        load_scorer(model_dir)


def test_missing_dir_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match="does not exist"):
        load_scorer(tmp_path / "nope")


# --- origin: the operator's pin on the manifest ------------------------------------------------------

def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pinned_manifest_loads_and_any_other_is_refused(model_dir: Path) -> None:
    pin = _sha256(model_dir / "manifest.json")
    assert load_scorer(model_dir, manifest_sha256=pin).info.ref == "tiny@0.0.1"
    assert read_manifest(model_dir).sha256 == pin
    # A self-consistent model with another manifest (here: the same files, a new threshold) is refused.
    text = (model_dir / "manifest.json").read_text()
    (model_dir / "manifest.json").write_text(text.replace('"propaganda": 0.5', '"propaganda": 0.05', 1))
    assert read_manifest(model_dir).thresholds["propaganda"] == 0.05  # intact by its own hashes
    with pytest.raises(ModelDirError, match="model_manifest_sha256 pins") as err:
        load_scorer(model_dir, manifest_sha256=pin)
    assert "\n" not in str(err.value)


def test_pin_through_config_and_cli(model_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from flagstream.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="model_manifest_sha256"):
        load_settings(None, {"model_manifest_sha256": "abc"}, environ={})
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"id": "a", "text": "lemon cake recipe"}\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "flagstream.cli", "rescore", str(posts), "-o", str(out), "--model", str(model_dir)]
    wrong = "0" * 64
    bad = subprocess.run([*cmd, "--model-manifest-sha256", wrong], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "model_manifest_sha256 pins" in bad.stderr
    assert not out.exists()
    pin = _sha256(model_dir / "manifest.json")
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                        env={**__import__("os").environ, "FLAGSTREAM_MODEL_MANIFEST_SHA256": pin.upper()})
    assert ok.returncode == 0, ok.stderr
    assert out.read_text().count("\n") == 1


# --- integrity of the base: every file, full SHA-256 -------------------------------------------------

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "flagstream-minilm"


def test_shipped_manifest_fingerprints_every_base_file_in_full() -> None:
    from flagstream.classifier.bases.minilm import base_dir

    extra = read_manifest(SHIPPED).extra
    files = extra["base_files"]
    on_disk = {p.relative_to(base_dir()).as_posix() for p in base_dir().rglob("*") if p.is_file()}
    assert set(files) == on_disk
    assert {"model.safetensors", "tokenizer.json", "vocab.txt", "config.json", "tokenizer_config.json"} <= set(files)
    assert all(len(h) == 64 for h in files.values())
    assert "base_sha256_16" not in extra


@pytest.fixture()
def base_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The packaged base, copied (its 90 MB weights symlinked, never written), as base_dir()."""
    from flagstream.classifier.bases import minilm

    src = minilm.base_dir()
    dst = tmp_path / "base"
    for p in src.rglob("*"):
        if p.is_file():
            target = dst / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            if p.name == "model.safetensors":
                target.symlink_to(p)
            else:
                target.write_bytes(p.read_bytes())
    monkeypatch.setattr(minilm, "base_dir", lambda: dst)
    return dst


def test_a_changed_tokenizer_or_config_in_the_base_is_refused(base_copy: Path) -> None:
    from flagstream.classifier.bases.minilm import verify_base

    manifest = read_manifest(SHIPPED)
    verify_base(manifest)  # the copy is the base the model was trained on
    for name in ("tokenizer_config.json", "vocab.txt"):
        original = (base_copy / name).read_bytes()
        (base_copy / name).write_bytes(original.replace(b"a", b"b", 1))
        with pytest.raises(ModelDirError, match=f"changed: {name}") as err:
            verify_base(manifest)
        assert "\n" not in str(err.value)
        (base_copy / name).write_bytes(original)
    (base_copy / "added_tokens.json").write_text("{}")
    with pytest.raises(ModelDirError, match="unexpected: added_tokens.json"):
        verify_base(manifest)


def test_a_manifest_without_whole_base_fingerprints_is_refused(tmp_path: Path) -> None:
    import json
    import shutil

    from flagstream.classifier.bases.minilm import verify_base

    legacy = tmp_path / "legacy"
    shutil.copytree(SHIPPED, legacy)
    data = json.loads((legacy / "manifest.json").read_text())
    data["extra"].pop("base_files")
    data["extra"]["base_sha256_16"] = "53aa51172d142c89"
    (legacy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelDirError, match="does not fingerprint the base"):
        verify_base(read_manifest(legacy))
