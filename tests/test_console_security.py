"""Issue 29, the console's half: identity the server knows, and no record or request can break it.

HTTP-level: the real app served by uvicorn on a free loopback port, over a ReviewState reading the real
embedded broker (tests/support), and urllib as the client.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from flagstream.config import load_settings
from flagstream.streaming.kafka.broker import free_port
from flagstream.streaming.ops.console.app import create_app
from flagstream.streaming.ops.console.identity import Identity, load_tokens
from flagstream.streaming.ops.console.serve import console_url, token_hint
from flagstream.streaming.ops.console.state import ReviewState
from flagstream.streaming.ops.decisions import read_decisions
from flagstream.contract.decisions import MAX_DECISION_IDS, Decision
from flagstream.streaming.signing import verify

pytestmark = pytest.mark.timeout(180)
THR = {"propaganda": 0.5, "sectarian": 0.5}
KEY = b"console-test-key-" + b"k" * 16
TOKEN_A, TOKEN_B = "token-of-a-" + "a" * 16, "token-of-b-" + "b" * 16


def wait_for(cond: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def settings(broker):
    tag = uuid.uuid4().hex[:8]
    names = {"review_topic": f"review-{tag}", "decisions_topic": f"decisions-{tag}", "dlq_topic": f"dlq-{tag}"}
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    admin.create_topics([NewTopic(n, 1, 1) for n in names.values()])
    admin.close()
    return load_settings(None, {"bootstrap_servers": broker.bootstrap, "startup_timeout_s": 20,
                                "console_max_items": 100, **names}, environ={})


def review_value(pid: str, score: Any = 0.9, campaign: str | None = None) -> bytes:
    body = {"id": pid, "text": f"post {pid}", "labels": ["sectarian"], "scores": {"sectarian": score},
            "thresholds": THR, "model": {"name": "m", "version": "1"}, "source": {"topic": "forum"}}
    if campaign:
        body["campaign"] = {"id": campaign}
    return json.dumps(body).encode()


@contextmanager
def console(settings, identity: Identity, key: bytes | None = None) -> Iterator[tuple[str, ReviewState, KafkaProducer]]:
    """A running console: its state's reader thread, and the app on a free port (base URL yielded)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    state = ReviewState(settings, consumer, producer, key=key)
    state.start()
    import uvicorn

    port = free_port()
    app = create_app(state, token=identity.token, identity=identity, max_body_bytes=settings.console_max_body_bytes)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn")
    try:
        yield f"http://127.0.0.1:{port}", state, producer
    finally:
        server.should_exit = True
        thread.join(10)
        state.stop()
        consumer.close(autocommit=False)
        producer.close(timeout=5)


def call(url: str, headers: dict | None = None, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=hdrs), timeout=20) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def produce(producer: KafkaProducer, topic: str, values: list[bytes]) -> None:
    for v in values:
        producer.send(topic, value=v)
    producer.flush()


def decisions_on(settings) -> list[Decision]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    try:
        return list(read_decisions(consumer, settings, dlq=None))
    finally:
        consumer.close(autocommit=False)


def test_shared_token_console_stamps_the_start_reviewer_never_the_requests(settings):
    """The finding: ``?reviewer=`` or the body's reviewer was accepted, so one shared token could vote as anyone."""
    with console(settings, Identity("rv-start", token=TOKEN_A)) as (base, state, producer):
        produce(producer, settings.review_topic, [review_value("p1")])
        wait_for(lambda: state.group("p:p1") is not None, what="p1 queued")
        code, out = call(base + "/api/decide?reviewer=evil", {"X-Flagstream-Token": TOKEN_A},
                         {"key": "p:p1", "verdicts": {"sectarian": "confirm"}, "reviewer": "evil"})
        assert code == 200 and out["reviewer"] == "rv-start", out
        assert call(base + "/api/config", {"X-Flagstream-Token": TOKEN_A})[1]["reviewer"] == "rv-start"
    (d,) = decisions_on(settings)
    assert d.reviewer == "rv-start" and d.signature is None  # no key: unsigned, and readers will say so


