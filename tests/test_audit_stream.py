"""The audit sample through the real stream: unflagged posts reach the review topic with their weights."""

from __future__ import annotations

import json

import pytest

from flagstream.streaming.loop.audit import AuditPolicy, audit_fields
from support.kafka import produce_posts, read_all
from support.model import BENIGN_TEXT, PROPAGANDA_TEXT
from support.process import PipelineThread

pytestmark = pytest.mark.timeout(180)


def test_audit_records_arrive_on_the_review_topic_with_their_weights(topics):
    posts = [(f"au-{i}", PROPAGANDA_TEXT if i % 10 == 0 else f"{BENIGN_TEXT} {i}") for i in range(200)]
    produce_posts(topics.bootstrap, topics.posts, posts)
    settings = topics.settings(audit_rate=0.2, audit_near_rate=0.5, audit_seed="t-seed")
    runner = PipelineThread(settings)
    try:
        scores = {json.loads(r.value)["id"]: json.loads(r.value)
                  for r in read_all(topics.bootstrap, topics.scores, min_count=len(posts), timeout_s=90)}
    finally:
        assert runner.stop() == 0
    policy = AuditPolicy.from_settings(settings)
    thresholds = {"propaganda": 0.5, "sectarian": 0.5}
    expected = {pid: f for pid, v in scores.items() if not v["labels"]
                and (f := audit_fields(pid, v["scores"], thresholds, policy)) is not None}
    flagged = {pid for pid, v in scores.items() if v["labels"]}
    assert 10 < len(expected) < 100  # ~20% of 180 unflagged posts
    review = read_all(topics.bootstrap, topics.review, min_count=len(expected) + len(flagged))
    by_id = {json.loads(r.value)["id"]: (json.loads(r.value), dict(r.headers)) for r in review}
    assert set(by_id) == set(expected) | flagged
    for pid, fields in expected.items():
        body, headers = by_id[pid]
        assert body["audit"] is True and body["labels"] == []
        assert body["sampling_probability"] == fields["sampling_probability"] == 0.2  # benign: far below
        assert body["sampling_weight"] == 5.0 and headers["flagstream.audit"] == b"5.0"
        assert body["scores"] == scores[pid]["scores"] and body["text"].startswith(BENIGN_TEXT)
    assert all("audit" not in by_id[pid][0] for pid in flagged)
