"""The narrow scoring interface everything else depends on.

Streaming and batch rescoring see only :class:`Scorer`: a batch of texts in, an ``(n, labels)``
array of probabilities out, plus the :class:`ModelInfo` that names the model and its thresholds.
This module imports neither torch nor Kafka; the transformer backend is imported lazily, only when
a model directory asks for it, so the streaming loop stays testable with a small linear model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from classifier.labels import LABELS
from classifier.manifest import ModelManifest, read_manifest


@dataclass(frozen=True)
class ModelInfo:
    """What a review message says about the model that produced it."""

    name: str
    version: str
    kind: str
    labels: tuple[str, ...] = LABELS
    thresholds: Mapping[str, float] = field(default_factory=dict)

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


def flagged_labels(row: np.ndarray | Sequence[float], info: ModelInfo) -> list[str]:
    """Label names whose probability reaches the model's threshold."""
    return [lab for lab, p in zip(info.labels, row) if float(p) >= info.thresholds[lab]]


def scores_dict(row: np.ndarray | Sequence[float], info: ModelInfo) -> dict[str, float]:
    return {lab: round(float(p), 6) for lab, p in zip(info.labels, row)}


def load_scorer(
    model_dir: str | Path,
    thresholds: Mapping[str, float] | None = None,
    *,
    manifest_sha256: str | None = None,
    **backend_options: object,
) -> Scorer:
    """Open a model directory (verified against its manifest) with the backend it names.

    ``thresholds`` overrides the model's own validated thresholds, label by label.
    ``manifest_sha256`` (config ``model_manifest_sha256``) refuses any manifest but the pinned one.
    Raises :class:`classifier.manifest.ModelDirError` with one readable line on any problem.
    """
    manifest = read_manifest(Path(model_dir), expected_sha256=manifest_sha256)
    info = info_from_manifest(manifest, thresholds)
    if manifest.kind == "linear":
        from classifier.linear import LinearScorer

        return LinearScorer.load(manifest, info)
    if manifest.kind == "transformer":
        from classifier.transformer import TransformerScorer  # imports torch, lazily

        return TransformerScorer.load(manifest, info, **backend_options)
    from classifier.manifest import ModelDirError

    raise ModelDirError(f"{model_dir}: unknown model kind {manifest.kind!r} (expected linear or transformer)")


def info_from_manifest(manifest: ModelManifest, thresholds: Mapping[str, float] | None = None) -> ModelInfo:
    info = ModelInfo(
        name=manifest.name,
        version=manifest.version,
        kind=manifest.kind,
        labels=tuple(manifest.labels),
        thresholds=dict(manifest.thresholds),
    )
    if thresholds:
        unknown = set(thresholds) - set(info.labels)
        if unknown:
            from classifier.manifest import ModelDirError

            raise ModelDirError(
                f"thresholds name unknown label(s) {sorted(unknown)}; the model's labels are {list(info.labels)}"
            )
        info = replace(info, thresholds={**info.thresholds, **thresholds})
    return info
