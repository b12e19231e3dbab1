"""Thresholds that learn from reviewers' decisions: weighted precision/recall per label and feed.

Why this exists: thresholds picked on the training sources' validation split do not travel to a new
feed (on withheld sources recall at the shipped threshold fell to 0.32 and 0.06 while the ranking
stayed good). Every deployment's reviewers produce a labelled sample of its own feed; this module
turns that sample into per-feed operating points.

Sampling design the estimator relies on (the streaming side builds the rows):

* every flagged post is in front of reviewers, so a decided flagged post has inclusion probability 1
  (``weight = 1``);
* below-threshold posts reach reviewers only through the audit sample (:mod:`flagstream.streaming.loop.audit`), each
  with a known inclusion probability ``pi``; its row carries ``weight = 1 / pi``.

Weighted (Horvitz-Thompson) sums then estimate the feed's true-positive, false-positive and
false-negative counts at any threshold, so precision *and recall* are estimable, which decisions on
flagged posts alone can never give (they see no false negatives). Confidence intervals are Wilson
intervals on design-effective counts (the linearised variance of each weighted ratio, expressed as
simple-random trials), which shrink the evidence of a few heavily weighted audit rows to what it is
worth. Thin evidence is refused with the number of further
decisions needed to reach the configured interval width.

This module knows nothing of Kafka: it takes plain :class:`Row` objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

Z95 = 1.959964


@dataclass(frozen=True)
class Row:
    """One decided (post, label): the model's score, the verdict (1 = confirmed, 0 = rejected, or a
    fraction when reviewers disagree), the inverse inclusion probability and where it came from."""

    score: float
    verdict: float
    weight: float
    label: str
    feed: str
    audit: bool = False


@dataclass(frozen=True)
class Evidence:
    """How much evidence is enough to move a threshold (defaults suit a feed with ~1% audit)."""

    min_decisions: int = 50  # decided rows for this (label, feed)
    min_positives: float = 10.0  # confirmed rows (unweighted; a fractional verdict counts its fraction)
    min_flagged_confirmed: int = 5  # confirmed rows above a candidate threshold
    max_precision_halfwidth: float = 0.10  # 95% CI half-width of precision at the proposed threshold
    max_recall_halfwidth: float = 0.15  # 95% CI half-width of recall at the proposed threshold


@dataclass
class CurvePoint:
    threshold: float
    precision: float
    precision_ci: tuple[float, float]
    recall: float
    recall_ci: tuple[float, float]


@dataclass
class Proposal:
    """The outcome for one (label, feed): a new threshold, or a refusal saying why and what it needs."""

    label: str
    feed: str
    current: float | None
    target_precision: float
    threshold: float | None  # the proposed threshold; None = refused (keep ``current``)
    decisions: int
    audit_decisions: int
    effective_positives: float
    precision: float = float("nan")
    precision_ci: tuple[float, float] = (float("nan"), float("nan"))
    recall: float = float("nan")
    recall_ci: tuple[float, float] = (float("nan"), float("nan"))
    at_current: CurvePoint | None = None
    refused: str | None = None  # one line, when threshold is None
    more_decisions_needed: int = 0
    curve: list[CurvePoint] = field(default_factory=list)

    @property
    def moved(self) -> bool:
        return self.threshold is not None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("curve")
        return _finite(out)


def wilson(p: float, n_eff: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` observed on ``n_eff`` effective trials."""
    if not n_eff > 0 or not math.isfinite(p):
        return (0.0, 1.0)
    p = min(max(p, 0.0), 1.0)
    d = 1 + z * z / n_eff
    c = (p + z * z / (2 * n_eff)) / d
    h = z * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def kish(w: np.ndarray) -> float:
    """Kish effective sample size of weights ``w``."""
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def _arrays(rows: Iterable[Row]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rows = list(rows)
    s = np.array([r.score for r in rows], dtype=np.float64)
    y = np.array([r.verdict for r in rows], dtype=np.float64)
    w = np.array([r.weight for r in rows], dtype=np.float64)
    a = np.array([r.audit for r in rows], dtype=bool)
    if len(rows) and (not np.all(np.isfinite(w)) or np.any(w <= 0)):
        raise ValueError("every row needs a finite weight > 0 (1 / its inclusion probability)")
    if len(rows) and (np.any(y < 0) or np.any(y > 1)):
        raise ValueError("verdicts must lie within [0, 1]")
    return s, y, w, a


def point_at(rows: Iterable[Row], threshold: float) -> CurvePoint:
    """Estimated precision and recall (with 95% CIs) of flagging ``score >= threshold``."""
    s, y, w, _ = _arrays(rows)
    return _point(s, y, w, threshold)


def design_n(z: np.ndarray, w: np.ndarray, phantom_w: float = 0.0) -> tuple[float, float]:
    """(weighted mean of ``z``, its design-effective sample size).

    The linearised variance of a ratio estimator, ``sum w^2 (z - p)^2 / (sum w)^2``, turned into the
    number of simple-random trials with the same variance. Unlike Kish's formula it sees that audit
    weights are correlated with the outcome (the few heavy rows below threshold are where the missed
    positives are). ``phantom_w`` adds the variance of one unseen ``z = 0`` row of that weight: with a
    1-2% audit the heaviest stratum is often not observed at all, and without the phantom an
    interval would then be sure of a recall it has no evidence for (coverage fell to 80% in the
    synthetic test; with it, >= 88% over 100 audits).
    """
    sw = float(w.sum())
    if sw <= 0:
        return float("nan"), 0.0
    p = float((w * z).sum()) / sw
    var = (float((w * w * (z - p) ** 2).sum()) + (phantom_w * p) ** 2) / (sw * sw)
    if not 0 < p < 1 or var <= 0:
        return p, sw / max(float(w.max()), phantom_w)
    return p, p * (1 - p) / var


def _point(s: np.ndarray, y: np.ndarray, w: np.ndarray, t: float) -> CurvePoint:
    return _point_n(s, y, w, t)[0]


def _point_n(s: np.ndarray, y: np.ndarray, w: np.ndarray, t: float) -> tuple[CurvePoint, float, float]:
    """The point plus the design-effective sizes behind its precision and recall intervals."""
    above = s >= t
    # precision: the weighted mean verdict over flagged rows (phantom: an unseen false positive)
    prec, n_p = design_n(y[above], w[above], float(w[above].max())) if above.any() else (float("nan"), 0.0)
    pci = wilson(prec, n_p) if n_p > 0 else (0.0, 1.0)
    # recall: the weighted share of positives (verdict as fractional membership) that are flagged
    # (phantom: an unseen missed positive, as heavy as the heaviest decided row below the threshold)
    wp = w * y
    pos = wp > 0
    below_w = float(w[~above].max()) if (~above).any() else float(w.max())
    rec, n_r = design_n(above[pos].astype(np.float64), wp[pos], below_w) if pos.any() else (float("nan"), 0.0)
    rci = wilson(rec, n_r) if n_r > 0 else (0.0, 1.0)
    return CurvePoint(float(t), prec, pci, rec, rci), n_p, n_r


def curve(rows: Iterable[Row], thresholds: Iterable[float] | None = None) -> list[CurvePoint]:
    """Precision/recall estimates over ``thresholds`` (default: a 0.01 grid over [0.01, 0.99])."""
    s, y, w, _ = _arrays(rows)
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2) if thresholds is None else np.asarray(list(thresholds), float)
    return [_point(s, y, w, float(t)) for t in grid]


