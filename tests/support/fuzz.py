"""The fuzz harness of issue 29: hypothesis profiles, input strategies and the reader hook.

Profiles (no deadline in either, so no outcome depends on how fast the CPU is):

- ``ci`` (the default): a few dozen examples per property, part of ``make test``;
- ``long``: thousands, for a soak before a release:
  ``FLAGSTREAM_FUZZ_PROFILE=long HF_HUB_OFFLINE=1 .venv/bin/pytest tests/test_fuzz.py -q`` (docs/faults.md).

The hook for any topic reader is :func:`check_reader`: give it a function ``bytes -> outcome`` (a reader of
one record value) and the bytes; it asserts the reader's contract: it returns (never raises anything but
the documented ``ValueError``), and a refusal carries a one-line reason. ``stream_outcome`` is the same
idea for the whole stream path (parse -> score -> route -> encode) of one posts-topic record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from flagstream.contract.posts import MAX_JSON_DEPTH
from flagstream.contract.records import ERROR_CLASSES, MAX_REASON_CHARS, OutRecord, Rejection

PROFILE_ENV = "FLAGSTREAM_FUZZ_PROFILE"
settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def profile() -> settings:
    """The hypothesis settings chosen by ``FLAGSTREAM_FUZZ_PROFILE`` (``ci`` unless it says ``long``)."""
    name = os.environ.get(PROFILE_ENV, "ci").strip().lower() or "ci"
    if name not in ("ci", "long"):
        raise ValueError(f"{PROFILE_ENV}={name!r}: expected ci or long")
    return settings.get_profile(name)


# --- strategies -----------------------------------------------------------------------------------
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@st.composite
def post_values(draw: Any) -> bytes:
    """Bytes a producer might send: mostly post-shaped JSON (some flagged), deep nesting, or raw bytes."""
    kind = draw(st.sampled_from(["post", "post", "deep", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    body: dict[str, Any] = {"id": draw(st.text(min_size=1, max_size=20) | JSON_VALUES),
                            "text": draw(st.sampled_from([
                                "join the fighters brothers, the caliphate needs you, victory to the mujahideen",
                                "had a lovely picnic with my family this weekend by the river"]) | st.text(max_size=50))}
    body.update(draw(st.dictionaries(st.sampled_from(["lang", "author", "meta", "url", "x", "labels"]), JSON_VALUES,
                                     max_size=3)))
    raw = json.dumps(body).encode()
    if kind == "deep":
        depth = draw(st.integers(min_value=MAX_JSON_DEPTH - 3, max_value=1500))
        raw = raw[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"
    return raw


HEADERS = st.lists(st.tuples(st.sampled_from(["trace", "flagstream.error", "flagstream.reason", "flagstream.replay.of",
                                              "flagstream.source.partition", "flagstream.source.offset",
                                              "flagstream.source.timestamp", "flagstream.marker",
                                              "flagstream.replay.count", "flagstream.failed_at"]),
                             st.binary(max_size=40) | st.sampled_from([b"-1", b"--5", b"7", b"x[0]@1", b"replay"])),
                   max_size=6)


# --- the reader hook --------------------------------------------------------------------------------
def check_reader(read: Callable[[bytes], Any], value: bytes, allowed: tuple[type[BaseException], ...] = ()) -> Any:
    """Run one topic reader on one record value and assert its contract; returns its outcome.

    ``allowed``: the exceptions the reader documents (``decode_json_record`` raises ``ValueError``); any
    other exception fails the test. A :class:`~flagstream.contract.posts.Rejection` outcome must have a known error
    class and a one-line reason; an allowed exception must say why in one line.
    """
    try:
        outcome = read(value)
    except allowed as exc:
        text = str(exc)
        assert text and "\n" not in text, f"{type(exc).__name__} without a one-line reason: {text!r}"
        return exc
    if isinstance(outcome, Rejection):
        assert outcome.error in ERROR_CLASSES, outcome
        assert outcome.reason and "\n" not in outcome.reason and len(outcome.reason) <= MAX_REASON_CHARS
    return outcome


# --- the stream path of one record ----------------------------------------------------------------
@dataclass
class Outcome:
    """What the stream does with one record: its outputs per topic (encoded) and its dead letters."""

    outputs: dict[str, list[OutRecord]] = field(default_factory=dict)
    offsets: int = 0

    def produce(self, topic: str, record: OutRecord, tag: Any = None) -> None:
        self.outputs.setdefault(topic, []).append(record)

    def store_offset(self, *_: Any) -> None:
        self.offsets += 1


def stream_outcome(router: Any, scorer: Any, value: bytes, headers: list | None = None) -> Outcome:
    """parse -> score -> route -> encode one posts-topic record, the way ``flagstream stream`` does
    (:func:`flagstream.streaming.loop.batch.parse_batch`, :func:`~flagstream.streaming.loop.batch.score_batch`, :meth:`Router.route`),
    into an :class:`Outcome` that collects what the checkpoint would produce."""
    from flagstream.streaming.loop.batch import parse_batch, score_batch

    rec = SimpleNamespace(topic="posts", partition=0, offset=1, timestamp=1_700_000_000_000, key=b"k", value=value,
                          headers=headers or [])
    batch = parse_batch([rec], max_text_chars=router.s.max_text_chars, max_message_bytes=router.s.max_message_bytes)
    score_batch(batch, scorer, lambda *a, **k: None)
    out = Outcome()
    router.route(batch, out)
    return out


__all__ = ["HEADERS", "JSON_VALUES", "Outcome", "PROFILE_ENV", "check_reader", "post_values", "profile",
           "stream_outcome"]