def test_per_reviewer_tokens_name_the_reviewer_and_decisions_are_signed(settings, tmp_path):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN_A: "rv-a", TOKEN_B: "rv-b"}))
    with console(settings, Identity("unused", tokens=load_tokens(tokens)), key=KEY) as (base, state, producer):
        produce(producer, settings.review_topic, [review_value("p1"), review_value("p2")])
        wait_for(lambda: state.group("p:p2") is not None, what="p2 queued")
        assert call(base + "/api/queue", {"X-Flagstream-Token": "no-such-token-" + "x" * 10})[0] == 401
        assert call(base + "/api/queue")[0] == 401
        for key, token, who in (("p:p1", TOKEN_A, "rv-a"), ("p:p2", TOKEN_B, "rv-b")):
            code, out = call(base + "/api/decide", {"X-Flagstream-Token": token},
                             {"key": key, "verdicts": {"sectarian": "reject"}, "reviewer": "rv-a"})
            assert code == 200 and out["reviewer"] == who
    ds = {d.ids[0]: d for d in decisions_on(settings)}
    assert ds["p1"].reviewer == "rv-a" and ds["p2"].reviewer == "rv-b"
    assert all(verify(d, KEY) for d in ds.values())


def test_trusted_header_only_when_configured(settings):
    with console(settings, Identity("rv-start", trusted_header="X-Forwarded-User")) as (base, state, producer):
        assert call(base + "/api/config")[0] == 401  # the proxy always sets it: a request without it is not from there
        assert call(base + "/api/config", {"X-Forwarded-User": "rv-proxy"})[1]["reviewer"] == "rv-proxy"
    with console(settings, Identity("rv-start")) as (base, state, producer):
        assert call(base + "/api/config", {"X-Forwarded-User": "rv-proxy"})[1]["reviewer"] == "rv-start"


def test_bad_tokens_files_are_one_line(tmp_path):
    from flagstream.errors import UserError

    for content, needle in (("{", "not JSON"), ("[]", "non-empty JSON object"), ('{"short": "rv"}', "shorter"),
                            (json.dumps({TOKEN_A: ""}), "non-empty string")):
        (tmp_path / "t.json").write_text(content)
        with pytest.raises(UserError, match=needle):
            load_tokens(tmp_path / "t.json")
    with pytest.raises(UserError, match="cannot be read"):
        load_tokens(tmp_path / "missing.json")


def test_a_campaign_over_the_id_limit_is_decided_in_chunks(settings):
    """The finding: a campaign over 10,000 members could never be decided (one record per decision)."""
    n = 2 * MAX_DECISION_IDS + 7
    settings = settings.model_copy(update={"console_max_items": 10_000})
    with console(settings, Identity("rv-1"), key=KEY) as (base, state, producer):
        produce(producer, settings.review_topic, [review_value(f"c{i}", campaign="camp") for i in range(n)])
        wait_for(lambda: (g := state.group("c:camp")) is not None and len(g.members) == n, what="campaign queued")
        code, out = call(base + "/api/decide", body={"key": "c:camp", "verdicts": {"sectarian": "confirm"}})
        assert code == 200 and len(out["decision_ids"]) == 3 and len(out["ids"]) == n
        assert call(base + "/api/queue")[1]["total"] == 0
    ds = decisions_on(settings)
    assert sorted(len(d.ids) for d in ds) == [7, MAX_DECISION_IDS, MAX_DECISION_IDS]
    assert all(verify(d, KEY) and d.campaign == "camp" for d in ds)


def test_request_bodies_over_the_limit_get_413(settings):
    """The finding: a 30 MB body was parsed."""
    with console(settings, Identity("rv-1")) as (base, state, producer):
        big = json.dumps({"key": "p:x", "verdicts": {"sectarian": "confirm"}, "note": "x" * 200_000}).encode()
        assert call(base + "/api/decide", raw=big)[0] == 413
        assert call(base + "/api/decide", body={"key": "p:none", "verdicts": {"sectarian": "reject"}})[0] == 409


def test_a_non_numeric_score_does_not_break_the_queue_for_everyone(settings):
    """The finding: one review record with a non-numeric score made /api/queue fail, for good."""
    with console(settings, Identity("rv-1")) as (base, state, producer):
        produce(producer, settings.review_topic, [review_value("bad", score="high"), review_value("bad2", score=None),
                                                  b'{"id": "x", "text": "t", "labels": "sectarian"}',
                                                  review_value("good")])
        wait_for(lambda: state.group("p:good") is not None, what="good queued")
        code, out = call(base + "/api/queue")
        assert code == 200 and [r["id"] for r in out["rows"]] == ["good"]
        stats = call(base + "/api/stats")[1]
        assert stats["counts"] == {"skipped_bad_scores": 2, "skipped_bad_labels": 1}


