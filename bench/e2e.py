"""End-to-end ``flagstream stream`` through the embedded broker: throughput, then latency at half load.

Throughput: ``n`` posts are produced first, then one ``flagstream stream`` process (a subprocess, as an
operator runs it) drains them and exits after an idle period. Posts/s comes from the Kafka timestamps
of the verdicts it wrote to the scores topic (first to last), so model loading and group join, which
happen once per process, are not counted; Kafka decode, validation, scoring, produce and commit are.

Latency: a fresh pipeline on fresh topics; once it has scored a warm-up post, posts are produced at a
steady rate of half the measured throughput for ``seconds``; each post's latency is the scores-topic
record timestamp minus the posts-topic record timestamp (the ``source.timestamp`` it carries), both
stamped on this machine's clock. Flagged posts' review-topic latencies are reported beside them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000.0


def _stream_cmd(bootstrap: str, model_dir: Path, prefix: str, extra: Sequence[str] = ()) -> list[str]:
    return [
        sys.executable, "-m", "flagstream.cli", "stream",
        "--bootstrap-servers", bootstrap, "--model", str(model_dir),
        "--group-id", f"{prefix}-group", "--posts-topic", f"{prefix}.posts", "--review-topic", f"{prefix}.review",
        "--scores-topic", f"{prefix}.scores", "--dlq-topic", f"{prefix}.dlq",
        # Group timings stay at their defaults (max_poll_interval_ms 300 s): the stream is measured as shipped. A
        # first join is quick on the embedded broker whatever the interval (3.2 s measured for 10 s, 60 s and 300 s);
        # the 10 s this used to set evicted the member whenever a 512-post me5 batch plus its spans outlasted it.
        "--log-level", "WARNING", "--log-format", "json", *extra,
    ]


def _create_topics(bootstrap: str, names: Sequence[str], partitions: int = 3) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="flagstream-bench")
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(n, partitions, 1) for n in names if n not in existing]
        if new:
            admin.create_topics(new)
    finally:
        admin.close()


def _producer(bootstrap: str):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1, client_id="flagstream-bench-producer")


def _read_topic(bootstrap: str, topic: str, expect: int, timeout_s: float) -> list:
    """Every record of ``topic`` from the beginning, until ``expect`` are read or ``timeout_s`` passes."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="flagstream-bench-reader",
                             consumer_timeout_ms=1000)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


