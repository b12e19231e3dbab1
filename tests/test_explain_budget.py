"""The explanation budget (streaming/loop/annotate.py): spans spend idle time plus a share of working time.

Occlusion costs ~30 forward passes per flagged post; under a backlog, explaining every flagged post halved the
stream (bench/RESULTS.md). These tests drive the annotator with a fake clock in which each explained post costs a
fixed time, so what the budget allows is exact.
"""

from __future__ import annotations

import pytest
from support.model import PROPAGANDA_TEXT

from flagstream.streaming.loop.annotate import ExplainBudget, ReviewAnnotator

COST_S = 0.5  # fake seconds per explained post


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def annotator(linear_model_dir):
    from flagstream.classifier.inference.scoring import load_scorer

    scorer = load_scorer(linear_model_dir)
    clock = _Clock()
    outcomes: dict[str, int] = {}
    ann = ReviewAnnotator(scorer, None, budget=ExplainBudget(share=0.1, cap_s=30.0), clock=clock,
                          on_outcome=lambda o, n: outcomes.__setitem__(o, outcomes.get(o, 0) + n))
    real_explain = ann._explain

    def timed(flagged, out):  # each explained post advances the fake clock by COST_S
        import flagstream.streaming.loop.annotate as mod

        orig = mod.explain

        def fake(scorer, texts, *a, **k):
            clock.now += COST_S * len(texts)
            return orig(scorer, texts, *a, **k)

        mod.explain = fake
        try:
            real_explain(flagged, out)
        finally:
            mod.explain = orig

    ann._explain = timed
    ann.outcomes = outcomes
    return ann


def _flagged(n: int, tag: str = ""):
    return [(f"p{tag}{i}", f"{PROPAGANDA_TEXT} {tag} number {i}", 0, ["propaganda"], None) for i in range(n)]


def test_without_credit_flagged_posts_go_out_marked_not_explained(annotator):
    out = annotator.annotate(_flagged(3))
    assert all(v == {"spans_skipped": "load"} for v in out.values())
    assert annotator.outcomes == {"skipped_load": 3}


def test_idle_time_pays_for_every_flagged_post(annotator):
    annotator.earn(idle_s=10.0, busy_s=0.0)  # a quiet feed: the loop waited 10 s for posts
    out = annotator.annotate(_flagged(4))
    assert all(set(v) == {"spans"} and v["spans"]["propaganda"] for v in out.values())
    assert annotator.outcomes == {"explained": 4}
    assert annotator.budget.credit_s == pytest.approx(10.0 - 4 * COST_S)


def test_under_backlog_explanations_take_at_most_their_share_of_working_time(annotator):
    # No idle time, 20 s of scoring per batch: 10% buys 2 s = 4 posts of 0.5 s (one post may overdraw).
    explained = skipped = 0
    for batch in range(10):
        annotator.earn(idle_s=0.0, busy_s=20.0)
        out = annotator.annotate(_flagged(10, tag=f"b{batch}"))
        explained += sum("spans" in v for v in out.values())
        skipped += sum(v.get("spans_skipped") == "load" for v in out.values())
    assert explained + skipped == 100
    assert annotator.explain_seconds <= 0.1 * 20.0 * 10 + COST_S
    assert explained >= 30  # the share is used, not wasted


def test_reposts_reuse_their_spans_without_spending_credit(annotator):
    annotator.earn(idle_s=COST_S, busy_s=0.0)
    first = annotator.annotate(_flagged(1))
    again = annotator.annotate([("repost", _flagged(1)[0][1], 0, ["propaganda"], None)])
    assert again["repost"]["spans"] == first["p0"]["spans"]
    assert annotator.outcomes == {"explained": 1, "cached": 1}


def test_credit_is_capped_so_a_quiet_night_does_not_stall_the_next_backlog():
    budget = ExplainBudget(share=0.1, cap_s=30.0)
    budget.earn(idle_s=8 * 3600, busy_s=0.0)
    assert budget.credit_s == 30.0
    assert budget.affordable(cost_per_post_s=1.0, wanted=500) == 31
    assert ExplainBudget(credit_s=0.0).affordable(1.0, 5) == 0


def test_the_console_says_why_a_post_has_no_highlighted_words():
    import json
    from types import SimpleNamespace

    from flagstream.config import load_settings
    from flagstream.streaming.ops.console.state import ReviewState

    s = load_settings(None, {"review_topic": "rv", "decisions_topic": "dc"}, environ={})
    state = ReviewState(s, consumer=None, producer=None)
    thr = {"propaganda": 0.8, "sectarian": 0.9}
    body = {"id": "f1", "text": "t", "labels": ["sectarian"], "scores": {"propaganda": 0.1, "sectarian": 0.95},
            "thresholds": thr, "spans_skipped": "load"}
    state.apply(SimpleNamespace(topic="rv", partition=0, offset=0, value=json.dumps(body).encode()))
    (group,) = state.groups()
    item = state.item(group.key)
    assert item["spans_skipped"] == "load" and item["spans"] == {}


def test_a_batch_spends_at_most_explain_max_batch_s_and_never_a_quarter_of_the_poll_interval(linear_model_dir):
    """Spans run before their batch's review records go out (latency), and a batch that outlasts
    max_poll_interval_ms gets the member evicted and the batch re-read (duplicates)."""
    from flagstream.classifier.inference.scoring import load_scorer
    from flagstream.config import load_settings

    scorer = load_scorer(linear_model_dir)
    default = load_settings(None, {}, environ={})
    assert ReviewAnnotator.from_settings(default, scorer).budget.cap_s == pytest.approx(1.0)
    generous = load_settings(None, {"explain_max_batch_s": 20, "max_poll_interval_ms": 10_000}, environ={})
    assert ReviewAnnotator.from_settings(generous, scorer).budget.cap_s == pytest.approx(2.5)
    annotator = ReviewAnnotator.from_settings(default, scorer)
    annotator.earn(idle_s=3600.0, busy_s=0.0)  # an hour's quiet buys one batch's worth, no more
    assert annotator.budget.credit_s == pytest.approx(1.0)


def test_a_batch_past_half_the_poll_interval_is_warned_about_with_the_settings_that_fix_it(caplog):
    import logging

    from flagstream.config import load_settings
    from flagstream.streaming.loop.pipeline import Pipeline

    clock = _Clock()
    pipe = Pipeline(load_settings(None, {"max_poll_interval_ms": 4000, "batch_size": 8}, environ={}))
    pipe._process = lambda records: setattr(clock, "now", clock.now + 1.5 * len(records))  # fake work
    pipe._clock = clock
    with caplog.at_level(logging.WARNING, logger="flagstream.streaming.loop.pipeline"):
        pipe._paced([object()], waited_s=0.0)  # 1.5 s of 4 s: fine
        assert not caplog.records
        pipe._paced([object(), object()], waited_s=0.0)  # 3 s of 4 s: warned
    (rec,) = caplog.records
    assert "lower batch_size or raise max_poll_interval_ms" in rec.getMessage()
    assert rec.batch_seconds == 3.0 and rec.max_poll_interval_s == 4.0
