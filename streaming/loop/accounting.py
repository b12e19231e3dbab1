"""Books of one pipeline: running totals (:class:`PipelineStats`), metrics per batch, consumer lag.

Kept out of :mod:`flagstream.streaming.loop.pipeline` so the loop there reads as its five steps; everything here only
counts, it never decides.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from flagstream.streaming.loop.batching import Batcher
from flagstream.streaming.loop.metrics import PipelineMetrics
from flagstream.streaming.loop.shadow import shadow_counts
from flagstream.streaming.loop.batch import Batch

log = logging.getLogger(__name__)


@dataclass
class PipelineStats:
    """Running totals, for the closing log line, the demo and the tests."""

    consumed: int = 0
    scored: int = 0
    flagged: Counter = field(default_factory=Counter)
    dead_lettered: Counter = field(default_factory=Counter)
    batches: int = 0
    commits: int = 0
    checkpoint_failures: Counter = field(default_factory=Counter)
    dropped_on_rebalance: int = 0  # buffered records of revoked partitions, left to their next owner
    rewound_on_rebalance: int = 0  # partitions sought back to dropped records when assigned back
    breaker_trips: int = 0
    breaker_holds: int = 0  # batches not committed because the breaker was open
    shadow_scored: int = 0  # shadow mode: candidate verdicts routed to the shadow topic
    shadow_failures: Counter = field(default_factory=Counter)  # reason -> count
    shadow_changes: Counter = field(default_factory=Counter)  # "label:newly_flagged" -> count

    def as_dict(self) -> dict[str, Any]:
        return {"consumed": self.consumed, "scored": self.scored, "flagged": dict(self.flagged),
                "dead_lettered": dict(self.dead_lettered), "batches": self.batches, "commits": self.commits,
                "checkpoint_failures": dict(self.checkpoint_failures),
                "dropped_on_rebalance": self.dropped_on_rebalance, "rewound_on_rebalance": self.rewound_on_rebalance,
                "breaker_trips": self.breaker_trips, "breaker_holds": self.breaker_holds,
                **({"shadow_scored": self.shadow_scored, "shadow_failures": dict(self.shadow_failures),
                    "shadow_changes": dict(self.shadow_changes)} if self.shadow_scored or self.shadow_failures else {})}


class Books:
    """Updates :class:`PipelineStats` and :class:`PipelineMetrics` together."""

    def __init__(self, stats: PipelineStats, metrics: PipelineMetrics) -> None:
        self.stats, self.metrics = stats, metrics

    def batch_done(self, batch: Batch, batcher: Batcher, committed: bool) -> None:
        m, st = self.metrics, self.stats
        done = time.time()
        batcher.processed(batch.records)
        flagged: Counter = Counter(label for _, v in batch.verdicts for label in v.labels)
        st.batches += 1
        st.consumed += len(batch.records)
        st.scored += len(batch.verdicts)
        st.flagged.update(flagged)
        m.consumed.inc(len(batch.records))
        m.scored.inc(len(batch.verdicts))
        m.batch_size.observe(len(batch.records))
        for label, n in flagged.items():
            m.flagged.labels(label=label).inc(n)
        reasons = Counter(rej.error for _, rej in batch.rejected)
        st.dead_lettered.update(reasons)
        for reason, n in reasons.items():
            m.dead_lettered.labels(reason=reason).inc(n)
        if batch.shadow or batch.shadow_refused:
            self._shadow(batch)
        for rec, _ in batch.verdicts:
            if rec.timestamp and rec.timestamp > 0:
                m.e2e_latency.observe(max(0.0, done - rec.timestamp / 1000))
        elapsed = time.monotonic() - batch.started
        m.batch_latency.observe(elapsed)
        log.debug("batch", extra={"records": len(batch.records), "scored": len(batch.verdicts),
                                  "flagged": dict(flagged), "dead_lettered": dict(reasons),
                                  "ms": round(elapsed * 1000, 1), "committed": committed})

    def _shadow(self, batch: Batch) -> None:
        scored, failures, changes = shadow_counts(batch)
        self.stats.shadow_scored += scored
        self.metrics.shadow_scored.inc(scored)
        for reason, n in failures.items():
            self.stats.shadow_failures[reason] += n
            self.metrics.shadow_failures.labels(reason=reason).inc(n)
        for (label, change), n in changes.items():
            self.stats.shadow_changes[f"{label}:{change}"] += n
            self.metrics.shadow_changes.labels(label=label, change=change).inc(n)

    def sync_rebalance(self, b: Batcher) -> None:
        """Copy the batcher's rebalance counters (its metrics are updated in the listener itself)."""
        self.stats.dropped_on_rebalance, self.stats.rewound_on_rebalance = b.dropped, b.rewound

    def update_lag(self, consumer: Any, batcher: Batcher) -> int | None:
        """Refresh the lag gauges; returns the total lag of the assigned partitions (None if unknown)."""
        lags: dict[tuple[str, int], int] = {}
        try:
            for tp in consumer.assignment():
                hw = consumer.highwater(tp)
                if hw is None:
                    continue
                pos = batcher.positions.get(tp)
                if pos is None:
                    try:
                        pos = consumer.position(tp, timeout_ms=100)
                    except Exception:  # noqa: BLE001 - not yet known; try again next tick
                        pos = None
                    if pos is not None:  # nothing buffered for tp here: its position is the next to process
                        batcher.positions.setdefault(tp, pos)
                if pos is not None:
                    lags[(tp.topic, tp.partition)] = max(0, hw - pos)
        except Exception as exc:  # noqa: BLE001 - metrics must never stop the loop
            log.debug("lag update failed", extra={"error": str(exc)})
            return None
        self.metrics.set_lag(lags)
        return sum(lags.values())



__all__ = ["Books", "PipelineStats"]
