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


def threshold_for_fpr(probs: np.ndarray, benign: np.ndarray, target: float) -> tuple[float, float, int]:
    """Lowest threshold flagging at most ``target`` of the benign rows -> (threshold, benign FPR, benign rows).

    Why: a false-positive rate on benign posts does not depend on how many positives a split holds, so the
    operating point it picks means the same on a feed with 0.1% hate as on a validation split with 30%
    (a precision target does not travel). A row is flagged when its score reaches the threshold
    (:func:`classifier.interface.flagged_labels`), so the threshold sits just above the benign score that would
    push the rate past ``target``; tied scores are never split.

    Raises:
        ValueError: ``target`` outside (0, 1) or no benign row (an empty pool cannot set a rate).
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target false-positive rate must lie between 0 and 1, got {target}")
    s = np.sort(np.asarray(probs, dtype=np.float64)[np.asarray(benign, dtype=bool)])[::-1]
    n = len(s)
    if n == 0:
        raise ValueError("no benign reference rows to pick a false-positive-rate threshold on")
    k = int(np.floor(target * n + 1e-9))  # at most k benign rows may be flagged
    # Just above the (k+1)-th highest benign score: rows tied with it are all left unflagged, so a tie never
    # pushes the rate past the target.
    thr = 1.0 if k >= n else float(np.nextafter(s[k], np.inf))
    thr = min(max(thr, float(np.nextafter(0.0, 1.0))), 1.0)
    return thr, float((s >= thr).mean()), n


MIN_LANG_POOL = 200  # benign rows a language needs before its own false-positive rate constrains a threshold


def threshold_for_fpr_each_lang(probs: np.ndarray, benign: np.ndarray, langs: Any, target: float,
                                min_rows: int = MIN_LANG_POOL) -> tuple[float, float, int, dict[str, dict[str, Any]]]:
    """One threshold keeping the benign FPR at or below ``target`` in the pool AND in every language with at least
    ``min_rows`` benign rows -> (threshold, pooled benign FPR, pool rows, per-language FPR and rows).

    Why: a pooled rate is dominated by the language with the most benign rows (English), and can leave another
    language's benign posts flagged at several times the target. The strictest per-language threshold is still one
    number, so the scorer needs no language (the same bytes still get the same verdict in stream and rescore).

    Raises:
        ValueError: as :func:`threshold_for_fpr`.
    """
    benign = np.asarray(benign, dtype=bool)
    langs = np.asarray(langs)
    thr, _, n = threshold_for_fpr(probs, benign, target)
    for lg in sorted(set(langs[benign].tolist())):
        m = benign & (langs == lg)
        if m.sum() >= min_rows:
            thr = max(thr, threshold_for_fpr(probs, m, target)[0])
    p = np.asarray(probs, dtype=np.float64)
    per = {lg: {"fpr": float((p[benign & (langs == lg)] >= thr).mean()), "rows": int((benign & (langs == lg)).sum()),
                "constrains": bool((benign & (langs == lg)).sum() >= min_rows)}
           for lg in sorted(set(langs[benign].tolist()))}
    return thr, float((p[benign] >= thr).mean()), n, per


def benign_mask(sources: Any, metas: Any, y: np.ndarray) -> np.ndarray:
    """Rows of the benign reference pool (:func:`flagstream.classifier.data.sources.is_benign_reference`) whose label is 0."""
    from flagstream.classifier.data.sources import is_benign_reference

    pool = np.array([is_benign_reference(s, m) for s, m in zip(sources, metas)], dtype=bool)
    return pool & (np.asarray(y, dtype=np.float64) == 0)


def precision_recall_at(probs: np.ndarray, y: np.ndarray, thr: float) -> tuple[float, float]:
    """Precision and recall of ``probs >= thr`` over the rows whose label is known (NaN when undefined)."""
    known = ~np.isnan(y)
    p, t = np.asarray(probs, dtype=np.float64)[known], np.asarray(y)[known].astype(int)
    flag = p >= thr
    tp = float((flag & (t == 1)).sum())
    prec = tp / flag.sum() if flag.sum() else float("nan")
    rec = tp / t.sum() if t.sum() else float("nan")
    return float(prec), float(rec)


def parse_fpr_targets(value: str | float | dict[str, float] | None, default: float = 0.01) -> dict[str, float]:
    """``0.01`` (every label) or ``propaganda=0.01,sectarian=0.02`` -> {label: target FPR}.

    Raises:
        UserError: one line naming ``--target-fpr`` for a malformed value, an unknown label or a rate outside (0, 1).
    """
    from flagstream.classifier.labels import LABELS
    from flagstream.errors import UserError

    if value is None:
        return {lab: default for lab in LABELS}
    if isinstance(value, dict):
        out = {k: float(v) for k, v in value.items()}
    else:
        out = {}
        parts = str(value).split(",")
        try:
            if len(parts) == 1 and "=" not in parts[0]:
                out = {lab: float(parts[0]) for lab in LABELS}
            else:
                for part in parts:
                    lab, _, num = part.partition("=")
                    out[lab.strip()] = float(num)
        except ValueError:
            raise UserError(f"--target-fpr: expected a rate or LABEL=RATE,... (e.g. propaganda=0.01,sectarian=0.01), "
                            f"got {value!r}") from None
    unknown = set(out) - set(LABELS)
    if unknown:
        raise UserError(f"--target-fpr: unknown label(s) {', '.join(sorted(unknown))}; labels are {', '.join(LABELS)}")
    out = {lab: out.get(lab, default) for lab in LABELS}
    bad = [lab for lab, v in out.items() if not 0.0 < v < 1.0]
    if bad:
        raise UserError(f"--target-fpr for {', '.join(bad)} must lie between 0 and 1 (e.g. 0.01 = 1% of benign posts)")
    return out


THRESHOLD_POLICIES = ("pooled", "source_balanced", "benign_fpr", "benign_fpr_each_lang")
FPR_POLICIES = ("benign_fpr", "benign_fpr_each_lang")


def calibrate(model: Any, tokenizer: Any, val: Any, max_length: int, targets: dict[str, float],
              progress: bool = True, policy: str = "pooled",
              target_fpr: dict[str, float] | None = None) -> tuple[list[float], dict[str, float], dict[str, Any]]:
    """Per-label temperature and the threshold meeting each label's target precision on ``val``
    (a ``datasets.Dataset`` with trusted labels), plus the validation operating points.

    ``policy``: ``pooled`` counts every validation row once; ``source_balanced`` gives every source the same
    weight (:func:`source_balanced_weights`), so the threshold must hold on the typical source rather than
    on the largest ones (bench/threshold_policy.py measures which travels better to unseen sources);
    ``benign_fpr`` picks, per label, the threshold whose false-positive rate on the validation rows of the benign
    reference pool (:data:`flagstream.classifier.data.sources.BENIGN_REFERENCE`) is ``target_fpr[label]`` (default 0.01), one
    pooled threshold for every language (the scorer does not know a post's language); ``benign_fpr_each_lang``
    the same, but the rate must also hold in every language with enough benign rows
    (:func:`threshold_for_fpr_each_lang`)."""
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
    fpr_targets = parse_fpr_targets(target_fpr) if policy in FPR_POLICIES else {}
    for j, lab in enumerate(LABELS):
        extra: dict[str, Any] = {}
        if policy in FPR_POLICIES:
            pool = benign_mask(val["source"], val["meta"], y_val[:, j])
            if policy == "benign_fpr_each_lang":
                thr, fpr, n_pool, per_lang = threshold_for_fpr_each_lang(p_val[:, j], pool, val["lang"], fpr_targets[lab])
                extra["benign_fpr_per_lang"] = per_lang
            else:
                thr, fpr, n_pool = threshold_for_fpr(p_val[:, j], pool, fpr_targets[lab])
            prec, rec = precision_recall_at(p_val[:, j], y_val[:, j], thr)
            thr = float(np.ceil(thr * 1e6) / 1e6)  # rounded up, so the stored threshold never flags more
            extra.update(target_fpr=fpr_targets[lab], benign_fpr=fpr, benign_rows=n_pool)
        else:
            w = source_balanced_weights(np.asarray(val["source"]), y_val[:, j]) if policy == "source_balanced" else None
            thr, prec, rec = threshold_for_precision(p_val[:, j], y_val[:, j], targets[lab], w)
        thresholds[lab] = round(thr, 6)
        val_metrics[lab] = {"threshold": thr, "precision": prec, "recall": rec, "temperature": temps[j], **extra,
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
