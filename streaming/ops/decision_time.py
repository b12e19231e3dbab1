"""Time to decision: flagged-to-decided seconds per decided post, as a Prometheus histogram and an SLA count.

The review record carries ``flagged_at`` (and the post's Kafka timestamp under ``source``); a decision carries
``decided_at``. The review console feeds every decision it reads here (its own and other reviewers'), so its
``/api/stats`` and ``/metrics`` show how long flagged posts wait and how many waited past ``decision_sla_s``
(the TCO Regulation's one hour for removal orders is the usual target).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

# Minutes to days: a review queue is not a stream.
BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14_400, 43_200, 86_400, 259_200, 604_800)


def seconds_between(start: Any, end: Any) -> float | None:
    """``end - start`` in seconds for two ISO-8601 strings; None when either is missing or malformed."""
    try:
        a = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        b = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except ValueError:
        return None
    if (a.tzinfo is None) != (b.tzinfo is None):
        return None
    return max(0.0, (b - a).total_seconds())


class DecisionTimes:
    """Flagged-to-decided histogram and the count past the SLA, in their own registry."""

    def __init__(self, sla_s: float, registry: CollectorRegistry | None = None) -> None:
        self.sla_s = float(sla_s)
        self.registry = registry or CollectorRegistry()
        self.histogram = Histogram("flagstream_time_to_decision_seconds",
                                   "Review record flagged_at to the decision's decided_at, per decided post",
                                   buckets=BUCKETS, registry=self.registry)
        self.over_sla = Counter("flagstream_decisions_over_sla", "Decided posts that waited longer than decision_sla_s",
                                registry=self.registry)
        self._lock = threading.Lock()
        self.count, self.over, self.total_s, self.max_s = 0, 0, 0.0, 0.0

    def observe(self, review: Mapping[str, Any], decided_at: str) -> float | None:
        """Record one decided post; returns its wait (None when the review record has no usable ``flagged_at``)."""
        wait = seconds_between(review.get("flagged_at"), decided_at)
        if wait is None:
            return None
        self.histogram.observe(wait)
        with self._lock:
            self.count += 1
            self.total_s += wait
            self.max_s = max(self.max_s, wait)
            if wait > self.sla_s:
                self.over += 1
                self.over_sla.inc()
        return wait

    def as_dict(self) -> dict[str, Any]:
        """The console's stats block."""
        with self._lock:
            return {"posts": self.count, "sla_s": self.sla_s, "over_sla": self.over,
                    "mean_s": round(self.total_s / self.count, 1) if self.count else None,
                    "max_s": round(self.max_s, 1) if self.count else None}


__all__ = ["BUCKETS", "DecisionTimes", "seconds_between"]
