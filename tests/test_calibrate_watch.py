"""``flagstream calibrate --from-decisions --watch``: periodic recalibration that writes candidates, never swaps.

The feed, review records and decisions are the synthetic ones of ``test_calibrate_decisions`` (known truth,
real broker). The watcher runs as the CLI runs it (a subprocess, ``--max-rounds`` to end it).
"""

from __future__ import annotations

import pytest

from flagstream.classifier.manifest import read_manifest, sha256_file
from test_calibrate_decisions import cli, env_for, feed_topics, true_best, write_feed  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(300)


def test_watch_writes_a_candidate_when_the_proposal_moves_and_only_then(broker, linear_model_dir, feed_topics, tmp_path):
    src = read_manifest(linear_model_dir)
    served_manifest = sha256_file(linear_model_dir / "manifest.json")
    env = env_for(broker, feed_topics, linear_model_dir)
    out = tmp_path / "candidates"

    # no decisions yet: the round says so and the watcher keeps going (2 rounds, nothing written)
    r = cli(["calibrate", "--from-decisions", "--output", str(out), "--target-precision", "0.8",
             "--watch", "0.5", "--max-rounds", "2"], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("nothing proposed: no usable decisions") == 2, r.stdout
    assert not list(out.glob("*/manifest.json"))

    sect, y, _, _ = write_feed(broker.bootstrap, feed_topics["feed"], feed_topics["review"], feed_topics["decisions"],
                               {"name": src.name, "version": src.version})
    # round 1 writes the first candidate; round 2 proposes the same thresholds: nothing new
    r = cli(["calibrate", "--from-decisions", "--output", str(out), "--target-precision", "0.8",
             "--watch", "0.5", "--max-rounds", "2"], env)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("round ")]
    assert len(lines) == 2 and "candidate test-linear@0.0.2 written" in lines[0], r.stdout
    assert "unchanged against test-linear@0.0.2" in lines[1], r.stdout
    first = read_manifest(out / "test-linear-0.0.2")  # manifest-checked
    assert first.files == src.files and first.thresholds["propaganda"] == src.thresholds["propaganda"]
    assert abs(first.thresholds["sectarian"] - true_best(sect, y, 0.8)) < 0.08
    prov = first.extra["recalibration"]
    assert prov["feed"] == feed_topics["feed"] and prov["watch"]["round"] == 1
    assert prov["previous"] == "test-linear@0.0.1" and (out / "test-linear-0.0.2-report" / "report.md").exists()

    # a restarted watcher with the same evidence writes nothing again
    r = cli(["calibrate", "--from-decisions", "--output", str(out), "--target-precision", "0.8",
             "--watch", "0.5", "--max-rounds", "1"], env)
    assert r.returncode == 0 and "unchanged against test-linear@0.0.2" in r.stdout, r.stdout + r.stderr
    assert len(list(out.glob("*/manifest.json"))) == 1

    # the operating point moves (a stricter target): the next candidate gets the next version
    r = cli(["calibrate", "--from-decisions", "--output", str(out), "--target-precision", "0.9",
             "--watch", "0.5", "--max-rounds", "1"], env)
    assert r.returncode == 0, r.stderr
    assert "candidate test-linear@0.0.3 written" in r.stdout, r.stdout
    second = read_manifest(out / "test-linear-0.0.3")
    assert second.thresholds["sectarian"] > first.thresholds["sectarian"] + 0.01
    assert second.extra["recalibration"]["watch"]["compared_with"] == "test-linear@0.0.2"
    # never a hot swap: the served model directory is untouched
    assert sha256_file(linear_model_dir / "manifest.json") == served_manifest


def test_watch_arguments_are_checked_in_one_line(broker, linear_model_dir, feed_topics, tmp_path):
    env = env_for(broker, feed_topics, linear_model_dir)
    base = ["calibrate", "--from-decisions", "--output", str(tmp_path / "c")]
    for extra, needle in ((["--watch", "0"], "--watch must be"), (["--max-rounds", "2"], "--max-rounds needs"),
                          (["--watch", "5", "--version", "9"], "--version cannot"),
                          (["--watch", "5", "--min-change", "0"], "--min-change")):
        r = cli(base + extra, env)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_watch_survives_a_missing_broker_round_after_round(linear_model_dir, tmp_path):
    from flagstream.streaming.kafka.broker import free_port

    env = {"FLAGSTREAM_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "FLAGSTREAM_STARTUP_TIMEOUT_S": "1",
           "FLAGSTREAM_MODEL": str(linear_model_dir), "HF_HUB_OFFLINE": "1", "FLAGSTREAM_DECISIONS_HMAC_KEY": "w" * 32}
    r = cli(["calibrate", "--from-decisions", "--output", str(tmp_path / "c"), "--watch", "0.2", "--max-rounds", "2"],
            env)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("round ")]
    assert len(lines) == 2 and all("nothing proposed" in ln and "unreachable" in ln for ln in lines), r.stdout
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
