"""Issue 29: no post can kill the stream.

A flagged post carrying an unknown field nested ~900 levels deep used to parse (the encodability check
passed), but its review record nests it one level deeper under ``extra``, ``json`` raised
``RecursionError`` while encoding, nothing caught it and ``flagstream stream`` exited 1 on every restart.

Two fixes, each tested here:

- the message contract bounds the depth of every decoded value (:data:`flagstream.contract.posts.MAX_JSON_DEPTH`),
  so such a post is a ``not_json`` dead letter at parse time (end to end on the embedded broker);
- the router isolates every record it encodes: a record that cannot be encoded dead-letters its post as
  ``output_unencodable`` and never leaves the loop (router level, with a verdict built past the parser).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from flagstream.contract.dead_letters import decode_json_record, read_dead_letter
from flagstream.contract.decisions import parse_decision
from flagstream.contract.posts import MAX_JSON_DEPTH, Post, parse_post
from flagstream.contract.records import OutRecord, Rejection, Source
from flagstream.contract.review import Verdict, review_record
from flagstream.contract.shadow import read_shadow
from support.audit import wait_accounted
from support.kafka import produce, read_all
from support.model import BENIGN_TEXT, PROPAGANDA_TEXT


def nested(depth: int) -> object:
    """A JSON value ``depth`` arrays deep, built without recursion."""
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def deep_post(pid: str, depth: int) -> bytes:
    # built as text: json.dumps itself would hit the recursion limit for the deepest cases
    return (b'{"id":"' + pid.encode() + b'","text":' + json.dumps(PROPAGANDA_TEXT).encode()
            + b',"x":' + b"[" * depth + b"1" + b"]" * depth + b"}")


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 600, 990])
def test_over_deep_values_are_rejected_at_parse_time(depth):
    res = parse_post(deep_post("d", depth), max_text_chars=10_000, max_message_bytes=1_000_000)
    if depth < MAX_JSON_DEPTH:
        assert isinstance(res, Post)
    else:
        assert isinstance(res, Rejection) and res.error == "not_json"
        assert str(MAX_JSON_DEPTH) in res.reason and "\n" not in res.reason


def test_a_post_within_the_bound_encodes_as_a_review_record():
    depth = MAX_JSON_DEPTH - 2  # the object and the field take two levels
    post = parse_post(deep_post("ok", depth), max_text_chars=10_000, max_message_bytes=1_000_000)
    assert isinstance(post, Post)
    src = Source("posts", 0, 1, 0)
    rec = review_record(post, src, {"propaganda": 0.9}, ["propaganda"], {"propaganda": 0.5}, {"name": "m",
                                                                                                     "version": "1"})
    assert isinstance(decode_json_record(rec.value)["extra"]["x"], list)


def test_every_reader_bounds_depth():
    deep = b'{"id":"a","x":' + b"[" * 2000 + b"]" * 2000 + b"}"
    assert parse_decision(deep).error == "not_json"
    assert read_shadow(deep).error == "not_json"
    with pytest.raises(ValueError, match="nests"):
        decode_json_record(deep)
    with pytest.raises(ValueError, match="over"):
        decode_json_record(b'{"a":"' + b"x" * 100 + b'"}', max_bytes=50)


def test_an_unencodable_record_dead_letters_its_post_and_the_batch_goes_on(linear_model_dir):
    from flagstream.classifier.inference.scoring import load_scorer
    from flagstream.config import load_settings
    from flagstream.streaming.loop.routing import Router
    from flagstream.streaming.loop.batch import Batch

    settings = load_settings(None, {"model": str(linear_model_dir)}, environ={})
    served = load_scorer(linear_model_dir)
    router = Router(settings, served.info.thresholds, served.info.as_dict())

    def rec(offset: int, key: bytes) -> SimpleNamespace:
        return SimpleNamespace(topic="posts", partition=0, offset=offset, timestamp=0, key=key, value=b"{}",
                               headers=[])

    bad, good = rec(1, b"bad"), rec(2, b"good")
    scores = {"propaganda": 0.9, "sectarian": 0.1}
    # past the parser (as a mapping from another reader could be): the encoder's recursion limit
    bad_verdict = Verdict(Post("bad", "t", {}, {"x": nested(5000)}), scores, ("propaganda",))
    good_verdict = Verdict(Post("good", "t"), scores, ("propaganda",))
    batch = Batch([bad, good], 0.0, verdicts=[(bad, bad_verdict), (good, good_verdict)])
    sent: list[tuple[str, OutRecord]] = []
    offsets: list[tuple[str, int, int]] = []
    cp = SimpleNamespace(produce=lambda topic, record, tag=None: sent.append((topic, record)),
                         store_offset=lambda *a: offsets.append(a))
    router.route(batch, cp)
    assert [v.post.id for _, v in batch.verdicts] == ["good"]
    assert [(r, j.error) for r, j in batch.rejected] == [(bad, "output_unencodable")]
    dlq = [r for t, r in sent if t == settings.dlq_topic]
    assert len(dlq) == 1 and dlq[0].key == b"bad"
    letter = read_dead_letter(dlq[0].key, dlq[0].value, dlq[0].headers)
    assert letter.error == "output_unencodable" and "RecursionError" in letter.reason and "\n" not in letter.reason
    assert {r.key for t, r in sent if t == settings.review_topic} == {b"good"}
    assert len(offsets) == 2


def test_a_dead_letter_that_cannot_be_built_goes_bare(linear_model_dir):
    from flagstream.config import load_settings
    from flagstream.streaming.loop.routing import Router

    settings = load_settings(None, {"model": str(linear_model_dir)}, environ={})
    router = Router(settings, {}, {"name": "m", "version": "1"})
    # a header whose value is not bytes: the original headers can't be copied
    rec = SimpleNamespace(topic="posts", partition=0, offset=3, timestamp=0, key=b"k", value=b"x",
                          headers=[("h", object())])
    out = router.dead_letter(rec, Rejection("not_json", "bad"))
    letter = read_dead_letter(out.key, out.value, out.headers)
    assert letter.error == "not_json" and letter.source.offset == 3 and out.key == b"k"


@pytest.mark.timeout(240)
def test_stream_survives_a_deeply_nested_flagged_post(topics, stream_proc):
    proc = stream_proc(topics.env(batch_size=8))
    proc.wait_ready(90)
    items = [(b"deep900", deep_post("deep900", 900)), (b"deep600", deep_post("deep600", 600))]
    items += [(f"ok{i}".encode(), json.dumps({"id": f"ok{i}", "text": PROPAGANDA_TEXT if i % 2 else BENIGN_TEXT})
               .encode()) for i in range(6)]
    produce(topics.bootstrap, topics.posts, items)
    scores, dlq = wait_accounted(topics, expected_ids={k.decode() for k, _ in items}, timeout_s=120)
    assert proc.alive, proc.logs()[-3000:]
    letters = {r.key: read_dead_letter(r.key, r.value, r.headers) for r in dlq}
    assert set(letters) == {b"deep900", b"deep600"}
    assert all(d.error == "not_json" and "nests" in d.reason for d in letters.values())
    assert {r.key for r in scores} == {f"ok{i}".encode() for i in range(6)}
    review = read_all(topics.bootstrap, topics.review)
    assert {r.key for r in review} >= {b"ok1", b"ok3", b"ok5"}
    assert proc.terminate(45) == 0
