"""Kafka plumbing for tests: names, topics, producing, reading a topic back, metrics text."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

BIG = 16 * 1024 * 1024


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 3) -> None:
    """Create the topics that do not exist yet (existing ones are left alone)."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        for name in names:
            try:
                admin.create_topics([NewTopic(name, partitions, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def post_bytes(pid: str, text: str, **fields: Any) -> bytes:
    return json.dumps({"id": pid, "text": text, **fields}, ensure_ascii=False).encode("utf-8")


def produce(bootstrap: str, topic: str, items: list[tuple], timeout_s: float = 30.0) -> list[Any]:
    """Send (key, value[, headers]) tuples, wait for every ack, return the RecordMetadata list."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=20_000_000,
                             request_timeout_ms=10_000)
    try:
        futures = [producer.send(topic, key=item[0], value=item[1], headers=list(item[2]) if len(item) > 2 else None)
                   for item in items]
        producer.flush(timeout=timeout_s)
        return [f.get(timeout=timeout_s) for f in futures]
    finally:
        producer.close(timeout=5)


def produce_posts(bootstrap: str, topic: str, posts: list[tuple[str, str]]) -> list[Any]:
    return produce(bootstrap, topic, [(pid.encode(), post_bytes(pid, text)) for pid, text in posts])


def read_all(bootstrap: str, topic: str, timeout_s: float = 60.0, min_count: int = 0,
             read_committed: bool = False) -> list[Any]:
    """Every record of ``topic`` up to its fetch high-watermark (re-read until ``min_count`` records).

    Uses ``consumer.highwater`` (from fetch responses), not ``end_offsets``: Tansu's ListOffsets answer
    for "latest" is not the high-watermark. ``read_committed``: what a transactional reader sees (it
    stops at the last stable offset, so an open transaction holds it back).
    """
    from flagstream.streaming.ops.review import caught_up

    deadline = time.monotonic() + timeout_s
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             request_timeout_ms=10_000, fetch_max_wait_ms=100, max_partition_fetch_bytes=BIG,
                             fetch_max_bytes=4 * BIG,
                             isolation_level="read_committed" if read_committed else "read_uncommitted")
    try:
        while True:
            parts = consumer.partitions_for_topic(topic)
            records: list[Any] = []
            if parts:
                tps = [TopicPartition(topic, p) for p in sorted(parts)]
                consumer.assign(tps)
                consumer.seek_to_beginning(*tps)
                while True:
                    if time.monotonic() > deadline:
                        raise AssertionError(f"timed out reading {topic} up to its high-watermark")
                    batch = consumer.poll(timeout_ms=200)
                    for recs in batch.values():
                        records.extend(recs)
                    if not batch and (read_committed or caught_up(consumer, tps)):
                        if not read_committed or _idle_twice(consumer):
                            break
            if len(records) >= min_count:
                return records
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: {len(records)} records after {timeout_s:g}s, expected {min_count}")
            time.sleep(0.3)
    finally:
        consumer.close(autocommit=False)


def _idle_twice(consumer: KafkaConsumer) -> bool:
    """read_committed stops short of the high-watermark (transaction markers): two empty polls = done."""
    return not consumer.poll(timeout_ms=500) and not consumer.poll(timeout_ms=500)


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in a Prometheus text exposition (0.0 when absent)."""
    want = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


_HIDES_ABORTED: dict[str, bool] = {}


def broker_hides_aborted_records(bootstrap: str) -> bool:
    """Does a ``read_committed`` reader on this broker skip records of aborted transactions?

    Real Kafka lists aborted transactions in fetch responses so readers can skip them; Tansu 0.6 (the
    test broker) hides open transactions (the last stable offset works) but not aborted ones. Tests of
    exactly-once assert zero duplicates where the broker can deliver that, and say so where it can't.
    """
    if bootstrap not in _HIDES_ABORTED:
        topic = unique("abort-probe")
        create_topics(bootstrap, [topic], 1)
        producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=unique("probe"), acks="all",
                                 enable_idempotence=True)
        try:
            producer.init_transactions()
            producer.begin_transaction()
            producer.send(topic, key=b"aborted", value=b"1")
            producer.flush(10)
            producer.abort_transaction()
            producer.begin_transaction()
            producer.send(topic, key=b"committed", value=b"2")
            producer.commit_transaction()
        finally:
            producer.close(5)
        keys = [r.key for r in read_all(bootstrap, topic, read_committed=True, min_count=1)]
        _HIDES_ABORTED[bootstrap] = keys == [b"committed"]
    return _HIDES_ABORTED[bootstrap]
