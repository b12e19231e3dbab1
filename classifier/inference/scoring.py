"""Open a model directory as a :class:`~flagstream.classifier.interface.Scorer`, with the backend its manifest names.

The interface itself (``Scorer``, ``ModelInfo``, ``flagged_labels``, ``scores_dict``) lives in the leaf
:mod:`flagstream.classifier.interface` and is re-exported here, so the stream imports one module for both.
This module imports neither torch nor Kafka; the transformer backend is imported lazily, only when
a model directory asks for it, so the streaming loop stays testable with a small linear model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from flagstream.classifier.interface import ModelInfo, Scorer, flagged_labels, scores_dict
from flagstream.classifier.manifest import ModelDirError, ModelManifest, read_manifest

__all__ = ["ModelInfo", "Scorer", "flagged_labels", "info_from_manifest", "load_scorer", "score_isolating_failures",
           "scores_dict"]


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
    Raises :class:`flagstream.classifier.manifest.ModelDirError` with one readable line on any problem.
    """
    manifest = read_manifest(Path(model_dir), expected_sha256=manifest_sha256)
    info = info_from_manifest(manifest, thresholds)
    if manifest.kind == "linear":
        from flagstream.classifier.inference.linear import LinearScorer

        return LinearScorer.load(manifest, info)
    if manifest.kind == "transformer":
        from flagstream.classifier.inference.transformer import TransformerScorer  # imports torch, lazily

        return TransformerScorer.load(manifest, info, **backend_options)
    raise ModelDirError(f"{model_dir}: unknown model kind {manifest.kind!r} (expected linear or transformer)")


# Files that document a model but never change a score; every other file (and every manifest field but
# name, version, thresholds and provenance) goes into the scoring id. Erring on inclusion only costs a rescore.
_DOC_SUFFIXES = (".md", ".png", ".html", ".csv")
# Manifest extras a thresholds-only version rewrites (classifier/feedback/recalibrate.py) or that only describe training.
_NOT_SCORING = {"target_precision", "recalibration", "validation", "training_note", "data_summary"}


def scoring_id(manifest: ModelManifest) -> str:
    """Digest of what decides a model's probabilities (see :attr:`ModelInfo.scoring_id`)."""
    import hashlib
    import json

    files = {k: v for k, v in sorted(manifest.files.items()) if not k.endswith(_DOC_SUFFIXES)}
    extra = {k: v for k, v in sorted(manifest.extra.items()) if k not in _NOT_SCORING}
    blob = json.dumps({"kind": manifest.kind, "base": manifest.base, "labels": list(manifest.labels),
                       "normalizer": manifest.normalizer_version,
                       "files": files, "extra": extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def info_from_manifest(manifest: ModelManifest, thresholds: Mapping[str, float] | None = None) -> ModelInfo:
    info = ModelInfo(
        name=manifest.name,
        version=manifest.version,
        kind=manifest.kind,
        labels=tuple(manifest.labels),
        thresholds=dict(manifest.thresholds),
        scoring_id=scoring_id(manifest),
    )
    if thresholds:
        unknown = set(thresholds) - set(info.labels)
        if unknown:
            raise ModelDirError(
                f"thresholds name unknown label(s) {sorted(unknown)}; the model's labels are {list(info.labels)}"
            )
        info = replace(info, thresholds={**info.thresholds, **thresholds})
    return info


def score_isolating_failures(scorer: Scorer, texts: list[str],
                             on_batch_error: Callable[[Exception], None] | None = None) -> list[np.ndarray | None]:
    """One probability row per text, or None where the model failed on it or gave a non-finite score.

    The whole list is scored in one call (the scorer's own batching applies); if that call fails, text by
    text, so one bad text fails alone. The stream and the archive path both score through here, so the
    same text fails the same way in both (``scoring_failed``).
    """
    if not texts:
        return []
    n_labels = len(scorer.info.labels)
    try:
        probs = np.asarray(scorer.score(texts), dtype=np.float64)
        if probs.shape != (len(texts), n_labels):
            raise ValueError(f"scorer returned shape {probs.shape}, expected {(len(texts), n_labels)}")
        rows: list[np.ndarray | None] = list(probs)
    except Exception as exc:  # noqa: BLE001 - one bad text must not stop a stream or a million-row run
        if on_batch_error is not None:
            on_batch_error(exc)
        rows = []
        for text in texts:
            try:
                one = np.asarray(scorer.score([text]), dtype=np.float64)
                rows.append(one[0] if one.shape == (1, n_labels) else None)
            except Exception:  # noqa: BLE001
                rows.append(None)
    return [r if r is not None and bool(np.all(np.isfinite(r))) else None for r in rows]
