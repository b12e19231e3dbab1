"""``flagstream calibrate``: re-fit a trained model's temperatures and thresholds, without training.

Thresholds are part of a model (the review messages name the version that applied them), so this
writes a new model directory with its own version instead of editing one in place: same weights,
new ``manifest.json``. Used when the precision target changes, e.g. when a label's validation
recall at the default target is too low to be of use to reviewers.

``--from-decisions`` re-picks thresholds for one feed from reviewers' decisions instead of validation
data (issue 18): :mod:`flagstream.streaming.ops.feedback` reads the review and decisions topics into rows,
:mod:`flagstream.classifier.feedback.thresholds` estimates precision/recall per label and feed and proposes thresholds (or
refuses, saying how many more decisions it needs), :mod:`flagstream.classifier.feedback.recalibrate` writes the new
version and the report. Temperatures and weights are untouched. ``--watch SECONDS`` repeats that
proposal periodically and writes each moved proposal as a new candidate version (:func:`watch`); it
never swaps the served model.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from flagstream.classifier.training.calibration import THRESHOLD_POLICIES
from flagstream.errors import UserError
from flagstream.options import KAFKA_SECURITY_FIELDS, add_config_flags, require_train_extra, settings_from_args
from flagstream.streaming.logs import setup_logging


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="re-pick a model's thresholds on validation data or from reviewers' decisions")
    add_config_flags(p, "model", "data_dir", "log_level", "bootstrap_servers", "client_id", "review_topic",
                     "decisions_topic", "decisions_hmac_key_file", "startup_timeout_s", *KAFKA_SECURITY_FIELDS)
    p.add_argument("--output", type=Path, required=True, help="new model directory (weights copied, manifest rewritten)")
    p.add_argument("--version", default=None, help="version of the new model (thresholds are part of a model); "
                   "with --from-decisions the default bumps the last number of the current version")
    p.add_argument("--target-precision", default=None,
                   help="one number, or per label (propaganda=0.8,sectarian=0.9); default 0.90, or with "
                        "--from-decisions the model's own target")
    p.add_argument("--threshold-policy", choices=THRESHOLD_POLICIES, default=None,
                   help="on validation data: pooled (every row once), source_balanced (every source the same "
                        "weight), both for --target-precision, or benign_fpr (per label, the threshold flagging "
                        "--target-fpr of the benign reference pool) or benign_fpr_each_lang (that rate held in every "
                        "language with 200+ benign rows); default: the model's own")
    p.add_argument("--target-fpr", default=None,
                   help="with --threshold-policy benign_fpr: the false-positive rate on the validation rows of the "
                        "benign reference pool (one number, or propaganda=0.01,sectarian=0.01; default 0.01)")
    g = p.add_argument_group("from reviewers' decisions (review + decisions topics)")
    g.add_argument("--from-decisions", action="store_true",
                   help="estimate per-feed precision/recall from decisions (audit-weighted) instead of validation data")
    g.add_argument("--feed", default=None, help="source topic whose thresholds to set (required when decisions span several)")
    g.add_argument("--report", type=Path, default=None, help="report directory (default: OUTPUT-report)")
    g.add_argument("--accept-unsigned", action="store_true",
                   help="also count unsigned decisions (legacy data written before decisions were signed)")
    g.add_argument("--min-decisions", type=int, default=50, help="decisions per label and feed below which nothing moves")
    g.add_argument("--watch", type=float, default=None, metavar="SECONDS",
                   help="keep running: every SECONDS re-read the decisions and write a new candidate version under "
                        "OUTPUT/<name>-<version> when a threshold moves (never changes the served model)")
    g.add_argument("--min-change", type=float, default=0.01, metavar="DELTA",
                   help="with --watch: how far a threshold must move from the latest candidate to write a new one "
                        "(default 0.01)")
    g.add_argument("--max-rounds", type=int, default=None, metavar="N", help="with --watch: stop after N rounds")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.from_decisions:
        return run_from_decisions(args)
    if not args.version:
        raise UserError("--version is required (thresholds are part of a model: name the new one)")
    args.target_precision = args.target_precision or "0.90"
    return run_validation(args)


def run_from_decisions(args: argparse.Namespace) -> int:
    """Thresholds for one feed from the decisions topic; writes a new version only if one moved."""
    from flagstream.classifier.feedback.thresholds import Evidence
    from flagstream.classifier.training.fit import parse_targets
    from flagstream.classifier.manifest import ModelDirError, read_manifest
    from flagstream.classifier.feedback.recalibrate import bump_version, write_recalibrated, write_report

    settings = settings_from_args(args)
    setup_logging(settings.log_level, "auto")
    if args.threshold_policy:
        raise UserError("--threshold-policy applies to validation data; with --from-decisions the feed's own "
                        "decisions pick the thresholds")
    if args.target_fpr is not None:
        raise UserError("--target-fpr applies to validation data (--threshold-policy benign_fpr), not --from-decisions")
    if args.min_decisions < 1:
        raise UserError("--min-decisions must be at least 1")
    if args.watch is not None and args.watch <= 0:
        raise UserError("--watch must be a positive number of seconds")
    if args.max_rounds is not None and (args.watch is None or args.max_rounds < 1):
        raise UserError("--max-rounds needs --watch and a positive number")
    if args.watch is not None and args.version:
        raise UserError("--version cannot be given with --watch: each candidate gets the next free version")
    if not 0 < args.min_change < 1:
        raise UserError("--min-change must lie between 0 and 1")
    from flagstream.streaming.signing import reader_key

    reader_key(settings, args.accept_unsigned)  # no key: one line now, not one per --watch round
    manifest = read_manifest(Path(settings.model))
    own = manifest.extra.get("target_precision")
    targets = parse_targets(args.target_precision if args.target_precision else (own if own else "0.90"))
    evidence = Evidence(min_decisions=args.min_decisions)
    if args.watch is not None:
        return watch(args, settings, manifest, targets, evidence)
    out = Path(args.output)
    version = args.version or bump_version(manifest.version)
    proposals, provenance, feed = _propose(settings, manifest, targets, args.feed, evidence, args.accept_unsigned)
    moved = {p.label: p.threshold for p in proposals if p.feed == feed and p.moved}
    new_version = None
    if moved:
        try:
            write_recalibrated(manifest, out, version, moved, provenance)
        except (ValueError, ModelDirError) as exc:
            raise UserError(str(exc)) from None
        new_version = version
    report_dir = args.report or out.with_name(out.name + "-report")
    written = write_report(report_dir, proposals, feed, manifest, new_version, provenance)
    _print_proposals(proposals, feed)
    if new_version:
        print(f"model written to {out} ({manifest.name}@{new_version}); report in {written['markdown'].parent}")
    else:
        print(f"no threshold moved for feed {feed}; no model written; report in {written['markdown'].parent}")
    return 0


def _propose(settings: Any, manifest: Any, targets: dict[str, float], feed: str | None,
             evidence: Any, accept_unsigned: bool = False) -> tuple[list[Any], dict[str, Any], str]:
    """Read the review and decisions topics, estimate, propose: (proposals, provenance, feed)."""
    from flagstream.classifier.feedback.thresholds import propose_all
    from flagstream.streaming.ops.feedback import read_rows

    joined = read_rows(settings, {"name": manifest.name, "version": manifest.version}, manifest.labels,
                       accept_unsigned=accept_unsigned)
    feeds = sorted({r.feed for r in joined.rows})
    if not joined.rows:
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(joined.skipped.items())) or "none"
        raise UserError(f"no usable decisions for {manifest.name}@{manifest.version} on {settings.decisions_topic} "
                        f"({joined.decisions_used} decisions read; skipped: {skipped})")
    if feed is None:
        if len(feeds) > 1:
            raise UserError(f"decisions come from feeds {', '.join(feeds)}; thresholds are per feed: pass --feed TOPIC")
        feed = feeds[0]
    elif feed not in feeds:
        raise UserError(f"no decisions from feed {feed!r}; feeds with decisions: {', '.join(feeds)}")
    proposals = propose_all(joined.rows, targets, manifest.thresholds, evidence)
    provenance = joined.provenance(settings.decisions_topic, settings.review_topic)
    provenance["feed"] = feed
    provenance["per_label"] = {p.label: p.as_dict() for p in proposals if p.feed == feed}
    return proposals, provenance, feed


def _print_proposals(proposals: list[Any], feed: str) -> None:
    for p in proposals:
        mark = "*" if p.feed == feed else " "
        if p.moved:
            print(f"{mark} {p.label:11s} {p.feed}: threshold {p.current:.3f} -> {p.threshold:.3f}  est. precision "
                  f"{p.precision:.3f} [{p.precision_ci[0]:.2f}, {p.precision_ci[1]:.2f}]  recall {p.recall:.3f} "
                  f"[{p.recall_ci[0]:.2f}, {p.recall_ci[1]:.2f}]  ({p.decisions} decisions, {p.audit_decisions} audit)")
        else:
            more = f"; needs ~{p.more_decisions_needed} more decisions" if p.more_decisions_needed else ""
            print(f"{mark} {p.label:11s} {p.feed}: kept {p.current:.3f}: {p.refused}{more}")


def watch(args: argparse.Namespace, settings: Any, manifest: Any, targets: dict[str, float], evidence: Any) -> int:
    """``--watch SECONDS``: re-run the proposal every SECONDS; write a candidate version when it moves.

    ``--output`` is then a directory of candidates, ``OUTPUT/<name>-<version>`` (+ ``-report``). A round
    writes one when some label's proposed threshold differs by at least ``--min-change`` from the latest
    candidate already there for this served model and feed (from the served thresholds when there is
    none), so a restarted watcher does not write the same candidate twice. It never touches the served
    model: promoting a candidate (pointing ``model`` at it, after ``--shadow-model`` if wanted) is a person's
    decision. A round that finds no decisions, or no broker, says so in one line and waits for the next.
    """
    from flagstream.streaming.signals import on_stop_signals
    import threading

    from kafka.errors import KafkaError

    from flagstream.classifier.manifest import ModelDirError
    from flagstream.classifier.feedback.recalibrate import candidates, free_version, moved, write_recalibrated, write_report
    from flagstream.contract.records import now_iso

    parent = Path(args.output)
    if parent.exists() and not parent.is_dir():
        raise UserError(f"--output {parent} is a file; with --watch it is the directory that collects candidates")
    stop = threading.Event()

    on_stop_signals(lambda _name: stop.set())
    rounds = 0
    while not stop.is_set():
        rounds += 1
        stamp = now_iso()
        try:
            proposals, provenance, feed = _propose(settings, manifest, targets, args.feed, evidence, args.accept_unsigned)
        except (UserError, KafkaError) as exc:  # no decisions yet, no broker: say so, try again next round
            print(f"round {rounds} {stamp}: nothing proposed: {exc}", flush=True)
        else:
            proposed = {p.label: float(p.threshold) for p in proposals if p.feed == feed and p.moved}
            latest = (candidates(parent, manifest, feed) or [None])[-1]
            ref = dict(latest.thresholds) if latest is not None else dict(manifest.thresholds)
            ref_name = f"{latest.name}@{latest.version}" if latest is not None else f"{manifest.name}@{manifest.version} (served)"
            changed = moved(proposed, ref, args.min_change)
            if not changed:
                what = ", ".join(f"{k} {v:.3f}" for k, v in proposed.items()) or "no threshold moved"
                print(f"round {rounds} {stamp}: feed {feed}: unchanged against {ref_name} ({what}); nothing written",
                      flush=True)
            else:
                version = free_version(parent, manifest.name, latest.version if latest is not None else manifest.version)
                out = parent / f"{manifest.name}-{version}"
                provenance["written_at"] = stamp
                provenance["watch"] = {"interval_s": args.watch, "round": rounds, "min_change": args.min_change,
                                       "compared_with": ref_name}
                try:
                    write_recalibrated(manifest, out, version, proposed, provenance)
                except (ValueError, ModelDirError) as exc:
                    raise UserError(str(exc)) from None
                write_report(out.with_name(out.name + "-report"), proposals, feed, manifest, version, provenance)
                moves = ", ".join(f"{k} {ref.get(k, float('nan')):.3f} -> {v:.3f}" for k, v in changed.items())
                print(f"round {rounds} {stamp}: feed {feed}: candidate {manifest.name}@{version} written to {out} "
                      f"({moves}); promote it by pointing model at it, after --shadow-model if wanted", flush=True)
        if args.max_rounds is not None and rounds >= args.max_rounds:
            break
        stop.wait(args.watch)
    return 0


def run_validation(args: argparse.Namespace) -> int:
    require_train_extra("calibrate")
    from flagstream.classifier.evaluation.assess import load
    from flagstream.classifier.training.fit import parse_targets, recalibrate
    from flagstream.classifier.manifest import read_manifest

    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)  # one setup for every command: JSON, redaction
    parse_targets(args.target_precision)  # a bad value fails before the corpus loads
    from flagstream.classifier.training.calibration import parse_fpr_targets

    src = read_manifest(Path(settings.model), verify=False)
    name = src.name
    policy = args.threshold_policy or src.extra.get("threshold_policy", "pooled")
    if args.target_fpr is not None and not policy.startswith("benign_fpr"):
        raise UserError("--target-fpr applies to --threshold-policy benign_fpr; add that flag or drop --target-fpr")
    target_fpr = parse_fpr_targets(args.target_fpr if args.target_fpr is not None
                                   else src.extra.get("target_fpr")) if policy.startswith("benign_fpr") else None
    val_metrics = recalibrate(settings.model, args.output, args.version, args.target_precision,
                              corpus=lambda: load(settings.data_dir),  # the split the model was judged on
                              threshold_policy=policy, target_fpr=target_fpr)
    for lab, m in val_metrics.items():
        target = (f"target FPR {m['target_fpr']:.4f} (benign FPR {m['benign_fpr']:.4f} of {m['benign_rows']} rows)"
                  if policy.startswith("benign_fpr") else f"target {m['target_precision']:.2f} ({policy})")
        print(f"{lab:11s} {target} threshold {m['threshold']:.3f}  val precision "
              f"{m['precision']:.3f}  recall {m['recall']:.3f}  T={m['temperature']:.2f}")
    print(f"model written to {args.output} ({name}@{args.version})")
    return 0
