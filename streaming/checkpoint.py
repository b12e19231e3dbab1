"""The one object that owns the commit: outputs first, offsets second.

Modelled on quix-streams' ``Checkpoint`` (quixstreams/checkpointing/checkpoint.py): while a batch is
processed, its output records are handed to :meth:`Checkpoint.produce` and its input offsets to
:meth:`Checkpoint.store_offset`; :meth:`Checkpoint.commit` then

1. flushes the producer and waits for every output record's acknowledgement (``acks=all``),
2. checks that each output was delivered,
3. commits the input offsets (``last processed offset + 1`` per partition), and only then
4. starts the next checkpoint.

So an input offset is never committed before all of its outputs are durable: a crash anywhere
re-reads the uncommitted batch (at-least-once; duplicates are bounded by one batch per consumer and
carry the post id as key). Each way a commit can fail has its own exception, so the pipeline can
react precisely (see :mod:`streaming.pipeline`).

``exactly_once=True`` is a flag, not a fork: the producer is transactional, :meth:`produce` opens a
transaction on first use, and step 3 becomes ``send_offsets_to_transaction`` + ``commit_transaction``
(KIP-447 fencing through the consumer's group metadata). Downstream readers then need
``isolation_level=read_committed`` to see each verdict once.
"""

from __future__ import annotations

import logging

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    KafkaTimeoutError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata

from streaming.schemas import OutRecord

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint could not be committed; its input offsets were NOT committed."""


class InvalidStoredOffset(CheckpointError):
    """Offsets within a checkpoint must grow per partition (a bug, never expected)."""


class CheckpointProducerTimeout(CheckpointError):
    """The producer did not get every output acknowledged within the flush timeout (broker gone?)."""


class CheckpointProduceFailed(CheckpointError):
    """The broker refused an output record (delivery error). The producer may be unusable."""


class CheckpointCommitFailed(CheckpointError):
    """The group rebalanced (or fenced us) before the commit: outputs were delivered, offsets were
    not committed, so the next owner of those partitions re-reads the batch (duplicates)."""


class CheckpointCommitTimeout(CheckpointError):
    """The group coordinator did not answer the offset commit in time."""


class CheckpointTransactionFailed(CheckpointError):
    """``exactly_once``: the transaction (outputs + offsets) could not be committed and was aborted."""


_REBALANCED = (CommitFailedError, RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError)


class Checkpoint:
    """Collects one batch's outputs and input offsets, and commits them in the safe order."""

    def __init__(self, consumer: KafkaConsumer, producer: KafkaProducer, exactly_once: bool = False,
                 flush_timeout_s: float = 30.0, commit_timeout_ms: int = 30_000) -> None:
        self.consumer, self.producer = consumer, producer
        self.exactly_once = exactly_once
        self.flush_timeout_s = flush_timeout_s
        self.commit_timeout_ms = commit_timeout_ms
        self._offsets: dict[TopicPartition, int] = {}
        self._futures: list = []
        self._in_transaction = False

    # ---------------------------------------------------------------------------------------
    def empty(self) -> bool:
        return not self._offsets and not self._futures

    @property
    def offsets(self) -> dict[TopicPartition, int]:
        """Last processed offset per partition in this checkpoint."""
        return dict(self._offsets)

    def store_offset(self, topic: str, partition: int, offset: int) -> None:
        tp = TopicPartition(topic, partition)
        stored = self._offsets.get(tp, -1)
        if offset <= stored:
            raise InvalidStoredOffset(f"offset {offset} <= already processed {stored} for {topic}[{partition}]")
        self._offsets[tp] = offset

    def produce(self, topic: str, record: OutRecord) -> None:
        if self.exactly_once and not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True
        self._futures.append(self.producer.send(topic, key=record.key, value=record.value, headers=record.headers))

    # ---------------------------------------------------------------------------------------
    def commit(self) -> dict[TopicPartition, int]:
        """Flush, verify delivery, commit offsets. Returns the committed ``{tp: next offset}``."""
        if self.empty():
            return {}
        # 1-2. every output acknowledged, or no commit at all
        try:
            self.producer.flush(timeout=self.flush_timeout_s)
        except KafkaTimeoutError:
            pending = sum(1 for f in self._futures if not f.is_done)
            raise CheckpointProducerTimeout(
                f"{pending} of {len(self._futures)} output records not acknowledged within {self.flush_timeout_s:g}s"
            ) from None
        for fut in self._futures:
            if not fut.is_done:
                raise CheckpointProducerTimeout("an output record is still in flight after flush")
            if fut.failed():
                exc = fut.exception
                raise CheckpointProduceFailed(f"output record not delivered: {type(exc).__name__}: {exc}") from None
        # 3. offsets
        offsets = {tp: OffsetAndMetadata(off + 1, "", -1) for tp, off in self._offsets.items()}
        if self.exactly_once:
            try:
                if not self._in_transaction:  # batch with no outputs still commits its offsets atomically
                    self.producer.begin_transaction()
                    self._in_transaction = True
                self.producer.send_offsets_to_transaction(offsets, self.consumer.group_metadata())
                self.producer.commit_transaction()
                self._in_transaction = False
            except KafkaError as exc:
                self.abort()
                raise CheckpointTransactionFailed(f"transaction commit failed: {type(exc).__name__}: {exc}") from None
        elif offsets:
            try:
                self.consumer.commit(offsets, timeout_ms=self.commit_timeout_ms)
            except _REBALANCED as exc:
                raise CheckpointCommitFailed(f"offset commit refused, group rebalanced ({type(exc).__name__})") from None
            except KafkaTimeoutError:
                raise CheckpointCommitTimeout(f"offset commit not answered within {self.commit_timeout_ms} ms") from None
            except KafkaError as exc:
                raise CheckpointCommitTimeout(f"offset commit failed: {type(exc).__name__}: {exc}") from None
        committed = {tp: om.offset for tp, om in offsets.items()}
        self._offsets.clear()
        self._futures.clear()
        log.debug("checkpoint committed", extra={"offsets": {f"{tp.topic}[{tp.partition}]": o for tp, o in committed.items()}})
        return committed

    def abort(self) -> None:
        """Drop this checkpoint without committing (and abort the transaction, if any)."""
        if self.exactly_once and self._in_transaction:
            try:
                self.producer.abort_transaction()
            except KafkaError as exc:  # the producer will be replaced by the caller
                log.warning("transaction abort failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        self._in_transaction = False
        self._offsets.clear()
        self._futures.clear()


__all__ = [
    "Checkpoint", "CheckpointError", "InvalidStoredOffset", "CheckpointProducerTimeout", "CheckpointProduceFailed",
    "CheckpointCommitFailed", "CheckpointCommitTimeout", "CheckpointTransactionFailed",
]
