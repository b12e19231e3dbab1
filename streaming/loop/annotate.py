"""What the routing step adds to a flagged post's review record: ``campaign`` and ``spans``.

The pipeline's one hook into the reviewer's side (see :meth:`ReviewAnnotator.annotate`): called once per
batch with the flagged posts only, so the unflagged majority costs nothing. Campaign state is rebuilt from
the review topic at start (:meth:`ReviewAnnotator.rebuild`), so a restart does not split campaigns.

Spans are paid from an :class:`ExplainBudget`: occlusion scores every word-deleted variant of a post, about 30
forward passes per flagged post. Paid for every flagged post under a backlog, that halved the stream (me5 on the
realistic mix: 40.9 posts/s with spans, 90.3 without, against a scorer alone at 90.2; bench/RESULTS.md) and made
512-post batches outlast ``max_poll_interval_ms``. So explanations spend the time the loop would otherwise wait
for posts, plus a fixed ``explain_share`` of its working time; a flagged post past the budget goes to review
with ``spans_skipped: "load"`` instead of spans, and is counted.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flagstream.classifier.inference.explain import explain
from flagstream.classifier.inference.scoring import Scorer
from flagstream.config import Settings
from flagstream.streaming.loop.campaigns import CampaignTracker, rebuild_from_topic, tracker_from_settings

log = logging.getLogger(__name__)
EXPLAIN_CACHE = 4096  # (text, labels) -> spans, least recently used dropped first
# Credit never exceeds ``explain_max_batch_s`` (explanations run before their batch's review records go out, so
# this is the most they add to a flagged post's review latency) nor this share of max_poll_interval_ms: a batch
# that outlasts the interval gets the consumer evicted, its commit refused and the batch re-read by the next owner
# (bench/e2e.py, me5, 512-post batches: 6,000 verdicts for 5,979 posts with a 10 s interval; 5,979 with 300 s).
POLL_INTERVAL_SHARE = 0.25


@dataclass
class ExplainBudget:
    """Seconds of explanation the stream can afford: its idle time plus ``share`` of its working time.

    At half load the loop waits for posts most of the time, so most flagged posts are explained; under a backlog
    (full batches) nothing counts as idle and explanations take at most ``share`` of the working time. Credit is
    capped (``cap_s``, from ``explain_max_batch_s``) so one batch adds at most that to review latency and a quiet
    spell does not buy a burst that stalls the next backlog. One post may overdraw it: a post is explained whole
    or not at all.
    """

    share: float = 0.10
    cap_s: float = 1.0
    credit_s: float = 0.0

    def earn(self, idle_s: float, busy_s: float) -> None:
        self.credit_s = min(self.cap_s, self.credit_s + max(0.0, idle_s) + self.share * max(0.0, busy_s))

    def affordable(self, cost_per_post_s: float | None, wanted: int) -> int:
        """How many of ``wanted`` posts to explain now (at least one while there is credit, to learn the cost)."""
        if self.credit_s <= 0 or wanted <= 0:
            return 0
        if not cost_per_post_s:
            return 1
        return max(1, min(wanted, int(self.credit_s / cost_per_post_s) + 1))

    def spend(self, seconds: float) -> None:
        self.credit_s -= seconds


class ReviewAnnotator:
    """Campaign ids (near-duplicate grouping) and explanation spans for flagged posts."""

    def __init__(self, scorer: Scorer, tracker: CampaignTracker | None, explain_spans: bool = True,
                 budget: ExplainBudget | None = None, clock: Callable[[], float] = time.monotonic,
                 on_outcome: Callable[[str, int], None] | None = None) -> None:
        self.scorer = scorer
        self.tracker = tracker
        self.explain_spans = explain_spans
        self.budget = budget or ExplainBudget()
        self.clock = clock
        self.on_outcome = on_outcome or (lambda outcome, n: None)  # metrics: explained / cached / skipped_load
        self.explain_seconds = 0.0  # total; :meth:`settle` takes it out of a loop turn's working time
        self._settled_s = 0.0  # explain_seconds at the last settle
        self.cost_per_post_s: float | None = None  # moving average of one post's explanation
        # Reposts repeat texts verbatim (a campaign, a redelivered batch): explain each (text, labels) once.
        self.cache: OrderedDict[tuple[str, tuple[str, ...]], Any] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings, scorer: Scorer,
                      on_outcome: Callable[[str, int], None] | None = None) -> "ReviewAnnotator":
        cap_s = min(settings.explain_max_batch_s, POLL_INTERVAL_SHARE * settings.max_poll_interval_ms / 1000.0)
        return cls(scorer, tracker_from_settings(settings) if settings.campaigns_enabled else None,
                   settings.explain_spans, ExplainBudget(share=settings.explain_share, cap_s=cap_s),
                   on_outcome=on_outcome)

    def earn(self, idle_s: float, busy_s: float) -> None:
        """After each batch: the loop's wait for posts and its working time (explanations excluded)."""
        self.budget.earn(idle_s, busy_s)

    def settle(self, waited_s: float, worked_s: float, backlog: bool) -> None:
        """Pay the budget for one turn of the loop: its wait for posts and its working time, as measured outside.

        The explanation time spent in the turn is this annotator's own, so it is taken out of ``worked_s`` here
        (the loop keeps no clock of it). A full batch (``backlog``) means the wait was fetching, not spare time,
        so it earns nothing.
        """
        explained_s = self.explain_seconds - self._settled_s
        self._settled_s = self.explain_seconds
        self.earn(idle_s=0.0 if backlog else waited_s, busy_s=worked_s - explained_s)

    def annotate_batch(self, verdicts: Iterable[tuple[Any, Any]]) -> dict[str, dict[str, Any]]:
        """The loop's annotate step: review annotations (campaign, spans) for the flagged ``(record, verdict)`` pairs."""
        labels = self.scorer.info.labels
        return self.annotate([(v.post.id, v.post.text, rec.timestamp, list(v.labels), [v.scores[k] for k in labels])
                              for rec, v in verdicts if v.flagged])

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
                self._explain(flagged, out)
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


    def _explain(self, flagged: Sequence[tuple[str, str, int | None, Sequence[str], Any]],
                 out: dict[str, dict[str, Any]]) -> None:
        todo, seen = [], set()
        for f in flagged:
            key = (f[1], tuple(f[3]))
            if key not in self.cache and key not in seen:
                seen.add(key)
                todo.append(f)
        fresh: dict[tuple[str, tuple[str, ...]], Any] = {}
        while todo:  # the first round may be one post, to learn what a post costs on this machine and model
            n = self.budget.affordable(self.cost_per_post_s, len(todo))
            if not n:
                break
            take, todo = todo[:n], todo[n:]
            t0 = self.clock()
            spans = explain(self.scorer, [f[1] for f in take], [list(f[3]) for f in take],
                            base=[f[4] for f in take] if all(f[4] is not None for f in take) else None)
            spent = max(0.0, self.clock() - t0)
            self.budget.spend(spent)
            self.explain_seconds += spent
            per_post = spent / len(take)
            self.cost_per_post_s = per_post if self.cost_per_post_s is None else 0.8 * self.cost_per_post_s + 0.2 * per_post
            fresh.update({(f[1], tuple(f[3])): sp for f, sp in zip(take, spans)})
        counts = {"explained": 0, "cached": 0, "skipped_load": 0}
        for pid, text, _ts, labels, _row in flagged:
            key = (text, tuple(labels))
            if key in fresh:
                sp, outcome = fresh[key], "explained"
            elif key in self.cache:
                sp, outcome = self.cache[key], "cached"
            else:
                out[pid]["spans_skipped"] = "load"
                counts["skipped_load"] += 1
                continue
            out[pid]["spans"] = sp
            counts[outcome] += 1
            self.cache[key] = sp
            self.cache.move_to_end(key)
        while len(self.cache) > EXPLAIN_CACHE:
            self.cache.popitem(last=False)
        for outcome, n in counts.items():
            if n:
                self.on_outcome(outcome, n)


__all__ = ["ExplainBudget", "ReviewAnnotator"]
