"""Model directories load only when every file matches the manifest and nothing is pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import classifier.linear as linear
from classifier.manifest import ModelDirError, read_manifest
from classifier.scoring import flagged_labels, load_scorer

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
