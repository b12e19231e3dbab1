"""The narrow scoring interface and the one score formula: a leaf every other module may import.

Streaming, rescoring and reports see a model only through :class:`Scorer` (texts in, an ``(n, labels)``
array of probabilities out) and the :class:`ModelInfo` that names it and its thresholds. The backends
(:mod:`flagstream.classifier.inference.linear`, :mod:`flagstream.classifier.inference.transformer`) implement it and :mod:`flagstream.classifier.inference.scoring`
opens a model directory with the right one; all three import this module, and it imports none of
them, so the package has no import cycle. No torch, no Kafka: numpy and the label names only.

:func:`probabilities` is the only place where logits become probabilities (sigmoid of logit over a
per-label temperature), so a temperature is fitted (:mod:`flagstream.classifier.training.calibration`) with exactly the
formula it is served with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from flagstream.classifier.labels import LABELS


@dataclass(frozen=True)
class ModelInfo:
    """What a review message says about the model that produced it."""

    name: str
    version: str
    kind: str
    labels: tuple[str, ...] = LABELS
    thresholds: Mapping[str, float] = field(default_factory=dict)
    # A digest of everything that decides the probabilities (weight files, base, temperatures, max length),
    # not the thresholds: two models with equal, non-empty ids give the same score to every post, so a
    # thresholds-only candidate in shadow mode reuses the served scores instead of scoring twice.
    scoring_id: str = ""

    @property
    def ref(self) -> str:
        """``name@version``, the form used in rescored files and logs."""
        return f"{self.name}@{self.version}"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}


@runtime_checkable
class Scorer(Protocol):
    """Anything that turns texts into per-label probabilities."""

    info: ModelInfo

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape ``(len(texts), len(info.labels))``, in ``info.labels`` order."""
        ...


def probabilities(logits: np.ndarray | Sequence[float], temperatures: Sequence[float] | float | None = None) -> np.ndarray:
    """``sigmoid(logit / T)``, per label (``temperatures`` broadcast over the last axis; None = 1).

    Computed in the logits' own float precision: float32 logits from the engine give the float32
    scores the stream serves; float64 ones (temperature fitting) stay float64.
    """
    z = np.asarray(logits)
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(np.float64)
    if temperatures is not None:
        z = z / np.asarray(temperatures, dtype=z.dtype)
    return 1.0 / (1.0 + np.exp(-z))


def flagged_labels(row: np.ndarray | Sequence[float], info: ModelInfo) -> list[str]:
    """Label names whose probability reaches the model's threshold."""
    return [lab for lab, p in zip(info.labels, row) if float(p) >= info.thresholds[lab]]


def scores_dict(row: np.ndarray | Sequence[float], info: ModelInfo) -> dict[str, float]:
    return {lab: round(float(p), 6) for lab, p in zip(info.labels, row)}
