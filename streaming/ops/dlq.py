"""Dead letters as work: list them with their reasons, and replay chosen ones after a fix.

``flagstream dlq`` reads the dead-letter topic (by manual assignment: it joins no group and takes no
work from a pipeline) and shows one line per record: where it sits on the dead-letter topic, when
it failed, its error class and reason, and where it came from. It never prints the record's value
(it may be a post's text).

``flagstream dlq replay`` re-publishes chosen records to the posts topic *as they were*: the
original key and value bytes and the original record's own headers, plus
``flagstream.replay.of`` (``<dlq topic>[<partition>]@<offset>``, which dead letter this is) and
``flagstream.replayed_at``. Records whose bytes are no longer the original (``message_too_large``
values and over-long keys are cut when dead-lettered) are never replayed.

Idempotence: the pipeline itself has no deduplication window (it is at-least-once, and every
record it reads is scored), so replay is made idempotent here: before publishing, it reads the
posts topic for ``flagstream.replay.of`` headers (from the earliest selected failure time on, when
the broker can look offsets up by time; else from the beginning) and skips dead letters already
replayed. ``--force`` replays them again, and the pipeline then scores them again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from flagstream.contract.dead_letters import DeadLetter, read_dead_letter
from flagstream.contract.records import HEADER_PREFIX, now_iso

REPLAY_OF = HEADER_PREFIX + "replay.of"
REPLAYED_AT = HEADER_PREFIX + "replayed_at"


@dataclass(frozen=True)
class DlqEntry:
    """One dead-letter record and where it sits on the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    letter: DeadLetter

    @property
    def ref(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def failed_at(self) -> datetime | None:
        raw = (self.letter.headers.get(HEADER_PREFIX + "failed_at") or b"").decode("utf-8", "replace")
        parsed = parse_time(raw) if raw else None
        if parsed is None and self.timestamp_ms is not None and self.timestamp_ms >= 0:
            parsed = datetime.fromtimestamp(self.timestamp_ms / 1000, tz=timezone.utc)
        return parsed

    @property
    def not_original(self) -> str | None:
        """Why this record's bytes are not the original ones (so it must not be replayed), or None."""
        h = self.letter.headers
        if HEADER_PREFIX + "original_size" in h:
            return "value was cut to max_message_bytes when dead-lettered"
        if HEADER_PREFIX + "key_truncated" in h:
            return "key was cut when dead-lettered"
        if HEADER_PREFIX + "headers_dropped" in h:
            return "original headers were dropped when dead-lettered"
        return None


@dataclass
class DlqFilter:
    """Which dead letters to show or replay; every given criterion must hold."""

    reasons: set[str] = field(default_factory=set)
    since: datetime | None = None
    until: datetime | None = None
    source_partitions: set[int] = field(default_factory=set)
    refs: set[tuple[int, int]] = field(default_factory=set)  # (dlq partition, dlq offset)

    def matches(self, e: DlqEntry) -> bool:
        if self.reasons and e.letter.error not in self.reasons:
            return False
        if self.source_partitions and e.letter.source.partition not in self.source_partitions:
            return False
        if self.refs and (e.partition, e.offset) not in self.refs:
            return False
        if self.since is not None or self.until is not None:
            at = e.failed_at
            if at is None or (self.since is not None and at < self.since) or (self.until is not None and at >= self.until):
                return False
        return True


def parse_time(text: str) -> datetime | None:
    """ISO-8601 (``2026-12-03T10:00:00Z``, a date alone, or with an offset) as an aware UTC datetime."""
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def to_entry(rec: Any) -> DlqEntry:
    letter = read_dead_letter(rec.key, rec.value, rec.headers)
    return DlqEntry(rec.topic, rec.partition, rec.offset, getattr(rec, "timestamp", None), letter)


def select(records: Iterable[Any], flt: DlqFilter) -> Iterator[DlqEntry]:
    for rec in records:
        entry = to_entry(rec)
        if flt.matches(entry):
            yield entry


def render_entry(e: DlqEntry) -> str:
    """One line per dead letter: never the value (it may be a post's text)."""
    d = e.letter
    at = e.failed_at
    when = at.isoformat(timespec="seconds").replace("+00:00", "Z") if at else "?"
    src = f"{d.source.topic or '?'}[{d.source.partition}]@{d.source.offset}" if d.source.topic else "unknown source"
    key = d.key.decode("utf-8", "replace") if d.key is not None else "-"
    key = "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in key)[:80]
    replayed = (d.headers.get(REPLAY_OF) or b"").decode("utf-8", "replace")
    note = f" (a replay of {replayed})" if replayed else ""
    return (f"{e.ref}  {when}  {d.error or '?'}  from {src}  key {key}  {len(d.value)} B: "
            f"{d.reason or '(no reason header)'}{note}")


def replay_headers(e: DlqEntry, replayed_at: str | None = None) -> list[tuple[str, bytes]]:
    """The original record's own headers, then the replay headers (flagstream.* of the DLQ dropped)."""
    own = [(k, v) for k, v in e.letter.headers.items() if not k.startswith(HEADER_PREFIX)]
    return own + [(REPLAY_OF, e.ref.encode()), (REPLAYED_AT, (replayed_at or now_iso()).encode())]


def already_replayed(consumer: KafkaConsumer, posts_topic: str, since: datetime | None,
                     timeout_s: float = 10.0) -> set[str]:
    """``flagstream.replay.of`` values present on the posts topic (from ``since`` on when the broker
    can look offsets up by time, else from the beginning)."""
    from flagstream.streaming.ops.review import caught_up

    parts = consumer.partitions_for_topic(posts_topic) or set()
    if not parts:
        return set()
    tps = [TopicPartition(posts_topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    if since is not None:
        try:
            found = consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        except Exception:  # noqa: BLE001 - not every broker answers this; reading from the start is correct too
            found = {}
        for tp, ot in (found or {}).items():
            if ot is not None and ot.offset >= 0:
                consumer.seek(tp, ot.offset)
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while True:
        batch = consumer.poll(timeout_ms=300)
        for recs in batch.values():
            for rec in recs:
                for k, v in rec.headers or []:
                    if k == REPLAY_OF and v is not None:
                        seen.add(bytes(v).decode("utf-8", "replace"))
        if not batch and (caught_up(consumer, tps) or time.monotonic() > deadline):
            return seen
        if batch:
            deadline = time.monotonic() + timeout_s


@dataclass
class ReplayResult:
    replayed: list[DlqEntry] = field(default_factory=list)
    skipped_done: list[DlqEntry] = field(default_factory=list)  # already replayed earlier
    skipped_cut: list[tuple[DlqEntry, str]] = field(default_factory=list)  # bytes not original


def replay(producer: KafkaProducer | None, topic: str, entries: Iterable[DlqEntry], done: set[str],
           force: bool = False, timeout_s: float = 60.0) -> ReplayResult:
    """Publish each entry's original key/value/headers to ``topic`` (``producer`` None = dry run)."""
    result = ReplayResult()
    futures = []
    for e in entries:
        cut = e.not_original
        if cut:
            result.skipped_cut.append((e, cut))
            continue
        if e.ref in done and not force:
            result.skipped_done.append(e)
            continue
        if producer is not None:
            futures.append(producer.send(topic, key=e.letter.key, value=e.letter.value, headers=replay_headers(e)))
        result.replayed.append(e)
    if producer is not None:
        producer.flush(timeout=timeout_s)
        for f in futures:
            f.get(timeout=timeout_s)
    return result


__all__ = ["DlqEntry", "DlqFilter", "ReplayResult", "REPLAY_OF", "REPLAYED_AT", "already_replayed", "parse_time",
           "render_entry", "replay", "replay_headers", "select", "to_entry"]
