"""The streaming loop behind ``flagstream stream``.

::

    poll ─► validate (schemas.parse_post) ─► micro-batch ─► scorer.score(texts) ─► produce
      ▲        (bad records ─► dead-letter)    (batch_size /      (one call per        review / scores / dlq
      │                                         batch_wait_ms)     micro-batch)            │
      └──────────── commit offsets ◄── wait for every ack ◄── producer.flush ◄─────────────┘
                    (streaming.checkpoint.Checkpoint)

With ``overlap_scoring`` (opt-in) the model never waits for Kafka: batch N is scored on a worker
thread (torch releases the GIL) while the main thread produces, flushes and commits batch N-1 and
polls batch N+1, so at most one batch is scored-but-uncommitted when a poll runs. Without it every
step runs in turn on the main thread. Both modes share one ``_start_batch`` / ``_finish`` pair.

Guarantees and how they are kept:

- At-least-once: offsets are committed by :class:`~streaming.checkpoint.Checkpoint` only after every
  output of the batch is acknowledged (idempotent producer, ``acks=all``). Killed anywhere, a consumer
  re-reads at most its one uncommitted batch; duplicates carry the post id as key.
- Rebalances: every batch that has been produced is committed before the next ``poll()``, so when
  the group takes partitions away (kafka-python runs the rebalance listener inside ``poll()``) the
  only uncommitted work is records polled but not yet produced: the pending records and, with
  overlap, the batch being scored. The listener drops those for the revoked partitions (the
  in-flight batch's results for them are discarded unproduced; their next owner reads them from the
  committed offset: no loss, no duplicate) and forgets their positions and lag series. kafka-python forbids blocking client calls on its IO thread, which is
  why the flush + commit is done before each poll rather than inside the listener.
- SIGTERM/SIGINT (:meth:`Pipeline.request_stop`): stop polling, finish the batch in flight, flush,
  commit, leave the group (``consumer.close``), exit 0.
- Poison input never stops the loop: every record either validates and is scored, or goes to the
  dead-letter topic with its error class; a scorer exception on a batch falls back to scoring the
  posts one by one and dead-letters only the ones that still fail (``scoring_failed``).
- Broker unreachable at start: retries with backoff until ``startup_timeout_s``, then one line and
  a non-zero exit; a TLS/SASL misconfiguration (:func:`streaming.security.ensure_transport`) ends the
  start at once with its cause. Broker lost mid-run: clear log lines, the loop keeps polling (kafka-python
  reconnects with backoff up to ``reconnect_backoff_max_ms``), a failed checkpoint rewinds the
  consumer to the batch start and replaces the producer, and when the broker answers again the
  topics are ensured again (a memory broker comes back empty) and the producer is replaced (its
  producer id is gone with the old broker).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from classifier.scoring import Scorer, flagged_labels, load_scorer, scores_dict
from streaming.annotate import ReviewAnnotator
from flagstream.config import Settings
from flagstream.errors import UserError
from streaming import schemas
from streaming.checkpoint import (
    Checkpoint,
    CheckpointCommitFailed,
    CheckpointCommitTimeout,
    CheckpointError,
)
from streaming.clients import BrokerUnavailable, make_admin, make_consumer, make_producer, retry_until
from streaming.health import BrokerProbe, Health, HealthServer
from streaming.metrics import PipelineMetrics
from streaming.progress import ProgressLog
from streaming.security import ensure_transport
from streaming.topics import ensure_topics

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
    dropped_on_rebalance: int = 0  # polled or in-flight records of revoked partitions, left to their next owner
    dropped_in_flight: int = 0  # of those, records whose batch was being scored

    def as_dict(self) -> dict[str, Any]:
        return {"consumed": self.consumed, "scored": self.scored, "flagged": dict(self.flagged),
                "dead_lettered": dict(self.dead_lettered), "batches": self.batches, "commits": self.commits,
                "checkpoint_failures": dict(self.checkpoint_failures),
                "dropped_on_rebalance": self.dropped_on_rebalance, "dropped_in_flight": self.dropped_in_flight}


@dataclass
class _InFlight:
    """One micro-batch between poll and commit: validated, its scoring running (or done)."""

    batch: list[Any]
    good: list[tuple[Any, schemas.Post]]
    rejected: list[tuple[Any, schemas.Rejection]]
    rows: "Future[list[np.ndarray | None]]"
    t0: float
    revoked: set[TopicPartition] = field(default_factory=set)  # taken away by a rebalance while in flight


def _done(value: Any) -> Future:
    fut: Future = Future()
    fut.set_result(value)
    return fut


class _StoppedDuringStartup(Exception):
    """A stop was requested while still waiting for the broker."""


class _Listener(ConsumerRebalanceListener):
    """Runs on kafka-python's IO thread, inside ``poll()``: only cheap, non-blocking work here."""

    def __init__(self, pipeline: "Pipeline") -> None:
        self.p = pipeline

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        dropped = self.p._forget(revoked)
        if revoked:
            log.info("partitions revoked", extra={"partitions": _tps(revoked), "dropped_uncommitted": dropped})

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        rewound = self.p._rewind_dropped(assigned)
        log.info("partitions assigned", extra={"partitions": _tps(assigned), "rewound": rewound})
        self.p._assigned_event.set()

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        dropped = self.p._forget(lost)
        log.warning("partitions lost (group membership expired)", extra={"partitions": _tps(lost),
                                                                         "dropped_uncommitted": dropped})


