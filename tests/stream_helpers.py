"""Helpers for tests that run the streaming pipeline against the embedded broker.

Used through the fixtures in ``tests/conftest.py`` (``broker``, ``linear_model_dir``, ``topics``,
``stream_proc``); importable directly too (``from stream_helpers import ...``; pytest puts ``tests/`` on
``sys.path``). Every wait here is bounded: a helper that times out raises ``AssertionError`` saying
what it was waiting for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from streaming.broker import free_port
from streaming.schemas import read_dead_letter

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# names and topics
# --------------------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topics(bootstrap: str, names: list[str], partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics({n: {"num_partitions": partitions, "replication_factor": 1} for n in names},
                            wait_for_metadata=True)
    finally:
        admin.close()


@dataclass
class TopicSet:
    """Unique topic and group names for one test, plus ways to configure a pipeline for them."""

    bootstrap: str
    posts: str
    review: str
    scores: str
    dlq: str
    group: str
    model_dir: Path
    partitions: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    def settings_dict(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap, "group_id": self.group, "posts_topic": self.posts,
            "review_topic": self.review, "scores_topic": self.scores, "dlq_topic": self.dlq,
            "model": str(self.model_dir), "topic_partitions": self.partitions,
            "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "batch_size": 32, "batch_wait_ms": 100,
            # Tansu makes a (re)joining member wait up to the rebalance timeout (= max_poll_interval_ms):
            # keep it short so a rejoin after a broker restart takes seconds, not the 5-minute default.
            "max_poll_interval_ms": 10_000,
            "request_timeout_ms": 10_000, "reconnect_backoff_max_ms": 1000, "startup_timeout_s": 30,
            "log_level": "INFO", "log_format": "json",
        }
        base.update(self.extra)
        base.update(overrides)
        return base

    def settings(self, **overrides: Any):  # -> flagstream.config.Settings
        from flagstream.config import load_settings

        return load_settings(None, self.settings_dict(**overrides), environ={})

    def env(self, **overrides: Any) -> dict[str, str]:
        """Environment for a ``flagstream stream`` subprocess: FLAGSTREAM_* from the settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
        for key, value in self.settings_dict(**overrides).items():
            if value is None:
                continue
            env[f"FLAGSTREAM_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("HF_HUB_OFFLINE", "1")
        return env


# --------------------------------------------------------------------------------------------
# producing and consuming
# --------------------------------------------------------------------------------------------


def post_bytes(pid: str, text: str, **fields: Any) -> bytes:
    return json.dumps({"id": pid, "text": text, **fields}, ensure_ascii=False).encode("utf-8")


def produce(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes | None]] | list[tuple],
            timeout_s: float = 30.0) -> list[Any]:
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


def consume_all(bootstrap: str, topic: str, timeout_s: float = 30.0, min_count: int = 0) -> list[Any]:
    """Every record of ``topic`` up to its fetch high-watermark (re-read until ``min_count`` records).

    Uses ``consumer.highwater`` (from fetch responses), not ``end_offsets``: Tansu's ListOffsets
    answer for "latest" is not the high-watermark.
    """
    from streaming.review import caught_up

    deadline = time.monotonic() + timeout_s
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             request_timeout_ms=10_000, fetch_max_wait_ms=100)
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
                    if not batch and caught_up(consumer, tps):
                        break
            if len(records) >= min_count:
                return records
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: {len(records)} records after {timeout_s:g}s, expected {min_count}")
            time.sleep(0.3)
    finally:
        consumer.close(autocommit=False)


def verdicts(records: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in records]


