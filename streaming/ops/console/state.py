"""What the review console knows: the review topic minus every decided post id, kept current.

One background thread owns a consumer manually assigned to the review and decisions topics (it joins no
group, so any number of consoles can run on the same topics and none takes records from another). Each
console builds its queue from the topics alone, which is why a decision made in one console removes the
item from every other console at its next poll: the decisions topic is the only shared state.

Memory is bounded (docs/operations.md): at most ``console_max_items`` undecided review records (the oldest
is evicted first and counted in ``/api/stats``), at most ``console_max_decided`` decided ids (the oldest is
forgotten: a review record of such an old post read again would reappear), and the last ``max_decisions``
decisions for the stats panel.

Robustness: a malformed review record (non-numeric score, missing text, ...) is skipped and counted, never
folded in, so one record cannot break ``/api/queue`` for everyone; an exception in the reader thread is
logged, backed off and retried, and :meth:`ReviewState.health` reports the console stale (``/readyz`` 503)
while it cannot read.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import unicodedata
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from flagstream.config import Settings
from flagstream.streaming.ops.decision_time import DecisionTimes
from flagstream.streaming.ops.decisions import Reviewed, accept_decision, build_decisions, write_decision
from flagstream.streaming.ops.review import decode
from flagstream.contract.decisions import VERDICTS, Decision, ReviewRef

log = logging.getLogger(__name__)

_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}


class AlreadyDecided(Exception):
    """Every post under the key was decided (by this or another console) before this click."""


def is_hidden_char(ch: str) -> bool:
    """Characters that would be invisible or reorder the text on screen (zero-width, bidi, controls)."""
    return ch in _BIDI or (ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"))


def segments(text: str, spans: Mapping[str, Sequence[Mapping[str, Any]]] | None) -> list[dict[str, Any]]:
    """Split ``text`` into display pieces: each hidden character alone (shown as a visible ``\\uXXXX``), and
    runs covered by the same set of explanation spans (``labels``). Offsets are Python code points, so the
    browser never has to reconcile UTF-16 indices; it only sets ``textContent``."""
    cover: list[set[str]] = [set() for _ in text]
    for label, items in (spans or {}).items():
        for s in items or []:
            try:
                start, end = max(0, int(s["start"])), min(len(text), int(s["end"]))
            except (KeyError, TypeError, ValueError):
                continue
            for i in range(start, end):
                cover[i].add(str(label))
    out: list[dict[str, Any]] = []
    for i, ch in enumerate(text):
        labels = sorted(cover[i])
        if is_hidden_char(ch):
            out.append({"t": f"\\u{ord(ch):04x}", "labels": labels, "ctl": True})
        elif out and not out[-1]["ctl"] and out[-1]["labels"] == labels:
            out[-1]["t"] += ch
        else:
            out.append({"t": ch, "labels": labels, "ctl": False})
    return out


@dataclass
class Group:
    """One queue entry: a single post, or the undecided members of a campaign."""

    key: str
    members: list[Reviewed]
    campaign: str | None

    @property
    def lead(self) -> Reviewed:
        return max(self.members, key=lambda m: top_score(m.record))

    def score(self) -> float:
        return top_score(self.lead.record)


def top_score(record: Mapping[str, Any]) -> float:
    scores = record.get("scores") or {}
    flagged = [float(scores[label]) for label in record.get("labels") or [] if label in scores]
    return max(flagged or [float(v) for v in scores.values()] or [0.0])


def malformed(msg: Any) -> str | None:
    """Why a decoded review-topic value cannot be queued (None: it can). Everything the queue and item views
    read is checked here once, so no request can trip over a record later."""
    if not isinstance(msg, dict):
        return "not_json_object"
    if not isinstance(msg.get("id"), str) or not isinstance(msg.get("text"), str):
        return "no_id_or_text"
    scores = msg.get("scores")
    if scores is not None and not isinstance(scores, dict):
        return "bad_scores"
    for v in (scores or {}).values():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return "bad_scores"
    labels = msg.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        return "bad_labels"
    for key in ("source", "thresholds", "spans"):
        if msg.get(key) is not None and not isinstance(msg.get(key), dict):
            return f"bad_{key}"
    return None


def campaign_of(record: Mapping[str, Any]) -> str | None:
    c = record.get("campaign")
    if isinstance(c, dict) and isinstance(c.get("id"), str):
        return c["id"]
    return None


def _ts(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class ReviewState:
    """The live queue of one console (thread-safe; :meth:`run` is the reader thread)."""

    STALE_AFTER_S = 30.0  # no successful poll for this long: /readyz says 503

    def __init__(self, settings: Settings, consumer: KafkaConsumer, producer: KafkaProducer,
                 max_decisions: int = 100_000, key: bytes | None = None) -> None:
        self.settings = settings
        self.consumer = consumer
        self.producer = producer
        self.key = key  # signs this console's decisions (streaming/signing.py); None = unsigned
        self.max_items = settings.console_max_items
        self.max_decided = settings.console_max_decided
        self.items: dict[str, Reviewed] = {}  # insertion order = age: the first one is evicted first
        self.decided: dict[str, None] = {}  # an ordered set of decided ids, bounded the same way
        self.counts: Counter = Counter()  # skipped_<reason>, evicted_items, forgotten_decided, reader_errors
        self.last_poll = time.monotonic()
        self.reader_error: str | None = None
        self.decisions: deque[Decision] = deque(maxlen=max_decisions)
        self.seen_decisions: set[str] = set()
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.caught_up = threading.Event()
        self.thread: threading.Thread | None = None
        self.times = DecisionTimes(getattr(settings, "decision_sla_s", 3600.0))  # issue 33: time to decision

    # ---- reading ------------------------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name="console-reader", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(10)

    def _assign(self) -> list[TopicPartition]:
        tps: list[TopicPartition] = []
        deadline = time.monotonic() + self.settings.startup_timeout_s
        for topic in (self.settings.review_topic, self.settings.decisions_topic):
            parts = None
            while not parts and not self.stop_event.is_set():
                parts = self.consumer.partitions_for_topic(topic)
                if not parts:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"topic {topic} does not exist")
                    time.sleep(0.2)
            tps += [TopicPartition(topic, p) for p in sorted(parts or ())]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        return tps

    def run(self) -> None:
        """The reader thread: never ends on an exception (logged, backed off, retried) until :meth:`stop`."""
        backoff = 1.0
        tps: list[TopicPartition] | None = None
        while not self.stop_event.is_set():
            try:
                if tps is None:
                    tps = self._assign()
                self.poll_once(tps)
                backoff = 1.0
            except Exception as exc:  # noqa: BLE001 - a console keeps serving what it has while it cannot read
                self.counts["reader_errors"] += 1
                self.reader_error = type(exc).__name__
                log.warning("console reader failed; retrying", exc_info=True,
                            extra={"error": type(exc).__name__, "retry_in_s": backoff})
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def poll_once(self, tps: list[TopicPartition]) -> None:
        """One poll folded in; a record that raises is skipped and counted, the rest of the batch goes on."""
        from flagstream.streaming.ops.review import caught_up

        batch = self.consumer.poll(timeout_ms=200)
        self.last_poll = time.monotonic()
        self.reader_error = None
        for records in batch.values():
            for rec in records:
                try:
                    self.apply(rec)
                except Exception as exc:  # noqa: BLE001 - one record never stops the reader
                    self.counts["skipped_apply_error"] += 1
                    log.warning("console record skipped", extra={"topic": rec.topic, "partition": rec.partition,
                                                                 "offset": rec.offset, "error": type(exc).__name__})
        if not batch and not self.caught_up.is_set() and caught_up(self.consumer, tps):
            self.caught_up.set()
            log.info("console caught up", extra={"queue": len(self.items), "decided": len(self.decided)})

    def health(self) -> dict[str, Any]:
        """Is this console current? ``ready`` False when the reader thread is gone or has not polled lately."""
        alive = self.thread is None or self.thread.is_alive()
        age = time.monotonic() - self.last_poll
        stale = not alive or age > self.STALE_AFTER_S
        return {"ready": not stale and self.caught_up.is_set(), "stale": stale, "reader_alive": alive,
                "last_poll_age_s": round(age, 1), "reader_error": self.reader_error,
                "caught_up": self.caught_up.is_set()}

    def apply(self, rec: Any) -> None:
        """Fold one consumed record (review or decision) into the state."""
        if rec.topic == self.settings.decisions_topic:
            decision = accept_decision(rec, self.settings, self.producer)
            if decision is not None:
                self._record(decision)
            return
        msg = decode(rec.value)
        why = "undecodable" if msg is None else malformed(msg)
        if why is not None:
            self.counts[f"skipped_{why}"] += 1
            log.warning("not a review record; skipped", extra={"topic": rec.topic, "partition": rec.partition,
                                                                "offset": rec.offset, "reason": why})
            return
        with self.lock:
            if msg["id"] not in self.decided:
                self.items.pop(msg["id"], None)  # re-inserted at the end: a redelivered record is young again
                self.items[msg["id"]] = Reviewed(msg, ReviewRef(msg["id"], rec.topic, rec.partition, rec.offset))
                while len(self.items) > self.max_items:
                    self.items.pop(next(iter(self.items)))
                    self.counts["evicted_items"] += 1

    def _record(self, decision: Decision) -> None:
        with self.lock:
            if decision.decision_id in self.seen_decisions:
                return  # our own decision, already applied when it was written
            if len(self.decisions) == self.decisions.maxlen:
                self.seen_decisions.discard(self.decisions[0].decision_id)
            self.decisions.append(decision)
            self.seen_decisions.add(decision.decision_id)
            for pid in decision.ids:
                self.decided[pid] = None
                if (gone := self.items.pop(pid, None)) is not None:
                    self.times.observe(gone.record, decision.decided_at)
            while len(self.decided) > self.max_decided:
                self.decided.pop(next(iter(self.decided)))
                self.counts["forgotten_decided"] += 1

    # ---- the queue ----------------------------------------------------------------------
    def groups(self) -> list[Group]:
        with self.lock:
            by_key: dict[str, Group] = {}
            for pid, item in self.items.items():
                camp = campaign_of(item.record)
                key = f"c:{camp}" if camp else f"p:{pid}"
                by_key.setdefault(key, Group(key, [], camp)).members.append(item)
            return list(by_key.values())

    def queue(self, order: str = "score", label: str | None = None, lang: str | None = None,
              topic: str | None = None, limit: int = 500) -> dict[str, Any]:
        groups = self.groups()
        facets: dict[str, set[str]] = {"label": set(), "lang": set(), "topic": set()}
        for g in groups:
            for m in g.members:
                facets["label"].update(str(x) for x in m.record.get("labels") or [])
                if isinstance(m.record.get("lang"), str):
                    facets["lang"].add(m.record["lang"])
                facets["topic"].add(str((m.record.get("source") or {}).get("topic", "")))

        def keep(g: Group) -> bool:
            return any((label is None or label in (m.record.get("labels") or []))
                       and (lang is None or m.record.get("lang") == lang)
                       and (topic is None or (m.record.get("source") or {}).get("topic") == topic)
                       for m in g.members)

        chosen = [g for g in groups if keep(g)]
        if order == "campaign":
            chosen.sort(key=lambda g: (-len(g.members), -g.score(), g.key))
        else:
            chosen.sort(key=lambda g: (-g.score(), g.key))
        rows = []
        for g in chosen[:limit]:
            lead = g.lead.record
            rows.append({"key": g.key, "id": lead["id"], "campaign": g.campaign, "count": len(g.members),
                         "labels": list(lead.get("labels") or []), "score": round(g.score(), 4),
                         "audit": lead.get("audit") is True,
                         "lang": lead.get("lang"), "topic": (lead.get("source") or {}).get("topic"),
                         "preview": [s for s in segments(lead["text"][:160], None)]})
        return {"rows": rows, "total": len(chosen), "facets": {k: sorted(v) for k, v in facets.items()},
                "caught_up": self.caught_up.is_set(), "stale": self.health()["stale"]}

    def group(self, key: str) -> Group | None:
        return next((g for g in self.groups() if g.key == key), None)

    def item(self, key: str, members: bool = False) -> dict[str, Any] | None:
        g = self.group(key)
        if g is None:
            return None
        rec = g.lead.record
        labels = list(rec.get("labels") or [])
        scores = rec.get("scores") or {}
        thresholds = rec.get("thresholds") or {}
        out: dict[str, Any] = {
            "key": g.key, "id": rec["id"], "campaign": g.campaign, "count": len(g.members), "labels": labels,
            # an audit item (issue 18: unflagged, sampled with a known weight) is decided on every label
            "audit": rec.get("audit") is True, "decide": labels or (list(scores) if rec.get("audit") is True or rec.get("bank_match") else []),
            "scores": [{"label": k, "score": float(v), "threshold": thresholds.get(k), "flagged": k in labels}
                       for k, v in scores.items()],
            "model": rec.get("model"), "source": rec.get("source"), "review": g.lead.ref.as_dict(),
            "flagged_at": rec.get("flagged_at"), "lang": rec.get("lang"), "url": rec.get("url"),
            "segments": segments(rec["text"], rec.get("spans")),
            "spans": {k: v for k, v in (rec.get("spans") or {}).items()},
            # the stream was past its explanation budget (streaming/loop/annotate.py): say so rather than show nothing
            "spans_skipped": rec.get("spans_skipped"),
            "bank_match": rec.get("bank_match"),  # issue 33: known content and the decision that banked it
        }
        if members:
            out["members"] = [{"id": m.record["id"], "score": round(top_score(m.record), 4),
                               "segments": segments(m.record["text"][:400], None)}
                              for m in sorted(g.members, key=lambda m: -top_score(m.record))]
        return out

    # ---- deciding -----------------------------------------------------------------------
    def decide(self, key: str, verdicts: Mapping[str, str], reviewer: str, policy: str | None = None,
               note: str | None = None) -> list[Decision]:
        """Write the decision over the group's undecided members (in chunks of at most
        :data:`~flagstream.contract.decisions.MAX_DECISION_IDS` ids, each signed when the console holds the key), then
        drop them from the queue. ``reviewer`` is the principal the server resolved, never the request's.

        Raises:
            ValueError: verdicts empty or not confirm/reject/unsure.
            AlreadyDecided: nothing undecided under ``key``.
        """
        bad = [v for v in verdicts.values() if v not in VERDICTS]
        if not verdicts or bad:
            raise ValueError(f"verdicts must map labels to one of {', '.join(VERDICTS)}")
        g = self.group(key)
        if g is None:
            raise AlreadyDecided(key)
        members = sorted(g.members, key=lambda m: -top_score(m.record))
        decisions = build_decisions(members, verdicts, reviewer, key=self.key, policy=policy, note=note,
                                    campaign=g.campaign)
        for decision in decisions:
            write_decision(self.producer, self.settings.decisions_topic, decision)
            self._record(decision)
        return decisions

    # ---- stats --------------------------------------------------------------------------
    def stats(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        with self.lock:
            decisions = list(self.decisions)
            depth = len(self.items)
        groups = len(self.groups())
        per_label: dict[str, dict[str, int]] = {}
        recent: dict[str, deque[str]] = {}
        last_hour = 0
        for d in decisions:
            if now - _ts(d.decided_at) <= 3600:
                last_hour += 1
            for label, verdict in d.verdicts.items():
                per_label.setdefault(label, {v: 0 for v in VERDICTS})[verdict] += len(d.ids)
                recent.setdefault(label, deque(maxlen=100)).append(verdict)
        rates = {}
        for label, counts in sorted(per_label.items()):
            decided = counts["confirm"] + counts["reject"]
            last = [v for v in recent[label] if v != "unsure"]
            rates[label] = {**counts, "reject_rate": round(counts["reject"] / decided, 4) if decided else None,
                            "reject_rate_last_100": round(last.count("reject") / len(last), 4) if last else None}
        return {"queue_posts": depth, "queue_items": groups, "decisions": len(decisions),
                "counts": dict(self.counts), "bounds": {"items": self.max_items, "decided": self.max_decided},
                "decisions_last_hour": last_hour, "labels": rates, "time_to_decision": self.times.as_dict(),
                "as_of": datetime.fromtimestamp(now, tz=timezone.utc).isoformat(timespec="seconds")}


__all__ = ["ReviewState", "Group", "AlreadyDecided", "malformed", "segments", "is_hidden_char", "top_score", "campaign_of"]
