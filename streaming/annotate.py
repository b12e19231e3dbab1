"""What the routing step adds to a flagged post's review record: ``campaign`` and ``spans``.

The pipeline's one hook into the reviewer's side (see :meth:`ReviewAnnotator.annotate`): called once per
batch with the flagged posts only, so the unflagged majority costs nothing. Campaign state is rebuilt from
the review topic at start (:meth:`ReviewAnnotator.rebuild`), so a restart does not split campaigns.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from flagstream.classifier.explain import explain
from flagstream.classifier.scoring import Scorer
from flagstream.config import Settings
from flagstream.streaming.campaigns import CampaignTracker, rebuild_from_topic, tracker_from_settings

log = logging.getLogger(__name__)
EXPLAIN_CACHE = 4096  # (text, labels) -> spans, least recently used dropped first


class ReviewAnnotator:
    """Campaign ids (near-duplicate grouping) and explanation spans for flagged posts."""

    def __init__(self, scorer: Scorer, tracker: CampaignTracker | None, explain_spans: bool = True) -> None:
        self.scorer = scorer
        self.tracker = tracker
        self.explain_spans = explain_spans
        # Reposts repeat texts verbatim (a campaign, a redelivered batch): explain each (text, labels) once.
        self.cache: OrderedDict[tuple[str, tuple[str, ...]], Any] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings, scorer: Scorer) -> "ReviewAnnotator":
        return cls(scorer, tracker_from_settings(settings) if settings.campaigns_enabled else None,
                   settings.explain_spans)

    def rebuild(self, settings: Settings, consumer: Any) -> None:
        """Replay the review topic into the campaign index (before the first batch)."""
        if self.tracker is None:
            return
        t0 = time.monotonic()
        n = rebuild_from_topic(self.tracker, consumer, settings.review_topic, int(time.time() * 1000))
        log.info("campaign index rebuilt", extra={"posts": n, "seconds": round(time.monotonic() - t0, 2)})

    def annotate(self, flagged: Sequence[tuple[str, str, int | None, Sequence[str], Any]]) -> dict[str, dict[str, Any]]:
        """``(post_id, text, record_timestamp_ms, labels, score_row)`` per flagged post -> extra review fields."""
        out: dict[str, dict[str, Any]] = {pid: {} for pid, *_ in flagged}
        if not flagged:
            return out
        if self.explain_spans:
            try:
                todo = [f for f in flagged if (f[1], tuple(f[3])) not in self.cache]
                fresh: dict[tuple[str, tuple[str, ...]], Any] = {}
                if todo:
                    spans = explain(self.scorer, [f[1] for f in todo], [list(f[3]) for f in todo],
                                    base=[f[4] for f in todo] if all(f[4] is not None for f in todo) else None)
                    fresh = {(f[1], tuple(f[3])): sp for f, sp in zip(todo, spans)}
                for pid, text, _ts, labels, _row in flagged:
                    key = (text, tuple(labels))
                    sp = fresh.get(key) or self.cache.get(key)
                    out[pid]["spans"] = sp
                    self.cache[key] = sp
                    self.cache.move_to_end(key)
                while len(self.cache) > EXPLAIN_CACHE:
                    self.cache.popitem(last=False)
            except Exception:  # noqa: BLE001 - an explanation is an aid; the flag itself must still go out
                log.warning("explanation failed; review records go out without spans", exc_info=True)
        if self.tracker is not None:
            now_ms = int(time.time() * 1000)
            try:
                for pid, text, ts, _labels, _row in flagged:
                    out[pid]["campaign"] = self.tracker.assign(pid, text, ts if ts is not None and ts >= 0 else now_ms)
            except Exception:  # noqa: BLE001 - grouping is an aid; the flag itself must still go out
                log.warning("campaign grouping failed; review records go out without campaign", exc_info=True)
        return out


__all__ = ["ReviewAnnotator"]
