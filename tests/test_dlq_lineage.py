"""Issue 29: ``dlq replay`` must not loop without end, and a producer must not steer it.

A replayed post that fails again used to become a new dead letter with its lineage stripped (the DLQ
grew 1 -> 2 -> 3 over three replays), and a ``flagstream.replay.of`` header set by any producer on a
post marked a dead letter as already replayed. Now the stream copies the replay reference of a replayed
post into its new dead letter (a claim), ``dlq replay`` writes a replay marker to the dead-letter topic
(which only flagstream writes) and takes both "already replayed" and the replay count from those markers,
and refuses past ``--max-replays``. Real broker, real pipeline, real ``flagstream dlq`` CLI.
"""

from __future__ import annotations

import time

import pytest

from flagstream.streaming.ops.dlq import MARKER, REPLAY_COUNT, REPLAY_OF, REPLAY_ORIGIN
from flagstream.contract.dead_letters import read_dead_letter
from support.kafka import produce, read_all
from support.process import PipelineThread, run_cli


def dead_letters(topics, count: int, timeout_s: float = 60.0) -> list:
    """The dead letters (not replay markers) on the DLQ, once there are at least ``count``."""
    deadline = time.monotonic() + timeout_s
    while True:
        recs = [r for r in read_all(topics.bootstrap, topics.dlq) if not any(k == MARKER for k, _ in r.headers or [])]
        if len(recs) >= count or time.monotonic() > deadline:
            return sorted(recs, key=lambda r: (r.partition, r.offset))
        time.sleep(0.3)


def ref(rec) -> str:
    return f"{rec.topic}[{rec.partition}]@{rec.offset}"


@pytest.mark.timeout(240)
def test_replay_carries_lineage_and_stops_at_the_limit(topics):
    env = topics.env()
    runner = PipelineThread(topics.settings())
    try:
        runner.wait_assigned(60)
        produce(topics.bootstrap, topics.posts, [(b"m1", b'{"id": "m1", "txt": "no text field"}')])
        first = dead_letters(topics, 1)
        assert len(first) == 1

        res = run_cli(["dlq", "replay", "--all", "--max-replays", "1"], env=env)
        assert res.returncode == 0, res.stderr.decode()
        assert "replayed 1," in res.stderr.decode()
        both = dead_letters(topics, 2)
        assert len(both) == 2
        again = next(r for r in both if ref(r) != ref(first[0]))
        h = dict(again.headers)
        assert h[REPLAY_OF] == ref(first[0]).encode()  # the lineage survives the second failure
        markers = [r for r in read_all(topics.bootstrap, topics.dlq) if any(k == MARKER for k, _ in r.headers)]
        assert len(markers) == 1 and dict(markers[0].headers)[REPLAY_COUNT] == b"1"
        assert dict(markers[0].headers)[REPLAY_ORIGIN] == ref(first[0]).encode()

        res = run_cli(["dlq", "replay", "--all", "--max-replays", "1"], env=env)
        assert res.returncode == 0, res.stderr.decode()
        out = res.stdout.decode()
        assert "replay limit" in out and ref(again) in out and "--max-replays" in out
        assert "replayed 0," in res.stderr.decode()
        time.sleep(3)
        assert len(dead_letters(topics, 3, timeout_s=2)) == 2  # the loop has ended

        listed = run_cli(["dlq"], env=env).stdout.decode()
        assert f"a replay of {ref(first[0])}" in listed and "marker" not in listed
        assert len(listed.strip().splitlines()) == 2
    finally:
        assert runner.stop() == 0


@pytest.mark.timeout(240)
def test_a_producer_cannot_mark_a_dead_letter_as_replayed(topics):
    env = topics.env()
    runner = PipelineThread(topics.settings())
    try:
        runner.wait_assigned(60)
        produce(topics.bootstrap, topics.posts, [(b"v1", b'{"id": "v1"}')])
        victim = dead_letters(topics, 1)[0]
        # a post claiming to be the replay of the victim's dead letter (set by a producer, not by flagstream)
        produce(topics.bootstrap, topics.posts, [(b"f1", b'{"id": "f1"}', [(REPLAY_OF, ref(victim).encode()),
                                                                            (REPLAY_COUNT, b"99")])])
        forged = [r for r in dead_letters(topics, 2) if r.key == b"f1"][0]
        assert dict(forged.headers).get(REPLAY_COUNT) is None  # flagstream.* headers of a post never pass
        assert read_dead_letter(forged.key, forged.value, forged.headers).error == "missing_text"

        res = run_cli(["dlq", "replay", "--offset", f"{victim.partition}:{victim.offset}"], env=env)
        assert res.returncode == 0, res.stderr.decode()
        assert f"replayed {ref(victim)}" in res.stdout.decode() and "replayed 1," in res.stderr.decode()
        # and the forged claim gives the forger's own dead letter no credit either: it is replayable once
        res = run_cli(["dlq", "replay", "--offset", f"{forged.partition}:{forged.offset}", "--max-replays", "1"],
                      env=env)
        assert "replayed 1," in res.stderr.decode(), res.stdout.decode()
    finally:
        assert runner.stop() == 0
