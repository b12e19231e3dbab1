"""``flagstream statements [--since --until] [--summary]``: statements of reasons as JSON lines (docs/statements.md).

Reads the decisions and review topics (joining no group), writes one DSA Transparency Database statement per
restricted content item to stdout, each checked against the kept schema (a statement that fails is an error: the
command exits 1 naming the field, and writes nothing for it). ``--summary`` prints the period's transparency counts
instead (one JSON object).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone


def add_parser(sub: argparse._SubParsersAction) -> None:
    from flagstream.options import KAFKA_SECURITY_FIELDS, add_config_flags

    p = sub.add_parser("statements", help="statements of reasons (DSA Transparency Database fields) from decisions",
                       description="One JSON statement of reasons per content item a reviewer decision restricted, "
                                   "or (--summary) the period's transparency counts.")
    p.add_argument("--since", default=None, metavar="TIME", help="decisions made at or after TIME (ISO-8601, UTC)")
    p.add_argument("--until", default=None, metavar="TIME", help="decisions made before TIME (ISO-8601, UTC)")
    p.add_argument("--accept-unsigned", action="store_true",
                   help="also read decisions without a valid signature (legacy data; they name no verified reviewer)")
    p.add_argument("--summary", action="store_true",
                   help="print the period's counts (by label, language, automated vs human, reversed, time to decision)")
    add_config_flags(p, "bootstrap_servers", "client_id", "review_topic", "decisions_topic", "decision_sla_s",
                     "startup_timeout_s", "log_level", "log_format", *KAFKA_SECURITY_FIELDS)
    p.set_defaults(func=run)


def _time(value: str | None, flag: str) -> datetime | None:
    from flagstream.errors import UserError

    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{flag} {value!r} is not an ISO-8601 time; use e.g. 2026-01-01 or 2026-01-01T00:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def run(args: argparse.Namespace) -> int:
    from flagstream.options import settings_from_args
    from flagstream.streaming.logs import setup_logging
    from flagstream.streaming.ops.feedback import read_topics
    from flagstream.streaming.ops.statements import check, in_period, statements_for, summary

    since, until = _time(args.since, "--since"), _time(args.until, "--until")
    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    # Only signed decisions (the console's identity) make statements: an unsigned one names no accountable
    # reviewer (issue 29); --accept-unsigned reads legacy decisions.
    topics = read_topics(settings, accept_unsigned=args.accept_unsigned, keep_text=False, all_reviews=False)
    reviews, decisions = topics.reviews, topics.decisions
    chosen = [d for d in decisions if in_period(d, since, until)]
    if args.summary:
        print(json.dumps(summary(chosen, reviews, settings, decisions), sort_keys=True))
        return 0
    bad = 0
    for d in chosen:
        for st in statements_for(d, reviews, settings):
            problems = check(st)
            if problems:
                bad += 1
                print(f"statement {st.get('puid')} fails the schema: {'; '.join(problems[:3])}", file=sys.stderr)
                continue
            print(json.dumps(st, ensure_ascii=False, sort_keys=True))
    return 1 if bad else 0
