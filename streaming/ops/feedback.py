"""Decided posts as estimator rows: join the review topic with the decisions topic.

:mod:`flagstream.classifier.feedback.thresholds` takes plain rows (score, verdict, weight, label, feed) and knows nothing of
Kafka; this module is the other half. It reads both topics from the beginning (joining no group),
keeps the latest review record per post id (the stream is at-least-once: duplicates share the id),
and turns every confirm/reject verdict into one row per (post, label):

* ``score``: the post's score for that label in its review record (only records written by the model
  being recalibrated count: another version's scores are on another scale);
* ``verdict``: 1 confirm, 0 reject; when reviewers disagree, the mean of each reviewer's latest
  verdict, so the disagreement stays visible as a fraction; ``unsure`` is no evidence and is dropped;
* ``weight``: 1 for a flagged post (all of them go to review), the inverse inclusion probability for an
  audit one, recomputed from the audit policy (:func:`~flagstream.streaming.loop.audit.policy_weight`; the record's own
  ``sampling_weight`` is never trusted), times the inverse share of review items decided in its stratum (:func:`review_coverage`: the queue
  is rarely empty, and reviewers take high scores first);
* ``feed``: the source topic of the post.

Trust (:mod:`streaming.signing`): only signed decisions that verify count (``accept_unsigned`` for legacy
data), one vote per principal (the signed reviewer id), the latest by *parsed* ``decided_at``. A decision
is joined to the review record at the coordinates it carries (topic, partition, offset), not merely to the
latest record with the same id, so a record written later under a decided id cannot swap the scores.

Memory: :func:`read_topics` reads the decisions first, then keeps review records without their text
(text only for decided posts, and only when exporting), so a long review topic costs its metadata only.

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
from flagstream.streaming.loop.audit import AuditPolicy, policy_weight
from flagstream.contract.decisions import Decision
from flagstream.streaming.signing import decided_time

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
    """(post id, label) -> {reviewer: latest verdict}, and the decisions used (in topic order).

    One vote per principal: a reviewer's later decision replaces their earlier one. "Later" compares the
    parsed time (``+05:00`` and ``Z`` stamps order correctly); a decision whose time does not parse is left
    out of both results (readers count it first, :func:`streaming.signing.trusted`).
    """
    from datetime import datetime

    table: dict[tuple[str, str], dict[str, tuple[datetime, str]]] = defaultdict(dict)
    used: list[Decision] = []
    for d in decisions:
        when = decided_time(d)
        if when is None:
            continue
        used.append(d)
        for pid in d.ids:
            for label, verdict in d.verdicts.items():
                prev = table[(pid, label)].get(d.reviewer)
                if prev is None or when >= prev[0]:
                    table[(pid, label)][d.reviewer] = (when, verdict)
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
         model: Mapping[str, str] | None = None, labels: Iterable[str] | None = None,
         policy: AuditPolicy | None = None) -> Joined:
    """Estimator rows from review records (id -> record) and decisions; see the module docstring.

    ``policy`` is the audit policy the stream ran with (default: the default settings'); audit weights are
    recomputed from it.
    """
    policy = policy or AuditPolicy()
    table, used = verdict_table(decisions)
    wanted = set(labels) if labels is not None else None
    out = Joined(rows=[])
    ids = sorted(d.decision_id for d in used)
    out.decisions_used = len(used)
    out.decision_ids_sha256 = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    times = sorted(used, key=decided_time)  # type: ignore[arg-type] - used holds parsable times only
    out.first_decided_at, out.last_decided_at = (times[0].decided_at, times[-1].decided_at) if times else (None, None)
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
            audit, weight = policy_weight(rec, policy)
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
                labels: Iterable[str], policy: AuditPolicy | None = None) -> tuple[list[dict[str, Any]], Counter]:
    """Decided posts as labelled training rows, one per post id (latest review record), in id order.

    Per label: ``votes`` counts each reviewer's latest verdict; the label is 1 or 0 by strict majority of
    confirm/reject, ``null`` on a tie or when every vote is ``unsure`` (so a disputed label never trains
    either way); ``disputed`` names labels whose reviewers disagree. ``audit`` and ``sampling_weight`` say
    how the post reached review (the weight recomputed from ``policy``, as in :func:`join`). Posts with no
    review record are counted, not exported (no text).
    """
    policy = policy or AuditPolicy()
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
            audit, weight = policy_weight(rec, policy)
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


TEXT_FIELDS = ("text", "spans", "extra", "url")  # what a review record costs most, and no estimator reads


@dataclass
class Topics:
    """What :func:`read_topics` keeps: review records by id (text only where asked), the trusted decisions,
    and why decisions or their joins were skipped."""

    reviews: dict[str, Mapping[str, Any]]
    decisions: list[Decision]
    skipped: Counter


def read_topics(settings: Any, accept_unsigned: bool = False, keep_text: bool = False,
                all_reviews: bool = True) -> Topics:
    """The trusted decisions, then the review records they need, from the topics named in ``settings``.

    Decisions are verified first (:func:`streaming.signing.trusted` with ``decisions_hmac_key``). The review
    topic is then scanned once: records of undecided posts are kept only when ``all_reviews`` (calibration
    needs them for coverage), and without text unless ``keep_text`` (export, decided posts only). A decided
    post is joined to the record at the coordinates its decision names; a decision naming coordinates that
    hold another id (or nothing) falls back to the latest record of its id, counted as ``review_ref_mismatch``.

    Raises:
        UserError: no decisions key configured and ``accept_unsigned`` not given.
    """
    from flagstream.streaming.kafka.clients import make_consumer, retry_until
    from flagstream.streaming.ops.decisions import read_decisions
    from flagstream.streaming.ops.review import decode, iter_topic
    from flagstream.streaming.signing import reader_key, trusted

    key = reader_key(settings, accept_unsigned)
    consumer = retry_until("consumer", lambda t: make_consumer(settings, t, group_id=None), settings)
    try:
        decisions, skipped = trusted(read_decisions(consumer, settings, dlq=None), key, accept_unsigned)
    finally:
        consumer.close(autocommit=False)
    wanted = {pid for d in decisions for pid in d.ids}
    refs: dict[tuple[str, int, int], str] = {}
    for d in decisions:
        for ref in d.reviews:
            refs[(ref.topic, ref.partition, ref.offset)] = ref.id
    reviews: dict[str, Mapping[str, Any]] = {}
    pinned: dict[str, Mapping[str, Any]] = {}
    consumer = retry_until("consumer", lambda t: make_consumer(settings, t, group_id=None), settings)
    try:
        for rec in iter_topic(consumer, settings.review_topic):
            msg = decode(rec.value)
            if msg is None or not isinstance(msg.get("id"), str):
                continue
            pid = msg["id"]
            if pid not in wanted and not all_reviews:
                continue
            if not (keep_text and pid in wanted):
                msg = {k: v for k, v in msg.items() if k not in TEXT_FIELDS}
            reviews[pid] = msg
            named = refs.get((rec.topic, rec.partition, rec.offset))
            if named is not None:
                if named == pid:
                    pinned[pid] = msg
                else:
                    skipped["review_ref_mismatch"] += 1
    finally:
        consumer.close(autocommit=False)
    reviews.update(pinned)
    return Topics(reviews, decisions, skipped)


def read_rows(settings: Any, model: Mapping[str, str] | None, labels: Iterable[str] | None,
              accept_unsigned: bool = False) -> Joined:
    """Read the review and decisions topics named in ``settings`` and :func:`join` them (text-free).

    Raises:
        UserError: no decisions key and not ``accept_unsigned`` (see :func:`read_topics`).
    """
    topics = read_topics(settings, accept_unsigned=accept_unsigned)
    joined = join(topics.reviews, topics.decisions, model, labels, AuditPolicy.from_settings(settings))
    for reason, n in topics.skipped.items():
        joined.skipped[f"decision_{reason}"] += n
    log.info("decisions joined", extra={"decisions": joined.decisions_used, "rows": len(joined.rows),
                                        "skipped": dict(joined.skipped)})
    return joined


__all__ = ["Joined", "latest_reviews", "verdict_table", "review_coverage", "join", "export_rows", "Topics", "read_topics",
           "read_rows", "TEXT_FIELDS"]
