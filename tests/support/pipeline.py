"""Fault-suite harness: a real model, real ``flagstream stream`` processes, and an audit ledger.

- :func:`train_linear_model` trains the project's own TF-IDF + logistic-regression model on a
  synthetic corpus the test writes (no hard-coded verdicts, no downloads).
- :class:`StreamProcess` runs ``python -m flagstream.cli stream`` as a child process configured
  through ``FLAGSTREAM_*`` variables only (so the harness doesn't depend on which flags exist),
  with its own process group; :meth:`kill` is a real SIGKILL.
- :class:`PacedProducer` publishes posts keyed by id at a steady rate in a background thread,
  so faults hit the pipeline mid-stream rather than after it has drained a backlog.
- :func:`audit` reads the scores and dead-letter topics from the beginning and accounts for
  every id sent: missing ids, and duplicates (an id seen more than once).
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

_PROP = ["the enemy must be crushed join our glorious struggle", "martyrdom awaits the true fighters",
         "rise up and take arms for the cause", "our banner will fly over their cities"]
_SECT = ["those heretics are vermin and must be cleansed", "the other sect are traitors by birth",
         "never trust their kind they poison the nation", "drive the apostates out of our streets"]
_NEUTRAL = ["the weather is lovely this morning", "our team won the match last night",
            "new recipe for lentil soup is great", "traffic on the bridge is slow today",
            "the library opens at nine tomorrow", "prices at the market went up again"]


def synthetic_corpus(n: int = 600, seed: int = 7) -> tuple[list[str], np.ndarray]:
    rng = random.Random(seed)
    texts, y = [], []
    for i in range(n):
        kind = i % 3
        base = rng.choice((_PROP, _SECT, _NEUTRAL)[kind])
        noise = " ".join(rng.choice(_NEUTRAL).split()[: rng.randint(1, 4)])
        texts.append(f"{base} {noise} #{rng.randint(0, 50)}")
        y.append([1.0 if kind == 0 else 0.0, 1.0 if kind == 1 else 0.0])
    return texts, np.array(y, dtype=np.float64)


def train_linear_model(root: Path) -> Path:
    """Train and save a small real model; returns its directory."""
    from classifier.linear import LinearModel

    texts, y = synthetic_corpus()
    model = LinearModel.fit(texts, y)
    out = root / "linear-model"
    model.save(out, name="fault-linear", version="1", thresholds={"propaganda": 0.5, "sectarian": 0.5})
    return out


def post_text(i: int, rng: random.Random) -> str:
    return f"{rng.choice(_PROP + _SECT + _NEUTRAL + _NEUTRAL)} n{i}"


# --------------------------------------------------------------------------------------------
@dataclass
class Topics:
    posts: str
    scores: str
    review: str
    dlq: str

    @classmethod
    def unique(cls, tag: str) -> "Topics":
        return cls(f"{tag}.posts", f"{tag}.scores", f"{tag}.review", f"{tag}.dlq")


def stream_env(bootstrap: str, group: str, topics: Topics, model_dir: Path, **extra: Any) -> dict[str, str]:
    env = {
        "FLAGSTREAM_BOOTSTRAP_SERVERS": bootstrap,
        "FLAGSTREAM_GROUP_ID": group,
        "FLAGSTREAM_POSTS_TOPIC": topics.posts,
        "FLAGSTREAM_SCORES_TOPIC": topics.scores,
        "FLAGSTREAM_REVIEW_TOPIC": topics.review,
        "FLAGSTREAM_DLQ_TOPIC": topics.dlq,
        "FLAGSTREAM_MODEL": str(model_dir),
        "FLAGSTREAM_TOPIC_PARTITIONS": "4",
        "FLAGSTREAM_SESSION_TIMEOUT_MS": "6000",
        "FLAGSTREAM_HEARTBEAT_INTERVAL_MS": "1000",
        "FLAGSTREAM_MAX_POLL_INTERVAL_MS": "10000",
        "FLAGSTREAM_REQUEST_TIMEOUT_MS": "8000",
        "FLAGSTREAM_RECONNECT_BACKOFF_MAX_MS": "1000",
        "FLAGSTREAM_STARTUP_TIMEOUT_S": "60",
        "FLAGSTREAM_BATCH_SIZE": "64",
        "FLAGSTREAM_BATCH_WAIT_MS": "100",
        "FLAGSTREAM_LOG_FORMAT": "json",
        "FLAGSTREAM_LOG_LEVEL": "INFO",
        "FLAGSTREAM_SCORING_THREADS": "1",
    }
    env.update({f"FLAGSTREAM_{k.upper()}": str(v) for k, v in extra.items()})
    return env


@dataclass
class StreamProcess:
    """One ``flagstream stream`` child process."""

    env: dict[str, str]
    log_dir: Path
    name: str = "stream"
    proc: subprocess.Popen | None = None
    starts: int = 0

    def start(self) -> "StreamProcess":
        self.starts += 1
        log = open(self.log_dir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
        env.update(self.env)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen([sys.executable, "-m", "flagstream.cli", "stream"], cwd=ROOT, env=env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it doesn't exit in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def cpu_seconds(self) -> float:
        """User+system CPU time of the process so far (Linux /proc)."""
        with open(f"/proc/{self.pid}/stat") as fh:
            parts = fh.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def log_text(self) -> str:
        out = []
        for p in sorted(self.log_dir.glob(f"{self.name}-*.log")):
            out.append(p.read_text(errors="replace"))
        return "\n".join(out)


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 4) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        for t in topics:
            try:
                admin.create_topics([NewTopic(t, partitions, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def make_post(i: int, rng: random.Random, prefix: str = "p") -> tuple[str, bytes]:
    pid = f"{prefix}{i:06d}"
    return pid, json.dumps({"id": pid, "text": post_text(i, rng), "lang": "en"}).encode()


class PacedProducer(threading.Thread):
    """Publish ``count`` posts at ``rate`` per second; ``sent`` holds the acknowledged ids."""

    def __init__(self, bootstrap: str, topic: str, count: int, rate: float, prefix: str = "p", seed: int = 1,
                 records: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(daemon=True, name="paced-producer")
        self.bootstrap, self.topic, self.count, self.rate, self.prefix = bootstrap, topic, count, rate, prefix
        self.rng = random.Random(seed)
        self.records = records
        self.sent: list[str] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        from kafka import KafkaProducer

        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True,
                                     linger_ms=5, request_timeout_ms=10_000, max_block_ms=120_000,
                                     delivery_timeout_ms=120_000, reconnect_backoff_max_ms=1000,
                                     max_request_size=16 * 1024 * 1024)
            t0 = time.monotonic()
            futures = []
            items = self.records if self.records is not None else None
            n = len(items) if items is not None else self.count
            for i in range(n):
                if self._halt.is_set():
                    break
                if items is not None:
                    key, value = items[i]
                    pid = key.decode()
                else:
                    pid, value = make_post(i, self.rng, self.prefix)
                    key = pid.encode()
                futures.append((pid, producer.send(self.topic, key=key, value=value)))
                ahead = (i + 1) / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            producer.flush(timeout=120)
            for pid, fut in futures:
                fut.get(timeout=120)
                self.sent.append(pid)
            producer.close(timeout=10)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def stop(self) -> None:
        self._halt.set()


@dataclass
class Audit:
    sent: int
    scored_ids: collections.Counter = field(default_factory=collections.Counter)
    dlq_ids: collections.Counter = field(default_factory=collections.Counter)
    review_ids: collections.Counter = field(default_factory=collections.Counter)
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

    def line(self, fault: str) -> str:
        return (f"FAULT-RESULT fault={fault} sent={self.sent} accounted={self.accounted} "
                f"missing={len(self.missing)} duplicates={self.duplicates} max_times_scored={self.max_times_scored} "
                f"dead_lettered={len(self.dlq_ids)}")


def _read_all(bootstrap: str, topic: str, idle_s: float = 3.0, timeout_s: float = 60.0) -> list[Any]:
    """Every record of ``topic`` from the beginning (stops after ``idle_s`` with nothing new)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", request_timeout_ms=10_000,
                             max_partition_fetch_bytes=16 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    try:
        deadline = time.monotonic() + timeout_s
        parts = None
        while parts is None and time.monotonic() < deadline:
            parts = consumer.partitions_for_topic(topic)
            if parts is None:
                time.sleep(0.5)
        if not parts:
            return []
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            got = sum(len(v) for v in batch.values())
            for recs in batch.values():
                out.extend(recs)
            if got:
                last_new = time.monotonic()
            elif time.monotonic() - last_new > idle_s:
                done = all(consumer.position(tp) >= (consumer.highwater(tp) or 0) for tp in tps
                           if consumer.highwater(tp) is not None)
                if done or time.monotonic() - last_new > idle_s * 3:
                    break
        return out
    finally:
        consumer.close()


