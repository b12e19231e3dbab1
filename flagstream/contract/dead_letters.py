"""The dead-letter topic (output): every input record that cannot be scored, and how to read it back.

dead-letter topic (output, default ``posts.dlq``): every input record that can't be scored
    Key: the original key, unchanged (may be absent). Value: the original bytes, unchanged, except
    for ``message_too_large`` records, whose value is cut to the first ``max_message_bytes`` bytes so
    the dead-letter topic never carries unbounded payloads (``flagstream.original_size`` and
    ``flagstream.original_sha256`` then describe the full original). Likewise a key over 64 KiB is cut
    (``flagstream.key_truncated`` = original length) and original headers over 64 KiB in total are
    dropped (``flagstream.headers_dropped`` = their count). Headers (UTF-8 values):
    ``flagstream.error`` (error class, one of :data:`ERROR_CLASSES`), ``flagstream.reason`` (one
    line, no post text), ``flagstream.source.topic``, ``flagstream.source.partition``,
    ``flagstream.source.offset``, ``flagstream.source.timestamp`` (epoch milliseconds),
    ``flagstream.failed_at`` (ISO-8601 UTC). The original record's own headers come first,
    except any whose name starts with ``flagstream.`` (dropped, so they can't be spoofed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flagstream.contract.records import HEADER_PREFIX, OutRecord, Rejection, Source, now_iso, one_line

# Original headers (in total) and keys larger than this are not copied to the dead-letter topic whole,
# so a hostile record can never make its own dead-letter record unproducible.
MAX_PASSTHROUGH_BYTES = 64 * 1024


def dead_letter_record(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None,
                       rejection: Rejection, source: Source, max_message_bytes: int,
                       failed_at: str | None = None) -> OutRecord:
    """The dead-letter record for a rejected input (see the module docstring for the contract)."""
    original = bytes(value) if value is not None else b""
    out_headers = [(str(k), bytes(v) if v is not None else b"") for k, v in (headers or [])
                   if not str(k).startswith(HEADER_PREFIX)]
    notes: list[tuple[str, bytes]] = []
    if sum(len(k) + len(v) for k, v in out_headers) > MAX_PASSTHROUGH_BYTES:
        notes.append((HEADER_PREFIX + "headers_dropped", str(len(out_headers)).encode()))
        out_headers = []
    if key is not None and len(key) > MAX_PASSTHROUGH_BYTES:
        notes.append((HEADER_PREFIX + "key_truncated", str(len(key)).encode()))
        key = bytes(key[:MAX_PASSTHROUGH_BYTES])
    out_headers += notes
    out_headers += [
        (HEADER_PREFIX + "error", rejection.error.encode()),
        (HEADER_PREFIX + "reason", one_line(rejection.reason).encode("utf-8")),
        (HEADER_PREFIX + "source.topic", source.topic.encode("utf-8")),
        (HEADER_PREFIX + "source.partition", str(source.partition).encode()),
        (HEADER_PREFIX + "source.offset", str(source.offset).encode()),
        (HEADER_PREFIX + "source.timestamp", str(source.timestamp_ms if source.timestamp_ms is not None else "").encode()),
        (HEADER_PREFIX + "failed_at", (failed_at or now_iso()).encode()),
    ]
    if len(original) > max_message_bytes:
        out_headers += [
            (HEADER_PREFIX + "original_size", str(len(original)).encode()),
            (HEADER_PREFIX + "original_sha256", hashlib.sha256(original).hexdigest().encode()),
        ]
        original = original[:max_message_bytes]
    return OutRecord(key, original, out_headers)


@dataclass(frozen=True)

class DeadLetter:
    """A dead-letter record read back: what :func:`read_dead_letter` returns."""

    key: bytes | None
    value: bytes
    error: str
    reason: str
    source: Source
    headers: dict[str, bytes]


def read_dead_letter(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] | None) -> DeadLetter:
    """Parse the ``flagstream.*`` headers of a dead-letter record."""
    h = {k: v for k, v in (headers or [])}

    def get(name: str) -> str:
        return (h.get(HEADER_PREFIX + name) or b"").decode("utf-8", "replace")

    ts = get("source.timestamp")
    source = Source(get("source.topic"), int(get("source.partition") or -1), int(get("source.offset") or -1),
                    int(ts) if ts.lstrip("-").isdigit() else None)
    return DeadLetter(key, value or b"", get("error"), get("reason"), source, h)


def decode_json_record(value: bytes | None) -> dict[str, Any]:
    """Read back a review or scores value (raises ValueError on anything else)."""
    obj = json.loads(value or b"")
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj
