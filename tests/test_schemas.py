"""Message contracts (:mod:`flagstream.contract`): every rejection class, every output field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flagstream.contract.dead_letters import dead_letter_record, read_dead_letter
from flagstream.contract.posts import Post, parse_post, post_from_object
from flagstream.contract.records import ERROR_CLASSES, MAX_REASON_CHARS, Rejection, Source
from flagstream.contract.review import review_record
from flagstream.contract.scores import scores_record
from flagstream.streaming.kafka.produce import iter_csv, iter_jsonl
from flagstream.streaming.ops.review import render_review, safe_text

LIMITS = dict(max_text_chars=100, max_message_bytes=2048)


def parse(value: bytes | None):
    return parse_post(value, **LIMITS)


@pytest.mark.parametrize("value, error", [
    (None, "empty_message"),
    (b"", "empty_message"),
    (b"x" * 3000, "message_too_large"),
    (b'{"id": "a", "text": "caf\xe9"}', "not_utf8"),
    (b"\xff\xfe\x00", "not_utf8"),
    (b"not json", "not_json"),
    (b'{"id": "a", "text": "t"', "not_json"),
    (b'{"id": "a", "text": "t", "n": NaN}', "not_json"),
    (b"[" * 1020 + b"]" * 1020, "not_json"),
    (b'["id", "text"]', "not_object"),
    (b'"just a string"', "not_object"),
    (b"42", "not_object"),
    (b"null", "not_object"),
    (b'{"text": "no id"}', "missing_id"),
    (b'{"id": 7, "text": "t"}', "invalid_id"),
    (b'{"id": null, "text": "t"}', "invalid_id"),
    (b'{"id": "", "text": "t"}', "invalid_id"),
    (b'{"id": "   ", "text": "t"}', "invalid_id"),
    (json.dumps({"id": "x" * 300, "text": "t"}).encode(), "invalid_id"),
    (b'{"id": "a"}', "missing_text"),
    (b'{"id": "a", "text": 5}', "invalid_text"),
    (b'{"id": "a", "text": ["t"]}', "invalid_text"),
    (b'{"id": "a", "text": ""}', "invalid_text"),
    (b'{"id": "a", "text": " \\n\\t "}', "invalid_text"),
    (b'{"id": "a", "text": "bad \\ud800 surrogate"}', "invalid_text"),
    (json.dumps({"id": "a", "text": "w" * 101}).encode(), "text_too_long"),
    (b'{"id": "a", "text": "t", "meta": [1]}', "invalid_field"),
    (b'{"id": "a", "text": "t", "lang": 3}', "invalid_field"),
    (b'{"id": "a", "text": "t", "created_at": true}', "invalid_field"),
])
def test_every_rejection_class(value, error):
    res = parse(value)
    assert isinstance(res, Rejection), res
    assert res.error == error
    assert res.error in ERROR_CLASSES
    assert "\n" not in res.reason and 0 < len(res.reason) <= MAX_REASON_CHARS


def test_reason_never_quotes_text():
    secret = "my secret post text"
    res = parse(json.dumps({"id": "a", "text": secret * 10}).encode())
    assert isinstance(res, Rejection) and secret not in res.reason


def test_valid_post_keeps_optional_and_unknown_fields():
    value = json.dumps({"id": "p1", "text": "hello", "lang": "en", "author": None, "created_at": 1700000000,
                        "url": "https://x.example", "meta": {"a": [1, 2]}, "likes": 3, "nested": {"k": "v"}}).encode()
    post = parse(value)
    assert isinstance(post, Post)
    assert post.id == "p1" and post.text == "hello"
    assert post.optional == {"lang": "en", "author": None, "created_at": 1700000000, "url": "https://x.example",
                             "meta": {"a": [1, 2]}}
    assert post.extra == {"likes": 3, "nested": {"k": "v"}}


def test_text_at_the_limit_and_control_characters_are_fine():
    post = parse(json.dumps({"id": "p", "text": "\u202ew" * 50}).encode())
    assert isinstance(post, Post) and len(post.text) == 100


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_parse_never_raises_on_arbitrary_bytes(value):
    res = parse(value)
    assert isinstance(res, (Post, Rejection))


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                    max_leaves=20))
def test_parse_never_raises_on_arbitrary_json(obj):
    res = parse(json.dumps(obj).encode())
    assert isinstance(res, (Post, Rejection))
    if isinstance(res, Post):  # outputs of a valid post always encode
        review_record(res, Source("t", 0, 0, 0), {"a": 0.5}, ["a"], {"a": 0.5}, {"name": "m", "version": "1"})


@pytest.mark.parametrize("value", [
    b'{"id": "a", "text": "t", "meta": {"v": 1e400}}',
    b'{"id": "a", "text": "t", "x": [1, -1E+999]}',
    b'{"id": "a", "text": "t", "created_at": 1e400}',
    b'{"id": "a", "text": "t", "x": -Infinity}',
    b'{"id": "a", "text": "t", "x": ' + b"9" * 5000 + b"}",  # Python refuses to convert it: must not raise
    b'{"id": "a", "text": "t", "x": ' + b"9" * 400 + b".5}",  # no exponent, still overflows to inf
])
def test_non_finite_and_unconvertible_numbers_are_not_json(value):
    res = parse_post(value, max_text_chars=100, max_message_bytes=10_000)
    assert isinstance(res, Rejection) and res.error == "not_json", res
    assert "\n" not in res.reason and len(res.reason) < 120


def test_large_finite_numbers_pass_and_write_back_as_standard_json():
    post = parse(b'{"id": "a", "text": "t", "meta": {"v": 1e308, "w": -2.5e-320}, "n": ' + b"9" * 400 + b"}")
    assert isinstance(post, Post)
    rec = review_record(post, Source("t", 0, 0, 0), {"a": 0.5}, ["a"], {"a": 0.5}, {"name": "m", "version": "1"})
    body = json.loads(rec.value, parse_constant=lambda c: pytest.fail(f"{c} in output"))
    assert body["meta"]["v"] == 1e308 and body["extra"]["n"] == int("9" * 400)


def test_records_never_carry_nan_or_infinity():
    """A non-finite score can't become a record: writing it is an error, never ``NaN`` in the JSON."""
    post = parse(b'{"id": "a", "text": "t"}')
    src, model = Source("t", 0, 0, 0), {"name": "m", "version": "1"}
    with pytest.raises(ValueError):
        scores_record(post, src, {"a": float("nan")}, [], model)
    with pytest.raises(ValueError):
        review_record(post, src, {"a": float("inf")}, ["a"], {"a": 0.5}, model)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "text", "lang", "author", "created_at", "url", "meta", "labels", "x"]),
                       st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                                                         allow_infinity=False)
                                    | st.text(max_size=12),
                                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c,
                                                                                       max_size=3),
                                    max_leaves=10), max_size=7))
