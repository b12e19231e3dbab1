"""Campaign grouping (streaming/loop/campaigns.py) and explanation spans (classifier/inference/explain.py).

The tracker is exercised directly, then through the real pipeline on the embedded broker, including a
restart that must rebuild the campaign index from the review topic.
"""

from __future__ import annotations

import json

import pytest
from support.kafka import post_bytes, produce, read_all
from support.model import PROPAGANDA_TEXT, SECTARIAN_TEXT
from support.process import PipelineThread

from flagstream.streaming.loop.campaigns import CampaignTracker, campaign_id_for, normalise

pytestmark = pytest.mark.timeout(240)

BASE = "the soldiers of the state will conquer, join the fighters and pledge allegiance to the caliphate"
OTHER = "people of that sect are vermin and should be driven out of every town, they are not human at all"


def test_normalise_drops_what_reposts_change():
    assert normalise("RT @acct_1: Join  the FIGHTERS! https://t.co/x @someone \u200b") == "join the fighters"


def test_reposts_join_one_campaign_and_unrelated_posts_do_not():
    t = CampaignTracker(window_s=3600, similarity=0.5)
    first = t.assign("a", BASE + " https://t.co/a", 1_000)
    assert first == {"id": campaign_id_for("a"), "members": 1}
    assert t.assign("b", "RT @x: " + BASE + " https://t.co/b", 2_000) == {"id": first["id"], "members": 2}
    assert t.assign("c", BASE.replace("conquer", "prevail"), 3_000) == {"id": first["id"], "members": 3}
    assert t.assign("d", OTHER, 4_000)["id"] == campaign_id_for("d")
    # a redelivered post (at-least-once) gets the same answer and is not counted twice
    assert t.assign("b", "RT @x: " + BASE, 5_000) == {"id": first["id"], "members": 3}


def test_window_and_memory_bound():
    t = CampaignTracker(window_s=10, similarity=0.5)
    t.assign("a", BASE, 0)
    assert t.assign("b", BASE, 20_000)["id"] == campaign_id_for("b")  # outside the window: a new campaign
    assert list(t.entries) == ["b"]
    bounded = CampaignTracker(window_s=3600, max_posts=100, similarity=0.5)
    for i in range(250):
        bounded.assign(f"p{i}", f"post number {i} about topic {i * 7919} with words {i * 31}", i)
    assert len(bounded.entries) <= 100 and len(bounded.live) <= 100 and len(bounded.counts) <= 100


def test_pipeline_campaigns_survive_a_restart(topics):
    settings = topics.settings()
    first = [("r-1", BASE + " https://t.co/1"), ("r-2", "RT @a: " + BASE), ("s-1", SECTARIAN_TEXT)]
    produce(topics.bootstrap, topics.posts, [(pid.encode(), post_bytes(pid, text)) for pid, text in first])
    runner = PipelineThread(settings)
    try:
        read_all(topics.bootstrap, topics.scores, min_count=3, timeout_s=90)
    finally:
        runner.stop()
    # a new process: its campaign index comes from the review topic
    produce(topics.bootstrap, topics.posts, [(b"r-3", post_bytes("r-3", BASE.replace("join", "rally to")))])
    runner = PipelineThread(settings)
    try:
        read_all(topics.bootstrap, topics.scores, min_count=4, timeout_s=90)
    finally:
        runner.stop()
    review = {json.loads(r.value)["id"]: json.loads(r.value) for r in read_all(topics.bootstrap, topics.review)}
    camps = {pid: r["campaign"] for pid, r in review.items()}
    assert camps["r-1"]["id"] == camps["r-2"]["id"] == camps["r-3"]["id"] != camps["s-1"]["id"]
    assert sorted(c["members"] for pid, c in camps.items() if pid.startswith("r-")) == [1, 2, 3]
    assert camps["r-3"]["members"] == 3
    # explanation spans: flagged labels only, inside the text, the top span's deletion lowers the score
    for pid, rec in review.items():
        assert set(rec["spans"]) == set(rec["labels"])
        for label, spans in rec["spans"].items():
            assert 1 <= len(spans) <= 3
            assert all(0 <= s["start"] < s["end"] <= len(rec["text"]) and s["weight"] > 0 for s in spans)


def test_occlusion_spans_point_at_the_words_that_drive_the_score(linear_model_dir):
    from flagstream.classifier.inference.explain import delete_spans, explain
    from flagstream.classifier.inference.scoring import load_scorer

    scorer = load_scorer(linear_model_dir)
    texts = [PROPAGANDA_TEXT, "a quiet morning by the river"]
    out = explain(scorer, texts, [["propaganda"], []])
    assert out[1] == {}
    spans = out[0]["propaganda"]
    words = [PROPAGANDA_TEXT[s["start"]:s["end"]] for s in spans]
    assert all(w.strip() and " " not in w for w in words)
    col = list(scorer.info.labels).index("propaganda")
    full = scorer.score([PROPAGANDA_TEXT])[0, col]
    without = scorer.score([delete_spans(PROPAGANDA_TEXT, [(s["start"], s["end"]) for s in spans])])[0, col]
    assert without < full - sum(s["weight"] for s in spans) / 3
