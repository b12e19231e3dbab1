"""The bank topic: a compacted Kafka topic every stream process reads from the start (docs/banks.md).

Key: the entry id (UTF-8). Value: the entry's JSON (:mod:`flagstream.streaming.banks.entries`), or a tombstone
(null value) when an entry is removed. Compaction keeps the latest value per key, so the topic stays the size of
the bank, and every reader that replays it (a second consumer, a restarted one) ends with the same bank: readers
apply records in order, last value wins, whether or not the broker has compacted yet.

Each reader uses its own consumer with no group (``assign`` + ``seek_to_beginning``), so it sees every partition;
:meth:`BankReader.catch_up` blocks until it has read up to the high-watermark, :meth:`BankReader.refresh` takes
whatever arrived since without blocking (the stream calls it once per batch).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from flagstream.errors import UserError
from flagstream.streaming.banks.entries import BadEntry, BankEntry, parse_entry
from flagstream.streaming.banks.index import Bank
from flagstream.streaming.kafka.clients import make_admin, make_consumer, retry_until
from flagstream.streaming.kafka.topics import creation_policy
from flagstream.streaming.ops.review import caught_up

log = logging.getLogger(__name__)

BANK_SCHEMA = b"bank.v1"


def ensure_bank_topic(settings: Any) -> None:
    """Create the bank topic (``cleanup.policy=compact``) when missing and the creation policy allows it.

    Raises:
        UserError: the topic is missing and may not be created, or creating it failed.
    """
    admin = retry_until("topics", lambda t: make_admin(settings, t), settings)
    try:
        if settings.bank_topic in set(admin.list_topics()):
            return
        create, _ = creation_policy(settings, admin)
        if not create:
            raise UserError(f"bank topic {settings.bank_topic} is missing; create it with cleanup.policy=compact, "
                            f"or set create_topics: true")
        try:
            admin.create_topics([NewTopic(settings.bank_topic, settings.topic_partitions, settings.replication_factor,
                                          topic_configs={"cleanup.policy": "compact"})])
        except TopicAlreadyExistsError:
            pass
        except KafkaError as exc:
            if "already exists" not in str(exc).lower():
                raise UserError(f"cannot create bank topic {settings.bank_topic}: {exc}") from None
    finally:
        admin.close()


def write_entries(producer: KafkaProducer, topic: str, entries: Iterable[BankEntry], timeout_s: float = 30.0) -> int:
    """Produce entries (key = entry id) and wait for every acknowledgement; returns how many."""
    futures = [producer.send(topic, key=e.entry_id.encode("utf-8"), value=e.to_json(),
                             headers=[("flagstream.schema", BANK_SCHEMA)]) for e in entries]
    for f in futures:
        f.get(timeout=timeout_s)
    return len(futures)


def remove_entries(producer: KafkaProducer, topic: str, entry_ids: Iterable[str], timeout_s: float = 30.0) -> int:
    """Produce a tombstone per id (compaction then drops the entry); returns how many."""
    futures = [producer.send(topic, key=i.encode("utf-8"), value=None) for i in entry_ids]
    for f in futures:
        f.get(timeout=timeout_s)
    return len(futures)


class BankReader:
    """A :class:`Bank` kept in step with the bank topic."""

    def __init__(self, settings: Any, bank: Bank | None = None) -> None:
        self.settings = settings
        self.bank = bank or Bank.from_settings(settings)
        self.consumer: KafkaConsumer | None = None
        self.invalid = 0  # records that were not valid entries (skipped, logged without content)

    def open(self) -> BankReader:
        """Connect and assign every partition of the bank topic from the beginning."""
        s = self.settings
        c = retry_until("bank consumer", lambda t: make_consumer(s, t, group_id=None, enable_auto_commit=False), s)
        deadline = time.monotonic() + s.startup_timeout_s
        parts = c.partitions_for_topic(s.bank_topic)
        while not parts and time.monotonic() < deadline:
            time.sleep(0.2)
            parts = c.partitions_for_topic(s.bank_topic)
        if not parts:
            c.close()
            raise UserError(f"bank topic {s.bank_topic} not found on {s.bootstrap_servers}; run `flagstream bank "
                            f"list` once or set create_topics: true")
        tps = [TopicPartition(s.bank_topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        self.consumer, self._tps = c, tps
        return self

    def _apply(self, records: Iterable[Any]) -> int:
        n = 0
        for rec in records:
            key = rec.key.decode("utf-8", "replace") if rec.key else ""
            if rec.value is None:
                self.bank.apply(key, None)
            else:
                try:
                    self.bank.apply(key, parse_entry(rec.value))
                except BadEntry as exc:
                    self.invalid += 1
                    log.warning("invalid bank record skipped", extra={"partition": rec.partition,
                                                                       "offset": rec.offset, "reason": str(exc)})
            n += 1
        return n

    def refresh(self, timeout_ms: int = 0) -> int:
        """Apply whatever arrived; returns the number of records read."""
        assert self.consumer is not None, "open() first"
        got = self.consumer.poll(timeout_ms=timeout_ms, max_records=5000)
        return sum(self._apply(recs) for recs in got.values())

    def catch_up(self, timeout_s: float = 60.0) -> Bank:
        """Read until every partition's position reaches its high-watermark (the whole bank as of now).

        Raises:
            UserError: the topic could not be read to its end within ``timeout_s``.
        """
        assert self.consumer is not None, "open() first"
        c = self.consumer
        deadline = time.monotonic() + timeout_s
        while True:
            self.refresh(timeout_ms=200)
            if caught_up(c, self._tps):
                return self.bank
            if time.monotonic() > deadline:
                raise UserError(f"could not read the bank topic {self.settings.bank_topic} to its end in "
                                f"{timeout_s:g}s; is the broker reachable?")

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close(autocommit=False)
            self.consumer = None


def read_bank(settings: Any, timeout_s: float = 60.0) -> Bank:
    """The whole bank as of now (one-shot commands)."""
    reader = BankReader(settings).open()
    try:
        return reader.catch_up(timeout_s)
    finally:
        reader.close()


__all__ = ["BANK_SCHEMA", "BankReader", "ensure_bank_topic", "read_bank", "remove_entries", "write_entries"]