def test_table_rows_and_json_bytes_get_the_same_verdict(obj):
    """post_from_object (CSV/Parquet rows in rescore) and parse_post (stream, JSONL) are one contract."""
    from_bytes = parse(json.dumps(obj).encode())
    from_obj = post_from_object(obj, max_text_chars=LIMITS["max_text_chars"])
    if isinstance(from_bytes, Rejection) and from_bytes.error == "message_too_large":
        return
    assert type(from_bytes) is type(from_obj)
    if isinstance(from_obj, Rejection):
        assert from_obj.error == from_bytes.error
    else:
        assert from_obj == from_bytes
        assert "labels" not in from_obj.passthrough()  # an input field never sits beside the verdict's own
        assert from_obj.passthrough().get("extra", {}).get("labels") == obj.get("labels")


def test_review_record_contract():
    post = parse(json.dumps({"id": "p9", "text": "txt", "lang": "fr", "meta": {"k": 1}, "other": True}).encode())
    rec = review_record(post, Source("posts", 2, 41, 1_700_000_000_123), {"propaganda": 0.9, "sectarian": 0.1},
                        ["propaganda"], {"propaganda": 0.5, "sectarian": 0.6}, {"name": "m", "version": "2"},
                        flagged_at="2026-01-01T00:00:00.000Z")
    assert rec.key == b"p9"
    body = json.loads(rec.value)
    assert body == {
        "id": "p9", "text": "txt", "labels": ["propaganda"], "scores": {"propaganda": 0.9, "sectarian": 0.1},
        "thresholds": {"propaganda": 0.5, "sectarian": 0.6}, "model": {"name": "m", "version": "2"},
        "source": {"topic": "posts", "partition": 2, "offset": 41, "timestamp": "2023-11-14T22:13:20.123Z"},
        "flagged_at": "2026-01-01T00:00:00.000Z", "lang": "fr", "meta": {"k": 1}, "extra": {"other": True},
    }
    assert dict(rec.headers)["flagstream.schema"] == b"review.v1"


