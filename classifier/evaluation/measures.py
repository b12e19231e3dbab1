"""Metrics at the model's operating point, over rows whose label is known (NaN = the source says nothing)."""

from __future__ import annotations

from typing import Any

import numpy as np


def binary_metrics(probs: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """Precision, recall, F1, PR-AUC (average precision), FPR and counts for one label."""
    from sklearn.metrics import average_precision_score

    known = ~np.isnan(y)
    p, t = np.asarray(probs, dtype=np.float64)[known], np.asarray(y)[known].astype(int)
    pred = p >= threshold
    tp = int((pred & (t == 1)).sum())
    fp = int((pred & (t == 0)).sum())
    fn = int((~pred & (t == 1)).sum())
    tn = int((~pred & (t == 0)).sum())
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fn else float("nan")
    fpr = fp / (fp + tn) if fp + tn else float("nan")
    ap = float(average_precision_score(t, p)) if 0 < t.sum() < len(t) else float("nan")
    return {"n": int(len(t)), "pos": int(t.sum()), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": prec, "recall": rec, "f1": f1, "pr_auc": ap, "fpr": fpr}


def fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)
