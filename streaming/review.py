"""Human-readable rendering of review-topic records (``flagstream review``, the demo).

Post text is shown as data, never as terminal instructions: control characters, ANSI escapes and
bidirectional overrides (which can make a line read differently from what it holds) are replaced by
visible ``\\u....`` escapes, and long texts are cut.
"""

from __future__ import annotations

import json
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


def render_review(msg: Mapping[str, Any], width: int = 280) -> str:
    """Three or four lines describing one flagged post."""
    scores = msg.get("scores") or {}
    thresholds = msg.get("thresholds") or {}
    labels = list(msg.get("labels") or [])
    parts = []
    for label, p in scores.items():
        t = thresholds.get(label)
        mark = "FLAGGED " if label in labels else ""
        parts.append(f"{mark}{label} {float(p):.2f}" + (f" (threshold {float(t):.2f})" if t is not None else ""))
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
        "  “" + safe_text(str(msg.get("text", "")), width) + "”",
    ]
    return "\n".join(lines)


def iter_topic(consumer: KafkaConsumer, topic: str, follow: bool = False, max_records: int | None = None,
               timeout_s: float = 10.0, poll_ms: int = 300) -> Iterator[Any]:
    """Records of ``topic`` from the beginning, by manual assignment (joins no group).

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
    seen = 0
    while True:
        batch = consumer.poll(timeout_ms=poll_ms)
        for tp_records in batch.values():
            for rec in tp_records:
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


__all__ = ["safe_text", "render_review", "iter_topic", "caught_up", "decode"]
