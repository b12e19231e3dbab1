"""Recovery: the Kafka clients of one pipeline, and how they come back after a failure.

- :class:`Clients` connects at start (TLS/SASL checked first, topics ensured, retried with backoff until
  ``startup_timeout_s``), replaces the producer after a failed checkpoint or a broker restart, re-checks
  topics when the broker answers again, and rewinds the consumer to a batch that was not committed.
- With ``exactly_once`` the producer's ``transactional_id`` is stable per consumer instance,
  ``flagstream-<group_id>-<instance_id>``: a restarted process (same ``instance_id``) fences its zombie
  and aborts the zombie's open transaction at ``init_transactions``, so ``read_committed`` readers are
  not held back until the broker's transaction timeout. Without ``instance_id`` the id is random per
  process (a warning says so at start).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from flagstream.errors import UserError
from flagstream.streaming.kafka.clients import (Backoff, BrokerUnavailable, make_admin, make_consumer, make_producer,
                                                retry_until)
from flagstream.streaming.kafka.security import ensure_transport
from flagstream.streaming.kafka.topics import ensure_topics

log = logging.getLogger(__name__)


def transactional_id(settings: Any) -> str:
    instance = getattr(settings, "instance_id", None)
    if not instance:
        return f"flagstream-{settings.group_id}-{uuid.uuid4().hex[:12]}"
    return f"flagstream-{settings.group_id}-{instance}"


class Clients:
    """Consumer, producer and their recovery, for one pipeline."""

    def __init__(self, settings: Any, stop: threading.Event, warn: Callable[..., None]) -> None:
        self.s, self._stop, self._warn = settings, stop, warn
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self.txn_id = transactional_id(settings) if settings.exactly_once else None

    def connect(self) -> None:
        """Topics, consumer, producer; raises BrokerUnavailable after ``startup_timeout_s``."""
        s = self.s
        if s.exactly_once and not getattr(s, "instance_id", None):
            log.warning("exactly_once without instance_id: the transactional id is random, so a restarted "
                        "process cannot fence its predecessor; set instance_id (stable per member)")

        def topics(timeout_s: float) -> None:
            # One probe with the client's own TLS/SASL settings first: an untrusted certificate or wrong
            # credentials end the command at once with the cause, instead of a retry loop.
            check = ensure_transport(s, timeout_s)
            if not check.ok:
                raise BrokerUnavailable(check.retriable or "not reachable")
            self.ensure_topics(timeout_s)

        retry_until("topics", topics, s, should_stop=self._stop.is_set)
        self.consumer = retry_until("consumer", lambda t: make_consumer(s, t), s, should_stop=self._stop.is_set)
        self.producer = retry_until("producer", self._build_producer, s, should_stop=self._stop.is_set)

    def replay_review(self, annotator: Any) -> None:
        """Replay the review topic into the annotator's campaign index (a reader joining no group)."""
        reader = retry_until("review reader", lambda t: make_consumer(self.s, t, group_id=None), self.s,
                             should_stop=self._stop.is_set)
        try:
            annotator.rebuild(self.s, reader)
        finally:
            reader.close(autocommit=False)

    def ensure_topics(self, timeout_s: float) -> list[str]:
        admin = make_admin(self.s, timeout_s)
        try:
            return ensure_topics(self.s, admin)
        except KafkaError as exc:  # broker went away between bootstrap and the request
            raise BrokerUnavailable(f"{type(exc).__name__}: {exc}") from None
        finally:
            admin.close()

    def _build_producer(self, timeout_s: float) -> KafkaProducer:
        if self.txn_id is None:
            return make_producer(self.s, timeout_s)
        producer = make_producer(self.s, timeout_s, transactional_id=self.txn_id,
                                 max_block_ms=max(self.s.request_timeout_ms, 5_000))
        producer.init_transactions()  # bounded by max_block_ms; fences an older producer with this id
        return producer

    def replace_producer(self) -> None:
        """Close the producer (its state may be unusable) and build a new one; waits while the broker is away."""
        old, self.producer = self.producer, None
        if old is not None:
            try:
                old.close(timeout=0)
            except Exception:  # noqa: BLE001
                pass
        backoff = Backoff(first_s=0.5, max_s=10.0)
        while True:
            try:
                self.producer = self._build_producer(5.0)
                return
            except (BrokerUnavailable, KafkaError) as exc:
                if self._stop.is_set():
                    # stopping while the broker is down: nothing can be delivered; exit without commit
                    raise UserError("stopped while the broker was unreachable; the uncommitted batch will be "
                                    "re-read") from None
                delay = backoff.failed()
                self._warn("producer", f"cannot create producer, retrying in {delay:g}s", error=str(exc))
                self._stop.wait(delay)

    def rewind(self, records: list[Any]) -> None:
        """Seek every still-assigned partition of ``records`` back to its first record (re-read them)."""
        assert self.consumer is not None
        first: dict[TopicPartition, int] = {}
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            first[tp] = min(first.get(tp, rec.offset), rec.offset)
        assigned = self.consumer.assignment()
        for tp, off in first.items():
            if tp in assigned:
                try:
                    self.consumer.seek(tp, off)
                except Exception as exc:  # noqa: BLE001 - partition moved meanwhile: its owner re-reads
                    log.debug("seek failed", extra={"partition": f"{tp.topic}[{tp.partition}]", "error": str(exc)})

    def after_reconnect(self) -> bool:
        """The broker answers again: topics and producer (positions: the batcher). False = try again later."""
        try:
            created = self.ensure_topics(5.0)
            if created:
                log.warning("topics were missing after the broker came back (empty broker?); recreated them",
                            extra={"topics": created})
        except (BrokerUnavailable, KafkaError, UserError) as exc:
            self._warn("reconnect", "re-checking topics failed; will retry", error=str(exc))
            return False
        self.replace_producer()
        return True

    def close(self) -> None:
        if self.consumer is not None:
            try:
                self.consumer.close(autocommit=False, timeout_ms=min(self.s.request_timeout_ms, 10_000))
            except Exception as exc:  # noqa: BLE001 - closing must not mask the real exit path
                log.warning("consumer close failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        if self.producer is not None:
            try:
                self.producer.close(timeout=10)
            except Exception as exc:  # noqa: BLE001
                log.warning("producer close failed", extra={"error": f"{type(exc).__name__}: {exc}"})


__all__ = ["Clients", "transactional_id"]
