"""Message contracts: the one place that says what goes in and out of every topic.

Every topic's contract is defined here once: the pipeline parses every post and builds every
review, score, dead-letter and shadow record with this module, and :func:`read_dead_letter` /
:func:`read_shadow` decode dead letters and shadow records (``flagstream demo``, ``shadow-report``). ``docs/messages.md`` describes the same contracts with JSON
examples.

posts topic (input, default ``posts``)
    Value: a UTF-8 JSON object with required ``id`` (non-empty string, at most
    :data:`MAX_ID_CHARS` characters) and ``text`` (a string with at least one non-space
    character, at most ``max_text_chars`` characters). Optional: ``lang``, ``author``, ``url``
    (string or null), ``created_at`` (string, number or null) and ``meta`` (object or null).
    Any other field is kept and passed through under ``extra``. The whole value may be at most
    ``max_message_bytes`` bytes. Standard JSON only: ``NaN``/``Infinity`` and numbers that overflow
    (``1e400``) are ``not_json``, and every record this module builds is written with
    ``allow_nan=False``. ``flagstream rescore`` judges archive rows with the same functions
    (:func:`parse_post` per JSONL line, :func:`post_from_object` per CSV/Parquet row). The key is not read (producers should key by post id, as
    ``flagstream produce`` does, so that a post's history stays in one partition).

review topic (output, default ``posts.review``): one record per *flagged* post
    Key: the post id (UTF-8). Value: UTF-8 JSON object with ``id``, ``text``, ``labels`` (the
    flagged label names, in label order), ``scores`` (label -> probability, 6 decimals),
    ``thresholds`` (label -> threshold used), ``model`` (``{"name", "version"}``), ``source``
    (``{"topic", "partition", "offset", "timestamp"}``, timestamp = the Kafka record timestamp as
    ISO-8601 UTC), ``flagged_at`` (ISO-8601 UTC), then whichever of ``lang``, ``author``,
    ``created_at``, ``url``, ``meta`` the post had, and ``extra`` (unknown post fields) if any;
    ``campaign`` (``{"id", "members"}``) and ``spans`` (label -> ``[{"start", "end", "weight"}]``)
    when enabled (``campaigns_enabled``, ``explain_spans``).
    Headers: ``content-type: application/json``, ``flagstream.schema: review.v1``.

scores topic (output, default ``posts.scores``, ``scores_enabled: false`` turns it off)
    One compact verdict per scored post, flagged or not, so that every post's fate can be audited.
    Key: the post id. Value: ``id``, ``scores``, ``labels``, ``model``, ``source``, ``scored_at``.
    Headers: ``content-type: application/json``, ``flagstream.schema: scores.v1``.

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
    except any whose name starts with ``flagstream.`` (dropped, so they can't be spoofed), with one
    exception: a well-formed ``flagstream.replay.of`` is kept as the dead letter's lineage claim, which
    ``flagstream dlq replay`` checks against its own replay markers (see streaming/dlq.py).

decisions topic (default ``posts.decisions``): one record per reviewer decision
    Key: the first covered post id. Value: ``decision_id``, ``ids`` (the post ids it covers: one post,
    or every member of a campaign), ``verdicts`` (label -> ``confirm``/``reject``/``unsure``),
    ``reviewer`` (an opaque id), ``decided_at``, ``model`` and ``thresholds`` (of the review records),
    ``reviews`` (each covered post's review-record coordinates), optional ``campaign``, ``policy``,
    ``note``. Headers: ``flagstream.schema: decision.v1``. Validated on read by :func:`parse_decision`
    (a bad record goes to the dead-letter topic with error class ``invalid_decision``).

shadow topic (output, default ``posts.shadow``; written only with ``shadow_model`` set): one record
    per post scored by both the served model and a candidate (``flagstream stream --shadow-model DIR``).
    Never read by reviewers, never carries post text. Key: the post id. Value: ``id``, ``source``,
    ``served`` and ``candidate`` (each ``{"model": {"name", "version"}, "scores", "labels",
    "thresholds"}``; the candidate's ``scores`` is null and ``error`` is ``scoring_failed`` when the
    candidate failed on the post), ``newly_flagged`` / ``newly_unflagged`` (labels the candidate flags
    and the served model does not, and the reverse), ``flag_change`` (``newly_flagged``,
    ``newly_unflagged`` or null: whether the post as a whole would reach reviewers differently),
    ``scored_at``. Headers: ``content-type: application/json``, ``flagstream.schema: shadow.v1``.
    Read back by :func:`read_shadow`.

Duplicates: the pipeline is at-least-once, so a consumer that dies between producing a batch and
committing it re-produces that batch after restart; duplicates carry the same key (post id) and the
same ``source`` coordinates, which is how a downstream reader can drop them.

Layer: part of the leaf (docs/architecture.md). ``flagstream rescore`` (in ``classifier/``) parses archive
rows with the same contract, so this module imports nothing of the project but the leaf.
Size: ~750 lines, six topic contracts (posts, review, scores, dead-letter, decisions, shadow) kept in one
module on purpose: one place per contract.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

MAX_ID_CHARS = 256
MAX_REASON_CHARS = 300
# The deepest nesting any decoded value may have (posts, review/scores records, decisions, shadow records).
# Every output nests a post's unknown fields one or two levels deeper (``extra``, ``audit``), and ``json``
# encodes recursively: without this bound a post nested ~900 deep parsed but its review record raised
# RecursionError. 64 leaves room for any real metadata and keeps every output far from the encoder's limit.
MAX_JSON_DEPTH = 64
# The most bytes a review/scores record read back may have (:func:`decode_json_record`).
MAX_RECORD_BYTES = 10_000_000
# Original headers (in total) and keys larger than this are not copied to the dead-letter topic whole,
# so a hostile record can never make its own dead-letter record unproducible.
MAX_PASSTHROUGH_BYTES = 64 * 1024
HEADER_PREFIX = "flagstream."
REVIEW_SCHEMA = "review.v1"
SCORES_SCHEMA = "scores.v1"
SHADOW_SCHEMA = "shadow.v1"

# Optional post fields with the types they may have (None = JSON null is always allowed).
OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {
    "lang": (str,),
    "author": (str,),
    "created_at": (str, int, float),
    "url": (str,),
    "meta": (dict,),
}

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


# --------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------
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
class Post:
    """A valid posts-topic record."""

    id: str
    text: str
    optional: Mapping[str, Any] = field(default_factory=dict)  # the known optional fields present
    extra: Mapping[str, Any] = field(default_factory=dict)  # unknown fields, passed through

    @property
    def lang(self) -> str | None:
        return self.optional.get("lang")

    def passthrough(self) -> dict[str, Any]:
        """The post's own fields as every output carries them: the known optional ones by name, the
        unknown ones nested under ``extra``, so no input field can pose as an output's own
        (``labels``, ``scores``, ``model``, ``error``, ...)."""
        out: dict[str, Any] = dict(self.optional)
        if self.extra:
            out["extra"] = dict(self.extra)
        return out


@dataclass(frozen=True)
class Rejection:
    """A posts-topic record that can't be scored: an error class and a one-line reason."""

    error: str
    reason: str

    def __post_init__(self) -> None:
        assert self.error in ERROR_CLASSES, self.error


