"""The streaming pipeline against the embedded broker: contracts, poison input, and delivery guarantees."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaAdminClient

from flagstream.streaming.kafka.broker import EmbeddedBroker
from flagstream.contract.dead_letters import read_dead_letter
from support.audit import duplicate_counts, source_offsets, wait_accounted
from support.kafka import post_bytes, produce, produce_posts, read_all
from support.model import BENIGN_TEXT, PROPAGANDA_TEXT, SECTARIAN_TEXT
from support.process import PipelineThread, run_cli
from support.producer import PacedProducer
from support.topics import TopicSet

pytestmark = pytest.mark.timeout(240)


def test_good_posts_reach_scores_and_flagged_ones_review(topics):
    posts = [
        ("g-prop", PROPAGANDA_TEXT, {"lang": "en", "author": "someone", "created_at": "2026-01-02T03:04:05Z",
                                     "url": "https://x.example/1", "meta": {"src": "test"}, "likes": 7}),
        ("g-sect", SECTARIAN_TEXT, {"lang": "en"}),
        ("g-ok-1", BENIGN_TEXT, {}),
        ("g-ok-2", "our team won the match last night at the old stadium", {"meta": None}),
    ]
    sent = produce(topics.bootstrap, topics.posts, [(pid.encode(), post_bytes(pid, text, **f)) for pid, text, f in posts])
    runner = PipelineThread(topics.settings())
    try:
        scores, dlq = wait_accounted(topics, expected_ids={p[0] for p in posts}, timeout_s=60)
    finally:
        assert runner.stop() == 0
    assert dlq == []
    assert sorted(r.key.decode() for r in scores) == sorted(p[0] for p in posts)
    by_id = {json.loads(r.value)["id"]: json.loads(r.value) for r in scores}
    coords = {(m.partition, m.offset) for m in sent}
    for pid, text, _ in posts:
        v = by_id[pid]
        assert set(v) == {"id", "scores", "labels", "model", "source", "scored_at"}
        assert set(v["scores"]) == {"propaganda", "sectarian"}
        assert all(0.0 <= p <= 1.0 for p in v["scores"].values())
        assert v["model"] == {"name": "test-linear", "version": "0.0.1"}
        assert v["source"]["topic"] == topics.posts and (v["source"]["partition"], v["source"]["offset"]) in coords
    assert by_id["g-prop"]["labels"] == ["propaganda"]
    assert by_id["g-sect"]["labels"] == ["sectarian"]
    assert by_id["g-ok-1"]["labels"] == [] and by_id["g-ok-2"]["labels"] == []

    review = read_all(topics.bootstrap, topics.review, min_count=2)
    assert sorted(r.key for r in review) == [b"g-prop", b"g-sect"]
    msg = next(json.loads(r.value) for r in review if r.key == b"g-prop")
    assert msg["id"] == "g-prop" and msg["text"] == PROPAGANDA_TEXT and msg["labels"] == ["propaganda"]
    assert msg["scores"]["propaganda"] >= 0.5 > msg["scores"]["sectarian"]
    assert msg["thresholds"] == {"propaganda": 0.5, "sectarian": 0.5}
    assert msg["model"] == {"name": "test-linear", "version": "0.0.1"}
    assert set(msg["source"]) == {"topic", "partition", "offset", "timestamp"}
    assert msg["source"]["timestamp"].endswith("Z") and msg["flagged_at"].endswith("Z")
    assert (msg["lang"], msg["author"], msg["created_at"], msg["url"], msg["meta"]) == (
        "en", "someone", "2026-01-02T03:04:05Z", "https://x.example/1", {"src": "test"})
    assert msg["extra"] == {"likes": 7}
    assert dict(review[0].headers)["content-type"] == b"application/json"


def test_poison_records_go_to_the_dead_letter_topic_and_good_ones_still_score(topics):
    bad = {
        "not_utf8": (b"k-utf8", b'{"id": "u", "text": "\xff\xfe"}'),
        "not_json": (b"k-json", b"{this is not json"),
        "not_object": (b"k-obj", b'[1, 2, 3]'),
        "missing_id": (None, b'{"text": "no id here"}'),
        "invalid_id": (b"k-id", b'{"id": 12, "text": "numeric id"}'),
        "missing_text": (b"k-notext", b'{"id": "nt"}'),
        "invalid_text": (b"k-badtext", b'{"id": "bt", "text": {"nested": true}}'),
        "text_too_long": (b"k-long", json.dumps({"id": "long", "text": "word " * 200}).encode()),
        "message_too_large": (b"k-huge", json.dumps({"id": "huge", "text": "x", "pad": "p" * 5000}).encode()),
        "empty_message": (b"k-empty", b""),
        "invalid_field": (b"k-field", b'{"id": "f", "text": "t", "meta": "not an object"}'),
    }
    good = [(f"ok-{i}", PROPAGANDA_TEXT if i % 3 == 0 else BENIGN_TEXT) for i in range(12)]
    items: list[tuple] = []
    for i, (pid, text) in enumerate(good):  # interleave so bad and good share batches
        items.append((pid.encode(), post_bytes(pid, text)))
        if i < len(bad):
            key, value = list(bad.values())[i]
            items.append((key, value, [("trace-id", f"t{i}".encode())]))
    produce(topics.bootstrap, topics.posts, items)
    runner = PipelineThread(topics.settings(max_text_chars=500, max_message_bytes=2048, batch_size=64))
    try:
        scores, dlq = wait_accounted(topics, expected_offsets=len(items), timeout_s=60)
    finally:
        assert runner.stop() == 0
    assert sorted(r.key.decode() for r in scores) == sorted(pid for pid, _ in good)
    got = {}
    for r in dlq:
        d = read_dead_letter(r.key, r.value, r.headers)
        got[d.error] = (r, d)
    assert set(got) == set(bad), sorted(got)
    for error, (key, value) in bad.items():
        r, d = got[error]
        assert r.key == key, error
        if error == "message_too_large":
            assert r.value == value[:2048] and d.headers["flagstream.original_size"] == str(len(value)).encode()
        else:
            assert r.value == value, error
        assert d.reason and "\n" not in d.reason
        assert d.source.topic == topics.posts and d.source.offset >= 0 and d.source.partition >= 0
        assert d.source.timestamp_ms and d.source.timestamp_ms > 0
        assert dict(r.headers)["trace-id"].startswith(b"t")
    stats = runner.pipeline.stats
    assert stats.scored == len(good) and sum(stats.dead_lettered.values()) == len(bad)


def test_sigkill_mid_run_then_restart_loses_nothing(topics, stream_proc, capsys):
    n, batch = 8000, 25
    ids = [f"k{i:05d}" for i in range(n)]
    env = topics.env(batch_size=batch, batch_wait_ms=50)
    first = stream_proc(env, name="first")
    first.wait_ready(60)
    paced = PacedProducer(topics.bootstrap, topics.posts, rate=4000,
                          posts=[(pid, PROPAGANDA_TEXT if i % 10 == 0 else f"{BENIGN_TEXT} number {i}")
                                 for i, pid in enumerate(ids)])
    paced.start()
    scored_at_kill = first.wait_metric("flagstream_posts_scored_total", 2000, 60)
    first.kill()  # SIGKILL mid-stream: no flush, no commit, no leave-group
    sent_at_kill = paced.published
    assert scored_at_kill < n - 1000, "the first consumer had (nearly) finished before the kill"
    second = stream_proc(env, name="second")
    paced.finish()
    scores, dlq = wait_accounted(topics, expected_ids=set(ids), timeout_s=120)
    assert second.terminate() == 0
    assert dlq == []
    dups = duplicate_counts(scores)
    max_dup = max(dups.values())
    duplicated = sum(1 for c in dups.values() if c > 1)
    assert len(dups) == n
    assert max_dup <= 2 and duplicated <= batch, (max_dup, duplicated)
    assert all(r.key.decode() == json.loads(r.value)["id"] for r in scores)
    with capsys.disabled():
        print(f"\n[sigkill] posts={n} sent_before_kill={sent_at_kill} scored_before_kill={scored_at_kill:.0f} "
              f"verdicts={len(scores)} "
              f"duplicated_posts={duplicated} max_duplicate_count={max_dup} (batch_size={batch})")


def test_sigterm_finishes_commits_and_restart_rereads_nothing(topics, stream_proc):
    n = 3000
    ids = [f"t{i:05d}" for i in range(n)]
    produce_posts(topics.bootstrap, topics.posts, [(pid, f"{BENIGN_TEXT} {i}") for i, pid in enumerate(ids)])
    env = topics.env(batch_size=20, batch_wait_ms=50)
    first = stream_proc(env, name="first")
    deadline = time.monotonic() + 90
    while len(read_all(topics.bootstrap, topics.scores)) < 200:
        assert time.monotonic() < deadline and first.alive, first.logs()[-2000:]
        time.sleep(0.05)
    assert first.terminate(timeout_s=60) == 0
    stopped = [r for r in first.log_records() if r.get("msg") == "pipeline stopped"]
    assert stopped and stopped[0]["reason"] == "signal SIGTERM"
    after_first = read_all(topics.bootstrap, topics.scores)
    assert len(after_first) == stopped[0]["scored"], "every consumed post was scored and delivered before exit"
    # restart in the same group: continues exactly where the first one committed
    second = stream_proc(env, args=["--stop-after-idle", "3"], name="second")
    assert second.wait(120) == 0
    scores, _ = wait_accounted(topics, expected_ids=set(ids), timeout_s=30)
    dups = duplicate_counts(scores)
    assert len(scores) == n and max(dups.values()) == 1, "a graceful stop must leave nothing uncommitted"
    second_stats = [r for r in second.log_records() if r.get("msg") == "pipeline stopped"][0]
    assert second_stats["consumed"] == n - len(after_first)
    # and a third run re-reads nothing at all
    third = stream_proc(env, args=["--stop-after-idle", "2"], name="third")
    assert third.wait(120) == 0
    third_stats = [r for r in third.log_records() if r.get("msg") == "pipeline stopped"][0]
    assert third_stats["consumed"] == 0


def test_consumers_split_partitions_and_survivors_finish(broker, linear_model_dir, stream_proc):
    ts = TopicSet.unique(broker.bootstrap, linear_model_dir, partitions=6)
    env = ts.env(batch_size=20, batch_wait_ms=50)
    procs = [stream_proc(env, name=f"member{i}") for i in range(3)]

    def assignment(p) -> set[str]:
        try:
            code, body = p.get("/readyz")
        except OSError:
            return set()
        parts = json.loads(body).get("partitions", "")
        return set(filter(None, parts.split(","))) if code == 200 else set()

    deadline = time.monotonic() + 90
    while True:
        owned = [assignment(p) for p in procs]
        if all(owned) and sum(map(len, owned)) == 6 and len(set().union(*owned)) == 6:
            break
        assert time.monotonic() < deadline, f"partitions never split: {owned}"
        time.sleep(0.3)
    assert sorted(map(len, owned)) == [2, 2, 2]

    first_ids = [f"a{i:04d}" for i in range(900)]
    produce_posts(ts.bootstrap, ts.posts, [(pid, f"{BENIGN_TEXT} {pid}") for pid in first_ids])
    scores, _ = wait_accounted(ts, expected_ids=set(first_ids), timeout_s=60)
    for p in procs:  # everybody did some of the work
        assert any(r.get("msg") == "partitions assigned" for r in p.log_records())

    leaving = procs[0]
    assert leaving.terminate() == 0
    deadline = time.monotonic() + 60
    while True:
        owned = [assignment(p) for p in procs[1:]]
        if sum(map(len, owned)) == 6 and len(set().union(*owned)) == 6:
            break
        assert time.monotonic() < deadline, f"survivors never took over: {owned}"
        time.sleep(0.3)
    second_ids = [f"b{i:04d}" for i in range(900)]
    produce_posts(ts.bootstrap, ts.posts, [(pid, f"{BENIGN_TEXT} {pid}") for pid in second_ids])
    scores, dlq = wait_accounted(ts, expected_ids=set(first_ids) | set(second_ids), timeout_s=60)
    assert dlq == [] and len(source_offsets(scores, dlq)) == 1800
    for p in procs[1:]:
        assert p.terminate() == 0


def test_broker_unreachable_at_start_gives_up_with_one_line(topics, tmp_path):
    from flagstream.streaming.kafka.broker import free_port

    env = topics.env(bootstrap_servers=f"127.0.0.1:{free_port()}", startup_timeout_s=4, log_format="json")
    started = time.monotonic()
    res = run_cli(["stream"], env=env, timeout_s=60)
    took = time.monotonic() - started
    assert res.returncode == 2
    err = res.stderr.decode()
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("flagstream stream: error: broker at 127.0.0.1:") and "unreachable after 4s" in last
    retries = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    retries = [r for r in retries if r.get("msg") == "broker unreachable, retrying"]
    assert len(retries) >= 2 and all(r["level"] == "WARNING" for r in retries)
    assert 3.5 <= took < 30


def test_broker_lost_mid_run_pipeline_resumes_on_a_new_broker(own_broker, linear_model_dir, stream_proc):
    ts = TopicSet.unique(own_broker.bootstrap, linear_model_dir)
    proc = stream_proc(ts.env(batch_size=20, batch_wait_ms=50))
    proc.wait_ready(60)
    before = [f"pre{i}" for i in range(100)]
    produce_posts(ts.bootstrap, ts.posts, [(pid, BENIGN_TEXT) for pid in before])
    wait_accounted(ts, expected_ids=set(before), timeout_s=60)

    port = own_broker.port
    own_broker.stop()  # the memory broker loses every topic, offset and group
    deadline = time.monotonic() + 20
    while True:
        code, body = proc.get("/readyz")
        if code == 503 and json.loads(body)["checks"]["broker_reachable"] is False:
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.3)
    time.sleep(3)  # an outage of several seconds: the process must stay up and quiet
    assert proc.alive
    assert proc.get("/healthz")[0] == 200

    replacement = EmbeddedBroker(port=port).start()
    try:
        admin = KafkaAdminClient(bootstrap_servers=replacement.bootstrap)
        try:
            deadline = time.monotonic() + 60  # the pipeline re-creates its topics by itself
            while not {ts.posts, ts.scores, ts.dlq} <= set(admin.list_topics()):
                assert time.monotonic() < deadline, "pipeline did not recreate its topics"
                time.sleep(0.5)
        finally:
            admin.close()
        after = [f"post{i}" for i in range(100)]
        produce_posts(ts.bootstrap, ts.posts, [(pid, BENIGN_TEXT) for pid in after])
        scores, _ = wait_accounted(ts, expected_ids=set(after), timeout_s=90)
        proc.wait_ready(30)
        assert proc.terminate() == 0
    finally:
        replacement.stop()
    recs = proc.log_records()
    assert any(r.get("msg", "").startswith("broker unreachable") for r in recs)
    assert any(r.get("msg", "").startswith("broker reachable again") for r in recs)
    assert len(recs) < 400, f"{len(recs)} log lines: the outage must not flood the log"
    assert "Traceback" not in proc.logs()


def test_exactly_once_flag_commits_outputs_and_offsets_in_one_transaction(topics):
    from kafka import KafkaConsumer, TopicPartition

    ids = [f"x{i}" for i in range(60)]
    produce_posts(topics.bootstrap, topics.posts, [(pid, BENIGN_TEXT) for pid in ids])
    runner = PipelineThread(topics.settings(exactly_once=True, batch_size=16))
    try:
        scores, _ = wait_accounted(topics, expected_ids=set(ids), timeout_s=60)
    finally:
        assert runner.stop() == 0
    assert runner.pipeline.stats.commits >= 4 and not runner.pipeline.stats.checkpoint_failures
    reader = KafkaConsumer(bootstrap_servers=topics.bootstrap, group_id=topics.group, enable_auto_commit=False)
    try:
        committed = sum(reader.committed(TopicPartition(topics.posts, p)) or 0 for p in range(3))
    finally:
        reader.close(autocommit=False)
    assert committed == len(ids)
    assert len(duplicate_counts(scores)) == len(ids)


class _SlowScorer:
    """The linear test model, slowed to a transformer's pace, noting which thread scored each batch."""

    def __init__(self, model_dir, delay_s: float = 0.05) -> None:
        from flagstream.classifier.inference.scoring import load_scorer

        self.inner = load_scorer(model_dir)
        self.info = self.inner.info
        self.delay_s = delay_s
        self.threads: list[str] = []

    def score(self, texts):
        import threading

        self.threads.append(threading.current_thread().name)
        time.sleep(self.delay_s)
        return self.inner.score(texts)


