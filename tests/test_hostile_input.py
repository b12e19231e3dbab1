"""Hostile input against the posts-topic contract (:mod:`flagstream.contract.posts`), property-tested.

Whatever bytes arrive, :func:`parse_post` returns a :class:`Post` or a :class:`Rejection`
(error class from a closed set + a one-line reason) and never raises; a rejected record's
dead-letter form keeps the original key and bytes and carries headers that read back.
The end-to-end half (real broker + ``flagstream stream``) lives in
``tests/test_faults_hostile_e2e.py``.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagstream.contract.dead_letters import dead_letter_record, decode_json_record, read_dead_letter
from flagstream.contract.posts import MAX_ID_CHARS, Post, parse_post
from flagstream.contract.records import ERROR_CLASSES, MAX_REASON_CHARS, Rejection, Source
from flagstream.contract.review import review_record
from flagstream.contract.scores import scores_record

MAX_TEXT = 10_000
MAX_BYTES = 1_000_000
SRC = Source("posts", 2, 12345, 1_700_000_000_000)
MODEL = {"name": "test-linear", "version": "1"}
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
CONTROL = "".join(chr(c) for c in range(0, 32)) + "\x7f" + "".join(chr(c) for c in range(0x80, 0xA0))
HYP = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse(value: bytes | None, *, max_text_chars: int = MAX_TEXT, max_message_bytes: int = MAX_BYTES):
    return parse_post(value, max_text_chars=max_text_chars, max_message_bytes=max_message_bytes)


def check_outcome(value: bytes | None, result: Post | Rejection) -> None:
    """The invariants every outcome must satisfy, whatever the input."""
    assert isinstance(result, (Post, Rejection)), type(result)
    if isinstance(result, Rejection):
        assert result.error in ERROR_CLASSES
        assert result.reason and "\n" not in result.reason and "\r" not in result.reason
        assert len(result.reason) <= MAX_REASON_CHARS
        dl = dead_letter_record(b"k", value, [("trace", b"1")], result, SRC, MAX_BYTES)
        assert dl.key == b"k"
        assert dl.value == (value or b"")[:MAX_BYTES]
        back = read_dead_letter(dl.key, dl.value, dl.headers)
        assert back.error == result.error and back.source.offset == SRC.offset
        assert back.reason == " ".join(result.reason.split())
    else:
        assert isinstance(result.id, str) and result.id.strip() and len(result.id) <= MAX_ID_CHARS
        assert isinstance(result.text, str) and result.text.strip() and len(result.text) <= MAX_TEXT
        for rec in (review_record(result, SRC, {"propaganda": 0.9, "sectarian": 0.1}, ["propaganda"],
                                  {"propaganda": 0.5, "sectarian": 0.5}, MODEL),
                    scores_record(result, SRC, {"propaganda": 0.9, "sectarian": 0.1}, ["propaganda"], MODEL)):
            assert rec.key == result.id.encode("utf-8")
            body = decode_json_record(rec.value)  # the output is valid UTF-8 JSON ...
            json.loads(rec.value, parse_constant=lambda c: pytest.fail(f"{c} in an output record"))  # ... standard
            assert body["id"] == result.id
        assert decode_json_record(review_record(result, SRC, {}, [], {}, MODEL).value)["text"] == result.text


# --- arbitrary bytes and encodings ----------------------------------------------------------------

@HYP
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_raise(value: bytes) -> None:
    check_outcome(value, parse(value))


@HYP
@given(st.one_of(st.none(), st.just(b"")))
def test_empty_values_are_rejected(value) -> None:
    result = parse(value)
    assert isinstance(result, Rejection) and result.error == "empty_message"


@HYP
@given(prefix=st.text(max_size=50), bad=st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x28\xa1", b"\xed\xa0\x80",
                                                            b"\xf0\x28\x8c\x28", b"\xc0\xaf", b"\xf8\x88\x80\x80\x80"]),
       suffix=st.text(max_size=50))
def test_invalid_utf8_is_not_utf8(prefix: str, bad: bytes, suffix: str) -> None:
    value = b'{"id":"x","text":"' + prefix.encode() + bad + suffix.encode() + b'"}'
    result = parse(value)
    check_outcome(value, result)
    assert isinstance(result, Rejection) and result.error == "not_utf8"


@HYP
@given(st.text(max_size=200))
def test_arbitrary_text_as_json_value(s: str) -> None:
    for value in (s.encode("utf-8", "surrogatepass"), json.dumps(s).encode()):
        check_outcome(value, parse(value))


# --- JSON shapes and types -----------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=20)


@HYP
@given(st.dictionaries(st.sampled_from(["id", "text", "lang", "author", "created_at", "url", "meta", "x", "extra"]),
                       json_values, max_size=9))
def test_wrong_types_and_random_objects(obj: dict) -> None:
    value = json.dumps(obj).encode()
    result = parse(value)
    check_outcome(value, result)
    pid, text = obj.get("id"), obj.get("text")
    valid_core = isinstance(pid, str) and pid.strip() and len(pid) <= MAX_ID_CHARS and isinstance(text, str) \
        and text.strip() and len(text) <= MAX_TEXT
    if not valid_core:
        assert isinstance(result, Rejection)
        expected = ("missing_id" if "id" not in obj else "invalid_id" if not (isinstance(pid, str) and pid.strip())
                    else None)
        if expected:
            assert result.error == expected
    if isinstance(result, Post):
        assert result.id == pid and result.text == text
        for key in ("lang", "author", "url"):
            assert obj.get(key) is None or isinstance(obj[key], str)
        assert obj.get("meta") is None or isinstance(obj["meta"], dict)
        assert "x" not in obj or result.extra["x"] == obj["x"]  # unknown fields pass through


@HYP
@given(json_values)
def test_non_objects_are_not_object(v) -> None:
    if isinstance(v, dict):
        return
    result = parse(json.dumps(v).encode())
    assert isinstance(result, Rejection) and result.error == "not_object"


@pytest.mark.parametrize("value,error", [
    (b'{"id": 5, "text": "hi"}', "invalid_id"),
    (b'{"id": "", "text": "hi"}', "invalid_id"),
    (b'{"id": "   ", "text": "hi"}', "invalid_id"),
    (b'{"id": ["a"], "text": "hi"}', "invalid_id"),
    (b'{"id": "a"}', "missing_text"),
    (b'{"text": "hi"}', "missing_id"),
    (b'{"id": "a", "text": 3}', "invalid_text"),
    (b'{"id": "a", "text": null}', "invalid_text"),
    (b'{"id": "a", "text": " \\n\\t "}', "invalid_text"),
    (b'{"id": "a", "text": "hi", "meta": [1]}', "invalid_field"),
    (b'{"id": "a", "text": "hi", "lang": true}', "invalid_field"),
    (b'{"id": "a", "text": "hi", "created_at": NaN}', "not_json"),
    (b'{"id": "a", "text": "hi", "created_at": Infinity}', "not_json"),
    (b'{"id": "a", "text": "hi", "created_at": 1e400}', "not_json"),
    (b'{"id": "a", "text": "hi", "meta": {"x": [0, -1e999]}}', "not_json"),
    (b'{"id": "a", "text": "hi", "n": ' + b"1" * 4500 + b"}", "not_json"),
    (b'{"id": "a", "text": "\\ud800"}', "invalid_text"),
    (b'{"id": "\\udfff", "text": "hi"}', "invalid_id"),
    (b'{"id": "a", "text": "hi"', "not_json"),
    (b"\xef\xbb\xbf{\"id\": \"a\", \"text\": \"hi\"}", "not_json"),  # a BOM is not JSON
    (b'"just a string"', "not_object"),
])
def test_each_error_class(value: bytes, error: str) -> None:
    result = parse(value)
    check_outcome(value, result)
    assert isinstance(result, Rejection) and result.error == error, result


def test_id_length_limit() -> None:
    ok = parse(json.dumps({"id": "a" * MAX_ID_CHARS, "text": "t"}).encode())
    bad = parse(json.dumps({"id": "a" * (MAX_ID_CHARS + 1), "text": "t"}).encode())
    assert isinstance(ok, Post) and isinstance(bad, Rejection) and bad.error == "invalid_id"


# --- size and nesting ----------------------------------------------------------------------------

def test_ten_megabyte_message_is_rejected_quickly() -> None:
    value = json.dumps({"id": "big", "text": "x" * (10 * 1024 * 1024)}).encode()
    t0 = time.monotonic()
    result = parse(value)
    assert time.monotonic() - t0 < 1.0
    check_outcome(value, result)
    assert isinstance(result, Rejection) and result.error == "message_too_large"
    dl = dead_letter_record(b"big", value, None, result, SRC, MAX_BYTES)
    assert len(dl.value) == MAX_BYTES  # the DLQ never carries the unbounded payload
    assert read_dead_letter(dl.key, dl.value, dl.headers).headers["flagstream.original_size"] == str(len(value)).encode()


def test_ten_megabyte_text_under_a_raised_byte_limit_is_text_too_long() -> None:
    value = json.dumps({"id": "big", "text": "x" * (10 * 1024 * 1024)}).encode()
    result = parse(value, max_message_bytes=20 * 1024 * 1024)
    assert isinstance(result, Rejection) and result.error == "text_too_long"


@pytest.mark.parametrize("depth", [50, 1_000, 100_000, 400_000])
def test_deeply_nested_json_never_raises(depth: int) -> None:
    for value in (b"[" * depth + b"]" * depth,
                  b'{"id":"n","text":"t","meta":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}",
                  b'{"id":"n","text":"t","meta":{"a":' + b"[" * depth + b"]" * depth + b"}}"):
        result = parse(value, max_message_bytes=4 * 1024 * 1024)
        assert isinstance(result, (Post, Rejection))
        if isinstance(result, Rejection):
            assert result.error in ("not_json", "not_object")
        if depth >= 100_000:
            assert isinstance(result, Rejection)


# --- text content: control characters, bidi overrides, odd Unicode -------------------------------

@HYP
@given(st.text(alphabet=st.sampled_from(list(CONTROL + BIDI + "ab \u0627\u05d0\U0001f600\ufeff\u200b")),
               min_size=1, max_size=300))
def test_control_and_bidi_text_round_trips_exactly(text: str) -> None:
    value = json.dumps({"id": "p1", "text": text, "author": BIDI + "u\x00"}).encode()
    result = parse(value)
    check_outcome(value, result)
    if text.strip():
        assert isinstance(result, Post)
        assert result.text == text  # never altered: the review UI must see what was posted
        rec = review_record(result, SRC, {}, [], {}, MODEL)
        assert decode_json_record(rec.value)["text"] == text
    else:
        assert isinstance(result, Rejection) and result.error == "invalid_text"


@HYP
@given(st.text(alphabet=st.sampled_from(list(CONTROL + BIDI + "x")), min_size=1, max_size=40))
def test_rejection_reasons_never_echo_text_or_break_lines(noise: str) -> None:
    value = json.dumps({"id": 7, "text": noise}).encode()
    result = parse(value)
    assert isinstance(result, Rejection)
    assert "\n" not in result.reason and not any(ch in result.reason for ch in BIDI)


# --- duplicate ids -------------------------------------------------------------------------------

@HYP
@given(st.text(min_size=1, max_size=20).filter(str.strip), st.lists(st.text(min_size=1, max_size=20).filter(str.strip),
                                                                     min_size=2, max_size=5))
def test_duplicate_ids_each_parse_independently(pid: str, texts: list[str]) -> None:
    results = [parse(json.dumps({"id": pid, "text": t}).encode()) for t in texts]
    assert all(isinstance(r, Post) and r.id == pid for r in results)
    assert [r.text for r in results] == texts  # same id, different posts: none is silently dropped


def test_duplicate_keys_inside_one_object_parse_deterministically() -> None:
    value = b'{"id":"first","text":"a","id":"second","text":"b"}'
    results = {repr(parse(value)) for _ in range(3)}
    assert len(results) == 1
    check_outcome(value, parse(value))


# --- one contract: the same hostile corpus through the stream and through `flagstream rescore` ------------

BENIGN_TEXT = "the market opens at nine and the weather is fine for a walk by the river today"
BAD_TEXT = "join the fighters martyrdom operation glory to the army of the caliphate kill the enemies"


def hostile_corpus() -> list[bytes]:
    """Single-line record values (so each is also one JSONL line), one of every kind of trouble."""
    def post(**fields) -> bytes:
        return json.dumps(fields, ensure_ascii=False).encode("utf-8")

    deep = 200_000
    return [
        post(id="ok-benign", text=BENIGN_TEXT, lang="en"),
        post(id="ok-bad", text=BAD_TEXT, meta={"v": 1e300}),
        b'{"id":"u8","text":"caf\xe9 ' + BENIGN_TEXT.encode() + b'"}',  # invalid UTF-8
        b"\xff\xfe\x00{",
        b"{this is not json",
        b"[" * deep + b"]" * deep,  # 200k-deep JSON
        b'{"id":"deep","text":"t","meta":{"a":' + b"[" * deep + b"]" * deep + b"}}",
        b"[1, 2, 3]",
        post(text="no id here"),
        post(id=17, text=BENIGN_TEXT),
        post(id="", text=BENIGN_TEXT),
        post(id="x" * (MAX_ID_CHARS + 1), text=BENIGN_TEXT),
        b'{"id":"\\udfff","text":"surrogate id"}',
        post(id="blank", text=" \t\u3000 "),
        post(id="notext"),
        post(id="inttext", text=12),
        post(id="huge", text="y" * (MAX_BYTES + 10)),  # oversized
        post(id="long", text="z" * (MAX_TEXT + 1)),
        b'{"id":"inf","text":"' + BENIGN_TEXT.encode() + b'","meta":{"v":1e400}}',  # non-finite numbers
        b'{"id":"ninf","text":"' + BENIGN_TEXT.encode() + b'","created_at":-1e999}',
        b'{"id":"nan","text":"' + BENIGN_TEXT.encode() + b'","x":NaN}',
        b'{"id":"digits","text":"' + BENIGN_TEXT.encode() + b'","x":' + b"9" * 5000 + b"}",
        post(id="bidi\u202e", text=BIDI + BENIGN_TEXT + "\u200b\u200d\ufeff", author="\u2066u\u2069"),
        post(id="forged", text=BAD_TEXT, labels=[], scores={"propaganda": 0.0}, error="none", model="fake@1",
             row=0, extra={"nested": True}),
        post(id="forged2", text=BENIGN_TEXT, labels=["propaganda", "sectarian"], scores={"propaganda": 1.0}),
        post(id="badlang", text=BENIGN_TEXT, lang=True),
        post(id="dup", text=BENIGN_TEXT),
        post(id="dup", text=BAD_TEXT),
    ]


def _strict(value: bytes) -> dict:
    def refuse(name: str):
        raise AssertionError(f"{name} in output JSON")

    return json.loads(value, parse_constant=refuse)


def test_one_hostile_corpus_same_outcome_in_stream_and_rescore(topics, linear_model_dir, tmp_path) -> None:
    from flagstream.cli import main
    from support.audit import wait_accounted
    from support.kafka import produce
    from support.process import PipelineThread

    corpus = hostile_corpus()
    assert all(b"\n" not in v and v.strip() for v in corpus)

    # The stream: a real broker and the real pipeline.
    runner = PipelineThread(topics.settings())
    try:
        runner.wait_assigned()
        metas = produce(topics.bootstrap, topics.posts, [(f"k{i:03d}".encode(), v) for i, v in enumerate(corpus)])
        scores, dlq = wait_accounted(topics, expected_offsets=len(corpus), timeout_s=120)
    finally:
        runner.stop()
    at = {(m.partition, m.offset): i for i, m in enumerate(metas)}
    stream: dict[int, tuple] = {}
    for rec in scores:
        body = _strict(rec.value)
        src = body["source"]
        stream[at[(src["partition"], src["offset"])]] = ("scored", body["id"], tuple(body["labels"]), body["scores"])
    for rec in dlq:
        d = read_dead_letter(rec.key, rec.value, rec.headers)
        assert d.key == f"k{at[(d.source.partition, d.source.offset)]:03d}".encode()
        stream[at[(d.source.partition, d.source.offset)]] = ("rejected", d.error)
    review = consume_review(topics)
    assert len(stream) == len(corpus)

    # The archive: the same bytes as JSONL lines, through the real CLI.
    src_path = tmp_path / "corpus.jsonl"
    src_path.write_bytes(b"\n".join(corpus) + b"\n")
    out = tmp_path / "out.jsonl"
    assert main(["rescore", str(src_path), "--output", str(out), "--model", str(linear_model_dir)]) == 0
    rows = [_strict(line) for line in out.read_bytes().splitlines()]
    assert [r["row"] for r in rows] == list(range(len(corpus)))
    archive = {r["row"]: ("rejected", r["error"]) if "error" in r
               else ("scored", r["id"], tuple(r["labels"]), r["scores"]) for r in rows}

    assert archive == stream
    kinds = [stream[i][0] if stream[i][0] == "scored" else stream[i][1] for i in range(len(corpus))]
    assert kinds == ["scored", "scored", "not_utf8", "not_utf8", "not_json", "not_json", "not_json", "not_object",
                     "missing_id", "invalid_id", "invalid_id", "invalid_id", "invalid_id", "invalid_text",
                     "missing_text", "invalid_text", "message_too_large", "text_too_long", "not_json", "not_json",
                     "not_json", "not_json", "scored", "scored", "scored", "invalid_field", "scored", "scored"]
    # Input fields named like the product's own stay nested under extra, in both outputs.
    forged = next(r for r in rows if r.get("id") == "forged")
    assert forged["extra"] == {"labels": [], "scores": {"propaganda": 0.0}, "error": "none", "model": "fake@1",
                               "row": 0, "extra": {"nested": True}}
    from flagstream.classifier.inference.scoring import flagged_labels, load_scorer

    scorer = load_scorer(linear_model_dir)
    assert forged["model"] == scorer.info.ref
    assert forged["labels"] == flagged_labels(scorer.score([BAD_TEXT])[0], scorer.info) != []
    assert review["forged"]["extra"] == forged["extra"] and review["forged"]["labels"] == forged["labels"]
    assert stream[24][2] == archive[24][2] == ()  # forged2 claims both labels; the model gives none


def consume_review(topics) -> dict[str, dict]:
    from support.kafka import read_all

    return {rec.key.decode(): _strict(rec.value) for rec in read_all(topics.bootstrap, topics.review)}
