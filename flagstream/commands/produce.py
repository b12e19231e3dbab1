"""``flagstream produce FILE``: publish a JSONL or CSV file of posts to the posts topic, keyed by id."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("produce", help="publish a JSONL or CSV file of posts (keyed by post id)",
                       description="JSONL lines are sent byte for byte (malformed lines too: the pipeline "
                                   "dead-letters them); CSV rows become JSON objects. '-' reads JSONL from stdin.")
    p.add_argument("file", metavar="FILE", help="posts file: .jsonl (one JSON object per line) or .csv, or -")
    p.add_argument("--topic", default=None, help="topic to publish to (default: posts_topic from config)")
    from flagstream.options import KAFKA_SECURITY_FIELDS, add_config_flags

    add_config_flags(p, "bootstrap_servers", "client_id", "posts_topic", "create_topics", "topic_partitions",
                     "startup_timeout_s", "max_message_bytes", "log_level", "log_format",
                     *KAFKA_SECURITY_FIELDS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from flagstream.errors import UserError
    from flagstream.options import settings_from_args
    from flagstream.streaming.kafka.clients import make_admin, make_producer, retry_until
    from flagstream.streaming.logs import one_shot_kafka_level, setup_logging
    from flagstream.streaming.kafka.produce import publish, read_records
    from flagstream.streaming.kafka.topics import ensure_topics

    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format, kafka_level=one_shot_kafka_level(settings.log_level))
    topic = args.topic or settings.posts_topic
    records = list(read_records(args.file))  # read first: a bad file fails before any broker wait
    admin = retry_until("topics", lambda t: make_admin(settings, t), settings, quiet=True)
    try:
        ensure_topics(settings, admin, [topic])
    finally:
        admin.close()
    producer = retry_until("producer", lambda t: make_producer(settings, t, transactional=False), settings, quiet=True)
    try:
        result = publish(producer, topic, records)
    except KafkaError as exc:
        raise UserError(f"publishing to {topic} failed: {type(exc).__name__}: {exc}") from None
    finally:
        producer.close(timeout=10)
    note = f" ({result.without_id} without a usable id: they will be dead-lettered)" if result.without_id else ""
    print(f"published {result.published} records to {topic} on {settings.bootstrap_servers}{note}")
    return 0
