"""``flagstream shadow-report``: what the candidate of ``stream --shadow-model`` would change, from the shadow topic.

Reads the shadow topic (joining no group) from the beginning, or from ``--since`` (the records' Kafka
timestamps), at most ``--max-records`` records, and prints per model pair, per label and per feed:
posts both models flag, newly flagged, newly unflagged, neither, and the flag rates. Examples show post
ids and scores; ``--show-text`` adds each example's text, read back from the posts topic at its source
coordinates (the shadow topic never holds text).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    from flagstream.options import KAFKA_SECURITY_FIELDS, add_config_flags

    p = sub.add_parser("shadow-report", help="compare a shadow (candidate) model with the served one, from the shadow topic",
                       description="Counts, per label and per source topic, the posts both models flag, the "
                                   "candidate's newly flagged and newly unflagged ones, and the flag-rate change; "
                                   "with a few examples (ids and scores; text only with --show-text).")
    p.add_argument("--since", default=None, metavar="TIME",
                   help="only shadow records written at or after TIME (ISO-8601, UTC if no offset); default: all")
    p.add_argument("--max-records", type=int, default=None, metavar="N", help="read at most N shadow records")
    p.add_argument("--examples", type=int, default=3, metavar="N",
                   help="examples per label and change (default 3; 0 = none)")
    p.add_argument("--show-text", action="store_true",
                   help="print each example's post text, read from the posts topic (off by default: reports "
                        "and logs do not carry post text)")
    p.add_argument("--json", dest="as_json", action="store_true", help="print the report as one JSON object")
    add_config_flags(p, "bootstrap_servers", "client_id", "shadow_topic", "startup_timeout_s", "log_level",
                     "log_format", *KAFKA_SECURITY_FIELDS)
    p.set_defaults(func=run)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render(report: Any, topic: str, texts: dict[tuple[str, int, int], str | None] | None) -> str:
    from flagstream.streaming.ops.review import format_pair, safe_text
    from flagstream.streaming.ops.shadow_report import ALL_FEEDS, ANY

    lines = [f"shadow topic {topic}: {report.records} records read ({report.duplicates} redelivered, counted once; "
             f"{report.invalid} not shadow records)"]
    if not report.pairs:
        lines.append("no shadow records in the window")
    for pr in report.pairs:
        lines += ["", f"served {pr.served} -> candidate {pr.candidate}: {pr.posts} posts, "
                      f"{pr.candidate_errors} candidate errors (left out of the rates)", "",
                  f"{'label':12s} {'feed':24s} {'posts':>6s} {'both':>6s} {'newly flagged':>14s} "
                  f"{'newly unflagged':>16s} {'neither':>8s} {'served rate':>12s} {'candidate rate':>15s} "
                  f"{'change':>9s}"]
        for label in [*sorted(k for k in pr.cells if k != ANY), ANY]:
            feeds = pr.cells.get(label, {})
            for feed in [ALL_FEEDS, *sorted(f for f in feeds if f != ALL_FEEDS)]:
                c = feeds.get(feed)
                if c is None:
                    continue
                lines.append(f"{label:12s} {safe_text(feed, 24):24s} {c.posts:6d} {c.both:6d} {c.newly_flagged:14d} "
                             f"{c.newly_unflagged:16d} {c.neither:8d} {_pct(c.served_rate):>12s} "
                             f"{_pct(c.candidate_rate):>15s} "
                             f"{100 * (c.candidate_rate - c.served_rate):+8.1f}pp")
        if pr.examples:
            lines += ["", "examples (post id, source, each model's score against its threshold):"]
            for label, by_change in sorted(pr.examples.items()):
                for change, items in sorted(by_change.items()):
                    for e in items:
                        ss, st = format_pair(e["served_score"], e["served_threshold"])
                        cs, ct = format_pair(e["candidate_score"], e["candidate_threshold"])
                        lines.append(f"  {label} {change.replace('_', ' ')}: {safe_text(str(e['id']), 80)} "
                                     f"({safe_text(e['feed'], 60)}[{e['partition']}]@{e['offset']}) "
                                     f"served {ss} (threshold {st}), candidate {cs} (threshold {ct})")
                        if texts is not None:
                            text = texts.get((e["feed"], e["partition"], e["offset"]))
                            lines.append("      " + (safe_text(text, 200) if text is not None
                                                     else "(text no longer on the posts topic)"))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from flagstream.errors import UserError
    from flagstream.options import settings_from_args
    from flagstream.streaming.kafka.clients import one_shot_consumer
    from flagstream.streaming.ops.dlq import parse_time
    from flagstream.streaming.logs import one_shot_kafka_level, setup_logging
    from flagstream.streaming.ops.review import iter_topic
    from flagstream.streaming.ops.shadow_report import fetch_texts, read_window, summarize

    if args.max_records is not None and args.max_records < 1:
        raise UserError("--max-records must be a positive number")
    if args.examples < 0:
        raise UserError("--examples must be 0 or more")
    since = None
    if args.since is not None:
        since = parse_time(args.since)
        if since is None:
            raise UserError(f"--since {args.since!r} is not an ISO-8601 time; use e.g. 2026-12-03T10:00:00Z")
    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format, kafka_level=one_shot_kafka_level(settings.log_level))
    consumer = one_shot_consumer(settings)
    try:
        report = summarize(read_window(iter_topic(consumer, settings.shadow_topic), since, args.max_records),
                           examples=args.examples)
        texts = None
        if args.show_text:
            refs = {(e["feed"], e["partition"], e["offset"]) for pr in report.pairs for by in pr.examples.values()
                    for items in by.values() for e in items}
            texts = fetch_texts(consumer, sorted(refs)) if refs else {}
    finally:
        consumer.close(autocommit=False)
    if args.as_json:
        out = report.as_dict()
        out["shadow_topic"] = settings.shadow_topic
        if texts is not None:
            for pr in out["pairs"]:
                for by in pr["examples"].values():
                    for items in by.values():
                        for e in items:
                            e["text"] = texts.get((e["feed"], e["partition"], e["offset"]))
        print(json.dumps(out, ensure_ascii=False, allow_nan=False))
    else:
        print(render(report, settings.shadow_topic, texts))
    return 0
