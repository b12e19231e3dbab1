"""``flagstream train``: fine-tune the transformer on ``data_dir``, calibrate, pick thresholds, save a model dir.

Steps: load every source through the one loader (mapping in ``classifier/sources.py``), fine-tune on the
train split (progress bar, seeded, checkpoints in ``--run-dir``; ``--resume`` continues a killed run),
fit per-label temperatures and thresholds (target precision, default 0.90) on the validation split,
and write a verified model directory (safetensors + manifest). ``flagstream evaluate`` judges it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from flagstream.config import PROJECT_ROOT
from flagstream.errors import UserError
from flagstream.options import add_config_flags, settings_from_args

log = logging.getLogger("flagstream.train")

DEFAULT_OUTPUT = PROJECT_ROOT / "runs" / "flagstream-minilm"
MODEL_NAME = "flagstream-minilm"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune the transformer on the labelled data and write a model directory")
    add_config_flags(p, "data_dir", "log_level")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                   help=f"model directory to write (default {DEFAULT_OUTPUT.relative_to(PROJECT_ROOT)}; "
                        "use models/flagstream-minilm to replace the shipped default)")
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoints and logs (default runs/train-<config hash>)")
    p.add_argument("--resume", action="store_true", help="continue from the run dir's last checkpoint")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps (default 4000 = 2.2 epochs: 21 min on 2 idle cores, 36 min with other work beside it; --time-budget stops it early and still saves)")
    p.add_argument("--train-batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--max-length", type=int, default=None, help="tokens per post (default 128)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--time-budget", type=float, default=40.0, help="stop training after this many minutes (default 40; 0 = none)")
    p.add_argument("--target-precision", default="0.90",
                   help="validation precision the thresholds aim for: one number, or per label (propaganda=0.8,sectarian=0.9)")
    p.add_argument("--version", default="1.0.0", help="model version carried by every review message")
    p.add_argument("--exclude-source", action="append", default=[], help="leave a source out (repeatable)")
    p.set_defaults(func=run)


def train_config_from_args(args: argparse.Namespace):
    from classifier.train import TrainConfig

    cfg = TrainConfig()
    for flag, attr in (("max_steps", "max_steps"), ("train_batch_size", "batch_size"), ("lr", "lr"),
                       ("max_length", "max_length"), ("seed", "seed")):
        v = getattr(args, flag, None)
        if v is not None:
            setattr(cfg, attr, v)
    if getattr(args, "time_budget", None):
        cfg.time_budget_s = float(args.time_budget) * 60
    return cfg


def data_fingerprint(texts: list[str], targets: np.ndarray) -> str:
    h = hashlib.sha256()
    for t, y in zip(texts, targets):
        h.update(t.encode("utf-8"))
        h.update(np.nan_to_num(y, nan=-1).astype(np.int8).tobytes())
    return h.hexdigest()[:12]


def parse_targets(value: str | float | dict[str, float]) -> dict[str, float]:
    """``0.9`` (every label) or ``propaganda=0.8,sectarian=0.9`` -> {label: target precision}."""
    from classifier.labels import LABELS

    if isinstance(value, dict):
        out = {k: float(v) for k, v in value.items()}
    elif isinstance(value, (int, float)) or "=" not in str(value):
        try:
            out = {lab: float(value) for lab in LABELS}
        except ValueError:
            raise UserError(f"--target-precision: expected a number or LABEL=P,..., got {value!r}") from None
    else:
        out = {}
        for part in str(value).split(","):
            lab, _, num = part.partition("=")
            try:
                out[lab.strip()] = float(num)
            except ValueError:
                raise UserError(f"--target-precision: {part!r} is not LABEL=NUMBER") from None
    unknown = set(out) - set(LABELS)
    missing = set(LABELS) - set(out)
    if unknown or missing:
        raise UserError(f"--target-precision: labels are {', '.join(LABELS)}; "
                        f"got {', '.join(sorted(out))} (give every label, e.g. propaganda=0.8,sectarian=0.9)")
    bad = [lab for lab, v in out.items() if not 0.0 < v < 1.0]
    if bad:
        raise UserError(f"--target-precision for {', '.join(bad)} must be between 0 and 1")
    return out


def fit_and_save(ds: Any, cfg: Any, output: Path, run_dir: Path | None, *, resume: bool = False,
                 target_precision: Any = 0.90, version: str = "1.0.0", progress: bool = True,
                 data_summary: dict[str, Any] | None = None, name: str = MODEL_NAME) -> dict[str, Any]:
    """Train on ``ds``'s train split, calibrate on its val split, write ``output``; returns the summary."""
    from classifier.calibration import calibrate
    from classifier.data import targets as targets_of
    from classifier.labels import LABELS
    from classifier.manifest import ModelManifest, write_manifest
    from classifier.train import Trainer
    from classifier.transformer import BASE_NAME, base_fingerprint, config_hash, load_base, save_weights

    train = ds.filter(lambda s: s == "train", input_columns="split")
    # Thresholds and temperatures are fitted on trusted labels only (no rule-labelled ISIS rows).
    val = ds.filter(lambda s, w: s == "val" and not w, input_columns=["split", "weak"])
    if len(train) == 0 or len(val) == 0:
        raise UserError("no training or validation rows; check data_dir")
    y_train = targets_of(train)
    model, tokenizer = load_base(len(LABELS), seed=cfg.seed)
    trainer = Trainer(model, tokenizer, cfg, run_dir)
    fit = trainer.fit(list(train["text"]), y_train, np.asarray(train["weight"], dtype=np.float32), resume=resume, progress=progress)

    temps, thresholds, val_metrics = calibrate(model, tokenizer, val, cfg.max_length, parse_targets(target_precision),
                                               progress)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for old in output.iterdir():
        if old.is_file() and old.name not in ("MODEL_CARD.md",):
            old.unlink()
    save_weights(model, output)
    data_hash = data_fingerprint(list(train["text"]), y_train)
    cfg_hash = config_hash(cfg.as_dict())
    extra = {
        "max_length": cfg.max_length, "temperatures": temps, "target_precision": parse_targets(target_precision),
        "train_config": cfg.as_dict(), "config_hash": cfg_hash, "data_hash": data_hash,
        "base_sha256_16": base_fingerprint(), "training": fit, "validation": val_metrics,
        "data_summary": data_summary or {}, "storage": "bf16 deltas from the packaged base; word embeddings frozen",
    }
    manifest = ModelManifest(name=name, version=version, kind="transformer", labels=list(LABELS),
                             thresholds=thresholds, base=BASE_NAME, extra=extra)
    write_manifest(output, manifest)
    return {"output": str(output), "thresholds": thresholds, "validation": val_metrics, "training": fit,
            "data_hash": data_hash, "config_hash": cfg_hash}


