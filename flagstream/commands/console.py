"""``flagstream console``: the review console (a web page over the review and decisions topics).

Binds 127.0.0.1 by default. Any other address needs a reviewer token (``FLAGSTREAM_CONSOLE_TOKEN`` or
``console_token_file``-style env only: it is a secret, never a CLI flag, so it stays out of ``ps``); the
printed URL carries it in the fragment, which browsers never send to the server or put in logs.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flagstream.config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("console", help="serve the review console (queue, decisions, stats) until Ctrl-C",
                       description="Reads the review and decisions topics from the beginning (joining no consumer "
                                   "group) and serves the undecided flagged posts; each decision is written to the "
                                   "decisions topic. Binds 127.0.0.1 unless --console-host says otherwise, which "
                                   "then requires FLAGSTREAM_CONSOLE_TOKEN.")
    p.add_argument("--reviewer", default="console", help="default opaque reviewer id for decisions (the page's "
                                                         "?reviewer=ID overrides it per browser)")
    from flagstream.options import add_config_flags

    add_config_flags(p, "bootstrap_servers", "client_id", "review_topic", "decisions_topic", "dlq_topic",
                     "create_topics", "topic_partitions", "console_host", "console_port", "startup_timeout_s",
                     "log_level", "log_format", "security_protocol", "sasl_mechanism", "sasl_username",
                     "sasl_password_file", "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
    p.set_defaults(func=run)


def console_url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):
        shown = "127.0.0.1"
    return f"http://{shown}:{port}/" + (f"#token={token}" if token else "")


def serve_console(settings: "Settings", reviewer: str, token: str | None, note: str = "Ctrl-C stops it") -> None:
    """Serve the console until SIGINT/SIGTERM (used by ``flagstream console`` and ``flagstream demo``)."""
    import uvicorn

    from flagstream.errors import UserError
    from streaming.broker import free_port
    from streaming.clients import BrokerUnavailable, make_admin, make_consumer, make_producer, retry_until
    from streaming.console.app import create_app, is_loopback
    from streaming.console.state import ReviewState
    from streaming.topics import ensure_topics

    host = settings.console_host
    port = settings.console_port or free_port(host if is_loopback(host) else "0.0.0.0")
    try:
        admin = retry_until("topics", lambda t: make_admin(settings, t), settings)
        try:
            ensure_topics(settings, admin, [settings.review_topic, settings.decisions_topic, settings.dlq_topic])
        finally:
            admin.close()
        consumer = retry_until("consumer", lambda t: make_consumer(settings, t, group_id=None), settings)
        producer = retry_until("producer", lambda t: make_producer(settings, t, transactional=False), settings)
    except BrokerUnavailable as exc:
        raise UserError(str(exc)) from None
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
    previous = {sig: signal.signal(sig, lambda *_: setattr(server, "should_exit", True))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"review console at {console_url(host, port, token)}  ({note})", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        state.stop()
        consumer.close(autocommit=False)
        producer.close(timeout=10)


def run(args: argparse.Namespace) -> int:
    from flagstream.errors import UserError
    from flagstream.options import settings_from_args
    from streaming.console.app import is_loopback
    from streaming.logs import setup_logging

    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    token = settings.console_token.get_secret_value() if settings.console_token is not None else None
    host = settings.console_host
    if not is_loopback(host) and not token:
        raise UserError(f"console_host {host} is not loopback: set FLAGSTREAM_CONSOLE_TOKEN to a reviewer token "
                        "(at least 16 characters), or keep the default 127.0.0.1")
    if token is not None and len(token) < 16:
        raise UserError("FLAGSTREAM_CONSOLE_TOKEN is shorter than 16 characters; use a long random token")
    if not args.reviewer.strip():
        raise UserError("--reviewer must be a non-empty opaque id")
    serve_console(settings, args.reviewer, token)
    print("console stopped", file=sys.stderr, flush=True)
    return 0