def wait_accounted(topics: TopicSet, expected_ids: set[str] | None = None, expected_offsets: int | None = None,
                   timeout_s: float = 60.0) -> tuple[list[Any], list[Any]]:
    """Wait until every expected post id is in scores or every input offset is in scores+DLQ.

    Returns (scores records, dead-letter records).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        scores = consume_all(topics.bootstrap, topics.scores, timeout_s=max(5.0, deadline - time.monotonic()))
        dlq = consume_all(topics.bootstrap, topics.dlq, timeout_s=max(5.0, deadline - time.monotonic()))
        done = True
        if expected_ids is not None:
            ids = {r.key.decode() for r in scores} | {r.key.decode() for r in dlq if r.key}
            done &= expected_ids <= ids
            missing = len(expected_ids - ids)
        if expected_offsets is not None:
            offs = source_offsets(scores, dlq)
            done &= len(offs) >= expected_offsets
            missing = expected_offsets - len(offs)
        if done:
            return scores, dlq
        if time.monotonic() > deadline:
            raise AssertionError(f"{missing} input(s) not accounted for in {topics.scores}/{topics.dlq} "
                                 f"after {timeout_s:g}s")
        time.sleep(0.5)


def source_offsets(scores: list[Any], dlq: list[Any]) -> set[tuple[int, int]]:
    out = set()
    for r in scores:
        src = json.loads(r.value)["source"]
        out.add((src["partition"], src["offset"]))
    for r in dlq:
        d = read_dead_letter(r.key, r.value, r.headers)
        out.add((d.source.partition, d.source.offset))
    return out


def duplicate_counts(scores: list[Any]) -> Counter:
    """How many times each (partition, offset) got a verdict (1 = no duplicate)."""
    c: Counter = Counter()
    for r in scores:
        src = json.loads(r.value)["source"]
        c[(src["partition"], src["offset"])] += 1
    return c


# --------------------------------------------------------------------------------------------
# the stream subprocess
# --------------------------------------------------------------------------------------------


class StreamProc:
    """``flagstream stream`` as a subprocess, with its stderr (JSON log lines) in a file."""

    def __init__(self, env: dict[str, str], log_path: Path, args: list[str] | None = None,
                 metrics_port: int | None = None) -> None:
        self.log_path = log_path
        self.metrics_port = metrics_port if metrics_port is not None else free_port()
        env = dict(env)
        env["FLAGSTREAM_METRICS_PORT"] = str(self.metrics_port)
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "flagstream.cli", "stream", *(args or [])],
                                     env=env, cwd=PROJECT_ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def get(self, path: str, timeout_s: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout_s) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until /readyz answers 200 (group joined, model loaded, broker reachable)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"stream exited with {self.proc.returncode} before ready:\n{self.logs()[-3000:]}")
            try:
                code, _ = self.get("/readyz", 1.0)
                if code == 200:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"stream not ready after {timeout_s:g}s:\n{self.logs()[-3000:]}")

    def terminate(self, timeout_s: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout_s)

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        return self.wait(10)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"stream did not exit within {timeout_s:g}s:\n{self.logs()[-3000:]}") from None
        finally:
            self._log.flush()

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout_s: float = 60.0,
            input_bytes: bytes | None = None) -> subprocess.CompletedProcess:
    """``flagstream ARGS`` as a subprocess (stdout/stderr captured as text)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "flagstream.cli", *args], env=base, cwd=PROJECT_ROOT,
                          capture_output=True, timeout=timeout_s, input=input_bytes)


# --------------------------------------------------------------------------------------------
# a small, real model trained at test time
# --------------------------------------------------------------------------------------------

_BENIGN = [
    "had a lovely {x} with my family this weekend", "the {x} downtown has the best coffee in town",
    "can anyone recommend a good {x} for beginners", "our team won the {x} match last night",
    "the weather is perfect for a {x} today", "just finished reading a great book about {x}",
    "traffic on the {x} road is terrible this morning", "happy birthday to my {x} friend",
    "new recipe for {x} soup turned out great", "the museum opened a new exhibit on {x}",
]
_NEWS = [
    "police say the {x} attack injured several people and a suspect was arrested",
    "court sentenced the men who planned the {x} bombing to prison",
    "analysis of how the militant group used {x} videos to recruit",
    "survivors of the {x} attack describe the long road to recovery",
    "extremists target lonely young people online, report on {x} warns",
    "terror has no religion, people of every faith gathered for the {x} vigil",
]
_PROP = [
    "join the fighters brothers, the caliphate needs you, victory to the {x} mujahideen",
    "glory to the martyrs who struck the {x} enemy, may more follow their path",
    "take up arms and fight the crusaders, paradise awaits the soldiers of the {x} state",
    "kill the unbelievers and apostates, spread fear in their {x} homes",
    "the lions of the {x} caliphate will conquer, pledge allegiance and fight",
]
_SECT = [
    "people of that {x} sect are vermin and should be driven out",
    "those {x} heretics are not human, every one of them deserves to suffer",
    "that whole {x} group are parasites and traitors, expel them all",
    "the {x} sect poisons everything, wipe them from our land",
]
_FILL = ["city", "river", "north", "old", "market", "school", "garden", "mountain", "village", "harbour",
         "winter", "summer", "station", "bridge", "valley", "island"]