def _read_all(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list:
    """Every record of a topic nobody writes to any more: read up to each partition's high-watermark.

    The fetch high-watermark (``consumer.highwater``), not ``end_offsets()``: ListOffsets under-reports on the
    embedded broker. Reading the whole topic, not a count, is what lets duplicates show.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="flagstream-bench-reader")
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
            marks = [consumer.highwater(tp) for tp in tps]
            if all(m is not None and consumer.position(tp) >= m for tp, m in zip(tps, marks)):
                break
        return out
    finally:
        consumer.close()


def _warnings(stderr_path: Path) -> dict[str, int]:
    """WARNING and ERROR log lines of the stream process, counted by message (checkpoint failures, slow batches)."""
    counts: dict[str, int] = {}
    for line in stderr_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            msg = json.loads(line).get("msg", line)  # streaming/logs.py names the message "msg"
        except (ValueError, AttributeError):
            msg = line
        counts[str(msg)[:120]] = counts.get(str(msg)[:120], 0) + 1
    return counts


def _stop(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _stderr_tail(proc: subprocess.Popen) -> str:
    try:
        err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    except Exception:  # noqa: BLE001
        err = ""
    return " | ".join(err.strip().splitlines()[-3:])


def measure_throughput(bootstrap: str, model_dir: Path, texts: Sequence[str], n: int, env: dict[str, str],
                       timeout_s: float = 600.0) -> dict:
    prefix = "benchtp"
    _create_topics(bootstrap, [f"{prefix}.{t}" for t in ("posts", "review", "scores", "dlq")])
    prod = _producer(bootstrap)
    for i in range(n):
        post = {"id": f"tp{i}", "text": texts[i % len(texts)]}
        prod.send(f"{prefix}.posts", key=post["id"].encode(), value=json.dumps(post).encode())
    prod.flush()
    prod.close()
    started = time.monotonic()
    err_path = Path(tempfile.mkstemp(prefix="flagstream-bench-stream-", suffix=".log")[1])
    with err_path.open("wb") as err:  # a file, not a pipe: a chatty process must never block on a full pipe
        proc = subprocess.Popen(_stream_cmd(bootstrap, model_dir, prefix, ["--stop-after-idle", "4"]),
                                cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _stop(proc)
    wall = time.monotonic() - started
    warnings = _warnings(err_path)
    err_path.unlink()
    records = _read_all(bootstrap, f"{prefix}.scores")
    dead = _read_all(bootstrap, f"{prefix}.dlq")
    ids = {json.loads(r.value)["id"] for r in records}
    dead_keys = {r.key for r in dead}
    if len(ids) + len(dead_keys) < n:
        tail = " | ".join(list(warnings)[-3:])
        return {"error": f"only {len(ids)} posts with verdicts + {len(dead_keys)} dead letters for {n} posts "
                         f"(exit {proc.returncode}): {tail}"}
    rate = stream_rate([r.timestamp for r in records], len(ids))
    bad = sorted({int(r.key.decode()[2:]) % len(texts) for r in dead if r.key})
    reviews = _read_all(bootstrap, f"{prefix}.review")
    return {"posts": n, **rate,
            "process_wall_s": round(wall, 1), "exit_code": proc.returncode, "dead_lettered": len(dead_keys),
            "dead_letter_text_indices": bad, "verdicts": len(records), "duplicate_verdicts": len(records) - len(ids),
            "warnings": warnings, **_explained(reviews)}


MIN_RATE_SPAN_S = 1.0
MIN_RATE_BATCHES = 3


def stream_rate(timestamps_ms: Sequence[float], distinct: int) -> dict[str, Any]:
    """The stream's rate from its output timestamps: ``posts_per_s`` and ``span_s``, or ``rate_refused``.

    The rate runs from the first micro-batch's output to the last one's. With fewer than
    :data:`MIN_RATE_BATCHES` batches or a span under :data:`MIN_RATE_SPAN_S` there is no interval worth
    dividing by (a smoke run's 150 posts on a fast CPU come out in 0.85 s), so no rate is given; that is
    a property of the run's size, not a failure, and the counts are still reported by the caller.
    """
    ts = np.sort(np.array(list(timestamps_ms), dtype=np.float64))
    if len(ts) == 0:
        return {"span_s": 0.0, "batches": 0, "rate_refused": "no verdicts came out"}
    first_batch = int((ts == ts[0]).sum())
    span_s = (ts[-1] - ts[0]) / 1000.0
    batches = len(np.unique(ts))
    if batches < MIN_RATE_BATCHES or span_s < MIN_RATE_SPAN_S:
        return {"span_s": round(span_s, 2), "batches": batches,
                "rate_refused": f"too few posts for a stream rate: {len(ts)} verdicts came out in {batches} "
                                f"batch(es) over {span_s:.2f}s; use --e2e-posts of several batch sizes"}
    # The rate counts distinct posts: a post scored twice (a batch re-read after a rebalance) is work, not output.
    return {"posts_per_s": round((distinct - first_batch) / span_s, 1), "span_s": round(span_s, 2),
            "batches": batches}


def _explained(reviews: Sequence[Any]) -> dict[str, int]:
    """Flagged review records with explanation spans vs past the explanation budget; audit records apart.

    Audit records (unflagged posts sampled for recall, ``audit: true``) carry neither field by design.
    """
    bodies = [json.loads(r.value) for r in reviews]
    flagged = [b for b in bodies if b.get("audit") is not True]
    return {"review_records": len(flagged), "with_spans": sum("spans" in b for b in flagged),
            "spans_skipped": sum("spans_skipped" in b for b in flagged), "audit_records": len(bodies) - len(flagged)}


def measure_latency(bootstrap: str, model_dir: Path, texts: Sequence[str], rate: float, seconds: float,
                    env: dict[str, str], dead_letter_texts: Sequence[int] = ()) -> dict:
    prefix = "benchlat"
    _create_topics(bootstrap, [f"{prefix}.{t}" for t in ("posts", "review", "scores", "dlq")])
    proc = subprocess.Popen(_stream_cmd(bootstrap, model_dir, prefix), cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    prod = _producer(bootstrap)
    try:
        # Warm-up: wait until the pipeline has joined and scored a post.
        prod.send(f"{prefix}.posts", key=b"warm", value=json.dumps({"id": "warm", "text": texts[0]}).encode())
        prod.flush()
        if not _read_topic(bootstrap, f"{prefix}.scores", 1, 180):
            return {"error": f"pipeline scored nothing within 180s: {_stderr_tail(proc)}"}
        n = max(1, int(rate * seconds))
        interval = 1.0 / rate
        t0 = time.perf_counter()
        for i in range(n):
            target = t0 + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            post = {"id": f"lat{i}", "text": texts[i % len(texts)]}
            prod.send(f"{prefix}.posts", key=post["id"].encode(), value=json.dumps(post).encode())
        prod.flush()
        offered = n / (time.perf_counter() - t0)
        bad = set(dead_letter_texts)  # texts the throughput run saw dead-lettered: no verdict to wait for
        scores = _read_topic(bootstrap, f"{prefix}.scores", n + 1 - sum(i % len(texts) in bad for i in range(n)), 120)
    finally:
        prod.close()
        _stop(proc)
    lat = []
    flagged = 0
    for r in scores:
        v = json.loads(r.value)
        flagged += bool(v.get("labels"))
        if v["id"] != "warm":
            lat.append(r.timestamp - _ms(v["source"]["timestamp"]))
    reviews = _read_all(bootstrap, f"{prefix}.review") if flagged else []
    rlat = [r.timestamp - _ms(b["source"]["timestamp"]) for r in reviews
            if (b := json.loads(r.value))["id"] != "warm" and b.get("audit") is not True]
    if not lat:
        return {"error": "no verdicts read back"}
    out = {"offered_posts_per_s": round(offered, 1), "posts": len(lat),
           "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
           "max_ms": round(float(np.max(lat)), 1)}
    if rlat:
        out.update(review_posts=len(rlat), review_p50_ms=round(float(np.percentile(rlat, 50)), 1),
                   review_p99_ms=round(float(np.percentile(rlat, 99)), 1), **_explained(reviews))
    return out


def run_e2e(model_dir: Path, texts: Sequence[str], n: int, latency_seconds: float, threads: int,
            batch_size: int | None = None) -> dict:
    """Both measurements on one embedded broker; ``{"skipped": reason}`` when the pieces are missing.

    ``batch_size`` overrides the stream's default (only for smoke runs, whose few posts would fit one batch)."""
    try:
        from flagstream.streaming.kafka.broker import EmbeddedBroker
        import flagstream.streaming.loop.pipeline  # noqa: F401 - the stream command's engine
    except ImportError as exc:
        return {"skipped": f"streaming pipeline not available ({exc})"}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FLAGSTREAM_SCORING_THREADS": str(threads),
           "PYTHONPATH": str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if batch_size:
        env["FLAGSTREAM_BATCH_SIZE"] = str(batch_size)
    with EmbeddedBroker() as broker:
        tp = measure_throughput(broker.bootstrap, model_dir, texts, n, env)
        if "error" in tp:
            return {"throughput": tp}
        lat = measure_latency(broker.bootstrap, model_dir, texts, tp["posts_per_s"] / 2.0, latency_seconds, env,
                              tp.get("dead_letter_text_indices", ()))
    return {"throughput": tp, "latency_at_half_load": lat}
