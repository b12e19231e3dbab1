"""The committed default model: loads offline, scores sensibly, stays small, refuses tampering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from flagstream.classifier.manifest import ModelDirError, read_manifest
from flagstream.classifier.inference.scoring import load_scorer

MODEL = Path(__file__).resolve().parent.parent / "models" / "flagstream-minilm"

pytestmark = pytest.mark.skipif(not (MODEL / "manifest.json").exists(), reason="default model not committed yet")


def test_default_model_is_small_safetensors_and_versioned():
    files = [p for p in MODEL.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 25 * 1024 * 1024
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pkl", ".pth")]
    m = read_manifest(MODEL)
    assert m.kind == "transformer" and m.version.count(".") == 2
    assert m.extra["data_hash"] and m.extra["config_hash"] and len(m.extra["temperatures"]) == 2
    assert all(0.0 < t < 1.0 for t in m.thresholds.values())
    assert (MODEL / "MODEL_CARD.md").exists()


@pytest.fixture(scope="module")
def scorer():
    return load_scorer(MODEL)


def test_default_model_scores_in_input_order(scorer):
    texts = ["Lovely weather in Boston today, heading to the park.",
             "Police say two explosions near the marathon finish line; several injured.",
             "The mujahideen of the Islamic State slaughtered the apostates, takbir! Join the caravan of the khilafah."]
    probs = scorer.score(texts)
    assert probs.shape == (3, 2) and probs.dtype == np.float32
    assert np.all((probs >= 0) & (probs <= 1))
    again = scorer.score(texts[::-1])[::-1]
    np.testing.assert_allclose(probs, again, atol=2e-3)
    assert probs[2, 0] > probs[0, 0] and probs[2, 0] > probs[1, 0]
    assert scorer.score([]).shape == (0, 2)


def test_default_model_load_model_is_plain_fp32_eval(scorer):
    from flagstream.classifier.inference.transformer import load_model

    model, tok = load_model(read_manifest(MODEL))
    assert not model.training
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in model.parameters())
    enc = tok(["hello"], return_tensors="pt")
    assert model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.shape == (1, 2)


def test_tampered_copy_is_refused(tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(MODEL, copy)
    weights = copy / "head.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelDirError, match="does not match"):
        load_scorer(copy)


def test_extra_file_or_pickle_is_refused(tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(MODEL, copy)
    (copy / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ModelDirError):
        load_scorer(copy)


def test_threshold_override_applies(tmp_path):
    s = load_scorer(MODEL, thresholds={"propaganda": 0.99})
    assert s.info.thresholds["propaganda"] == 0.99
    manifest = json.loads((MODEL / "manifest.json").read_text())
    assert s.info.thresholds["sectarian"] == manifest["thresholds"]["sectarian"]


FIXTURE = Path(__file__).resolve().parent / "fixtures" / "flagstream-minilm-1.4.0-sample-scores.json"


def _sample_posts() -> dict[str, str]:
    """The valid posts of examples/sample_posts.jsonl (the file also holds malformed lines for the stream's DLQ)."""
    posts = {}
    for line in (MODEL.parent.parent / "examples" / "sample_posts.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict) and isinstance(d.get("id"), str) and isinstance(d.get("text"), str):
            posts[d["id"]] = d["text"]
    return posts


def test_shipped_model_scores_match_the_recorded_scores():
    """Scores recorded before the two engines were merged into one: same flags, same probabilities (fp32)."""
    ref = json.loads(FIXTURE.read_text(encoding="utf-8"))
    posts = _sample_posts()
    s = load_scorer(MODEL, precision="fp32")
    probs = s.score([posts[r["id"]] for r in ref["rows"]])
    expected = np.array([r["scores"] for r in ref["rows"]], dtype=np.float64)
    from flagstream.classifier.inference.scoring import flagged_labels

    assert [flagged_labels(p, s.info) for p in probs] == [r["flags"] for r in ref["rows"]]
    assert sum(bool(r["flags"]) for r in ref["rows"]) >= 5  # the sample has flagged posts, not only clean ones
    assert float(np.abs(probs - expected).max()) < 1e-5  # recorded at 7 decimals


def test_calibration_and_serving_run_the_same_engine_and_formula(scorer):
    """What calibration fits temperatures on (predict_logits) is what the stream serves (scorer.score)."""
    from flagstream.classifier.interface import probabilities
    from flagstream.classifier.normalize import normalize_text
    from flagstream.classifier.inference.runtime import predict_logits
    from flagstream.classifier.inference.transformer import load_model

    texts = list(_sample_posts().values())
    model, tok = load_model(read_manifest(MODEL))
    z = predict_logits(model, tok, [normalize_text(t) for t in texts], scorer.max_length, precision=scorer.engine.precision)
    np.testing.assert_allclose(z, scorer.logits(texts), atol=1e-4)
    np.testing.assert_allclose(probabilities(z, scorer.temperatures), scorer.score(texts), atol=1e-4)
    assert all(p.requires_grad for p in model.encoder.encoder.parameters())  # the caller's model is not taken over
