"""The head every encoder base is fine-tuned with: masked mean pooling and a 2-logit multi-label layer.

Shared by the bases (:mod:`flagstream.classifier.bases.minilm`, :mod:`flagstream.classifier.bases.e5.model`) and
the inference that runs them, so a base builds on this module and never on inference code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

HEAD_FILE = "head.safetensors"


@dataclass
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