def audit(bootstrap: str, topics: Topics, sent_ids: Iterable[str], key_is_id_in_dlq: bool = True) -> Audit:
    sent = set(sent_ids)
    result = Audit(sent=len(sent))
    for rec in _read_all(bootstrap, topics.scores):
        try:
            pid = json.loads(rec.value)["id"]
        except (ValueError, KeyError, TypeError):
            pid = (rec.key or b"").decode("utf-8", "replace")
        result.scored_ids[pid] += 1
    for rec in _read_all(bootstrap, topics.dlq, idle_s=2.0):
        result.dlq_ids[(rec.key or b"").decode("utf-8", "replace")] += 1
    result.missing = sent - set(result.scored_ids) - set(result.dlq_ids)
    return result


class Collector(threading.Thread):
    """Continuously reads the scores and dead-letter topics; counts ids as they arrive."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
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
                    tps = []
                    for t in missing:
                        parts = consumer.partitions_for_topic(t)
                        if parts:
                            assigned.add(t)
                    for t in assigned:
                        tps += [TopicPartition(t, p) for p in consumer.partitions_for_topic(t) or ()]
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
                                try:
                                    pid = json.loads(rec.value)["id"]
                                except (ValueError, KeyError, TypeError):
                                    pid = (rec.key or b"").decode("utf-8", "replace")
                                self.scored[pid] += 1
                            else:
                                self.dead[(rec.key or b"").decode("utf-8", "replace")] += 1
            consumer.close()
        except BaseException as exc:  # noqa: BLE001
            self.error = exc

    def seen(self) -> set[str]:
        with self._lock:
            return set(self.scored) | set(self.dead)

    def wait_for(self, ids: Iterable[str], timeout_s: float) -> set[str]:
        """Wait until every id was seen; returns the ids still missing at the deadline."""
        want = set(ids)
        deadline = time.monotonic() + timeout_s
        while True:
            missing = want - self.seen()
            if not missing or time.monotonic() > deadline or self.error is not None:
                return missing
            time.sleep(0.5)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def report(result: "Audit", fault: str, **extra: Any) -> str:
    line = result.line(fault) + "".join(f" {k}={v}" for k, v in extra.items())
    print("\n" + line, flush=True)
    out = os.environ.get("FAULT_REPORT_FILE")
    if out:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return line


def tail(text: str, n: int = 2500) -> str:
    return text[-n:]


def assert_running(*procs: StreamProcess) -> None:
    """Fail with the process log when a pipeline process died on its own."""
    for p in procs:
        if p.proc is not None and p.proc.poll() is not None:
            raise AssertionError(f"{p.name} exited with code {p.proc.returncode} on its own:\n{tail(p.log_text())}")


def wait_until_seen(col: Collector, ids: Iterable[str], timeout_s: float, procs: Iterable[StreamProcess] = (),
                    no_progress_s: float = 60.0) -> set[str]:
    """Like :meth:`Collector.wait_for` but fails early when a pipeline process crashed, and gives
    up after ``no_progress_s`` without a single new id (lost posts never arrive; waiting for the
    full deadline would only make the suite slow)."""
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
        if (not missing or now > deadline or col.error is not None
                or now - last_progress > no_progress_s):
            return missing
        time.sleep(0.5)


try:
    import pytest

    @pytest.fixture(scope="session")
    def fault_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
        """A linear model trained once per session on the synthetic corpus."""
        return train_linear_model(tmp_path_factory.mktemp("fault-model"))
except ImportError:  # pragma: no cover - harness used outside pytest
    pass


def warm_up(bootstrap: str, topics: Topics, collector: Collector, procs: Iterable[StreamProcess],
            timeout_s: float = 120.0, count: int = 20) -> None:
    """Publish a few posts and wait until they are scored: the group has formed and is consuming.

    Faults injected before this point would only test start-up, not a running pipeline.
    """
    warm = PacedProducer(bootstrap, topics.posts, count, 1000, prefix="warm", seed=99)
    warm.start()
    warm.join(timeout_s)
    assert warm.error is None, f"warm-up producer failed: {warm.error!r}"
    missing = wait_until_seen(collector, warm.sent, timeout_s, procs)
    assert not missing, f"pipeline did not score the warm-up posts within {timeout_s:.0f}s"