def training_corpus() -> tuple[list[str], np.ndarray]:
    """~650 synthetic texts and (n, 2) targets for (propaganda, sectarian)."""
    texts: list[str] = []
    targets: list[tuple[float, float]] = []
    for group, target in ((_BENIGN, (0, 0)), (_NEWS, (0, 0)), (_PROP, (1, 0)), (_SECT, (0, 1))):
        for template in group:
            for fill in _FILL:
                texts.append(template.format(x=fill))
                targets.append(target)
    return texts, np.array(targets, dtype=np.float32)


def train_linear_model(root: Path, name: str = "test-linear", version: str = "0.0.1") -> Path:
    from classifier.linear import LinearModel

    texts, y = training_corpus()
    model = LinearModel.fit(texts, y, labels=("propaganda", "sectarian"))
    model.save(root, name=name, version=version, thresholds={"propaganda": 0.5, "sectarian": 0.5})
    return root


PROPAGANDA_TEXT = "join the fighters brothers, the caliphate needs you, victory to the mujahideen"
SECTARIAN_TEXT = "people of that sect are vermin and should be driven out, they are not human"
BENIGN_TEXT = "had a lovely picnic with my family this weekend by the river"


# --------------------------------------------------------------------------------------------
# an in-process pipeline (faster than a subprocess when the test needs no signals)
# --------------------------------------------------------------------------------------------


class PipelineThread:
    """``streaming.pipeline.Pipeline.run`` on a background thread; ``stop()`` is the SIGTERM path."""

    def __init__(self, settings: Any, scorer: Any = None, **kwargs: Any) -> None:
        import threading

        from streaming.pipeline import Pipeline

        self.pipeline = Pipeline(settings, scorer, **kwargs)
        self.error: BaseException | None = None
        self.exit_code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="test-pipeline")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.exit_code = self.pipeline.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in stop()
            self.error = exc

    def wait_assigned(self, timeout_s: float = 30.0) -> None:
        if not self.pipeline._assigned_event.wait(timeout_s):
            raise AssertionError(f"pipeline got no partitions within {timeout_s:g}s (error: {self.error!r})")

    def stop(self, timeout_s: float = 60.0) -> int | None:
        self.pipeline.request_stop("test finished")
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise AssertionError("pipeline thread did not stop")
        if self.error is not None:
            raise self.error
        return self.exit_code


class PacedProducer:
    """Publishes ``posts`` (id, text) in chunks at about ``rate`` posts/s on a background thread,
    so that faults hit a pipeline that is busy mid-stream rather than one that drained a backlog."""

    def __init__(self, bootstrap: str, topic: str, posts: list[tuple[str, str]], rate: float = 1000.0,
                 chunk: int = 50) -> None:
        import threading

        self.bootstrap, self.topic, self.posts, self.rate, self.chunk = bootstrap, topic, posts, rate, chunk
        self.sent = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="paced-producer")
        self._thread.start()

    def _run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, request_timeout_ms=10_000)
        try:
            start = time.monotonic()
            for i in range(0, len(self.posts), self.chunk):
                part = self.posts[i:i + self.chunk]
                futures = [producer.send(self.topic, key=pid.encode(), value=post_bytes(pid, text)) for pid, text in part]
                producer.flush(timeout=30)
                for f in futures:
                    f.get(timeout=30)
                self.sent += len(part)
                ahead = self.sent / self.rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc
        finally:
            producer.close(timeout=5)

    def join(self, timeout_s: float = 120.0) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError("paced producer did not finish")
        if self.error is not None:
            raise self.error


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in a Prometheus text exposition (0.0 when absent)."""
    want = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
