"""``flagstream demo``: the whole product in one command, on the embedded broker, then a clean exit.

Starts the embedded broker, creates the topics, runs the pipeline in a background thread, publishes
``examples/sample_posts.jsonl``, waits until every published record has a verdict (scores topic) or a
dead-letter record, prints the flagged posts from the review topic and a summary. In a terminal it then
serves the review console on the same (in-memory) broker and ends with its address; Ctrl-C stops
everything. Not in a terminal (scripts, CI) it prints how to get the console and exits, so ``make demo``
never hangs a pipeline; ``--console`` / ``--no-console`` force either.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

from flagstream.config import PROJECT_ROOT

if TYPE_CHECKING:
    from flagstream.config import Settings
    from flagstream.contract.dead_letters import DeadLetter

SAMPLE = PROJECT_ROOT / "examples" / "sample_posts.jsonl"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="embedded broker + pipeline + sample posts: show what gets flagged, then exit")
    p.add_argument("--file", default=str(SAMPLE), help=f"posts to publish (default {SAMPLE.relative_to(PROJECT_ROOT)})")
    p.add_argument("--console", action=argparse.BooleanOptionalAction, default=None,
                   help="after the summary, serve the review console until Ctrl-C (default: only when run in a "
                        "terminal, so scripts and CI never hang); --no-console always exits")
    p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="give up if the posts are not all accounted for within SECONDS (default 120)")
    from flagstream.options import add_config_flags

    add_config_flags(p, "model", "thresholds", "batch_size", "batch_wait_ms", "topic_partitions", "max_text_chars",
                     "console_port", "log_level", "log_format")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from flagstream.classifier.inference.scoring import load_scorer
    from flagstream.errors import UserError
    from flagstream.options import settings_from_args
    from flagstream.streaming.kafka.broker import EmbeddedBroker
    from flagstream.streaming.kafka.clients import make_admin, make_consumer, make_producer
    from flagstream.streaming.logs import setup_logging
    from flagstream.streaming.loop.pipeline import Pipeline
    from flagstream.streaming.kafka.produce import publish, read_records
    from flagstream.streaming.ops.review import decode, iter_topic, render_review
    from flagstream.streaming.kafka.topics import ensure_topics

    t_start = time.monotonic()
    records = list(read_records(args.file))
    if not records:
        raise UserError(f"{args.file} holds no posts")
    # Demo defaults: a short consumer-group session (quick join on the embedded broker), quiet logs.
    base = settings_from_args(args, bootstrap_servers="127.0.0.1:1", session_timeout_ms=6000,
                              heartbeat_interval_ms=1000, group_id="flagstream-demo",
                              scores_enabled=True, metrics_port=0, bank_enabled=True)
    if args.log_level is None:
        base.log_level = "WARNING"
    # kafka-python logs the broker's own startup probes as errors; the demo's output is the story.
    setup_logging(base.log_level, base.log_format, kafka_level="CRITICAL" if base.log_level != "DEBUG" else None)
    scorer = load_scorer(base.model, base.thresholds, threads=base.scoring_threads or None, precision=base.precision,
                         manifest_sha256=base.model_manifest_sha256)  # fail on a missing model before starting anything
    print(f"flagstream demo: model {scorer.info.ref} ({scorer.info.kind}), thresholds "
          + ", ".join(f"{k}={v:.2f}" for k, v in scorer.info.thresholds.items()))

    broker = EmbeddedBroker()
    broker.start()
    pipeline: Pipeline | None = None
    thread: threading.Thread | None = None
    errors: list[BaseException] = []
    try:
        settings = base.model_copy(update={"bootstrap_servers": broker.bootstrap})
        print(f"embedded broker at {broker.bootstrap}; topics {settings.posts_topic} -> {settings.review_topic}, "
              f"{settings.scores_topic}, {settings.dlq_topic}")
        admin = make_admin(settings, 10)
        try:
            ensure_topics(settings, admin)
        finally:
            admin.close()
        seeded = _seed_bank(settings)  # issue 33: one known-content signature, so the demo shows a bank match
        pipeline = Pipeline(settings, scorer)

        def target() -> None:
            try:
                pipeline.run()
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        thread = threading.Thread(target=target, name="flagstream-pipeline", daemon=True)
        thread.start()
        producer = make_producer(settings, 10, transactional=False)
        try:
            publish(producer, settings.posts_topic, records)
        finally:
            producer.close(timeout=10)
        print(f"published {len(records)} records from {args.file}; waiting for every verdict ...")

        # Every published record must show up once in scores or the dead-letter topic.
        expected = len(records)
        deadline = time.monotonic() + args.timeout
        while True:
            if errors:
                raise errors[0]
            accounted, verdicts, dead = _account(settings)
            if accounted >= expected:
                break
            if time.monotonic() > deadline:
                raise UserError(f"only {accounted} of {expected} posts accounted for after {args.timeout:g}s")
            time.sleep(0.5)

        consumer = make_consumer(settings, 10, group_id=None)
        flagged = []
        try:
            for rec in iter_topic(consumer, settings.review_topic):
                msg = decode(rec.value)
                if msg is not None:
                    flagged.append(msg)
        finally:
            consumer.close(autocommit=False)
        audit = [m for m in flagged if m.get("audit") is True]  # issue 18: unflagged posts sampled for review
        known = [m for m in flagged if m.get("bank_match") and not m.get("labels")]  # issue 33: below threshold
        flagged = [m for m in flagged if m.get("audit") is not True and m not in known]
        print(f"\n=== flagged for review ({len(flagged)}) ===\n")
        for msg in sorted(flagged, key=lambda m: str(m.get("id"))):
            print(render_review(msg) + _bank_line(msg) + "\n")
        if known:
            print(f"=== known content: under threshold, sent by a bank match ({len(known)}) ===\n")
            for msg in sorted(known, key=lambda m: str(m.get("id"))):
                print(render_review(msg) + _bank_line(msg) + "\n")
        labels = Counter(lab for m in flagged for lab in m.get("labels", []))
        reasons = Counter(d.error for d in dead)
        print("=== summary ===")
        print(f"posts published:        {expected}")
        print(f"scored (verdicts):      {len(verdicts)}")
        print(f"flagged for review:     {len(flagged)}  ("
              + (", ".join(f"{k} {v}" for k, v in sorted(labels.items())) or "none") + ")")
        matched = sum(1 for m in [*flagged, *known] if m.get("bank_match"))
        print(f"bank matches:           {matched}  ({len(known)} under threshold; bank seeded with {seeded} "
              f"entr{'y' if seeded == 1 else 'ies'} from {BANK_SEED.name})")
        if audit:
            print(f"audit sample:           {len(audit)}  (unflagged posts sent to review with a known weight)")
        print(f"dead-lettered:          {len(dead)}  ("
              + (", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none") + ")")
        for d in sorted(dead, key=lambda d: d.source.offset):
            print(f"  - {d.source.topic}[{d.source.partition}]@{d.source.offset}: {d.error}: {d.reason}")
        print(f"done in {time.monotonic() - t_start:.1f}s")
        console = args.console if args.console is not None else (sys.stdin.isatty() and sys.stdout.isatty())
        if console:
            _serve_console(settings)
        else:
            print(f"review console: not started (not a terminal); `flagstream demo --console` keeps it open at "
                  f"http://127.0.0.1:{settings.console_port}/ until Ctrl-C")
    except KafkaError as exc:
        raise UserError(f"demo failed talking to the embedded broker: {type(exc).__name__}: {exc}") from None
    finally:
        if pipeline is not None:
            pipeline.request_stop("demo finished")
        if thread is not None:
            thread.join(30)
        broker.stop()
    if errors:
        raise errors[0]
    return 0


# An exported bank file (docs/banks.md): the signature of one reviewer-confirmed repost of a sample post.
BANK_SEED = PROJECT_ROOT / "examples" / "bank_seed.jsonl"


def _bank_line(msg: dict) -> str:
    """The review card's bank-match line (empty when the post matched no bank)."""
    bm = msg.get("bank_match")
    if not isinstance(bm, dict):
        return ""
    return (f"\n  bank match: {bm.get('bank')} entry {bm.get('entry_id')} ({bm.get('match')}, similarity "
            f"{float(bm.get('similarity') or 0):.2f}), banked by decision {(bm.get('decision') or {}).get('decision_id')}")