def test_every_post_is_accounted_for_once_with_poison_in_the_middle(topics):
    posts = [(f"ov-{i}", PROPAGANDA_TEXT if i % 5 == 0 else BENIGN_TEXT) for i in range(300)]
    items = [(pid.encode(), post_bytes(pid, text)) for pid, text in posts]
    items.insert(150, (b"k-bad", b"{not json"))  # poison in the middle of the stream
    produce(topics.bootstrap, topics.posts, items)
    scorer = _SlowScorer(topics.model_dir)
    runner = PipelineThread(topics.settings(batch_size=16, batch_wait_ms=20), scorer)
    try:
        scores, dlq = wait_accounted(topics, expected_offsets=len(items), timeout_s=90)
    finally:
        assert runner.stop() == 0
    ids = [r.key.decode() for r in scores]
    assert sorted(ids) == sorted(pid for pid, _ in posts) and len(ids) == len(set(ids))  # each once
    assert [r.key for r in dlq] == [b"k-bad"]
    review = read_all(topics.bootstrap, topics.review, min_count=60)
    assert sorted(r.key.decode() for r in review) == sorted(pid for pid, text in posts if text == PROPAGANDA_TEXT)
    stats = runner.pipeline.stats
    assert stats.scored == 300 and stats.dead_lettered == {"not_json": 1} and stats.commits == stats.batches
