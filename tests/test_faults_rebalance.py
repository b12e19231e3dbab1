"""Rebalance churn: consumers join and leave the group every few seconds during a run.

Members come and go the way an autoscaler or a rolling deploy moves them: a new process joins,
a random member leaves with SIGTERM (finish the batch, commit, leave the group). Nothing may be
lost and no post may be scored more than twice.
"""

from __future__ import annotations

import random
import time

import pytest

from streaming.broker import EmbeddedBroker
from tests.support.pipeline import (
    Collector,
    PacedProducer,
    StreamProcess,
    Topics,
    audit,
    fault_model_dir,  # noqa: F401 - fixture
    report,
    stream_env,
    tail,
    wait_until_seen,
    warm_up,
)


def _settled(member: StreamProcess) -> bool:
    """True when the member's last group event is an assignment (not a revoke or a pending join)."""
    last = None
    for line in member.log_text().splitlines():
        if '"partitions assigned"' in line:
            last = "assigned"
        elif '"partitions revoked"' in line or '"connected; joining consumer group"' in line:
            last = "pending"
    return last == "assigned"


def wait_group_settled(members: list[StreamProcess], timeout_s: float = 30.0) -> bool:
    """Wait until every live member holds its assignment.

    Tansu 0.6 (the test broker) wedges a consumer group for good when a member leaves while a
    rebalance is in progress (JoinGroup keeps naming a departed leader, SyncGroup answers
    REBALANCE_IN_PROGRESS forever; reproduced with plain kafka-python consumers, see
    docs/faults.md). Real Kafka handles that; to test the pipeline rather than that broker bug,
    leaves wait for the group to settle. Joins still happen at any moment.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(_settled(m) for m in members if m.alive):
            return True
        time.sleep(0.2)
    return False


def run_churn(tmp_path, model_dir, *, posts: int, rate: float, min_changes: int, seed: int, fault: str,
              settle_timeout_s: float) -> None:
    rng = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        topics = Topics.unique(f"churn{seed}")
        env = stream_env(broker.bootstrap, f"g-churn-{seed}", topics, model_dir)
        members: list[StreamProcess] = [StreamProcess(env, logs, name=f"m{i}").start() for i in range(2)]
        retired: list[StreamProcess] = []
        next_id = len(members)
        collector = Collector(broker.bootstrap, topics)
        producer = PacedProducer(broker.bootstrap, topics.posts, posts, rate, prefix="r", seed=seed)
        joins = leaves = unsettled = 0
        bad_exits: list[str] = []
        try:
            collector.start()
            warm_up(broker.bootstrap, topics, collector, members)
            producer.start()
            t0 = time.monotonic()
            while producer.is_alive() or joins + leaves < min_changes:
                time.sleep(rng.uniform(2.0, 4.0))
                live = [m for m in members if m.alive]
                if len(live) <= 1 or (len(live) < 4 and rng.random() < 0.5):
                    members.append(StreamProcess(env, logs, name=f"m{next_id}").start())
                    next_id += 1
                    joins += 1
                else:
                    if not wait_group_settled(live):
                        unsettled += 1
                    live = [m for m in members if m.alive]
                    leaver = rng.choice(live)
                    code = leaver.terminate(40)
                    if code != 0:
                        bad_exits.append(f"{leaver.name}: exit {code}")
                    members.remove(leaver)
                    retired.append(leaver)
                    leaves += 1
                assert time.monotonic() - t0 < settle_timeout_s
            producer.join(180)
            assert producer.error is None, f"test producer failed: {producer.error!r}"
            live = [m for m in members if m.alive]
            missing = wait_until_seen(collector, producer.sent, settle_timeout_s, live)
            result = audit(broker.bootstrap, topics, producer.sent)
            line = report(result, fault, joins=joins, leaves=leaves, leaves_before_settled=unsettled)
            assert len(producer.sent) == posts
            assert not result.missing, f"{line}\n" + tail(members[0].log_text())
            assert result.max_times_scored <= 2, line
            assert not bad_exits, f"members that did not leave cleanly (SIGTERM must exit 0): {bad_exits}"
        finally:
            producer.stop()
            collector.stop()
            for m in members + retired:
                m.kill()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_rebalance_churn(tmp_path, fault_model_dir) -> None:  # noqa: F811
    run_churn(tmp_path, fault_model_dir, posts=10_000, rate=250, min_changes=12, seed=77, fault="rebalance-churn",
              settle_timeout_s=400)


@pytest.mark.timeout(300)
def test_member_keeping_its_partitions_across_a_rebalance_loses_nothing(tmp_path, fault_model_dir) -> None:  # noqa: F811
    """Deterministic version of the loss seen under SIGKILL/churn.

    Member A polls 1,000 posts into its micro-batch buffer (a long ``batch_wait_ms`` keeps them
    there, unprocessed and uncommitted); member B then joins. The rebalance revokes all of A's
    partitions (A drops the buffered records, as it must: they may go to B) and gives A back
    some of them. Those records must be scored by A, from its last committed offset.
    """
    logs = tmp_path / "logs"
    logs.mkdir()
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        topics = Topics.unique("keep")
        env = stream_env(broker.bootstrap, "g-keep", topics, fault_model_dir)
        slow_env = {**env, "FLAGSTREAM_BATCH_SIZE": "5000", "FLAGSTREAM_BATCH_WAIT_MS": "20000"}
        a = StreamProcess(slow_env, logs, name="a").start()
        b = StreamProcess(env, logs, name="b")
        collector = Collector(broker.bootstrap, topics)
        try:
            collector.start()
            warm_up(broker.bootstrap, topics, collector, [a], count=4)  # 4 posts: A's first batch after 20 s
            producer = PacedProducer(broker.bootstrap, topics.posts, 1_000, 2_000, prefix="q", seed=3)
            producer.start()
            producer.join(60)
            assert producer.error is None and len(producer.sent) == 1_000
            time.sleep(1.0)  # A has them buffered, waiting for its batch to fill
            b.start()
            missing = wait_until_seen(collector, producer.sent, 90, [a, b], no_progress_s=45)  # A flushes after 20 s
            result = audit(broker.bootstrap, topics, producer.sent)
            line = report(result, "rebalance-same-partitions")
            assert not result.missing, (f"{line}; e.g. {sorted(result.missing)[:5]}. A's log:\n"
                                        + tail(a.log_text()))
        finally:
            collector.stop()
            a.kill()
            b.kill()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.xfail(strict=False, reason=(
    "Tansu 0.6 (test broker) bug, not flagstream: a member leaving during a rebalance wedges the group "
    "for good (JoinGroup keeps naming a departed leader, SyncGroup returns REBALANCE_IN_PROGRESS forever); "
    "a fresh group on the same topic works. Why run_churn lets the group settle before each leave."))
def test_embedded_broker_group_survives_leave_during_rebalance(tmp_path) -> None:
    """Plain kafka-python consumers, no flagstream code: A and B share the group, C joins, A leaves
    while that rebalance is in progress, then B leaves. C must end up with every partition."""
    import threading

    from kafka import KafkaConsumer

    from tests.support.pipeline import ensure_topics

    class Member(threading.Thread):
        def __init__(self, bootstrap: str) -> None:
            super().__init__(daemon=True)
            self.bootstrap, self.halt, self.assigned = bootstrap, threading.Event(), set()

        def run(self) -> None:
            c = KafkaConsumer("wedge.posts", bootstrap_servers=self.bootstrap, group_id="wedge",
                              enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000,
                              max_poll_interval_ms=10000)
            while not self.halt.is_set():
                c.poll(timeout_ms=200)
                self.assigned = {tp.partition for tp in c.assignment()}
            c.close()

    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        ensure_topics(broker.bootstrap, ["wedge.posts"], 4)
        a, b = Member(broker.bootstrap), Member(broker.bootstrap)
        a.start()
        b.start()
        deadline = time.monotonic() + 30
        while (a.assigned | b.assigned) != {0, 1, 2, 3} and time.monotonic() < deadline:
            time.sleep(0.2)
        c = Member(broker.bootstrap)
        c.start()
        time.sleep(2.5)
        a.halt.set()  # leaves while C's join is being processed
        time.sleep(2.5)
        b.halt.set()
        deadline = time.monotonic() + 30
        while c.assigned != {0, 1, 2, 3} and time.monotonic() < deadline:
            time.sleep(0.2)
        got = sorted(c.assigned)
        c.halt.set()
        for m in (a, b, c):
            m.join(10)
        assert got == [0, 1, 2, 3], f"the remaining member holds {got} 30 s after the others left"
