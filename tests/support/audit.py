"""Accounting of every post a test sent: scored, reviewed if flagged, or dead-lettered; duplicates bounded.

:func:`audit` reads the scores, review and dead-letter topics from the beginning. :class:`Audit` says
which ids are missing, which flagged verdicts have no review record (and which review records have no
flagged verdict), and how many extra deliveries there were; :meth:`Audit.check` asserts all of that
against the bounds the README states, so a fault test fails when a guarantee does not hold instead of
printing a number.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from flagstream.contract.dead_letters import read_dead_letter
from support.kafka import read_all
from support.process import StreamProcess, assert_running
from support.producer import PacedProducer


@dataclass
class Audit:
    sent: int
    scored_ids: collections.Counter = field(default_factory=collections.Counter)
    dlq_ids: collections.Counter = field(default_factory=collections.Counter)
    review_ids: collections.Counter = field(default_factory=collections.Counter)
    flagged_ids: set[str] = field(default_factory=set)  # ids with a flagged verdict on the scores topic
    missing: set[str] = field(default_factory=set)

    @property
    def accounted(self) -> int:
        return self.sent - len(self.missing)

    @property
    def duplicates(self) -> int:
        """Extra deliveries: an id scored/dead-lettered N times counts N-1."""
        both = self.scored_ids + self.dlq_ids
        return sum(c - 1 for c in both.values() if c > 1)

    @property
    def max_times_scored(self) -> int:
        return max(self.scored_ids.values(), default=0)

    @property
    def unreviewed(self) -> set[str]:
        """Flagged verdicts without a review record."""
        return self.flagged_ids - set(self.review_ids)

    @property
    def unexplained_reviews(self) -> set[str]:
        """Review records without a flagged verdict."""
        return set(self.review_ids) - self.flagged_ids

    def line(self, fault: str) -> str:
        return (f"FAULT-RESULT fault={fault} sent={self.sent} accounted={self.accounted} "
                f"missing={len(self.missing)} duplicates={self.duplicates} max_times_scored={self.max_times_scored} "
                f"dead_lettered={len(self.dlq_ids)} flagged={len(self.flagged_ids)} reviewed={len(self.review_ids)}")

    def check(self, fault: str, max_duplicates: int, max_times: int | None = 2, **extra: Any) -> str:
        """Report, then assert: nothing missing, every flagged verdict reviewed, duplicates within bounds."""
        line = report(self, fault, max_duplicates=max_duplicates, **extra)
        assert not self.missing, f"{line}; lost ids e.g. {sorted(self.missing)[:10]}"
        assert not self.unreviewed, f"{line}; flagged without a review record: {sorted(self.unreviewed)[:10]}"
        assert not self.unexplained_reviews, f"{line}; review records without a flagged verdict: " \
                                             f"{sorted(self.unexplained_reviews)[:10]}"
        assert self.flagged_ids, f"{line}; nothing was flagged, so the review audit proved nothing"
        assert self.duplicates <= max_duplicates, f"{line}; more duplicates than the stated bound"
        if max_times is not None:
            assert self.max_times_scored <= max_times, f"{line}; a post was scored more than {max_times} times"
        return line


def _post_id(rec: Any) -> str:
    try:
        return str(json.loads(rec.value)["id"])
    except (ValueError, KeyError, TypeError):
        return (rec.key or b"").decode("utf-8", "replace")


def audit(bootstrap: str, topics: Any, sent_ids: Iterable[str], read_committed: bool = False) -> Audit:
    """Read scores, review and dead-letter topics of ``topics`` (a TopicSet) and account for ``sent_ids``."""
    sent = set(sent_ids)
    result = Audit(sent=len(sent))
    for rec in read_all(bootstrap, topics.scores, read_committed=read_committed):
        pid = _post_id(rec)
        result.scored_ids[pid] += 1
        if json.loads(rec.value).get("labels"):
            result.flagged_ids.add(pid)
    for rec in read_all(bootstrap, topics.review, read_committed=read_committed):
        result.review_ids[_post_id(rec)] += 1
    for rec in read_all(bootstrap, topics.dlq, read_committed=read_committed):
        result.dlq_ids[(rec.key or b"").decode("utf-8", "replace")] += 1
    result.missing = sent - set(result.scored_ids) - set(result.dlq_ids)
    return result


def report(result: Audit, fault: str, **extra: Any) -> str:
    """The FAULT-RESULT line (printed, and appended to $FAULT_REPORT_FILE) that docs/faults.md quotes."""
    line = result.line(fault) + "".join(f" {k}={v}" for k, v in extra.items())
    print("\n" + line, flush=True)
    out = os.environ.get("FAULT_REPORT_FILE")
    if out:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return line


# --------------------------------------------------------------------------------------------
# for in-process and small tests: by input coordinates
# --------------------------------------------------------------------------------------------
def source_offsets(scores: list[Any], dlq: list[Any]) -> set[tuple[int, int]]:
    out = set()
    for r in scores:
        src = json.loads(r.value)["source"]
        out.add((src["partition"], src["offset"]))
    for r in dlq:
        d = read_dead_letter(r.key, r.value, r.headers)
        out.add((d.source.partition, d.source.offset))
    return out


def duplicate_counts(scores: list[Any]) -> collections.Counter:
    """How many times each post id got a verdict (1 = no duplicate)."""
    return collections.Counter(_post_id(r) for r in scores)


def wait_accounted(topics: Any, expected_ids: set[str] | None = None, expected_offsets: int | None = None,
                   timeout_s: float = 60.0) -> tuple[list[Any], list[Any]]:
    """Wait until every expected post id is in scores/DLQ, or every input offset is; returns (scores, dlq)."""
    deadline = time.monotonic() + timeout_s
    while True:
        scores = read_all(topics.bootstrap, topics.scores, timeout_s=max(5.0, deadline - time.monotonic()))
        dlq = read_all(topics.bootstrap, topics.dlq, timeout_s=max(5.0, deadline - time.monotonic()))
        done, missing = True, 0
        if expected_ids is not None:
            ids = {r.key.decode() for r in scores} | {r.key.decode() for r in dlq if r.key}
            done &= expected_ids <= ids
            missing = len(expected_ids - ids)
        if expected_offsets is not None:
            offs = source_offsets(scores, dlq)
            done &= len(offs) >= expected_offsets
            missing = expected_offsets - len(offs)
        if done:
            return scores, dlq
        if time.monotonic() > deadline:
            raise AssertionError(f"{missing} input(s) not accounted for in {topics.scores}/{topics.dlq} "
                                 f"after {timeout_s:g}s")
        time.sleep(0.5)


# --------------------------------------------------------------------------------------------
# for fault tests: a live view of the output topics
# --------------------------------------------------------------------------------------------
class Collector(threading.Thread):
    """Continuously reads the scores and dead-letter topics; counts ids as they arrive."""

    def __init__(self, bootstrap: str, topics: Any) -> None:
        super().__init__(daemon=True, name="collector")
        self.bootstrap, self.topics = bootstrap, topics
        self.scored: collections.Counter = collections.Counter()
        self.dead: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        try:
            consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                     auto_offset_reset="earliest", request_timeout_ms=10_000,
                                     reconnect_backoff_max_ms=1000, max_partition_fetch_bytes=16 * 1024 * 1024)
            assigned: set[str] = set()
            while not self._halt.is_set():
                missing = [t for t in (self.topics.scores, self.topics.dlq) if t not in assigned]
                if missing:
                    for t in missing:
                        if consumer.partitions_for_topic(t):
                            assigned.add(t)
                    tps = [TopicPartition(t, p) for t in assigned for p in consumer.partitions_for_topic(t) or ()]
                    if tps and set(tps) != consumer.assignment():
                        consumer.assign(tps)
                        consumer.seek_to_beginning(*[tp for tp in tps if tp.topic in missing])
                if not assigned:
                    time.sleep(0.5)
                    continue
                for tp, recs in consumer.poll(timeout_ms=500).items():
                    with self._lock:
                        for rec in recs:
                            if tp.topic == self.topics.scores:
                                self.scored[_post_id(rec)] += 1
                            else:
                                self.dead[(rec.key or b"").decode("utf-8", "replace")] += 1
            consumer.close()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc

    def seen(self) -> set[str]:
        with self._lock:
            return set(self.scored) | set(self.dead)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def wait_until_seen(col: Collector, ids: Iterable[str], timeout_s: float, procs: Iterable[StreamProcess] = (),
                    no_progress_s: float = 60.0) -> set[str]:
    """Until every id was seen; returns the ids still missing. Fails early when a pipeline process
    crashed, and gives up after ``no_progress_s`` without a single new id (lost posts never arrive)."""
    want = set(ids)
    procs = list(procs)
    deadline = time.monotonic() + timeout_s
    last_missing, last_progress = len(want) + 1, time.monotonic()
    while True:
        assert_running(*procs)
        missing = want - col.seen()
        now = time.monotonic()
        if len(missing) < last_missing:
            last_missing, last_progress = len(missing), now
        if not missing or now > deadline or col.error is not None or now - last_progress > no_progress_s:
            return missing
        time.sleep(0.5)


def warm_up(bootstrap: str, topics: Any, collector: Collector, procs: Iterable[StreamProcess],
            timeout_s: float = 120.0, count: int = 20) -> list[str]:
    """Publish a few posts and wait until they are scored: the group has formed and is consuming.

    Faults injected before this point would only test start-up, not a running pipeline.
    """
    warm = PacedProducer(bootstrap, topics.posts, count, 1000, prefix="warm", seed=99)
    warm.start()
    sent = warm.finish(timeout_s)
    missing = wait_until_seen(collector, sent, timeout_s, procs)
    assert not missing, f"pipeline did not score the warm-up posts within {timeout_s:.0f}s"
    return sent
