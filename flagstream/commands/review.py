"""``flagstream review``: print the review topic (flagged posts) readably, or follow it."""

from __future__ import annotations

import argparse
import json
import signal
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="print flagged posts from the review topic, readable by a person",
                       description="Reads the review topic from the beginning (joining no consumer group, so it "
                                   "never takes work from a pipeline) and prints each flagged post.")
    p.add_argument("--follow", "-f", action="store_true", help="keep waiting for new flagged posts (Ctrl-C stops)")
    p.add_argument("--max", dest="max_records", type=int, default=None, metavar="N", help="stop after N records")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the raw JSON records, one per line")
    from flagstream.options import add_config_flags

    add_config_flags(p, "bootstrap_servers", "client_id", "review_topic", "startup_timeout_s", "log_level",
                     "log_format", "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password_file",
                     "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from flagstream.errors import UserError
    from flagstream.options import settings_from_args
    from streaming.clients import BrokerUnavailable, make_consumer, retry_until
    from streaming.logs import setup_logging
    from streaming.review import decode, iter_topic, render_review

    if args.max_records is not None and args.max_records < 1:
        raise UserError("--max must be a positive number")
    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    try:
        consumer = retry_until("consumer", lambda t: make_consumer(settings, t, group_id=None), settings)
    except BrokerUnavailable as exc:
        raise UserError(str(exc)) from None
    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    shown = 0
    try:
        for rec in iter_topic(consumer, settings.review_topic, follow=args.follow, max_records=args.max_records):
            msg = decode(rec.value)
            if args.as_json:
                print(json.dumps(msg, ensure_ascii=False) if msg is not None else rec.value, flush=True)
            elif msg is None:
                print(f"■ (not a review record at {rec.topic}[{rec.partition}]@{rec.offset})", flush=True)
            else:
                print(render_review(msg) + "\n", flush=True)
            shown += 1
    except KeyboardInterrupt:
        pass
    except KafkaError as exc:
        raise UserError(f"reading {settings.review_topic} failed: {type(exc).__name__}: {exc}") from None
    finally:
        consumer.close(autocommit=False)
    if not args.as_json:
        print(f"{shown} flagged post(s) on {settings.review_topic}", file=sys.stderr)
    return 0
