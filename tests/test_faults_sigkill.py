"""Random SIGKILLs of ``flagstream stream`` consumers mid-run: every post is accounted for.

Posts are published at a steady rate while two consumer processes of one group score them; at
random moments a random consumer gets SIGKILL (no chance to flush or commit) and is restarted
after a random pause. Afterwards every id sent must appear in the scores topic or the
dead-letter topic. Duplicates (at-least-once re-delivery of the uncommitted batch) are counted
and reported, not failed: they are the price of never losing a post.
"""

from __future__ import annotations

import random
import time

import pytest

from flagstream.streaming.kafka.broker import EmbeddedBroker
from support.audit import Collector, audit, wait_until_seen, warm_up
from support.process import StreamProcess
from support.producer import PacedProducer
from support.topics import FAULT_SETTINGS, TopicSet

BATCH = FAULT_SETTINGS["batch_size"]


def run_sigkill_scenario(tmp_path, model_dir, *, posts: int, rate: float, min_kills: int, seed: int,
                         settle_timeout_s: float, fault: str) -> None:
    rng = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        topics = TopicSet.unique(broker.bootstrap, model_dir, f"kill{seed}", partitions=4, create=False)
        env = topics.env(**FAULT_SETTINGS)
        consumers = [StreamProcess(env, logs, name=f"c{i}").start() for i in range(2)]
        collector = Collector(broker.bootstrap, topics)
        producer = PacedProducer(broker.bootstrap, topics.posts, posts, rate, prefix="k", seed=seed)
        kills = 0
        try:
            collector.start()
            warm_up(broker.bootstrap, topics, collector, consumers)
            producer.start()
            t_start = time.monotonic()
            while producer.is_alive() or kills < min_kills:
                time.sleep(rng.uniform(2.0, 5.0))
                victim = rng.choice(consumers)
                if victim.alive:
                    victim.kill()
                    kills += 1
                time.sleep(rng.uniform(0.0, 1.5))
                for c in consumers:
                    if not c.alive:
                        c.start()
                assert time.monotonic() - t_start < settle_timeout_s, "kill loop ran past its deadline"
            sent = producer.finish(180)
            assert len(sent) == posts
            for c in consumers:
                if not c.alive:
                    c.start()
            wait_until_seen(collector, sent, settle_timeout_s, consumers)
            result = audit(broker.bootstrap, topics, sent)
            restarts = sum(c.starts for c in consumers) - len(consumers)
            assert kills >= min_kills
            # README bound: each membership change (a kill, a restart) leaves at most one uncommitted batch
            # per member to be re-read.
            result.check(fault, max_duplicates=len(consumers) * BATCH * (kills + restarts), max_times=None,
                         kills=kills, restarts=restarts)
            assert not result.dlq_ids, "well-formed posts must never be dead-lettered"
        finally:
            producer.stop()
            collector.stop()
            for c in consumers:
                c.kill()


@pytest.mark.timeout(300)
def test_sigkill_small(tmp_path, linear_model_dir) -> None:
    """Fast-suite version: 2,000 posts, 3 SIGKILLs."""
    run_sigkill_scenario(tmp_path, linear_model_dir, posts=2_000, rate=250, min_kills=3, seed=11,
                         settle_timeout_s=150, fault="sigkill-small")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_20k_posts_10_kills(tmp_path, linear_model_dir) -> None:
    """Issue 5: >= 20,000 posts, >= 10 kills/restarts at random moments, nothing lost."""
    run_sigkill_scenario(tmp_path, linear_model_dir, posts=20_000, rate=300, min_kills=12, seed=2026,
                         settle_timeout_s=600, fault="sigkill")
