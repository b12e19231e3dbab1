"""``flagstream bank list|add|remove|export|import|sync``: the known-content banks on the bank topic (docs/banks.md).

Every action works on the compacted bank topic (``bank_topic``), so what it changes reaches every stream process
(they refresh before each batch) and survives restarts. ``export`` / ``import`` move entries as JSON lines (one
entry per line, the same object as the topic value), so two teams can share a bank: signatures and decision
references only, never post text.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    from flagstream.options import KAFKA_SECURITY_FIELDS, add_config_flags

    p = sub.add_parser("bank", help="known-content banks: list, add, remove, export, import entries; sync from decisions",
                       description="Positive (confirmed) and negative (rejected) banks of post signatures on the "
                                   "bank topic.")
    fields = ("bootstrap_servers", "client_id", "bank_topic", "review_topic", "decisions_topic", "create_topics",
              "topic_partitions", "bank_ttl_days", "bank_max_entries", "bank_similarity", "startup_timeout_s",
              "log_level", "log_format", *KAFKA_SECURITY_FIELDS)
    p.set_defaults(func=run, as_json=False)
    bsub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p), required=True)
    ls = bsub.add_parser("list", help="print the bank's entries (one line each, or JSON lines with --json)")
    ls.add_argument("--json", dest="as_json", action="store_true", help="one entry JSON object per line")
    add = bsub.add_parser("add", help="add a text to a bank by hand (hashed; the text is not stored)")
    add.add_argument("--bank", choices=("positive", "negative"), required=True, help="which bank")
    add.add_argument("--label", action="append", default=[], metavar="LABEL", help="label (repeatable)")
    add.add_argument("--text-file", required=True, metavar="FILE",
                     help="file holding the text to bank ('-' = stdin); not a flag value, so it stays out of "
                          "shell history")
    add.add_argument("--reference", default=None, metavar="REF",
                     help="where the entry comes from (e.g. a shared list's id); stored as the decision id")
    rm = bsub.add_parser("remove", help="remove entries by id (tombstones on the bank topic)")
    rm.add_argument("entry_ids", nargs="+", metavar="ENTRY_ID")
    ex = bsub.add_parser("export", help="write every live entry as JSON lines")
    ex.add_argument("--output", default="-", metavar="FILE", help="file to write (default: stdout)")
    im = bsub.add_parser("import", help="add the entries of an exported JSON-lines file")
    im.add_argument("file", metavar="FILE")
    syn = bsub.add_parser("sync", help="write the entries reviewers' decisions call for (idempotent; signed decisions only)")
    syn.add_argument("--accept-unsigned", action="store_true",
                     help="also bank decisions without a valid signature (legacy data; they name no verified reviewer)")
    for q in (ls, add, rm, ex, im, bsub.choices["sync"]):
        add_config_flags(q, *fields)
        q.set_defaults(func=run)


def _describe(e: Any) -> str:
    d = e.decision
    return (f"{e.entry_id}  {e.bank:8s} {','.join(e.labels) or '-':22s} decision {d.get('decision_id', '-')} "
            f"post {d.get('post_id', '-')}  expires {e.expires_at}")


def _read_text(path: str) -> str:
    from flagstream.errors import UserError

    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"--text-file {path}: {exc.strerror}; give a readable UTF-8 file or '-' for stdin") from None
    except UnicodeDecodeError:
        raise UserError(f"--text-file {path} is not UTF-8 text; save it as UTF-8") from None


def _import_lines(path: str) -> list[Any]:
    from flagstream.errors import UserError
    from flagstream.streaming.banks.entries import BadEntry, parse_entry

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"{path}: {exc.strerror}; give an exported bank file (JSON lines)") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; give an exported bank file (JSON lines)") from None
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(parse_entry(line))
        except BadEntry as exc:
            raise UserError(f"{path} line {n}: {exc}; nothing imported") from None
    return out


def run(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from flagstream.errors import UserError
    from flagstream.options import settings_from_args
    from flagstream.streaming.banks.entries import BankEntry
    from flagstream.streaming.banks.sync import sync
    from flagstream.streaming.banks.topic import ensure_bank_topic, read_bank, remove_entries, write_entries
    from flagstream.streaming.kafka.clients import BrokerUnavailable, make_producer, retry_until
    from flagstream.streaming.logs import setup_logging

    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    entries: list[Any] = []  # read and checked before any broker connection: a bad file fails fast
    if args.action == "add":
        text = _read_text(args.text_file)
        if not text.strip():
            raise UserError("--text-file holds no text; nothing to bank")
        ref = {"decision_id": args.reference or "manual", "verdict": "confirm" if args.bank == "positive" else "reject",
               "decided_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")}
        entries = [BankEntry.for_text(text, args.bank, [x.strip() for x in args.label if x.strip()], ref,
                                      datetime.now(timezone.utc), settings.bank_ttl_days)]
    elif args.action == "import":
        entries = _import_lines(args.file)
    try:
        ensure_bank_topic(settings)
        if args.action == "sync":
            c = sync(settings, accept_unsigned=args.accept_unsigned)
            print(f"bank sync: {c['decisions']} decisions, {c['entries']} entries called for, {c['written']} written, "
                  f"{c['without_text']} decided posts without a review record text")
            return 0
        if args.action in ("list", "export"):
            bank = read_bank(settings, settings.startup_timeout_s)
            bank.purge()
            try:
                out = sys.stdout if args.action == "list" or args.output == "-" else open(args.output, "w",
                                                                                           encoding="utf-8")
            except OSError as exc:
                raise UserError(f"--output {args.output}: {exc.strerror}; give a writable file path") from None
            try:
                for e in bank.entries():
                    out.write((e.to_json().decode() if args.action == "export" or args.as_json else _describe(e)) + "\n")
            finally:
                if out is not sys.stdout:
                    out.close()
            if args.action == "list" and not args.as_json:
                print(f"{len(bank)} entries on {settings.bank_topic}", file=sys.stderr)
            return 0
        producer = retry_until("producer", lambda t: make_producer(settings, t), settings)
        try:
            if args.action == "remove":
                n = remove_entries(producer, settings.bank_topic, args.entry_ids)
                print(f"removed {n} entries from {settings.bank_topic}")
            else:
                n = write_entries(producer, settings.bank_topic, entries)
                print(json.dumps({"written": n, "entry_ids": [e.entry_id for e in entries][:20]}))
        finally:
            producer.close()
    except BrokerUnavailable as exc:
        raise UserError(str(exc)) from None
    return 0
