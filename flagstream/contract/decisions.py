"""The decisions topic: one record per reviewer decision.

decisions topic (default ``posts.decisions``): one record per reviewer decision
    Key: the first covered post id. Value: ``decision_id``, ``ids`` (the post ids it covers: one post,
    or every member of a campaign), ``verdicts`` (label -> ``confirm``/``reject``/``unsure``),
    ``reviewer`` (an opaque id), ``decided_at``, ``model`` and ``thresholds`` (of the review records),
    ``reviews`` (each covered post's review-record coordinates), optional ``campaign``, ``policy``,
    ``note``; and (issue 33, all optional, absent in older records) ``action`` (what was done to the content, one
    of :data:`ACTIONS`), ``automated_detection`` (bool: was the post found by automated means), ``automated_decision``
    (one of :data:`AUTOMATION`), ``territorial_scope`` (ISO country codes). Headers: ``flagstream.schema: decision.v1``. Validated on read by :func:`parse_decision`
    (a bad record goes to the dead-letter topic with error class ``invalid_decision``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flagstream.contract.posts import MAX_ID_CHARS, decode_json_object, type_name
from flagstream.contract.records import OutRecord, Rejection, dumps, json_headers

DECISION_SCHEMA = "decision.v1"

VERDICTS = ("confirm", "reject", "unsure")

# One record covers at most this many post ids; a bigger campaign is decided in chunks of this size
# (flagstream.streaming.ops.decisions.build_decisions), so one forged record can never empty every console's queue.
MAX_DECISION_IDS = 500

MAX_NOTE_CHARS = 2_000

MAX_TAG_CHARS = 100

# What a decision did to the content (the DSA's decision_visibility, without its prefix); "none": no restriction.
ACTIONS = ("removed", "disabled", "demoted", "age_restricted", "interaction_restricted", "labelled", "none")
AUTOMATION = ("fully", "partially", "not_automated")  # the DSA's automated_decision, without its prefix


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
    signature: str | None = None  # hex HMAC-SHA256 over the rest (flagstream.streaming.signing); None = unsigned
    action: str | None = None
    automated_detection: bool | None = None
    automated_decision: str | None = None
    territorial_scope: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "decision_id": self.decision_id, "ids": list(self.ids), "verdicts": dict(self.verdicts),
            "reviewer": self.reviewer, "decided_at": self.decided_at,
            "model": dict(self.model) if self.model is not None else None,
            "thresholds": {k: float(v) for k, v in self.thresholds.items()},
            "reviews": [r.as_dict() for r in self.reviews],
        }
        for key in ("campaign", "policy", "note", "action", "automated_detection", "automated_decision", "signature"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        if self.territorial_scope is not None:
            body["territorial_scope"] = list(self.territorial_scope)
        return body


def decision_record(decision: Decision) -> OutRecord:
    """The decisions-topic record (key: the first covered post id). Validates before writing, so a
    writer can never put on the topic what a reader would dead-letter."""
    checked = parse_decision(dumps(decision.as_dict()))
    if isinstance(checked, Rejection):
        raise ValueError(checked.reason)
    return OutRecord(decision.ids[0].encode("utf-8"), dumps(decision.as_dict()), json_headers(DECISION_SCHEMA))


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
            raise _BadDecision(f"verdict for a label is {type_name(verdict) if not isinstance(verdict, str) else 'an unknown word'}, "
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
    signature = obj.get("signature")
    if signature is not None and not (isinstance(signature, str) and len(signature) == 64
                                      and all(c in "0123456789abcdef" for c in signature)):
        raise _BadDecision("'signature' must be null or 64 lowercase hex digits (HMAC-SHA256)")
    action, automated = obj.get("action"), obj.get("automated_decision")
    if action is not None and action not in ACTIONS:
        raise _BadDecision(f"'action' must be one of {', '.join(ACTIONS)}")
    if automated is not None and automated not in AUTOMATION:
        raise _BadDecision(f"'automated_decision' must be one of {', '.join(AUTOMATION)}")
    detection = obj.get("automated_detection")
    if detection is not None and not isinstance(detection, bool):
        raise _BadDecision("'automated_detection' must be true or false")
    scope = obj.get("territorial_scope")
    if scope is not None and (not isinstance(scope, list) or not all(
            isinstance(c, str) and len(c) == 2 and c.isupper() for c in scope)):
        raise _BadDecision("'territorial_scope' must be an array of two-letter upper-case country codes")
    return Decision(
        action=action, automated_detection=detection, automated_decision=automated,
        territorial_scope=tuple(scope) if scope is not None else None,
        decision_id=str(decision_id), ids=tuple(ids), verdicts=dict(verdicts), reviewer=str(reviewer),
        decided_at=str(decided_at), model=dict(model) if model is not None else None,
        thresholds={k: float(v) for k, v in thresholds.items()}, reviews=tuple(refs),
        campaign=_opaque_str(obj, "campaign", MAX_ID_CHARS, False), policy=_opaque_str(obj, "policy", MAX_TAG_CHARS, False),
        note=note, signature=signature,
    )
