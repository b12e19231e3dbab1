"""Decisions topic: the contract (validated on read, bad records dead-lettered) and ``flagstream decide``.

Review records are flagged by the real pipeline (linear test model) on the embedded broker; decisions are
written by the CLI as a subprocess and read back from the topic.
"""

from __future__ import annotations

import json

import pytest
from support.kafka import create_topics, produce, produce_posts, read_all
from support.model import BENIGN_TEXT, PROPAGANDA_TEXT, SECTARIAN_TEXT
from support.process import PipelineThread, run_cli

from flagstream.contract.dead_letters import read_dead_letter
from flagstream.contract.decisions import Decision, ReviewRef, decision_record, parse_decision

pytestmark = pytest.mark.timeout(180)


def _decision(**over):
    base = dict(decision_id="d1", ids=("p1",), verdicts={"propaganda": "confirm"}, reviewer="r-7",
                decided_at="2026-12-03T09:00:00.000Z", model={"name": "m", "version": "1"},
                thresholds={"propaganda": 0.5}, reviews=(ReviewRef("p1", "posts.review", 0, 4),))
    base.update(over)
    return Decision(**base)


def test_decision_record_round_trips():
    rec = decision_record(_decision(policy="tos-4.2", note="looks like a repost", campaign="c-1"))
    assert rec.key == b"p1"
    assert dict(rec.headers)["flagstream.schema"] == b"decision.v1"
    back = parse_decision(rec.value)
    assert isinstance(back, Decision)
    assert back.as_dict() == json.loads(rec.value)
    assert back.reviews[0].offset == 4 and back.policy == "tos-4.2" and back.campaign == "c-1"


@pytest.mark.parametrize("mutate, error", [
    (lambda d: d.pop("ids"), "invalid_decision"),
    (lambda d: d.update(ids=[]), "invalid_decision"),
    (lambda d: d.update(ids=[7]), "invalid_decision"),
    (lambda d: d.update(verdicts={"propaganda": "maybe"}), "invalid_decision"),
    (lambda d: d.update(verdicts={}), "invalid_decision"),
    (lambda d: d.update(reviewer=""), "invalid_decision"),
    (lambda d: d.update(decided_at="yesterday"), "invalid_decision"),
    (lambda d: d.update(thresholds={"propaganda": 3}), "invalid_decision"),
    (lambda d: d.update(model={"name": "m"}), "invalid_decision"),
    (lambda d: d.update(reviews=[{"id": "p1"}]), "invalid_decision"),
    (lambda d: d.update(note="x" * 5000), "invalid_decision"),
])
def test_bad_decisions_are_rejected_with_a_reason(mutate, error):
    body = _decision().as_dict()
    mutate(body)
    out = parse_decision(json.dumps(body).encode())
    assert out.error == error, out
    assert "looks like" not in out.reason


@pytest.mark.parametrize("value, error", [
    (None, "empty_message"), (b"\xff\xfe", "not_utf8"), (b"{nope", "not_json"), (b"[1]", "not_object"),
    (b'{"a": NaN}', "not_json"),
])
def test_undecodable_decisions_are_rejected(value, error):
    assert parse_decision(value).error == error


def _flag_sample(topics, posts):
    produce_posts(topics.bootstrap, topics.posts, posts)
    runner = PipelineThread(topics.settings())
    try:
        read_all(topics.bootstrap, topics.scores, min_count=len(posts), timeout_s=90)
    finally:
        runner.stop()
    return read_all(topics.bootstrap, topics.review)


def test_decide_cli_writes_a_validated_record(topics):
    decisions = topics.posts + ".decisions"
    review = _flag_sample(topics, [("p-prop", PROPAGANDA_TEXT), ("p-sect", SECTARIAN_TEXT), ("p-ok", BENIGN_TEXT)])
    by_id = {json.loads(r.value)["id"]: r for r in review}
    assert set(by_id) == {"p-prop", "p-sect"}
    env = topics.env(decisions_topic=decisions)
    res = run_cli(["decide", "p-sect", "--reject", "sectarian", "--unsure", "propaganda", "--reviewer", "rv-42",
                   "--policy", "hate-1", "--note", "a quoted news report"], env=env)
    assert res.returncode == 0, res.stderr.decode()
    printed = json.loads(res.stdout)
    [rec] = read_all(topics.bootstrap, decisions, min_count=1)
    assert rec.key == b"p-sect"
    decision = parse_decision(rec.value)
    assert isinstance(decision, Decision)
    assert decision.as_dict() == printed
    assert decision.ids == ("p-sect",)
    assert decision.verdicts == {"sectarian": "reject", "propaganda": "unsure"}
    assert decision.reviewer == "rv-42" and decision.policy == "hate-1"
    flagged = json.loads(by_id["p-sect"].value)
    assert decision.model == flagged["model"] and decision.thresholds == flagged["thresholds"]
    src = by_id["p-sect"]
    assert decision.reviews == (ReviewRef("p-sect", topics.review, src.partition, src.offset),)
    # the note is a reviewer's words: never in the logs
    assert "quoted news" not in res.stderr.decode()


def test_decide_cli_errors_are_one_line(topics):
    env = topics.env(decisions_topic=topics.posts + ".decisions")
    for args, needle in [
        (["decide", "x"], "no verdict given"),
        (["decide", "x", "--reject", "sectarian", "--confirm", "sectarian"], "pick one"),
        (["decide", "not-flagged", "--reject", "sectarian"], "--allow-missing"),
    ]:
        res = run_cli(args, env=env)
        err = res.stderr.decode()
        assert res.returncode == 2 and "Traceback" not in err, err
        lines = [ln for ln in err.strip().splitlines() if not ln.startswith("{")]
        assert len(lines) == 1 and needle in lines[0], err
    res = run_cli(["decide", "not-flagged", "--reject", "sectarian", "--allow-missing"], env=env)
    assert res.returncode == 0, res.stderr.decode()
    assert json.loads(res.stdout)["reviews"] == [] and json.loads(res.stdout)["model"] is None


def test_bad_decision_records_go_to_the_dlq_on_read(topics):
    from flagstream.config import load_settings
    from flagstream.streaming.kafka.clients import make_consumer, make_producer
    from flagstream.streaming.ops.decisions import read_decisions

    decisions = topics.posts + ".decisions"
    create_topics(topics.bootstrap, [decisions], 1)
    good = decision_record(_decision())
    bad_body = _decision().as_dict() | {"verdicts": {"propaganda": "delete-account"}}
    produce(topics.bootstrap, decisions, [
        (b"p1", b"not json at all"),
        (good.key, good.value, good.headers),
        (b"p1", json.dumps(bad_body).encode(), [("flagstream.error", b"spoofed")]),
    ])
    settings = load_settings(None, topics.settings_dict(decisions_topic=decisions), environ={})
    consumer = make_consumer(settings, group_id=None)
    dlq = make_producer(settings, transactional=False)
    try:
        read = list(read_decisions(consumer, settings, dlq))
    finally:
        consumer.close(autocommit=False)
        dlq.close(timeout=10)
    assert [d.decision_id for d in read] == ["d1"]
    dead = [read_dead_letter(r.key, r.value, r.headers) for r in read_all(topics.bootstrap, topics.dlq, min_count=2)]
    assert sorted(d.error for d in dead) == ["invalid_decision", "not_json"]
    assert {(d.source.topic, d.source.offset) for d in dead} == {(decisions, 0), (decisions, 2)}
    assert next(d for d in dead if d.error == "invalid_decision").value == json.dumps(bad_body).encode()
