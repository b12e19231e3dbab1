"""Operator-facing behaviour of the one-shot and long-running commands (issue 20), against a real broker.

- stderr, line by line, of every command against a closed port and against the live embedded broker;
- ``flagstream dlq`` filters and ``flagstream dlq replay`` (original key/bytes/headers, replay header,
  a second replay skips what is already replayed);
- ``flagstream review``: full wrapped text, resume with ``--group``, ``--from-end``, dead letters shown
  as such (no ``?@?``), scores never printed as reaching a threshold they do not reach;
- ``create_topics`` auto on the single-broker embedded cluster.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from flagstream.streaming.kafka.broker import free_port
from flagstream.streaming.ops.review import format_pair, render_review
from support.audit import wait_accounted
from support.kafka import create_topics, post_bytes, produce, read_all, unique
from support.model import BENIGN_TEXT, PROPAGANDA_TEXT
from support.process import ROOT as PROJECT_ROOT, PipelineThread, run_cli

pytestmark = pytest.mark.timeout(240)


def _closed_port() -> str:
    return f"127.0.0.1:{free_port()}"  # bound and released: nothing listens there


def _json_lines(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines()]


# ----------------------------------------------------------------------------------------------
# closed port: exactly one line, no kafka-python chatter
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["produce", "{posts}"], ["review"], ["dlq"], ["dlq", "replay", "--all"], ["review", "--group", "g"], ["shadow-report"],
])
def test_one_shot_commands_against_a_closed_port_print_one_line(command, tmp_path):
    posts = tmp_path / "p.jsonl"
    posts.write_text(json.dumps({"id": "a", "text": "t"}) + "\n")
    args = [a.format(posts=posts) for a in command]
    addr = _closed_port()
    res = run_cli([*args, "--bootstrap-servers", addr, "--startup-timeout-s", "2"])
    err = res.stderr.decode()
    assert res.returncode == 2, err
    assert err.splitlines() == [
        f"flagstream {args[0]}: error: broker at {addr} unreachable after 2s ({err.split('(')[1].split(')')[0]}); "
        "check --bootstrap-servers and that the broker is running"], err
    assert res.stdout.decode() == ""


def test_stream_against_a_closed_port_logs_only_its_own_lines(linear_model_dir):
    addr = _closed_port()
    # A configured audit seed (as in production): unset, the stream also warns once that its audit sample is
    # drawn with a random per-process key (tests/test_audit_seed.py).
    res = run_cli(["stream", "--bootstrap-servers", addr, "--startup-timeout-s", "3", "--model", str(linear_model_dir),
                   "--log-format", "json"], env={"FLAGSTREAM_AUDIT_SEED": "ops-test-audit-seed"}, timeout_s=90)
    lines = res.stderr.decode().splitlines()
    assert res.returncode == 2, lines
    assert lines[-1].startswith(f"flagstream stream: error: broker at {addr} unreachable after 3s"), lines
    records = _json_lines("\n".join(lines[:-1]))  # every other line is one JSON log record
    assert records[0]["msg"] == "pipeline starting"
    assert {r["logger"] for r in records} <= {"flagstream.streaming.loop.pipeline", "flagstream.streaming.kafka.clients"}, records
    assert all(r["msg"] == "broker unreachable, retrying" and r["level"] == "WARNING" for r in records[1:]), records


# ----------------------------------------------------------------------------------------------
# live broker: every stderr line accounted for
# ----------------------------------------------------------------------------------------------
def test_commands_against_a_live_broker_stderr_line_by_line(topics, tmp_path):
    env = topics.env(log_format="json")
    posts = tmp_path / "p.jsonl"
    posts.write_text("\n".join([json.dumps({"id": "l1", "text": PROPAGANDA_TEXT}),
                                json.dumps({"id": "l2", "text": BENIGN_TEXT}), "not json"]) + "\n")
    res = run_cli(["produce", str(posts)], env=env)
    assert res.returncode == 0, res.stderr.decode()
    recs = _json_lines(res.stderr.decode())
    assert [r["msg"].split(":")[0] for r in recs] == ["topics"], recs  # topics exist: only the decision line
    assert recs[0]["level"] == "INFO" and "will be created: single-broker cluster" in recs[0]["msg"]

    res = run_cli(["stream", "--stop-after-idle", "4", "--progress-interval-s", "1"], env=env, timeout_s=120)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    recs = _json_lines(res.stderr.decode())  # all JSON: no progress bar, no stray prints
    levels = {r["level"] for r in recs}
    assert levels <= {"INFO"}, [r for r in recs if r["level"] != "INFO"]
    assert not [r for r in recs if r["logger"].startswith("kafka")], recs
    msgs = [r["msg"] for r in recs]
    assert msgs[0] == "pipeline starting" and msgs[-1] == "pipeline stopped"
    progress = [r for r in recs if r["msg"].startswith("progress: ")]
    assert progress and sum(r["consumed"] for r in progress) == 3, progress
    assert sum(r["flagged"] for r in progress) == 1 and sum(r["dead_lettered"] for r in progress) == 1
    assert all({"posts_per_s", "lag", "flagged"} <= set(r) for r in progress)
    assert "text" not in json.dumps(progress) or PROPAGANDA_TEXT not in json.dumps(recs)

    res = run_cli(["review"], env=env)
    assert res.returncode == 0
    assert res.stderr.decode().splitlines() == [f"1 flagged post(s) on {topics.review}"]  # no kafka.cluster ERROR
    res = run_cli(["dlq"], env=env)
    assert res.returncode == 0
    assert res.stderr.decode().splitlines() == [f"1 dead letter(s) on {topics.dlq} matched"]
    assert res.stdout.decode().count("\n") == 1 and "not_json" in res.stdout.decode()


# ----------------------------------------------------------------------------------------------
# dead letters
# ----------------------------------------------------------------------------------------------
def test_dlq_list_filters_and_replay_is_idempotent(broker):
    base = unique("dlq")
    posts, dlq = f"{base}.posts", f"{base}.dlq"
    create_topics(broker.bootstrap, [posts, dlq], 2)
    from flagstream.contract.dead_letters import dead_letter_record
    from flagstream.contract.records import Rejection, Source

    def letter(key, value, error, part, off, failed_at, headers=None):
        r = dead_letter_record(key, value, headers, Rejection(error, f"{error} here"), Source(posts, part, off, 1000),
                               max_message_bytes=64, failed_at=failed_at)
        return (r.key, r.value, r.headers)

    letters = [
        letter(b"k1", b'{"id": "k1", "txt": "typo"}', "missing_text", 0, 5, "2026-12-01T10:00:00.000Z",
               [("trace", b"abc")]),
        letter(None, b"\xff\xfe not utf8", "not_utf8", 1, 7, "2026-12-02T10:00:00.000Z"),
        letter(b"k3", b'{"id": "k3"}', "missing_text", 1, 9, "2026-12-03T10:00:00.000Z"),
        letter(b"k4", b"x" * 100, "message_too_large", 0, 11, "2026-12-03T11:00:00.000Z"),
    ]
    # all on partition 0 of the DLQ topic, in order, so their DLQ offsets are 0..3
    produce(broker.bootstrap, dlq, [(k, v, h) for k, v, h in letters])
    env = {"FLAGSTREAM_BOOTSTRAP_SERVERS": broker.bootstrap, "FLAGSTREAM_DLQ_TOPIC": dlq,
           "FLAGSTREAM_POSTS_TOPIC": posts}

    def listed(*args):
        res = run_cli(["dlq", *args, "--json"], env=env)
        assert res.returncode == 0, res.stderr.decode()
        return [json.loads(line) for line in res.stdout.decode().splitlines()]

    assert len(listed()) == 4
    keys = lambda *a: sorted(str(e["key"]) for e in listed(*a))  # noqa: E731
    assert keys("--reason", "missing_text") == ["k1", "k3"]
    assert keys("--source-partition", "1") == ["None", "k3"]
    assert keys("--since", "2026-12-02", "--until", "2026-12-03T10:30:00Z") == ["None", "k3"]
    assert [e["failed_at"] for e in listed()] == sorted(e["failed_at"] for e in listed())  # oldest first
    one = listed("--reason", "not_utf8")[0]
    assert one["source"]["partition"] == 1 and one["source"]["offset"] == 7 and one["value_bytes"] == 11
    text = run_cli(["dlq", "--reason", "not_utf8"], env=env).stdout.decode()
    assert "not utf8" not in text and "not_utf8" in text and f"{posts}[1]@7" in text  # never the value

    assert run_cli(["dlq", "replay"], env=env).returncode == 2  # no selection and no --all: refused
    res = run_cli(["dlq", "replay", "--all"], env=env)
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode()
    assert out.count("replayed ") == 3 and "skipped" in out and "cut to max_message_bytes" in out
    replayed = read_all(broker.bootstrap, posts, min_count=3)
    assert len(replayed) == 3
    by_key = {r.key: r for r in replayed}
    first = by_key[b"k1"]
    assert first.value == b'{"id": "k1", "txt": "typo"}'  # original bytes
    h = dict(first.headers)
    assert h["trace"] == b"abc" and h["flagstream.replay.of"].startswith(f"{dlq}[".encode())
    assert "flagstream.error" not in h and "flagstream.replayed_at" in h
    assert by_key[None].value == b"\xff\xfe not utf8"

    again = run_cli(["dlq", "replay", "--all"], env=env)
    assert again.returncode == 0
    assert again.stdout.decode().count("already replayed to") == 3
    assert "replayed 0, already replayed 3, not replayable 1, over the replay limit 0 of 4" in again.stderr.decode()
    assert len(read_all(broker.bootstrap, posts)) == 3  # nothing published twice
    forced = run_cli(["dlq", "replay", "--reason", "missing_text", "--force"], env=env)
    assert forced.returncode == 0 and "replayed 2," in forced.stderr.decode()
    assert len(read_all(broker.bootstrap, posts, min_count=5)) == 5

    # review pointed at the dead-letter topic says what it is looking at
    res = run_cli(["review", "--review-topic", dlq], env=env)
    out = res.stdout.decode()
    assert res.returncode == 0 and "?@?" not in out and "?[?]" not in out
    assert out.count("■ dead letter at ") == 4 and "missing_text" in out
    assert "0 flagged post(s)" in res.stderr.decode() and "4 dead letter(s)" in res.stderr.decode()


# ----------------------------------------------------------------------------------------------
# review text view
# ----------------------------------------------------------------------------------------------
def test_scores_never_read_as_reaching_a_threshold_they_miss():
    assert format_pair(0.949, 0.95) == ("0.949", "0.950")
    assert format_pair(0.9499999, 0.95)[0] != format_pair(0.9499999, 0.95)[1]
    assert format_pair(0.952, 0.952969) == ("0.952", "0.953")
    assert format_pair(0.9531, 0.952969) == ("0.9531", "0.9530")
    assert format_pair(0.98, 0.95) == ("0.98", "0.95")
    msg = {"id": "p1", "text": "x", "labels": [], "scores": {"propaganda": 0.949},
           "thresholds": {"propaganda": 0.95}, "model": {"name": "m", "version": "1"},
           "source": {"topic": "posts", "partition": 0, "offset": 1}}
    out = render_review(msg)
    assert "propaganda 0.949 (threshold 0.950)" in out and "FLAGGED" not in out


def test_review_shows_full_wrapped_text_and_resumes(broker):
    base = unique("rv")
    review = f"{base}.review"
    create_topics(broker.bootstrap, [review], 1)
    long_text = "First paragraph " + "word " * 120 + "END1\n\nsecond paragraph\nthird line END2"

    def rec(i, text):
        return (f"r{i}".encode(), json.dumps({
            "id": f"r{i}", "text": text, "labels": ["propaganda"], "scores": {"propaganda": 0.99},
            "thresholds": {"propaganda": 0.95}, "model": {"name": "m", "version": "1"},
            "source": {"topic": "posts", "partition": 0, "offset": i}, "flagged_at": "2026-12-03T10:00:00Z"}).encode())

    produce(broker.bootstrap, review, [rec(0, long_text), rec(1, "short")])
    env = {"FLAGSTREAM_BOOTSTRAP_SERVERS": broker.bootstrap, "FLAGSTREAM_REVIEW_TOPIC": review}
    out = run_cli(["review", "--width", "60"], env=env).stdout.decode()
    assert "END1" in out and "END2" in out and "…" not in out  # nothing cut
    body = out.split("■ post r1")[0].splitlines()
    assert all(len(line) <= 60 for line in body[3:]), body
    assert "  second paragraph" in body and "  third line END2" in body  # line breaks kept
    # a named reader resumes where it stopped
    first = run_cli(["review", "--group", f"{base}-alice", "--max", "1"], env=env)
    assert "post r0" in first.stdout.decode() and "post r1" not in first.stdout.decode()
    second = run_cli(["review", "--group", f"{base}-alice"], env=env)
    assert "post r0" not in second.stdout.decode() and "post r1" in second.stdout.decode()
    third = run_cli(["review", "--group", f"{base}-alice"], env=env)
    assert third.returncode == 0 and third.stdout.decode() == ""
    # --from-end: only what arrives after the start
    follow = subprocess.Popen([sys.executable, "-m", "flagstream.cli", "review", "--from-end"], cwd=PROJECT_ROOT,
                              env={**_base_env(), **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(5)
        produce(broker.bootstrap, review, [rec(2, "arrived later")])
        time.sleep(3)
        follow.send_signal(signal.SIGTERM)
        out, err = follow.communicate(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
    assert follow.returncode == 0, err.decode()
    assert b"post r2" in out and b"post r0" not in out and b"post r1" not in out


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}


# ----------------------------------------------------------------------------------------------
# create_topics
# ----------------------------------------------------------------------------------------------
def test_create_topics_auto_and_off_on_the_embedded_broker(broker):
    from flagstream.config import load_settings
    from flagstream.streaming.kafka.clients import make_admin
    from flagstream.streaming.kafka.topics import MissingTopics, creation_policy, ensure_topics

    name = unique("ct")
    auto = load_settings(None, {"bootstrap_servers": broker.bootstrap}, environ={})
    assert auto.create_topics is None  # the default is auto
    admin = make_admin(auto)
    try:
        create, why = creation_policy(auto, admin)
        assert create and "single-broker cluster" in why
        off = load_settings(None, {"bootstrap_servers": broker.bootstrap, "create_topics": False}, environ={})
        with pytest.raises(MissingTopics) as err:
            ensure_topics(off, admin, [name])
        assert name in str(err.value) and "create_topics: true" in str(err.value)
        assert ensure_topics(auto, admin, [name]) == [name]
        assert name in admin.list_topics()
    finally:
        admin.close()


def test_progress_line_counts_and_rate(caplog):
    from collections import Counter
    from types import SimpleNamespace

    from flagstream.streaming.loop.progress import ProgressLog

    now = [0.0]
    prog = ProgressLog(10.0, clock=lambda: now[0])
    stats = SimpleNamespace(consumed=0, scored=0, flagged=Counter(), dead_lettered=Counter())
    assert prog.maybe_log(stats, 0) is None  # first call: the interval starts now
    now[0] = 5.0
    assert prog.maybe_log(stats, 0) is None  # interval not over
    now[0] = 10.0
    assert prog.maybe_log(stats, 0) is None  # idle, no lag: silent
    stats.consumed, stats.scored = 50, 48
    stats.flagged.update({"propaganda": 3, "sectarian": 1})
    stats.dead_lettered.update({"not_json": 2})
    now[0] = 20.0
    with caplog.at_level("INFO"):
        fields = prog.maybe_log(stats, 7)
    assert fields["posts_per_s"] == 5.0 and fields["lag"] == 7 and fields["dead_lettered"] == 2
    assert fields["flagged_by_label"] == {"propaganda": 3, "sectarian": 1}
    assert caplog.records[-1].getMessage() == ("progress: 5.0 posts/s, lag 7, flagged propaganda 3, sectarian 1, "
                                              "2 dead-lettered in the last 10s")
    now[0] = 30.0
    assert prog.maybe_log(stats, 4)["consumed"] == 0  # lag alone is news: a stuck consumer shows


def test_json_logs_switch_off_progress_bars_and_kafka_watchdog_noise(capsys):
    import io
    import logging

    from flagstream.streaming.logs import setup_logging

    stream = io.StringIO()
    setup_logging("INFO", "json", stream=stream)
    from transformers.utils import logging as hf_logging

    assert not hf_logging.is_progress_bar_enabled()  # no "Loading weights" bar in a JSON log
    logging.getLogger("kafka.net.selector").warning(
        "Task %s ran for %.3fs (>%.3fs threshold). It is blocking the event loop -- likely a tight sync loop", "t", 1.7, 0.1)
    logging.getLogger("kafka.conn").warning("a real kafka warning")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["msg"] for r in lines] == ["a real kafka warning"]