def test_scores_record_contract():
    post = parse(b'{"id": "p1", "text": "t"}')
    rec = scores_record(post, Source("posts", 0, 3, None), {"a": 0.1}, [], {"name": "m", "version": "1"},
                        scored_at="X")
    assert rec.key == b"p1"
    assert json.loads(rec.value) == {"id": "p1", "scores": {"a": 0.1}, "labels": [], "model": {"name": "m", "version": "1"},
                                     "source": {"topic": "posts", "partition": 0, "offset": 3, "timestamp": None},
                                     "scored_at": "X"}


def test_dead_letter_keeps_key_bytes_and_headers():
    value = b"\xff not utf8"
    rej = parse(value)
    rec = dead_letter_record(b"\x00key", value, [("trace", b"abc"), ("flagstream.error", b"spoof")], rej,
                             Source("posts", 1, 7, 123), max_message_bytes=2048)
    assert rec.key == b"\x00key" and rec.value == value
    assert rec.headers[0] == ("trace", b"abc")
    assert [k for k, _ in rec.headers].count("flagstream.error") == 1
    dl = read_dead_letter(rec.key, rec.value, rec.headers)
    assert (dl.error, dl.source) == ("not_utf8", Source("posts", 1, 7, 123))
    assert dl.reason.startswith("invalid UTF-8")


def test_dead_letter_cuts_oversized_values_and_says_so():
    value = b"y" * 5000
    rec = dead_letter_record(None, value, None, parse(value), Source("p", 0, 0, 0), max_message_bytes=2048)
    h = dict(rec.headers)
    assert rec.key is None and rec.value == value[:2048]
    assert h["flagstream.error"] == b"message_too_large"
    assert h["flagstream.original_size"] == b"5000"
    import hashlib

    assert h["flagstream.original_sha256"] == hashlib.sha256(value).hexdigest().encode()


def test_review_rendering_neutralises_terminal_tricks():
    msg = {"id": "x\u202e1", "text": "evil \x1b[31mred\x1b[0m \u202eoverride\nnewline", "labels": ["propaganda"],
           "scores": {"propaganda": 0.9}, "thresholds": {"propaganda": 0.5}, "model": {"name": "m", "version": "1"},
           "source": {"topic": "posts", "partition": 0, "offset": 1}}
    out = render_review(msg)
    assert "\x1b" not in out and "\u202e" not in out
    assert "\\u001b" in out and "\\u202e" in out and "FLAGGED propaganda 0.90" in out
    assert safe_text("a" * 500, 10) == "a" * 9 + "…"


def test_produce_readers_key_by_id():
    lines = [b'{"id": "a1", "text": "t"}\n', b"\n", b"garbage\n", b'{"id": 5, "text": "t"}']
    assert list(iter_jsonl(lines)) == [(b"a1", b'{"id": "a1", "text": "t"}'), (None, b"garbage"),
                                       (None, b'{"id": 5, "text": "t"}')]
    rows = list(iter_csv('id,text,lang,meta\nc1,hello,en,"{""k"": 1}"\nc2,bye,,\n'))
    assert rows[0][0] == b"c1" and json.loads(rows[0][1]) == {"id": "c1", "text": "hello", "lang": "en", "meta": {"k": 1}}
    assert json.loads(rows[1][1]) == {"id": "c2", "text": "bye"}
