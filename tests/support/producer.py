"""The one paced producer: posts published at a steady rate on a background thread.

So that faults hit a pipeline that is busy mid-stream rather than one that drained a backlog.
"""

from __future__ import annotations

import random
import threading
import time

from support.kafka import BIG, post_bytes
from support.model import make_post


class PacedProducer(threading.Thread):
    """Publish posts at ``rate`` per second; ``sent`` holds the acknowledged ids, in order.

    The posts are ``count`` generated ones (:func:`support.model.make_post`, ids ``<prefix>000000``...),
    or ``posts`` as (id, text) pairs, or raw ``records`` as (key, value) pairs (the key is the id).
    ``published`` counts records handed to the client so far (acknowledged or not).
    """

    def __init__(self, bootstrap: str, topic: str, count: int = 0, rate: float = 1000.0, prefix: str = "p",
                 seed: int = 1, *, posts: list[tuple[str, str]] | None = None,
                 records: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(daemon=True, name="paced-producer")
        self.bootstrap, self.topic, self.rate, self.prefix = bootstrap, topic, rate, prefix
        self.rng = random.Random(seed)
        if posts is not None:
            records = [(pid.encode(), post_bytes(pid, text)) for pid, text in posts]
        self.records = records
        self.count = len(records) if records is not None else count
        self.sent: list[str] = []
        self.published = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                     linger_ms=5, request_timeout_ms=10_000, max_block_ms=120_000,
                                     delivery_timeout_ms=120_000, reconnect_backoff_max_ms=1000,
                                     max_request_size=BIG)
            t0 = time.monotonic()
            futures = []
            for i in range(self.count):
                if self._halt.is_set():
                    break
                if self.records is not None:
                    key, value = self.records[i]
                    pid = key.decode()
                else:
                    pid, value = make_post(i, self.rng, self.prefix)
                    key = pid.encode()
                futures.append((pid, producer.send(self.topic, key=key, value=value)))
                self.published = i + 1
                ahead = (i + 1) / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            producer.flush(timeout=120)
            for pid, fut in futures:
                fut.get(timeout=120)
                self.sent.append(pid)
            producer.close(timeout=10)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def finish(self, timeout_s: float = 180.0) -> list[str]:
        """Wait until every post is acknowledged; returns the ids (raises on a producer error)."""
        self.join(timeout_s)
        if self.is_alive():
            raise AssertionError(f"paced producer still running after {timeout_s:g}s")
        if self.error is not None:
            raise AssertionError(f"test producer failed: {self.error!r}")
        return self.sent

    def stop(self) -> None:
        self._halt.set()
