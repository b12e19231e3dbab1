"""Serving the review console: clients, reader thread, HTTP server, clean shutdown on SIGINT/SIGTERM.

Shared by ``flagstream console`` and ``flagstream demo`` (commands never import each other).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from flagstream.config import Settings

if TYPE_CHECKING:
    from flagstream.streaming.ops.console.identity import Identity

log = logging.getLogger(__name__)


def console_url(host: str, port: int) -> str:
    """The address to open (never with the token: stdout ends up in pod logs)."""
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1"
    return f"http://{shown}:{port}/"


def token_hint(identity: "Identity") -> str:
    """How to open the console with a token, naming where the token lives and at most its last 4 characters."""
    if identity.mode == "tokens":
        return "open it with #token=<your token from console_tokens_file> appended"
    if identity.token is not None:
        return (f"open it with #token=<FLAGSTREAM_CONSOLE_TOKEN> appended (the token ending "
                f"...{identity.token[-4:]})")
    return ""


def serve_console(settings: Settings, reviewer: str, token: str | None, note: str = "Ctrl-C stops it") -> None:
    """Serve the console until SIGINT/SIGTERM (used by ``flagstream console`` and ``flagstream demo``).

    Raises:
        UserError: broker unreachable, port taken, a bad tokens file, both identity sources set, or an
            unreadable decisions key.
    """
    import uvicorn

    from flagstream.errors import UserError
    from flagstream.streaming.kafka.broker import free_port
    from flagstream.streaming.kafka.clients import make_admin, make_consumer, make_producer, retry_until
    from flagstream.streaming.ops.console.app import create_app, is_loopback
    from flagstream.streaming.ops.console.identity import Identity, load_tokens
    from flagstream.streaming.ops.console.state import ReviewState
    from flagstream.streaming.kafka.topics import ensure_topics
    from flagstream.streaming.signals import on_stop_signals

    tokens = load_tokens(settings.console_tokens_file) if settings.console_tokens_file is not None else None
    try:
        identity = Identity(reviewer, token=token, tokens=tokens, trusted_header=settings.console_trusted_header)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    key = settings.resolved_decisions_hmac_key()

    host = settings.console_host
    port = settings.console_port or free_port(host if is_loopback(host) else "0.0.0.0")
    admin = retry_until("topics", lambda t: make_admin(settings, t), settings)
    try:
        ensure_topics(settings, admin, [settings.review_topic, settings.decisions_topic, settings.dlq_topic])
    finally:
        admin.close()
    consumer = retry_until("consumer", lambda t: make_consumer(settings, t, group_id=None), settings)
    producer = retry_until("producer", lambda t: make_producer(settings, t, transactional=False), settings)
    state = ReviewState(settings, consumer, producer, key=key)
    state.start()
    app = create_app(state, token=token, host=host, reviewer=reviewer, identity=identity,
                     max_body_bytes=settings.console_max_body_bytes)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    try:
        config.load()
        sock = config.bind_socket()  # bind first, so the address printed is one that answers
    except (OSError, SystemExit):
        state.stop()
        consumer.close(autocommit=False)
        producer.close(timeout=10)
        raise UserError(f"cannot serve on {host}:{port} (port in use? try --console-port 0)") from None
    # Our own SIGINT/SIGTERM handling: uvicorn's re-raises the signal after its shutdown, which would end the
    # process before the consumers, producer (and, in the demo, pipeline and broker) are closed.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    restore_signals = on_stop_signals(lambda _name: setattr(server, "should_exit", True))
    hint = token_hint(identity)
    print(f"review console at {console_url(host, port)}  ({note}{'; ' + hint if hint else ''})", flush=True)
    if key is None:
        log.warning("no decisions_hmac_key: this console's decisions are unsigned, and calibrate/export-decisions "
                    "skip them unless run with --accept-unsigned")
    try:
        server.run(sockets=[sock])
    finally:
        restore_signals()
        state.stop()
        consumer.close(autocommit=False)
        producer.close(timeout=10)



__all__ = ["serve_console", "console_url", "token_hint"]
