"""The scores topic (output): one compact verdict per scored post.

scores topic (output, default ``posts.scores``, ``scores_enabled: false`` turns it off)
    One compact verdict per scored post, flagged or not, so that every post's fate can be audited.
    Key: the post id. Value: ``id``, ``scores``, ``labels``, ``model``, ``source``, ``scored_at``.
    Headers: ``content-type: application/json``, ``flagstream.schema: scores.v1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flagstream.contract.posts import Post
from flagstream.contract.records import OutRecord, Source, dumps, json_headers, now_iso

SCORES_SCHEMA = "scores.v1"


def scores_record(post: Post, source: Source, scores: Mapping[str, float], labels: Sequence[str],
                  model: Mapping[str, str], scored_at: str | None = None) -> OutRecord:
    """The scores-topic verdict for any scored post (see the module docstring for the contract)."""
    body = {"id": post.id, "scores": dict(scores), "labels": list(labels), "model": dict(model),
            "source": source.as_dict(), "scored_at": scored_at or now_iso()}
    return OutRecord(post.id.encode("utf-8"), dumps(body), json_headers(SCORES_SCHEMA))
