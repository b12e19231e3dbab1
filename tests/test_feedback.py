"""The decisions-driven threshold estimator (classifier/feedback/thresholds.py) against a known synthetic feed.

A synthetic feed whose truth is known exactly: positives score ~Beta(5, 2), negatives ~Beta(1, 6), 5%
prevalence. Every post at or above the current threshold is decided (weight 1); below it an audit sample
is decided with known probabilities (weight 1/pi), as streaming/loop/audit.py draws it.
"""

from __future__ import annotations

import numpy as np
import pytest

from flagstream.classifier.feedback.thresholds import Evidence, Row, point_at, propose, propose_all, wilson

CURRENT = 0.7


def feed(n: int, seed: int, prevalence: float = 0.05):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < prevalence
    s = np.where(y, rng.beta(5, 2, n), rng.beta(1, 6, n))
    return s, y.astype(float)


def truth(s, y, t):
    flagged = s >= t
    return y[flagged].mean(), y[flagged].sum() / y.sum()


def decided_rows(s, y, seed: int, near: float = 0.2, far: float = 0.02, label="sectarian", feed_name="forum"):
    """Flagged posts all decided (weight 1); below threshold, audited with pi = near in [0.5 t, t), far below."""
    rng = np.random.default_rng(seed + 1)
    pi = np.where(s >= CURRENT, 1.0, np.where(s >= 0.5 * CURRENT, near, far))
    take = rng.random(len(s)) < pi
    return [Row(float(s[i]), float(y[i]), float(1 / pi[i]), label, feed_name, audit=bool(pi[i] < 1))
            for i in np.flatnonzero(take)]


def test_estimates_lie_within_their_intervals_of_the_truth_at_the_nominal_rate():
    """Over 100 independent audits of one feed, the 95% intervals cover the true precision and recall
    at thresholds above, at and below the current one about 95% of the time (>= 88% asserted)."""
    s, y = feed(40_000, seed=1)
    thresholds = (0.4, 0.55, CURRENT, 0.8)
    hits_p = {t: 0 for t in thresholds}
    hits_r = {t: 0 for t in thresholds}
    errs = []
    reps = 100
    for rep in range(reps):
        rows = decided_rows(s, y, seed=100 + rep)
        for t in thresholds:
            tp, tr = truth(s, y, t)
            pt = point_at(rows, t)
            hits_p[t] += pt.precision_ci[0] <= tp <= pt.precision_ci[1]
            hits_r[t] += pt.recall_ci[0] <= tr <= pt.recall_ci[1]
            errs.append((pt.precision - tp, pt.recall - tr))
    for t in thresholds:
        assert hits_p[t] / reps >= 0.88, (t, hits_p[t])
        assert hits_r[t] / reps >= 0.88, (t, hits_r[t])
    bias = np.abs(np.mean(errs, axis=0))
    assert bias[0] < 0.01 and bias[1] < 0.02, bias  # Horvitz-Thompson ratio estimates: ~unbiased


def test_flagged_only_decisions_cannot_see_recall_but_audit_weights_can():
    """Without weights the audit rows would overstate the feed's positives below threshold' share."""
    s, y = feed(40_000, seed=2)
    rows = decided_rows(s, y, seed=7)
    unweighted = [Row(r.score, r.verdict, 1.0, r.label, r.feed, r.audit) for r in rows]
    _, true_rec = truth(s, y, CURRENT)
    assert abs(point_at(rows, CURRENT).recall - true_rec) < 0.05
    assert abs(point_at(unweighted, CURRENT).recall - true_rec) > abs(point_at(rows, CURRENT).recall - true_rec)


def test_proposal_meets_the_target_and_beats_the_current_recall():
    s, y = feed(60_000, seed=3)
    rows = decided_rows(s, y, seed=11)
    p = propose(rows, "sectarian", "forum", target_precision=0.6, current=CURRENT)
    assert p.moved, p.refused
    true_p, true_r = truth(s, y, p.threshold)
    assert p.precision_ci[0] <= true_p <= p.precision_ci[1]
    assert abs(true_p - 0.6) < 0.05
    # the lowest threshold with true precision >= 0.6 on the whole feed: the proposal is close to it
    grid = np.round(np.arange(0.3, 0.95, 0.005), 3)
    best = min(t for t in grid if truth(s, y, t)[0] >= 0.6)
    assert abs(p.threshold - best) < 0.06, (p.threshold, best)
    assert true_r > truth(s, y, CURRENT)[1]
    assert p.at_current is not None and p.decisions == len(rows) and p.audit_decisions > 0


def test_thin_evidence_is_refused_with_the_number_of_decisions_it_needs():
    s, y = feed(3_000, seed=4)
    rows = decided_rows(s, y, seed=5)
    p = propose(rows, "sectarian", "forum", target_precision=0.6, current=CURRENT)
    assert not p.moved and p.threshold is None
    assert p.more_decisions_needed > 0 and p.refused
    # the same feed, larger: that many more decisions (x1.5 slack for sampling noise) settle it
    big_s, big_y = feed(3_000 * 40, seed=4)
    rows_big = decided_rows(big_s, big_y, seed=5)
    want = len(rows) + p.more_decisions_needed
    assert len(rows_big) > want
    rng = np.random.default_rng(0)
    subset = [rows_big[i] for i in rng.choice(len(rows_big), int(want * 1.5), replace=False)]
    assert propose(subset, "sectarian", "forum", 0.6, CURRENT).moved


def test_too_few_decisions_and_unreachable_targets_are_refused():
    s, y = feed(20_000, seed=6)
    rows = decided_rows(s, y, seed=8)
    few = propose(rows[:20], "sectarian", "forum", 0.6, CURRENT)
    assert few.refused.startswith("20 decisions") and few.more_decisions_needed == 30
    # a model whose score says nothing about the verdict: no threshold reaches 0.9
    rng = np.random.default_rng(3)
    noise = [Row(float(rng.random()), float(rng.random() < 0.3), 1.0, "sectarian", "forum") for _ in range(500)]
    none = propose(noise, "sectarian", "forum", 0.9, CURRENT)
    assert not none.moved and "no threshold reaches" in none.refused


def test_per_label_and_per_feed_proposals_are_separate():
    s, y = feed(40_000, seed=9)
    rows = decided_rows(s, y, seed=1, feed_name="a") + decided_rows(s, y, seed=2, label="propaganda", feed_name="b")
    out = propose_all(rows, {"sectarian": 0.6, "propaganda": 0.6}, {"sectarian": CURRENT, "propaganda": CURRENT})
    assert [(p.label, p.feed) for p in out] == [("propaganda", "b"), ("sectarian", "a")]
    assert all(p.decisions < len(rows) for p in out)


def test_rows_without_a_valid_weight_are_an_error():
    with pytest.raises(ValueError, match="weight"):
        point_at([Row(0.5, 1.0, 0.0, "x", "f")], 0.5)
    lo, hi = wilson(0.5, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)
