"""``flagstream calibrate --from-decisions`` on the real broker: a synthetic feed with known truth.

Review records (flagged, and audit-sampled by streaming/loop/audit.py) are written to a review topic as the
stream writes them, scored by a known synthetic model; reviewers' decisions answer them from the known
truth through the decisions module (and one through ``flagstream decide``); the CLI then recalibrates
the test model for that feed. The new threshold is checked against the feed's true best threshold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaAdminClient, KafkaProducer

from flagstream.classifier.manifest import read_manifest
from flagstream.streaming.loop.audit import AuditPolicy, audit_fields, mark_audit
from flagstream.streaming.ops.decisions import Reviewed, build_decision
from flagstream.streaming.ops.feedback import join, latest_reviews
from flagstream.contract.posts import Post
from flagstream.contract.decisions import ReviewRef, decision_record, parse_decision
from flagstream.contract.records import Source
from flagstream.contract.review import review_record
from flagstream.streaming.signing import sign

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parents[1]
THR = 0.5
KEY = "calibrate-test-key-" + "k" * 16  # signs the decisions written here; the CLI verifies with it


def audit_policy(seed: int) -> AuditPolicy:
    # a small feed needs a larger audit than the 1% default for the same evidence (weights 20 and 3.3)
    return AuditPolicy(rate=0.05, near_rate=0.3, seed=f"t{seed}")


def cli(args, env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
    base.update(env)
    return subprocess.run([sys.executable, "-m", "flagstream.cli", *args], env=base, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def synthetic_feed(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.05
    sect = np.where(y, rng.beta(5, 2, n), rng.beta(1, 6, n))
    prop = rng.beta(1, 20, n)
    return sect, prop, y


def true_best(sect, y, target):
    for t in np.round(np.arange(0.05, 0.95, 0.005), 3):
        if y[sect >= t].mean() >= target:
            return float(t)
    raise AssertionError


def write_feed(bootstrap, feed_topic, review_topic, decisions_topic, model, n=8000, seed=3, decide=True):
    sect, prop, y = synthetic_feed(n, seed)
    policy = audit_policy(seed)
    thresholds = {"propaganda": THR, "sectarian": THR}
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    sent = []
    for i in range(n):
        scores = {"propaganda": round(float(prop[i]), 6), "sectarian": round(float(sect[i]), 6)}
        labels = [k for k, v in scores.items() if v >= thresholds[k]]
        pid = f"post-{seed}-{i}"
        rec = review_record(Post(pid, "synthetic post"), Source(feed_topic, 0, i, 0), scores, labels, thresholds, model)
        value, headers = rec.value, rec.headers
        if not labels:
            fields = audit_fields(pid, scores, thresholds, policy)
            if fields is None:
                continue
            value, headers = mark_audit(value, headers, fields)
        sent.append((pid, producer.send(review_topic, key=rec.key, value=value, headers=headers), bool(y[i])))
    decisions = []
    for pid, fut, truth in sent:
        meta = fut.get(timeout=30)
        if decide:
            item = Reviewed({"id": pid, "model": model, "thresholds": thresholds},
                            ReviewRef(pid, review_topic, meta.partition, meta.offset))
            d = build_decision([item], {"sectarian": "confirm" if truth else "reject"}, reviewer="r-1")
            out = decision_record(sign(d, KEY.encode()))
            decisions.append(producer.send(decisions_topic, key=out.key, value=out.value, headers=out.headers))
    for f in decisions:
        f.get(timeout=30)
    producer.flush()
    producer.close()
    return sect, y, len(sent), len(decisions)


@pytest.fixture
def feed_topics(broker):
    tag = uuid.uuid4().hex[:8]
    names = {"feed": f"forum-{tag}", "review": f"review-{tag}", "decisions": f"decisions-{tag}"}
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([__import__("kafka.admin", fromlist=["NewTopic"]).NewTopic(n, 2, 1)
                             for k, n in names.items() if k != "feed"])
    finally:
        admin.close()
    return names


def env_for(broker, topics, model_dir, seed=3):
    """The CLI's environment: the topics, the decisions key, and the audit policy write_feed(seed=) drew with
    (calibrate recomputes audit weights from it)."""
    policy = audit_policy(seed)
    return {"FLAGSTREAM_BOOTSTRAP_SERVERS": broker.bootstrap, "FLAGSTREAM_REVIEW_TOPIC": topics["review"],
            "FLAGSTREAM_DECISIONS_TOPIC": topics["decisions"], "FLAGSTREAM_MODEL": str(model_dir),
            "FLAGSTREAM_STARTUP_TIMEOUT_S": "20", "HF_HUB_OFFLINE": "1", "FLAGSTREAM_DECISIONS_HMAC_KEY": KEY,
            "FLAGSTREAM_AUDIT_RATE": str(policy.rate), "FLAGSTREAM_AUDIT_NEAR_RATE": str(policy.near_rate),
            "FLAGSTREAM_AUDIT_SEED": policy.seed}


def test_recalibrates_a_feed_from_decisions(broker, linear_model_dir, feed_topics, tmp_path):
    src = read_manifest(linear_model_dir)
    model = {"name": src.name, "version": src.version}
    sect, y, n_reviews, n_decisions = write_feed(broker.bootstrap, feed_topics["feed"], feed_topics["review"],
                                                 feed_topics["decisions"], model)
    env = env_for(broker, feed_topics, linear_model_dir)
    # one more decision through the CLI: a second reviewer disagreeing on one flagged post
    flagged_pid = next(f"post-3-{i}" for i in range(len(sect)) if sect[i] >= THR and y[i])
    r = cli(["decide", flagged_pid, "--reject", "sectarian", "--reviewer", "r-2"], env)
    assert r.returncode == 0, r.stderr

    out = tmp_path / "model-v2"
    r = cli(["calibrate", "--from-decisions", "--output", str(out), "--target-precision", "0.8"], env)
    assert r.returncode == 0, r.stderr
    assert "sectarian" in r.stdout and "->" in r.stdout, r.stdout
    new = read_manifest(out)  # manifest-checked: every file hashed, nothing unlisted
    assert new.version == "0.0.2" and new.files == src.files and new.kind == src.kind
    assert new.thresholds["propaganda"] == src.thresholds["propaganda"]  # no decisions on it: unchanged
    best = true_best(sect, y, 0.8)
    t_new = new.thresholds["sectarian"]
    assert abs(t_new - best) < 0.08, (t_new, best)
    assert abs(y[sect >= t_new].mean() - 0.8) < 0.07  # realised precision on the whole feed
    assert y[sect >= t_new].sum() > y[sect >= THR].sum() * 0.95 or t_new >= THR
    prov = new.extra["recalibration"]
    assert prov["decisions"] == n_decisions + 1 and prov["feed"] == feed_topics["feed"]
    assert prov["disagreements"] == 1 and prov["previous"] == f"{src.name}@{src.version}"
    assert prov["audit_rows"] > 0 and prov["per_label"]["sectarian"]["threshold"] == t_new
    report = out.with_name(out.name + "-report")
    md = (report / "report.md").read_text()
    assert "| sectarian |" in md and "moved" in md
    assert (report / "curves.png").stat().st_size > 10_000
    assert json.loads((report / "report.json").read_text())["new_version"] == "0.0.2"


def test_thin_evidence_moves_nothing_and_says_what_it_needs(broker, linear_model_dir, feed_topics, tmp_path):
    src = read_manifest(linear_model_dir)
    write_feed(broker.bootstrap, feed_topics["feed"], feed_topics["review"], feed_topics["decisions"],
               {"name": src.name, "version": src.version}, n=400, seed=5)
    out = tmp_path / "model-v2"
    r = cli(["calibrate", "--from-decisions", "--output", str(out)], env_for(broker, feed_topics, linear_model_dir, seed=5))
    assert r.returncode == 0, r.stderr
    assert "no threshold moved" in r.stdout and "more decisions" in r.stdout, r.stdout
    assert not out.exists() and (tmp_path / "model-v2-report" / "report.md").exists()


def test_bad_arguments_are_one_line(broker, linear_model_dir, feed_topics, tmp_path):
    env = env_for(broker, feed_topics, linear_model_dir)
    r = cli(["calibrate", "--from-decisions", "--output", str(tmp_path / "x")], env)
    assert r.returncode == 2 and "no usable decisions" in r.stderr and "Traceback" not in r.stderr
    # no key to verify decisions with: one line that says both ways out
    r = cli(["calibrate", "--from-decisions", "--output", str(tmp_path / "x")],
            {k: v for k, v in env.items() if k != "FLAGSTREAM_DECISIONS_HMAC_KEY"})
    assert r.returncode == 2 and "FLAGSTREAM_DECISIONS_HMAC_KEY" in r.stderr and "--accept-unsigned" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_join_keeps_disagreement_and_drops_other_versions():
    model = {"name": "m", "version": "1"}
    reviews = latest_reviews([
        {"id": "a", "scores": {"sectarian": 0.9}, "model": model, "source": {"topic": "f"}},
        {"id": "b", "scores": {"sectarian": 0.2}, "thresholds": {"sectarian": 0.5}, "model": model,
         "source": {"topic": "f"}, "audit": True, "sampling_weight": 10.0},
        {"id": "c", "scores": {"sectarian": 0.9}, "model": {"name": "m", "version": "0"}, "source": {"topic": "f"}},
    ])

    def dec(pid, verdict, reviewer, at):
        return parse_decision(decision_record(build_decision(
            [Reviewed({"id": pid}, ReviewRef(pid, "r", 0, 0))], {"sectarian": verdict}, reviewer)).value)

    ds = [dec("a", "confirm", "r1", 1), dec("a", "reject", "r2", 2), dec("b", "confirm", "r1", 3),
          dec("c", "confirm", "r1", 4), dec("b", "unsure", "r2", 5)]
    from flagstream.streaming.loop.audit import uniform

    # the weight comes from the policy that drew "b" (inclusion probability 0.1), not from the record
    policy = AuditPolicy(rate=0.1, near_rate=0.1, seed=next(f"s{i}" for i in range(10_000) if uniform("b", f"s{i}") < 0.1))
    j = join(reviews, ds, model, ["sectarian"], policy)
    rows = {(r.score, r.weight): r for r in j.rows}
    assert rows[(0.9, 1.0)].verdict == 0.5 and j.disagreements == 1
    assert rows[(0.2, 10.0)].verdict == 1.0 and rows[(0.2, 10.0)].audit
    assert j.skipped["other_model_version"] == 1 and len(j.rows) == 2


def test_undecided_review_items_are_stood_for_by_the_decided_ones_in_their_stratum():
    """Half the flagged posts of a score stratum decided: each decided one weighs 2; a stratum with no
    decision is reported, not silently dropped."""
    model = {"name": "m", "version": "1"}
    reviews = latest_reviews(
        [{"id": f"f{i}", "scores": {"sectarian": 0.5 + i / 100}, "model": model, "source": {"topic": "f"},
          "labels": ["sectarian"]} for i in range(10)])

    def dec(pid):
        return parse_decision(decision_record(build_decision(
            [Reviewed({"id": pid}, ReviewRef(pid, "r", 0, 0))], {"sectarian": "confirm"}, "r1")).value)

    # quintiles of 10 items: (f0,f1) (f2,f3) ... ; decide f0 only in the first, both in the last, none in the middle
    j = join(reviews, [dec("f0"), dec("f8"), dec("f9"), dec("f2"), dec("f3"), dec("f4"), dec("f5")], model, ["sectarian"])
    w = {r.score: r.weight for r in j.rows}
    assert w[0.5] == 2.0 and w[0.58] == 1.0 and w[0.59] == 1.0 and w[0.52] == 1.0
    assert j.undecided == {"f:flagged": 2} and j.provenance("d", "r")["unrepresented_review_items"] == {"f:flagged": 2}