class _BadJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _BadJSON(f"JSON uses {name}, which is not valid JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # e.g. 1e400: valid JSON grammar, but no JSON writer can write it back
        raise _BadJSON(f"number {literal[:40]} is too large to be a finite number")
    return value


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
            int: "number", float: "number"}.get(type(value), type(value).__name__)


def json_depth(obj: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply ``obj`` nests (a scalar is 0, ``[]`` is 1), counted without recursion.

    Stops counting past ``limit`` (returns ``limit + 1``), so a hostile value costs at most one walk.
    """
    deepest, stack = 0, [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        if depth > limit:
            return limit + 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list)))
    return deepest


def decode_json_object(value: bytes | None, *, max_message_bytes: int) -> dict[str, Any] | Rejection:
    """Bytes -> a JSON object, or the :class:`Rejection` saying why not (the first half of :func:`parse_post`).

    Only standard JSON is accepted: ``NaN``/``Infinity`` and numbers that overflow to infinity
    (``1e400``) are ``not_json``, so everything built from a post can be written back as
    standard JSON. A value nesting deeper than :data:`MAX_JSON_DEPTH` is ``not_json`` too, so every
    record built from it stays encodable. Never raises, whatever the bytes.
    """
    if not value:
        return Rejection("empty_message", "record has no value")
    if len(value) > max_message_bytes:
        return Rejection("message_too_large", f"value is {len(value)} bytes, over max_message_bytes={max_message_bytes}")
    try:
        raw = bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("not_utf8", f"invalid UTF-8 at byte {exc.start}")
    try:
        obj = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except _BadJSON as exc:
        return Rejection("not_json", str(exc))
    except json.JSONDecodeError as exc:
        return Rejection("not_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    except RecursionError:
        return Rejection("not_json", f"JSON nests over MAX_JSON_DEPTH={MAX_JSON_DEPTH} levels deep")
    except ValueError as exc:  # Python refuses integer literals over 4,300 digits (int_max_str_digits)
        if "integer string conversion" in str(exc):
            return Rejection("not_json", "an integer literal is too long (over 4300 digits)")
        return Rejection("not_json", one_line(str(exc)))
    if json_depth(obj) > MAX_JSON_DEPTH:
        return Rejection("not_json", f"JSON nests over MAX_JSON_DEPTH={MAX_JSON_DEPTH} levels deep")
    if not isinstance(obj, dict):
        return Rejection("not_object", f"value is a JSON {_type_name(obj)}, expected an object")
    return obj


def parse_post(value: bytes | None, *, max_text_chars: int, max_message_bytes: int) -> Post | Rejection:
    """Validate one posts-topic record value; never raises on any input bytes.

    Checks run cheapest first, and the reason never quotes the post's text (it goes to logs and
    headers). Returns a :class:`Post` or a :class:`Rejection`. ``flagstream rescore`` applies the
    same function to every JSONL line, so a record gets the same verdict in the stream and the archive.
    """
    obj = decode_json_object(value, max_message_bytes=max_message_bytes)
    if isinstance(obj, Rejection):
        return obj
    # Only a JSON escape ("\ud800") can smuggle in a lone surrogate: skip the costly check without one.
    return post_from_object(obj, max_text_chars=max_text_chars, check_encodable=b"\\u" in bytes(value or b""))


def post_from_object(obj: Mapping[str, Any], *, max_text_chars: int, check_encodable: bool = True) -> Post | Rejection:
    """Validate a decoded post (a JSON object, or a CSV/Parquet row mapped to one); never raises.

    ``check_encodable=False`` skips the lone-surrogate check, for callers that know none can be there.
    """
    if "id" not in obj:
        return Rejection("missing_id", "object has no 'id' field")
    pid = obj["id"]
    if not isinstance(pid, str):
        return Rejection("invalid_id", f"'id' is a {_type_name(pid)}, expected a string")
    if not pid.strip():
        return Rejection("invalid_id", "'id' is empty")
    if len(pid) > MAX_ID_CHARS:
        return Rejection("invalid_id", f"'id' is {len(pid)} characters, over {MAX_ID_CHARS}")

    if "text" not in obj:
        return Rejection("missing_text", "object has no 'text' field")
    text = obj["text"]
    if not isinstance(text, str):
        return Rejection("invalid_text", f"'text' is a {_type_name(text)}, expected a string")
    if not text.strip():
        return Rejection("invalid_text", "'text' is empty")
    if len(text) > max_text_chars:
        return Rejection("text_too_long", f"'text' is {len(text)} characters, over max_text_chars={max_text_chars}")

    optional: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, val in obj.items():
        if key in ("id", "text"):
            continue
        if key in OPTIONAL_FIELDS:
            allowed = OPTIONAL_FIELDS[key]
            if val is not None and (not isinstance(val, allowed) or isinstance(val, bool)):
                want = " or ".join(dict.fromkeys("object" if t is dict else _type_name(t()) for t in allowed))
                return Rejection("invalid_field", f"'{key}' is a {_type_name(val)}, expected {want} or null")
            if isinstance(val, float) and not math.isfinite(val):
                return Rejection("invalid_field", f"'{key}' is not a finite number")
            optional[key] = val
        else:
            extra[key] = val

    # A JSON escape like "\ud800" decodes to a lone surrogate, which no UTF-8 output can carry;
    # so can NaN/Infinity that reached a mapping some other way than parse_post.
    if check_encodable:
        try:
            _dumps(dict(obj))
        except UnicodeEncodeError:
            where = "text" if _has_surrogate(text) else ("id" if _has_surrogate(pid) else "a field")
            err = "invalid_text" if where == "text" else ("invalid_id" if where == "id" else "invalid_field")
            return Rejection(err, f"{where} holds a lone UTF-16 surrogate escape, which is not encodable")
        except (ValueError, TypeError, RecursionError):
            return Rejection("invalid_field", "a field holds a value that is not standard JSON (NaN, Infinity, ...)")
    return Post(id=pid, text=text, optional=optional, extra=extra)


def _has_surrogate(s: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in s)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutRecord:
    """Everything a producer needs: topic is chosen by the caller."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def _dumps(obj: Any) -> bytes:
    """Standard JSON only: ``allow_nan=False`` makes a non-finite number an error, never ``Infinity``."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _json_headers(schema: str) -> list[tuple[str, bytes]]:
    return [("content-type", b"application/json"), (HEADER_PREFIX + "schema", schema.encode())]


def review_record(post: Post, source: Source, scores: Mapping[str, float], labels: Sequence[str],
                  thresholds: Mapping[str, float], model: Mapping[str, str], flagged_at: str | None = None,
                  annotations: Mapping[str, Any] | None = None) -> OutRecord:
    """The review-topic record for a flagged post (see the module docstring for the contract).

    ``annotations``: the reviewer's-side fields from :mod:`streaming.annotate` (``campaign``, ``spans`` or
    ``spans_skipped``).
    """
    body: dict[str, Any] = {
        "id": post.id,
        "text": post.text,
        "labels": list(labels),
        "scores": dict(scores),
        "thresholds": {k: float(v) for k, v in thresholds.items()},
        "model": dict(model),
        "source": source.as_dict(),
        "flagged_at": flagged_at or now_iso(),
    }
    body.update(post.passthrough())
    for key in ("campaign", "spans", "spans_skipped"):
        if annotations and annotations.get(key) is not None:
            body[key] = annotations[key]
    return OutRecord(post.id.encode("utf-8"), _dumps(body), _json_headers(REVIEW_SCHEMA))


@dataclass(frozen=True)
class Verdict:
    """The model's decision on one valid post: the review and scores records are built from it."""

    post: Post
    scores: Mapping[str, float]  # label -> probability, rounded for output
    labels: tuple[str, ...]  # flagged labels, in label order (empty = not flagged)

    @property
    def flagged(self) -> bool:
        return bool(self.labels)


