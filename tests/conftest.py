"""Shared fixtures for tests against the embedded broker (reusable by every streaming/fault test).

Fixtures
--------
``broker`` (session)
    One embedded Tansu broker (:class:`streaming.broker.EmbeddedBroker`, in-memory storage) on a free
    loopback port for the whole session; its log goes to ``<tmp>/broker/tansu.log``. Tests never share
    topic or group names (use ``topics``), so they don't see each other's data.
``own_broker`` (function)
    A broker of the test's own, for tests that stop, kill or restart it (``.stop()``, ``.kill()``,
    ``EmbeddedBroker(port=own_broker.port).start()`` to bring one back on the same port).
``linear_model_dir`` (session)
    A real :class:`classifier.linear.LinearModel` trained in ~2 s on a synthetic corpus the test
    writes (``stream_helpers.training_corpus``), saved with ``LinearModel.save`` (manifest, safetensors),
    thresholds 0.5/0.5. ``stream_helpers.PROPAGANDA_TEXT`` / ``SECTARIAN_TEXT`` / ``BENIGN_TEXT`` score
    far on the expected side of them.
``topics`` (function)
    A :class:`stream_helpers.TopicSet`: unique posts/review/scores/dlq topic names (created with 3
    partitions) and a unique group id on ``broker``, with ``.settings(**overrides)`` for an in-process
    :class:`streaming.pipeline.Pipeline` and ``.env(**overrides)`` for a ``flagstream stream``
    subprocess (``FLAGSTREAM_*`` variables; short group session so joins take ~3 s).
``stream_proc`` (function)
    A factory ``stream_proc(env, args=None) -> StreamProc`` that starts ``flagstream stream`` as a
    subprocess (its stderr in ``tmp_path``, its metrics/health on a free port), and kills whatever is
    still running at teardown. ``StreamProc`` has ``wait_ready()``, ``terminate()`` (SIGTERM),
    ``kill()`` (SIGKILL), ``get(path)`` (metrics/health HTTP), ``logs()``, ``log_records()``.

Helpers (``tests/stream_helpers.py``): ``produce``, ``produce_posts``, ``consume_all`` (every record of a
topic up to its high-watermark), ``wait_accounted`` (until every input is in scores or DLQ),
``source_offsets``, ``duplicate_counts``, ``run_cli``, ``unique``, ``create_topics``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_helpers import StreamProc, TopicSet, create_topics, train_linear_model, unique  # noqa: E402

from streaming.broker import EmbeddedBroker  # noqa: E402


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(log_path=tmp_path_factory.mktemp("broker") / "tansu.log")
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(log_path=tmp_path / "tansu.log")
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def linear_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_linear_model(tmp_path_factory.mktemp("models") / "test-linear")


def make_topic_set(bootstrap: str, model_dir: Path, partitions: int = 3, create: bool = True) -> TopicSet:
    base = unique("t")
    ts = TopicSet(bootstrap=bootstrap, posts=f"{base}.posts", review=f"{base}.review", scores=f"{base}.scores",
                  dlq=f"{base}.dlq", group=f"{base}-group", model_dir=model_dir, partitions=partitions)
    if create:
        create_topics(bootstrap, [ts.posts, ts.review, ts.scores, ts.dlq], partitions)
    return ts


@pytest.fixture
def topics(broker: EmbeddedBroker, linear_model_dir: Path) -> TopicSet:
    return make_topic_set(broker.bootstrap, linear_model_dir)


@pytest.fixture
def stream_proc(tmp_path: Path) -> Iterator[Callable[..., StreamProc]]:
    procs: list[StreamProc] = []

    def start(env: dict[str, str], args: list[str] | None = None, name: str | None = None) -> StreamProc:
        p = StreamProc(env, tmp_path / f"{name or 'stream'}-{len(procs)}.log", args=args)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.close()
