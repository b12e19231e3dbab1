"""precision int8 (ONNX Runtime, per-channel): agreement with fp32, the per-weights cache, the missing-extra error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

from flagstream.classifier.inference import onnx_int8  # noqa: E402
from flagstream.classifier.inference.runtime import InferenceEngine  # noqa: E402
from flagstream.errors import UserError  # noqa: E402

from test_runtime import _texts, _tiny_model, tokenizer  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLAGSTREAM_CACHE_DIR", str(tmp_path / "cache"))


MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "flagstream-minilm"


@pytest.mark.skipif(not (MODEL_DIR / "manifest.json").exists(), reason="the shipped model is not in this checkout")
def test_int8_agrees_with_fp32_on_the_shipped_model_and_leaves_the_callers_model_alone(tokenizer):  # noqa: F811
    """The shipped weights (a random head would not say how int8 moves real scores), on varied texts."""
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.inference.transformer import load_model

    model, tok = load_model(read_manifest(MODEL_DIR))
    texts = _texts(200, seed=11) + [t for t in _sample_posts()][:200]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ref = InferenceEngine(model, tok, max_length=128, precision="fp32").logits(texts)
    eng = InferenceEngine(model, tok, max_length=128, precision="int8")
    fast = eng.logits(texts)
    assert isinstance(eng.model, onnx_int8.OnnxInt8Model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # inplace=False: untouched
    p_ref, p_fast = 1 / (1 + np.exp(-ref)), 1 / (1 + np.exp(-fast))
    assert p_ref.std(axis=0).min() > 0.05  # scores are spread: the comparison means something
    assert np.abs(p_ref - p_fast).mean() < 0.01
    assert ((p_ref >= 0.5) == (p_fast >= 0.5)).mean() >= 0.98
    # Unlike fp32, int8 is NOT batch-invariant: activations are quantised with one scale per batch, so a
    # post's score moves a little with its batch-mates (documented: stream and rescore agree to within this).
    single = np.stack([eng.logits([t])[0] for t in texts[:40]])
    p_single = 1 / (1 + np.exp(-single))
    assert np.abs(p_single - p_fast[:40]).mean() < 0.01
    assert np.allclose(eng.logits(texts[:40]), eng.logits(texts[:40]))  # but the same batch, the same scores
    assert eng.logits([]).shape == (0, 2)


def _sample_posts() -> list[str]:
    import json

    out = []
    for line in (MODEL_DIR.parents[1] / "examples" / "sample_posts.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict) and isinstance(r.get("text"), str):
            out.append(r["text"])
    return out


def test_conversion_is_cached_by_weights(monkeypatch):
    model = _tiny_model(seed=1)
    first = onnx_int8.cached_int8(model)
    assert first.is_file()
    leftovers = [p for p in first.parent.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the temporary conversion directory was renamed into place

    def no_conversion(*_a, **_k):
        raise AssertionError("converted again although the cache holds these weights")

    monkeypatch.setattr(onnx_int8, "convert", no_conversion)
    assert onnx_int8.cached_int8(model) == first
    other = _tiny_model(seed=2)  # other weights: another key, so a stale file is never served
    with pytest.raises(AssertionError, match="converted again"):
        onnx_int8.cached_int8(other)


def test_without_onnxruntime_int8_is_a_one_line_user_error(monkeypatch, tokenizer):  # noqa: F811
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UserError) as err:
        InferenceEngine(_tiny_model(), tokenizer, max_length=64, precision="int8")
    msg = str(err.value)
    assert "\n" not in msg and "pip install 'flagstream[onnx]'" in msg
