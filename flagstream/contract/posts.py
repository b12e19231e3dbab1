"""The posts topic (input): what a post is and how a record that is not one is refused.

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
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flagstream.contract.records import Rejection, dumps, one_line

MAX_ID_CHARS = 256
# The deepest nesting any decoded value may have (posts, review/scores records, decisions, shadow records).
# Every output nests a post's unknown fields one or two levels deeper (``extra``, ``audit``), and ``json``
# encodes recursively: without this bound a post nested ~900 deep parsed but its review record raised
# RecursionError. 64 leaves room for any real metadata and keeps every output far from the encoder's limit.
MAX_JSON_DEPTH = 64

# Optional post fields with the types they may have (None = JSON null is always allowed).
OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {
    "lang": (str,),
    "author": (str,),
    "created_at": (str, int, float),
    "url": (str,),
    "meta": (dict,),
}


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


class _BadJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _BadJSON(f"JSON uses {name}, which is not valid JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # e.g. 1e400: valid JSON grammar, but no JSON writer can write it back
        raise _BadJSON(f"number {literal[:40]} is too large to be a finite number")
    return value


def type_name(value: Any) -> str:
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
        return Rejection("not_object", f"value is a JSON {type_name(obj)}, expected an object")
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
        return Rejection("invalid_id", f"'id' is a {type_name(pid)}, expected a string")
    if not pid.strip():
        return Rejection("invalid_id", "'id' is empty")
    if len(pid) > MAX_ID_CHARS:
        return Rejection("invalid_id", f"'id' is {len(pid)} characters, over {MAX_ID_CHARS}")

    if "text" not in obj:
        return Rejection("missing_text", "object has no 'text' field")
    text = obj["text"]
    if not isinstance(text, str):
        return Rejection("invalid_text", f"'text' is a {type_name(text)}, expected a string")
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
                want = " or ".join(dict.fromkeys("object" if t is dict else type_name(t()) for t in allowed))
                return Rejection("invalid_field", f"'{key}' is a {type_name(val)}, expected {want} or null")
            if isinstance(val, float) and not math.isfinite(val):
                return Rejection("invalid_field", f"'{key}' is not a finite number")
            optional[key] = val
        else:
            extra[key] = val

    # A JSON escape like "\ud800" decodes to a lone surrogate, which no UTF-8 output can carry;
    # so can NaN/Infinity that reached a mapping some other way than parse_post.
    if check_encodable:
        try:
            dumps(dict(obj))
        except UnicodeEncodeError:
            where = "text" if _has_surrogate(text) else ("id" if _has_surrogate(pid) else "a field")
            err = "invalid_text" if where == "text" else ("invalid_id" if where == "id" else "invalid_field")
            return Rejection(err, f"{where} holds a lone UTF-16 surrogate escape, which is not encodable")
        except (ValueError, TypeError, RecursionError):
            return Rejection("invalid_field", "a field holds a value that is not standard JSON (NaN, Infinity, ...)")
    return Post(id=pid, text=text, optional=optional, extra=extra)


def _has_surrogate(s: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in s)