def test_the_reader_survives_a_failing_record_and_reports_itself_stale(settings):
    """The finding: an exception in the reader thread killed it silently and the page served a stale queue.
    Here the dead-letter write of a bad decision fails (its producer is closed): the reader logs, counts,
    and goes on reading; with its consumer gone, /readyz says 503 instead of serving stale data as ready."""
    with console(settings, Identity("rv-1")) as (base, state, producer):
        wait_for(state.caught_up.is_set, what="caught up")
        assert call(base + "/readyz")[0] == 200
        state.producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        state.producer.close(timeout=1)
        produce(producer, settings.decisions_topic, [b'{"not": "a decision"}'])
        produce(producer, settings.review_topic, [review_value("after")])
        wait_for(lambda: state.group("p:after") is not None, what="a record after the failure")
        assert state.counts["skipped_apply_error"] == 1 and state.thread.is_alive()
        state.STALE_AFTER_S = 0.5
        state.consumer.close(autocommit=False)
        wait_for(lambda: call(base + "/readyz")[0] == 503, what="stale console")
        health = call(base + "/readyz")[1]
        assert health["stale"] is True and health["reader_alive"] is True and state.counts["reader_errors"] >= 1
        assert call(base + "/api/queue")[1]["stale"] is True


def test_undecided_and_decided_sets_are_bounded(settings):
    """The finding: the console kept every undecided record and decided id forever."""
    s = settings.model_copy(update={"console_max_items": 100, "console_max_decided": 1000})
    state = ReviewState(s, consumer=None, producer=None)
    for i in range(150):
        state.apply(SimpleNamespace(topic=s.review_topic, partition=0, offset=i, value=review_value(f"p{i}")))
    assert len(state.items) == 100 and "p0" not in state.items and "p149" in state.items
    assert state.counts["evicted_items"] == 50
    for i in range(3):
        state._record(Decision(f"d{i}", tuple(f"x{i}-{j}" for j in range(500)), {"sectarian": "reject"}, "rv",
                               "2026-01-01T00:00:00Z"))
    assert len(state.decided) == 1000 and "x0-0" not in state.decided and state.counts["forgotten_decided"] == 500


def test_the_token_is_never_printed_in_full():
    """The finding: the console token was printed in full to stdout (so into pod logs)."""
    token = "t0k3n-" + "x" * 20 + "wxyz"
    assert token not in console_url("0.0.0.0", 8765)
    hint = token_hint(Identity("rv", token=token))
    assert token not in hint and hint.endswith("...wxyz)") and "FLAGSTREAM_CONSOLE_TOKEN" in hint
    assert "console_tokens_file" in token_hint(Identity("rv", tokens={token: "rv-a"}))


def test_console_command_with_a_tokens_file(settings, tmp_path):
    """The command end to end: per-reviewer tokens off loopback, the printed line names no token, and a bad
    tokens file is one line."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({TOKEN_A: "rv-a"}))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
    env.update({"FLAGSTREAM_BOOTSTRAP_SERVERS": settings.bootstrap_servers, "FLAGSTREAM_STARTUP_TIMEOUT_S": "20",
                "FLAGSTREAM_REVIEW_TOPIC": settings.review_topic, "FLAGSTREAM_DECISIONS_TOPIC": settings.decisions_topic,
                "FLAGSTREAM_DLQ_TOPIC": settings.dlq_topic, "FLAGSTREAM_CONSOLE_HOST": "0.0.0.0",
                "FLAGSTREAM_CONSOLE_PORT": str(port), "FLAGSTREAM_CONSOLE_TOKENS_FILE": str(tokens)})
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "flagstream.cli", "console"], env=env, cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "review console at" in line and "console_tokens_file" in line and TOKEN_A not in line, line
        base = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return call(base + "/api/config")[0] == 401
            except urllib.error.URLError:  # bound, printed, not yet accepting
                return False

        wait_for(answers, what="the console to answer")
        assert call(base + "/api/config", {"X-Flagstream-Token": TOKEN_A})[1]["reviewer"] == "rv-a"
    finally:
        proc.terminate()
        proc.wait(20)
    tokens.write_text('{"short": "rv-a"}')
    r = subprocess.run([sys.executable, "-m", "flagstream.cli", "console"], env=env, cwd=root, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "shorter than 16" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
