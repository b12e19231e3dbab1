"""The archive's row contract: input rows in, output rows out, by the same post contract as the stream.

Every input row, whatever file it came from, is judged by :mod:`flagstream.contract.posts` (the module that
defines what a post is and how it is rejected; it is plain Python, no Kafka): a JSONL line is exactly
a posts-topic record value and goes through :func:`~flagstream.contract.posts.parse_post`; a CSV or Parquet
row is mapped to the same object and goes through :func:`~flagstream.contract.posts.post_from_object`. So
the same bytes get the same verdict (error class, scores, labels) in ``flagstream stream`` and
``flagstream rescore``.

:func:`rescore_block` is the pure core (rows in, output rows out, no I/O): the local runner in
:mod:`flagstream.classifier.archive.rescore` and any other engine (e.g. Spark) call it, and :data:`OUTPUT_COLUMNS` /
:func:`output_schema` are the one definition of what an output row holds.

Output row (JSON form; :func:`to_parquet_row` gives the Parquet form)::

    id       the post id (null when the row has no usable one)
    row      0-based row number in the input file (what --resume checks against)
    model    name@version of the model
    scores   label -> probability (6 decimals)        } a scored post
    labels   labels at or over their threshold         }
    error    error class (flagstream.contract.records.ERROR_CLASSES) } a rejected row
    reason   one line, never quoting the text            }
    lang, author, created_at, url, meta                  the post's known optional fields it had
    extra    the post's other fields, nested: an input field named labels, scores or error
             can never pose as the product's own
    text     only with keep_text
"""

from __future__ import annotations

import datetime as _dt
import decimal
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from flagstream.classifier.inference.scoring import Scorer, flagged_labels, score_isolating_failures, scores_dict
from flagstream.contract.posts import MAX_ID_CHARS, OPTIONAL_FIELDS, Post, decode_json_object, post_from_object
from flagstream.contract.records import Rejection, one_line

log = logging.getLogger(__name__)

# Every column an output row can have, in the order they are written.
OUTPUT_COLUMNS: tuple[str, ...] = ("id", "row", "model", "scores", "labels", "error", "reason",
                                   *OPTIONAL_FIELDS, "extra", "text")
JSON_TEXT_COLUMNS = ("meta", "extra")  # nested objects: JSON text in Parquet (one schema for any input)

Payload = Union[bytes, Mapping[str, Any], Rejection]


@dataclass(frozen=True)
class InputRow:
    """One input row: its 0-based index in the file and what it holds.

    ``payload`` is the raw bytes of a JSONL line (judged exactly like a posts-topic value), a mapping
    (a CSV or Parquet row), or a :class:`Rejection` the reader already made (e.g. an oversized line).
    """

    index: int
    payload: Payload


@dataclass(frozen=True)
class Limits:
    """The post contract's size limits (``max_text_chars``/``max_message_bytes`` of the config)."""

    max_text_chars: int = 10_000
    max_message_bytes: int = 1_000_000


@dataclass(frozen=True)
class Judged:
    """An input row after the post contract: a :class:`Post`, or a rejection and any usable id."""

    index: int
    post: Post | None
    rejection: Rejection | None = None
    salvaged_id: str | None = None

    @property
    def id(self) -> str | None:
        return self.post.id if self.post is not None else self.salvaged_id


# ------------------------------------------------------------------------------------------
# Input rows -> posts
# ------------------------------------------------------------------------------------------
class _Unrepresentable(ValueError):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.reason)
        self.rejection = rejection


def _jsonable(value: Any, column: str) -> Any:
    """A table cell as the JSON value a posts-topic record would carry (Parquet types, NaN, bytes)."""
    if value is None or isinstance(value, (str, bool, int)):
        if isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value):
            raise _Unrepresentable(Rejection("not_utf8", f"column '{one_line(column, 60)}' holds invalid UTF-8"))
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # tables write NaN for "missing": read it as null
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Unrepresentable(Rejection("not_utf8", f"column '{one_line(column, 60)}' holds invalid UTF-8 "
                                                         f"at byte {exc.start}")) from None
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, column) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, column) for v in value]
    return str(value)  # timedelta and other exotic Arrow types: their text form


def _salvage_id(obj: Mapping[str, Any]) -> str | None:
    pid = obj.get("id")
    if isinstance(pid, str) and pid.strip() and len(pid) <= MAX_ID_CHARS:
        try:
            pid.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return pid
    return None


