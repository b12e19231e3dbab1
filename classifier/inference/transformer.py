"""A fine-tuned transformer model as a scorer, whatever encoder base it was trained on.

:func:`load_model` asks the registry of encoder bases (:mod:`flagstream.classifier.bases.registry`) which base
a manifest names and lets that base rebuild the model; :class:`TransformerScorer` runs it through the one
:class:`~flagstream.classifier.inference.runtime.InferenceEngine`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from flagstream.classifier.bases.registry import base_of
from flagstream.classifier.interface import ModelInfo, probabilities
from flagstream.classifier.manifest import ModelManifest
from flagstream.classifier.normalize import normalize_text
from flagstream.classifier.inference.runtime import InferenceEngine


def load_model(manifest: ModelManifest) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)``: fp32, eval mode, ready for ``model(input_ids=..., attention_mask=...)``.

    Raises :class:`~flagstream.classifier.manifest.ModelDirError` when the manifest names an unknown base or its
    files do not match the base installed here.
    """
    return base_of(manifest).load_model(manifest)


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
