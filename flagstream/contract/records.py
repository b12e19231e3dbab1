"""What every topic's records share: where a record came from (:class:`Source`), why a record was refused
(:class:`Rejection`, one of :data:`ERROR_CLASSES`), the record to produce (:class:`OutRecord`) and the JSON and
time helpers every record is written with.

The contract is one module per topic in :mod:`flagstream.contract`: :mod:`~flagstream.contract.posts` (input),
:mod:`~flagstream.contract.review`, :mod:`~flagstream.contract.scores`, :mod:`~flagstream.contract.dead_letters`,
:mod:`~flagstream.contract.decisions` and :mod:`~flagstream.contract.shadow`; ``docs/messages.md`` describes the
same contracts with JSON examples.

Duplicates: the pipeline is at-least-once, so a consumer that dies between producing a batch and
committing it re-produces that batch after restart; duplicates carry the same key (post id) and the
same ``source`` coordinates, which is how a downstream reader can drop them.

Layer: part of the leaf (docs/architecture.md). The stream and the archive rescoring
(:mod:`flagstream.classifier.archive`) share the contract, so it imports nothing of the project but the leaf.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

MAX_REASON_CHARS = 300

HEADER_PREFIX = "flagstream."

# Error class -> what it means. The class is the ``flagstream.error`` header and the ``reason`` label
# of ``flagstream_posts_dead_lettered_total``; the set is closed so metrics stay low-cardinality.
ERROR_CLASSES: dict[str, str] = {
    "empty_message": "the record has no value (null or zero bytes)",
    "message_too_large": "the value is longer than max_message_bytes",
    "not_utf8": "the value is not valid UTF-8",
    "not_json": "the value is not standard JSON (or nests deeper than MAX_JSON_DEPTH, uses NaN/Infinity or a number "
                "that overflows, like 1e400)",
    "not_object": "the value is JSON but not an object",
    "missing_id": "the object has no id field",
    "invalid_id": "id is not a string, is empty, or is too long",
    "missing_text": "the object has no text field",
    "invalid_text": "text is not a string, is blank, or holds unencodable characters",
    "text_too_long": "text is longer than max_text_chars",
    "invalid_field": "an optional field (lang, author, created_at, url, meta) has the wrong type",
    "scoring_failed": "the model raised an error on this post's text",
    "output_too_large": "the post's review record cannot fit max_message_bytes, or the broker refused it for good",
    "output_unencodable": "one of the post's output records (review, scores, audit) could not be encoded as JSON",
    # decisions topic (read by the review console; see the decisions section below)
    "invalid_decision": "a decisions-topic record breaks the decision contract (docs/messages.md)",
}


@dataclass(frozen=True)

class Source:
    """Where an input record came from: enough to find it again in Kafka."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset,
                "timestamp": iso_from_ms(self.timestamp_ms)}


@dataclass(frozen=True)

class Rejection:
    """A posts-topic record that can't be scored: an error class and a one-line reason."""

    error: str
    reason: str

    def __post_init__(self) -> None:
        assert self.error in ERROR_CLASSES, self.error


@dataclass(frozen=True)

class OutRecord:
    """Everything a producer needs: topic is chosen by the caller."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def dumps(obj: Any) -> bytes:
    """Standard JSON only: ``allow_nan=False`` makes a non-finite number an error, never ``Infinity``."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def json_headers(schema: str) -> list[tuple[str, bytes]]:
    return [("content-type", b"application/json"), (HEADER_PREFIX + "schema", schema.encode())]


def iso_from_ms(ms: int | None) -> str | None:
    if ms is None or ms < 0:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
