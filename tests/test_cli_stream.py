"""The stream-facing CLI: one-line errors, metrics/health endpoints, produce/review/broker/demo commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from support.audit import wait_accounted
from support.kafka import metric_value, produce_posts, read_all
from support.model import BENIGN_TEXT, PROPAGANDA_TEXT, SECTARIAN_TEXT
from support.process import ROOT, run_cli

pytestmark = pytest.mark.timeout(180)


def _one_line_error(res: subprocess.CompletedProcess, command: str = "stream") -> str:
    err = res.stderr.decode()
    assert res.returncode == 2, (res.returncode, err)
    assert "Traceback" not in err
    # log lines (JSON, when the command got as far as logging) may come first; the error is one line
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"flagstream {command}: error: ") or lines[0].startswith("flagstream: error: ")
    return lines[0]


@pytest.mark.parametrize("args, needle", [
    (["stream", "--batch-size", "abc"], "batch_size"),
    (["stream", "--batch-size", "0"], "batch_size"),
    (["stream", "--bootstrap-servers", "nohostport"], "bootstrap_servers"),
    (["stream", "--thresholds", "propaganda"], "--thresholds"),
    (["stream", "--thresholds", "propaganda=2"], "thresholds"),
    (["stream", "--no-such-flag"], "unrecognized arguments"),
    (["stream", "--auto-offset-reset", "middle"], "auto_offset_reset"),
    (["stream", "--stop-after-idle", "-1"], "--stop-after-idle"),
    (["produce", "/nonexistent/posts.jsonl"], "does not exist"),
    (["review", "--max", "0"], "--max"),
    (["broker", "--port", "70000"], "--port"),
])
def test_bad_arguments_give_one_line(args, needle):
    line = _one_line_error(run_cli(args, timeout_s=60), args[0])
    assert needle in line


def test_bad_config_file_and_env_give_one_line(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("batch_size: [unclosed\n")
    assert "not valid YAML" in _one_line_error(run_cli(["stream", "--config", str(bad_yaml)]))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("bach_size: 3\n")
    assert "unknown config key" in _one_line_error(run_cli(["stream", "--config", str(unknown)]))
    line = _one_line_error(run_cli(["stream"], env={"FLAGSTREAM_BATCH_WAIT_MS": "soon"}))
    assert "batch_wait_ms" in line


def test_missing_model_gives_one_line(topics, tmp_path):
    res = run_cli(["stream", "--model", str(tmp_path / "no-model")], env=topics.env(model=str(tmp_path / "x")))
    assert "does not exist" in _one_line_error(res)


def test_missing_topics_with_create_topics_off(topics):
    env = topics.env(posts_topic=topics.posts + ".absent", create_topics=False, startup_timeout_s=10)
    line = _one_line_error(run_cli(["stream"], env=env))
    assert "missing" in line and topics.posts + ".absent" in line and "create_topics" in line


def test_metrics_and_health_endpoints(topics, stream_proc):
    proc = stream_proc(topics.env(batch_size=16))
    code, _ = proc.get("/healthz") if _wait_listening(proc) else (None, None)
    assert code == 200
    proc.wait_ready(60)
    code, body = proc.get("/readyz")
    ready = json.loads(body)
    assert code == 200 and ready["ready"] is True
    assert ready["checks"] == {"group_joined": True, "model_loaded": True, "broker_reachable": True,
                               "delivering": True, "scoring": True}
    posts = [(f"m{i}", PROPAGANDA_TEXT if i % 4 == 0 else SECTARIAN_TEXT if i % 4 == 1 else BENIGN_TEXT)
             for i in range(40)]
    produce_posts(topics.bootstrap, topics.posts, posts)
    from support.kafka import produce

    produce(topics.bootstrap, topics.posts, [(b"bad", b"not json"), (b"bad2", b'{"id": "x"}')])
    wait_accounted(topics, expected_offsets=42, timeout_s=60)
    deadline = time.monotonic() + 10
    while metric_value(proc.get("/metrics")[1], "flagstream_posts_consumed_total") < 42:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.5)  # lag gauge refreshes once a second
    text = proc.get("/metrics")[1]
    assert metric_value(text, "flagstream_posts_consumed_total") == 42
    assert metric_value(text, "flagstream_posts_scored_total") == 40
    assert metric_value(text, "flagstream_posts_flagged_total", 'label="propaganda"') == 10
    assert metric_value(text, "flagstream_posts_flagged_total", 'label="sectarian"') == 10
    assert metric_value(text, "flagstream_posts_dead_lettered_total", 'reason="not_json"') == 1
    assert metric_value(text, "flagstream_posts_dead_lettered_total", 'reason="missing_text"') == 1
    assert metric_value(text, "flagstream_batch_size_count") >= 3
    assert metric_value(text, "flagstream_scoring_latency_seconds_count") >= 3
    assert metric_value(text, "flagstream_end_to_end_latency_seconds_count") == 40
    assert 'flagstream_model_info{kind="linear",name="test-linear",version="0.0.1"} 1.0' in text
    lags = [line for line in text.splitlines() if line.startswith("flagstream_consumer_lag{")]
    assert len(lags) == 3 and all(line.endswith(" 0.0") for line in lags), lags
    assert metric_value(text, "flagstream_ready") == 1 and metric_value(text, "flagstream_broker_reachable") == 1
    assert metric_value(text, "flagstream_commits_total") >= 3
    assert proc.get("/nope")[0] == 404
    assert proc.terminate() == 0
    # logs: structured JSON, no post text or usernames above DEBUG
    logs = proc.logs()
    assert PROPAGANDA_TEXT[:20] not in logs and BENIGN_TEXT[:20] not in logs
    assert all(json.loads(line)["level"] in ("INFO", "WARNING", "ERROR") for line in logs.splitlines())


def _wait_listening(proc, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            proc.get("/healthz", 0.5)
            return True
        except OSError:
            time.sleep(0.1)
    return False


def test_debug_logs_one_line_per_batch_without_text(topics, stream_proc):
    proc = stream_proc(topics.env(log_level="DEBUG", batch_size=10))
    proc.wait_ready(60)
    produce_posts(topics.bootstrap, topics.posts, [(f"d{i}", f"secret words {i}") for i in range(30)])
    wait_accounted(topics, expected_ids={f"d{i}" for i in range(30)}, timeout_s=60)
    assert proc.terminate() == 0
    batches = [r for r in proc.log_records() if r.get("msg") == "batch"]
    assert sum(b["records"] for b in batches) == 30 and all(b["level"] == "DEBUG" for b in batches)
    assert "secret words" not in proc.logs()


def test_produce_and_review_commands(topics, tmp_path):
    env = topics.env()
    posts = tmp_path / "posts.jsonl"
    posts.write_text("\n".join(json.dumps({"id": f"r{i}", "text": t}) for i, t in
                           enumerate([PROPAGANDA_TEXT, BENIGN_TEXT, "evil \u202e\x1b[2J text " + SECTARIAN_TEXT]))
                     + "\nnot json\n", encoding="utf-8")
    res = run_cli(["produce", str(posts), "--topic", topics.posts], env=env)
    assert res.returncode == 0, res.stderr.decode()
    assert "published 4 records" in res.stdout.decode() and "1 without a usable id" in res.stdout.decode()
    csv = tmp_path / "posts.csv"
    csv.write_text("id,text,lang\nc1,hello there,en\n", encoding="utf-8")
    assert run_cli(["produce", str(csv)], env=env).returncode == 0
    got = read_all(topics.bootstrap, topics.posts, min_count=5)
    assert sorted(r.key for r in got if r.key) == [b"c1", b"r0", b"r1", b"r2"]
    from support.process import PipelineThread

    runner = PipelineThread(topics.settings())
    try:
        wait_accounted(topics, expected_offsets=5, timeout_s=60)
    finally:
        runner.stop()
    res = run_cli(["review"], env=env)
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode()
    assert "post r0" in out and "post r2" in out and "post r1" not in out
    assert "FLAGGED propaganda" in out and "\x1b" not in out and "\u202e" not in out
    assert "2 flagged post(s)" in res.stderr.decode()
    res = run_cli(["review", "--json", "--max", "1"], env=env)
    assert res.returncode == 0 and len(res.stdout.decode().strip().splitlines()) == 1
    # --follow keeps running until stopped
    follow = subprocess.Popen([sys.executable, "-m", "flagstream.cli", "review", "--follow"], cwd=ROOT,
                              env={**env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(4)
    assert follow.poll() is None
    follow.send_signal(signal.SIGTERM)
    out, _ = follow.communicate(timeout=30)
    assert follow.returncode == 0 and b"post r0" in out


def test_broker_command_starts_and_stops_cleanly():
    proc = subprocess.Popen([sys.executable, "-m", "flagstream.cli", "broker", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("broker ready at 127.0.0.1:"), line
        bootstrap = line.split()[3]
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics({"hello": {"num_partitions": 1, "replication_factor": 1}})
        assert "hello" in admin.list_topics()
        admin.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "broker stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_demo_runs_end_to_end_and_exits_cleanly(linear_model_dir):
    # no --no-console: outside a terminal (as in `make demo` under CI) the demo must still exit by itself
    res = run_cli(["demo", "--model", str(linear_model_dir)], timeout_s=170)
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert "review console: not started (not a terminal)" in out
    assert "=== flagged for review" in out and "=== summary ===" in out
    assert "posts published:        40" in out
    assert "dead-lettered:          5" in out
    assert "post s005" in out and "post s008" in out  # clear propaganda / sectarian samples
    assert "bank matches:           1" in out and "bank match: positive entry" in out  # the seeded bank (issue 33)
    assert "Traceback" not in res.stderr.decode()
