"""Where bank entries come from: reviewers' decisions joined to the review records they cover.

``flagstream bank sync`` (run it after review sessions, or from cron; it is idempotent) reads the decisions topic
and the review topic, and for every decided post whose review record still carries its text writes one entry:

- a decision that ``confirm``\\ s any label puts the post in the **positive** bank, labelled with the confirmed
  labels (a campaign decision covers every member it names, so a confirmed campaign banks all its reposts);
- a decision that only ``reject``\\ s puts it in the **negative** bank; ``unsure`` alone banks nothing.

Decisions are applied in topic order, so the latest decision on a text decides its bank (the entry id is
derived from the normalised text). The text is read here and hashed; it never reaches the bank topic.
Entries already on the topic from the same decision are not written again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from flagstream.contract.decisions import Decision
from flagstream.streaming.banks.entries import BankEntry, parse_time
from flagstream.streaming.banks.index import Bank

log = logging.getLogger(__name__)


def bank_of(verdicts: Mapping[str, str]) -> tuple[str, tuple[str, ...]] | None:
    """(bank, labels) a decision's verdicts put its posts in, or None (only ``unsure``)."""
    confirmed = tuple(k for k, v in verdicts.items() if v == "confirm")
    if confirmed:
        return "positive", confirmed
    rejected = tuple(k for k, v in verdicts.items() if v == "reject")
    return ("negative", rejected) if rejected else None


def entries_from(decisions: Iterable[Decision], reviews: Mapping[str, Mapping[str, Any]],
                 ttl_days: float) -> tuple[dict[str, BankEntry], int]:
    """Entry id -> the entry the latest decision on that text makes; and how many posts had no review text."""
    out: dict[str, BankEntry] = {}
    missing = 0
    for d in decisions:
        target = bank_of(d.verdicts)
        if target is None:
            continue
        bank, labels = target
        decided = parse_time(d.decided_at, "decided_at")
        for pid in d.ids:
            text = (reviews.get(pid) or {}).get("text")
            if not isinstance(text, str) or not text.strip():
                missing += 1
                continue
            ref = {"decision_id": d.decision_id, "post_id": pid, "campaign": d.campaign, "decided_at": d.decided_at,
                   "verdict": "confirm" if bank == "positive" else "reject"}
            e = BankEntry.for_text(text, bank, labels, ref, decided, ttl_days)
            out.pop(e.entry_id, None)  # keep topic order: a re-decided text moves to the end
            out[e.entry_id] = e
    return out, missing


def new_entries(wanted: Mapping[str, BankEntry], current: Bank, now: datetime | None = None) -> list[BankEntry]:
    """The entries not already on the topic from the same decision (and not already expired)."""
    now = now or datetime.now(timezone.utc)
    out = []
    for e in wanted.values():
        have = current.get(e.entry_id)
        if have is not None and have.decision.get("decision_id") == e.decision.get("decision_id") \
                and have.bank == e.bank:
            continue
        if not e.expired(now):
            out.append(e)
    return out


def sync(settings: Any, accept_unsigned: bool = False) -> dict[str, int]:
    """Write the bank entries the decisions call for that the topic lacks; returns counts for the summary line.

    Only signed decisions (``decisions_hmac_key``) make entries: a forged "reject" would otherwise put real hate
    in the negative bank and keep its reposts from reviewers (issue 29). ``accept_unsigned`` reads legacy ones.

    Raises:
        UserError: no decisions key configured and ``accept_unsigned`` not given; broker unreachable.
    """
    from flagstream.streaming.banks.topic import ensure_bank_topic, read_bank, write_entries
    from flagstream.streaming.kafka.clients import make_producer, retry_until
    from flagstream.streaming.ops.feedback import read_topics

    ensure_bank_topic(settings)
    topics = read_topics(settings, accept_unsigned=accept_unsigned, keep_text=True, all_reviews=False)
    reviews, decisions = topics.reviews, topics.decisions
    wanted, missing = entries_from(decisions, reviews, settings.bank_ttl_days)
    todo = new_entries(wanted, read_bank(settings))
    producer = retry_until("producer", lambda t: make_producer(settings, t), settings)
    try:
        written = write_entries(producer, settings.bank_topic, todo)
    finally:
        producer.close()
    counts = {"decisions": len(decisions), "entries": len(wanted), "written": written, "without_text": missing}
    log.info("bank sync", extra=counts)
    return counts


__all__ = ["bank_of", "entries_from", "new_entries", "sync"]
