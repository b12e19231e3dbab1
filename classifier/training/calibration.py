"""Calibration and operating points, all fitted on validation data only.

Per-label temperature scaling (one scalar per label, fitted by NLL on validation logits) turns raw
logits into probabilities whose confidence means something (reported as expected calibration
error); thresholds are then chosen on the calibrated validation scores for a target precision.
The logits come from the same engine the stream serves with (:func:`flagstream.classifier.inference.runtime.predict_logits`)
and become probabilities through the same formula (:func:`flagstream.classifier.interface.probabilities`), so a
threshold picked here means the same on a served score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flagstream.classifier.interface import probabilities


def _nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    p = np.clip(probabilities(z, t), 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Scalar T > 0 minimising validation NLL of sigmoid(logit / T); golden-section on log T."""
    known = ~np.isnan(y)
    z, t = np.asarray(logits, dtype=np.float64)[known], np.asarray(y, dtype=np.float64)[known]
    if len(np.unique(t)) < 2:
        return 1.0
    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = _nll(z, t, np.exp(a)), _nll(z, t, np.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = _nll(z, t, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = _nll(z, t, np.exp(b))
    return float(np.exp((lo + hi) / 2))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Equal-width-bin ECE over rows with a known label."""
    known = ~np.isnan(y)
    p, t = np.asarray(probs, dtype=np.float64)[known], np.asarray(y, dtype=np.float64)[known]
    if len(p) == 0:
        return float("nan")
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(p[m].mean() - t[m].mean())
    return float(ece)


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, count) per bin, for the calibration plot."""
    known = ~np.isnan(y)
    p, t = np.asarray(probs)[known], np.asarray(y)[known]
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    return [(float(p[idx == b].mean()), float(t[idx == b].mean()), int((idx == b).sum()))
            for b in range(bins) if (idx == b).any()]


def threshold_for_precision(probs: np.ndarray, y: np.ndarray, target: float = 0.90,
                            weights: np.ndarray | None = None) -> tuple[float, float, float]:
    """Lowest threshold whose validation precision reaches ``target`` -> (threshold, precision, recall).

    Lowest such threshold = highest recall at the stated precision. When no threshold reaches it the
    threshold of best precision is returned (with that precision, so the report can say so).
    ``weights`` (e.g. :func:`source_balanced_weights`) make precision and recall weighted: a validation split
    where one big source dominates then stops deciding the threshold alone.
    """
    known = ~np.isnan(y)
    p, t = np.asarray(probs, dtype=np.float64)[known], np.asarray(y)[known].astype(int)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)[known]
    if t.sum() == 0:
        return 0.5, float("nan"), float("nan")
    order = np.argsort(-p, kind="stable")
    ps, ts, ws = p[order], t[order], w[order]
    tp = np.cumsum(ts)
    wtp = np.cumsum(ts * ws)
    prec, rec = wtp / np.maximum(np.cumsum(ws), 1e-12), wtp / max(float((ts * ws).sum()), 1e-12)
    # only cut between distinct scores
    last_of_tie = np.r_[ps[1:] != ps[:-1], True]
    ok = np.flatnonzero(last_of_tie & (prec >= target) & (tp >= 5))
    if len(ok):
        i = ok[-1]
    else:
        cand = np.flatnonzero(last_of_tie & (tp >= 5))
        i = cand[np.argmax(prec[cand])] if len(cand) else len(ps) - 1
    return float(ps[i]), float(prec[i]), float(rec[i])


def source_balanced_weights(sources: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row weights giving every source the same total weight among the rows whose label is known.

    Positives and negatives keep their within-source proportions, so each source's own precision counts
    once, whatever its size: the pooled validation split is otherwise decided by its largest sources.
    """
    sources = np.asarray(sources)
    known = ~np.isnan(np.asarray(y, dtype=np.float64))
    w = np.zeros(len(sources))
    names = np.unique(sources[known])
    for name in names:
        rows = known & (sources == name)
        w[rows] = 1.0 / rows.sum()
    return w * (known.sum() / max(1, len(names)))


def threshold_for_recall(probs: np.ndarray, y: np.ndarray, target: float) -> float:
    """Highest threshold whose validation recall reaches ``target``.

    Used to compare two models at the same recall: at their own precision-targeted thresholds a model
    that flags almost nothing has an almost-zero false-positive rate, which says nothing about precision.
    """
    known = ~np.isnan(y)
    p, t = np.asarray(probs, dtype=np.float64)[known], np.asarray(y)[known].astype(int)
    pos = np.sort(p[t == 1])[::-1]
    if len(pos) == 0 or not np.isfinite(target):
        return 0.5
    k = min(len(pos), max(1, int(np.ceil(target * len(pos)))))
    return float(pos[k - 1])


def threshold_for_best_f1(probs: np.ndarray, y: np.ndarray, min_tp: int = 5) -> float:
    """Threshold of the highest validation F1 (ties: the higher threshold)."""
    known = ~np.isnan(y)
    p, t = np.asarray(probs, dtype=np.float64)[known], np.asarray(y)[known].astype(int)
    if t.sum() == 0:
        return 0.5
    order = np.argsort(-p, kind="stable")
    ps, ts = p[order], t[order]
    tp = np.cumsum(ts)
    k = np.arange(1, len(ts) + 1)
    f1 = 2 * tp / (k + ts.sum())
    last_of_tie = np.r_[ps[1:] != ps[:-1], True]
    cand = np.flatnonzero(last_of_tie & (tp >= min(min_tp, int(ts.sum()))))
    if not len(cand):
        return 0.5
    return float(ps[cand[np.argmax(f1[cand])]])


THRESHOLD_POLICIES = ("pooled", "source_balanced")


def calibrate(model: Any, tokenizer: Any, val: Any, max_length: int, targets: dict[str, float],
              progress: bool = True, policy: str = "pooled") -> tuple[list[float], dict[str, float], dict[str, Any]]:
    """Per-label temperature and the threshold meeting each label's target precision on ``val``
    (a ``datasets.Dataset`` with trusted labels), plus the validation operating points.

    ``policy``: ``pooled`` counts every validation row once; ``source_balanced`` gives every source the same
    weight (:func:`source_balanced_weights`), so the threshold must hold on the typical source rather than
    on the largest ones (bench/threshold_policy.py measures which travels better to unseen sources)."""
    if policy not in THRESHOLD_POLICIES:
        raise ValueError(f"threshold policy must be one of {', '.join(THRESHOLD_POLICIES)}, got {policy!r}")
    from flagstream.classifier.data.corpus import targets as targets_of
    from flagstream.classifier.labels import LABELS
    from flagstream.classifier.inference.runtime import predict_logits

    y_val = targets_of(val)
    z_val = predict_logits(model, tokenizer, list(val["text"]), max_length, progress=progress)
    temps = [fit_temperature(z_val[:, j], y_val[:, j]) for j in range(len(LABELS))]
    p_val = probabilities(z_val, temps)
    thresholds, val_metrics = {}, {}
    for j, lab in enumerate(LABELS):
        w = source_balanced_weights(np.asarray(val["source"]), y_val[:, j]) if policy == "source_balanced" else None
        thr, prec, rec = threshold_for_precision(p_val[:, j], y_val[:, j], targets[lab], w)
        thresholds[lab] = round(thr, 6)
        val_metrics[lab] = {"threshold": thr, "precision": prec, "recall": rec, "temperature": temps[j],
                            "target_precision": targets[lab], "threshold_policy": policy,
                            "ece": expected_calibration_error(p_val[:, j], y_val[:, j]),
                            "ece_uncalibrated": expected_calibration_error(probabilities(z_val[:, j]), y_val[:, j]),
                            "curve": operating_curve(p_val[:, j], y_val[:, j])}
    return temps, thresholds, val_metrics


def operating_curve(p: np.ndarray, y: np.ndarray, precisions: tuple[float, ...] = (0.7, 0.8, 0.9, 0.95)) -> list[dict[str, float]]:
    """Validation threshold and recall at a few precision targets: what an operator can choose from."""
    out = []
    for target in precisions:
        thr, prec, rec = threshold_for_precision(p, y, target)
        out.append({"target": target, "threshold": round(thr, 6), "precision": prec, "recall": rec})
    return out