# Passthrough groups a review record sheds, in this order, when it would exceed max_message_bytes.
_SHEDDABLE = (("extra", "meta"), ("lang", "author", "created_at", "url"))


def bounded_review_record(verdict: Verdict, source: Source, thresholds: Mapping[str, float],
                          model: Mapping[str, str], max_bytes: int, flagged_at: str | None = None,
                          annotations: Mapping[str, Any] | None = None) -> OutRecord | None:
    """:func:`review_record`, made to fit ``max_bytes``; None when even the bare record can't.

    Passthrough fields re-encode larger than they came in (``1e15`` becomes ``1000000000000000.0``), so
    a valid post can yield a review record over the limit. Then ``extra`` and ``meta`` are dropped, then
    the other optional fields; the body's ``dropped_fields`` and the ``flagstream.dropped_fields`` header
    name what was dropped. None (nothing fits: id + text + scores alone are too large) means the caller
    dead-letters the post as ``output_too_large``.
    """
    post, dropped = verdict.post, []
    at = flagged_at or now_iso()
    for group in ((), *_SHEDDABLE):
        dropped += [name for name in group if name in post.optional or (name == "extra" and post.extra)]
        slim = Post(post.id, post.text, {k: v for k, v in post.optional.items() if k not in dropped},
                    {} if "extra" in dropped else post.extra)
        rec = review_record(slim, source, verdict.scores, verdict.labels, thresholds, model, at, annotations)
        if dropped:
            body = json.loads(rec.value)
            body["dropped_fields"] = dropped
            rec = OutRecord(rec.key, _dumps(body), rec.headers + [(HEADER_PREFIX + "dropped_fields",
                                                                    ",".join(dropped).encode())])
        if len(rec.value) <= max_bytes:
            return rec
    return None


