"""Train, calibrate and write a verified transformer model directory: the library half of ``flagstream train``.

The CLI (:mod:`flagstream.commands.train`) only turns flags into a :class:`~flagstream.classifier.training.train.TrainConfig`
and a dataset; everything that decides what lands in the model directory lives here, so tests, the
LOSO evaluation and ``flagstream calibrate`` call the same code without going through the CLI.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from flagstream.errors import UserError

MODEL_NAME = "flagstream-minilm"


def data_fingerprint(texts: list[str], targets: np.ndarray) -> str:
    """12 hex digits identifying the training texts and labels (recorded in the manifest)."""
    h = hashlib.sha256()
    for t, y in zip(texts, targets):
        h.update(t.encode("utf-8"))
        h.update(np.nan_to_num(y, nan=-1).astype(np.int8).tobytes())
    return h.hexdigest()[:12]


def parse_targets(value: str | float | dict[str, float]) -> dict[str, float]:
    """``0.9`` (every label) or ``propaganda=0.8,sectarian=0.9`` -> {label: target precision}.

    Raises :class:`~flagstream.errors.UserError` (one line naming ``--target-precision``) on a bad value.
    """
    from flagstream.classifier.labels import LABELS
    from flagstream.config import parse_thresholds

    if isinstance(value, dict):
        out = {k: float(v) for k, v in value.items()}
    elif isinstance(value, (int, float)) or "=" not in str(value):
        try:
            out = {lab: float(value) for lab in LABELS}
        except ValueError:
            raise UserError(f"--target-precision: expected a number or LABEL=P,..., got {value!r}") from None
    else:
        out = parse_thresholds(str(value), "--target-precision")  # the one LABEL=NUMBER parser
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
                 data_summary: dict[str, Any] | None = None, name: str = MODEL_NAME, base: str = "minilm",
                 val_rows: int = 0, threshold_policy: str = "pooled", target_fpr: dict[str, float] | None = None,
                 init_from: Path | None = None) -> dict[str, Any]:
    """Train on ``ds``'s train split, calibrate on its val split, write ``output``; returns the summary.

    ``init_from``: an me5 model directory whose adapter and head the run starts from (a warm start: a short run
    continues the shipped model instead of repeating its 1,900 steps); recorded in the manifest.

    Raises:
        UserError: no train/validation rows, or ``init_from`` is not a model this base can continue from.
    """
    from flagstream.classifier.training.calibration import calibrate
    from flagstream.classifier.data.corpus import targets as targets_of
    from flagstream.classifier.labels import LABELS
    from flagstream.classifier.manifest import ModelManifest, write_manifest
    from flagstream.classifier.training.train import Trainer
    from flagstream.classifier.bases import registry as bases
    from flagstream.classifier.inference.transformer import config_hash

    encoder_base = bases.get(base)  # the one registry: its weights format, file digests and manifest fields

    train = ds.filter(lambda s: s == "train", input_columns="split")
    # Thresholds and temperatures are fitted on trusted labels only (no rule-labelled ISIS rows).
    val = ds.filter(lambda s, w: s == "val" and not w, input_columns=["split", "weak"])
    if len(train) == 0 or len(val) == 0:
        raise UserError("no training or validation rows; check data_dir")
    if val_rows and len(val) > val_rows:  # a time-boxed run: a seeded sample, recorded in the manifest
        val = val.shuffle(seed=13).select(range(val_rows))
    targets = parse_targets(target_precision)
    y_train = targets_of(train)
    model, tokenizer = encoder_base.load_base(len(LABELS), seed=cfg.seed)
    init_ref = None
    if init_from is not None:
        init_ref = warm_start(model, base, Path(init_from))
    trainer = Trainer(model, tokenizer, cfg, run_dir)
    fit = trainer.fit(list(train["text"]), y_train, np.asarray(train["weight"], dtype=np.float32), resume=resume,
                      progress=progress)

    temps, thresholds, val_metrics = calibrate(model, tokenizer, val, cfg.max_length, targets, progress,
                                               policy=threshold_policy, target_fpr=target_fpr)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    for old in output.iterdir():
        if old.is_file() and old.name not in ("MODEL_CARD.md",):
            old.unlink()
    encoder_base.save_weights(model, output)
    data_hash = data_fingerprint(list(train["text"]), y_train)
    cfg_hash = config_hash(cfg.as_dict())
    extra = {
        "max_length": cfg.max_length, "temperatures": temps, "target_precision": targets,
        "train_config": cfg.as_dict(), "config_hash": cfg_hash, "data_hash": data_hash,
        "base_files": encoder_base.base_files(), "training": fit, "validation": val_metrics,
        "data_summary": data_summary or {}, "calibration_rows": len(val), "threshold_policy": threshold_policy,
        "storage": "bf16 deltas from the packaged base; word embeddings frozen", **encoder_base.manifest_extra(),
    }
    if init_ref:
        extra["init_from"] = init_ref
    if threshold_policy.startswith("benign_fpr"):
        extra["target_fpr"] = {lab: m.get("target_fpr") for lab, m in val_metrics.items()}
    manifest = ModelManifest(name=name, version=version, kind="transformer", labels=list(LABELS),
                             thresholds=thresholds, base=encoder_base.BASE_NAME, extra=extra)
    write_manifest(output, manifest)
    return {"output": str(output), "thresholds": thresholds, "validation": val_metrics, "training": fit,
            "data_hash": data_hash, "config_hash": cfg_hash}


def warm_start(model: Any, base: str, model_dir: Path) -> dict[str, Any]:
    """Load ``model_dir``'s weights into the fresh ``model`` of ``base``; returns what the manifest records.

    Raises:
        UserError: ``base`` has no warm start (only me5 has), or ``model_dir`` is not a model it can continue.
    """
    from flagstream.classifier.manifest import ModelDirError, read_manifest

    if base != "me5":
        raise UserError("--init-from continues an me5 model; use it with --base me5")
    try:
        manifest = read_manifest(Path(model_dir))
        from flagstream.classifier.bases.e5.model import warm_start as e5_warm_start

        e5_warm_start(model, manifest)
    except (ModelDirError, FileNotFoundError) as exc:
        raise UserError(f"--init-from: {exc}") from None
    return {"model": f"{manifest.name}@{manifest.version}", "manifest_sha256": manifest.sha256, "data_hash": manifest.extra.get("data_hash"),
            "thresholds": dict(manifest.thresholds)}


def recalibrate(model_dir: Path, output: Path, version: str, target_precision: Any, *,
                corpus: Callable[[], Any], threshold_policy: str = "pooled",
                target_fpr: dict[str, float] | None = None) -> dict[str, Any]:
    """Re-fit a transformer model's temperatures and thresholds on the trusted validation rows of ``corpus()``
    and write a new model directory ``output`` (same weights, new manifest, new ``version``); returns the
    validation metrics. ``corpus`` is called after the cheap checks, so a wrong argument fails in one line
    before the data loads.

    Thresholds are part of a model (review messages name the version that applied them), so the source
    directory is never edited in place.
    """
    import shutil

    from flagstream.classifier.training.calibration import calibrate
    from flagstream.classifier.evaluation.evaluate import trusted
    from flagstream.classifier.manifest import read_manifest, write_manifest
    from flagstream.classifier.inference.transformer import load_model

    targets = parse_targets(target_precision)
    src, out = Path(model_dir), Path(output)
    manifest = read_manifest(src)
    if manifest.kind != "transformer":
        raise UserError(f"{src} is a {manifest.kind} model; calibrate re-fits transformer models")
    if out.resolve() == src.resolve():
        raise UserError("--output must be a new directory, not the model being calibrated")
    ds = corpus()
    model, tokenizer = load_model(manifest)
    val = trusted(ds, "val")
    temps, thresholds, val_metrics = calibrate(model, tokenizer, val,
                                               manifest.max_length, targets,
                                               policy=threshold_policy, target_fpr=target_fpr)
    out.mkdir(parents=True, exist_ok=True)
    for name in manifest.files:
        if name != "MODEL_CARD.md":
            shutil.copy2(src / name, out / name)
    extra = dict(manifest.extra)
    extra.update(temperatures=temps, target_precision=targets, validation=val_metrics,
                 calibrated_from=f"{manifest.name}@{manifest.version}", threshold_policy=threshold_policy,
                 calibration_rows=len(val))
    if threshold_policy.startswith("benign_fpr"):
        extra["target_fpr"] = {lab: m.get("target_fpr") for lab, m in val_metrics.items()}
    manifest.version, manifest.thresholds, manifest.extra = version, thresholds, extra
    manifest.files, manifest.created_at, manifest.root = {}, "", None
    write_manifest(out, manifest)
    return val_metrics