def run(args: argparse.Namespace) -> int:
    from classifier.data import load_corpus, report, report_markdown
    from classifier.sources import SOURCES
    from classifier.transformer import config_hash

    settings = settings_from_args(args)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cfg = train_config_from_args(args)
    parse_targets(args.target_precision)  # a bad value fails before an hour of training
    unknown = set(args.exclude_source) - {s.name for s in SOURCES}
    if unknown:
        raise UserError(f"unknown source(s) {sorted(unknown)}; known: {', '.join(s.name for s in SOURCES)}")
    sources = [s for s in SOURCES if s.name not in set(args.exclude_source)]
    try:
        ds = load_corpus(settings.data_dir, sources)  # the data's split, whatever the training seed
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    rep = report(ds)
    print(report_markdown(rep))
    run_dir = args.run_dir or PROJECT_ROOT / "runs" / f"train-{config_hash([cfg.as_dict(), args.exclude_source])}"
    t0 = time.monotonic()
    summary = fit_and_save(ds, cfg, args.output, run_dir, resume=args.resume, target_precision=args.target_precision,
                           version=args.version, data_summary=rep)
    summary["wall_seconds"] = round(time.monotonic() - t0, 1)
    (Path(run_dir) / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n", encoding="utf-8")
    for lab, m in summary["validation"].items():
        print(f"{lab:11s} threshold {m['threshold']:.3f}  val precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
              f"ECE {m['ece']:.4f} (uncalibrated {m['ece_uncalibrated']:.4f})  T={m['temperature']:.2f}")
    print(f"model written to {summary['output']} in {summary['wall_seconds']:.0f}s "
          f"(steps {summary['training']['steps']}/{summary['training']['total_steps']})")
    return 0
