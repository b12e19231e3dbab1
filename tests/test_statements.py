"""Statements of reasons: every statement of the test's decisions passes the kept schema; the summary's counts equal
the decisions read (unit, and through ``flagstream statements`` on the embedded broker)."""

from __future__ import annotations

import json

import pytest

from flagstream.config import load_settings
from flagstream.contract.decisions import Decision, parse_decision, decision_record
from flagstream.errors import UserError
from flagstream.streaming.ops.schema_check import errors, statement_schema
from flagstream.streaming.ops.statements import check, policy_for, statements_for, summary
from support.kafka import produce_posts, read_all
from support.model import BENIGN_TEXT, PROPAGANDA_TEXT, SECTARIAN_TEXT
from support.process import PipelineThread, run_cli

pytestmark = pytest.mark.timeout(180)

REVIEWS = {
    "p1": {"id": "p1", "lang": "en", "created_at": "2026-11-30T08:00:00Z", "flagged_at": "2026-12-01T09:00:00.000Z",
           "scores": {"propaganda": 0.97, "sectarian": 0.2}, "thresholds": {"propaganda": 0.9, "sectarian": 0.9},
           "model": {"name": "m", "version": "1"}, "source": {"timestamp": "2026-12-01T08:59:59.000Z"}},
    "p2": {"id": "p2", "lang": "ar", "flagged_at": "2026-12-01T09:00:00.000Z", "source": {"timestamp": "2026-12-01T08:00:00Z"}},
    "p3": {"id": "p3", "flagged_at": "2026-12-01T09:00:00.000Z"},
}


def _d(did, ids, verdicts, at, **kw):
    return Decision(did, tuple(ids), verdicts, "rv", at, **kw)


DECISIONS = [
    _d("d1", ["p1"], {"propaganda": "confirm"}, "2026-12-01T09:30:00.000Z"),
    _d("d2", ["p2", "p3"], {"sectarian": "confirm", "propaganda": "confirm"}, "2026-12-01T11:00:00.000Z",
       campaign="c-1", action="disabled", automated_decision="partially", territorial_scope=("DE", "FR")),
    _d("d3", ["p3"], {"sectarian": "reject"}, "2026-12-02T09:00:00.000Z"),
    _d("d4", ["p1"], {"propaganda": "unsure"}, "2026-12-02T10:00:00.000Z", action="none"),
]


def _settings(**kw):
    return load_settings(None, kw, environ={})


def test_every_statement_passes_the_kept_schema_and_carries_the_dsa_fields():
    s = _settings()
    sts = [st for d in DECISIONS for st in statements_for(d, REVIEWS, s)]
    assert len(sts) == 3  # d1: one post; d2: a campaign of two; d3 rejects, d4 restricts nothing
    for st in sts:
        assert check(st) == [], st
    first = sts[0]
    assert first["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_REMOVED"]
    assert first["category"] == "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY"
    assert first["content_date"] == "2026-11-30" and first["application_date"] == "2026-12-01"
    assert first["content_language"] == "EN" and first["automated_decision"] == "AUTOMATED_DECISION_NOT_AUTOMATED"
    assert len(first["territorial_scope"]) == 27 and "0.97" in first["decision_facts"]
    camp = sts[1]
    assert camp["decision_visibility"] == ["DECISION_VISIBILITY_CONTENT_DISABLED"]
    assert camp["category"] == "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH"
    assert camp["category_addition"] == ["STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY"]
    assert camp["automated_decision"] == "AUTOMATED_DECISION_PARTIALLY" and camp["territorial_scope"] == ["DE", "FR"]
    assert len({st["puid"] for st in sts}) == 3


def test_the_schema_catches_what_the_database_would_refuse():
    st = statements_for(DECISIONS[0], REVIEWS, _settings())[0]
    assert any("category" in e for e in check({**st, "category": "STATEMENT_CATEGORY_TERRORISM"}))
    assert any("puid" in e for e in check({**st, "puid": "has space"}))
    assert any("incompatible_content_ground" in e for e in check({k: v for k, v in st.items()
                                                                  if k != "incompatible_content_ground"}))
    illegal = {**st, "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT"}
    assert any("illegal_content_legal_ground" in e for e in check(illegal))
    with pytest.raises(ValueError, match="not supported"):
        errors({}, {"oneOf": []})
    assert statement_schema()["properties"]["automated_detection"]["enum"] == ["Yes", "No"]


