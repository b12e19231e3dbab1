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

Lineage, idempotence and the replay limit (issue 29): after publishing a dead letter, replay writes a
*replay marker* to the dead-letter topic itself (``flagstream.marker: replay``, ``flagstream.replay.of``
= the dead letter, ``flagstream.replay.origin`` = the first dead letter of its lineage,
``flagstream.replay.count``, ``flagstream.replay.sha256`` of its value). Only flagstream writes the
dead-letter topic (docs/operations.md, Kafka ACLs), so these records are the trusted history:

- "already replayed" = a marker names the dead letter (``--force`` replays it again); a
  ``flagstream.replay.of`` header a producer puts on a post marks nothing;
- a replayed post that fails again is dead-lettered by the stream with that post's
  ``flagstream.replay.of`` kept (a claim). The claim counts only when a marker names that dead letter
  with the same value hash: the new dead letter then inherits the marker's origin and count;
- replay refuses a dead letter whose lineage was replayed ``--max-replays`` times already
  (default :data:`DEFAULT_MAX_REPLAYS`), so a post that keeps failing stops after that many rounds.

Markers are not dead letters: listing and replay skip them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kafka import KafkaProducer

from flagstream.contract.dead_letters import REPLAY_OF_HEADER, DeadLetter, read_dead_letter
from flagstream.contract.records import HEADER_PREFIX, now_iso

REPLAY_OF = REPLAY_OF_HEADER
REPLAYED_AT = HEADER_PREFIX + "replayed_at"
REPLAY_ORIGIN = HEADER_PREFIX + "replay.origin"
REPLAY_COUNT = HEADER_PREFIX + "replay.count"
REPLAY_SHA256 = HEADER_PREFIX + "replay.sha256"
MARKER = HEADER_PREFIX + "marker"
DEFAULT_MAX_REPLAYS = 3


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


def is_marker(rec: Any) -> bool:
    """A replay marker (written by :func:`replay`), not a dead letter."""
    return any(k == MARKER for k, _ in rec.headers or [])


@dataclass(frozen=True)
class Marker:
    """One replay marker read back: dead letter ``of`` was replayed, ``count`` replays into its lineage."""

    of: str
    origin: str
    count: int
    sha256: str


def read_marker(rec: Any) -> Marker | None:
    """A marker record's fields, or None when it is not a well-formed marker (then it counts for nothing)."""
    h = {k: bytes(v) if isinstance(v, (bytes, bytearray)) else b"" for k, v in rec.headers or []}
    count = h.get(REPLAY_COUNT, b"").decode("ascii", "replace")
    of = h.get(REPLAY_OF, b"").decode("utf-8", "replace")
    if not of or not count.isdigit() or len(count) > 6:
        return None
    return Marker(of, h.get(REPLAY_ORIGIN, b"").decode("utf-8", "replace") or of, int(count),
                  h.get(REPLAY_SHA256, b"").decode("ascii", "replace"))


@dataclass
class History:
    """The replay markers on a dead-letter topic: dead-letter ref -> its latest marker."""

    markers: dict[str, Marker] = field(default_factory=dict)

    def add(self, rec: Any) -> None:
        m = read_marker(rec)
        if m is not None and m.count >= self.markers.get(m.of, m).count:
            self.markers[m.of] = m

    def replayed(self, e: DlqEntry) -> bool:
        return e.ref in self.markers

    def lineage(self, e: DlqEntry) -> tuple[str, int]:
        """(origin ref, replays so far) of a dead letter. Its ``flagstream.replay.of`` claim counts only when
        a marker names that dead letter with the same value hash (so a producer cannot forge lineage)."""
        claim = (e.letter.headers.get(REPLAY_OF) or b"").decode("utf-8", "replace")
        m = self.markers.get(claim) if claim else None
        if m is not None and m.sha256 == value_sha256(e.letter.value):
            return m.origin, m.count
        return e.ref, 0


def value_sha256(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def select(records: Iterable[Any], flt: DlqFilter, history: History | None = None) -> Iterator[DlqEntry]:
    """The dead letters matching ``flt``; markers go into ``history`` (if given), never out as entries."""
    for rec in records:
        if is_marker(rec):
            if history is not None:
                history.add(rec)
            continue
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


def replay_headers(e: DlqEntry, origin: str, count: int, replayed_at: str | None = None) -> list[tuple[str, bytes]]:
    """The original record's own headers, then the replay headers (flagstream.* of the DLQ dropped)."""
    own = [(k, v) for k, v in e.letter.headers.items() if not k.startswith(HEADER_PREFIX)]
    return own + [(REPLAY_OF, e.ref.encode()), (REPLAY_ORIGIN, origin.encode()), (REPLAY_COUNT, str(count).encode()),
                  (REPLAYED_AT, (replayed_at or now_iso()).encode())]


def marker_headers(e: DlqEntry, origin: str, count: int, replayed_at: str) -> list[tuple[str, bytes]]:
    """The headers of the replay marker :func:`replay` writes to the dead-letter topic for ``e``."""
    return [(MARKER, b"replay"), (REPLAY_OF, e.ref.encode()), (REPLAY_ORIGIN, origin.encode()),
            (REPLAY_COUNT, str(count).encode()), (REPLAY_SHA256, value_sha256(e.letter.value).encode()),
            (REPLAYED_AT, replayed_at.encode())]


@dataclass
class ReplayResult:
    replayed: list[DlqEntry] = field(default_factory=list)
    skipped_done: list[DlqEntry] = field(default_factory=list)  # already replayed earlier
    skipped_cut: list[tuple[DlqEntry, str]] = field(default_factory=list)  # bytes not original
    skipped_limit: list[tuple[DlqEntry, str, int]] = field(default_factory=list)  # (entry, origin, replays so far)


def replay(producer: KafkaProducer | None, topic: str, entries: Iterable[DlqEntry], history: History,
           dlq_topic: str, force: bool = False, max_replays: int = DEFAULT_MAX_REPLAYS,
           timeout_s: float = 60.0) -> ReplayResult:
    """Publish each entry's original key/value/headers to ``topic``, and a replay marker to ``dlq_topic``
    (``producer`` None = dry run).

    Raises:
        kafka.errors.KafkaError: a record was not acknowledged within ``timeout_s`` (the command says so
            in one line; markers already acknowledged stand, so a rerun skips what went out).
    """
    result = ReplayResult()
    futures = []
    for e in entries:
        cut = e.not_original
        if cut:
            result.skipped_cut.append((e, cut))
            continue
        if history.replayed(e) and not force:
            result.skipped_done.append(e)
            continue
        origin, count = history.lineage(e)
        if count >= max_replays:
            result.skipped_limit.append((e, origin, count))
            continue
        if producer is not None:
            at = now_iso()
            futures.append(producer.send(topic, key=e.letter.key, value=e.letter.value,
                                         headers=replay_headers(e, origin, count + 1, at)))
            futures.append(producer.send(dlq_topic, key=None, value=b"",
                                         headers=marker_headers(e, origin, count + 1, at)))
        result.replayed.append(e)
    if producer is not None:
        producer.flush(timeout=timeout_s)
        for f in futures:
            f.get(timeout=timeout_s)
    return result


__all__ = ["DEFAULT_MAX_REPLAYS", "DlqEntry", "DlqFilter", "History", "MARKER", "Marker", "ReplayResult",
           "REPLAY_COUNT", "REPLAY_OF", "REPLAY_ORIGIN", "REPLAY_SHA256", "REPLAYED_AT", "is_marker",
           "marker_headers", "parse_time", "read_marker", "render_entry", "replay", "replay_headers", "select",
           "to_entry", "value_sha256"]
