"""Shared fixtures for tests against the embedded broker (helpers live in ``tests/support/``).

``broker`` (session)
    One embedded Tansu broker (:class:`flagstream.streaming.kafka.broker.EmbeddedBroker`, in-memory storage) on a free
    loopback port for the whole session. Tests never share topic or group names (use ``topics``).
``own_broker`` (function)
    A broker of the test's own, for tests that stop, kill or restart it (``EmbeddedBroker(port=...)``
    brings one back on the same port).
``linear_model_dir`` (session)
    The one test model: a real :class:`flagstream.classifier.inference.linear.LinearModel` trained in ~2 s on the synthetic
    corpus of :mod:`support.model`, thresholds 0.5/0.5.
``topics`` (function)
    A :class:`support.topics.TopicSet` on ``broker``: unique topics (3 partitions) and group, with
    ``.settings(**overrides)`` for an in-process pipeline and ``.env(**overrides)`` for a subprocess.
``stream_proc`` (function)
    ``stream_proc(env, args=None, name=None)`` starts a :class:`support.process.StreamProcess`
    (logs in ``tmp_path``, metrics/health on a free port); whatever still runs is killed at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flagstream.streaming.kafka.broker import EmbeddedBroker
from support.model import train_linear_model
from support.process import StreamProcess
from support.topics import TopicSet


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


@pytest.fixture
def topics(broker: EmbeddedBroker, linear_model_dir: Path) -> TopicSet:
    return TopicSet.unique(broker.bootstrap, linear_model_dir)


@pytest.fixture
def stream_proc(tmp_path: Path) -> Iterator[Callable[..., StreamProcess]]:
    procs: list[StreamProcess] = []

    def start(env: dict[str, str], args: list[str] | None = None, name: str | None = None) -> StreamProcess:
        p = StreamProcess(env, tmp_path, name=f"{name or 'stream'}{len(procs)}", args=args).start()
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
