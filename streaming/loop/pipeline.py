"""The streaming loop behind ``flagstream stream``: poll -> parse -> score -> annotate -> route -> checkpoint.

::

    Batcher.next_batch ─► parse_batch ─► score_batch ─► FailureBreaker ─► [Shadow.score]
          ▲                                                                    │
          │            ┌───────────────────────────────────────────────────────┘
          │            ▼
          │   ReviewAnnotator.annotate_batch ─► Router.route ─► Checkpoint.commit
          │                                                            │
          └──── a failed checkpoint rewinds to the batch, with backoff ┘

Modules, in that order: :mod:`flagstream.streaming.loop.batching`, :mod:`flagstream.streaming.loop.batch` (``Post`` |
``Rejection``, ``Verdict``), :mod:`flagstream.streaming.loop.shadow`, :mod:`flagstream.streaming.loop.annotate`
(campaigns and explanation spans, within its own time budget), :mod:`flagstream.streaming.loop.routing`,
:mod:`flagstream.streaming.loop.checkpoint`; the backoff is :class:`flagstream.streaming.kafka.clients.Backoff`.

Each step is a small unit in its own module; this one wires them, in turn, on the loop's thread.

How each guarantee is kept (README "Guarantees", docs/faults.md): every batch is committed by the
:class:`~flagstream.streaming.loop.checkpoint.Checkpoint` (the only committer) after all its outputs are acknowledged and
before the next ``poll()``, so a crash re-reads at most one batch and a rebalance finds only buffered records
(:mod:`flagstream.streaming.loop.batching`); SIGTERM finishes the buffered batch, commits and leaves the group; an output
that can never be produced is dead-lettered (``output_too_large``); a model failing on most posts opens the
breaker; a failed checkpoint rewinds with a bounded backoff; a broker that comes back gets its topics
re-ensured, a new producer, and the partitions restart from their committed offsets.

Size: ~410 lines: the wiring of every step and each checkpoint failure's one reaction, kept in one place
so the order of the loop reads top to bottom (the steps themselves live in their own modules).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from flagstream.classifier.inference.scoring import Scorer, load_scorer
from flagstream.config import Settings
from flagstream.errors import UserError
from flagstream.streaming.banks.gate import BankGate
from flagstream.streaming.loop.accounting import Books, PipelineStats
from flagstream.streaming.loop.annotate import ReviewAnnotator
from flagstream.streaming.loop.batching import Batcher, tps_str
from flagstream.streaming.loop.checkpoint import (
    Checkpoint,
    CheckpointCommitFailed,
    CheckpointCommitTimeout,
    CheckpointError,
    CheckpointFenced,
    CheckpointProduceFailed,
    CheckpointRecordsRejected,
)
from flagstream.streaming.kafka.clients import Backoff, BrokerUnavailable
from flagstream.streaming.loop.health import BrokerProbe, Health, HealthServer
from flagstream.streaming.loop.metrics import PipelineMetrics
from flagstream.streaming.loop.progress import ProgressLog
from flagstream.streaming.kafka.lifecycle import Clients
from flagstream.streaming.loop.routing import Router
from flagstream.streaming.loop.shadow import Shadow
from flagstream.streaming.loop.batch import Batch, FailureBreaker, parse_batch, score_batch

log = logging.getLogger(__name__)

NOT_READY_AFTER_FAILURES = 1  # a rewound checkpoint makes /readyz say "not delivering" until the next success
MAX_REFUSAL_ROUNDS = 3  # dead-letter rounds for refused outputs before the batch is treated as failed
SLOW_BATCH_SHARE = 0.5  # warn when one batch takes this share of max_poll_interval_ms


class _StoppedDuringStartup(Exception):
    """A stop was requested while still waiting for the broker."""


class Pipeline:
    """One consumer-group member: ``run()`` blocks until :meth:`request_stop` (or idle exit)."""

    def __init__(self, settings: Settings, scorer: Scorer | None = None, *, stop_after_idle_s: float | None = None,
                 metrics: PipelineMetrics | None = None, breaker: FailureBreaker | None = None,
                 shadow_scorer: Scorer | None = None) -> None:
        self.settings = settings
        self.scorer, self.shadow_scorer = scorer, shadow_scorer
        self.shadow: Shadow | None = None
        self.stop_after_idle_s = stop_after_idle_s
        self.metrics = metrics or PipelineMetrics()
        self.health = Health()
        self.stats = PipelineStats()
        self.books = Books(self.stats, self.metrics)
        self.breaker = breaker or FailureBreaker()
        self.health_server: HealthServer | None = None
        self.probe: BrokerProbe | None = None
        self.exit_reason = ""
        self._stop = threading.Event()
        self.clients = Clients(settings, self._stop, self._warn)
        self.batcher: Batcher | None = None
        self.router: Router | None = None
        self.annotator: ReviewAnnotator | None = None
        self._retry_commit: dict[TopicPartition, int] = {}  # delivered, commit timed out: {tp: next offset}
        self._delivery_backoff = Backoff()
        self._breaker_backoff = Backoff(first_s=1.0, max_s=10.0)
        self._reconnected = threading.Event()
        self._last_lag_update = 0.0
        self._progress = ProgressLog(settings.progress_interval_s)
        self._warned: dict[str, float] = {}
        self.started = threading.Event()  # set once connected and subscribed
        self._clock: Callable[[], float] = time.monotonic  # times a batch (explanation budget, slow-batch warning)

    @property
    def consumer(self) -> Any:
        return self.clients.consumer

    @property
    def producer(self) -> Any:
        return self.clients.producer

    # --- lifecycle ---
    def request_stop(self, reason: str = "stop requested") -> None:
        if not self._stop.is_set():
            self.exit_reason = reason
            log.info("stopping: finishing the buffered batch, then commit and leave the group",
                     extra={"reason": reason})
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> int:
        """Start, loop until stopped, shut down cleanly. Returns the process exit code (0)."""
        try:
            try:
                self._start()
            except _StoppedDuringStartup:
                return 0
            assert self.batcher is not None
            while not self._stop.is_set():
                self._tick()
                t0 = time.monotonic()
                records = self.batcher.next_batch()
                self._paced(records, waited_s=time.monotonic() - t0)
                if not records and self._idle_exit_due():
                    self.request_stop(f"idle for {self.stop_after_idle_s:g}s")
            records = self.batcher.drain()  # polled before the stop
            if records:
                self._process(records)
        finally:
            self._shutdown()
        return 0

    def _start(self) -> None:
        s = self.settings
        for name in (s.review_topic, s.dlq_topic, *([s.scores_topic] if s.scores_enabled else [])):
            if name == s.posts_topic:
                raise UserError(f"output topic {name!r} is the posts topic; that would feed verdicts back as posts")
        if self.scorer is None:
            self.scorer = load_scorer(s.model, s.thresholds, threads=s.scoring_threads or None, precision=s.precision,
                                      manifest_sha256=s.model_manifest_sha256)
        info = self.scorer.info
        self.annotator = ReviewAnnotator.from_settings(  # issue 17: campaign + spans
            s, self.scorer, on_outcome=lambda outcome, n: self.metrics.explanations.labels(outcome=outcome).inc(n))
        self.shadow = Shadow.from_settings(s, info, self.shadow_scorer)  # issue 18: a candidate beside it
        self.router = Router(s, info.thresholds, info.as_dict(), self.shadow)
        self.health.model_loaded = True
        self.metrics.set_model(info)
        if self.shadow is not None:
            self.metrics.set_shadow_model(self.shadow.scorer.info)
        if s.metrics_port:
            self.health_server = HealthServer(s.metrics_host, s.metrics_port, self.health, self.metrics).start()
        log.info("pipeline starting", extra={"model": info.ref, "thresholds": dict(info.thresholds),
                                             "group_id": s.group_id, "posts_topic": s.posts_topic,
                                             "bootstrap": s.bootstrap_servers, "batch_size": s.batch_size,
                                             "exactly_once": s.exactly_once})
        self.probe = BrokerProbe(s.bootstrap_servers, on_change=self._on_broker_change)
        self.probe.start()
        try:
            self.clients.connect()
            self.clients.replay_review(self.annotator)  # issue 17: the campaign index
            self.router.bank = BankGate.from_settings(s, self.metrics.bank_matches)  # issue 33
            if self.router.bank is not None:
                self.router.bank.start()
        except BrokerUnavailable as exc:
            if self._stop.is_set():
                raise _StoppedDuringStartup() from None
            raise UserError(str(exc)) from None
        assert self.consumer is not None
        self.batcher = Batcher(self.consumer, s.batch_size, s.batch_wait_ms, self._stop, self._warn, self.metrics,
                               s.auto_offset_reset)
        self.batcher.on_revoked = self._on_revoked
        self.consumer.subscribe([s.posts_topic], listener=self.batcher.listener())
        self._reconnected.clear()
        log.info("connected; joining consumer group", extra={"group_id": s.group_id,
                                                              "bootstrap": s.bootstrap_servers})
        self.started.set()

    def _shutdown(self) -> None:
        if self.consumer is not None and self._retry_commit:
            self._commit_retry()
        self.clients.close()
        if self.router is not None and self.router.bank is not None:
            self.router.bank.close()
        if self.probe is not None:
            self.probe.stop()
        if self.health_server is not None:
            self.health_server.stop()
        if self.consumer is not None:
            if self.batcher is not None:
                self.books.sync_rebalance(self.batcher)
            log.info("pipeline stopped", extra={"reason": self.exit_reason or "stopped", **self.stats.as_dict()})

    def _paced(self, records: list[Any], waited_s: float) -> None:
        """``_process`` the batch, then pay the explanation budget: time waited for posts vs time worked."""
        t0 = self._clock()
        if records:
            self._process(records)
        took_s = self._clock() - t0
        if self.annotator is not None:
            self.annotator.settle(waited_s, took_s, backlog=len(records) >= self.settings.batch_size)
        limit_s = self.settings.max_poll_interval_ms / 1000.0
        if took_s > SLOW_BATCH_SHARE * limit_s:
            # Past max_poll_interval_ms the group evicts this member: its commit is refused and the batch is
            # re-read (duplicates). Say so while there is still margin, with the two settings that fix it.
            self._warn("slow-batch", "a batch took over half of max_poll_interval_ms; lower batch_size or raise "
                       "max_poll_interval_ms, or the group will evict this member and re-read its batches",
                       every_s=60.0, batch_seconds=round(took_s, 2), records=len(records),
                       max_poll_interval_s=limit_s)

    # --- one batch: parse -> score -> (breaker) -> route -> checkpoint ---
    def _process(self, records: list[Any]) -> None:
        s = self.settings
        assert self.scorer is not None
        batch = parse_batch(records, max_text_chars=s.max_text_chars, max_message_bytes=s.max_message_bytes)
        t = time.monotonic()
        score_batch(batch, self.scorer, self._warn)
        if batch.posts:
            self.metrics.scoring_latency.observe(time.monotonic() - t)
        if not self.breaker.allow(len(batch.verdicts), batch.scoring_failures):
            self._hold(batch)
            return
        if not self.breaker.open:
            self._breaker_backoff.reset()
            self.health.scoring_ok = True
            self.metrics.breaker_open.set(0)
        if self.shadow is not None:  # after the served model and its breaker; never counts towards it
            self.shadow.score(batch, self._warn)
        notes: dict = {}
        if self.annotator is not None:
            try:
                notes = self.annotator.annotate_batch(batch.verdicts)
            except Exception as exc:  # noqa: BLE001 - annotations are optional; the verdicts still go out (issue 29)
                log.warning("review annotations failed; routing the batch without them",
                            extra={"error": type(exc).__name__, "records": len(batch.verdicts)})
        self._deliver(batch, notes)

    def _hold(self, batch: Batch) -> None:
        """Breaker open: commit nothing, re-read the batch after a backoff, report not ready."""
        if self.breaker.trips != self.stats.breaker_trips:
            self.stats.breaker_trips = self.breaker.trips
            self.metrics.breaker_trips.inc()
        self.stats.breaker_holds += 1
        self.health.scoring_ok = False
        self.metrics.breaker_open.set(1)
        self.clients.rewind(batch.records)
        self._stop.wait(self._breaker_backoff.failed())

    def _checkpoint(self) -> Checkpoint:
        s = self.settings
        assert self.consumer is not None and self.producer is not None
        return Checkpoint(self.consumer, self.producer, exactly_once=s.exactly_once,
                          flush_timeout_s=s.request_timeout_ms / 1000, commit_timeout_ms=s.request_timeout_ms)

    def _deliver(self, batch: Batch, notes: Mapping[str, Any]) -> None:
        """Route the batch (with its review ``notes``) into a checkpoint and commit it; each failure has its one reaction."""
        assert self.router is not None
        for _ in range(MAX_REFUSAL_ROUNDS):
            cp = self._checkpoint()
            cp.carry(self._retry_commit)  # offsets of an earlier batch whose commit timed out
            try:
                self.router.route(batch, cp, notes)
                committed = self._commit(cp, batch)
            except CheckpointRecordsRejected as exc:  # exactly_once: aborted; redo with those dead-lettered
                self._refused(exc)
                self.router.refused(exc.rejected, batch)
                continue
            except CheckpointCommitFailed as exc:
                # outputs are delivered; the partitions' new owner re-reads this batch (duplicates, no loss)
                self._checkpoint_failed(exc, batch, rewind=False)
                self.books.batch_done(batch, self.batcher, committed=False)
                return
            except CheckpointCommitTimeout as exc:
                # outputs are delivered; commit these offsets with the next checkpoint
                self._checkpoint_failed(exc, batch, rewind=False)
                for tp, off in cp.offsets.items():
                    self._retry_commit[tp] = off + 1
                self.books.batch_done(batch, self.batcher, committed=False)
                return
            except CheckpointFenced as exc:
                self._checkpoint_failed(exc, batch, rewind=False)
                self.request_stop("fenced by a newer process with the same instance_id")
                raise UserError(f"this process was fenced: another one runs with instance_id "
                                f"{self.settings.instance_id!r} (each member needs its own); exiting") from None
            except (CheckpointError, KafkaError) as exc:
                cp.abort()
                self._checkpoint_failed(exc, batch, rewind=True)
                return
            for tp in committed:
                self._retry_commit.pop(tp, None)
            self._delivered()
            self.books.batch_done(batch, self.batcher, committed=True)
            return
        cp.abort()
        self._checkpoint_failed(CheckpointProduceFailed("outputs still refused after dead-lettering"), batch,
                                rewind=True)

    def _commit(self, cp: Checkpoint, batch: Batch) -> dict[TopicPartition, int]:
        """``cp.commit()``; outputs refused for good (at-least-once) are dead-lettered into the same checkpoint."""
        assert self.router is not None
        for _ in range(MAX_REFUSAL_ROUNDS):
            try:
                return cp.commit()
            except CheckpointRecordsRejected as exc:
                if exc.aborted:
                    raise
                self._refused(exc)
                self.router.dead_letter_now(self.router.refused(exc.rejected, batch), batch, cp)
        raise CheckpointProduceFailed("dead-letter records for refused outputs were refused too")

    def _refused(self, exc: CheckpointRecordsRejected) -> None:
        self.metrics.commit_failures.labels(error="CheckpointRecordsRejected").inc(len(exc.rejected))
        self.stats.checkpoint_failures["CheckpointRecordsRejected"] += len(exc.rejected)
        log.warning("outputs refused for good; dead-lettering their posts as output_too_large",
                    extra={"refused": len(exc.rejected), "error": exc.rejected[0].error})

    def _delivered(self) -> None:
        self.stats.commits += 1
        self.metrics.commits.inc()
        self._delivery_backoff.reset()
        self.health.delivering = True
        self.metrics.consecutive_failures.set(0)
        self.metrics.retry_backoff.set(0)

    def _checkpoint_failed(self, exc: BaseException, batch: Batch, rewind: bool) -> None:
        name = type(exc).__name__
        self.stats.checkpoint_failures[name] += 1
        self.metrics.commit_failures.labels(error=name).inc()
        log.warning("checkpoint failed; " + ("nothing committed, the batch is rewound and processed again" if rewind
                                             else "outputs delivered but offsets not committed: the batch may be "
                                                  "read again (duplicates, no loss)"),
                    extra={"error": f"{name}: {exc}", "records": len(batch.records)})
        if not rewind:
            return
        delay = self._delivery_backoff.failed()
        self.health.delivering = self._delivery_backoff.failures < NOT_READY_AFTER_FAILURES
        self.metrics.consecutive_failures.set(self._delivery_backoff.failures)
        self.metrics.retry_backoff.set(delay)
        self.clients.rewind(batch.records)
        self.clients.replace_producer()
        self._stop.wait(delay)

    def _commit_retry(self) -> None:
        """Commit offsets left over from a timed-out commit, through a checkpoint with nothing else in it."""
        if not self._retry_commit or self.producer is None:
            return
        cp = self._checkpoint()
        cp.carry(self._retry_commit)
        try:
            committed = cp.commit()
        except (CheckpointError, KafkaError) as exc:
            cp.abort()
            self._warn("commit-retry", "retrying offset commit failed", error=f"{type(exc).__name__}: {exc}")
            return
        for tp, off in committed.items():
            if self._retry_commit.get(tp, off) <= off:
                self._retry_commit.pop(tp, None)
        self.stats.commits += 1
        self.metrics.commits.inc()

    def _on_revoked(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self._retry_commit.pop(tp, None)

    # --- periodic work, health ---
    def _tick(self) -> None:
        assert self.consumer is not None and self.batcher is not None
        gm = self.consumer.group_metadata()
        self.health.group_joined = gm.generation_id >= 0 and bool(gm.member_id) and gm.state == "<stable>"
        self.health.detail = {"group_id": self.settings.group_id, "generation": str(gm.generation_id),
                              "partitions": ",".join(tps_str(self.consumer.assignment()))}
        self.metrics.ready.set(1 if self.health.ready else 0)
        self.books.sync_rebalance(self.batcher)
        if self._reconnected.is_set():
            self._reconnected.clear()
            # an empty broker may be back: cached fetch positions can point into its new data
            self.batcher.reset_to_committed(set(self.consumer.assignment()), also_next_assignment=True)
            if not self.clients.after_reconnect():
                self._reconnected.set()
                self._stop.wait(1.0)
        if self._retry_commit and not self.batcher.buffered:
            self._commit_retry()
        now = time.monotonic()
        if now - self._last_lag_update >= 1.0:
            self._last_lag_update = now
            self._progress.maybe_log(self.stats, self.books.update_lag(self.consumer, self.batcher))

    def _on_broker_change(self, reachable: bool) -> None:
        was = self.health.broker_reachable
        self.health.broker_reachable = reachable
        self.metrics.broker_reachable.set(1 if reachable else 0)
        if not self.started.is_set():
            return
        if not reachable:
            log.warning("broker unreachable; pipeline waiting, kafka-python reconnects with backoff",
                        extra={"bootstrap": self.settings.bootstrap_servers})
        elif not was:
            log.info("broker reachable again; re-checking topics and replacing the producer",
                     extra={"bootstrap": self.settings.bootstrap_servers})
            self._reconnected.set()

    def _idle_exit_due(self) -> bool:
        b = self.batcher
        if self.stop_after_idle_s is None or b is None or not b.assigned.is_set():
            return False
        return time.monotonic() - b.last_record_at >= self.stop_after_idle_s

    def _warn(self, key: str, msg: str, every_s: float = 10.0, **extra: Any) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= every_s:
            self._warned[key] = now
            log.warning(msg, extra=extra)


def install_signal_handlers(pipeline: Pipeline, on_second: Callable[[], None] | None = None) -> None:
    """SIGTERM/SIGINT: graceful stop; a second one exits at once (nothing committed, so nothing lost)."""
    import os

    from flagstream.streaming.signals import on_stop_signals

    def handler(name: str) -> None:
        if pipeline.stopping:
            log.warning("second signal: exiting now; the uncommitted batch will be re-read", extra={"signal": name})
            if on_second is not None:
                on_second()
            os._exit(130)
        pipeline.request_stop(f"signal {name}")

    on_stop_signals(handler)


__all__ = ["Pipeline", "PipelineStats", "install_signal_handlers"]