def _tps(tps: Sequence[TopicPartition] | set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)


class Pipeline:
    """One consumer-group member: ``run()`` blocks until :meth:`request_stop` (or idle exit)."""

    def __init__(self, settings: Settings, scorer: Scorer | None = None, *, stop_after_idle_s: float | None = None,
                 metrics: PipelineMetrics | None = None) -> None:
        self.settings = settings
        self.scorer = scorer
        self.stop_after_idle_s = stop_after_idle_s
        self.metrics = metrics or PipelineMetrics()
        self.health = Health()
        self.stats = PipelineStats()
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self.health_server: HealthServer | None = None
        self.probe: BrokerProbe | None = None
        self.exit_reason = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending: list[Any] = []  # polled, not yet processed (ConsumerRecord)
        self._inflight: _InFlight | None = None  # being scored on the worker thread (overlap_scoring)
        self._executor: ThreadPoolExecutor | None = None
        self._positions: dict[TopicPartition, int] = {}  # next offset to process, per partition
        self._retry_commit: dict[TopicPartition, int] = {}  # delivered but not committed (commit timed out)
        self._rewind: dict[TopicPartition, int] = {}  # first dropped offset of revoked partitions
        self._assigned_event = threading.Event()
        self._reconnected = threading.Event()
        self._last_lag_update = 0.0
        self._lag_total: int | None = None
        self._progress = ProgressLog(settings.progress_interval_s)
        self._last_record_at = time.monotonic()
        self._warned: dict[str, float] = {}
        self.started = threading.Event()  # set once connected and subscribed

    # ------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------
    def request_stop(self, reason: str = "stop requested") -> None:
        if not self._stop.is_set():
            self.exit_reason = reason
            log.info("stopping: finishing the batch in flight, then commit and leave the group",
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
            while not self._stop.is_set():
                self._tick()
                if self._inflight is None:
                    batch = self._collect()
                    if batch:
                        if self._executor is not None:
                            self._inflight = self._start_batch(batch)
                        else:
                            self._finish(self._start_batch(batch))
                    elif self._idle_exit_due():
                        self.request_stop(f"idle for {self.stop_after_idle_s:g}s")
                    continue
                # overlap: fetch the next batch while this one is scored, start scoring it, then
                # produce + commit this one on the main thread while the model works on the next
                self._poll_while_scoring(self._inflight)
                current = self._inflight
                current.rows.result()
                following = self._drain_pending()
                self._inflight = self._start_batch(following) if following else None
                self._finish(current)
            # finish what was polled before the stop
            if self._inflight is not None:
                current, self._inflight = self._inflight, None
                self._finish(current)
            batch = self._drain_pending()
            if batch:
                self._finish(self._start_batch(batch, inline=True))
        finally:
            self._shutdown()
        return 0

    def _start(self) -> None:
        s = self.settings
        for name in (s.review_topic, s.dlq_topic, *([s.scores_topic] if s.scores_enabled else [])):
            if name == s.posts_topic:
                raise UserError(f"output topic {name!r} is the posts topic; that would feed verdicts back as posts")
        if self.scorer is None:
            self.scorer = load_scorer(s.model, s.thresholds, threads=s.scoring_threads or None,
                                      manifest_sha256=s.model_manifest_sha256)
        info = self.scorer.info
        self.annotator = ReviewAnnotator.from_settings(s, self.scorer)  # issue 17: campaign + spans
        if s.overlap_scoring:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flagstream-score")
        self.health.model_loaded = True
        self.metrics.set_model(info)
        if s.metrics_port:
            self.health_server = HealthServer(s.metrics_host, s.metrics_port, self.health, self.metrics).start()
        log.info("pipeline starting", extra={"model": info.ref, "thresholds": dict(info.thresholds),
                                             "group_id": s.group_id, "posts_topic": s.posts_topic,
                                             "bootstrap": s.bootstrap_servers, "batch_size": s.batch_size,
                                             "exactly_once": s.exactly_once})
        self.probe = BrokerProbe(s.bootstrap_servers, on_change=self._on_broker_change)
        self.probe.start()

        def connect(timeout_s: float) -> None:
            # One probe with the client's own TLS/SASL settings first: an untrusted certificate or wrong
            # credentials end the command at once with the cause (TransportSecurityError, a UserError),
            # instead of being retried as "unreachable" until startup_timeout_s.
            check = ensure_transport(s, timeout_s)
            if not check.ok:
                raise BrokerUnavailable(check.retriable or "not reachable")
            admin = make_admin(s, timeout_s)
            try:
                ensure_topics(s, admin)
            except KafkaError as exc:  # broker went away between bootstrap and the request
                raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from None
            finally:
                admin.close()

        try:
            retry_until("topics", connect, s, should_stop=self._stop.is_set)
            self.consumer = retry_until("consumer", lambda t: make_consumer(s, t), s, should_stop=self._stop.is_set)
            self.producer = self._new_producer(startup=True)
            self._rebuild_annotator()  # issue 17: campaign index from the review topic
        except BrokerUnavailable as exc:
            if self._stop.is_set():
                raise _StoppedDuringStartup() from None
            raise UserError(str(exc)) from None
        self.consumer.subscribe([s.posts_topic], listener=_Listener(self))
        self._reconnected.clear()
        log.info("connected; joining consumer group", extra={"group_id": s.group_id,
                                                              "bootstrap": s.bootstrap_servers})
        self.started.set()

    def _annotate(self, flagged: list[Any]) -> dict[str, dict[str, Any]]:
        """Campaign ids and spans for the flagged posts (issue 17); explaining calls the scorer, so with
        overlap_scoring it runs on the scoring thread: the scorer is never used from two threads at once."""
        if self._executor is not None:
            return self._executor.submit(self.annotator.annotate, flagged).result()
        return self.annotator.annotate(flagged)

    def _rebuild_annotator(self) -> None:
        """Replay the review topic into the campaign index (a consumer of its own, joining no group)."""
        s = self.settings
        reader = retry_until("review reader", lambda t: make_consumer(s, t, group_id=None), s,
                             should_stop=self._stop.is_set)
        try:
            self.annotator.rebuild(s, reader)
        finally:
            reader.close(autocommit=False)

    def _new_producer(self, startup: bool = False) -> KafkaProducer:
        s = self.settings

        def build(timeout_s: float) -> KafkaProducer:
            producer = make_producer(s, timeout_s)
            if s.exactly_once:
                producer.init_transactions()
            return producer

        if startup:
            return retry_until("producer", build, s, should_stop=self._stop.is_set)
        delay = 0.5
        while True:  # mid-run: no deadline, but a stop request ends the wait
            try:
                return build(5.0)
            except (BrokerUnavailable, KafkaError) as exc:
                if self._stop.is_set():
                    raise
                self._warn("producer", f"cannot create producer, retrying in {delay:g}s", error=str(exc))
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)

    def _shutdown(self) -> None:
        if self.consumer is not None:
            if self._retry_commit:
                self._commit_retry()
            try:
                self.consumer.close(autocommit=False, timeout_ms=min(self.settings.request_timeout_ms, 10_000))
            except Exception as exc:  # noqa: BLE001 - closing must not mask the real exit path
                log.warning("consumer close failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        if self.producer is not None:
            try:
                self.producer.close(timeout=10)
            except Exception as exc:  # noqa: BLE001
                log.warning("producer close failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self.probe is not None:
            self.probe.stop()
        if self.health_server is not None:
            self.health_server.stop()
        if self.consumer is not None:
            log.info("pipeline stopped", extra={"reason": self.exit_reason or "stopped", **self.stats.as_dict()})

    # ------------------------------------------------------------------------------------------
    # loop pieces
    # ------------------------------------------------------------------------------------------
    def _collect(self) -> list[Any]:
        """Poll until ``batch_size`` records or ``batch_wait_ms`` after the first one; [] when idle."""
        s = self.settings
        assert self.consumer is not None
        deadline: float | None = None
        while not self._stop.is_set():
            with self._lock:
                n = len(self._pending)
            now = time.monotonic()
            if n and deadline is None:
                deadline = now + s.batch_wait_ms / 1000
            if n >= s.batch_size or (n and deadline is not None and now >= deadline):
                break
            timeout_ms = 500 if not n else max(0, int((deadline - now) * 1000))  # type: ignore[operator]
            got = self._poll_into_pending(timeout_ms, s.batch_size - n, retry_wait_s=0.5)
            if got == 0 and not n:
                return []  # idle: let the loop do its periodic work
        return self._drain_pending()

    def _poll_into_pending(self, timeout_ms: int, max_records: int, retry_wait_s: float) -> int | None:
        """One ``poll()`` appended to the pending records: how many arrived (None = the poll failed)."""
        assert self.consumer is not None
        try:
            records = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            self._warn("poll", "poll failed; retrying", error=f"{type(exc).__name__}: {exc}")
            self._stop.wait(retry_wait_s)
            return None
        got = [r for rs in records.values() for r in rs]
        if got:
            self._last_record_at = time.monotonic()
            with self._lock:
                self._pending.extend(got)
        return len(got)

    def _poll_while_scoring(self, current: _InFlight) -> None:
        """Fill the next batch while ``current`` is scored; return as soon as its scores are ready.

        Short poll slices keep the wait for a finished batch under ~10 ms; a full next batch stops
        fetching (the records are buffered by the client meanwhile).
        """
        s = self.settings
        assert self.consumer is not None
        while not current.rows.done() and not self._stop.is_set():
            with self._lock:
                room = s.batch_size - len(self._pending)
            if room <= 0:
                return
            self._poll_into_pending(10, room, retry_wait_s=0.05)

    def _drain_pending(self) -> list[Any]:
        with self._lock:
            batch, self._pending = self._pending, []
        return batch

    def _forget(self, tps: set[TopicPartition]) -> int:
        """Called by the rebalance listener: drop unprocessed records and state of ``tps``.

        The first dropped offset per partition is remembered: kafka-python keeps a partition's fetch
        position when the same partition is assigned back to this member, and that position is past
        the dropped records, so :meth:`_rewind_dropped` seeks back to them.
        """
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
            current = self._inflight
            if current is not None:
                for r in current.batch:
                    tp = TopicPartition(r.topic, r.partition)
                    if tp in tps:
                        self._rewind[tp] = min(self._rewind.get(tp, r.offset), r.offset)
                        current.revoked.add(tp)
                        dropped += 1
                        self.stats.dropped_in_flight += 1
            self.stats.dropped_on_rebalance += dropped
            for tp in tps:
                self._positions.pop(tp, None)
                self._retry_commit.pop(tp, None)
            return dropped

    def _rewind_dropped(self, assigned: set[TopicPartition]) -> int:
        """Called by the rebalance listener: seek partitions assigned back to us to their dropped records."""
        with self._lock:
            rewind, self._rewind = self._rewind, {}
        n = 0
        for tp, offset in rewind.items():
            if tp in assigned and self.consumer is not None:
                try:
                    self.consumer.seek(tp, offset)  # state change only: safe on kafka-python's IO thread
                    n += 1
                except Exception as exc:  # noqa: BLE001 - then the committed offset applies
                    log.warning("rewind after rebalance failed", extra={"partition": f"{tp.topic}[{tp.partition}]",
                                                                       "error": str(exc)})
        return n

    def _start_batch(self, batch: list[Any], inline: bool = False) -> _InFlight:
        """Validate ``batch`` and start scoring its good posts (on the worker thread unless ``inline``)."""
        s = self.settings
        t0 = time.monotonic()
        good: list[tuple[Any, schemas.Post]] = []
        rejected: list[tuple[Any, schemas.Rejection]] = []
        for rec in batch:
            res = schemas.parse_post(rec.value, max_text_chars=s.max_text_chars, max_message_bytes=s.max_message_bytes)
            (good if isinstance(res, schemas.Post) else rejected).append((rec, res))  # type: ignore[arg-type]
        texts = [post.text for _, post in good]
        if self._executor is not None and not inline and texts:
            rows = self._executor.submit(self._score, texts)
        else:
            rows = _done(self._score(texts))
        return _InFlight(batch, good, rejected, rows, t0)

    def _finish(self, current: _InFlight) -> None:
        """Produce ``current``'s outputs and commit its offsets (one :class:`Checkpoint`)."""
        s, m = self.settings, self.metrics
        assert self.consumer is not None and self.producer is not None and self.scorer is not None
        rows = current.rows.result()
        with self._lock:  # partitions revoked while it was scored: their next owner re-reads them
            revoked = set(current.revoked)

        def kept(rec: Any) -> bool:
            return not revoked or TopicPartition(rec.topic, rec.partition) not in revoked

        t0 = current.t0
        info = self.scorer.info
        model = info.as_dict()
        batch = [rec for rec in current.batch if kept(rec)]
        rejected = [(rec, rej) for rec, rej in current.rejected if kept(rec)]
        scored: list[tuple[Any, schemas.Post, dict[str, float], list[str]]] = []
        for (rec, post), row in zip(current.good, rows):
            if not kept(rec):
                continue
            if row is None:
                rejected.append((rec, schemas.Rejection("scoring_failed", "the model raised an error on this text")))
            else:
                scored.append((rec, post, scores_dict(row, info), flagged_labels(row, info)))
        if not batch:
            return

        cp = Checkpoint(self.consumer, self.producer, exactly_once=s.exactly_once,
                        flush_timeout_s=s.request_timeout_ms / 1000, commit_timeout_ms=s.request_timeout_ms)
        now = schemas.now_iso()
        flagged_counts: Counter = Counter()
        notes = self._annotate([(post.id, post.text, rec.timestamp, labels, [scores[k] for k in info.labels])
                                for rec, post, scores, labels in scored if labels])  # issue 17
        try:
            for rec, post, scores, labels in scored:
                src = schemas.Source(rec.topic, rec.partition, rec.offset, rec.timestamp)
                if s.scores_enabled:
                    cp.produce(s.scores_topic, schemas.scores_record(post, src, scores, labels, model, now))
                if labels:
                    cp.produce(s.review_topic, schemas.review_record(post, src, scores, labels, info.thresholds,
                                                                     model, now, notes.get(post.id)))
                    flagged_counts.update(labels)
            for rec, rej in rejected:
                src = schemas.Source(rec.topic, rec.partition, rec.offset, rec.timestamp)
                cp.produce(s.dlq_topic, schemas.dead_letter_record(rec.key, rec.value, rec.headers, rej, src,
                                                                   s.max_message_bytes, now))
            for rec in batch:
                cp.store_offset(rec.topic, rec.partition, rec.offset)
            committed = cp.commit()
        except CheckpointCommitFailed as exc:
            # outputs are delivered; the partitions' new owner re-reads this batch (duplicates, no loss)
            self._checkpoint_failed(exc, batch, rewind=False)
            self._count(batch, scored, rejected, flagged_counts, t0, committed=False)
            return
        except CheckpointCommitTimeout as exc:
            # outputs are delivered; commit these offsets later (a later commit also covers them)
            self._checkpoint_failed(exc, batch, rewind=False)
            with self._lock:
                for tp, off in cp.offsets.items():
                    self._retry_commit[tp] = off + 1
            self._count(batch, scored, rejected, flagged_counts, t0, committed=False)
            return
        except (CheckpointError, KafkaError) as exc:
            # outputs not (all) acknowledged: nothing committed; rewind and redo with a fresh producer
            cp.abort()
            following, self._inflight = self._inflight, None
            if following is not None:  # read after this batch: it is re-read from the rewound position
                following.rows.result()
                batch = batch + following.batch
            self._checkpoint_failed(exc, batch, rewind=True)
            return
        with self._lock:
            for tp, off in committed.items():
                self._retry_commit.pop(tp, None)
        self.stats.commits += 1
        m.commits.inc()
        self._count(batch, scored, rejected, flagged_counts, t0, committed=True)

    def _count(self, batch: list[Any], scored: list[Any], rejected: list[Any], flagged: Counter, t0: float,
               committed: bool) -> None:
        m, st = self.metrics, self.stats
        done = time.time()
        with self._lock:
            for rec in batch:
                tp = TopicPartition(rec.topic, rec.partition)
                if self._positions.get(tp, -1) < rec.offset + 1:
                    self._positions[tp] = rec.offset + 1
        st.batches += 1
        st.consumed += len(batch)
        st.scored += len(scored)
        st.flagged.update(flagged)
        m.consumed.inc(len(batch))
        m.scored.inc(len(scored))
        m.batch_size.observe(len(batch))
        for label, n in flagged.items():
            m.flagged.labels(label=label).inc(n)
        reasons = Counter(rej.error for _, rej in rejected)
        st.dead_lettered.update(reasons)
        for reason, n in reasons.items():
            m.dead_lettered.labels(reason=reason).inc(n)
        for rec, *_ in scored:
            if rec.timestamp and rec.timestamp > 0:
                m.e2e_latency.observe(max(0.0, done - rec.timestamp / 1000))
        elapsed = time.monotonic() - t0
        m.batch_latency.observe(elapsed)
        log.debug("batch", extra={"records": len(batch), "scored": len(scored), "flagged": dict(flagged),
                                  "dead_lettered": dict(reasons), "ms": round(elapsed * 1000, 1),
                                  "committed": committed})

    def _score(self, texts: list[str]) -> list[np.ndarray | None]:
        """One ``scorer.score`` call for the batch; on error, post by post (None = failed)."""
        if not texts:
            return []
        assert self.scorer is not None
        n_labels = len(self.scorer.info.labels)
        t = time.monotonic()
        try:
            probs = np.asarray(self.scorer.score(texts), dtype=np.float64)
            if probs.shape != (len(texts), n_labels):
                raise ValueError(f"scorer returned shape {probs.shape}, expected {(len(texts), n_labels)}")
            rows: list[np.ndarray | None] = list(probs)
        except Exception as exc:  # noqa: BLE001 - one bad text must not stop the stream
            self._warn("score", "batch scoring failed; scoring posts one by one",
                       error=f"{type(exc).__name__}: {exc}", batch=len(texts))
            rows = []
            for text in texts:
                try:
                    one = np.asarray(self.scorer.score([text]), dtype=np.float64)
                    rows.append(one[0] if one.shape == (1, n_labels) else None)
                except Exception:  # noqa: BLE001
                    rows.append(None)
        self.metrics.scoring_latency.observe(time.monotonic() - t)
        return [r if r is not None and np.all(np.isfinite(r)) else None for r in rows]

    def _checkpoint_failed(self, exc: BaseException, batch: list[Any], rewind: bool) -> None:
        name = type(exc).__name__
        self.stats.checkpoint_failures[name] += 1
        self.metrics.commit_failures.labels(error=name).inc()
        log.warning("checkpoint failed; " + ("nothing committed, the batch is rewound and processed again" if rewind
                                             else "outputs delivered but offsets not committed: the batch may be "
                                                  "read again (duplicates, no loss)"),
                    extra={"error": f"{name}: {exc}", "records": len(batch)})
        if not rewind:
            return
        assert self.consumer is not None
        first: dict[TopicPartition, int] = {}
        for rec in batch:
            tp = TopicPartition(rec.topic, rec.partition)
            first[tp] = min(first.get(tp, rec.offset), rec.offset)
        assigned = self.consumer.assignment()
        for tp, off in first.items():
            if tp in assigned:
                try:
                    self.consumer.seek(tp, off)
                except Exception as seek_exc:  # noqa: BLE001 - partition moved meanwhile: its owner re-reads
                    log.debug("seek failed", extra={"partition": f"{tp.topic}[{tp.partition}]", "error": str(seek_exc)})
        self._replace_producer()
        self._stop.wait(1.0)

    def _replace_producer(self) -> None:
        old, self.producer = self.producer, None
        if old is not None:
            try:
                old.close(timeout=0)
            except Exception:  # noqa: BLE001
                pass
        try:
            self.producer = self._new_producer()
        except (BrokerUnavailable, KafkaError):
            if not self._stop.is_set():
                raise
            # stopping while the broker is down: nothing can be delivered; exit without commit
            raise UserError("stopped while the broker was unreachable; the uncommitted batch will be re-read") from None

    def _commit_retry(self) -> None:
        assert self.consumer is not None
        from kafka.structs import OffsetAndMetadata

        with self._lock:
            offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in self._retry_commit.items()}
        if not offsets:
            return
        try:
            self.consumer.commit(offsets, timeout_ms=min(self.settings.request_timeout_ms, 10_000))
            with self._lock:
                for tp, om in offsets.items():
                    if self._retry_commit.get(tp) == om.offset:
                        del self._retry_commit[tp]
            self.stats.commits += 1
            self.metrics.commits.inc()
        except KafkaError as exc:
            self._warn("commit-retry", "retrying offset commit failed", error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------------------------------
    # periodic work, health
    # ------------------------------------------------------------------------------------------
    def _tick(self) -> None:
        assert self.consumer is not None
        gm = self.consumer.group_metadata()
        self.health.group_joined = gm.generation_id >= 0 and bool(gm.member_id) and gm.state == "<stable>"
        self.health.detail = {"group_id": self.settings.group_id, "generation": str(gm.generation_id),
                              "partitions": ",".join(_tps(self.consumer.assignment()))}
        self.metrics.ready.set(1 if self.health.ready else 0)
        if self._reconnected.is_set():
            self._after_reconnect()
        if self._retry_commit and not self._pending:
            self._commit_retry()
        now = time.monotonic()
        if now - self._last_lag_update >= 1.0:
            self._last_lag_update = now
            self._update_lag()
            self._progress.maybe_log(self.stats, self._lag_total)

    def _update_lag(self) -> None:
        assert self.consumer is not None
        lags: dict[tuple[str, int], int] = {}
        try:
            assigned = self.consumer.assignment()
            for tp in assigned:
                hw = self.consumer.highwater(tp)
                if hw is None:
                    continue
                with self._lock:
                    pos = self._positions.get(tp)
                if pos is None:
                    try:
                        pos = self.consumer.position(tp, timeout_ms=100)
                    except Exception:  # noqa: BLE001 - not yet known; try again next tick
                        pos = None
                    if pos is not None:
                        with self._lock:  # nothing pending for tp here: its position is the next to process
                            self._positions.setdefault(tp, pos)
                if pos is not None:
                    lags[(tp.topic, tp.partition)] = max(0, hw - pos)
        except Exception as exc:  # noqa: BLE001 - metrics must never stop the loop
            log.debug("lag update failed", extra={"error": str(exc)})
            return
        self.metrics.set_lag(lags)
        self._lag_total = sum(lags.values())

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

    def _after_reconnect(self) -> None:
        self._reconnected.clear()
        try:
            admin = make_admin(self.settings, 5.0)
            try:
                created = ensure_topics(self.settings, admin)
            finally:
                admin.close()
            if created:
                log.warning("topics were missing after the broker came back (empty broker?); recreated them",
                            extra={"topics": created})
            self._reset_positions_to_committed()
        except (BrokerUnavailable, KafkaError, UserError) as exc:
            self._warn("reconnect", "re-checking topics failed; will retry", error=str(exc))
            self._reconnected.set()
            self._stop.wait(1.0)
            return
        self._replace_producer()

    def _reset_positions_to_committed(self) -> None:
        """After an outage, resume every partition from its committed offset.

        Normally a no-op (the commit precedes every poll, so position == committed). After a broker
        that lost its data comes back, the consumer's cached positions point past the end of the
        re-created, empty partitions; without this the first records produced there would be skipped.
        """
        assert self.consumer is not None
        for tp in self.consumer.assignment():
            try:
                committed = self.consumer.committed(tp, timeout_ms=5000)
            except Exception as exc:  # noqa: BLE001 - keep the position; the group protocol may reset it
                self._warn("reset", "could not read committed offset after reconnect", error=str(exc))
                continue
            if committed is None:
                if self.settings.auto_offset_reset == "earliest":
                    self.consumer.seek_to_beginning(tp)
                else:
                    self.consumer.seek_to_end(tp)
            else:
                self.consumer.seek(tp, committed)
        with self._lock:
            self._positions.clear()

    def _idle_exit_due(self) -> bool:
        if self.stop_after_idle_s is None or not self._assigned_event.is_set():
            return False
        return time.monotonic() - self._last_record_at >= self.stop_after_idle_s

    def _warn(self, key: str, msg: str, every_s: float = 10.0, **extra: Any) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -1e9) >= every_s:
            self._warned[key] = now
            log.warning(msg, extra=extra)


def install_signal_handlers(pipeline: Pipeline, on_second: Callable[[], None] | None = None) -> None:
    """SIGTERM/SIGINT: graceful stop; a second one exits at once (nothing committed, so nothing lost)."""
    import os
    import signal

    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if pipeline.stopping:
            log.warning("second signal: exiting now; the uncommitted batch will be re-read", extra={"signal": name})
            if on_second is not None:
                on_second()
            os._exit(130)
        pipeline.request_stop(f"signal {name}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


__all__ = ["Pipeline", "PipelineStats", "install_signal_handlers"]
