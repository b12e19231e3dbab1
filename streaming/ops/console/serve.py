"""Serving the review console: clients, reader thread, HTTP server, clean shutdown on SIGINT/SIGTERM.

Shared by ``flagstream console`` and ``flagstream demo`` (commands never import each other).
"""

from __future__ import annotations

import contextlib

from flagstream.config import Settings


def console_url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1"
    return f"http://{shown}:{port}/" + (f"#token={token}" if token else "")


def serve_console(settings: Settings, reviewer: str, token: str | None, note: str = "Ctrl-C stops it") -> None:
    """Serve the console until SIGINT/SIGTERM (used by ``flagstream console`` and ``flagstream demo``)."""
    import uvicorn

    from flagstream.errors import UserError
    from flagstream.streaming.kafka.broker import free_port
    from flagstream.streaming.kafka.clients import make_admin, make_consumer, make_producer, retry_until
    from flagstream.streaming.ops.console.app import create_app, is_loopback
    from flagstream.streaming.ops.console.state import ReviewState
    from flagstream.streaming.kafka.topics import ensure_topics
    from flagstream.streaming.signals import on_stop_signals

    host = settings.console_host
    port = settings.console_port or free_port(host if is_loopback(host) else "0.0.0.0")
    admin = retry_until("topics", lambda t: make_admin(settings, t), settings)
    try:
        ensure_topics(settings, admin, [settings.review_topic, settings.decisions_topic, settings.dlq_topic])
    finally:
        admin.close()
    consumer = retry_until("consumer", lambda t: make_consumer(settings, t, group_id=None), settings)
    producer = retry_until("producer", lambda t: make_producer(settings, t, transactional=False), settings)
    state = ReviewState(settings, consumer, producer)
    state.start()
    app = create_app(state, token=token, host=host, reviewer=reviewer)
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
    print(f"review console at {console_url(host, port, token)}  ({note})", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        restore_signals()
        state.stop()
        consumer.close(autocommit=False)
        producer.close(timeout=10)



__all__ = ["serve_console", "console_url"]
