"""``flagstream evaluate``: judge a model directory beside the TF-IDF baseline; print and write the report.

Per label, per source and per language: precision, recall, F1, PR-AUC, false-positive rate on hard
negatives and on Arabic negatives, ECE; PR-curve and calibration PNGs; leave-one-source-out for the
transformer (a shorter schedule, ``--loso-steps``) and the baseline. Writes ``report.md`` and
``report.json`` under ``--output``. ``--functional`` runs only the functional test suite (templated cases,
no data needed). The work is :mod:`flagstream.classifier.evaluation.assess`; this module maps flags and prints.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from flagstream.classifier.bases.registry import BASES
from flagstream.config import PROJECT_ROOT
from flagstream.options import add_config_flags, require_train_extra, settings_from_args
from flagstream.streaming.logs import setup_logging


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model against the baseline: per source, per language, LOSO")
    add_config_flags(p, "model", "data_dir", "log_level")
    p.add_argument("--output", type=Path, default=None, help="report directory (default reports/<model>-<version>)")
    p.add_argument("--target-precision", default=None,
                   help="validation precision for the baseline's thresholds (default: the model's own targets; LOSO: 0.90)")
    p.add_argument("--loso", action=argparse.BooleanOptionalAction, default=True, help="leave-one-source-out (default on)")
    p.add_argument("--loso-steps", type=int, default=400, help="transformer steps per LOSO fold (default 400)")
    p.add_argument("--loso-sources", default=None, help="comma-separated held-out sources (default: every source with positives)")
    p.add_argument("--loso-transformer", action=argparse.BooleanOptionalAction, default=True,
                   help="also fine-tune the transformer per LOSO fold (slow); --no-loso-transformer = baseline only")
    p.add_argument("--loso-train-rows", type=int, default=20000, help="training rows per LOSO fold (default 20000)")
    p.add_argument("--loso-base", choices=BASES, default=None,
                   help="encoder the LOSO folds fine-tune (default: the evaluated model's own base)")
    p.add_argument("--loso-only", action="store_true", help="run only leave-one-source-out and write loso.json")
    p.add_argument("--loso-from", type=Path, default=None, help="reuse a loso.json from an earlier --loso-only run")
    p.add_argument("--merge-loso", type=Path, default=None,
                   help="only add this loso.json to the report.json already in --output and rewrite report/card (no scoring)")
    p.add_argument("--write-card", action="store_true", help="(re)write MODEL_CARD.md in the model directory from this report")
    p.add_argument("--functional", action="store_true",
                   help="run only the functional test suite (per-functionality pass rates in en/ar/fr/de; no data needed)")
    p.add_argument("--limit", type=int, default=0, help="evaluate on at most N test rows (smoke runs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_train_extra("evaluate")
    from flagstream.classifier.evaluation import assess
    from flagstream.classifier.data.corpus import report_markdown
    from flagstream.classifier.training.fit import parse_targets
    from flagstream.classifier.labels import LABELS
    from flagstream.classifier.bases.e5.model import is_me5
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.evaluation.measures import fmt

    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)  # one setup for every command: JSON, redaction
    if args.target_precision is not None:
        parse_targets(args.target_precision)  # a bad value fails in one line before any scoring
    model_dir = Path(settings.model)
    manifest = read_manifest(model_dir)
    out_dir = args.output or PROJECT_ROOT / "reports" / f"{manifest.name}-{manifest.version}"
    if args.merge_loso:
        md = assess.merge_loso(model_dir, out_dir, args.merge_loso, write_card=args.write_card)
        print(f"report: {md}")
        return 0
    if args.functional:
        from flagstream.classifier.evaluation.functional.suite import markdown_summary

        functional, md, card = assess.functional(model_dir, out_dir, write_card=args.write_card)
        print(markdown_summary(functional))
        if card:
            print(card)
        print(f"functional suite: {md} (+ functional.json)")
        return 0
    plan = assess.LosoPlan(
        sources=args.loso_sources.split(",") if args.loso_sources else None, steps=args.loso_steps,
        transformer=args.loso_transformer, max_train=args.loso_train_rows, target=assess.loso_target(args.target_precision),
        base=args.loso_base or ("me5" if is_me5(manifest) else "minilm"))
    t0 = time.monotonic()
    if args.loso_only:
        path = assess.loso_only(assess.load(settings.data_dir), out_dir, plan)
        print(f"wrote {path} in {time.monotonic() - t0:.0f}s")
        return 0
    done = assess.assess(model_dir, assess.load(settings.data_dir), out_dir, target_precision=args.target_precision,
                         plan=plan if args.loso else None, loso_from=args.loso_from, limit=args.limit,
                         write_card=args.write_card, say=lambda line: print(line, flush=True))
    result, ref = done.result, done.result["model"]
    print(report_markdown(done.data_report))
    print()
    for lab in LABELS:
        for name in (ref, "baseline"):
            e = result["heldout"][name]["labels"][lab]
            o = e["overall"]
            print(f"{lab:11s} {name:28s} P {fmt(o['precision'])} R {fmt(o['recall'])} F1 {fmt(o['f1'])} "
                  f"PR-AUC {fmt(o['pr_auc'])} ECE {fmt(e['ece'])} FPR(hard neg) {fmt(e['hard_negative_fpr'], 4)} "
                  f"FPR(ar neg) {fmt(e['arabic_fpr'], 4)}")
    if "loso" in result:
        for lab in LABELS:
            print(f"LOSO {lab:11s} " + "  ".join(
                f"{kind} pooled F1 {fmt(result['loso'][kind][lab].get('pooled_f1'))} "
                f"(best-F1 thr {fmt(result['loso'][kind][lab].get('pooled_f1_f1thr'))}) "
                f"macro PR-AUC {fmt(result['loso'][kind][lab].get('macro_pr_auc'))}"
                for kind in ("transformer", "baseline") if kind in result["loso"]))
    print(f"report: {done.report_md} (+ report.json, {', '.join(result['plots'])}) in {result['seconds']:.0f}s")
    return 0
