"""The shadow topic (output): a candidate model scored beside the served one.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flagstream.contract.posts import decode_json_object
from flagstream.contract.records import OutRecord, Rejection, Source, dumps, json_headers, now_iso

SHADOW_SCHEMA = "shadow.v1"

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
    return OutRecord(record.id.encode("utf-8"), dumps(record.as_dict()), json_headers(SHADOW_SCHEMA))


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