def scores_record(post: Post, source: Source, scores: Mapping[str, float], labels: Sequence[str],
                  model: Mapping[str, str], scored_at: str | None = None) -> OutRecord:
    """The scores-topic verdict for any scored post (see the module docstring for the contract)."""
    body = {"id": post.id, "scores": dict(scores), "labels": list(labels), "model": dict(model),
            "source": source.as_dict(), "scored_at": scored_at or now_iso()}
    return OutRecord(post.id.encode("utf-8"), _dumps(body), _json_headers(SCORES_SCHEMA))


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


# --------------------------------------------------------------------------------------------
# Decisions topic (reviewer verdicts; written by ``flagstream decide`` and the review console)
# --------------------------------------------------------------------------------------------
DECISION_SCHEMA = "decision.v1"
VERDICTS = ("confirm", "reject", "unsure")
MAX_DECISION_IDS = 10_000  # a campaign decision covers its members; more than this is not a reviewer's click
MAX_NOTE_CHARS = 2_000
MAX_TAG_CHARS = 100


@dataclass(frozen=True)
class ReviewRef:
    """Where a covered post's review record sits on the review topic (so a decision can be joined back)."""

    id: str
    topic: str
    partition: int
    offset: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True)
class Decision:
    """One reviewer decision: per-label verdicts over one post or a whole campaign."""

    decision_id: str
    ids: tuple[str, ...]
    verdicts: Mapping[str, str]
    reviewer: str
    decided_at: str
    model: Mapping[str, str] | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    reviews: tuple[ReviewRef, ...] = ()
    campaign: str | None = None
    policy: str | None = None
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "decision_id": self.decision_id, "ids": list(self.ids), "verdicts": dict(self.verdicts),
            "reviewer": self.reviewer, "decided_at": self.decided_at,
            "model": dict(self.model) if self.model is not None else None,
            "thresholds": {k: float(v) for k, v in self.thresholds.items()},
            "reviews": [r.as_dict() for r in self.reviews],
        }
        for key in ("campaign", "policy", "note"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        return body


def decision_record(decision: Decision) -> OutRecord:
    """The decisions-topic record (key: the first covered post id). Validates before writing, so a
    writer can never put on the topic what a reader would dead-letter."""
    checked = parse_decision(_dumps(decision.as_dict()))
    if isinstance(checked, Rejection):
        raise ValueError(checked.reason)
    return OutRecord(decision.ids[0].encode("utf-8"), _dumps(decision.as_dict()), _json_headers(DECISION_SCHEMA))


def _opaque_str(obj: Mapping[str, Any], key: str, limit: int, required: bool) -> str | None:
    val = obj.get(key)
    if val is None and not required:
        return None
    if not isinstance(val, str) or not val.strip():
        raise _BadDecision(f"'{key}' must be a non-empty string")
    if len(val) > limit:
        raise _BadDecision(f"'{key}' is {len(val)} characters, over {limit}")
    return val


class _BadDecision(ValueError):
    pass


def parse_decision(value: bytes | None, max_message_bytes: int = 1_000_000) -> Decision | Rejection:
    """Validate one decisions-topic value; never raises on any input bytes (reasons never quote notes)."""
    obj = decode_json_object(value, max_message_bytes=max_message_bytes)
    if isinstance(obj, Rejection):
        return obj
    try:
        return _decision_from(obj)
    except _BadDecision as exc:
        return Rejection("invalid_decision", str(exc))


def _decision_from(obj: Mapping[str, Any]) -> Decision:
    decision_id = _opaque_str(obj, "decision_id", MAX_ID_CHARS, True)
    ids = obj.get("ids")
    if not isinstance(ids, list) or not ids:
        raise _BadDecision("'ids' must be a non-empty array of post ids")
    if len(ids) > MAX_DECISION_IDS:
        raise _BadDecision(f"'ids' holds {len(ids)} ids, over {MAX_DECISION_IDS}")
    for pid in ids:
        if not isinstance(pid, str) or not pid.strip() or len(pid) > MAX_ID_CHARS:
            raise _BadDecision(f"every id must be a non-empty string of at most {MAX_ID_CHARS} characters")
    verdicts = obj.get("verdicts")
    if not isinstance(verdicts, dict) or not verdicts:
        raise _BadDecision("'verdicts' must be a non-empty object label -> confirm|reject|unsure")
    for label, verdict in verdicts.items():
        if not label.strip() or len(label) > MAX_TAG_CHARS:
            raise _BadDecision("a verdict label is empty or too long")
        if verdict not in VERDICTS:
            raise _BadDecision(f"verdict for a label is {_type_name(verdict) if not isinstance(verdict, str) else 'an unknown word'}, "
                               f"expected one of {', '.join(VERDICTS)}")
    reviewer = _opaque_str(obj, "reviewer", MAX_ID_CHARS, True)
    decided_at = _opaque_str(obj, "decided_at", 64, True)
    try:
        datetime.fromisoformat(str(decided_at).replace("Z", "+00:00"))
    except ValueError:
        raise _BadDecision("'decided_at' is not an ISO-8601 timestamp") from None
    model = obj.get("model")
    if model is not None and (not isinstance(model, dict) or not all(isinstance(v, str) for v in model.values())
                              or not {"name", "version"} <= set(model)):
        raise _BadDecision("'model' must be null or {\"name\": string, \"version\": string}")
    thresholds = obj.get("thresholds") or {}
    if not isinstance(thresholds, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in thresholds.values()):
        raise _BadDecision("'thresholds' must be an object label -> number within [0, 1]")
    reviews = obj.get("reviews") or []
    if not isinstance(reviews, list):
        raise _BadDecision("'reviews' must be an array")
    refs = []
    for r in reviews:
        if not (isinstance(r, dict) and isinstance(r.get("id"), str) and isinstance(r.get("topic"), str)
                and all(isinstance(r.get(k), int) and not isinstance(r.get(k), bool) for k in ("partition", "offset"))):
            raise _BadDecision("each 'reviews' entry must be {id, topic, partition, offset}")
        refs.append(ReviewRef(r["id"], r["topic"], r["partition"], r["offset"]))
    note = obj.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_CHARS):
        raise _BadDecision(f"'note' must be a string of at most {MAX_NOTE_CHARS} characters")
    return Decision(
        decision_id=str(decision_id), ids=tuple(ids), verdicts=dict(verdicts), reviewer=str(reviewer),
        decided_at=str(decided_at), model=dict(model) if model is not None else None,
        thresholds={k: float(v) for k, v in thresholds.items()}, reviews=tuple(refs),
        campaign=_opaque_str(obj, "campaign", MAX_ID_CHARS, False), policy=_opaque_str(obj, "policy", MAX_TAG_CHARS, False),
        note=note,
    )


