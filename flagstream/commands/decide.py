"""``flagstream decide ID --reject sectarian --confirm propaganda``: one reviewer decision from the shell.

The same record the review console writes (built by :mod:`flagstream.streaming.ops.decisions`), so scripts and tests
can decide without a browser. The post's review record is looked up on the review topic to fill in the
model, thresholds and review offset that flagged it. With ``decisions_hmac_key`` set the decision is signed
(streaming/signing.py); without it, it is unsigned and readers skip it unless told ``--accept-unsigned``.
More ids than one record may cover are written as several records (one JSON line each).
"""

from __future__ import annotations

import argparse
import json

from flagstream.contract.decisions import ACTIONS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decide", help="record a reviewer decision on flagged post(s) in the decisions topic",
                       description="Writes one decision record (docs/messages.md) covering the given post ids. "
                                   "Each of --confirm/--reject/--unsure takes a label and may be repeated.")
    p.add_argument("ids", nargs="+", metavar="ID", help="post id(s) the decision covers (e.g. a campaign's members)")
    for verdict in ("confirm", "reject", "unsure"):
        p.add_argument(f"--{verdict}", action="append", default=[], metavar="LABEL",
                       help=f"{verdict} this label (repeatable)")
    p.add_argument("--reviewer", default="cli", help="opaque reviewer id (not a name; default: cli)")
    p.add_argument("--policy", default=None, help="optional policy tag")
    p.add_argument("--note", default=None, help="optional free-text note (never logged)")
    p.add_argument("--campaign", default=None, help="campaign id, when the decision covers a campaign")
    p.add_argument("--action", default=None, choices=ACTIONS,
                   help="what was done to the content (statements of reasons; default: the label policy's, removed)")
    p.add_argument("--allow-missing", action="store_true",
                   help="record the decision even for ids that are not on the review topic")
    from flagstream.options import KAFKA_SECURITY_FIELDS, add_config_flags

    add_config_flags(p, "bootstrap_servers", "client_id", "review_topic", "decisions_topic", "decisions_hmac_key_file",
                     "create_topics",
                     "topic_partitions", "startup_timeout_s", "log_level", "log_format",
                     *KAFKA_SECURITY_FIELDS)
    p.set_defaults(func=run)


def verdicts_from(args: argparse.Namespace) -> dict[str, str]:
    """Label -> verdict from the repeatable flags; a label given two verdicts is an error."""
    from flagstream.errors import UserError

    out: dict[str, str] = {}
    for verdict in ("confirm", "reject", "unsure"):
        for label in getattr(args, verdict):
            label = label.strip()
            if not label:
                raise UserError(f"--{verdict} needs a label name, e.g. --{verdict} propaganda")
            if label in out and out[label] != verdict:
                raise UserError(f"label {label!r} is given both --{out[label]} and --{verdict}; pick one")
            out[label] = verdict
    if not out:
        raise UserError("no verdict given; add --confirm LABEL, --reject LABEL or --unsure LABEL")
    return out


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from flagstream.errors import UserError
    from flagstream.options import settings_from_args
    from flagstream.streaming.kafka.clients import make_admin, make_consumer, make_producer, retry_until
    from flagstream.streaming.ops.decisions import build_decisions, find_reviews, write_decision
    from flagstream.streaming.logs import setup_logging
    from flagstream.streaming.kafka.topics import ensure_topics

    verdicts = verdicts_from(args)
    if not args.reviewer.strip():
        raise UserError("--reviewer must be a non-empty opaque id")
    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    key = settings.resolved_decisions_hmac_key()
    try:
        admin = retry_until("topics", lambda t: make_admin(settings, t), settings)
        try:
            ensure_topics(settings, admin, [settings.decisions_topic])
        finally:
            admin.close()
        consumer = retry_until("consumer", lambda t: make_consumer(settings, t, group_id=None), settings)
        try:
            found = find_reviews(consumer, settings.review_topic, args.ids)
        finally:
            consumer.close(autocommit=False)
        missing = [i for i in args.ids if i not in found]
        if missing and not args.allow_missing:
            raise UserError(f"{len(missing)} id(s) not on {settings.review_topic} (first: {missing[0][:80]!r}); "
                            "check the id, or pass --allow-missing to record the decision anyway")
        items = [found[i] for i in args.ids if i in found]
        try:
            decisions = build_decisions(items, verdicts, args.reviewer, key=key, policy=args.policy, note=args.note,
                                        campaign=args.campaign, extra_ids=missing, action=args.action)
        except ValueError as exc:
            raise UserError(f"invalid decision: {exc}") from None
        producer = retry_until("producer", lambda t: make_producer(settings, t, transactional=False), settings)
        try:
            for decision in decisions:
                write_decision(producer, settings.decisions_topic, decision)
        finally:
            producer.close(timeout=10)
    except KafkaError as exc:
        raise UserError(f"writing to {settings.decisions_topic} failed: {type(exc).__name__}: {exc}") from None
    for decision in decisions:
        print(json.dumps(decision.as_dict(), ensure_ascii=False))
    return 0
