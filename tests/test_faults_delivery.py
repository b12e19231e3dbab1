"""Outputs that cannot be delivered, and a model that cannot score: the stream never stalls on one record.

Against the real embedded broker (issue 14, "the stream must never stall on one record"):

- a valid post whose passthrough fields re-encode larger than ``max_message_bytes`` still gets a review
  record within the limit (the fields are dropped and named), and the partition moves on;
- a post whose review record cannot fit at all is dead-lettered as ``output_too_large``;
- an output the client or broker refuses for good (``MessageSizeTooLargeError``) comes back from the
  checkpoint naming its input, and the rest of the checkpoint still commits (both delivery modes);
- a checkpoint that fails for a retriable reason (a stalled connection) backs off with a bound, shows
  in the metrics and in ``/readyz``, and recovers by itself;
- a model that fails on most posts opens the breaker: nothing committed, nothing dead-lettered, not
  ready, one log line, retried until the model scores again; one bad post still goes to the DLQ alone.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from flagstream.classifier.inference.scoring import load_scorer
from flagstream.streaming.kafka.broker import EmbeddedBroker, free_port
from flagstream.streaming.loop.checkpoint import Checkpoint, CheckpointRecordsRejected
from flagstream.streaming.kafka.clients import Backoff
from flagstream.contract.dead_letters import read_dead_letter
from flagstream.contract.records import OutRecord
from support.audit import wait_accounted
from support.kafka import broker_hides_aborted_records, metric_value, post_bytes, produce, read_all
from support.model import BENIGN_TEXT, PROPAGANDA_TEXT
from support.process import PipelineThread
from support.tcp_proxy import TcpProxy
from support.topics import TopicSet

pytestmark = pytest.mark.timeout(240)


def _run_until_accounted(topics: TopicSet, items: list[tuple[bytes, bytes]], limit: int):
    """Produce ``items``, run the stream with ``max_message_bytes`` = ``limit`` until every post is accounted
    for (scored or dead-lettered), stop it cleanly; returns (runner, score records, dead letters)."""
    produce(topics.bootstrap, topics.posts, items)
    runner = PipelineThread(topics.settings(max_message_bytes=limit, max_text_chars=limit))
    try:
        scores, dlq = wait_accounted(topics, expected_ids={k.decode() for k, _ in items}, timeout_s=90)
    finally:
        assert runner.stop() == 0
    return runner, scores, dlq


def _get(port: int, path: str) -> tuple[int, dict | str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            body = resp.read().decode()
            return resp.status, json.loads(body) if path == "/readyz" else body
    except urllib.error.HTTPError as exc:
        body = exc.read().decode()
        return exc.code, json.loads(body) if path == "/readyz" else body
    except OSError:  # not serving yet (the model loads first)
        return 0, {}


def _wait(cond, timeout_s: float, what: str, poll_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(poll_s)


def _committed(topics: TopicSet) -> int:
    reader = KafkaConsumer(bootstrap_servers=topics.bootstrap, group_id=topics.group, enable_auto_commit=False)
    try:
        return sum(reader.committed(TopicPartition(topics.posts, p)) or 0 for p in range(topics.partitions))
    finally:
        reader.close(autocommit=False)


# --------------------------------------------------------------------------------------------
# outputs too large
# --------------------------------------------------------------------------------------------
def test_review_record_drops_passthrough_that_re_encodes_past_the_limit(topics):
    """Issue 14's stall: ``1e15`` (5 bytes in) becomes ``1000000000000000.0`` (19 bytes out), so a
    190 kB post made a 720 kB review record the producer refused forever. Now ``meta`` is dropped (and
    named), the record fits ``max_message_bytes``, and the posts after it are scored."""
    limit = 200_000
    big = post_bytes("big-meta", PROPAGANDA_TEXT, lang="en")[:-1] + b', "meta": {"x": [' + b",".join(
        [b"1e15"] * 38_000) + b"]}}"
    assert len(big) < limit
    items = [(b"big-meta", big)] + [(f"after-{i}".encode(), post_bytes(f"after-{i}", BENIGN_TEXT)) for i in range(20)]
    runner, scores, dlq = _run_until_accounted(topics, items, limit)
    assert dlq == [] and not runner.pipeline.stats.checkpoint_failures
    assert runner.pipeline.stats.commits == runner.pipeline.stats.batches
    (review,) = read_all(topics.bootstrap, topics.review, min_count=1)
    body = json.loads(review.value)
    assert len(review.value) <= limit
    assert body["id"] == "big-meta" and body["labels"] == ["propaganda"] and body["text"] == PROPAGANDA_TEXT
    assert "meta" not in body and body["dropped_fields"] == ["meta"] and body["lang"] == "en"
    assert dict(review.headers)["flagstream.dropped_fields"] == b"meta"


def test_post_whose_review_record_cannot_fit_is_dead_lettered_output_too_large(topics):
    limit = 4096
    text = (PROPAGANDA_TEXT + " ") * (4000 // (len(PROPAGANDA_TEXT) + 1))
    huge = post_bytes("too-big", text)
    assert len(huge) <= limit < len(huge) + 300  # valid input, but its review record adds ~300 bytes
    items = [(b"too-big", huge)] + [(f"n-{i}".encode(), post_bytes(f"n-{i}", BENIGN_TEXT)) for i in range(10)]
    runner, scores, dlq = _run_until_accounted(topics, items, limit)
    assert sorted(r.key.decode() for r in scores) == sorted(f"n-{i}" for i in range(10))  # the partition moved on
    (dead,) = dlq
    d = read_dead_letter(dead.key, dead.value, dead.headers)
    assert d.error == "output_too_large" and "max_message_bytes=4096" in d.reason and dead.value == huge
    assert read_all(topics.bootstrap, topics.review) == []
    assert runner.pipeline.stats.dead_lettered == {"output_too_large": 1}
    assert all(len(r.value) <= limit for r in scores)


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
def test_checkpoint_names_the_input_of_an_output_refused_for_good(topics, exactly_once):
    """``MessageSizeTooLargeError`` from the real client: the checkpoint raises
    :class:`CheckpointRecordsRejected` with the input's tag instead of a retriable failure."""
    produce(topics.bootstrap, topics.posts, [(b"in", post_bytes("in", BENIGN_TEXT))])
    consumer = KafkaConsumer(bootstrap_servers=topics.bootstrap, group_id=topics.group, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    extra = {"transactional_id": f"refuse-{topics.group}"} if exactly_once else {}
    producer = KafkaProducer(bootstrap_servers=topics.bootstrap, max_request_size=2048, acks="all",
                             enable_idempotence=True, **extra)
    try:
        if exactly_once:
            producer.init_transactions()
        tp = TopicPartition(topics.posts, 0)
        cp = Checkpoint(consumer, producer, exactly_once=exactly_once, flush_timeout_s=10)
        cp.produce(topics.scores, OutRecord(b"small", b"{}", []), tag="input-small")
        cp.produce(topics.review, OutRecord(b"huge", b"x" * 10_000, []), tag="input-huge")
        cp.store_offset(tp.topic, tp.partition, 0)
        with pytest.raises(CheckpointRecordsRejected) as info:
            cp.commit()
        exc = info.value
        assert [r.tag for r in exc.rejected] == ["input-huge"] and exc.aborted is exactly_once
        assert "MessageSizeTooLargeError" in exc.rejected[0].error
        if exactly_once:  # aborted: redo the batch with the refused input replaced
            cp = Checkpoint(consumer, producer, exactly_once=True, flush_timeout_s=10)
            cp.produce(topics.scores, OutRecord(b"small", b"{}", []), tag="input-small")
            cp.store_offset(tp.topic, tp.partition, 0)
        cp.produce(topics.dlq, OutRecord(b"huge", b"dead-lettered", []), tag="input-huge")
        assert cp.commit() == {tp: 1}
    finally:
        producer.close(5)
        consumer.close(autocommit=False)
    # the aborted transaction's copy of "small" stays invisible only where the broker hides aborted records
    aborted_copy = exactly_once and not broker_hides_aborted_records(topics.bootstrap)
    assert [r.key for r in read_all(topics.bootstrap, topics.scores, read_committed=True)] == \
        [b"small"] * (2 if aborted_copy else 1)
    assert [r.value for r in read_all(topics.bootstrap, topics.dlq, read_committed=True)] == [b"dead-lettered"]
    assert read_all(topics.bootstrap, topics.review, read_committed=True) == []


# --------------------------------------------------------------------------------------------
# retriable failures: bounded backoff, metrics, readiness
# --------------------------------------------------------------------------------------------
class _StallingScorer:
    """The real test model; scoring a text with the marker stalls the broker link (once)."""

    def __init__(self, model_dir, proxy: TcpProxy) -> None:
        self.inner, self.proxy = load_scorer(model_dir), proxy
        self.info = self.inner.info
        self.stalled = False

    def score(self, texts):
        if not self.stalled and any("STALL-HERE" in t for t in texts):
            self.stalled = True
            self.proxy.stall()
        return self.inner.score(texts)


def test_retriable_checkpoint_failure_backs_off_shows_in_metrics_and_readiness(tmp_path, linear_model_dir):
    b = Backoff()
    assert [b.failed() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]  # doubling, bounded
    broker_port = free_port()
    with TcpProxy(upstream_port=broker_port) as proxy, \
            EmbeddedBroker(port=broker_port, advertised_port=proxy.port, log_path=tmp_path / "broker.log"):
        topics = TopicSet.unique(proxy.address, linear_model_dir, "retry")
        port = free_port()
        scorer = _StallingScorer(linear_model_dir, proxy)
        runner = PipelineThread(topics.settings(metrics_port=port, request_timeout_ms=2000), scorer)
        try:
            _wait(lambda: _get(port, "/readyz")[0] == 200, 60, "ready")
            ids = [f"r-{i}" for i in range(30)]
            produce(topics.bootstrap, topics.posts,
                    [(pid.encode(), post_bytes(pid, BENIGN_TEXT + (" STALL-HERE" if i == 5 else ""))) for i, pid in
                     enumerate(ids)])
            code, ready = _wait(lambda: (lambda r: r if r[0] == 503 else None)(_get(port, "/readyz")), 60,
                                "/readyz to report the failed delivery")
            assert ready["checks"]["delivering"] is False and ready["checks"]["broker_reachable"] is True
            metrics = _get(port, "/metrics")[1]
            assert metric_value(metrics, "flagstream_checkpoint_consecutive_failures") >= 1
            assert 0 < metric_value(metrics, "flagstream_checkpoint_retry_backoff_seconds") <= 30
            assert metric_value(metrics, "flagstream_commit_failures_total",
                                'error="CheckpointProducerTimeout"') >= 1
            proxy.heal()
            scores, dlq = wait_accounted(topics, expected_ids=set(ids), timeout_s=120)
            _wait(lambda: _get(port, "/readyz")[0] == 200, 60, "ready again after the link healed")
            metrics = _get(port, "/metrics")[1]
            assert metric_value(metrics, "flagstream_checkpoint_consecutive_failures") == 0
            assert metric_value(metrics, "flagstream_checkpoint_retry_backoff_seconds") == 0
        finally:
            proxy.heal()
            assert runner.stop() == 0
    assert dlq == [] and set(ids) <= {r.key.decode() for r in scores}


# --------------------------------------------------------------------------------------------
# the scoring breaker
# --------------------------------------------------------------------------------------------
class _FailingScorer:
    """The real test model behind a switch: ``broken`` makes every call fail; ``poison`` texts always fail."""

    def __init__(self, model_dir, poison: str = "\x00never") -> None:
        self.inner = load_scorer(model_dir)
        self.info = self.inner.info
        self.broken, self.poison = False, poison

    def score(self, texts):
        if self.broken:
            raise RuntimeError("model runtime unavailable")
        if any(self.poison in t for t in texts):
            raise ValueError("this text breaks the tokenizer")
        return self.inner.score(texts)


def test_model_failing_on_most_posts_opens_the_breaker_and_commits_nothing(topics, caplog):
    ids = [f"b-{i}" for i in range(64)]
    produce(topics.bootstrap, topics.posts, [(pid.encode(), post_bytes(pid, BENIGN_TEXT)) for pid in ids])
    scorer = _FailingScorer(topics.model_dir)
    scorer.broken = True
    port = free_port()
    caplog.set_level(logging.INFO)
    runner = PipelineThread(topics.settings(metrics_port=port, batch_size=32, batch_wait_ms=2000), scorer)
    try:
        _wait(lambda: runner.pipeline.stats.breaker_holds >= 3, 60, "three held batches")
        code, ready = _get(port, "/readyz")
        assert code == 503 and ready["checks"]["scoring"] is False
        metrics = _get(port, "/metrics")[1]
        assert metric_value(metrics, "flagstream_scoring_breaker_open") == 1
        assert metric_value(metrics, "flagstream_scoring_breaker_trips_total") == 1
        assert _committed(topics) == 0 and read_all(topics.bootstrap, topics.dlq) == []
        assert read_all(topics.bootstrap, topics.scores) == []
        opened = [r for r in caplog.records if r.getMessage().startswith("scoring breaker open")]
        assert len(opened) == 1, "one line when the breaker opens, not one per retry"
        scorer.broken = False  # the model recovers: the held posts are scored, none was dead-lettered
        scores, dlq = wait_accounted(topics, expected_ids=set(ids), timeout_s=90)
        _wait(lambda: _get(port, "/readyz")[0] == 200, 30, "ready after the breaker closed")
    finally:
        assert runner.stop() == 0
    assert dlq == [] and {r.key.decode() for r in scores} == set(ids)
    assert _committed(topics) == len(ids)
    assert any(r.getMessage().startswith("scoring breaker closed") for r in caplog.records)


def test_one_post_the_model_cannot_score_is_dead_lettered_alone(topics):
    ids = [f"p-{i}" for i in range(40)]
    poison = "POISON-TEXT"
    produce(topics.bootstrap, topics.posts,
            [(pid.encode(), post_bytes(pid, f"{BENIGN_TEXT} {poison}" if i == 17 else BENIGN_TEXT))
             for i, pid in enumerate(ids)])
    runner = PipelineThread(topics.settings(batch_size=32, batch_wait_ms=500), _FailingScorer(topics.model_dir, poison))
    try:
        scores, dlq = wait_accounted(topics, expected_ids=set(ids), timeout_s=60)
    finally:
        assert runner.stop() == 0
    assert [r.key for r in dlq] == [b"p-17"]
    assert read_dead_letter(dlq[0].key, dlq[0].value, dlq[0].headers).error == "scoring_failed"
    assert {r.key.decode() for r in scores} == set(ids) - {"p-17"}
    assert runner.pipeline.stats.breaker_trips == 0 and runner.pipeline.health.scoring_ok
