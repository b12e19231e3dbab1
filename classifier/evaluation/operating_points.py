"""Operating points that travel: "target FPR on the benign reference pool -> recall per language", and a
leave-one-source-out check of that policy.

Why: a threshold picked for a target *precision* depends on the share of positives in the split it was picked
on, and a feed's share is nothing like validation's; a false-positive rate on benign posts (news, everyday posts,
counter-speech: :data:`flagstream.classifier.data.sources.BENIGN_REFERENCE`) does not depend on it. This module scores the trusted
validation rows (and the contrast test split) once with the served scorer and reports, per label:

* for each target FPR: the pooled threshold, the FPR it gives on each language's benign rows, the recall on each
  language's positives, and on the contrast TEST templates the recall of hateful cases and the share of look-alikes
  flagged (what a team needs to pick its own point);
* leave-one-source-out: for each source, the threshold is picked on the benign pool WITHOUT that source, then that
  source's recall and FPR. It reuses ONE model's scores: the held-out source was still trained on (its train
  split), so this checks the threshold policy, not a fold-trained model.

Run: ``python -m flagstream.classifier.evaluation.operating_points --model DIR --output REPORT.md`` (writes the markdown
table and a JSON twin next to it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flagstream.classifier.training.calibration import benign_mask, threshold_for_fpr, threshold_for_fpr_each_lang
from flagstream.classifier.labels import LABELS

FPR_GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.10)
LANGS = ("ar", "en", "fr", "de")
MIN_POOL = 200  # fewer benign rows than this in a language: its FPR is printed but marked as thin evidence


def _rate(flags: np.ndarray, mask: np.ndarray) -> tuple[float, int]:
    n = int(mask.sum())
    return (float(flags[mask].mean()) if n else float("nan")), n


def fpr_recall_table(p: np.ndarray, y: np.ndarray, pool: np.ndarray, langs: np.ndarray,
                     grid: Sequence[float] = FPR_GRID) -> list[dict[str, Any]]:
    """Per target FPR: the pooled threshold, and per language the benign FPR and the recall on positives.

    ``p``/``y``: one label's scores and targets (NaN = unknown); ``pool``: its benign reference rows.
    Raises:
        ValueError: the pool is empty (see :func:`threshold_for_fpr`).
    """
    out = []
    for target in grid:
        thr, fpr, n_pool = threshold_for_fpr(p, pool, target)
        flags = p >= thr
        thr_lang = threshold_for_fpr_each_lang(p, pool, langs, target)[0]
        row: dict[str, Any] = {"target_fpr": target, "threshold": thr, "benign_fpr": fpr, "benign_rows": n_pool,
                               "recall": _rate(flags, y == 1), "per_lang": {}, "threshold_each_lang": thr_lang,
                               "recall_each_lang": _rate(p >= thr_lang, y == 1)}
        for lg in LANGS:
            m = langs == lg
            row["per_lang"][lg] = {"fpr": _rate(flags, pool & m), "recall": _rate(flags, (y == 1) & m)}
        out.append(row)
    return out


def contrast_rates(p: np.ndarray, y: np.ndarray, langs: np.ndarray, thresholds: Sequence[float]) -> list[dict[str, Any]]:
    """Per threshold and language on the contrast test cases: recall on cases expecting a flag, share of
    cases expecting none (look-alikes) that are flagged."""
    out = []
    for thr in thresholds:
        flags = p >= thr
        out.append({lg: {"recall": _rate(flags, (y == 1) & (langs == lg)),
                         "lookalike_flagged": _rate(flags, (y == 0) & (langs == lg))} for lg in LANGS})
    return out


def leave_one_source_out(p: np.ndarray, y: np.ndarray, pool: np.ndarray, sources: np.ndarray,
                         target: float) -> list[dict[str, Any]]:
    """For each source: threshold picked on the benign pool without it, then its recall and FPR (on its rows
    whose label is 0). Sources whose removal empties the pool are skipped."""
    out = []
    for src in sorted(set(sources.tolist())):
        held = sources == src
        rest = pool & ~held
        if not rest.any():
            continue
        thr, fpr_rest, _ = threshold_for_fpr(p, rest, target)
        flags = p >= thr
        out.append({"source": src, "threshold": thr, "pool_fpr": fpr_rest, "in_pool": bool((pool & held).any()),
                    "recall": _rate(flags, held & (y == 1)), "fpr": _rate(flags, held & (y == 0))})
    return out


def _fmt(pair: tuple[float, int], thin: int = 0) -> str:
    v, n = pair
    if not n:
        return "-"
    mark = "*" if thin and n < thin else ""
    return f"{v:.3f}{mark} ({n})"


def markdown(model: str, results: dict[str, Any], loso_target: float) -> str:
    """The report: one FPR -> recall table, one contrast table and one LOSO table per label."""
    lines = [f"# Operating points of {model}", "",
             "Thresholds chosen by a target false-positive rate on the benign reference pool (trusted validation "
             "rows of news, everyday posts, counter-speech and ordinary tweets: `classifier/data/sources.py` "
             "BENIGN_REFERENCE), one pooled threshold for all languages. Cells: rate (rows). `*` = fewer than "
             f"{MIN_POOL} benign rows in that language (thin evidence).", ""]
    for lab in LABELS:
        r = results[lab]
        lines += [f"## {lab}", "", "### Target FPR -> recall per language (validation)", "",
                  "| target FPR | threshold | pool FPR | recall all | " + " | ".join(f"{lg} FPR | {lg} recall" for lg in LANGS)
                  + " | each-language threshold | its recall all |",
                  "|---|---|---|---|" + "---|---|" * len(LANGS) + "---|---|"]
        for row in r["table"]:
            cells = " | ".join(f"{_fmt(tuple(row['per_lang'][lg]['fpr']), MIN_POOL)} | {_fmt(tuple(row['per_lang'][lg]['recall']))}"
                               for lg in LANGS)
            lines.append(f"| {row['target_fpr']:.3f} | {row['threshold']:.4f} | {row['benign_fpr']:.4f} "
                         f"({row['benign_rows']}) | {_fmt(tuple(row['recall']))} | {cells} | "
                         f"{row['threshold_each_lang']:.4f} | {_fmt(tuple(row['recall_each_lang']))} |")
        if r.get("contrast"):
            lines += ["", "### Same thresholds on the contrast TEST templates (never trained or calibrated on)", "",
                      "| target FPR | " + " | ".join(f"{lg} hateful recall | {lg} look-alikes flagged" for lg in LANGS) + " |",
                      "|---|" + "---|---|" * len(LANGS)]
            for row, c in zip(r["table"], r["contrast"]):
                lines.append(f"| {row['target_fpr']:.3f} | " + " | ".join(
                    f"{_fmt(tuple(c[lg]['recall']))} | {_fmt(tuple(c[lg]['lookalike_flagged']))}" for lg in LANGS) + " |")
        lines += ["", f"### Leave one source out (target FPR {loso_target})", "",
                  "Per source: the threshold picked on the benign pool WITHOUT it, then its recall and FPR. One "
                  "model's scores reused: not a fold-trained model (the source's train split was trained on).", "",
                  "| held-out source | in pool | threshold | pool FPR without it | its recall | its FPR |",
                  "|---|---|---|---|---|---|"]
        for row in r["loso"]:
            lines.append(f"| {row['source']} | {'yes' if row['in_pool'] else ''} | {row['threshold']:.4f} | "
                         f"{row['pool_fpr']:.4f} | {_fmt(tuple(row['recall']))} | {_fmt(tuple(row['fpr']))} |")
        lines.append("")
    return "\n".join(lines)


def analyse(p_val: np.ndarray, y_val: np.ndarray, sources: np.ndarray, metas: Sequence[str], langs: np.ndarray,
            p_con: np.ndarray | None = None, y_con: np.ndarray | None = None, langs_con: np.ndarray | None = None,
            grid: Sequence[float] = FPR_GRID, loso_target: float = 0.01) -> dict[str, Any]:
    """Every table's numbers from already-computed scores (``(n, labels)`` arrays); no model needed."""
    out: dict[str, Any] = {}
    for j, lab in enumerate(LABELS):
        pool = benign_mask(sources, metas, y_val[:, j])
        table = fpr_recall_table(p_val[:, j], y_val[:, j], pool, langs, grid)
        res: dict[str, Any] = {"table": table, "loso": leave_one_source_out(p_val[:, j], y_val[:, j], pool, sources,
                                                                          loso_target)}
        if p_con is not None and y_con is not None and langs_con is not None:
            res["contrast"] = contrast_rates(p_con[:, j], y_con[:, j], langs_con, [r["threshold"] for r in table])
        out[lab] = res
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flagstream.classifier.evaluation.operating_points",
                                     description="target FPR -> recall per language, and a LOSO check, as markdown")
    parser.add_argument("--model", type=Path, required=True, help="model directory to score with")
    parser.add_argument("--output", type=Path, required=True, help="markdown report to write (a .json twin beside it)")
    parser.add_argument("--data-dir", type=Path, default=None, help="labelled data (default: the settings' data_dir)")
    parser.add_argument("--loso-target", type=float, default=0.01, help="target FPR of the LOSO check (default 0.01)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--val-rows", type=int, default=0,
                        help="score a seeded sample of at most N validation rows (default 0 = all; for smoke runs)")
    args = parser.parse_args(argv)
    from flagstream.classifier.evaluation.assess import load
    from flagstream.classifier.data.corpus import targets
    from flagstream.classifier.evaluation.evaluate import trusted
    from flagstream.classifier.evaluation.functional.contrast import load_contrast_cases
    from flagstream.classifier.manifest import ModelDirError
    from flagstream.classifier.inference.scoring import load_scorer
    from flagstream.config import load_settings
    from flagstream.errors import UserError

    if not 0 < args.loso_target < 1:
        print("operating_points: error: --loso-target must lie between 0 and 1 (e.g. 0.01)", file=sys.stderr)
        return 2
    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        scorer = load_scorer(args.model)
        data_dir = args.data_dir or load_settings().data_dir
        val = trusted(load(data_dir), "val")
        if args.val_rows and len(val) > args.val_rows:
            val = val.shuffle(seed=13).select(range(args.val_rows))
    except (ModelDirError, UserError) as exc:
        print(f"operating_points: error: {exc}", file=sys.stderr)
        return 2
    p_val = np.asarray(scorer.score(list(val["text"])), dtype=np.float64)
    y_val = targets(val)
    cases = load_contrast_cases("test")
    p_con = np.asarray(scorer.score([c["text"] for c in cases]), dtype=np.float64)
    y_con = np.array([[np.nan if c[lab] is None else float(c[lab]) for lab in LABELS] for c in cases])
    results = analyse(p_val, y_val, np.asarray(val["source"]), list(val["meta"]), np.asarray(val["lang"]),
                      p_con, y_con, np.array([c["lang"] for c in cases]), loso_target=args.loso_target)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown(scorer.info.ref, results, args.loso_target), encoding="utf-8")
    args.output.with_suffix(".json").write_text(json.dumps({"model": scorer.info.ref, "results": results}, indent=1)
                                                + "\n", encoding="utf-8")
    print(f"wrote {args.output} ({len(val)} validation rows, {len(cases)} contrast test cases)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
