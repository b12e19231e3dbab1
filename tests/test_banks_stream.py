"""Banks in the real stream on the embedded broker (issue 33 goals).

Phase 1 (low thresholds, so the reviewer sees both posts): a reviewer confirms one post and rejects another;
``sync`` turns the decisions into bank entries on the compacted bank topic. Phase 2 (the model's own thresholds,
fresh posts topic): the confirmed post's near-duplicate, scored under threshold, reaches review with its bank
match; the rejected post's repost does not; every post still gets its scores record (0 lost). A second consumer
group (a restarted or second stream process rebuilding the bank from the topic) sends exactly the same records.
"""

from __future__ import annotations

import json

import pytest

from flagstream.streaming.banks.sync import sync
from flagstream.streaming.signing import sign
from flagstream.streaming.kafka.clients import make_consumer, make_producer
from flagstream.streaming.ops.decisions import build_decision, find_reviews, write_decision
from support.kafka import produce_posts, read_all
from support.model import BENIGN_TEXT, SECTARIAN_TEXT
from support.process import PipelineThread

pytestmark = pytest.mark.timeout(300)

CONFIRMED = "meet at the old harbour market on friday, bring everyone you know, the big day is coming for all of us"
EDIT = "RT @relay: meet at the old harbour market on friday!! bring everyone you know, the big day is coming for us all"
REJECTED = SECTARIAN_TEXT
REPOST = SECTARIAN_TEXT + " https://news.example/item"


def _run(settings, n, counts=None):
    runner = PipelineThread(settings)
    try:
        scores = read_all(settings.bootstrap_servers, settings.scores_topic, min_count=n, timeout_s=120)
    finally:
        assert runner.stop() == 0
    if counts is not None:
        counts.update(runner.pipeline.router.bank.counts)
        metric = runner.pipeline.metrics.registry.get_sample_value
        counts["metric_withheld"] = metric("flagstream_bank_matches_total", {"bank": "negative", "outcome": "withheld"})
    return {json.loads(r.value)["id"]: json.loads(r.value) for r in scores}


def test_banks_steer_the_stream_and_every_consumer_applies_the_same_bank(topics):
    bank_topic, decisions = topics.posts + ".bank", topics.posts + ".decisions"
    key = "banks-test-decisions-key-0123456789"
    common = dict(bank_enabled=True, bank_topic=bank_topic, decisions_topic=decisions, create_topics=True,
                  bank_negative_override=1.0, decisions_hmac_key=key)
    low = topics.settings(thresholds={"propaganda": 0.000001, "sectarian": 0.000001}, **common)
    produce_posts(topics.bootstrap, topics.posts, [("p-conf", CONFIRMED), ("p-rej", REJECTED)])
    _run(low, 2)
    consumer = make_consumer(low, 30, group_id=None)
    try:
        found = find_reviews(consumer, topics.review, ["p-conf", "p-rej"])
    finally:
        consumer.close(autocommit=False)
    producer = make_producer(low, 30)
    try:
        confirm = sign(build_decision([found["p-conf"]], {"propaganda": "confirm"}, "rv-1"), key.encode())
        reject = sign(build_decision([found["p-rej"]], {"sectarian": "reject"}, "rv-1"), key.encode())
        for d in (confirm, reject):
            write_decision(producer, decisions, d)
    finally:
        producer.close()
    counts = sync(low)
    assert counts["written"] == 2 and counts["without_text"] == 0
    assert sync(low)["written"] == 0  # idempotent
    raw = b"".join(r.value for r in read_all(topics.bootstrap, bank_topic, min_count=2))
    assert b"harbour" not in raw and b"vermin" not in raw  # signatures only

    posts2, review2 = topics.posts + ".two", topics.review + ".two"
    fresh = [("q-edit", EDIT), ("q-repost", REPOST), *[(f"q-ok-{i}", f"{BENIGN_TEXT} {i}") for i in range(20)]]
    produce_posts(topics.bootstrap, posts2, fresh)
    results = []
    for group in ("g-first", "g-second"):
        s = topics.settings(posts_topic=posts2, review_topic=review2 + group, group_id=topics.group + group,
                            scores_topic=topics.scores + group, **common)
        counts: dict = {}
        scores = _run(s, len(fresh), counts)
        assert set(scores) == {pid for pid, _ in fresh}  # 0 lost
        assert counts[("positive", "sent_below_threshold")] == 1 and counts[("negative", "withheld")] == 1
        assert counts["metric_withheld"] == 1.0
        review = {json.loads(r.value)["id"]: json.loads(r.value)
                  for r in read_all(topics.bootstrap, s.review_topic, min_count=1)}
        results.append((scores, review))
    (scores, review), (_, review_b) = results
    assert scores["q-edit"]["labels"] == []  # under threshold...
    assert set(review) == {"q-edit"}  # ...but sent, and the rejected repost is not
    match = review["q-edit"]["bank_match"]
    assert match["bank"] == "positive" and match["match"] == "minhash" and match["similarity"] >= 0.7
    assert match["decision"]["decision_id"] == confirm.decision_id and match["decision"]["post_id"] == "p-conf"
    assert scores["q-repost"]["labels"] == ["sectarian"]  # flagged, withheld by the negative bank
    assert set(review_b) == set(review) and review_b["q-edit"]["bank_match"] == match


def test_bank_cli_add_list_export_remove_import(topics, tmp_path):
    from support.process import run_cli

    env = topics.env(bank_topic=topics.posts + ".bank", create_topics="true")
    text = tmp_path / "post.txt"
    text.write_text(CONFIRMED, encoding="utf-8")
    res = run_cli(["bank", "add", "--bank", "positive", "--label", "propaganda", "--text-file", str(text),
                   "--reference", "shared-list-7"], env=env)
    assert res.returncode == 0, res.stderr.decode()
    [entry_id] = json.loads(res.stdout)["entry_ids"]

    def listed() -> list[dict]:
        r = run_cli(["bank", "list", "--json"], env=env)
        assert r.returncode == 0, r.stderr.decode()
        assert b"harbour" not in r.stdout
        return [json.loads(x) for x in r.stdout.decode().splitlines()]

    [e] = listed()
    assert e["entry_id"] == entry_id and e["bank"] == "positive" and e["decision"]["decision_id"] == "shared-list-7"
    out = tmp_path / "bank.jsonl"
    assert run_cli(["bank", "export", "--output", str(out)], env=env).returncode == 0
    assert [json.loads(x)["entry_id"] for x in out.read_text().splitlines()] == [entry_id]
    assert run_cli(["bank", "remove", entry_id], env=env).returncode == 0
    assert listed() == []  # the tombstone removed it for every reader
    assert run_cli(["bank", "import", str(out)], env=env).returncode == 0
    assert [x["entry_id"] for x in listed()] == [entry_id]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(out.read_text() + '{"entry_id": "x"}\n')
    res = run_cli(["bank", "import", str(bad)], env=env)
    err = res.stderr.decode()
    assert res.returncode != 0 and "line 2" in err and "nothing imported" in err and "Traceback" not in err
