"""Held-out evaluation: thresholds picked on validation, metrics per label, source and language.

Everything is judged on trusted labels only (rule-labelled ISIS rows are excluded; the ISIS hand
labels are its ground truth), with thresholds chosen on the validation split for the target precision,
and the false-positive rate measured on hard negatives: news and discussion of attacks, counter-speech,
PTC news, and the ISIS-account tweets hand-labelled as news. The other jobs of ``flagstream evaluate``
live beside this module: leave-one-source-out in :mod:`flagstream.classifier.evaluation.loso`, plots in :mod:`flagstream.classifier.evaluation.plots`,
the written report in :mod:`flagstream.classifier.evaluation.report`, the model card in :mod:`flagstream.classifier.evaluation.card`, the
functional test suite in :mod:`flagstream.classifier.evaluation.functional`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from flagstream.classifier.training.calibration import (
    expected_calibration_error,
    reliability,
    threshold_for_best_f1,
    threshold_for_precision,
    threshold_for_recall,
)
from flagstream.classifier.data.corpus import load_hand_labels, targets
from flagstream.classifier.labels import LABELS
from flagstream.classifier.evaluation.measures import binary_metrics
from flagstream.classifier.data.sources import is_hard_negative


def trusted(ds: Any, split: str | None = None) -> Any:
    """Rows whose labels a person gave (no rule-labelled rows), optionally of one split."""
    if split is None:
        return ds.filter(lambda w: not w, input_columns="weak")
    return ds.filter(lambda s, w: s == split and not w, input_columns=["split", "weak"])


def choose_thresholds(probs: np.ndarray, y: np.ndarray, target: float | dict[str, float]) -> dict[str, float]:
    """Per label, the validation threshold for the target precision (one number, or one per label)."""
    t = target if isinstance(target, dict) else {lab: target for lab in LABELS}
    return {lab: threshold_for_precision(probs[:, j], y[:, j], float(t[lab]))[0] for j, lab in enumerate(LABELS)}


def targets_text(target: Any) -> str:
    """'0.90' or 'propaganda 0.80, sectarian 0.90' for reports."""
    if isinstance(target, dict):
        vals = {lab: float(target[lab]) for lab in LABELS if lab in target}
        if len(set(vals.values())) == 1:
            return f"{next(iter(vals.values())):.2f}"
        return ", ".join(f"{lab} {v:.2f}" for lab, v in vals.items())
    return f"{float(target):.2f}"


def target_of(target: Any, lab: str) -> float:
    """The precision target of one label, from one number or a per-label mapping."""
    return float(target[lab]) if isinstance(target, dict) else float(target)


def choose_f1_thresholds(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Per label, the threshold of best F1 on validation (the LOSO second operating point)."""
    return {lab: threshold_for_best_f1(probs[:, j], y[:, j]) for j, lab in enumerate(LABELS)}


def recall_matched_thresholds(probs: np.ndarray, y: np.ndarray, recalls: dict[str, float]) -> dict[str, float]:
    """Per label, the threshold at which these validation probabilities reach ``recalls[label]``."""
    return {lab: threshold_for_recall(probs[:, j], y[:, j], recalls[lab]) for j, lab in enumerate(LABELS)}


def fit_baseline(train: Any, seed: int = 13):
    from flagstream.classifier.inference.linear import LinearModel

    return LinearModel.fit(list(train["text"]), targets(train), seed=seed,
                           sample_weight=np.asarray(train["weight"], dtype=np.float64))


def isis_kinds() -> dict[int, str]:
    return {row: rec.get("kind", "") for row, rec in load_hand_labels().items()}


def hard_negative_mask(ds: Any) -> np.ndarray:
    """Hard-negative sources, plus ISIS-account tweets hand-labelled as news."""
    kinds = isis_kinds()
    return np.asarray([is_hard_negative(src, kinds.get(json.loads(meta).get("row", -1)) if hand and meta else None)
                       for src, hand, meta in zip(ds["source"], ds["hand"], ds["meta"])], dtype=bool)


def evaluate_split(ds: Any, probs: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    """Overall / per-source / per-language metrics, hard-negative and Arabic false-positive rates, ECE."""
    y = targets(ds)
    src = np.asarray(ds["source"])
    lang = np.asarray(ds["lang"])
    hard = hard_negative_mask(ds)
    res: dict[str, Any] = {"labels": {}}
    for j, lab in enumerate(LABELS):
        thr = thresholds[lab]
        entry: dict[str, Any] = {"threshold": thr, "overall": binary_metrics(probs[:, j], y[:, j], thr),
                                 "ece": expected_calibration_error(probs[:, j], y[:, j]),
                                 "per_source": {}, "per_lang": {}}
        for s in sorted(set(src)):
            m = src == s
            if (~np.isnan(y[m, j])).any():
                entry["per_source"][s] = binary_metrics(probs[m, j], y[m, j], thr)
        for lg in sorted(set(lang)):
            m = lang == lg
            if (~np.isnan(y[m, j])).any():
                entry["per_lang"][lg] = binary_metrics(probs[m, j], y[m, j], thr)
        hn = hard & (y[:, j] == 0)
        entry["hard_negative_fpr"] = float((probs[hn, j] >= thr).mean()) if hn.any() else float("nan")
        entry["hard_negative_n"] = int(hn.sum())
        entry["hard_negative_fpr_per_source"] = {
            s: float((probs[hn & (src == s), j] >= thr).mean()) for s in sorted(set(src[hn]))}
        ar = (lang == "ar") & (y[:, j] == 0)
        entry["arabic_fpr"] = float((probs[ar, j] >= thr).mean()) if ar.any() else float("nan")
        entry["arabic_negatives_n"] = int(ar.sum())
        entry["reliability"] = reliability(probs[:, j], y[:, j])
        res["labels"][lab] = entry
    return res
