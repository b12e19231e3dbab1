"""Time to decision: the histogram and SLA count the console's stats and /metrics show."""

from __future__ import annotations

from flagstream.streaming.ops.decision_time import DecisionTimes, seconds_between


def test_waits_are_observed_and_counted_past_the_sla():
    t = DecisionTimes(sla_s=3600)
    assert t.observe({"flagged_at": "2026-12-01T09:00:00.000Z"}, "2026-12-01T09:30:00.000Z") == 1800.0
    assert t.observe({"flagged_at": "2026-12-01T09:00:00.000Z"}, "2026-12-01T11:00:00.000Z") == 7200.0
    assert t.observe({}, "2026-12-01T11:00:00.000Z") is None  # no flagged_at: not counted
    assert t.as_dict() == {"posts": 2, "sla_s": 3600.0, "over_sla": 1, "mean_s": 4500.0, "max_s": 7200.0}
    sample = t.registry.get_sample_value
    assert sample("flagstream_time_to_decision_seconds_count") == 2.0
    assert sample("flagstream_time_to_decision_seconds_bucket", {"le": "3600.0"}) == 1.0
    assert sample("flagstream_decisions_over_sla_total") == 1.0


def test_malformed_or_mixed_times_give_no_wait():
    assert seconds_between("yesterday", "2026-12-01T09:00:00Z") is None
    assert seconds_between("2026-12-01T09:00:00", "2026-12-01T09:00:00Z") is None  # naive vs aware
    assert seconds_between("2026-12-01T10:00:00Z", "2026-12-01T09:00:00Z") == 0.0  # clock skew never goes negative
