"""Decided posts as estimator rows: join the review topic with the decisions topic.

:mod:`flagstream.classifier.feedback.thresholds` takes plain rows (score, verdict, weight, label, feed) and knows nothing of
Kafka; this module is the other half. It reads both topics from the beginning (joining no group),
keeps the latest review record per post id (the stream is at-least-once: duplicates share the id),
and turns every confirm/reject verdict into one row per (post, label):

* ``score``: the post's score for that label in its review record (only records written by the model
  being recalibrated count: another version's scores are on another scale);
* ``verdict``: 1 confirm, 0 reject; when reviewers disagree, the mean of each reviewer's latest
  verdict, so the disagreement stays visible as a fraction; ``unsure`` is no evidence and is dropped;
* ``weight``: 1 for a flagged post (all of them go to review), ``sampling_weight`` for an audit one,
  times the inverse share of review items decided in its stratum (:func:`review_coverage`: the queue
  is rarely empty, and reviewers take high scores first);
* ``feed``: the source topic of the post.

The joining is pure (:func:`join`) and tested without a broker; :func:`read_rows` adds the I/O.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flagstream.classifier.feedback.thresholds import Row
from flagstream.streaming.loop.audit import weight_of
from flagstream.contract.decisions import Decision

log = logging.getLogger(__name__)


@dataclass
class Joined:
    """Rows for the estimator plus what went into them (the provenance a recalibrated model records)."""

    rows: list[Row]
    decisions_used: int = 0
    decision_ids_sha256: str = ""
    first_decided_at: str | None = None
    last_decided_at: str | None = None
    posts: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count of (post, label) verdicts not used
    disagreements: int = 0  # (post, label) pairs on which reviewers' latest verdicts differ
    undecided: dict[str, int] = field(default_factory=dict)  # review items in strata with no decision at all
    per_post: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> review record + verdicts

    def provenance(self, decisions_topic: str, review_topic: str) -> dict[str, Any]:
        return {"decisions_topic": decisions_topic, "review_topic": review_topic,
                "decisions": self.decisions_used, "decision_ids_sha256": self.decision_ids_sha256,
                "first_decided_at": self.first_decided_at, "last_decided_at": self.last_decided_at,
                "posts": self.posts, "rows": len(self.rows), "audit_rows": sum(r.audit for r in self.rows),
                "disagreements": self.disagreements, "skipped": dict(self.skipped),
                "unrepresented_review_items": dict(self.undecided)}


def latest_reviews(records: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """id -> the last review record seen for it (duplicates from redelivery collapse)."""
    out: dict[str, Mapping[str, Any]] = {}
    for rec in records:
        pid = rec.get("id")
        if isinstance(pid, str):
            out[pid] = rec
    return out


def verdict_table(decisions: Iterable[Decision]) -> tuple[dict[tuple[str, str], dict[str, str]], list[Decision]]:
    """(post id, label) -> {reviewer: latest verdict}, and the decisions read (in topic order)."""
    table: dict[tuple[str, str], dict[str, tuple[str, str]]] = defaultdict(dict)
    used: list[Decision] = []
    for d in decisions:
        used.append(d)
        for pid in d.ids:
            for label, verdict in d.verdicts.items():
                prev = table[(pid, label)].get(d.reviewer)
                if prev is None or d.decided_at >= prev[0]:
                    table[(pid, label)][d.reviewer] = (d.decided_at, verdict)
    return {k: {r: v for r, (_, v) in by.items()} for k, by in table.items()}, used


def _top(rec: Mapping[str, Any]) -> float:
    vals = [float(v) for v in (rec.get("scores") or {}).values() if isinstance(v, (int, float))]
    return max(vals) if vals else 0.0


def review_coverage(reviews: Mapping[str, Mapping[str, Any]], decided: set[str],
                    model: Mapping[str, str] | None, bins: int = 5) -> tuple[dict[str, float], dict[str, int]]:
    """Post-stratified inverse share of review items that were decided: id -> factor (>= 1).

    The estimator's weights assume every review item (flagged, or audit-drawn) is decided. A queue is
    never empty and the console serves the highest scores first, so the decided ones are a subset
    skewed to high scores. Within each (feed, flagged/audit, top-score quintile) stratum the decided
    items stand for the undecided ones too: their weight is multiplied by n_items / n_decided. Strata
    with no decided item at all are reported (``undecided``) because nothing can stand for them.
    """
    strata: dict[tuple[str, bool], list[tuple[float, str]]] = defaultdict(list)
    for pid, rec in reviews.items():
        rmodel = rec.get("model") or {}
        if model is not None and (rmodel.get("name"), rmodel.get("version")) != (model.get("name"), model.get("version")):
            continue
        feed = str((rec.get("source") or {}).get("topic") or "?")
        strata[(feed, rec.get("audit") is True)].append((_top(rec), pid))
    factor: dict[str, float] = {}
    undecided: Counter = Counter()
    for (feed, audit), items in strata.items():
        items.sort()
        n = len(items)
        for b in range(bins):
            chunk = items[b * n // bins:(b + 1) * n // bins]
            done = [pid for _, pid in chunk if pid in decided]
            if not done:
                if chunk:
                    undecided[f"{feed}:{'audit' if audit else 'flagged'}"] += len(chunk)
                continue
            for pid in done:
                factor[pid] = len(chunk) / len(done)
    return factor, dict(undecided)


def join(reviews: Mapping[str, Mapping[str, Any]], decisions: Iterable[Decision],
         model: Mapping[str, str] | None = None, labels: Iterable[str] | None = None) -> Joined:
    """Estimator rows from review records (id -> record) and decisions; see the module docstring."""
    table, used = verdict_table(decisions)
    wanted = set(labels) if labels is not None else None
    out = Joined(rows=[])
    ids = sorted(d.decision_id for d in used)
    out.decisions_used = len(used)
    out.decision_ids_sha256 = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    times = sorted(d.decided_at for d in used)
    out.first_decided_at, out.last_decided_at = (times[0], times[-1]) if times else (None, None)
    decided = {pid for (pid, label), by in table.items() if any(v != "unsure" for v in by.values())}
    coverage, out.undecided = review_coverage(reviews, decided, model)
    for (pid, label), by_reviewer in sorted(table.items()):
        if wanted is not None and label not in wanted:
            out.skipped["unknown_label"] += 1
            continue
        votes = [v for v in by_reviewer.values() if v != "unsure"]
        if not votes:
            out.skipped["unsure"] += 1
            continue
        rec = reviews.get(pid)
        if rec is None:
            out.skipped["no_review_record"] += 1
            continue
        rmodel = rec.get("model") or {}
        if model is not None and (rmodel.get("name"), rmodel.get("version")) != (model.get("name"), model.get("version")):
            out.skipped["other_model_version"] += 1
            continue
        score = (rec.get("scores") or {}).get(label)
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            out.skipped["no_score"] += 1
            continue
        try:
            audit, weight = weight_of(rec)
        except ValueError:
            out.skipped["bad_audit_weight"] += 1
            continue
        if len(set(votes)) > 1:
            out.disagreements += 1
        verdict = sum(v == "confirm" for v in votes) / len(votes)
        feed = str((rec.get("source") or {}).get("topic") or "?")
        weight *= coverage.get(pid, 1.0)
        out.rows.append(Row(float(score), verdict, weight, label, feed, audit))
        entry = out.per_post.setdefault(pid, {"record": rec, "verdicts": {}})
        entry["verdicts"][label] = dict(by_reviewer)
    out.posts = len(out.per_post)
    return out


def export_rows(reviews: Mapping[str, Mapping[str, Any]], decisions: Iterable[Decision],
                labels: Iterable[str]) -> tuple[list[dict[str, Any]], Counter]:
    """Decided posts as labelled training rows, one per post id (latest review record), in id order.

    Per label: ``votes`` counts each reviewer's latest verdict; the label is 1 or 0 by strict majority of
    confirm/reject, ``null`` on a tie or when every vote is ``unsure`` (so a disputed label never trains
    either way); ``disputed`` names labels whose reviewers disagree. ``audit`` and ``sampling_weight`` say
    how the post reached review. Posts with no review record are counted, not exported (no text).
    """
    table, _ = verdict_table(decisions)
    labels = list(labels)
    by_post: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    for (pid, label), by_reviewer in table.items():
        by_post[pid][label] = by_reviewer
    out: list[dict[str, Any]] = []
    skipped: Counter = Counter()
    for pid in sorted(by_post):
        rec = reviews.get(pid)
        if rec is None or not isinstance(rec.get("text"), str):
            skipped["no_review_record"] += 1
            continue
        try:
            audit, weight = weight_of(rec)
        except ValueError:
            skipped["bad_audit_weight"] += 1
            continue
        row: dict[str, Any] = {"id": pid, "text": rec["text"], "feed": (rec.get("source") or {}).get("topic"),
                               "model": rec.get("model"), "audit": audit, "sampling_weight": weight,
                               "votes": {}, "disputed": []}
        for label in labels:
            votes = Counter(by_post[pid].get(label, {}).values())
            row["votes"][label] = {v: votes.get(v, 0) for v in ("confirm", "reject", "unsure")}
            c, r = votes.get("confirm", 0), votes.get("reject", 0)
            row[label] = 1 if c > r else (0 if r > c else None)
            if c and r:
                row["disputed"].append(label)
        if all(row[label] is None for label in labels):
            skipped["no_decided_label"] += 1
            continue
        out.append(row)
    return out, skipped


def read_topics(settings: Any) -> tuple[dict[str, Mapping[str, Any]], list[Decision]]:
    """Latest review record per id and every valid decision, from the topics named in ``settings``."""
    from flagstream.streaming.kafka.clients import make_consumer, retry_until
    from flagstream.streaming.ops.decisions import read_decisions
    from flagstream.streaming.ops.review import decode, iter_topic

    consumer = retry_until("consumer", lambda t: make_consumer(settings, t, group_id=None), settings)
    try:
        reviews = latest_reviews(m for m in (decode(r.value) for r in iter_topic(consumer, settings.review_topic))
                                 if m is not None)
    finally:
        consumer.close(autocommit=False)
    consumer = retry_until("consumer", lambda t: make_consumer(settings, t, group_id=None), settings)
    try:
        decisions = list(read_decisions(consumer, settings, dlq=None))
    finally:
        consumer.close(autocommit=False)
    return reviews, decisions


def read_rows(settings: Any, model: Mapping[str, str] | None, labels: Iterable[str] | None) -> Joined:
    """Read the review and decisions topics named in ``settings`` and :func:`join` them."""
    reviews, decisions = read_topics(settings)
    joined = join(reviews, decisions, model, labels)
    log.info("decisions joined", extra={"decisions": joined.decisions_used, "rows": len(joined.rows),
                                        "skipped": dict(joined.skipped)})
    return joined


__all__ = ["Joined", "latest_reviews", "verdict_table", "review_coverage", "join", "export_rows", "read_topics", "read_rows"]
