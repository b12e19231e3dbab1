"""Issue 29: no forged decision record can steer calibration or training.

Pure tests (no broker): signatures, one vote per principal, parsed timestamps, audit weights recomputed from
the policy, and the per-record id limit with chunking. The topic-level join by review coordinates is in
tests/test_decision_trust_topics.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timezone

import pytest

from flagstream.streaming.loop.audit import AuditPolicy, audit_fields, policy_weight
from flagstream.streaming.ops.decisions import Reviewed, build_decision, build_decisions
from flagstream.streaming.ops.feedback import export_rows, join, verdict_table
from flagstream.contract.decisions import MAX_DECISION_IDS, Decision, ReviewRef, decision_record, parse_decision
from flagstream.contract.posts import Rejection
from flagstream.streaming.signing import row_mac, row_verdict, sign, trusted, verify

KEY = b"k" * 32
MODEL = {"name": "m", "version": "1"}
THR = {"propaganda": 0.5, "sectarian": 0.5}
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


def _dec(pid: str, verdict: str, reviewer: str, at: str, key: bytes | None = KEY) -> Decision:
    d = build_decision([Reviewed({"id": pid, "model": MODEL, "thresholds": THR}, ReviewRef(pid, "rv", 0, 0))],
                       {"sectarian": verdict}, reviewer)
    d = dataclasses.replace(d, decided_at=at)
    return sign(d, key) if key is not None else d


def test_signed_decision_round_trips_and_any_edit_breaks_it():
    d = _dec("p1", "confirm", "rv-1", "2026-05-01T10:00:00+00:00")
    back = parse_decision(decision_record(d).value)
    assert isinstance(back, Decision) and back.signature == d.signature and verify(back, KEY)
    for change in ({"reviewer": "rv-2"}, {"decided_at": "2026-05-01T10:00:01+00:00"}, {"ids": ("p1", "p2")},
                   {"verdicts": {"sectarian": "reject"}}, {"reviews": ()}):
        assert not verify(dataclasses.replace(back, **change), KEY), change
    assert not verify(back, b"another key of enough length")
    assert isinstance(parse_decision(json.dumps({**d.as_dict(), "signature": "zz"}).encode()), Rejection)


def test_made_up_reviewers_do_not_outvote_a_signed_one():
    """The finding: one vote per distinct reviewer id, ids taken on trust, so invented ids win the majority."""
    real = _dec("p1", "confirm", "rv-real", "2026-05-01T10:00:00+00:00")
    forged = [_dec("p1", "reject", f"sock-{i}", "2026-05-01T10:00:00+00:00", key=None) for i in range(5)]
    forged.append(dataclasses.replace(_dec("p1", "reject", "sock-x", "2026-05-01T10:00:00+00:00"),
                                      reviewer="sock-y"))  # a signature copied onto another reviewer
    kept, skipped = trusted([real, *forged], KEY, now=NOW)
    table, _ = verdict_table(kept)
    assert table[("p1", "sectarian")] == {"rv-real": "confirm"}
    assert skipped == {"unsigned": 5, "bad_signature": 1}
    # legacy data, explicitly accepted: unsigned ones count, a bad signature still does not
    kept, skipped = trusted([real, *forged], KEY, accept_unsigned=True, now=NOW)
    assert len(kept) == 6 and skipped == {"bad_signature": 1}
    # no key at all: a signature cannot be checked, so it does not count as one
    kept, skipped = trusted([real], None, now=NOW)
    assert kept == [] and skipped == {"bad_signature": 1}


def test_latest_decision_compares_times_not_strings():
    """"2026-05-01T10:00:00+05:00" is 05:00 UTC: earlier than 06:00Z, though it sorts later as a string."""
    early = _dec("p1", "confirm", "rv-1", "2026-05-01T10:00:00+05:00")
    late = _dec("p1", "reject", "rv-1", "2026-05-01T06:00:00Z")
    for order in ([early, late], [late, early]):
        table, _ = verdict_table(order)
        assert table[("p1", "sectarian")] == {"rv-1": "reject"}


def test_a_future_dated_decision_never_wins_latest():
    now_ok = _dec("p1", "confirm", "rv-1", "2026-05-31T23:59:00+00:00")
    forged = _dec("p1", "reject", "rv-1", "9999-12-31T23:59:59+00:00")
    kept, skipped = trusted([now_ok, forged], KEY, now=NOW)
    assert kept == [now_ok] and skipped == {"future_timestamp": 1}
    assert verdict_table(kept)[0][("p1", "sectarian")] == {"rv-1": "confirm"}


def test_unparsable_decided_at_is_skipped_and_counted():
    bad = dataclasses.replace(_dec("p1", "confirm", "rv-1", "2026-05-01T10:00:00Z", key=None), decided_at="yesterday")
    kept, skipped = trusted([sign(bad, KEY)], KEY, now=NOW)
    assert kept == [] and skipped == {"bad_timestamp": 1}
    assert verdict_table([bad]) == ({}, [])


def _audit_record(pid: str, policy: AuditPolicy, weight: object) -> dict | None:
    scores = {"propaganda": 0.1, "sectarian": 0.3}
    fields = audit_fields(pid, scores, THR, policy)
    if fields is None:
        return None
    return {"id": pid, "scores": scores, "thresholds": THR, "labels": [], "model": MODEL, "source": {"topic": "f"},
            "text": "t", "audit": True, "sampling_probability": fields["sampling_probability"],
            "sampling_weight": weight}


def test_audit_weight_is_recomputed_from_the_policy_not_read_from_the_record():
    """The finding: ``sampling_weight`` Infinity killed calibrate --watch, 1e6 drove recall to ~0."""
    policy = AuditPolicy(rate=0.2, near_rate=0.5, seed="s")
    recs = [r for r in (_audit_record(f"a{i}", policy, w) for i, w in
                        enumerate([math.inf, 1e6, "x", 2.0] * 10)) if r is not None]
    assert len(recs) >= 4
    reviews = {r["id"]: r for r in recs}
    ds = [_dec(pid, "confirm", "rv-1", "2026-05-01T10:00:00Z") for pid in reviews]
    joined = join(reviews, ds, MODEL, ["sectarian"], policy)
    assert len(joined.rows) == len(recs) and all(r.audit for r in joined.rows)
    assert {round(r.weight, 6) for r in joined.rows} == {2.0}  # 1 / near_rate, times full coverage
    rows, skipped = export_rows(reviews, ds, ["sectarian"], policy)
    assert {r["sampling_weight"] for r in rows} == {2.0}


def test_an_audit_record_the_policy_never_drew_counts_for_nothing():
    policy = AuditPolicy(rate=0.2, near_rate=0.5, seed="s")
    undrawn = next(f"u{i}" for i in range(1000) if audit_fields(f"u{i}", {"sectarian": 0.3, "propaganda": 0.1},
                                                                 THR, policy) is None)
    rec = {"id": undrawn, "scores": {"propaganda": 0.1, "sectarian": 0.3}, "thresholds": THR, "audit": True,
           "sampling_weight": 2.0}
    with pytest.raises(ValueError, match="did not draw"):
        policy_weight(rec, policy)
    flagged = {"id": "f", "scores": {"sectarian": 0.9}, "thresholds": THR, "labels": ["sectarian"],
               "sampling_weight": 1e6}
    assert policy_weight(flagged, policy) == (False, 1.0)
    joined = join({undrawn: {**rec, "model": MODEL}}, [_dec(undrawn, "confirm", "rv-1", "2026-05-01T10:00:00Z")],
                  MODEL, ["sectarian"], policy)
    assert joined.rows == [] and joined.skipped["bad_audit_weight"] == 1


def test_one_record_covers_at_most_the_limit_and_big_campaigns_are_chunked():
    """The finding: one record could cover 10,000 ids (emptying every queue), and a bigger campaign could
    never be decided at all."""
    items = [Reviewed({"id": f"c{i}", "model": MODEL, "thresholds": THR}, ReviewRef(f"c{i}", "rv", 0, i))
             for i in range(10_050)]
    ds = build_decisions(items, {"sectarian": "confirm"}, "rv-1", key=KEY, campaign="camp-1",
                         extra_ids=["gone-1", "c3"])
    assert all(len(d.ids) <= MAX_DECISION_IDS for d in ds)
    assert [pid for d in ds for pid in d.ids] == [f"c{i}" for i in range(10_050)] + ["gone-1"]
    assert all(verify(d, KEY) and d.campaign == "camp-1" for d in ds)
    for d in ds:  # each chunk carries the coordinates of its own members
        assert [r.id for r in d.reviews] == [pid for pid in d.ids if pid != "gone-1"]
        assert isinstance(parse_decision(decision_record(d).value), Decision)
    too_many = {**ds[0].as_dict(), "ids": [f"x{i}" for i in range(MAX_DECISION_IDS + 1)]}
    assert isinstance(parse_decision(json.dumps(too_many).encode()), Rejection)


def test_exported_rows_are_signed_and_checked():
    row = {"id": "p1", "text": "t", "sectarian": 1, "propaganda": None}
    signed = {**row, "signature": row_mac(row, KEY)}
    assert row_verdict(signed, KEY) is None
    assert row_verdict({**signed, "sectarian": 0}, KEY) == "bad_signature"
    assert row_verdict(row, KEY) == "unsigned" and row_verdict(row, KEY, accept_unsigned=True) is None
    assert row_verdict(signed, None) == "bad_signature"
