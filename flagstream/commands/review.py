"""``flagstream review``: print the review topic (flagged posts) readably, or follow it."""

from __future__ import annotations

import argparse
import json
import shutil
import sys

from flagstream.streaming.signals import on_stop_signals


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="print flagged posts from the review topic, readable by a person",
                       description="Prints each flagged post in full (wrapped), with its scores against the "
                                   "thresholds and where it came from. By default reads the whole topic and joins "
                                   "no consumer group (it never takes work from a pipeline); --group NAME resumes "
                                   "where the reader with that name stopped, --from-end shows only what arrives "
                                   "from now on.")
    p.add_argument("--follow", "-f", action="store_true", help="keep waiting for new flagged posts (Ctrl-C stops)")
    p.add_argument("--max", dest="max_records", type=int, default=None, metavar="N", help="stop after N records")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the raw JSON records, one per line")
    p.add_argument("--group", dest="reader_group", default=None, metavar="NAME",
                   help="a reader name: start where this reader stopped last time and remember where it stops "
                        "(offsets committed to Kafka under consumer group NAME; no group join, no rebalance)")
    p.add_argument("--from-end", action="store_true",
                   help="skip what is already on the topic; show only posts flagged from now on (implies --follow)")
    p.add_argument("--width", type=int, default=None, metavar="COLUMNS",
                   help="wrap post text to COLUMNS (default: the terminal width, at most 100)")
    from flagstream.options import KAFKA_SECURITY_FIELDS, add_config_flags

    add_config_flags(p, "bootstrap_servers", "client_id", "review_topic", "startup_timeout_s", "log_level",
                     "log_format", *KAFKA_SECURITY_FIELDS)
    p.set_defaults(func=run)


def _interrupt(_name: str) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    on_stop_signals(_interrupt)  # first thing: a stop while still connecting is a clean stop too
    from kafka.errors import KafkaError

    from flagstream.errors import UserError
    from flagstream.options import settings_from_args
    from flagstream.streaming.kafka.clients import one_shot_consumer
    from flagstream.streaming.logs import one_shot_kafka_level, setup_logging
    from flagstream.streaming.ops.review import ReaderPosition, decode, iter_topic, record_kind, render_record

    if args.max_records is not None and args.max_records < 1:
        raise UserError("--max must be a positive number")
    if args.width is not None and args.width < 20:
        raise UserError("--width must be at least 20 columns")
    if args.from_end and args.reader_group:
        raise UserError("--from-end and --group exclude each other: a reader group resumes where it stopped")
    width = args.width or min(100, shutil.get_terminal_size((100, 24)).columns)
    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format, kafka_level=one_shot_kafka_level(settings.log_level))
    try:
        consumer = one_shot_consumer(settings, args.reader_group)
    except KeyboardInterrupt:
        return 0
    start = "end" if args.from_end else ("committed" if args.reader_group else "beginning")
    position = ReaderPosition(consumer) if args.reader_group else None
    shown = 0
    kinds = {"review": 0, "dead_letter": 0, "other": 0}
    try:
        for rec in iter_topic(consumer, settings.review_topic, follow=args.follow or args.from_end,
                              max_records=args.max_records, start=start):
            if args.as_json:
                msg = decode(rec.value)
                print(json.dumps(msg, ensure_ascii=False) if msg is not None
                      else json.dumps({"not_json_bytes": len(rec.value or b"")}), flush=True)
            else:
                print(render_record(rec, width) + "\n", flush=True)
            shown += 1
            kinds[record_kind(rec)] += 1
            if position is not None:
                position.done(rec)
    except KeyboardInterrupt:
        pass
    except KafkaError as exc:
        raise UserError(f"reading {settings.review_topic} failed: {type(exc).__name__}: {exc}") from None
    finally:
        try:
            if position is not None:
                position.commit()
        finally:
            consumer.close(autocommit=False)
    if not args.as_json:
        resumed = f" (reader {args.reader_group} resumes after them)" if args.reader_group else ""
        odd = ", ".join(f"{n} {k.replace('_', ' ')}(s)" for k, n in kinds.items() if n and k != "review")
        print(f"{kinds['review']} flagged post(s) on {settings.review_topic}{resumed}"
              + (f"; also {odd}, not review records" if odd else ""), file=sys.stderr)
    return 0
