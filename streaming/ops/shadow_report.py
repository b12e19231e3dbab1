"""What a candidate model would change, read from the shadow topic (``flagstream shadow-report``).

:func:`summarize` is pure: shadow records in (:class:`flagstream.contract.shadow.ShadowRecord`), per (served,
candidate) model pair a table out. Per label, per feed (the source topic) and over all feeds: how many
posts both models flag, how many only the candidate flags (newly flagged), only the served model
(newly unflagged), neither, and the flag rates of both; then the same at post level (flagged for any
label, i.e. whether the post would reach reviewers at all). Candidate failures are counted apart and
left out of the rates. Records are counted once per (pair, source coordinates): the stream is
at-least-once, and a redelivered batch writes its shadow records again with the same coordinates.

Examples name post ids, coordinates and scores only; post text is not on the shadow topic at all, so
:func:`fetch_texts` reads it back from the posts topic at the example's coordinates, and only when the
reader asks (``--show-text``).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from flagstream.contract.posts import parse_post
from flagstream.contract.records import Rejection
from flagstream.contract.shadow import ShadowRecord, read_shadow

ANY = "(any label)"
ALL_FEEDS = "(all feeds)"


@dataclass
class Cell:
    """Counts of one (label, feed) cell."""

    both: int = 0
    newly_flagged: int = 0
    newly_unflagged: int = 0
    neither: int = 0

    @property
    def posts(self) -> int:
        return self.both + self.newly_flagged + self.newly_unflagged + self.neither

    @property
    def served_rate(self) -> float:
        return (self.both + self.newly_unflagged) / self.posts if self.posts else 0.0

    @property
    def candidate_rate(self) -> float:
        return (self.both + self.newly_flagged) / self.posts if self.posts else 0.0

    def add(self, served: bool, candidate: bool) -> None:
        if served and candidate:
            self.both += 1
        elif candidate:
            self.newly_flagged += 1
        elif served:
            self.newly_unflagged += 1
        else:
            self.neither += 1

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "posts": self.posts, "served_flag_rate": round(self.served_rate, 6),
                "candidate_flag_rate": round(self.candidate_rate, 6),
                "flag_rate_change": round(self.candidate_rate - self.served_rate, 6)}


@dataclass
class PairReport:
    """One (served, candidate) model pair."""

    served: str
    candidate: str
    posts: int = 0
    candidate_errors: int = 0
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)  # label -> feed -> cell (incl. totals)
    examples: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)  # label -> change -> list

    def cell(self, label: str, feed: str) -> Cell:
        return self.cells.setdefault(label, {}).setdefault(feed, Cell())

    def as_dict(self) -> dict[str, Any]:
        return {"served": self.served, "candidate": self.candidate, "posts": self.posts,
                "candidate_errors": self.candidate_errors,
                "labels": {lab: {feed: c.as_dict() for feed, c in feeds.items()} for lab, feeds in self.cells.items()},
                "examples": self.examples}


@dataclass
class Report:
    records: int = 0  # shadow records read in the window
    duplicates: int = 0  # redelivered records (same pair and coordinates), counted once
    invalid: int = 0  # records that are not shadow records
    pairs: list[PairReport] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "duplicates": self.duplicates, "invalid": self.invalid,
                "pairs": [p.as_dict() for p in self.pairs]}


def _ref(model: Any) -> str:
    return f"{model.get('name', '?')}@{model.get('version', '?')}"


# Redelivered shadow records (a restart replays a batch) sit close together on the topic: remembering the most
# recent this many record keys catches them in bounded memory; duplicates further apart are counted twice.
MAX_SEEN = 200_000


def summarize(records: Iterable[ShadowRecord | Rejection], examples: int = 3, max_seen: int = MAX_SEEN) -> Report:
    """The comparison tables; ``examples`` = how many newly flagged / unflagged posts to keep per label;
    ``max_seen`` bounds the duplicate detector (the most recent keys, oldest forgotten first)."""
    report = Report()
    pairs: dict[tuple[str, str], PairReport] = {}
    seen: OrderedDict[tuple[str, str, str, int, int], None] = OrderedDict()
    for r in records:
        report.records += 1
        if isinstance(r, Rejection):
            report.invalid += 1
            continue
        pair = (_ref(r.served.model), _ref(r.candidate.model))
        key = (*pair, r.source.topic, r.source.partition, r.source.offset)
        if key in seen:
            report.duplicates += 1
            continue
        seen[key] = None
        if len(seen) > max_seen:
            seen.popitem(last=False)
        pr = pairs.get(pair)
        if pr is None:
            pr = pairs[pair] = PairReport(*pair)
        pr.posts += 1
        if r.candidate.error is not None:
            pr.candidate_errors += 1
            continue
        feed = r.source.topic
        labels = list(r.served.scores or {}) or list(r.served.thresholds)
        for label in labels:
            s, c = label in r.served.labels, label in r.candidate.labels
            pr.cell(label, feed).add(s, c)
            pr.cell(label, ALL_FEEDS).add(s, c)
            if s != c:
                change = "newly_flagged" if c else "newly_unflagged"
                shown = pr.examples.setdefault(label, {}).setdefault(change, [])
                if len(shown) < examples:
                    shown.append({"id": r.id, "feed": feed, "partition": r.source.partition,
                                  "offset": r.source.offset,
                                  "served_score": (r.served.scores or {}).get(label),
                                  "served_threshold": r.served.thresholds.get(label),
                                  "candidate_score": (r.candidate.scores or {}).get(label),
                                  "candidate_threshold": r.candidate.thresholds.get(label)})
        pr.cell(ANY, feed).add(r.served.flagged, r.candidate.flagged)
        pr.cell(ANY, ALL_FEEDS).add(r.served.flagged, r.candidate.flagged)
    report.pairs = list(pairs.values())
    return report


def read_window(records: Iterable[Any], since: datetime | None = None,
                max_records: int | None = None) -> Iterator[ShadowRecord | Rejection]:
    """Shadow-topic consumer records -> parsed records, those written at or after ``since`` (the Kafka
    record timestamp), at most ``max_records`` of them."""
    since_ms = int(since.timestamp() * 1000) if since is not None else None
    n = 0
    for rec in records:
        if since_ms is not None and (rec.timestamp is None or rec.timestamp < since_ms):
            continue
        yield read_shadow(rec.value)
        n += 1
        if max_records is not None and n >= max_records:
            return


def fetch_texts(consumer: Any, refs: Iterable[tuple[str, int, int]], timeout_s: float = 10.0,
                max_text_chars: int = 10_000_000) -> dict[tuple[str, int, int], str | None]:
    """Post text at each (topic, partition, offset) of the posts topic; None where it is gone (retention)."""
    from kafka import TopicPartition

    out: dict[tuple[str, int, int], str | None] = {}
    for topic, partition, offset in refs:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        out[(topic, partition, offset)] = None
        while time.monotonic() < deadline:
            got = consumer.poll(timeout_ms=300).get(tp, [])
            hit = next((r for r in got if r.offset == offset), None)
            if hit is not None:
                post = parse_post(hit.value, max_text_chars=max_text_chars, max_message_bytes=len(hit.value or b"") + 1)
                out[(topic, partition, offset)] = getattr(post, "text", None)
                break
            if got and got[0].offset > offset:
                break  # deleted by retention
    return out


__all__ = ["MAX_SEEN", "ANY", "ALL_FEEDS", "Cell", "PairReport", "Report", "summarize", "read_window", "fetch_texts"]
