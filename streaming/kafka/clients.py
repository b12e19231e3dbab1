"""kafka-python clients built from :class:`~flagstream.config.Settings`, in one place.

- Consumer: joins ``group_id`` with kafka-python's own group protocol (scale-out is Kafka's, nothing
  home-made), ``enable_auto_commit=False`` (offsets are committed only by
  :class:`flagstream.streaming.loop.checkpoint.Checkpoint`, after the batch's outputs are acknowledged).
- Producer: idempotent (``enable_idempotence=True``), ``acks="all"``, unlimited retries within
  ``delivery_timeout_ms``; records are keyed by post id by the caller. With ``exactly_once`` it is
  also transactional.
- Connection failures at construction surface as :class:`BrokerUnavailable` with one readable line;
  :func:`retry_until` retries them with backoff until ``startup_timeout_s``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import errors as kafka_errors
from kafka.errors import KafkaError

from flagstream.config import Settings
from flagstream.errors import UserError

log = logging.getLogger(__name__)
T = TypeVar("T")
# kafka-python 2.x raises NoBrokersAvailable at construction; 3.x raises KafkaTimeoutError.
_NO_BROKERS: tuple[type[BaseException], ...] = tuple(
    c for c in (getattr(kafka_errors, "NoBrokersAvailable", None), kafka_errors.KafkaTimeoutError) if c is not None)

# Room for key, headers and framing above the largest value we ever produce (max_message_bytes).
PRODUCE_OVERHEAD_BYTES = 256 * 1024


class BrokerUnavailable(UserError):
    """No broker answered within the time allowed (one line naming the address and what to check)."""


def _bootstrap_ms(settings: Settings, timeout_s: float | None) -> int:
    if timeout_s is None:
        timeout_s = min(10.0, settings.startup_timeout_s)
    return max(500, int(timeout_s * 1000))


def make_consumer(settings: Settings, timeout_s: float | None = None, **overrides: Any) -> KafkaConsumer:
    """A group consumer for the posts topic (not yet subscribed)."""
    cfg: dict[str, Any] = dict(
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset=settings.auto_offset_reset,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=min(settings.heartbeat_interval_ms, settings.session_timeout_ms // 3),
        max_poll_interval_ms=settings.max_poll_interval_ms,
        max_poll_records=max(settings.batch_size, 1),
        # The memory broker (and a real cluster after topic re-creation) can lose topics; notice soon.
        metadata_max_age_ms=30_000,
        # Topics are created by flagstream.streaming.kafka.topics with the configured partition count, never implicitly
        # by a metadata request (a broker's default partition count would silently differ).
        allow_auto_create_topics=False,
        isolation_level="read_committed" if settings.exactly_once else "read_uncommitted",
        bootstrap_timeout_ms=_bootstrap_ms(settings, timeout_s),
        **settings.kafka_common(),
    )
    cfg.update(overrides)
    return _build(KafkaConsumer, settings, cfg)


def make_producer(settings: Settings, timeout_s: float | None = None, transactional: bool | None = None,
                  **overrides: Any) -> KafkaProducer:
    """The idempotent producer for review, scores and dead-letter records."""
    cfg: dict[str, Any] = dict(
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        max_request_size=settings.max_message_bytes + PRODUCE_OVERHEAD_BYTES,
        # send() blocks at most this long waiting for metadata/buffer space (broker gone mid-run).
        max_block_ms=max(settings.request_timeout_ms, 5_000),
        bootstrap_timeout_ms=_bootstrap_ms(settings, timeout_s),
        **settings.kafka_common(),
    )
    if settings.exactly_once if transactional is None else transactional:
        cfg["transactional_id"] = f"{settings.client_id}-{settings.group_id}-{uuid.uuid4().hex[:12]}"
    cfg.update(overrides)
    return _build(KafkaProducer, settings, cfg)


def make_admin(settings: Settings, timeout_s: float | None = None, **overrides: Any) -> KafkaAdminClient:
    cfg: dict[str, Any] = dict(bootstrap_timeout_ms=_bootstrap_ms(settings, timeout_s), **settings.kafka_common())
    cfg.update(overrides)
    return _build(KafkaAdminClient, settings, cfg)


def _build(cls: Callable[..., T], settings: Settings, cfg: dict[str, Any]) -> T:
    try:
        return cls(**cfg)
    except _NO_BROKERS as exc:
        raise BrokerUnavailable(f"no broker answered at {settings.bootstrap_servers} ({_short(exc)})") from None
    except KafkaError as exc:
        if "bootstrap" in str(exc).lower() or getattr(exc, "retriable", False):
            raise BrokerUnavailable(f"no broker answered at {settings.bootstrap_servers} ({_short(exc)})") from None
        raise
    except OSError as exc:
        raise BrokerUnavailable(f"cannot reach {settings.bootstrap_servers} ({exc.strerror or exc})") from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


class Backoff:
    """The one doubling backoff: ``first_s`` doubling to ``max_s``; :meth:`reset` after a success.

    Used for broker reconnects (:func:`retry_until`, the producer rebuild) and for a rewound batch
    after a failed checkpoint or an open breaker (:mod:`flagstream.streaming.loop.pipeline`).
    """

    def __init__(self, first_s: float = 0.5, max_s: float = 30.0) -> None:
        self.first_s, self.max_s = first_s, max_s
        self.failures = 0

    @property
    def delay_s(self) -> float:
        return 0.0 if not self.failures else min(self.first_s * 2 ** (self.failures - 1), self.max_s)

    def failed(self) -> float:
        self.failures += 1
        return self.delay_s

    def reset(self) -> None:
        self.failures = 0

    @property
    def next_s(self) -> float:
        """The wait the next failure will bring (``first_s`` before any failure)."""
        return min(self.first_s * 2 ** self.failures, self.max_s)


def retry_until(what: str, fn: Callable[[float], T], settings: Settings,
                should_stop: Callable[[], bool] = lambda: False, quiet: bool = False) -> T:
    """Call ``fn(attempt_timeout_s)`` until it stops raising :class:`BrokerUnavailable`.

    Backoff doubles from 0.5 s to 5 s (each attempt may itself wait up to twice the backoff for the
    broker to answer); each failure logs one WARNING line (DEBUG with ``quiet``: one-shot commands,
    whose whole output on failure is the final one-line error); after
    ``startup_timeout_s`` the last :class:`BrokerUnavailable` is raised with the total time waited.
    """
    deadline = time.monotonic() + settings.startup_timeout_s
    backoff, attempt = Backoff(first_s=0.5, max_s=5.0), 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        try:
            return fn(max(0.5, min(2 * backoff.next_s, 5.0, remaining)))
        except BrokerUnavailable as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or should_stop():
                raise BrokerUnavailable(
                    f"broker at {settings.bootstrap_servers} unreachable after {settings.startup_timeout_s:g}s "
                    f"({attempt} attempts); check --bootstrap-servers and that the broker is running"
                ) from None
            wait = min(backoff.failed(), remaining)
            log.log(logging.DEBUG if quiet else logging.WARNING, "broker unreachable, retrying", extra={"what": what, "bootstrap": settings.bootstrap_servers,
                                                               "attempt": attempt, "retry_in_s": round(wait, 2),
                                                               "error": str(exc)})
            time.sleep(wait)


__all__ = ["Backoff", "BrokerUnavailable", "make_consumer", "make_producer", "make_admin", "retry_until"]


def one_shot_consumer(settings: Settings, group_id: str | None = None) -> KafkaConsumer:
    """The consumer of a one-shot command (review, dlq, shadow-report): quiet retries, then a one-line error.

    Such a command's whole output on an unreachable broker is that line (:class:`BrokerUnavailable`, a
    :class:`~flagstream.errors.UserError`), not retry warnings or a traceback; ``group_id=None`` reads without
    joining or committing to any group.
    """
    return retry_until("consumer", lambda t: make_consumer(settings, t, group_id=group_id), settings, quiet=True)

