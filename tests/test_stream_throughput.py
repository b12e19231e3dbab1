"""End-to-end throughput of ``flagstream stream`` with the linear model (slow: run by ``make test``'s
second step). Prints posts/s from the first post produced to the last verdict acknowledged."""

from __future__ import annotations

import random
import time

import pytest

from support.audit import wait_accounted
from support.kafka import metric_value, produce_posts
from support.model import BENIGN_TEXT, PROPAGANDA_TEXT, SECTARIAN_TEXT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

WORDS = ("the city council met today to discuss the new bridge and the budget for schools and roads while "
         "residents asked about buses parks libraries and the weather for the weekend market").split()


def _texts(n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        base = (PROPAGANDA_TEXT, SECTARIAN_TEXT, BENIGN_TEXT)[i % 3] if i % 10 == 0 else ""
        out.append((base + " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))).strip())
    return out


@pytest.mark.parametrize("batch_size", [64, 256])
def test_end_to_end_throughput(topics, stream_proc, capsys, batch_size):
    n = 5000
    proc = stream_proc(topics.env(batch_size=batch_size, batch_wait_ms=200, log_level="WARNING"))
    proc.wait_ready(60)
    posts = [(f"p{i:05d}", t) for i, t in enumerate(_texts(n))]
    start = time.monotonic()
    produce_posts(topics.bootstrap, topics.posts, posts)
    produced = time.monotonic() - start
    deadline = start + 300
    while metric_value(proc.get("/metrics")[1], "flagstream_posts_scored_total") < n:
        assert time.monotonic() < deadline, "throughput run did not finish"
        time.sleep(0.05)
    elapsed = time.monotonic() - start
    text = proc.get("/metrics")[1]
    scoring = metric_value(text, "flagstream_scoring_latency_seconds_sum")
    batches = metric_value(text, "flagstream_batch_size_count")
    assert proc.terminate() == 0
    scores, _ = wait_accounted(topics, expected_ids={pid for pid, _ in posts}, timeout_s=60)
    assert len(scores) >= n
    with capsys.disabled():
        print(f"\n[throughput] linear model, batch_size={batch_size}: {n} posts in {elapsed:.2f}s = "
              f"{n / elapsed:,.0f} posts/s end to end (producing took {produced:.2f}s; scoring {scoring:.2f}s "
              f"over {batches:.0f} batches = {n / max(scoring, 1e-9):,.0f} posts/s in scorer.score)")
