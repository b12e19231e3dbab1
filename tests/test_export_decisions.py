"""``flagstream export-decisions`` on the real broker, and decided rows as a train-only source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from flagstream.classifier.data.corpus import DECISIONS_SOURCE, read_decision_rows, with_decisions
from flagstream.errors import UserError
from flagstream.streaming.loop.audit import mark_audit, uniform
from flagstream.streaming.ops.decisions import Reviewed, build_decision
from flagstream.contract.posts import Post
from flagstream.contract.decisions import ReviewRef, decision_record
from flagstream.contract.records import Source
from flagstream.contract.review import review_record
from flagstream.streaming.signing import sign

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[1]
MODEL = {"name": "m", "version": "1"}
THR = {"propaganda": 0.5, "sectarian": 0.5}
KEY = "export-test-key-" + "k" * 16
# an audit seed whose keyed draw picks post "b" at the default near-threshold rate (0.10): weight 10
SEED = next(f"s{i}" for i in range(100_000) if uniform("b", f"s{i}") < 0.10)


def cli(args, env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
    base.update(env)
    return subprocess.run([sys.executable, "-m", "flagstream.cli", *args], env=base, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_export_decisions_from_the_topics(broker, tmp_path):
    tag = uuid.uuid4().hex[:8]
    review, decisions = f"review-{tag}", f"decisions-{tag}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    admin.create_topics([NewTopic(review, 1, 1), NewTopic(decisions, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    metas = {}
    posts = {"a": ("they are vermin, drive them out", {"propaganda": 0.1, "sectarian": 0.9}, ["sectarian"]),
             "b": ("a quiet walk by the river today", {"propaganda": 0.01, "sectarian": 0.3}, []),
             "c": ("join the fighters brothers", {"propaganda": 0.8, "sectarian": 0.1}, ["propaganda"])}
    for pid, (text, scores, labels) in posts.items():
        rec = review_record(Post(pid, text), Source("forum", 0, 1, 0), scores, labels, THR, MODEL)
        value, headers = rec.value, rec.headers
        if pid == "b":
            value, headers = mark_audit(value, headers, {"audit": True, "sampling_probability": 0.1, "sampling_weight": 10.0})
        for _ in range(2):  # at-least-once: a redelivered duplicate
            metas[pid] = producer.send(review, key=rec.key, value=value, headers=headers).get(timeout=30)

    def decide(pid, verdicts, reviewer, signed=True):
        off = metas[pid].offset if pid in metas else 0
        d = build_decision([Reviewed({"id": pid}, ReviewRef(pid, review, 0, off))], verdicts, reviewer)
        out = decision_record(sign(d, KEY.encode()) if signed else d)
        producer.send(decisions, key=out.key, value=out.value, headers=out.headers).get(timeout=30)

    decide("a", {"sectarian": "confirm", "propaganda": "reject"}, "r1")
    decide("a", {"sectarian": "reject"}, "r2")  # disagreement: tie -> null, kept visible
    decide("b", {"sectarian": "confirm"}, "r1")
    decide("c", {"propaganda": "unsure"}, "r1")  # nothing decided: not exported
    decide("zz", {"sectarian": "reject"}, "r1")  # no review record: counted, not exported
    for i in range(3):  # made-up reviewers without the key: counted, never a vote
        decide("b", {"sectarian": "reject"}, f"sock-{i}", signed=False)
    producer.close()
    out = tmp_path / "decided.jsonl"
    env = {"FLAGSTREAM_BOOTSTRAP_SERVERS": broker.bootstrap, "FLAGSTREAM_REVIEW_TOPIC": review,
           "FLAGSTREAM_DECISIONS_TOPIC": decisions, "FLAGSTREAM_AUDIT_SEED": SEED}
    r = cli(["export-decisions", "--output", str(out)], env)
    assert r.returncode == 2 and "--accept-unsigned" in r.stderr and "Traceback" not in r.stderr  # no key
    env["FLAGSTREAM_DECISIONS_HMAC_KEY"] = KEY
    r = cli(["export-decisions", "--output", str(out)], env)
    assert r.returncode == 0, r.stderr
    assert "2 decided posts" in r.stdout and "1 with reviewer disagreement" in r.stdout, r.stdout
    assert "no_review_record 1" in r.stdout and "no_decided_label 1" in r.stdout
    assert "decision_unsigned 3" in r.stdout
    rows = {json.loads(line)["id"]: json.loads(line) for line in out.read_text().splitlines()}
    assert set(rows) == {"a", "b"}  # duplicates of the review record collapse to one row
    a, b = rows["a"], rows["b"]
    assert a["sectarian"] is None and a["disputed"] == ["sectarian"] and a["propaganda"] == 0
    assert a["votes"]["sectarian"] == {"confirm": 1, "reject": 1, "unsure": 0}
    assert b["sectarian"] == 1 and b["audit"] is True and b["sampling_weight"] == 10.0 and b["propaganda"] is None
    assert b["text"] == posts["b"][0] and a["feed"] == "forum"
    # the file feeds training: read back as rows, every one signed
    back = read_decision_rows(out)
    assert {r["id"] for r in back} == {"a", "b"} and all(len(r["signature"]) == 64 for r in rows.values())
    # legacy data, on request: the unsigned votes count (and outvote r1 on b)
    r = cli(["export-decisions", "--output", str(out), "--accept-unsigned"], env)
    assert r.returncode == 0 and "decision_unsigned" not in r.stdout, r.stdout
    assert json.loads([x for x in out.read_text().splitlines() if '"id": "b"' in x][0])["sectarian"] == 0
    # a bad output directory is one line
    r = cli(["export-decisions", "--output", str(tmp_path / "no" / "x.jsonl")], env)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def _corpus():
    import datasets

    from flagstream.classifier.data.corpus import load_corpus  # noqa: F401  (same features as the real loader)

    feats = datasets.Features({
        "text": datasets.Value("string"), "propaganda": datasets.Value("int8"), "sectarian": datasets.Value("int8"),
        "source": datasets.Value("string"), "lang": datasets.Value("string"), "group": datasets.Value("string"),
        "weight": datasets.Value("float32"), "hand": datasets.Value("int8"), "meta": datasets.Value("string"),
        "weak": datasets.Value("int8"), "split": datasets.Value("string")})
    texts = ["an evaluation post about the river", "a training post about bread", "a validation post on trains"]
    return datasets.Dataset.from_dict({
        "text": texts, "propaganda": [0, 0, 1], "sectarian": [1, 0, None], "source": ["s"] * 3, "lang": ["en"] * 3,
        "group": ["g1", "g2", "g3"], "weight": [1.0] * 3, "hand": [0] * 3, "meta": ["{}"] * 3, "weak": [0] * 3,
        "split": ["test", "train", "val"]}, features=feats)


def test_decided_rows_are_train_only_and_never_an_evaluation_text():
    ds = _corpus()
    rows = [{"id": "1", "text": "An evaluation post about the river!", "propaganda": 1, "sectarian": None},  # = test row
            {"id": "2", "text": "a new decided post about hatred", "propaganda": None, "sectarian": 1},
            {"id": "3", "text": "a new decided post about hatred", "propaganda": None, "sectarian": 1},  # duplicate
            {"id": "4", "text": "a post nobody could decide", "propaganda": None, "sectarian": None}]
    merged, counts = with_decisions(ds, rows, weight=0.5)
    assert counts == {"in_eval_split": 1, "duplicate": 1, "unusable": 1, "added": 1}
    added = [i for i, s in enumerate(merged["source"]) if s == DECISIONS_SOURCE]
    assert len(added) == 1 and merged[added[0]]["split"] == "train" and merged[added[0]]["weight"] == 0.5
    assert merged[added[0]]["sectarian"] == 1 and merged[added[0]]["propaganda"] is None
    assert sorted(merged["split"]).count("test") == 1 and len(merged) == 4


def test_train_flag_errors_are_one_line(tmp_path):
    from flagstream.commands.train import add_decisions

    with pytest.raises(UserError, match="no such file"):
        add_decisions(_corpus(), [tmp_path / "missing.jsonl"], 1.0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "sectarian": 3}\n')
    with pytest.raises(UserError, match="bad.jsonl:1"):
        add_decisions(_corpus(), [bad], 1.0)