def test_policies_come_from_config_and_bad_keys_say_what_is_allowed():
    s = _settings(statement_policies={"propaganda": {
        "decision_ground": "DECISION_GROUND_ILLEGAL_CONTENT", "illegal_content_legal_ground": "TCO Art. 2(7)",
        "illegal_content_explanation": "Solicits participation in a terrorist group."}})
    st = statements_for(DECISIONS[0], REVIEWS, s)[0]
    assert st["decision_ground"] == "DECISION_GROUND_ILLEGAL_CONTENT" and check(st) == []
    with pytest.raises(UserError, match="allowed: "):
        policy_for("propaganda", {"propaganda": {"grund": "x"}})
    with pytest.raises(UserError, match="statement_policies.other"):
        policy_for("other", {})


def test_summary_counts_equal_the_decisions_read():
    out = summary(DECISIONS, REVIEWS, _settings(decision_sla_s=3600), DECISIONS)
    assert out["decisions"] == len(DECISIONS) and out["statements"] == 3
    assert sum(sum(v.values()) for v in out["by_label"].values()) == sum(len(d.verdicts) for d in DECISIONS)
    assert out["by_label"]["sectarian"] == {"confirm": 1, "reject": 1}
    assert out["reversed"] == 1  # d2's sectarian confirm on p3, rejected by d3
    assert out["automated_decision"] == {"not_automated": 3, "partially": 1}
    ttd = out["time_to_decision"]
    assert ttd["posts"] == 5 and ttd["over_sla"] == 4  # only d1 (30 min) is within the hour


def test_new_decision_fields_round_trip_and_old_records_still_read():
    d = DECISIONS[1]
    assert parse_decision(decision_record(d).value) == d
    old = json.dumps({"decision_id": "x", "ids": ["a"], "verdicts": {"propaganda": "confirm"}, "reviewer": "r",
                      "decided_at": "2026-12-01T00:00:00Z"}).encode()
    assert parse_decision(old).action is None
    bad = json.dumps({**json.loads(old), "action": "deleted"}).encode()
    assert parse_decision(bad).error == "invalid_decision"


def test_statements_command_on_the_broker(topics):
    posts = [("s-prop", PROPAGANDA_TEXT), ("s-sect", SECTARIAN_TEXT), ("s-ok", BENIGN_TEXT)]
    produce_posts(topics.bootstrap, topics.posts, posts)
    runner = PipelineThread(topics.settings())
    try:
        read_all(topics.bootstrap, topics.scores, min_count=len(posts), timeout_s=90)
    finally:
        runner.stop()
    env = {**topics.env(decisions_topic=topics.posts + ".decisions"),
           "FLAGSTREAM_DECISIONS_HMAC_KEY": "statements-test-key-0123456789abcdef"}  # decide signs, statements verifies
    for args in (["s-prop", "--confirm", "propaganda", "--action", "removed"], ["s-sect", "--reject", "sectarian"],
                 ["s-sect", "--confirm", "sectarian"]):
        res = run_cli(["decide", *args], env=env)
        assert res.returncode == 0, res.stderr.decode()
    res = run_cli(["statements"], env=env)
    assert res.returncode == 0, res.stderr.decode()
    lines = [json.loads(x) for x in res.stdout.decode().splitlines()]
    assert len(lines) == 2 and all(check(st) == [] for st in lines)
    assert "vermin" not in res.stdout.decode() and "caliphate" not in res.stdout.decode()
    res = run_cli(["statements", "--summary"], env=env)
    assert res.returncode == 0, res.stderr.decode()
    out = json.loads(res.stdout)
    assert out["decisions"] == 3 and out["statements"] == 2 and out["reversed"] == 1
    assert out["time_to_decision"]["posts"] == 3 and out["time_to_decision"]["over_sla"] == 0
    unkeyed = {k: v for k, v in env.items() if k != "FLAGSTREAM_DECISIONS_HMAC_KEY"}
    res = run_cli(["statements"], env=unkeyed)  # no key: no unverified reviewer makes a statement
    assert res.returncode == 2 and "--accept-unsigned" in res.stderr.decode() and not res.stdout
    res = run_cli(["statements", "--since", "yesterday"], env=env)
    assert res.returncode == 2 or res.returncode == 1
    assert "--since" in res.stderr.decode() and "Traceback" not in res.stderr.decode()
