"""``flagstream export-decisions --output FILE.jsonl``: reviewers' decisions as labelled training rows.

One JSON line per decided post (text from its latest review record, label -> 1/0/null by reviewer
majority, vote counts, disputed labels, audit flag and sampling weight); ``flagstream train --decisions
FILE`` takes the file as an extra, train-only source. The file holds post text: keep it where the
labelled data lives, never in the repository.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    from flagstream.options import KAFKA_SECURITY_FIELDS, add_config_flags

    p = sub.add_parser("export-decisions", help="write decided posts as labelled JSONL rows (for flagstream train --decisions)")
    p.add_argument("--output", type=Path, required=True, help="JSONL file to write (holds post text)")
    p.add_argument("--accept-unsigned", action="store_true",
                   help="also use unsigned decisions (legacy data written before decisions were signed)")
    add_config_flags(p, "bootstrap_servers", "client_id", "review_topic", "decisions_topic", "startup_timeout_s",
                     "decisions_hmac_key_file",
                     "log_level", "log_format", *KAFKA_SECURITY_FIELDS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flagstream.classifier.labels import LABELS
    from flagstream.errors import UserError
    from flagstream.options import settings_from_args
    from flagstream.streaming.loop.audit import AuditPolicy
    from flagstream.streaming.ops.feedback import export_rows, read_topics
    from flagstream.streaming.logs import setup_logging
    from flagstream.streaming.signing import reader_key, row_mac

    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    out = Path(args.output)
    if not out.parent.is_dir():
        raise UserError(f"--output: directory {out.parent} does not exist")
    key = reader_key(settings, args.accept_unsigned)
    topics = read_topics(settings, accept_unsigned=args.accept_unsigned, keep_text=True, all_reviews=False)
    decisions = topics.decisions
    rows, skipped = export_rows(topics.reviews, decisions, LABELS, AuditPolicy.from_settings(settings))
    skipped.update({f"decision_{k}": v for k, v in topics.skipped.items()})
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            if key is not None:  # train --decisions checks it (streaming/signing.py)
                row["signature"] = row_mac(row, key)
            fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
    tmp.replace(out)
    disputed = sum(bool(r["disputed"]) for r in rows)
    print(f"{len(rows)} decided posts written to {out} ({sum(r['audit'] for r in rows)} audit, {disputed} with "
          f"reviewer disagreement; {len(decisions)} decisions read; skipped: "
          f"{', '.join(f'{k} {v}' for k, v in sorted(skipped.items())) or 'none'})")
    return 0