def judge(row: InputRow, limits: Limits) -> Judged:
    """The post contract's verdict on one input row; never raises."""
    payload = row.payload
    if isinstance(payload, Rejection):
        return Judged(row.index, None, payload)
    if isinstance(payload, (bytes, bytearray, memoryview)):
        obj: Any = decode_json_object(bytes(payload), max_message_bytes=limits.max_message_bytes)
        check = b"\\u" in bytes(payload)
    else:
        try:
            obj = {str(k): _jsonable(v, str(k)) for k, v in payload.items()}
        except _Unrepresentable as exc:
            return Judged(row.index, None, exc.rejection)
        except RecursionError:
            return Judged(row.index, None, Rejection("invalid_field", "a field nests too deeply"))
        check = True
    if isinstance(obj, Rejection):
        return Judged(row.index, None, obj)
    res = post_from_object(obj, max_text_chars=limits.max_text_chars, check_encodable=check)
    if isinstance(res, Rejection):
        return Judged(row.index, None, res, _salvage_id(obj))
    return Judged(row.index, res)


# ------------------------------------------------------------------------------------------
# Scoring a block
# ------------------------------------------------------------------------------------------
def score_texts(scorer: Scorer, texts: list[str]) -> list[np.ndarray | None]:
    """One probability row per text, or None where the model failed (the stream's rule, shared)."""
    def warn(exc: Exception) -> None:
        log.warning("rescore: scoring a block of %d failed (%s); retrying one by one", len(texts), type(exc).__name__)

    return score_isolating_failures(scorer, texts, warn)


def rescore_block(rows: Sequence[InputRow], scorer: Scorer, *, limits: Limits = Limits(),
                  keep_text: bool = False) -> list[dict[str, Any]]:
    """Input rows -> output rows (JSON form, see the module docstring), in order; pure and never raises
    on row content. The scorer is called once per block (its own batching applies)."""
    judged = [judge(r, limits) for r in rows]
    good = [j for j in judged if j.post is not None]
    probs = dict(zip((j.index for j in good), score_texts(scorer, [j.post.text for j in good])))  # type: ignore[union-attr]
    info = scorer.info
    out: list[dict[str, Any]] = []
    for j in judged:
        row: dict[str, Any] = {"id": j.id, "row": j.index, "model": info.ref}
        p = probs.get(j.index) if j.post is not None else None
        if j.post is not None and p is not None:
            row["scores"] = scores_dict(p, info)
            row["labels"] = flagged_labels(p, info)
            row.update(j.post.passthrough())
            if keep_text:
                row["text"] = j.post.text
        else:
            rej = j.rejection or Rejection("scoring_failed", "the model raised an error on this text "
                                                             "or gave a non-finite score")
            row["error"] = rej.error
            row["reason"] = one_line(rej.reason)
        out.append(row)
    return out


# ------------------------------------------------------------------------------------------
# Parquet form
# ------------------------------------------------------------------------------------------
def output_schema(labels: Sequence[str], keep_text: bool = False):
    """The Arrow schema of every Parquet output row: fixed, whatever the input's columns.

    Known optional fields are strings (a numeric ``created_at`` as its JSON text); ``meta`` and
    ``extra`` are JSON text; ``scores`` is a struct with one float64 per label.
    """
    import pyarrow as pa

    types = {
        "id": pa.string(), "row": pa.int64(), "model": pa.string(),
        "scores": pa.struct([pa.field(lab, pa.float64()) for lab in labels]),
        "labels": pa.list_(pa.string()), "error": pa.string(), "reason": pa.string(), "extra": pa.string(),
        "text": pa.string(),
    }
    cols = [c for c in OUTPUT_COLUMNS if keep_text or c != "text"]
    return pa.schema([pa.field(c, types.get(c, pa.string())) for c in cols])


def to_parquet_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An output row's Parquet form: nested passthrough values as JSON text (standard JSON only)."""
    import json

    out = dict(row)
    for key in (*OPTIONAL_FIELDS, "extra"):
        value = out.get(key)
        if value is not None and not isinstance(value, str):
            out[key] = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return out


__all__ = ["OUTPUT_COLUMNS", "InputRow", "Limits", "Judged", "judge", "score_texts", "rescore_block",
           "output_schema", "to_parquet_row"]