# --------------------------------------------------------------------------------------------
# Shadow topic (a candidate model scored beside the served one; flagstream stream --shadow-model)
# --------------------------------------------------------------------------------------------
SHADOW_FAILED = "scoring_failed"


@dataclass(frozen=True)
class ShadowSide:
    """One model's verdict on a post in a shadow record (``scores`` None: that model failed on it)."""

    model: Mapping[str, str]
    scores: Mapping[str, float] | None
    labels: tuple[str, ...]
    thresholds: Mapping[str, float]
    error: str | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.labels)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": dict(self.model), "scores": dict(self.scores) if self.scores is not None else None,
                                "labels": list(self.labels), "thresholds": {k: float(v) for k, v in self.thresholds.items()}}
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass(frozen=True)
class ShadowRecord:
    """A shadow-topic record read back (:func:`read_shadow`), or about to be written (:func:`shadow_record`)."""

    id: str
    source: Source
    served: ShadowSide
    candidate: ShadowSide
    scored_at: str | None = None

    @property
    def newly_flagged(self) -> list[str]:
        if self.candidate.error is not None:
            return []
        return [lab for lab in self.candidate.labels if lab not in self.served.labels]

    @property
    def newly_unflagged(self) -> list[str]:
        if self.candidate.error is not None:
            return []
        return [lab for lab in self.served.labels if lab not in self.candidate.labels]

    @property
    def flag_change(self) -> str | None:
        if self.candidate.error is not None or self.served.flagged == self.candidate.flagged:
            return None
        return "newly_flagged" if self.candidate.flagged else "newly_unflagged"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source.as_dict(), "served": self.served.as_dict(),
                "candidate": self.candidate.as_dict(), "newly_flagged": self.newly_flagged,
                "newly_unflagged": self.newly_unflagged, "flag_change": self.flag_change,
                "scored_at": self.scored_at or now_iso()}


