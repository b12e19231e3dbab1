"""The stream's bank hook: what a bank match changes about one verdict (called by the router per post).

- A post matching the **positive** bank goes to review even when no label reached its threshold; its review record
  carries ``bank_match`` (entry id, similarity, the decision that created the entry). A flagged post that
  matches carries it too.
- A flagged post matching the **negative** bank is not sent to review again unless one of its flagged labels scores
  at least ``bank_negative_override``; it is counted (``flagstream_bank_matches{bank="negative",outcome="withheld"}``
  and the ``bank`` progress line). Its scores record (when enabled) is written as usual: nothing is lost.

The bank is read from the bank topic at start (the whole topic) and refreshed, without blocking, before each batch.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from flagstream.streaming.banks.index import BankMatch
from flagstream.streaming.banks.topic import BankReader, ensure_bank_topic

log = logging.getLogger(__name__)

REVIEW = "review"  # send to review (below threshold, positive match)
WITHHOLD = "withhold"  # do not send to review (negative match, not above the stricter bar)


class BankGate:
    """One stream process's view of the banks and its match counts."""

    def __init__(self, settings: Any, reader: BankReader, counter: Any = None) -> None:
        self.settings, self.reader, self.counter = settings, reader, counter
        self.counts: Counter = Counter()
        self._logged_at = time.monotonic()
        self._logged: Counter = Counter()

    @classmethod
    def from_settings(cls, settings: Any, counter: Any = None) -> BankGate | None:
        """None unless ``bank_enabled``. ``counter``: a Prometheus counter labelled (bank, outcome)."""
        if not getattr(settings, "bank_enabled", False):
            return None
        return cls(settings, BankReader(settings), counter)

    def start(self) -> None:
        """Create the topic if allowed, connect and read the whole bank (blocks until caught up)."""
        ensure_bank_topic(self.settings)
        self.reader.open().catch_up(self.settings.startup_timeout_s)
        log.info("bank loaded", extra={"entries": len(self.reader.bank), "topic": self.settings.bank_topic})

    def refresh(self) -> None:
        """Take new bank records without waiting; logs the match counts every ``progress_interval_s``."""
        if self.reader.consumer is not None:
            self.reader.refresh()
        if time.monotonic() - self._logged_at >= self.settings.progress_interval_s and self.counts != self._logged:
            log.info("bank", extra={"entries": len(self.reader.bank), **{f"{b}_{o}": n for (b, o), n in
                                                                          sorted(self.counts.items())}})
            self._logged, self._logged_at = Counter(self.counts), time.monotonic()

    def _count(self, bank: str, outcome: str) -> None:
        self.counts[(bank, outcome)] += 1
        if self.counter is not None:
            self.counter.labels(bank=bank, outcome=outcome).inc()

    def check(self, text: str, scores: dict[str, float], flagged: tuple[str, ...]) -> tuple[str | None, BankMatch | None]:
        """(action, match) for one scored post: action :data:`REVIEW`, :data:`WITHHOLD` or None (as scored)."""
        hits = self.reader.bank.match(text)
        if not hits:
            return None, None
        neg, pos = hits.get("negative"), hits.get("positive")
        if pos is not None and (neg is None or pos.similarity >= neg.similarity):
            self._count("positive", "flagged" if flagged else "sent_below_threshold")
            return (None if flagged else REVIEW), pos
        assert neg is not None
        if flagged and all(scores.get(k, 0.0) < self.settings.bank_negative_override for k in flagged):
            self._count("negative", "withheld")
            return WITHHOLD, neg
        self._count("negative", "above_override" if flagged else "unflagged")
        return None, neg

    def close(self) -> None:
        self.reader.close()


__all__ = ["REVIEW", "WITHHOLD", "BankGate"]
