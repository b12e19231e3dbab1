"""Issue 29: property-based fuzzing of the stream path and of the topic readers this side owns.

Whatever JSON value or bytes arrive, ``parse -> score -> route -> encode`` (the real steps and router,
a real fast model) raises nothing, accounts for the record (a scores verdict, or exactly one dead letter
with a one-line reason), and every output it produces is standard JSON that reads back. The dead-letter
readers (``dlq`` listing, replay history, ``read_dead_letter``) and the record decoders never raise on
what they read. Profile: ``FLAGSTREAM_FUZZ_PROFILE`` (``ci`` default, ``long``; tests/support/fuzz.py).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flagstream.contract.dead_letters import decode_json_record, read_dead_letter
from flagstream.contract.decisions import parse_decision
from flagstream.contract.posts import MAX_JSON_DEPTH, json_depth, parse_post
from flagstream.contract.records import ERROR_CLASSES
from flagstream.contract.shadow import read_shadow
from support.fuzz import HEADERS, JSON_VALUES, check_reader, post_values, profile, stream_outcome

FUZZ = profile()


@pytest.fixture(scope="module")
def stream_parts(linear_model_dir):
    from flagstream.classifier.inference.scoring import load_scorer
    from flagstream.config import load_settings
    from flagstream.streaming.loop.routing import Router

    settings = load_settings(None, {"model": str(linear_model_dir), "audit_rate": 0.5, "audit_near_rate": 0.5},
                             environ={})
    scorer = load_scorer(linear_model_dir)
    router = Router(settings, scorer.info.thresholds, scorer.info.as_dict())
    return settings, router, scorer


def assert_accounted(settings, value: bytes, out) -> None:
    dead = out.outputs.get(settings.dlq_topic, [])
    scored = out.outputs.get(settings.scores_topic, [])
    assert out.offsets == 1
    assert len(dead) + len(scored) == 1, (len(dead), len(scored))  # a verdict or a dead letter, never both/none
    for letter in dead:
        d = read_dead_letter(letter.key, letter.value, letter.headers)
        assert d.error in ERROR_CLASSES and d.reason and "\n" not in d.reason
        assert letter.value == value[: settings.max_message_bytes]
        assert not out.outputs.get(settings.review_topic)
    for topic, records in out.outputs.items():
        if topic == settings.dlq_topic:
            continue
        for rec in records:
            body = decode_json_record(rec.value)  # bounded, standard JSON, reads back
            assert json_depth(body) <= MAX_JSON_DEPTH + 2
            assert len(rec.value) <= settings.max_message_bytes


@FUZZ
@given(post_values())
def test_stream_path_accounts_for_every_record(stream_parts, value: bytes) -> None:
    settings, router, scorer = stream_parts
    assert_accounted(settings, value, stream_outcome(router, scorer, value))


@FUZZ
@given(JSON_VALUES)
def test_stream_path_on_any_json_value(stream_parts, obj) -> None:
    settings, router, scorer = stream_parts
    value = json.dumps(obj).encode()
    assert_accounted(settings, value, stream_outcome(router, scorer, value))


@FUZZ
@given(st.binary(max_size=512), HEADERS)
def test_stream_path_on_any_bytes_and_headers(stream_parts, value: bytes, headers) -> None:
    settings, router, scorer = stream_parts
    assert_accounted(settings, value, stream_outcome(router, scorer, value, headers))


@FUZZ
@given(st.binary(max_size=512) | post_values())
def test_record_readers_never_raise(value: bytes) -> None:
    check_reader(decode_json_record, value, allowed=(ValueError,))
    check_reader(read_shadow, value)
    check_reader(parse_decision, value)
    check_reader(lambda v: parse_post(v, max_text_chars=10_000, max_message_bytes=1_000_000), value)


@FUZZ
@given(st.one_of(st.none(), st.binary(max_size=64)), st.binary(max_size=256), HEADERS)
def test_dlq_readers_never_raise(key, value: bytes, headers) -> None:
    from flagstream.streaming.ops.dlq import DlqFilter, History, render_entry, select

    rec = SimpleNamespace(topic="posts.dlq", partition=0, offset=4, timestamp=1_700_000_000_000, key=key,
                          value=value, headers=headers)
    history = History()
    entries = list(select([rec], DlqFilter(), history))
    for e in entries:
        line = render_entry(e)
        assert "\n" not in line
        origin, count = history.lineage(e)
        assert origin and count >= 0
        _ = e.failed_at, e.not_original
    assert len(entries) + len(history.markers) <= 1