def shadow_record(record: ShadowRecord) -> OutRecord:
    """The shadow-topic record (key: the post id). No post text, by contract."""
    return OutRecord(record.id.encode("utf-8"), _dumps(record.as_dict()), _json_headers(SHADOW_SCHEMA))


def _side(obj: Any, name: str) -> ShadowSide:
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise ValueError(f"'{name}' must be an object with a 'model'")
    model = obj["model"]
    if not all(isinstance(model.get(k), str) for k in ("name", "version")):
        raise ValueError(f"'{name}.model' must be {{name, version}}")
    scores, labels, thresholds = obj.get("scores"), obj.get("labels"), obj.get("thresholds") or {}
    error = obj.get("error")
    if scores is None and error is None:
        raise ValueError(f"'{name}' has neither scores nor an error")
    if scores is not None and (not isinstance(scores, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values())):
        raise ValueError(f"'{name}.scores' must be an object label -> number")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"'{name}.labels' must be an array of label names")
    if not isinstance(thresholds, dict):
        raise ValueError(f"'{name}.thresholds' must be an object")
    return ShadowSide({"name": model["name"], "version": model["version"]},
                      {k: float(v) for k, v in scores.items()} if scores is not None else None,
                      tuple(labels), {k: float(v) for k, v in thresholds.items()},
                      error if isinstance(error, str) else None)


