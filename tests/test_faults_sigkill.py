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


def run_sigkill_scenario(tmp_path, model_dir, *, posts: int, rate: float, min_kills: int, seed: int,
                         settle_timeout_s: float, fault: str) -> None:
    rng = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        topics = Topics.unique(f"kill{seed}")
        env = stream_env(broker.bootstrap, f"g-kill-{seed}", topics, model_dir)
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
            producer.join(180)
            assert producer.error is None, f"test producer failed: {producer.error!r}"
            assert len(producer.sent) == posts
            for c in consumers:
                if not c.alive:
                    c.start()
            missing = wait_until_seen(collector, producer.sent, settle_timeout_s, consumers)
            result = audit(broker.bootstrap, topics, producer.sent)
            line = report(result, fault, kills=kills, restarts=sum(c.starts for c in consumers) - len(consumers))
            assert kills >= min_kills
            assert not result.missing, (f"{line}; lost ids e.g. {sorted(result.missing)[:10]}\n"
                                        + tail(consumers[0].log_text()))
            assert not result.dlq_ids, "well-formed posts must never be dead-lettered"
        finally:
            producer.stop()
            collector.stop()
            for c in consumers:
                c.kill()


@pytest.mark.timeout(300)
def test_sigkill_small(tmp_path, fault_model_dir) -> None:  # noqa: F811
    """Fast-suite version: 2,000 posts, 3 SIGKILLs."""
    run_sigkill_scenario(tmp_path, fault_model_dir, posts=2_000, rate=250, min_kills=3, seed=11,
                         settle_timeout_s=150, fault="sigkill-small")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_20k_posts_10_kills(tmp_path, fault_model_dir) -> None:  # noqa: F811
    """Issue 5: >= 20,000 posts, >= 10 kills/restarts at random moments, nothing lost."""
    run_sigkill_scenario(tmp_path, fault_model_dir, posts=20_000, rate=300, min_kills=12, seed=2026,
                         settle_timeout_s=600, fault="sigkill")
