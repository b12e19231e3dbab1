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
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flagstream.contract.posts import MAX_ID_CHARS, decode_json_object
from flagstream.contract.records import HEADER_PREFIX, OutRecord, Rejection, Source, now_iso, one_line

# Original headers (in total) and keys larger than this are not copied to the dead-letter topic whole,
# so a hostile record can never make its own dead-letter record unproducible.
MAX_PASSTHROUGH_BYTES = 64 * 1024
# The most bytes a review/scores record read back may have (:func:`decode_json_record`).
MAX_RECORD_BYTES = 10_000_000


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
    out_headers += _replay_lineage(headers)
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


REPLAY_OF_HEADER = HEADER_PREFIX + "replay.of"
_REPLAY_REF = re.compile(r"[A-Za-z0-9._-]{1,249}\[[0-9]{1,10}\]@[0-9]{1,19}")


def _replay_lineage(headers: Sequence[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """The one ``flagstream.*`` header of an input that a dead letter keeps: ``flagstream.replay.of``
    (which dead letter this record was replayed from), if well formed.

    It is a claim: any producer can set it. ``flagstream dlq replay`` trusts it only when a replay
    marker it wrote itself on the dead-letter topic names that dead letter with the same value hash
    (streaming/dlq.py), so a forged claim neither marks a dead letter as replayed nor lends a count.
    """
    for k, v in headers or []:
        if k == REPLAY_OF_HEADER and isinstance(v, (bytes, bytearray)):
            ref = bytes(v).decode("ascii", "replace")
            if _REPLAY_REF.fullmatch(ref):
                return [(REPLAY_OF_HEADER, ref.encode())]
    return []


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
    """Parse the ``flagstream.*`` headers of a dead-letter record; never raises, whatever the headers.

    Anyone who can write the dead-letter topic controls these headers: a number that is not one reads
    as -1 (None for the timestamp), and every text is cut to one line.
    """
    h = {str(k): bytes(v) if isinstance(v, (bytes, bytearray)) else b"" for k, v in (headers or [])}

    def get(name: str) -> str:
        return (h.get(HEADER_PREFIX + name) or b"").decode("utf-8", "replace")

    def number(name: str) -> int | None:
        raw = get(name).strip()
        return int(raw) if re.fullmatch(r"-?[0-9]{1,19}", raw) else None

    part, off = number("source.partition"), number("source.offset")
    source = Source(one_line(get("source.topic"), MAX_ID_CHARS), -1 if part is None else part,
                    -1 if off is None else off, number("source.timestamp"))
    return DeadLetter(key, value or b"", one_line(get("error"), 64), one_line(get("reason")), source, h)


def decode_json_record(value: bytes | None, max_bytes: int = MAX_RECORD_BYTES) -> dict[str, Any]:
    """Read back a review or scores value, bounded like every decoded value (size, depth, standard JSON).

    Raises:
        ValueError: the value is not a standard-JSON object within ``max_bytes`` and
            :data:`MAX_JSON_DEPTH` (the message says which, in one line).
    """
    obj = decode_json_object(value, max_message_bytes=max_bytes)
    if isinstance(obj, Rejection):
        raise ValueError(obj.reason)
    return obj
