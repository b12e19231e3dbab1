"""Issue 29 on the real broker: decisions join the review record at the coordinates they carry, and the
readers keep review records without their text (text only for decided posts, when exporting)."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from flagstream.config import load_settings
from flagstream.streaming.ops.decisions import Reviewed, build_decision
from flagstream.streaming.ops.feedback import read_rows, read_topics
from flagstream.contract.posts import Post
from flagstream.contract.decisions import ReviewRef, decision_record
from flagstream.contract.records import Source
from flagstream.contract.review import review_record
from flagstream.streaming.signing import sign

pytestmark = pytest.mark.timeout(120)
KEY = "topics-test-key-" + "k" * 16
MODEL = {"name": "m", "version": "1"}
THR = {"propaganda": 0.5, "sectarian": 0.5}


@pytest.fixture
def settings(broker):
    tag = uuid.uuid4().hex[:8]
    review, decisions = f"review-{tag}", f"decisions-{tag}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    admin.create_topics([NewTopic(review, 1, 1), NewTopic(decisions, 1, 1)])
    admin.close()
    return load_settings(None, {"bootstrap_servers": broker.bootstrap, "review_topic": review,
                                "decisions_topic": decisions, "decisions_hmac_key": KEY,
                                "startup_timeout_s": 20}, environ={})


def _review(producer, topic, pid, score, text):
    rec = review_record(Post(pid, text), Source("forum", 0, 1, 0), {"propaganda": 0.01, "sectarian": score},
                        ["sectarian"] if score >= 0.5 else [], THR, MODEL)
    return producer.send(topic, key=rec.key, value=rec.value, headers=rec.headers).get(timeout=30)


def test_a_decision_joins_the_review_record_it_names_not_a_later_one_with_the_same_id(settings):
    """The finding: decisions joined posts by id only, so a record written later under a decided id (a
    redelivery, or a forgery) replaced the scores the reviewer actually saw."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    seen = _review(producer, settings.review_topic, "a", 0.9, "the post the reviewer saw")
    d = build_decision([Reviewed({"id": "a", "model": MODEL, "thresholds": THR},
                                 ReviewRef("a", settings.review_topic, seen.partition, seen.offset))],
                       {"sectarian": "confirm"}, "rv-1")
    out = decision_record(sign(d, KEY.encode()))
    producer.send(settings.decisions_topic, key=out.key, value=out.value, headers=out.headers).get(timeout=30)
    _review(producer, settings.review_topic, "a", 0.05, "a later record under the same id")
    _review(producer, settings.review_topic, "u", 0.7, "an undecided post")
    producer.close()

    joined = read_rows(settings, MODEL, ["sectarian"])
    assert [(r.score, r.verdict) for r in joined.rows] == [(0.9, 1.0)]
    # calibration keeps every review record (coverage needs them) but no text
    topics = read_topics(settings)
    assert set(topics.reviews) == {"a", "u"} and all("text" not in r for r in topics.reviews.values())
    # export keeps only decided posts, with their text
    topics = read_topics(settings, keep_text=True, all_reviews=False)
    assert set(topics.reviews) == {"a"} and topics.reviews["a"]["text"] == "the post the reviewer saw"


def test_decide_signs_with_the_key_and_chunks_big_id_lists(settings):
    """``flagstream decide`` signs when it holds the key; more ids than one record may cover become several."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from flagstream.contract.decisions import MAX_DECISION_IDS, Decision, parse_decision
    from flagstream.streaming.signing import verify

    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
    env.update({"FLAGSTREAM_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "FLAGSTREAM_REVIEW_TOPIC": settings.review_topic, "FLAGSTREAM_DECISIONS_TOPIC": settings.decisions_topic,
                "FLAGSTREAM_DECISIONS_HMAC_KEY": KEY, "FLAGSTREAM_STARTUP_TIMEOUT_S": "20"})
    ids = [f"x{i}" for i in range(MAX_DECISION_IDS + 3)]
    r = subprocess.run([sys.executable, "-m", "flagstream.cli", "decide", *ids, "--reject", "sectarian",
                        "--reviewer", "rv-cli", "--allow-missing"], env=env, cwd=Path(__file__).resolve().parents[1],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    ds = [parse_decision(line.encode()) for line in r.stdout.splitlines()]
    assert all(isinstance(d, Decision) and verify(d, KEY.encode()) and d.reviewer == "rv-cli" for d in ds)
    assert [len(d.ids) for d in ds] == [MAX_DECISION_IDS, 3] and [p for d in ds for p in d.ids] == ids
    assert json.loads(r.stdout.splitlines()[0])["signature"] == ds[0].signature
