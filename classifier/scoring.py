"""Open a model directory as a :class:`~classifier.interface.Scorer`, with the backend its manifest names.

The interface itself (``Scorer``, ``ModelInfo``, ``flagged_labels``, ``scores_dict``) lives in the leaf
:mod:`classifier.interface` and is re-exported here, so the stream imports one module for both.
This module imports neither torch nor Kafka; the transformer backend is imported lazily, only when
a model directory asks for it, so the streaming loop stays testable with a small linear model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from flagstream.classifier.interface import ModelInfo, Scorer, flagged_labels, scores_dict
from flagstream.classifier.manifest import ModelDirError, ModelManifest, read_manifest

__all__ = ["ModelInfo", "Scorer", "flagged_labels", "info_from_manifest", "load_scorer", "scores_dict"]


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
        from flagstream.classifier.linear import LinearScorer

        return LinearScorer.load(manifest, info)
    if manifest.kind == "transformer":
        from flagstream.classifier.transformer import TransformerScorer  # imports torch, lazily

        return TransformerScorer.load(manifest, info, **backend_options)
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
            raise ModelDirError(
                f"thresholds name unknown label(s) {sorted(unknown)}; the model's labels are {list(info.labels)}"
            )
        info = replace(info, thresholds={**info.thresholds, **thresholds})
    return info
