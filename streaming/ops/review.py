"""Human-readable rendering of review-topic records (``flagstream review``, the demo).

Post text is shown as data, never as terminal instructions: control characters, ANSI escapes and
bidirectional overrides (which can make a line read differently from what it holds) are replaced by
visible ``\\u....`` escapes. The reviewer sees the *whole* post, wrapped, with its own line breaks
kept (a cut post can hide the sentence that made it flagged). Scores are printed with as many
decimals as it takes for the printed score and threshold to compare the way the real ones do: 0.949
against a threshold of 0.95 never reads as "0.95 (threshold 0.95)".
"""

from __future__ import annotations

import json
import textwrap
import time
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition

_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)}


def safe_text(text: str, limit: int = 280) -> str:
    """One line, printable, bidi-neutralised, at most ``limit`` characters (+ an ellipsis)."""
    out = []
    for ch in text:
        if ch in "\n\r\t":
            out.append(" ")
        elif ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    flat = " ".join("".join(out).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _escape(ch: str) -> str:
    if ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
        return f"\\u{ord(ch):04x}"
    return ch


def wrap_text(text: str, width: int = 100, indent: str = "  ") -> list[str]:
    """The full text as printable lines of at most ``width`` columns: its own line breaks kept
    (runs of blank lines collapsed to one), control/bidi characters escaped, nothing cut."""
    lines: list[str] = []
    blank = False
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        para = "".join(" " if ch == "\t" else _escape(ch) for ch in raw).rstrip()
        if not para.strip():
            if lines and not blank:
                lines.append(indent.rstrip())
            blank = True
            continue
        blank = False
        lines += textwrap.wrap(para, width=max(20, width - len(indent)), initial_indent=indent,
                               subsequent_indent=indent, break_long_words=True, break_on_hyphens=False,
                               drop_whitespace=True) or [indent]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def format_pair(score: float, threshold: float | None) -> tuple[str, str | None]:
    """Score and threshold as strings whose order is the real order.

    Two decimals when that is faithful; more (up to six, then the full repr) when rounding would make
    a score below its threshold print as equal to or above it, a score above it print below, or two
    different numbers print the same.
    """
    if threshold is None:
        return f"{score:.2f}", None
    for d in range(2, 7):
        fs, ft = f"{score:.{d}f}", f"{threshold:.{d}f}"
        if (float(fs) >= float(ft)) == (score >= threshold) and (fs != ft or score == threshold):
            return fs, ft
    return repr(score), repr(threshold)


def render_review(msg: Mapping[str, Any], width: int = 100) -> str:
    """A header, the scores, the provenance, then the full post text wrapped to ``width`` columns."""
    scores = msg.get("scores") or {}
    thresholds = msg.get("thresholds") or {}
    labels = list(msg.get("labels") or [])
    parts = []
    for label, p in scores.items():
        t = thresholds.get(label)
        fs, ft = format_pair(float(p), float(t) if t is not None else None)
        mark = "FLAGGED " if label in labels else ""
        parts.append(f"{mark}{label} {fs}" + (f" (threshold {ft})" if ft is not None else ""))
    model = msg.get("model") or {}
    src = msg.get("source") or {}
    meta = [f"model {model.get('name', '?')}@{model.get('version', '?')}",
            f"from {src.get('topic', '?')}[{src.get('partition', '?')}]@{src.get('offset', '?')}"]
    for key in ("lang", "created_at", "url"):
        if msg.get(key) not in (None, ""):
            meta.append(f"{key} {safe_text(str(msg[key]), 80)}")
    lines = [
        f"■ post {safe_text(str(msg.get('id', '?')), 80)}  flagged at {msg.get('flagged_at', '?')}: "
        f"{', '.join(labels) or '-'}",
        "  " + " · ".join(parts),
        "  " + " · ".join(meta),
        *wrap_text(str(msg.get("text", "")), width),
    ]
    return "\n".join(lines)


def record_kind(rec: Any) -> str:
    """``review``, ``dead_letter`` (it carries the dead-letter headers) or ``other``."""
    if any(k == "flagstream.error" for k, _ in (rec.headers or [])):
        return "dead_letter"
    msg = decode(rec.value)
    if msg is None or not isinstance(msg.get("scores"), dict) or not isinstance(msg.get("labels"), list):
        return "other"
    return "review"


def render_record(rec: Any, width: int = 100) -> str:
    """Any record a reader may find on a review topic: a review record, a dead letter (someone
    pointed ``--review-topic`` at the dead-letter topic), or something else, said plainly."""
    kind = record_kind(rec)
    if kind == "dead_letter":
        from flagstream.contract.dead_letters import read_dead_letter

        d = read_dead_letter(rec.key, rec.value, rec.headers)
        src = f"{d.source.topic}[{d.source.partition}]@{d.source.offset}" if d.source.topic else "unknown source"
        return (f"■ dead letter at {rec.topic}[{rec.partition}]@{rec.offset}: {d.error or '?'}: "
                f"{d.reason or '(no reason header)'} (from {src}; this is a dead-letter topic, "
                "'flagstream dlq' lists and replays its records)")
    if kind == "other":
        return (f"■ not a review record at {rec.topic}[{rec.partition}]@{rec.offset} "
                f"({len(rec.value or b'')} bytes; is --review-topic right?)")
    return render_review(decode(rec.value) or {}, width)


class ReaderPosition:
    """Where a named reader (``review --group NAME``) stopped: offsets committed to Kafka under that
    group id, by a consumer that never joins the group (manual assignment, so no rebalance wait)."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer
        self.next: dict[TopicPartition, int] = {}

    def done(self, rec: Any) -> None:
        self.next[TopicPartition(rec.topic, rec.partition)] = rec.offset + 1

    def commit(self) -> None:
        if self.next:
            from kafka.structs import OffsetAndMetadata

            self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in self.next.items()})


def iter_topic(consumer: KafkaConsumer, topic: str, follow: bool = False, max_records: int | None = None,
               timeout_s: float = 10.0, poll_ms: int = 300, start: str = "beginning") -> Iterator[Any]:
    """Records of ``topic`` by manual assignment (joins no group).

    ``start``: ``beginning``; ``end`` (only records produced from now on); or ``committed`` (the
    consumer's group's committed offsets, the beginning where none is committed).

    Without ``follow`` it stops once every partition's position has reached the high-watermark that
    fetch responses report (``consumer.highwater``; the ListOffsets answer of some brokers, the
    embedded Tansu among them, is not reliable for this); with ``follow`` it keeps waiting for new
    records until the caller stops iterating.
    """
    deadline = time.monotonic() + timeout_s
    parts = None
    while not parts:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            if time.monotonic() > deadline:
                from flagstream.errors import UserError

                raise UserError(f"topic {topic} does not exist (yet); nothing to show")
            time.sleep(0.2)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    cut: dict[TopicPartition, int] = {}
    if start == "end":
        # seek_to_end trusts ListOffsets, which some brokers (the embedded Tansu) under-report; the
        # high-watermark of the first fetch responses is the real end, and records below it are skipped.
        consumer.seek_to_end(*tps)
        prime_until = time.monotonic() + timeout_s
        while len(cut) < len(tps) and time.monotonic() < prime_until:
            early = consumer.poll(timeout_ms=poll_ms)
            for tp in tps:
                hw = consumer.highwater(tp)
                if hw is not None and tp not in cut:
                    cut[tp] = hw
            for tp_records in early.values():
                for rec in tp_records:
                    if rec.offset >= cut.get(TopicPartition(rec.topic, rec.partition), 0):
                        consumer.seek(TopicPartition(rec.topic, rec.partition), rec.offset)  # re-read it below
                        break
    elif start == "committed":
        for tp in tps:
            committed = consumer.committed(tp)
            if committed is not None:
                consumer.seek(tp, committed)
    seen = 0
    while True:
        batch = consumer.poll(timeout_ms=poll_ms)
        for tp_records in batch.values():
            for rec in tp_records:
                if cut and rec.offset < cut.get(TopicPartition(rec.topic, rec.partition), 0):
                    continue
                yield rec
                seen += 1
                if max_records is not None and seen >= max_records:
                    return
        if not follow and not batch and caught_up(consumer, tps):
            return


def caught_up(consumer: KafkaConsumer, tps: list[TopicPartition]) -> bool:
    """True when every partition's position has reached its fetch high-watermark."""
    for tp in tps:
        hw = consumer.highwater(tp)
        if hw is None or consumer.position(tp) < hw:
            return False
    return True


def decode(value: bytes | None) -> dict[str, Any] | None:
    try:
        obj = json.loads(value or b"")
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


__all__ = ["safe_text", "wrap_text", "format_pair", "render_review", "render_record", "record_kind", "ReaderPosition", "iter_topic", "caught_up", "decode"]
