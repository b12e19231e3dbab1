"""Reviewer decisions: build them from review records, write them, and read the topic back.

The contract itself (:class:`~flagstream.contract.decisions.Decision`, :func:`~flagstream.contract.decisions.parse_decision`)
lives in :mod:`flagstream.contract.decisions` beside every other topic's; this module is the I/O around it, shared by
``flagstream decide`` and the review console so that both write exactly the same records.

Reading is validated: a record that breaks the contract is copied to the dead-letter topic (error class
``invalid_decision``, or the JSON-level class) and skipped, so one bad writer can never wedge a console.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from flagstream.config import Settings
from flagstream.contract.dead_letters import dead_letter_record
from flagstream.contract.decisions import Decision, ReviewRef, decision_record, parse_decision
from flagstream.contract.records import Rejection, Source, now_iso

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reviewed:
    """A review record read back with its own coordinates on the review topic."""

    record: Mapping[str, Any]
    ref: ReviewRef


def build_decision(items: Sequence[Reviewed], verdicts: Mapping[str, str], reviewer: str, *,
                   policy: str | None = None, note: str | None = None, campaign: str | None = None,
                   extra_ids: Sequence[str] = (), action: str | None = None) -> Decision:
    """One decision over ``items`` (one post, or every member of a campaign).

    ``model`` and ``thresholds`` come from the first review record: the ones that flagged it. ``extra_ids``
    are covered ids with no review record at hand (``flagstream decide --allow-missing``).
    """
    ids = list(dict.fromkeys([str(i.record.get("id")) for i in items] + list(extra_ids)))
    if not ids:
        raise ValueError("a decision covers at least one post id")
    first = items[0].record if items else {}
    model = first.get("model") if isinstance(first.get("model"), dict) else None
    thresholds = first.get("thresholds") if isinstance(first.get("thresholds"), dict) else {}
    return Decision(decision_id=uuid.uuid4().hex, ids=tuple(ids), verdicts=dict(verdicts), reviewer=reviewer,
                    decided_at=now_iso(), model=model, thresholds=thresholds, reviews=tuple(i.ref for i in items),
                    campaign=campaign, policy=policy, note=note, action=action)


def build_decisions(items: Sequence[Reviewed], verdicts: Mapping[str, str], reviewer: str, *,
                    key: bytes | None = None, policy: str | None = None, note: str | None = None,
                    campaign: str | None = None, extra_ids: Sequence[str] = (),
                    action: str | None = None) -> list[Decision]:
    """Decisions over ``items`` in chunks of at most :data:`~flagstream.contract.decisions.MAX_DECISION_IDS` ids, each
    signed with ``key`` when one is given (:mod:`streaming.signing`).

    Why chunks: readers refuse a record covering more ids than that (one record must never empty every
    console's queue), yet a campaign of any size must be decidable. The chunks share verdicts, reviewer,
    campaign and note; each carries the review coordinates of its own members.

    Raises:
        ValueError: no post id at all.
    """
    from flagstream.contract.decisions import MAX_DECISION_IDS
    from flagstream.streaming.signing import sign

    seen: set[str] = set()
    units: list[tuple[str, Reviewed | None]] = []
    for it in items:
        pid = str(it.record.get("id"))
        if pid not in seen:
            seen.add(pid)
            units.append((pid, it))
    for pid in extra_ids:
        if pid not in seen:
            seen.add(pid)
            units.append((pid, None))
    if not units:
        raise ValueError("a decision covers at least one post id")
    out: list[Decision] = []
    for start in range(0, len(units), MAX_DECISION_IDS):
        chunk = units[start:start + MAX_DECISION_IDS]
        reviewed = [it for _, it in chunk if it is not None]
        missing = [pid for pid, it in chunk if it is None]
        # a chunk of ids with no review record still names the model and thresholds that flagged the rest
        d = build_decision(reviewed or list(items[:1]), verdicts, reviewer, policy=policy, note=note,
                           campaign=campaign, extra_ids=missing, action=action)
        if not reviewed:
            d = replace(d, ids=tuple(missing), reviews=())
        out.append(sign(d, key) if key is not None else d)
    return out


def write_decision(producer: KafkaProducer, topic: str, decision: Decision, timeout_s: float = 30.0) -> Any:
    """Produce one decision and wait for its ack (a reviewer's click is durable before the UI moves on)."""
    rec = decision_record(decision)
    meta = producer.send(topic, key=rec.key, value=rec.value, headers=rec.headers).get(timeout=timeout_s)
    log.info("decision written", extra={"topic": topic, "partition": meta.partition, "offset": meta.offset,
                                        "posts": len(decision.ids), "verdicts": dict(decision.verdicts)})
    return meta


def accept_decision(rec: Any, settings: Settings, dlq: KafkaProducer | None) -> Decision | None:
    """Validate one consumed decisions-topic record; a bad one goes to the dead-letter topic."""
    parsed = parse_decision(rec.value, settings.max_message_bytes)
    if isinstance(parsed, Decision):
        return parsed
    dead_letter(rec, parsed, settings, dlq)
    return None


def dead_letter(rec: Any, rejection: Rejection, settings: Settings, dlq: KafkaProducer | None) -> None:
    """Copy ``rec`` to the dead-letter topic with its reason (never its text)."""
    log.warning("bad decision record dead-lettered",
                extra={"topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
                       "error": rejection.error, "reason": rejection.reason})
    if dlq is None:
        return
    src = Source(rec.topic, rec.partition, rec.offset, getattr(rec, "timestamp", None))
    out = dead_letter_record(rec.key, rec.value, rec.headers, rejection, src, settings.max_message_bytes)
    dlq.send(settings.dlq_topic, key=out.key, value=out.value, headers=out.headers).get(timeout=30)


def find_reviews(consumer: KafkaConsumer, topic: str, ids: Iterable[str], timeout_s: float = 10.0) -> dict[str, Reviewed]:
    """The latest review record of each wanted id (a full scan of the review topic, joining no group)."""
    from flagstream.streaming.ops.review import decode, iter_topic

    wanted = set(ids)
    found: dict[str, Reviewed] = {}
    for rec in iter_topic(consumer, topic, timeout_s=timeout_s):
        msg = decode(rec.value)
        if msg is not None and msg.get("id") in wanted:
            found[msg["id"]] = Reviewed(msg, ReviewRef(msg["id"], rec.topic, rec.partition, rec.offset))
    return found


def read_decisions(consumer: KafkaConsumer, settings: Settings, dlq: KafkaProducer | None,
                   follow: bool = False) -> Iterator[Decision]:
    """Every valid decision from the beginning of the decisions topic (bad records dead-lettered)."""
    from flagstream.streaming.ops.review import iter_topic

    for rec in iter_topic(consumer, settings.decisions_topic, follow=follow):
        decision = accept_decision(rec, settings, dlq)
        if decision is not None:
            yield decision


__all__ = ["Reviewed", "build_decision", "build_decisions", "write_decision", "accept_decision", "dead_letter", "find_reviews",
           "read_decisions"]
