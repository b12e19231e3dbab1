"""``flagstream dlq`` / ``flagstream dlq replay``: list dead letters with their reasons; replay chosen ones."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flagstream.options import KAFKA_SECURITY_FIELDS

_CONN_FIELDS = ("bootstrap_servers", "client_id", "dlq_topic", "posts_topic", "startup_timeout_s", "log_level",
                "log_format", *KAFKA_SECURITY_FIELDS)


def _add_filters(p: argparse.ArgumentParser, sub: bool) -> None:
    # On the subcommands the defaults are SUPPRESS, so a filter given before the subcommand name
    # (``flagstream dlq --reason x replay``) is not overwritten by the subcommand's default.
    d = (lambda v: argparse.SUPPRESS) if sub else (lambda v: v)
    from flagstream.contract.records import ERROR_CLASSES

    p.add_argument("--reason", dest="reasons", action="append", default=d(None), metavar="CLASS",
                   choices=sorted(ERROR_CLASSES), help="only this error class (repeatable): " + ", ".join(ERROR_CLASSES))
    p.add_argument("--since", default=d(None), metavar="TIME", help="failed at or after TIME (ISO-8601, UTC if no offset)")
    p.add_argument("--until", default=d(None), metavar="TIME", help="failed before TIME")
    p.add_argument("--source-partition", dest="source_partitions", action="append", type=int, default=d(None),
                   metavar="N", help="only records that came from this posts partition (repeatable)")
    p.add_argument("--offset", dest="refs", action="append", default=d(None), metavar="P:O",
                   help="only the dead letter at partition P, offset O of the dead-letter topic (repeatable)")
    p.add_argument("--max", dest="max_records", type=int, default=d(None), metavar="N",
                   help="at most N matching records")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from flagstream.options import add_config_flags

    p = sub.add_parser("dlq", help="list dead-lettered records with their reasons; 'dlq replay' re-publishes them",
                       description="Lists the dead-letter topic, one line per record (never its value): where it "
                                   "is, when it failed, error class, reason, source partition/offset. Joins no "
                                   "consumer group.")
    _add_filters(p, sub=False)
    p.add_argument("--json", dest="as_json", action="store_true", help="one JSON object per record (no value)")
    add_config_flags(p, *_CONN_FIELDS)
    p.set_defaults(func=run, action="list")
    dsub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    lst = dsub.add_parser("list", help="list dead letters (the default)")
    _add_filters(lst, sub=True)
    lst.add_argument("--json", dest="as_json", action="store_true", default=argparse.SUPPRESS)
    rp = dsub.add_parser("replay", help="re-publish the selected dead letters to the posts topic",
                         description="Re-publishes each selected dead letter to the posts topic with its original "
                                     "key, value bytes and headers, plus flagstream.replay.* headers, and writes a "
                                     "replay marker to the dead-letter topic. Dead letters already replayed (found "
                                     "by those markers) are skipped unless --force: the pipeline does not "
                                     "deduplicate, so a forced second replay is scored twice. A dead letter whose "
                                     "lineage was replayed --max-replays times already is refused.")
    _add_filters(rp, sub=True)
    rp.add_argument("--to", dest="to_topic", default=None, metavar="TOPIC",
                    help="topic to publish to (default: posts_topic from config)")
    rp.add_argument("--dry-run", action="store_true", help="say what would be replayed, publish nothing")
    rp.add_argument("--force", action="store_true", help="replay even dead letters already replayed")
    rp.add_argument("--max-replays", type=int, default=None, metavar="N",
                    help="refuse a dead letter whose lineage was replayed N times already (default 3)")
    rp.add_argument("--all", dest="replay_all", action="store_true",
                    help="allow replaying with no filter at all (every dead letter)")
    for q in (lst, rp):
        add_config_flags(q, *_CONN_FIELDS)
        for act in q._actions:  # given before or after the action name, a flag keeps its value
            if act.dest in _CONN_FIELDS or act.dest == "config":
                act.default = argparse.SUPPRESS
        q.set_defaults(func=run)


def _filter(args: argparse.Namespace) -> Any:
    from flagstream.errors import UserError
    from flagstream.streaming.ops.dlq import DlqFilter, parse_time

    flt = DlqFilter(reasons=set(getattr(args, "reasons", None) or ()),
                    source_partitions=set(getattr(args, "source_partitions", None) or ()))
    for name in ("since", "until"):
        raw = getattr(args, name, None)
        if raw is not None:
            when = parse_time(raw)
            if when is None:
                raise UserError(f"--{name} {raw!r} is not an ISO-8601 time; use e.g. 2026-12-03T10:00:00Z")
            setattr(flt, name, when)
    for ref in getattr(args, "refs", None) or ():
        part, sep, off = ref.partition(":")
        if not sep or not part.isdigit() or not off.isdigit():
            raise UserError(f"--offset {ref!r}: expected PARTITION:OFFSET of the dead-letter topic, e.g. 0:42")
        flt.refs.add((int(part), int(off)))
    return flt


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from flagstream.errors import UserError
    from flagstream.options import settings_from_args
    from flagstream.streaming.kafka.clients import make_producer, one_shot_consumer, retry_until
    from flagstream.streaming.ops.dlq import DEFAULT_MAX_REPLAYS, History, render_entry, replay, select
    from flagstream.streaming.logs import one_shot_kafka_level, setup_logging
    from flagstream.streaming.ops.review import iter_topic

    action = getattr(args, "action", None) or "list"
    max_records = getattr(args, "max_records", None)
    if max_records is not None and max_records < 1:
        raise UserError("--max must be a positive number")
    flt = _filter(args)
    max_replays = getattr(args, "max_replays", None)
    max_replays = DEFAULT_MAX_REPLAYS if max_replays is None else max_replays
    if max_replays < 1:
        raise UserError(f"--max-replays {max_replays}: must be at least 1 (the replays allowed per lineage)")
    if action == "replay" and not args.replay_all and not (flt.reasons or flt.since or flt.until
                                                           or flt.source_partitions or flt.refs):
        raise UserError("replay needs a selection (--reason, --since/--until, --source-partition, --offset) "
                        "or --all to replay every dead letter")
    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format, kafka_level=one_shot_kafka_level(settings.log_level))
    consumer = one_shot_consumer(settings)
    try:
        entries = []
        history = History()  # every replay marker on the topic, whatever the filter (and --max) select
        for e in select(iter_topic(consumer, settings.dlq_topic), flt, history):
            if max_records is None or len(entries) < max_records:
                entries.append(e)
        entries.sort(key=lambda e: (e.failed_at is None, e.failed_at or 0, e.partition, e.offset))
        if action == "list":
            for e in entries:
                if getattr(args, "as_json", False):
                    d = e.letter
                    print(json.dumps({"topic": e.topic, "partition": e.partition, "offset": e.offset,
                                      "failed_at": e.failed_at.isoformat() if e.failed_at else None,
                                      "error": d.error, "reason": d.reason, "source": d.source.as_dict(),
                                      "key": d.key.decode("utf-8", "replace") if d.key is not None else None,
                                      "value_bytes": len(d.value)}, ensure_ascii=False), flush=True)
                else:
                    print(render_entry(e), flush=True)
            print(f"{len(entries)} dead letter(s) on {settings.dlq_topic} matched", file=sys.stderr)
            return 0
        target = args.to_topic or settings.posts_topic
    except KafkaError as exc:
        raise UserError(f"reading {settings.dlq_topic} failed: {type(exc).__name__}: {exc}") from None
    finally:
        consumer.close(autocommit=False)
    producer = None
    if not args.dry_run and entries:
        producer = retry_until("producer", lambda t: make_producer(settings, t, transactional=False), settings,
                               quiet=True)
    try:
        result = replay(producer, target, entries, history, settings.dlq_topic, force=args.force,
                        max_replays=max_replays)
    except KafkaError as exc:
        raise UserError(f"replaying to {target} failed: {type(exc).__name__}: {exc}") from None
    finally:
        if producer is not None:
            producer.close(timeout=10)
    verb = "would replay" if args.dry_run else "replayed"
    for e in result.replayed:
        print(f"{verb} {e.ref} -> {target}", flush=True)
    for e in result.skipped_done:
        print(f"skipped {e.ref}: already replayed to {target} (--force replays it again)", flush=True)
    for e, why in result.skipped_cut:
        print(f"skipped {e.ref}: {why}; its original bytes are not on the dead-letter topic", flush=True)
    for e, origin, count in result.skipped_limit:
        print(f"refused {e.ref}: its lineage (from {origin}) was replayed {count} time(s), the replay limit; fix "
              f"the cause it fails for, or raise --max-replays", flush=True)
    print(f"{verb} {len(result.replayed)}, already replayed {len(result.skipped_done)}, not replayable "
          f"{len(result.skipped_cut)}, over the replay limit {len(result.skipped_limit)} of {len(entries)} "
          f"selected dead letter(s)", file=sys.stderr)
    return 0
