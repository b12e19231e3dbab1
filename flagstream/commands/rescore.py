"""``flagstream rescore INPUT --output OUTPUT``: score an archive of posts in batch.

JSONL, CSV or Parquet in (``id``, ``text``; other columns kept), JSONL or Parquet out (by extension),
one row per input row in input order with ``id``, ``row``, ``model``, ``scores`` and ``labels`` (or
``error`` and ``reason``), the post's optional fields and ``extra`` (its other fields, nested). Rows are
judged by the stream's post contract (:mod:`flagstream.contract.posts`). Exit 0 when at least one row was scored,
1 when every row failed, 2 on a usage error (one line, checked before the model loads).
The model is opened through :func:`flagstream.classifier.inference.scoring.load_scorer`, exactly as ``flagstream stream``
opens it, so a post gets the same scores in batch and in streaming. See :mod:`flagstream.classifier.archive.rescore`.

``--engine spark`` runs the same row contract on Apache Spark (:mod:`flagstream.classifier.archive.spark`):
Parquet or JSONL in (a file, a directory of part files or a glob), a directory of Parquet part files out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flagstream.errors import UserError
from flagstream.options import add_config_flags, settings_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rescore", help="score a JSONL/CSV/Parquet archive of posts into JSONL/Parquet")
    p.add_argument("input", type=Path, metavar="INPUT",
                   help="posts file: .jsonl, .csv or .parquet (id, text, ...); --engine spark: also a directory or glob")
    p.add_argument("--output", "-o", type=str, required=True, metavar="OUTPUT",
                   help="scores file: .jsonl or .parquet (format by extension); --engine spark: a directory, local "
                        "or scheme://")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing, non-empty OUTPUT (refused without it, local and scheme:// alike)")
    add_config_flags(p, "model", "model_manifest_sha256", "thresholds", "batch_size", "scoring_threads", "precision",
                     "max_text_chars", "max_message_bytes", "log_level", "log_format")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run into the same OUTPUT (refused unless OUTPUT.run.json matches)")
    p.add_argument("--shard", metavar="K/N", default=None,
                   help="score only rows whose index is K-1 mod N (1 <= K <= N); N shards together = one full run")
    p.add_argument("--engine", choices=("local", "spark"), default="local",
                   help="local: this process (one machine); spark: Apache Spark (a data lake, many machines)")
    p.add_argument("--master", metavar="URL", default=None,
                   help="--engine spark: Spark master (default: spark-submit's, else local[*])")
    p.add_argument("--input-format", choices=("parquet", "jsonl"), default=None,
                   help="--engine spark: input format when the path has no .parquet/.jsonl suffix")
    p.add_argument("--keep-text", action="store_true", help="copy the text column into the output too")
    p.add_argument("--block-rows", type=int, default=4096, help="rows read and scored per block (bounds memory)")
    p.add_argument("--summary-json", action="store_true", help="print the summary as one JSON line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flagstream.classifier.archive.rescore import execute, parse_shard, plan_run
    from flagstream.classifier.archive.files import RescoreError
    from flagstream.classifier.archive.rows import Limits
    from flagstream.classifier.inference.scoring import load_scorer
    from flagstream.streaming.logs import setup_logging

    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    if args.block_rows < 1:
        raise UserError("--block-rows must be >= 1")
    if args.engine == "spark":
        return _run_spark(args, settings)
    if args.master or args.input_format:
        raise UserError("--master and --input-format apply to --engine spark only")
    # Files, columns and the resume record are checked before the (slow) model load.
    if "://" in args.output:
        raise RescoreError(f"--output {args.output}: --engine local writes local files; use --engine spark for "
                           "scheme:// outputs")
    plan = plan_run(args.input, Path(args.output), resume=args.resume, shard=parse_shard(args.shard),
                    overwrite=args.overwrite,
                    keep_text=args.keep_text,
                    limits=Limits(settings.max_text_chars, settings.max_message_bytes))
    scorer = load_scorer(settings.model, settings.thresholds, manifest_sha256=settings.model_manifest_sha256,
                         batch_size=settings.batch_size,
                         threads=settings.scoring_threads or None, precision=settings.precision)
    summary = execute(plan, scorer, block_rows=max(args.block_rows, settings.batch_size))
    if args.summary_json:
        print(json.dumps(summary.as_dict(), allow_nan=False))
    else:
        for line in summary.lines():
            print(line, file=sys.stdout)
    if summary.all_failed:
        top = max(summary.error_classes.items(), key=lambda kv: kv[1])
        print(f"flagstream rescore: error: every one of the {summary.rows} rows failed (most: {top[0]} x{top[1]}); "
              f"see the error and reason columns of {args.output}", file=sys.stderr)
        return 1
    return 0


def _run_spark(args: argparse.Namespace, settings) -> int:
    from flagstream.classifier.archive.rows import Limits

    if args.resume or args.shard:
        raise UserError("--resume and --shard are for --engine local; Spark splits the work and commits whole "
                        "tasks, so a failed Spark run is rerun instead")
    try:
        from flagstream.classifier.archive.spark import rescore_spark
    except ImportError:
        raise UserError("--engine spark needs PySpark: pip install 'flagstream[spark]' (and Java 17)") from None
    run = rescore_spark(
        settings.model, str(args.input), str(args.output), master=args.master, thresholds=settings.thresholds,
        precision=settings.precision, batch_size=settings.batch_size,
        block_rows=max(args.block_rows, settings.batch_size), keep_text=args.keep_text,
        limits=Limits(settings.max_text_chars, settings.max_message_bytes), fmt=args.input_format,
        overwrite=args.overwrite, manifest_sha256=settings.model_manifest_sha256,
    )
    summary = run.summary
    if args.summary_json:
        print(json.dumps({**summary.as_dict(), "engine": "spark", "master": run.master,
                          "partitions": run.partitions, "startup_s": round(run.startup_s, 3)}, allow_nan=False))
    else:
        for line in summary.lines():
            print(line, file=sys.stdout)
    if summary.all_failed:
        print(f"flagstream rescore: error: every one of the {summary.rows} rows failed; see the error and reason "
              f"columns of {args.output}", file=sys.stderr)
        return 1
    return 0
