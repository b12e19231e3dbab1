"""Hostile input end to end: real broker, real ``flagstream stream`` process.

A mix of good posts and every kind of bad record (arbitrary bytes, invalid UTF-8, a 10 MB
message, deeply nested JSON, wrong types, control characters and bidi overrides, duplicate
ids) is published. Every record must end up scored or dead-lettered with the error class the
contract (``flagstream.contract.posts.parse_post``) gives it, the process must stay up, and its memory
must stay bounded.
"""

from __future__ import annotations

import json
import random
import time

import pytest

from flagstream.streaming.kafka.broker import EmbeddedBroker
from support.audit import Audit, Collector, report, wait_until_seen
from support.kafka import read_all
from support.process import StreamProcess, assert_running, tail
from support.producer import PacedProducer
from support.topics import FAULT_SETTINGS, TopicSet

MAX_TEXT = 10_000
MAX_BYTES = 1_000_000
BIDI = "\u202e\u2066\u2067\u2068\u2069\u200f"


def hostile_records(seed: int = 3) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs; keys are unique so every record can be traced to the DLQ or scores.

    Valid posts are keyed by their id (the scores topic is keyed by post id); the duplicate-id
    posts share one id on purpose and are traced by id.
    """
    rng = random.Random(seed)
    out: list[tuple[bytes, bytes]] = []

    def good(pid: str, text: str, **extra) -> None:
        out.append((pid.encode(), json.dumps({"id": pid, "text": text, **extra}).encode()))

    def bad(i: int, value: bytes) -> None:
        out.append((f"bad{i:05d}".encode(), value))

    for i in range(150):
        good(f"ok{i:05d}", f"ordinary post number {i} about the weather and the match")
    for i in range(60):
        bad(i, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))))
    j = 1000
    for frag in (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"):
        bad(j, b'{"id":"u' + str(j).encode() + b'","text":"bad ' + frag + b' utf8"}')
        j += 1
    bad(j, json.dumps({"id": "huge", "text": "x" * (10 * 1024 * 1024)}).encode())  # 10 MB
    j += 1
    for depth in (10_000, 200_000):
        bad(j, b"[" * depth + b"]" * depth)
        j += 1
        bad(j, b'{"id":"deep","text":"t","meta":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}")
        j += 1
    for value in ({"id": 5, "text": "x"}, {"id": "", "text": "x"}, {"id": "a"}, {"text": "x"},
                  {"id": "a", "text": 7}, {"id": "a", "text": "   "}, {"id": "a", "text": "x", "meta": [1]},
                  {"id": "a", "text": "x", "lang": False}, ["not", "an", "object"], "string", 42, None,
                  {"id": "a", "text": "y" * (MAX_TEXT + 1)}):
        bad(j, json.dumps(value).encode())
        j += 1
    bad(j, b"")
    j += 1
    bad(j, b'{"id":"nan","text":"x","created_at":NaN}')
    j += 1
    bad(j, b'{"id":"sur","text":"\\ud800"}')
    j += 1
    for i in range(40):  # control characters and bidi overrides: valid posts, scored unchanged
        noise = "".join(rng.choice(["\x00", "\x07", "\x1b[31m", "\r", "\u0085", *BIDI, "a", "\u0627"])
                        for _ in range(rng.randint(1, 30)))
        good(f"ctl{i:05d}", f"visible {noise} text", author=f"{BIDI}user\x00")
    for _ in range(3):  # duplicate ids: three different posts claim the same id
        good("dup-00001", f"one of several posts sharing an id {rng.random()}")
    return out


@pytest.mark.timeout(300)
def test_hostile_input_end_to_end(tmp_path, linear_model_dir) -> None:
    from flagstream.contract.dead_letters import read_dead_letter
    from flagstream.contract.posts import Post, parse_post

    logs = tmp_path / "logs"
    logs.mkdir()
    records = hostile_records()
    expected = {}
    for key, value in records:
        expected.setdefault(key.decode(), parse_post(value, max_text_chars=MAX_TEXT, max_message_bytes=MAX_BYTES))
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        topics = TopicSet.unique(broker.bootstrap, linear_model_dir, "hostile", partitions=4, create=False)
        env = topics.env(**FAULT_SETTINGS, max_text_chars=MAX_TEXT, max_message_bytes=MAX_BYTES)
        proc = StreamProcess(env, logs, "c0").start()
        collector = Collector(broker.bootstrap, topics)
        try:
            collector.start()
            warm = PacedProducer(broker.bootstrap, topics.posts, 100, 1000, prefix="w", seed=9)
            warm.start()
            assert not wait_until_seen(collector, warm.finish(60), 120, [proc])
            rss_before = proc.rss_mb()

            producer = PacedProducer(broker.bootstrap, topics.posts, len(records), 400, records=records)
            producer.start()
            producer.finish(120)
            keys = [k.decode() for k, _ in records]
            missing = wait_until_seen(collector, set(keys), 180, [proc])
            time.sleep(2.0)
            assert_running(proc)
            rss_after = proc.rss_mb()

            dlq = {}
            for rec in read_all(broker.bootstrap, topics.dlq):
                dl = read_dead_letter(rec.key, rec.value, rec.headers)
                dlq.setdefault((rec.key or b"").decode(), []).append(dl)
            result = Audit(sent=len(set(keys)))
            result.scored_ids.update(collector.scored)
            result.dlq_ids.update({k: len(v) for k, v in dlq.items()})
            result.missing = set(missing)
            report(result, "hostile-input", records=len(records), dead_letter_records=sum(map(len, dlq.values())),
                   rss_before_mb=f"{rss_before:.0f}", rss_after_mb=f"{rss_after:.0f}",
                   note="2_duplicates_are_the_3_posts_sharing_id_dup-00001")
            assert not missing, f"unaccounted records: {sorted(missing)[:20]}\n" + tail(proc.logs())

            wrong = []
            for key, outcome in expected.items():
                if isinstance(outcome, Post):
                    if collector.scored[outcome.id] < 1:
                        wrong.append(f"{key}: expected scored, got DLQ {[d.error for d in dlq.get(key, [])]}")
                else:
                    errs = [d.error for d in dlq.get(key, [])]
                    if outcome.error not in errs:
                        wrong.append(f"{key}: expected DLQ {outcome.error}, got {errs or 'scored'}")
                    for d in dlq.get(key, []):
                        assert d.reason and "\n" not in d.reason
                        assert d.source.topic == topics.posts and d.source.offset >= 0
            assert not wrong, "\n".join(wrong[:30])
            assert collector.scored["dup-00001"] >= 3  # same id, three posts: none silently dropped
            big = dlq[next(k for k, o in expected.items() if getattr(o, "error", "") == "message_too_large")][0]
            assert len(big.value) <= MAX_BYTES
            assert rss_after < rss_before + 400, f"RSS grew from {rss_before:.0f} to {rss_after:.0f} MB"
            assert proc.terminate(45) == 0, tail(proc.logs())
        finally:
            collector.stop()
            proc.kill()
