"""The one object that commits input offsets: outputs first, offsets second.

Modelled on quix-streams' ``Checkpoint`` (quixstreams/checkpointing/checkpoint.py): while a batch is
processed, its output records are handed to :meth:`Checkpoint.produce` and its input offsets to
:meth:`Checkpoint.store_offset`; :meth:`Checkpoint.commit` then

1. flushes the producer and waits for every output record's acknowledgement (``acks=all``),
2. checks that each output was delivered,
3. commits the input offsets (``last processed offset + 1`` per partition), and only then
4. starts the next checkpoint.

So an input offset is never committed before all of its outputs are durable: a crash anywhere
re-reads the uncommitted batch (at-least-once; duplicates are bounded by one batch per consumer and
carry the post id as key). Nothing else in flagstream calls ``consumer.commit``: offsets whose commit
timed out are handed to the next checkpoint with :meth:`carry`. Each way a commit can fail has its own
exception, so the pipeline can react precisely (see :mod:`flagstream.streaming.kafka.lifecycle`).

An output the broker (or the client) refuses for good -- too large, an invalid record -- raises
:class:`CheckpointRecordsRejected` naming the input each refused output belonged to, so the caller
dead-letters those inputs instead of redoing the batch forever.

``exactly_once=True`` is a flag, not a fork: the producer is transactional, :meth:`produce` opens a
transaction on first use, and step 3 becomes ``send_offsets_to_transaction`` + ``commit_transaction``
(KIP-447 fencing through the consumer's group metadata). kafka-python waits on those without a
deadline; here every transaction wait is bounded by ``transaction_timeout_s``
(:class:`CheckpointTransactionTimeout`). Downstream readers need ``isolation_level=read_committed``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kafka_errors
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaError,
    KafkaTimeoutError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from kafka.structs import OffsetAndMetadata

from flagstream.contract.records import OutRecord
from flagstream.errors import FlagstreamError

log = logging.getLogger(__name__)


class CheckpointError(FlagstreamError, RuntimeError):
    """A checkpoint could not be committed; its input offsets were NOT committed."""


class InvalidStoredOffset(CheckpointError):
    """Offsets within a checkpoint must grow per partition (a bug, never expected)."""


class CheckpointProducerTimeout(CheckpointError):
    """The producer did not get every output acknowledged within the flush timeout (broker gone?)."""


class CheckpointProduceFailed(CheckpointError):
    """The broker refused an output record for a retriable reason. The producer may be unusable."""


class CheckpointCommitFailed(CheckpointError):
    """The group rebalanced (or fenced us) before the commit: outputs were delivered, offsets were
    not committed, so the next owner of those partitions re-reads the batch (duplicates)."""


class CheckpointCommitTimeout(CheckpointError):
    """The group coordinator did not answer the offset commit in time."""


class CheckpointTransactionFailed(CheckpointError):
    """``exactly_once``: the transaction (outputs + offsets) could not be committed and was aborted."""


class CheckpointFenced(CheckpointTransactionFailed):
    """``exactly_once``: a newer producer with this transactional id (a restarted process with the same
    ``instance_id``) fenced this one. Fatal for this process: it is the zombie."""


class CheckpointTransactionTimeout(CheckpointTransactionFailed):
    """``exactly_once``: a transaction step got no answer within ``transaction_timeout_s``."""


@dataclass(frozen=True)
class RejectedOutput:
    """One output the broker or client refused for good, and the input it was produced for."""

    tag: Any  # what the caller passed to :meth:`Checkpoint.produce` (the input record)
    topic: str
    error: str  # exception class and message, one line


class CheckpointRecordsRejected(CheckpointError):
    """Some outputs can never be produced (``MessageSizeTooLargeError``, an invalid record).

    ``aborted`` False (at-least-once): every other output is delivered and the checkpoint still holds
    its offsets; produce a replacement (a dead-letter record) for each rejected input and commit again.
    ``aborted`` True (exactly_once): the transaction was aborted, nothing is delivered or committed;
    redo the batch with those inputs dead-lettered.
    """

    def __init__(self, rejected: list[RejectedOutput], aborted: bool) -> None:
        self.rejected, self.aborted = rejected, aborted
        super().__init__(f"{len(rejected)} output record(s) refused for good, e.g. {rejected[0].error}")


# Produce errors that retrying the same record can never fix.
_RECORD_ERRORS: tuple[type[BaseException], ...] = tuple(
    c for c in (getattr(kafka_errors, n, None) for n in (
        "MessageSizeTooLargeError", "RecordListTooLargeError", "InvalidRecordError", "CorruptRecordError",
        "RecordTooLargeError", "InvalidTopicError")) if isinstance(c, type))
_FENCED: tuple[type[BaseException], ...] = tuple(
    c for c in (getattr(kafka_errors, n, None) for n in ("ProducerFencedError", "InvalidProducerEpochError",
                                                         "TransactionCoordinatorFencedError")) if isinstance(c, type))
_REBALANCED = (CommitFailedError, RebalanceInProgressError, IllegalGenerationError, UnknownMemberIdError)

METRIC_ERROR_NAMES = ("CheckpointProducerTimeout", "CheckpointProduceFailed", "CheckpointCommitFailed",
                      "CheckpointCommitTimeout", "CheckpointTransactionFailed", "CheckpointTransactionTimeout",
                      "CheckpointRecordsRejected", "CheckpointFenced")


class _Refused:
    """A send that the client refused before it left: looks like a failed future."""

    is_done = True

    def __init__(self, exc: BaseException) -> None:
        self.exception = exc

    def failed(self) -> bool:
        return True


def _bounded(call: Callable[[], Any], timeout_s: float, what: str) -> None:
    """Run a blocking kafka-python transaction call with a deadline (it has none of its own).

    On timeout the call keeps waiting on a daemon thread; the caller replaces the producer, whose close
    ends that wait or leaves one idle thread behind.
    """
    box: dict[str, BaseException] = {}

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            box["error"] = exc

    t = threading.Thread(target=run, name=f"flagstream-{what}", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise CheckpointTransactionTimeout(f"{what} not answered within {timeout_s:g}s")
    if "error" in box:
        raise box["error"]


class Checkpoint:
    """Collects one batch's outputs and input offsets, and commits them in the safe order."""

    def __init__(self, consumer: KafkaConsumer, producer: KafkaProducer, exactly_once: bool = False,
                 flush_timeout_s: float = 30.0, commit_timeout_ms: int = 30_000,
                 transaction_timeout_s: float | None = None) -> None:
        self.consumer, self.producer = consumer, producer
        self.exactly_once = exactly_once
        self.flush_timeout_s = flush_timeout_s
        self.commit_timeout_ms = commit_timeout_ms
        self.transaction_timeout_s = transaction_timeout_s or flush_timeout_s
        self._offsets: dict[TopicPartition, int] = {}  # last processed offset per partition
        self._outputs: list[tuple[Any, str, Any]] = []  # (tag, topic, future)
        self._in_transaction = False

    # ---------------------------------------------------------------------------------------
    def empty(self) -> bool:
        return not self._offsets and not self._outputs

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

    def carry(self, next_offsets: dict[TopicPartition, int]) -> None:
        """Also commit ``{tp: next offset}`` left over from an earlier checkpoint whose commit timed out."""
        for tp, nxt in next_offsets.items():
            if nxt - 1 > self._offsets.get(tp, -1):
                self._offsets[tp] = nxt - 1

    def produce(self, topic: str, record: OutRecord, tag: Any = None) -> None:
        """Send one output; ``tag`` (the input record) is handed back if the output is refused for good."""
        self._begin()
        try:
            fut: Any = self.producer.send(topic, key=record.key, value=record.value, headers=record.headers)
        except _RECORD_ERRORS as exc:  # kafka-python checks the size in send() itself
            fut = _Refused(exc)
        except _FENCED as exc:
            raise CheckpointFenced(f"producer fenced: {type(exc).__name__}: {exc}") from None
        except KafkaError as exc:
            # kafka-python's sender thread may meet the fence first; send() then raises a plain KafkaError that
            # carries the fenced error as its argument. Still the zombie: fatal, never a retry.
            if any(isinstance(arg, _FENCED) for arg in exc.args):
                raise CheckpointFenced(f"producer fenced: {type(exc).__name__}: {exc}") from None
            raise
        self._outputs.append((tag, topic, fut))

    def _begin(self) -> None:
        if self.exactly_once and not self._in_transaction:
            try:
                self.producer.begin_transaction()
            except _FENCED as exc:
                raise CheckpointFenced(f"producer fenced: {type(exc).__name__}: {exc}") from None
            self._in_transaction = True

    # ---------------------------------------------------------------------------------------
    def commit(self) -> dict[TopicPartition, int]:
        """Flush, verify delivery, commit offsets. Returns the committed ``{tp: next offset}``."""
        if self.empty():
            return {}
        self._await_outputs()
        offsets = {tp: OffsetAndMetadata(off + 1, "", -1) for tp, off in self._offsets.items()}
        if self.exactly_once:
            try:
                self._begin()  # a batch with no outputs still commits its offsets atomically
                group = self.consumer.group_metadata()
                _bounded(lambda: self.producer.send_offsets_to_transaction(offsets, group),
                         self.transaction_timeout_s, "send-offsets")
                _bounded(self.producer.commit_transaction, self.transaction_timeout_s, "commit-transaction")
                self._in_transaction = False
            except CheckpointTransactionTimeout:
                self.abort()
                raise
            except _FENCED as exc:
                self._in_transaction = False  # a fenced producer can't abort either
                raise CheckpointFenced(f"producer fenced: {type(exc).__name__}: {exc}") from None
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
        self._outputs.clear()
        log.debug("checkpoint committed", extra={"offsets": {f"{tp.topic}[{tp.partition}]": o for tp, o in committed.items()}})
        return committed

    def _await_outputs(self) -> None:
        """Steps 1-2: every output acknowledged, or an exception saying why not."""
        try:
            self.producer.flush(timeout=self.flush_timeout_s)
        except KafkaTimeoutError:
            pending = sum(1 for _, _, f in self._outputs if not f.is_done)
            raise CheckpointProducerTimeout(
                f"{pending} of {len(self._outputs)} output records not acknowledged within {self.flush_timeout_s:g}s"
            ) from None
        rejected: list[RejectedOutput] = []
        delivered: list[tuple[Any, str, Any]] = []
        for tag, topic, fut in self._outputs:
            if not fut.is_done:
                raise CheckpointProducerTimeout("an output record is still in flight after flush")
            if not fut.failed():
                delivered.append((tag, topic, fut))
                continue
            exc = fut.exception
            if isinstance(exc, _FENCED):
                self._in_transaction = False
                raise CheckpointFenced(f"producer fenced: {type(exc).__name__}: {exc}") from None
            if isinstance(exc, _RECORD_ERRORS):
                rejected.append(RejectedOutput(tag, topic, f"{type(exc).__name__}: {exc}"[:300]))
            else:
                raise CheckpointProduceFailed(f"output record not delivered: {type(exc).__name__}: {exc}") from None
        if rejected:
            if self.exactly_once:  # the transaction can't commit with a failed send in it
                self.abort()
                raise CheckpointRecordsRejected(rejected, aborted=True)
            self._outputs = delivered
            raise CheckpointRecordsRejected(rejected, aborted=False)

    def abort(self) -> None:
        """Drop this checkpoint without committing (and abort the transaction, if any)."""
        if self.exactly_once and self._in_transaction:
            try:
                _bounded(self.producer.abort_transaction, self.transaction_timeout_s, "abort-transaction")
            except (KafkaError, CheckpointTransactionTimeout) as exc:  # the producer will be replaced by the caller
                log.warning("transaction abort failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        self._in_transaction = False
        self._offsets.clear()
        self._outputs.clear()


__all__ = [
    "Checkpoint", "CheckpointError", "InvalidStoredOffset", "CheckpointProducerTimeout", "CheckpointProduceFailed",
    "CheckpointCommitFailed", "CheckpointCommitTimeout", "CheckpointTransactionFailed",
    "CheckpointTransactionTimeout", "CheckpointFenced", "CheckpointRecordsRejected", "RejectedOutput",
    "METRIC_ERROR_NAMES",
]
