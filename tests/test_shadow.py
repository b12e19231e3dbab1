"""Shadow mode on the real broker: a thresholds-only candidate scored beside the served model.

The candidate is the test model with other thresholds (written as ``calibrate --from-decisions`` writes
one), so what it must change is known exactly: a post is newly flagged for a label when its score lies
in [new threshold, old threshold), newly unflagged in [old, new). The same posts also go through a
pipeline without shadow mode, whose review topic must be the same record for record.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from flagstream.classifier.interface import ModelInfo
from flagstream.classifier.inference.scoring import load_scorer
from flagstream.contract.posts import Post
from flagstream.contract.records import Rejection, Source
from flagstream.contract.review import Verdict
from flagstream.contract.shadow import SHADOW_FAILED, ShadowRecord, ShadowSide, read_shadow, shadow_record
from flagstream.streaming.loop.checkpoint import RejectedOutput
from flagstream.streaming.loop.routing import Router
from flagstream.streaming.loop.shadow import Shadow
from flagstream.streaming.loop.batch import Batch
from support.kafka import metric_value, post_bytes, produce, read_all
from support.model import post_text, thresholds_variant
from support.process import PipelineThread, run_cli
from support.topics import TopicSet

pytestmark = pytest.mark.timeout(300)
LABELS = ("propaganda", "sectarian")
N = 240


def _posts() -> list[tuple[str, str]]:
    rng = random.Random(18)
    return [(f"sh{i:04d}", post_text(i, rng)) for i in range(N)]


def _pick_thresholds(model_dir, posts) -> dict[str, float]:
    """Candidate thresholds that newly flag some sectarian posts and newly unflag some propaganda ones."""
    probs = load_scorer(model_dir).score([t for _, t in posts])
    sect = np.sort(probs[:, 1][(probs[:, 1] < 0.5) & (probs[:, 1] > 0.01)])
    prop = np.sort(probs[:, 0][probs[:, 0] >= 0.5])
    assert len(sect) > 10 and len(prop) > 10, (len(sect), len(prop))
    # midpoints between neighbouring scores: no score sits on a threshold
    lo = float(round((sect[len(sect) // 2] + sect[len(sect) // 2 + 1]) / 2, 6))
    hi = float(round((prop[len(prop) // 3] + prop[len(prop) // 3 + 1]) / 2, 6))
    return {"propaganda": hi, "sectarian": lo}


def _run(topics: TopicSet, posts, **settings) -> None:
    bad = [(b"bad-1", b"not json"), (b"bad-2", b'{"id": "bad-2"}')]
    produce(topics.bootstrap, topics.posts, [(pid.encode(), post_bytes(pid, text)) for pid, text in posts] + bad)
    runner = PipelineThread(topics.settings(**settings))
    try:
        read_all(topics.bootstrap, topics.scores, min_count=len(posts), timeout_s=120)
        read_all(topics.bootstrap, topics.dlq, min_count=len(bad), timeout_s=60)
    finally:
        assert runner.stop() == 0
    return runner.pipeline


def _review_view(records) -> set:
    out = set()
    for r in records:
        b = json.loads(r.value)
        out.add((b["id"], r.partition, b["source"]["partition"], b["source"]["offset"], tuple(b["labels"]),
                 json.dumps(b["scores"], sort_keys=True), json.dumps(b["thresholds"], sort_keys=True),
                 json.dumps(b["model"], sort_keys=True), b["text"], b.get("audit", False)))
    return out


def test_shadow_mode_on_the_real_broker(broker, linear_model_dir, tmp_path, stream_proc):
    posts = _posts()
    new_t = _pick_thresholds(linear_model_dir, posts)
    cand = thresholds_variant(linear_model_dir, tmp_path / "candidate", "0.0.2", new_t)
    with_shadow = TopicSet.unique(broker.bootstrap, linear_model_dir, tag="shw")
    without = TopicSet.unique(broker.bootstrap, linear_model_dir, tag="shwo")
    shadow_topic = with_shadow.posts.replace(".posts", ".shadow")
    # audit records must be unaffected too: one configured audit key for both runs (unset, each process draws
    # with its own random key, tests/test_audit_seed.py)
    audit = {"audit_rate": 0.05, "audit_near_rate": 0.3, "audit_seed": "shadow-test-audit-seed"}
    # the command as an operator runs it: flagstream stream --shadow-model DIR --shadow-topic T
    proc = stream_proc(with_shadow.env(**audit), args=["--shadow-model", str(cand), "--shadow-topic", shadow_topic])
    produce(broker.bootstrap, with_shadow.posts, [(pid.encode(), post_bytes(pid, text)) for pid, text in posts]
            + [(b"bad-1", b"not json"), (b"bad-2", b'{"id": "bad-2"}')])
    proc.wait_metric("flagstream_posts_consumed_total", N + 2, 120)
    proc.wait_metric("flagstream_shadow_scored_total", N, 30)
    time.sleep(0.5)  # the batch's books are updated on the loop's thread, after its commit
    metrics = proc.get("/metrics")[1]
    assert proc.terminate() == 0
    _run(without, posts, **audit)

    scores = {json.loads(r.value)["id"]: json.loads(r.value) for r in read_all(broker.bootstrap, with_shadow.scores)}
    assert len(scores) == N
    shadow = read_all(broker.bootstrap, shadow_topic, min_count=N)
    # one shadow record per scored post (none for the two dead letters), no text, schema header
    assert Counter(r.key.decode() for r in shadow) == Counter(set(scores))
    assert all(dict(r.headers)["flagstream.schema"] == b"shadow.v1" for r in shadow)
    old_t = {"propaganda": 0.5, "sectarian": 0.5}
    expected = Counter()
    for r in shadow:
        body = json.loads(r.value)
        assert "text" not in body
        rec = read_shadow(r.value)
        assert isinstance(rec, ShadowRecord)
        served = scores[rec.id]
        assert rec.served.model == {"name": "test-linear", "version": "0.0.1"}
        assert rec.candidate.model == {"name": "test-linear", "version": "0.0.2"}
        assert rec.candidate.thresholds == new_t and rec.served.thresholds == old_t
        assert rec.served.scores == served["scores"] == rec.candidate.scores  # same weights: same scores
        assert list(rec.served.labels) == served["labels"]
        assert (rec.source.topic, rec.source.partition, rec.source.offset) == (
            served["source"]["topic"], served["source"]["partition"], served["source"]["offset"])
        want_new = [lab for lab in LABELS if new_t[lab] <= served["scores"][lab] < old_t[lab]]
        want_gone = [lab for lab in LABELS if old_t[lab] <= served["scores"][lab] < new_t[lab]]
        assert body["newly_flagged"] == want_new and body["newly_unflagged"] == want_gone, body
        expected.update((lab, "newly_flagged") for lab in want_new)
        expected.update((lab, "newly_unflagged") for lab in want_gone)
    assert expected[("sectarian", "newly_flagged")] > 5 and expected[("propaganda", "newly_unflagged")] > 5
    assert metric_value(metrics, "flagstream_shadow_scored_total") == N
    assert metric_value(metrics, "flagstream_shadow_failures_total", 'reason="scoring_failed"') == 0
    for lab in LABELS:
        for ch in ("newly_flagged", "newly_unflagged"):
            assert metric_value(metrics, "flagstream_shadow_flag_changes_total",
                                f'change="{ch}",label="{lab}"') == expected[(lab, ch)], (lab, ch)
    assert 'flagstream_shadow_model_info{kind="linear",name="test-linear",version="0.0.2"} 1.0' in metrics
    assert not any(t in proc.logs() for _, t in posts)  # INFO logs carry no post text

    # the review topic is the one a pipeline without shadow mode writes, record for record
    rev_a = _review_view(read_all(broker.bootstrap, with_shadow.review))
    rev_b = _review_view(read_all(broker.bootstrap, without.review))
    assert rev_a == rev_b and any(v[-1] for v in rev_a)  # audit records included

    # shadow-report: the same counts, per label and feed
    env = {"FLAGSTREAM_BOOTSTRAP_SERVERS": broker.bootstrap, "FLAGSTREAM_SHADOW_TOPIC": shadow_topic,
           "FLAGSTREAM_STARTUP_TIMEOUT_S": "20", "HF_HUB_OFFLINE": "1"}
    r = run_cli(["shadow-report", "--json"], env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["records"] == N and rep["duplicates"] == 0 and rep["invalid"] == 0 and len(rep["pairs"]) == 1
    pair = rep["pairs"][0]
    assert (pair["served"], pair["candidate"], pair["posts"]) == ("test-linear@0.0.1", "test-linear@0.0.2", N)
    for lab in LABELS:
        for feed in ("(all feeds)", with_shadow.posts):
            cell = pair["labels"][lab][feed]
            assert cell["newly_flagged"] == expected[(lab, "newly_flagged")]
            assert cell["newly_unflagged"] == expected[(lab, "newly_unflagged")]
            served_flagged = sum(lab in v["labels"] for v in scores.values())
            assert cell["both"] + cell["newly_unflagged"] == served_flagged and cell["posts"] == N
            assert cell["flag_rate_change"] == pytest.approx(
                (expected[(lab, "newly_flagged")] - expected[(lab, "newly_unflagged")]) / N, abs=1e-6)
    any_cell = pair["labels"]["(any label)"]["(all feeds)"]
    assert any_cell["newly_flagged"] == sum(
        1 for v in scores.values() if not v["labels"] and any(v["scores"][k] >= new_t[k] for k in LABELS))
    example = pair["examples"]["sectarian"]["newly_flagged"][0]
    assert new_t["sectarian"] <= example["candidate_score"] < 0.5 and "text" not in example

    texts = dict(posts)
    r = run_cli(["shadow-report", "--examples", "2"], env)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    line = next(ln for ln in out.splitlines() if ln.startswith("sectarian    (all feeds)"))
    assert line.split()[3:8] == [str(N), str(pair["labels"]["sectarian"]["(all feeds)"]["both"]),
                                 str(expected[("sectarian", "newly_flagged")]),
                                 str(expected[("sectarian", "newly_unflagged")]),
                                 str(pair["labels"]["sectarian"]["(all feeds)"]["neither"])], line
    assert "sectarian newly flagged: " in out
    assert not any(t in out for t in texts.values())  # no post text by default
    r = run_cli(["shadow-report", "--examples", "1", "--show-text", "--max-records", "100"], env)
    assert r.returncode == 0, r.stderr
    assert any(t in r.stdout.decode() for t in texts.values()), r.stdout.decode()
    assert "100 records read" in r.stdout.decode()


class _Broken:
    """A candidate that raises on every call: the served path must not notice."""

    info = ModelInfo("broken", "9.9.9", "linear", LABELS, {"propaganda": 0.5, "sectarian": 0.5})

    def score(self, texts):
        raise RuntimeError("candidate exploded")


def test_a_failing_shadow_model_never_stops_the_served_path(topics, linear_model_dir):
    posts = _posts()[:80]
    shadow_topic = topics.posts.replace(".posts", ".shadow")
    produce(topics.bootstrap, topics.posts, [(pid.encode(), post_bytes(pid, text)) for pid, text in posts])
    runner = PipelineThread(topics.settings(shadow_model=str(linear_model_dir), shadow_topic=shadow_topic),
                            shadow_scorer=_Broken())
    try:
        scores = read_all(topics.bootstrap, topics.scores, min_count=len(posts), timeout_s=120)
        shadow = read_all(topics.bootstrap, shadow_topic, min_count=len(posts), timeout_s=60)
    finally:
        assert runner.stop() == 0
    st = runner.pipeline.stats
    flagged = {json.loads(r.value)["id"] for r in scores if json.loads(r.value)["labels"]}
    assert {json.loads(r.value)["id"] for r in read_all(topics.bootstrap, topics.review)} == flagged
    assert st.scored == len(posts) and st.commits >= 1 and st.breaker_trips == 0 and not st.dead_lettered
    assert st.shadow_failures == Counter({"scoring_failed": len(posts)}) and st.shadow_scored == 0
    for r in shadow:
        body = json.loads(r.value)
        assert body["candidate"]["error"] == "scoring_failed" and body["candidate"]["scores"] is None
        assert body["newly_flagged"] == [] and body["flag_change"] is None and body["served"]["scores"]
    text = runner.pipeline.metrics.render().decode()
    assert 'flagstream_shadow_failures_total{reason="scoring_failed"} 80.0' in text


def test_shadow_records_are_committed_with_the_batch_under_exactly_once(topics, linear_model_dir, tmp_path):
    posts = _posts()[:60]
    cand = thresholds_variant(linear_model_dir, tmp_path / "candidate", "0.0.2", {"sectarian": 0.2})
    shadow_topic = topics.posts.replace(".posts", ".shadow")
    produce(topics.bootstrap, topics.posts, [(pid.encode(), post_bytes(pid, text)) for pid, text in posts])
    runner = PipelineThread(topics.settings(shadow_model=str(cand), shadow_topic=shadow_topic, exactly_once=True,
                                            instance_id="shadow-eos"))
    try:
        scores = read_all(topics.bootstrap, topics.scores, min_count=len(posts), timeout_s=120, read_committed=True)
        shadow = read_all(topics.bootstrap, shadow_topic, min_count=len(posts), timeout_s=60, read_committed=True)
    finally:
        assert runner.stop() == 0
    assert {r.key for r in shadow} == {r.key for r in scores} and len(shadow) == len(posts)
    assert runner.pipeline.stats.shadow_scored == len(posts) and runner.pipeline.stats.commits >= 1


def test_a_refused_shadow_record_drops_only_itself(linear_model_dir):
    from flagstream.config import load_settings

    settings = load_settings(None, {"model": str(linear_model_dir), "shadow_topic": "x.shadow"}, environ={})
    served = load_scorer(linear_model_dir)
    shadow = Shadow(_Broken(), served.info, "x.shadow")
    router = Router(settings, served.info.thresholds, served.info.as_dict(), shadow)  # annotation is the loop's step
    rec = SimpleNamespace(topic="posts", partition=0, offset=7, timestamp=0, key=b"a", value=b"{}", headers=[])
    verdict = Verdict(Post("a", "t"), {"propaganda": 0.9, "sectarian": 0.1}, ("propaganda",))
    batch = Batch([rec], 0.0, verdicts=[(rec, verdict)])
    shadow.score(batch, lambda *a, **k: None)
    assert batch.shadow[id(rec)].error == "scoring_failed"
    again = router.refused([RejectedOutput(rec, "x.shadow", "MessageSizeTooLargeError: too big")], batch)
    assert again == [] and batch.verdicts == [(rec, verdict)] and not batch.rejected
    assert batch.shadow == {} and batch.shadow_refused == 1
    # a refused review record still dead-letters its post, as before
    assert router.refused([RejectedOutput(rec, settings.review_topic, "MessageSizeTooLargeError")], batch) == [rec]
    assert batch.rejected[0][1].error == "output_too_large"


def test_shadow_record_round_trip():
    src = Source("forum", 2, 41, 1_700_000_000_000)
    served = ShadowSide({"name": "m", "version": "1"}, {"propaganda": 0.7, "sectarian": 0.2},
                        ("propaganda",), {"propaganda": 0.5, "sectarian": 0.5})
    cand = ShadowSide({"name": "m", "version": "2"}, {"propaganda": 0.7, "sectarian": 0.2},
                      ("sectarian",), {"propaganda": 0.8, "sectarian": 0.1})
    out = shadow_record(ShadowRecord("p1", src, served, cand, "2026-12-03T00:00:00.000Z"))
    body = json.loads(out.value)
    assert body["newly_flagged"] == ["sectarian"] and body["newly_unflagged"] == ["propaganda"]
    assert body["flag_change"] is None and out.key == b"p1"
    back = read_shadow(out.value)
    assert back.as_dict() == body and back.source == src
    failed = ShadowSide(cand.model, None, (), cand.thresholds, SHADOW_FAILED)
    body = json.loads(shadow_record(ShadowRecord("p1", src, served, failed)).value)
    assert body["candidate"]["error"] == "scoring_failed" and body["newly_unflagged"] == []
    assert isinstance(read_shadow(b'{"id": "p1", "source": {}}'), Rejection)
    assert isinstance(read_shadow(b"\xff"), Rejection)


def test_bad_arguments_are_one_line(broker, linear_model_dir, tmp_path):
    env = {"FLAGSTREAM_BOOTSTRAP_SERVERS": broker.bootstrap, "FLAGSTREAM_STARTUP_TIMEOUT_S": "5",
           "FLAGSTREAM_MODEL": str(linear_model_dir), "HF_HUB_OFFLINE": "1"}
    cases = [
        (["stream", "--shadow-model", str(linear_model_dir)], "shadow model is the served model"),
        (["stream", "--shadow-model", str(tmp_path / "nope")], "nope"),
        (["stream", "--shadow-model", str(linear_model_dir), "--shadow-topic", "posts.review"], "review topic"),
        (["shadow-report", "--since", "yesterday"], "--since"),
        (["shadow-report", "--max-records", "0"], "--max-records"),
        (["shadow-report", "--shadow-topic", "no-such-shadow-topic-x"], "does not exist"),
    ]
    for args, needle in cases:
        r = run_cli(args, env)
        err = r.stderr.decode()
        assert r.returncode == 2, (args, err)
        assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (args, err)


def test_report_counts_each_post_once_per_pair_and_keeps_failures_apart():
    from datetime import datetime, timezone

    from flagstream.streaming.ops.shadow_report import read_window, summarize

    thr = {"propaganda": 0.5, "sectarian": 0.5}

    def rec(pid, offset, served_labels, cand_labels, cand_version="2", feed="forum", ts=1000, failed=False):
        scores = {"propaganda": 0.6, "sectarian": 0.4}
        served = ShadowSide({"name": "m", "version": "1"}, scores, tuple(served_labels), thr)
        cand = (ShadowSide({"name": "m", "version": cand_version}, None, (), thr, SHADOW_FAILED)
                if failed else ShadowSide({"name": "m", "version": cand_version}, scores, tuple(cand_labels),
                                          {"propaganda": 0.5, "sectarian": 0.3}))
        value = shadow_record(ShadowRecord(pid, Source(feed, 0, offset, ts), served, cand)).value
        return SimpleNamespace(value=value, timestamp=ts)

    records = [
        rec("a", 0, ["propaganda"], ["propaganda", "sectarian"]),  # sectarian newly flagged
        rec("a", 0, ["propaganda"], ["propaganda", "sectarian"]),  # redelivered: counted once
        rec("b", 1, [], ["sectarian"], feed="news"),  # newly flagged, post level too
        rec("c", 2, ["propaganda"], []),  # newly unflagged
        rec("d", 3, [], [], failed=True),  # candidate failed: apart, out of the rates
        rec("e", 4, [], ["sectarian"], cand_version="3"),  # another candidate: its own pair
        SimpleNamespace(value=b"not json", timestamp=1000),
        rec("late", 5, [], ["sectarian"], ts=5000),
    ]
    rep = summarize(read_window(records))
    assert (rep.records, rep.duplicates, rep.invalid) == (8, 1, 1)
    pair = next(p for p in rep.pairs if p.candidate == "m@2")
    assert pair.posts == 5 and pair.candidate_errors == 1
    sect = pair.cells["sectarian"]["(all feeds)"]
    assert (sect.both, sect.newly_flagged, sect.newly_unflagged, sect.neither) == (0, 3, 0, 1)
    assert pair.cells["sectarian"]["news"].newly_flagged == 1
    prop = pair.cells["propaganda"]["(all feeds)"]
    assert (prop.both, prop.newly_unflagged, prop.neither) == (1, 1, 2) and prop.served_rate == 0.5
    anyl = pair.cells["(any label)"]["(all feeds)"]
    assert (anyl.both, anyl.newly_flagged, anyl.newly_unflagged) == (1, 2, 1)
    assert [e["id"] for e in pair.examples["sectarian"]["newly_flagged"]] == ["a", "b", "late"]
    assert next(p for p in rep.pairs if p.candidate == "m@3").posts == 1
    # the window: --since (Kafka record timestamp) and --max-records
    since = datetime.fromtimestamp(2, tz=timezone.utc)
    assert summarize(read_window(records, since=since)).records == 1
    assert summarize(read_window(records, max_records=3)).records == 3
    assert json.dumps(rep.as_dict(), allow_nan=False)


def test_a_thresholds_only_candidate_reuses_the_served_scores(linear_model_dir, tmp_path):
    """calibrate's output scores exactly as the served model does: no second forward pass, same verdicts."""
    served = load_scorer(linear_model_dir)
    variant = load_scorer(thresholds_variant(linear_model_dir, tmp_path / "v", "t1", {"propaganda": 0.2}))
    assert variant.info.scoring_id == served.info.scoring_id != ""
    shadow = Shadow(variant, served.info, "x.shadow")
    assert shadow.reuses_served_scores
    variant.score = lambda texts: (_ for _ in ()).throw(AssertionError("scored twice"))  # must not be called
    rec = SimpleNamespace(topic="posts", partition=0, offset=1, timestamp=0, key=b"a", value=b"{}", headers=[])
    verdict = Verdict(Post("a", "t"), {"propaganda": 0.3, "sectarian": 0.1}, ())
    batch = Batch([rec], 0.0, verdicts=[(rec, verdict)])
    shadow.score(batch, lambda *a, **k: None)
    side = batch.shadow[id(rec)]
    assert side.error is None and side.scores == verdict.scores and side.labels == ("propaganda",)
    # another model (other weights) is scored for real
    other = Shadow(_Broken(), served.info, "x.shadow")
    assert not other.reuses_served_scores
