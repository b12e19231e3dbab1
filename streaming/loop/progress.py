"""The periodic INFO progress line of ``flagstream stream``: is it scoring, how fast, how far behind.

At INFO the pipeline otherwise logs only lifecycle events, so an on-call engineer reading the log of
a healthy, busy pipeline would see nothing for hours. Every ``progress_interval_s`` (default 30 s;
0 turns it off) one line says how many posts were consumed and scored since the last line, at what
rate, how many label flags were raised (per label: a post flagged for both counts once under each) and
how many records dead-lettered, and the consumer lag (records behind the
high-watermark, summed over the assigned partitions). Counts only: never a post's text or author.

An idle pipeline with no lag logs nothing, so a quiet topic does not fill the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("flagstream.streaming.loop.pipeline")


class _Stats(Protocol):
    consumed: int
    scored: int
    flagged: Any  # Counter[label]
    dead_lettered: Any  # Counter[reason]


class ProgressLog:
    """Call :meth:`maybe_log` as often as you like; it writes at most one line per interval."""

    def __init__(self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._since: float | None = None  # the first call starts the clock (not construction: model load)
        self._last: tuple[int, int, int, int] = (0, 0, 0, 0)
        self._last_by_label: dict[str, int] = {}

    def maybe_log(self, stats: _Stats, lag: int | None) -> dict[str, Any] | None:
        """Log (and return) the progress fields if an interval has passed and there is news."""
        if self.interval_s <= 0:
            return None
        now = self._clock()
        if self._since is None:
            self._since = now
            return None
        elapsed = now - self._since
        if elapsed < self.interval_s:
            return None
        totals = (stats.consumed, stats.scored, sum(stats.flagged.values()), sum(stats.dead_lettered.values()))
        consumed, scored, flagged, dead = (a - b for a, b in zip(totals, self._last))
        by_label = {lab: n - self._last_by_label.get(lab, 0) for lab, n in sorted(stats.flagged.items())}
        self._since, self._last, self._last_by_label = now, totals, dict(stats.flagged)
        if not consumed and not lag:
            return None
        fields = {"interval_s": round(elapsed, 1), "consumed": consumed, "scored": scored,
                  "posts_per_s": round(consumed / elapsed, 1) if elapsed > 0 else None,
                  "flagged": flagged, "flagged_by_label": {k: v for k, v in by_label.items() if v},
                  "dead_lettered": dead, "lag": lag, "total_consumed": totals[0]}
        labels = ", ".join(f"{k} {v}" for k, v in fields["flagged_by_label"].items()) or "none"
        log.info(f"progress: {fields['posts_per_s']} posts/s, lag {lag if lag is not None else '?'}, "
                 f"flagged {labels}, {dead} dead-lettered in the last {fields['interval_s']:g}s", extra=fields)
        return fields


__all__ = ["ProgressLog"]
