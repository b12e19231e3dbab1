"""``flagstream calibrate``: re-fit a trained model's temperatures and thresholds, without training.

Thresholds are part of a model (the review messages name the version that applied them), so this
writes a new model directory with its own version instead of editing one in place: same weights,
new ``manifest.json``. Used when the precision target changes, e.g. when a label's validation
recall at the default target is too low to be of use to reviewers.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from flagstream.options import add_config_flags, require_train_extra, settings_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="re-pick a model's temperatures and thresholds on validation data (no training)")
    add_config_flags(p, "model", "data_dir", "log_level")
    p.add_argument("--output", type=Path, required=True, help="new model directory (weights copied, manifest rewritten)")
    p.add_argument("--version", required=True, help="version of the new model (thresholds are part of a model)")
    p.add_argument("--target-precision", default="0.90",
                   help="one number, or per label (propaganda=0.8,sectarian=0.9)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_train_extra("calibrate")
    from classifier.assess import load
    from classifier.fit import parse_targets, recalibrate
    from classifier.manifest import read_manifest

    settings = settings_from_args(args)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parse_targets(args.target_precision)  # a bad value fails before the corpus loads
    name = read_manifest(Path(settings.model), verify=False).name
    val_metrics = recalibrate(settings.model, args.output, args.version, args.target_precision,
                              corpus=lambda: load(settings.data_dir))  # the split the model was judged on
    for lab, m in val_metrics.items():
        print(f"{lab:11s} target {m['target_precision']:.2f} threshold {m['threshold']:.3f}  val precision "
              f"{m['precision']:.3f}  recall {m['recall']:.3f}  T={m['temperature']:.2f}")
    print(f"model written to {args.output} ({name}@{args.version})")
    return 0
