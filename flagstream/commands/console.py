"""``flagstream console``: the review console (a web page over the review and decisions topics).

Binds 127.0.0.1 by default. Any other address needs reviewer credentials: per-reviewer tokens
(``console_tokens_file``) or the shared ``FLAGSTREAM_CONSOLE_TOKEN`` (a secret: environment only, never a CLI
flag, so it stays out of ``ps``). The printed URL never carries a token (stdout ends up in pod logs): it says
where the token is and its last 4 characters; the page takes it from the ``#token=`` fragment, which browsers
never send to the server. Who decides is the server's call (streaming/ops/console/identity.py).
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("console", help="serve the review console (queue, decisions, stats) until Ctrl-C",
                       description="Reads the review and decisions topics from the beginning (joining no consumer "
                                   "group) and serves the undecided flagged posts; each decision is written to the "
                                   "decisions topic. Binds 127.0.0.1 unless --console-host says otherwise, which "
                                   "then requires FLAGSTREAM_CONSOLE_TOKEN.")
    p.add_argument("--reviewer", default="console",
                   help="opaque reviewer id stamped on every decision when the console has one shared token (or none); "
                        "per-reviewer identity comes from console_tokens_file or console_trusted_header")
    from flagstream.options import KAFKA_SECURITY_FIELDS, add_config_flags

    add_config_flags(p, "bootstrap_servers", "client_id", "review_topic", "decisions_topic", "dlq_topic",
                     "create_topics", "topic_partitions", "console_host", "console_port", "console_tokens_file",
                     "console_trusted_header", "console_max_body_bytes", "console_max_items", "console_max_decided",
                     "decisions_hmac_key_file", "startup_timeout_s",
                     "log_level", "log_format", *KAFKA_SECURITY_FIELDS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flagstream.errors import UserError
    from flagstream.options import settings_from_args
    from flagstream.streaming.ops.console.app import is_loopback
    from flagstream.streaming.logs import setup_logging

    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    token = settings.console_token.get_secret_value() if settings.console_token is not None else None
    host = settings.console_host
    if not is_loopback(host) and not token and settings.console_tokens_file is None:
        raise UserError(f"console_host {host} is not loopback: set FLAGSTREAM_CONSOLE_TOKEN to a reviewer token "
                        "(at least 16 characters), or keep the default 127.0.0.1")
    if token is not None and len(token) < 16:
        raise UserError("FLAGSTREAM_CONSOLE_TOKEN is shorter than 16 characters; use a long random token")
    if not args.reviewer.strip():
        raise UserError("--reviewer must be a non-empty opaque id")
    from flagstream.streaming.ops.console.serve import serve_console

    serve_console(settings, args.reviewer, token)
    print("console stopped", file=sys.stderr, flush=True)
    return 0