def propose(rows: Iterable[Row], label: str, feed: str, target_precision: float, current: float | None = None,
            evidence: Evidence = Evidence()) -> Proposal:
    """The threshold whose estimated precision meets ``target_precision`` with the most estimated recall,
    or a refusal (``threshold is None``) with the reason and how many more decisions would settle it.

    Candidate thresholds are the scores of confirmed rows (cutting anywhere else only loses recall).
    The point estimate must reach the target; the interval widths decide whether the evidence is enough.
    """
    rows = [r for r in rows if r.label == label and r.feed == feed]
    s, y, w, a = _arrays(rows)
    n = len(rows)
    n_pos_eff = kish((w * y)[y > 0]) if n else 0.0
    base = dict(label=label, feed=feed, current=current, target_precision=target_precision, decisions=n,
                audit_decisions=int(a.sum()), effective_positives=round(n_pos_eff, 2))
    cur_point = _point(s, y, w, current) if (current is not None and n) else None
    full_curve = [_point(s, y, w, float(t)) for t in np.round(np.arange(0.01, 1.0, 0.01), 2)] if n else []

    def refuse(reason: str, more: int, best: CurvePoint | None = None) -> Proposal:
        p = Proposal(**base, threshold=None, refused=reason, more_decisions_needed=max(0, int(more)),
                     at_current=cur_point, curve=full_curve)
        if best is not None:
            p.precision, p.precision_ci, p.recall, p.recall_ci = best.precision, best.precision_ci, best.recall, best.recall_ci
        return p

    if n < evidence.min_decisions:
        return refuse(f"{n} decisions, fewer than the {evidence.min_decisions} needed", evidence.min_decisions - n)
    confirmed = float(y.sum())
    pos_rate = confirmed / n if n else 0.0
    if confirmed < evidence.min_positives:  # raw count: the weights' share of doubt is in the intervals
        more = math.ceil((evidence.min_positives - confirmed) / pos_rate) if pos_rate > 0 else evidence.min_decisions
        return refuse(f"{confirmed:g} confirmed decisions, fewer than {evidence.min_positives:g}", more)

    # best recall among thresholds whose point precision reaches the target
    cands = np.unique(s[y > 0])[::-1]
    best: CurvePoint | None = None
    for t in cands:  # descending: recall grows, keep the last (lowest) threshold meeting the target
        pt = _point(s, y, w, float(t))
        if float((y * (s >= t)).sum()) < evidence.min_flagged_confirmed:
            continue  # the top few rows reach any precision by chance
        if pt.precision >= target_precision and (best is None or pt.recall >= best.recall):
            best = pt
    if best is None:
        top = max((_point(s, y, w, float(t)) for t in cands), key=lambda p: (p.precision, p.recall))
        return refuse(f"no threshold reaches precision {target_precision:.2f} (best estimate {top.precision:.2f} at "
                      f"{top.threshold:.3f})", 0, top)

    # enough evidence? interval half-widths shrink like 1/sqrt(n_eff): scale up to the wanted width
    _, n_eff_prec, n_eff_rec = _point_n(s, y, w, best.threshold)
    ph = (best.precision_ci[1] - best.precision_ci[0]) / 2
    rh = (best.recall_ci[1] - best.recall_ci[0]) / 2
    more = 0
    reasons = []
    if ph > evidence.max_precision_halfwidth:
        need = n_eff_prec * (ph / evidence.max_precision_halfwidth) ** 2
        per_decision = n_eff_prec / n  # effective precision evidence each decision brings, at today's mix
        more = max(more, math.ceil((need - n_eff_prec) / per_decision))
        reasons.append(f"precision CI ±{ph:.2f} (want ±{evidence.max_precision_halfwidth:.2f})")
    if rh > evidence.max_recall_halfwidth:
        need = n_eff_rec * (rh / evidence.max_recall_halfwidth) ** 2
        more = max(more, math.ceil((need - n_eff_rec) / (n_eff_rec / n)))
        reasons.append(f"recall CI ±{rh:.2f} (want ±{evidence.max_recall_halfwidth:.2f})")
    if reasons:
        return refuse("evidence too thin: " + ", ".join(reasons), more, best)
    return Proposal(**base, threshold=round(best.threshold, 6), precision=best.precision,
                    precision_ci=best.precision_ci, recall=best.recall, recall_ci=best.recall_ci,
                    at_current=cur_point, curve=full_curve)


def propose_all(rows: Iterable[Row], targets: Mapping[str, float], current: Mapping[str, float],
                evidence: Evidence = Evidence()) -> list[Proposal]:
    """One :class:`Proposal` per (label, feed) present in ``rows`` (labels without a target are skipped)."""
    rows = list(rows)
    keys = sorted({(r.label, r.feed) for r in rows})
    return [propose(rows, lab, feed, targets[lab], current.get(lab), evidence) for lab, feed in keys if lab in targets]


def _finite(obj: Any) -> Any:
    """NaN -> None, recursively, so a report is standard JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


__all__ = ["Row", "Evidence", "CurvePoint", "Proposal", "wilson", "kish", "point_at", "curve", "propose",
           "propose_all"]
