"""``flagstream calibrate``: re-fit a trained model's temperatures and thresholds, without training.

Thresholds are part of a model (the review messages name the version that applied them), so this
writes a new model directory with its own version instead of editing one in place: same weights,
new ``manifest.json``. Used when the precision target changes, e.g. when a label's validation
recall at the default target is too low to be of use to reviewers.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from flagstream.errors import UserError
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
    from classifier.calibration import calibrate
    from classifier.data import load_corpus
    from classifier.evaluate import trusted
    from classifier.manifest import read_manifest, write_manifest
    from classifier.transformer import load_model
    from classifier.fit import parse_targets

    settings = settings_from_args(args)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    targets = parse_targets(args.target_precision)
    src = Path(settings.model)
    manifest = read_manifest(src)
    if manifest.kind != "transformer":
        raise UserError(f"{src} is a {manifest.kind} model; calibrate re-fits transformer models")
    out = Path(args.output)
    if out.resolve() == src.resolve():
        raise UserError("--output must be a new directory, not the model being calibrated")
    try:
        ds = load_corpus(settings.data_dir)  # the split the model was trained and judged on
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    val = trusted(ds, "val")
    model, tokenizer = load_model(manifest)
    temps, thresholds, val_metrics = calibrate(model, tokenizer, val, int(manifest.extra.get("max_length", 128)), targets)
    out.mkdir(parents=True, exist_ok=True)
    for name in manifest.files:
        if name != "MODEL_CARD.md":
            shutil.copy2(src / name, out / name)
    extra = dict(manifest.extra)
    extra.update(temperatures=temps, target_precision=targets, validation=val_metrics,
                 calibrated_from=f"{manifest.name}@{manifest.version}")
    manifest.version, manifest.thresholds, manifest.extra = args.version, thresholds, extra
    manifest.files, manifest.created_at, manifest.root = {}, "", None
    write_manifest(out, manifest)
    for lab, m in val_metrics.items():
        print(f"{lab:11s} target {m['target_precision']:.2f} threshold {m['threshold']:.3f}  val precision "
              f"{m['precision']:.3f}  recall {m['recall']:.3f}  T={m['temperature']:.2f}")
    print(f"model written to {out} ({manifest.name}@{args.version})")
    return 0
