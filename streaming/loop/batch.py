"""Parse and score: the two pure steps of the loop, and the breaker that guards the second.

- :func:`parse_batch` validates every record with :func:`flagstream.contract.posts.parse_post` (one contract for
  the stream and the archive) into a :class:`Batch` of posts and rejections.
- :func:`score_batch` makes one ``scorer.score`` call for the batch's posts; if it raises, posts are
  scored one by one and only those that still fail become ``scoring_failed`` rejections. Each scored
  post becomes a typed :class:`flagstream.contract.review.Verdict`.
- :class:`FailureBreaker`: one post the model can't score is dead-lettered alone, but a model that fails
  on most posts is broken, not the posts. Over a window of recent posts, when more than
  ``max_failure_rate`` failed the breaker opens: the pipeline commits nothing, reports not ready, logs
  one line, and retries the same batch with backoff until the model scores again.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flagstream.classifier.inference.scoring import Scorer, flagged_labels, score_isolating_failures, scores_dict
from flagstream.contract.posts import Post, parse_post
from flagstream.contract.records import Rejection
from flagstream.contract.review import Verdict

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One micro-batch between poll and checkpoint."""

    records: list[Any]  # ConsumerRecord, in poll order
    started: float  # time.monotonic() at parse
    posts: list[tuple[Any, Post]] = field(default_factory=list)  # valid, not yet scored
    verdicts: list[tuple[Any, Verdict]] = field(default_factory=list)
    rejected: list[tuple[Any, Rejection]] = field(default_factory=list)
    scoring_failures: int = 0
    bare: set[int] = field(default_factory=set)  # id() of records whose dead-letter record goes without its value
    shadow: dict[int, Any] = field(default_factory=dict)  # id(record) -> the candidate's ShadowSide (flagstream.streaming.loop.shadow)
    shadow_refused: int = 0  # shadow records the broker refused for good (dropped; the post is unaffected)

    def reject(self, records: set[int], rejection: Rejection) -> None:
        """Turn the verdicts of the records with these ``id()`` s into rejections (output_too_large)."""
        keep = []
        for rec, verdict in self.verdicts:
            if id(rec) in records:
                self.rejected.append((rec, rejection))
            else:
                keep.append((rec, verdict))
        self.verdicts = keep


def parse_batch(records: list[Any], *, max_text_chars: int, max_message_bytes: int) -> Batch:
    batch = Batch(records, time.monotonic())
    for rec in records:
        res = parse_post(rec.value, max_text_chars=max_text_chars, max_message_bytes=max_message_bytes)
        if isinstance(res, Post):
            batch.posts.append((rec, res))
        else:
            batch.rejected.append((rec, res))
    return batch


def score_rows(scorer: Scorer, texts: list[str], warn: Callable[..., None]) -> list[np.ndarray | None]:
    """One ``scorer.score`` call; on error, post by post. None = this post failed (or was not finite)."""
    def on_batch_error(exc: Exception) -> None:
        warn("score", "batch scoring failed; scoring posts one by one", error=f"{type(exc).__name__}: {exc}",
             batch=len(texts))

    return score_isolating_failures(scorer, texts, on_batch_error)


def score_batch(batch: Batch, scorer: Scorer, warn: Callable[..., None]) -> None:
    """Fill ``batch.verdicts`` (and ``scoring_failed`` rejections) from its posts."""
    info = scorer.info
    rows = score_rows(scorer, [post.text for _, post in batch.posts], warn)
    batch.verdicts, batch.scoring_failures = [], 0
    for (rec, post), row in zip(batch.posts, rows):
        if row is None:
            batch.scoring_failures += 1
            batch.rejected.append((rec, Rejection("scoring_failed", "the model raised an error on this text")))
        else:
            batch.verdicts.append((rec, Verdict(post, scores_dict(row, info), tuple(flagged_labels(row, info)))))


class FailureBreaker:
    """Opens when the model failed on more than ``max_failure_rate`` of the last ``window`` posts.

    Needs ``min_posts`` outcomes before it can open, so a single bad post (or a few) is dead-lettered
    alone. While open, a retried batch closes it again only if that batch scores below the rate.
    """

    def __init__(self, window: int = 200, min_posts: int = 10, max_failure_rate: float = 0.5) -> None:
        self.window, self.min_posts, self.max_failure_rate = window, min_posts, max_failure_rate
        self._outcomes: deque[bool] = deque(maxlen=window)  # True = failed
        self.open = False
        self.trips = 0

    def allow(self, scored: int, failed: int) -> bool:
        """Record a batch's outcomes; False = do not route or commit it (breaker open)."""
        total = scored + failed
        if total == 0:  # nothing was scored (only malformed records): no evidence either way
            return True
        if self.open:
            if failed / total <= self.max_failure_rate:
                self.open = False
                self._outcomes.clear()
                self._outcomes.extend([True] * failed + [False] * scored)
                log.warning("scoring breaker closed: the model scores again", extra={"scored": scored,
                                                                                    "failed": failed})
                return True
            return False
        self._outcomes.extend([True] * failed + [False] * scored)
        n, bad = len(self._outcomes), sum(self._outcomes)
        if failed and n >= self.min_posts and bad / n > self.max_failure_rate:
            self.open = True
            self.trips += 1
            log.error("scoring breaker open: the model failed on %d of the last %d posts; committing nothing, "
                      "retrying the batch with backoff", bad, n, extra={"failed": bad, "window": n})
            return False
        return True


__all__ = ["Batch", "FailureBreaker", "parse_batch", "score_batch", "score_rows"]
