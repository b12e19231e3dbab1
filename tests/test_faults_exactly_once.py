"""``exactly_once: true`` tested the way users rely on it (issue 14).

- SIGKILL mid-stream (almost always mid-transaction), restart with the same ``instance_id``: a
  ``read_committed`` reader sees every post, counted by post id, and the dead process's open transaction
  does not hold that reader back, because the restarted process reuses the transactional id and so
  fences its predecessor and aborts its transaction at start-up.
- A zombie (a paused process whose successor runs with the same ``instance_id``) is fenced: when it
  wakes up it exits with one line instead of writing.
- Transaction waits are bounded: kafka-python waits on ``send_offsets_to_transaction`` and
  ``commit_transaction`` without a deadline; a stalled broker link ends in
  :class:`~flagstream.streaming.loop.checkpoint.CheckpointTransactionTimeout` instead of a hang.

Duplicates must be 0. Tansu 0.6 (the test broker) does not report aborted transactions to
``read_committed`` readers, so an aborted transaction's records stay visible there: on such a broker
the tests check everything else, bound the duplicates by one aborted batch, and then report xfail
saying why; on a broker that hides aborted records they assert 0.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer

from flagstream.streaming.kafka.broker import EmbeddedBroker, free_port
from flagstream.streaming.loop.checkpoint import Checkpoint, CheckpointTransactionTimeout
from flagstream.contract.records import OutRecord
from support.audit import audit, wait_accounted
from support.kafka import broker_hides_aborted_records, post_bytes, produce
from support.model import BENIGN_TEXT
from support.process import PipelineThread
from support.producer import PacedProducer
from support.tcp_proxy import TcpProxy
from support.topics import TopicSet

pytestmark = pytest.mark.timeout(300)
BATCH = 25


def _wait_complete(topics: TopicSet, ids: list[str], timeout_s: float, procs=()):
    """Audit with a read_committed reader until nothing is missing (an open transaction holds it back)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = audit(topics.bootstrap, topics, ids, read_committed=True)
        if not result.missing:
            return result
        for p in procs:
            assert p.alive, f"{p.name} exited:\n{p.logs()[-2500:]}"
        assert time.monotonic() < deadline, (f"{len(result.missing)} posts still invisible to a read_committed reader "
                                             f"after {timeout_s:g}s (an open transaction not fenced?)")
        time.sleep(1.0)


def _duplicates_are_zero_or_xfail(result, bootstrap: str, bound: int) -> None:
    if result.duplicates == 0 or broker_hides_aborted_records(bootstrap):
        assert result.duplicates == 0, result.line("exactly-once")
        return
    assert result.duplicates <= bound, result.line("exactly-once")
    pytest.xfail(f"{result.duplicates} duplicates are records of aborted transactions, which this broker "
                 "(Tansu 0.6) does not hide from read_committed readers; everything else was asserted")


def test_exactly_once_sigkill_mid_transaction_then_restart_with_the_same_instance_id(topics, stream_proc):
    env = topics.env(exactly_once=True, instance_id="member-1", batch_size=BATCH, batch_wait_ms=50)
    first = stream_proc(env, name="first")
    first.wait_ready(60)
    paced = PacedProducer(topics.bootstrap, topics.posts, 3000, 1500, prefix="e", seed=5)
    paced.start()
    first.wait_metric("flagstream_posts_scored_total", 600, 60)
    first.kill()  # SIGKILL: its transaction stays open on the broker
    second = stream_proc(env, name="second")
    sent = paced.finish()
    result = _wait_complete(topics, sent, 120, [second])
    assert second.terminate() == 0, second.logs()[-2500:]
    line = result.line("exactly-once-sigkill")
    print("\n" + line)
    assert not result.dlq_ids and not result.unreviewed and result.flagged_ids, line
    assert "instance_id" not in first.logs(), "no random-transactional-id warning when instance_id is set"
    _duplicates_are_zero_or_xfail(result, topics.bootstrap, BATCH)