def _seed_bank(settings: "Settings") -> int:
    """Write the demo's bank entries (signatures only) to the bank topic; 0 when the seed file is absent."""
    from flagstream.streaming.banks.entries import parse_entry
    from flagstream.streaming.banks.topic import ensure_bank_topic, write_entries
    from flagstream.streaming.kafka.clients import make_producer

    if not BANK_SEED.exists():
        return 0
    entries = [parse_entry(line) for line in BANK_SEED.read_text(encoding="utf-8").splitlines() if line.strip()]
    ensure_bank_topic(settings)
    producer = make_producer(settings, 10, transactional=False)
    try:
        return write_entries(producer, settings.bank_topic, entries)
    finally:
        producer.close(timeout=10)


def _serve_console(settings: "Settings") -> None:
    """The review console on the demo's broker (the configured port, or a free one if it is taken)."""
    import socket

    from flagstream.streaming.ops.console.serve import serve_console
    from flagstream.streaming.kafka.broker import free_port

    port = settings.console_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((settings.console_host, port))
        except OSError:
            port = free_port(settings.console_host)
    settings = settings.model_copy(update={"console_port": port, "console_host": "127.0.0.1"})
    print(f"\nreview the flagged posts in a browser; decisions go to {settings.decisions_topic} "
          "(the broker keeps them in memory until the demo stops)")
    serve_console(settings, "demo-reviewer", None, note="Ctrl-C stops the demo")


def _account(settings: "Settings") -> tuple[int, list[dict], list["DeadLetter"]]:
    """(records accounted for, verdicts, dead letters), counting each source offset once."""
    from flagstream.streaming.kafka.clients import make_consumer
    from flagstream.streaming.ops.review import decode, iter_topic
    from flagstream.contract.dead_letters import read_dead_letter

    seen: set[tuple[int, int]] = set()
    verdicts: dict[tuple[int, int], dict] = {}
    dead: dict[tuple[int, int], DeadLetter] = {}
    consumer = make_consumer(settings, 10, group_id=None)
    try:
        for rec in iter_topic(consumer, settings.scores_topic):
            msg = decode(rec.value)
            if msg and isinstance(msg.get("source"), dict):
                key = (msg["source"].get("partition"), msg["source"].get("offset"))
                verdicts[key] = msg
                seen.add(key)
        for rec in iter_topic(consumer, settings.dlq_topic):
            d = read_dead_letter(rec.key, rec.value, rec.headers)
            key = (d.source.partition, d.source.offset)
            dead[key] = d
            seen.add(key)
    finally:
        consumer.close(autocommit=False)
    return len(seen), list(verdicts.values()), list(dead.values())