def read_shadow(value: bytes | None) -> ShadowRecord | Rejection:
    """Validate one shadow-topic value; never raises (a bad record is a :class:`Rejection` with a reason)."""
    obj = decode_json_object(value, max_message_bytes=10_000_000)
    if isinstance(obj, Rejection):
        return obj
    pid, src = obj.get("id"), obj.get("source")
    try:
        if not isinstance(pid, str) or not pid:
            raise ValueError("'id' must be a non-empty string")
        if not isinstance(src, dict) or not isinstance(src.get("topic"), str) or not all(
                isinstance(src.get(k), int) and not isinstance(src.get(k), bool) for k in ("partition", "offset")):
            raise ValueError("'source' must be {topic, partition, offset, timestamp}")
        served, candidate = _side(obj.get("served"), "served"), _side(obj.get("candidate"), "candidate")
    except ValueError as exc:
        return Rejection("invalid_field", str(exc))
    ts = src.get("timestamp")
    ms = None
    if isinstance(ts, str):
        try:
            ms = int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            ms = None
    scored_at = obj.get("scored_at") if isinstance(obj.get("scored_at"), str) else None
    return ShadowRecord(pid, Source(src["topic"], src["partition"], src["offset"], ms), served, candidate, scored_at)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def iso_from_ms(ms: int | None) -> str | None:
    if ms is None or ms < 0:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


__all__ = [
    "ERROR_CLASSES", "OPTIONAL_FIELDS", "MAX_ID_CHARS", "MAX_JSON_DEPTH", "MAX_RECORD_BYTES", "json_depth", "Post", "Rejection", "Source", "OutRecord", "DeadLetter",
    "Verdict", "parse_post", "decode_json_object", "post_from_object", "review_record", "bounded_review_record",
    "scores_record", "dead_letter_record", "read_dead_letter", "REPLAY_OF_HEADER", "decode_json_record",
    "iso_from_ms", "now_iso", "one_line",
    "DECISION_SCHEMA", "VERDICTS", "Decision", "ReviewRef", "decision_record", "parse_decision",
    "SHADOW_SCHEMA", "SHADOW_FAILED", "ShadowSide", "ShadowRecord", "shadow_record", "read_shadow",
]