def test_restart_with_the_same_instance_id_releases_the_dead_members_open_transaction(broker, linear_model_dir):
    """Deterministic form of "SIGKILL mid-transaction": a producer with member m1's transactional id
    leaves a transaction open (its process died between produce and commit). Verdicts written after
    it stay invisible to ``read_committed`` readers; a member started with another ``instance_id`` can't
    help, the restarted m1 aborts the dead transaction at start-up and everything becomes visible."""
    from flagstream.streaming.kafka.lifecycle import transactional_id

    topics = TopicSet.unique(broker.bootstrap, linear_model_dir, "fence", partitions=1)
    settings = topics.settings(exactly_once=True, instance_id="m1", batch_size=8, batch_wait_ms=50)
    dead = KafkaProducer(bootstrap_servers=topics.bootstrap, transactional_id=transactional_id(settings),
                         acks="all", enable_idempotence=True)
    dead.init_transactions()
    dead.begin_transaction()
    dead.send(topics.scores, key=b"from-the-dead-member", value=b"{}")
    dead.flush(10)  # in the log, transaction open: the last stable offset of scores[0] stops here
    ids = [f"f{i:02d}" for i in range(20)]
    produce(topics.bootstrap, topics.posts, [(pid.encode(), post_bytes(pid, BENIGN_TEXT)) for pid in ids])
    other = PipelineThread(topics.settings(exactly_once=True, instance_id="m2", batch_size=8, batch_wait_ms=50))
    try:
        wait_accounted(topics, expected_ids=set(ids), timeout_s=60)  # read_uncommitted: all scored
    finally:
        assert other.stop() == 0
    assert audit(topics.bootstrap, topics, ids, read_committed=True).missing == set(ids), \
        "a read_committed reader must not see past the open transaction"
    restarted = PipelineThread(settings)  # m1 again: init_transactions aborts the dead transaction
    try:
        result = _wait_complete(topics, ids, 60)
    finally:
        assert restarted.stop() == 0
        dead.close(0)
    assert result.duplicates == 0 and result.scored_ids.keys() >= set(ids)


def test_a_zombie_with_the_same_instance_id_is_fenced_and_exits(topics, stream_proc):
    env = topics.env(exactly_once=True, instance_id="member-z", batch_size=BATCH, batch_wait_ms=50)
    zombie = stream_proc(env, name="zombie")
    zombie.wait_ready(60)
    ids = [f"z{i:04d}" for i in range(200)]
    produce(topics.bootstrap, topics.posts, [(pid.encode(), post_bytes(pid, BENIGN_TEXT)) for pid in ids[:100]])
    zombie.wait_metric("flagstream_posts_scored_total", 100, 60)
    os.killpg(zombie.pid, signal.SIGSTOP)  # paused, not dead: a GC pause, a frozen VM
    try:
        successor = stream_proc(env, name="successor")
        successor.wait_ready(90)
        produce(topics.bootstrap, topics.posts, [(pid.encode(), post_bytes(pid, BENIGN_TEXT)) for pid in ids[100:]])
        successor.wait_metric("flagstream_posts_scored_total", 100, 60)
    finally:
        os.killpg(zombie.pid, signal.SIGCONT)
    # the zombie wakes up, rejoins the group and gets partitions back; its producer was fenced by the
    # successor's start, so its first write there must end it
    late = PacedProducer(topics.bootstrap, topics.posts, 1200, 20, prefix="late", seed=8)
    late.start()
    try:
        code = zombie.wait(60)
    finally:
        late.stop()
    assert code != 0
    err = zombie.logs().strip().splitlines()[-1]
    assert "was fenced" in err and "instance_id 'member-z'" in err and "Traceback" not in zombie.logs()
    result = _wait_complete(topics, ids + late.finish(), 90, [successor])
    assert successor.terminate() == 0
    _duplicates_are_zero_or_xfail(result, topics.bootstrap, 2 * BATCH)


def test_transaction_waits_are_bounded(tmp_path):
    """A stalled link during ``send_offsets_to_transaction``: kafka-python would wait forever."""
    broker_port = free_port()
    with TcpProxy(upstream_port=broker_port) as proxy, \
            EmbeddedBroker(port=broker_port, advertised_port=proxy.port, log_path=tmp_path / "broker.log"):
        topics = TopicSet.unique(proxy.address, tmp_path, "txn-timeout", partitions=1)
        produce(proxy.address, topics.posts, [(b"k", b"v")])
        consumer = KafkaConsumer(bootstrap_servers=proxy.address, group_id=topics.group, enable_auto_commit=False)
        producer = KafkaProducer(bootstrap_servers=proxy.address, transactional_id=f"bounded-{topics.group}",
                                 acks="all", enable_idempotence=True)
        try:
            producer.init_transactions()
            cp = Checkpoint(consumer, producer, exactly_once=True, flush_timeout_s=10, transaction_timeout_s=3)
            cp.produce(topics.scores, OutRecord(b"k", b"{}", []))
            cp.store_offset(topics.posts, 0, 0)
            producer.flush(10)  # the output is acknowledged; now the link stalls
            proxy.stall()
            started = time.monotonic()
            with pytest.raises(CheckpointTransactionTimeout):
                cp.commit()
            took = time.monotonic() - started
            assert took < 3 + 3 + 2, f"commit + abort took {took:.1f}s with 3 s bounds"
        finally:
            proxy.heal()
            producer.close(0)
            consumer.close(autocommit=False)
