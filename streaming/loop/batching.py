"""Poll: micro-batches from the posts topic, and what a rebalance does to records not yet processed.

:class:`Batcher` owns the records polled but not yet processed, and the consumer group's callbacks
(:class:`_Listener`). kafka-python runs the rebalance listener inside ``poll()``, on the loop's own
call stack, and the pipeline commits every batch before it polls again, so the only uncommitted work a
rebalance can find is the buffered records. The listener drops those of revoked partitions (their next
owner reads them from the committed offset: no loss, no duplicate) and, when the same partitions come
back to this member, seeks to the first dropped offset (kafka-python keeps the old fetch position,
which is past them). Both are counted (:attr:`Batcher.dropped`, :attr:`Batcher.rewound`) so tests and
dashboards can see that a rebalance really hit buffered work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from flagstream.streaming.loop.metrics import PipelineMetrics

log = logging.getLogger(__name__)


def tps_str(tps: Sequence[TopicPartition] | set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)


class Batcher:
    """Fills micro-batches of ``batch_size`` records or ``batch_wait_ms`` after the first one."""

    def __init__(self, consumer: KafkaConsumer, batch_size: int, batch_wait_ms: int,
                 stop: threading.Event, warn: Callable[..., None], metrics: PipelineMetrics | None = None,
                 auto_offset_reset: str = "earliest") -> None:
        self.consumer = consumer
        self.auto_offset_reset = auto_offset_reset
        self._reset: set[TopicPartition] = set()  # to restart from the committed offset before the next batch
        self._reset_next_assignment = False
        self.metrics = metrics or PipelineMetrics()
        self.batch_size, self.batch_wait_s = batch_size, batch_wait_ms / 1000
        self._stop, self._warn = stop, warn
        self._lock = threading.Lock()
        self._pending: list[Any] = []  # ConsumerRecord, polled and not yet processed
        self._rewind: dict[TopicPartition, int] = {}  # first dropped offset of revoked partitions
        self.positions: dict[TopicPartition, int] = {}  # next offset to process, per partition (for lag)
        self.assigned = threading.Event()  # set at the first assignment
        self.dropped = 0  # buffered records of revoked/lost partitions, left to their next owner
        self.rewound = 0  # partitions sought back to their dropped records when assigned back
        self.last_record_at = time.monotonic()
        self.on_revoked: Callable[[set[TopicPartition]], None] = lambda tps: None

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self._pending)

    def listener(self) -> ConsumerRebalanceListener:
        return _Listener(self)

    # ------------------------------------------------------------------------------------------
    def next_batch(self) -> list[Any]:
        """Poll until a batch is full or its wait is over; [] when idle (the loop does periodic work)."""
        deadline: float | None = None
        while not self._stop.is_set():
            n = self.buffered
            now = time.monotonic()
            if n and deadline is None:
                deadline = now + self.batch_wait_s
            if n >= self.batch_size or (n and deadline is not None and now >= deadline):
                break
            timeout_ms = 500 if not n else max(0, int((deadline - now) * 1000))  # type: ignore[operator]
            got = self._poll(timeout_ms, self.batch_size - n)
            if self._reset:
                self._apply_resets()
                deadline = None
                continue
            if not got and not n:
                return []
        return self.drain()

    def drain(self) -> list[Any]:
        """Whatever is buffered (the last batch before a stop)."""
        with self._lock:
            batch, self._pending = self._pending, []
        self.metrics.buffered.set(0)
        return batch

    def _poll(self, timeout_ms: int, max_records: int) -> int:
        try:
            records = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            self._warn("poll", "poll failed; retrying", error=f"{type(exc).__name__}: {exc}")
            self._stop.wait(0.5)
            return 0
        got = [r for rs in records.values() for r in rs]
        if got:
            self.last_record_at = time.monotonic()
            with self._lock:
                self._pending.extend(got)
                self.metrics.buffered.set(len(self._pending))
        return len(got)

    def processed(self, batch: list[Any]) -> None:
        """Advance the lag positions past ``batch``."""
        with self._lock:
            for rec in batch:
                tp = TopicPartition(rec.topic, rec.partition)
                if self.positions.get(tp, -1) < rec.offset + 1:
                    self.positions[tp] = rec.offset + 1

    # ------------------------------------------------------------------------------------------
    def forget(self, tps: set[TopicPartition]) -> int:
        """Drop buffered records and state of ``tps`` (revoked or lost); remember where to rewind."""
        with self._lock:
            keep = []
            for r in self._pending:
                tp = TopicPartition(r.topic, r.partition)
                if tp in tps:
                    self._rewind[tp] = min(self._rewind.get(tp, r.offset), r.offset)
                else:
                    keep.append(r)
            dropped = len(self._pending) - len(keep)
            self._pending = keep
            self.dropped += dropped
            self.metrics.rebalance_dropped.inc(dropped)
            self.metrics.buffered.set(len(keep))
            for tp in tps:
                self.positions.pop(tp, None)
        self.on_revoked(tps)
        return dropped

    def _group_stable(self) -> bool:
        try:
            gm = self.consumer.group_metadata()
            return gm.generation_id >= 0 and bool(gm.member_id) and gm.state == "<stable>"
        except Exception:  # noqa: BLE001 - unknown: wait for the next poll
            return False

    def rewind_dropped(self, assigned: set[TopicPartition]) -> int:
        """Seek partitions assigned back to us to their dropped records (state change only: IO-thread safe).

        After a lost membership (or a broker that came back) the dropped offsets may come from stale fetch
        positions: those partitions restart from their committed offsets instead (:meth:`reset_to_committed`).
        """
        with self._lock:
            rewind, self._rewind = self._rewind, {}
            if self._reset_next_assignment:
                self._reset_next_assignment = False
                self._reset |= set(assigned)
                return 0
        n = 0
        for tp, offset in rewind.items():
            if tp in assigned:
                try:
                    self.consumer.seek(tp, offset)
                    n += 1
                except Exception as exc:  # noqa: BLE001 - then the committed offset applies
                    log.warning("rewind after rebalance failed", extra={"partition": f"{tp.topic}[{tp.partition}]",
                                                                       "error": str(exc)})
        self.rewound += n
        self.metrics.rebalance_rewound.inc(n)
        return n

    def reset_to_committed(self, tps: set[TopicPartition], also_next_assignment: bool = False) -> None:
        """Restart ``tps`` from their committed offsets before the next batch (buffered records dropped).

        For a broker that came back (possibly empty: the cached fetch positions may point into new data)
        and for assignments after the membership was lost. Applied on the loop's thread, after ``poll()``
        returns, because it needs blocking calls (``committed``) that the listener must not make.
        """
        with self._lock:
            self._reset |= set(tps)
            self._reset_next_assignment |= also_next_assignment
            self._rewind = {tp: off for tp, off in self._rewind.items() if tp not in tps}

    def _apply_resets(self) -> None:
        with self._lock:
            self._pending = [r for r in self._pending if TopicPartition(r.topic, r.partition) not in self._reset]
            self.metrics.buffered.set(len(self._pending))
            if not self._group_stable():  # no coordinator calls while the group (re)joins: retry after it
                return
            resets, self._reset = self._reset, set()
            for tp in resets:
                self.positions.pop(tp, None)
        assigned = self.consumer.assignment()
        for tp in resets & assigned:
            try:
                committed = self.consumer.committed(tp, timeout_ms=5000)
                if committed is not None:
                    self.consumer.seek(tp, committed)
                elif self.auto_offset_reset == "earliest":
                    self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek_to_end(tp)
            except Exception as exc:  # noqa: BLE001 - try again before the next batch
                self._warn("reset", "could not restart a partition from its committed offset; retrying",
                           error=f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self._reset.add(tp)
                self._stop.wait(0.5)
        if resets & assigned:
            log.info("partitions restarted from their committed offsets",
                     extra={"partitions": tps_str(resets & assigned)})


class _Listener(ConsumerRebalanceListener):
    """Runs inside ``poll()``: only cheap, non-blocking work here (no commit, no produce)."""

    def __init__(self, batcher: Batcher) -> None:
        self.b = batcher

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        dropped = self.b.forget(set(revoked))
        if revoked:
            log.info("partitions revoked", extra={"partitions": tps_str(revoked), "dropped_uncommitted": dropped})

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        rewound = self.b.rewind_dropped(set(assigned))
        log.info("partitions assigned", extra={"partitions": tps_str(assigned), "rewound": rewound})
        self.b.assigned.set()

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        dropped = self.b.forget(set(lost))
        self.b.reset_to_committed(set(lost), also_next_assignment=True)
        log.warning("partitions lost (group membership expired)", extra={"partitions": tps_str(lost),
                                                                         "dropped_uncommitted": dropped})


__all__ = ["Batcher", "tps_str"]
