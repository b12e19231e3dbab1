"""The review topic (output): one record per flagged post, for reviewers.

review topic (output, default ``posts.review``): one record per *flagged* post
    Key: the post id (UTF-8). Value: UTF-8 JSON object with ``id``, ``text``, ``labels`` (the
    flagged label names, in label order), ``scores`` (label -> probability, 6 decimals),
    ``thresholds`` (label -> threshold used), ``model`` (``{"name", "version"}``), ``source``
    (``{"topic", "partition", "offset", "timestamp"}``, timestamp = the Kafka record timestamp as
    ISO-8601 UTC), ``flagged_at`` (ISO-8601 UTC), then whichever of ``lang``, ``author``,
    ``created_at``, ``url``, ``meta`` the post had, and ``extra`` (unknown post fields) if any;
    ``campaign`` (``{"id", "members"}``) and ``spans`` (label -> ``[{"start", "end", "weight"}]``)
    when enabled (``campaigns_enabled``, ``explain_spans``); ``bank_match`` (``{"bank", "entry_id", "similarity",
    "match", "labels", "signal_type", "decision"}``) when the post matched a known-content bank (``bank_enabled``,
    docs/banks.md): a positive match may arrive with ``labels`` empty (sent below threshold).
    Headers: ``content-type: application/json``, ``flagstream.schema: review.v1``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flagstream.contract.posts import Post
from flagstream.contract.records import HEADER_PREFIX, OutRecord, Source, dumps, json_headers, now_iso

REVIEW_SCHEMA = "review.v1"


def review_record(post: Post, source: Source, scores: Mapping[str, float], labels: Sequence[str],
                  thresholds: Mapping[str, float], model: Mapping[str, str], flagged_at: str | None = None,
                  annotations: Mapping[str, Any] | None = None) -> OutRecord:
    """The review-topic record for a flagged post (see the module docstring for the contract).

    ``annotations``: the reviewer's-side fields from :mod:`flagstream.streaming.loop.annotate` (``campaign``, ``spans`` or
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
    for key in ("campaign", "spans", "spans_skipped", "bank_match"):
        if annotations and annotations.get(key) is not None:
            body[key] = annotations[key]
    return OutRecord(post.id.encode("utf-8"), dumps(body), json_headers(REVIEW_SCHEMA))


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
            rec = OutRecord(rec.key, dumps(body), rec.headers + [(HEADER_PREFIX + "dropped_fields",
                                                                    ",".join(dropped).encode())])
        if len(rec.value) <= max_bytes:
            return rec
    return None
