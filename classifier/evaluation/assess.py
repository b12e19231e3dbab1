"""Judge a model directory beside the TF-IDF baseline: the library half of ``flagstream evaluate``.

One function per way the command runs: :func:`assess` (held-out metrics, plots, optional LOSO, the
report), :func:`loso_only` (leave-one-source-out alone, to ``loso.json``), :func:`merge_loso` (attach
an earlier ``loso.json`` to an existing report) and :func:`functional` (the functional suite alone). The
metrics (:mod:`flagstream.classifier.evaluation.evaluate`), LOSO (:mod:`flagstream.classifier.evaluation.loso`), plots, report, card and functional
suite live in their own modules; this module only sequences them on one data split, so the CLI stays a
mapping from flags to arguments.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flagstream.errors import UserError

SEED = 13  # the baseline's and the --limit sample's seed; the split itself is SPLIT_SEED


@dataclass
class LosoPlan:
    """How leave-one-source-out runs: which held-out sources, and how much training per fold."""

    sources: Sequence[str] | None = None  # None = flagstream.classifier.evaluation.loso.LOSO_DEFAULT
    steps: int = 400
    transformer: bool = True
    max_train: int = 20000
    target: float = 0.90
    base: str = "minilm"  # the encoder each fold fine-tunes (flagstream.classifier.bases.registry): the evaluated model's own

    def held_out(self) -> list[str]:
        from flagstream.classifier.evaluation.loso import LOSO_DEFAULT

        return list(self.sources) if self.sources else list(LOSO_DEFAULT)


@dataclass
class Assessment:
    result: dict[str, Any]
    report_md: Path
    data_report: dict[str, Any] = field(default_factory=dict)


def load(data_dir: Path) -> Any:
    """The labelled corpus under ``data_dir`` with its fixed split (a ``datasets.Dataset``)."""
    from flagstream.classifier.data.corpus import load_corpus

    try:
        return load_corpus(data_dir)  # SPLIT_SEED: the split every model is judged on
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None


def loso_target(target_precision: str | None) -> float:
    """LOSO folds get one number: the given one, else the product default 0.90."""
    return float(target_precision) if target_precision and "=" not in str(target_precision) else 0.90


def loso_only(ds: Any, out_dir: Path, plan: LosoPlan) -> Path:
    """Run LOSO alone on the corpus ``ds`` and write ``out_dir/loso.json``."""
    from flagstream.classifier.evaluation.loso import loso
    from flagstream.classifier.evaluation.report import jsonable

    out_dir.mkdir(parents=True, exist_ok=True)
    lo = loso(ds, plan.held_out(), steps=plan.steps, target=plan.target, seed=SEED, transformer=plan.transformer,
              max_train=plan.max_train, base=plan.base)
    path = out_dir / "loso.json"
    path.write_text(json.dumps(jsonable(lo), indent=2) + "\n", encoding="utf-8")
    return path


def assess(model_dir: Path, ds: Any, out_dir: Path, *, target_precision: str | None = None,
           plan: LosoPlan | None = None, loso_from: Path | None = None, limit: int = 0, write_card: bool = False,
           say: Callable[[str], None] = print) -> Assessment:
    """Score ``ds``'s test split with the model and the baseline, write report.md/report.json (+ plots) to ``out_dir``.

    ``plan`` None = no LOSO; ``loso_from`` reuses an earlier ``loso.json`` instead. ``write_card`` rewrites
    the model directory's MODEL_CARD.md from this report.
    """
    from flagstream.classifier.data.corpus import report, targets
    from flagstream.classifier.evaluation.card import model_card
    from flagstream.classifier.evaluation.evaluate import choose_thresholds, evaluate_split, fit_baseline, recall_matched_thresholds, trusted
    from flagstream.classifier.evaluation.functional.suite import run_suite, write_results
    from flagstream.classifier.evaluation.loso import loso, pool_loso
    from flagstream.classifier.evaluation.plots import plot_curves
    from flagstream.classifier.evaluation.report import write_report
    from flagstream.classifier.training.fit import parse_targets
    from flagstream.classifier.labels import LABELS
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.evaluation.measures import binary_metrics
    from flagstream.classifier.inference.scoring import load_scorer

    scorer = load_scorer(model_dir)
    info = scorer.info
    manifest = read_manifest(Path(model_dir))
    data_rep = report(ds)
    test = trusted(ds, "test")
    if limit and len(test) > limit:
        test = test.shuffle(seed=SEED).select(range(limit))
    val = trusted(ds, "val")
    train = ds.filter(lambda s: s == "train", input_columns="split")
    t0 = time.monotonic()
    targets_model = parse_targets(target_precision if target_precision is not None
                                  else manifest.extra.get("target_precision") or 0.90)

    say(f"scoring {len(test)} test rows with {info.ref} ...")
    p_model = scorer.score(list(test["text"]))
    say("fitting the TF-IDF baseline on the same train split ...")
    base = fit_baseline(train, SEED)
    y_val = targets(val)
    pv_base = base.predict_proba(list(val["text"]))
    thr_base = choose_thresholds(pv_base, y_val, targets_model)
    p_base = base.predict_proba(list(test["text"]))
    thresholds = {info.ref: dict(info.thresholds), "baseline": thr_base}
    # The same comparison at equal recall: the baseline's threshold set on validation to reach the
    # recall the model has there at its own thresholds (FPR at the precision target alone rewards
    # a model that flags almost nothing).
    say(f"scoring {len(val)} validation rows with {info.ref} (recall-matched baseline) ...")
    pv_model = scorer.score(list(val["text"]))
    val_recall = {lab: binary_metrics(pv_model[:, j], y_val[:, j], info.thresholds[lab])["recall"]
                  for j, lab in enumerate(LABELS)}
    thr_matched = recall_matched_thresholds(pv_base, y_val, val_recall)
    result: dict[str, Any] = {
        "model": info.ref, "target_precision": targets_model, "data": data_rep,
        "heldout": {info.ref: evaluate_split(test, p_model, info.thresholds), "baseline": evaluate_split(test, p_base, thr_base)},
        "heldout_recall_matched": {"baseline": evaluate_split(test, p_base, thr_matched), "val_recall": val_recall},
    }
    if "validation" in manifest.extra:
        result["validation"] = {info.ref: manifest.extra["validation"]}
    out_dir.mkdir(parents=True, exist_ok=True)
    functional_result = run_suite(scorer)  # a few hundred templated cases: seconds
    write_results(out_dir, functional_result)
    result["functional"] = {k: v for k, v in functional_result.items() if k != "cases"}
    result["plots"] = plot_curves(out_dir, test, {info.ref: p_model, "baseline": p_base}, thresholds)
    if loso_from:
        result["loso"] = pool_loso(json.loads(Path(loso_from).read_text(encoding="utf-8")))
    elif plan is not None:
        say(f"leave-one-source-out over {', '.join(plan.held_out())} ...")
        result["loso"] = loso(ds, plan.held_out(), steps=plan.steps, target=plan.target, seed=SEED,
                              transformer=plan.transformer, max_train=plan.max_train, base=plan.base)
    result["seconds"] = round(time.monotonic() - t0, 1)
    md = write_report(out_dir, result)
    if write_card:
        (Path(model_dir) / "MODEL_CARD.md").write_text(model_card(manifest, result), encoding="utf-8")
        say(f"wrote {Path(model_dir) / 'MODEL_CARD.md'}")
    return Assessment(result, md, data_rep)


def merge_loso(model_dir: Path, out_dir: Path, loso_json: Path, write_card: bool = False) -> Path:
    """Attach a separately computed loso.json to the report.json in ``out_dir``; rewrite report (and card)."""
    from flagstream.classifier.evaluation.card import model_card
    from flagstream.classifier.evaluation.loso import pool_loso
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.evaluation.report import write_report

    manifest = read_manifest(Path(model_dir))
    report_json = out_dir / "report.json"
    if not report_json.exists():
        raise UserError(f"{report_json} does not exist; run flagstream evaluate --output {out_dir} first")
    result = json.loads(report_json.read_text(encoding="utf-8"))
    result["loso"] = pool_loso(json.loads(Path(loso_json).read_text(encoding="utf-8")))
    md = write_report(out_dir, result)
    if write_card:
        (Path(model_dir) / "MODEL_CARD.md").write_text(model_card(manifest, result), encoding="utf-8")
    return md


def functional(model_dir: Path, out_dir: Path, write_card: bool = False) -> tuple[dict[str, Any], Path, str | None]:
    """The functional suite alone (no data needed): ``functional.md`` / ``functional.json`` in ``out_dir``.

    ``write_card`` puts the table into the model card (see :func:`flagstream.classifier.evaluation.card.write_functional`).
    Returns the result, the markdown path and what was done to the card.
    """
    from flagstream.classifier.evaluation.card import write_functional
    from flagstream.classifier.evaluation.functional.suite import run_suite, write_results
    from flagstream.classifier.inference.scoring import load_scorer

    result = run_suite(load_scorer(model_dir))
    md = write_results(out_dir, result)
    said = None
    if write_card:
        try:
            said = write_functional(Path(model_dir), result, out_dir / "report.json")
        except FileNotFoundError as exc:
            raise UserError(str(exc)) from None
    return result, md, said
