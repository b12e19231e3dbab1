"""Evaluate a model on the contrast TEST split (templates never trained or calibrated on), per language.

What the issue's goals ask of "hate vs talk about hate", at the model's own thresholds:

* F1 of hateful cases against their look-alikes: a hateful case counts as caught when at least one label it
  expects is flagged; a look-alike counts as a false positive when any label is flagged;
* pass rates of counter-speech (``counter_speech`` + ``counter_quote``), identity-neutral and identity-positive
  cases (the goal: >= 0.90 in each language), and of every functionality.

Scoring and the pass rule are the functional suite's (:func:`flagstream.classifier.evaluation.functional.suite.run_suite`), so a case is
judged the same way in both. Results keep ids and scores, never texts.

Run: ``python -m flagstream.classifier.evaluation.functional.contrast_eval --model DIR --output DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flagstream.classifier.evaluation.functional.contrast import LANGS, load_contrast_cases

PASS_GROUPS = {"counter-speech": ("counter_speech", "counter_quote"), "identity-neutral": ("identity_neutral",),
               "identity-positive": ("identity_positive",)}


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def contrast_metrics(rows: Sequence[dict[str, Any]], kinds: dict[str, str]) -> dict[str, Any]:
    """Per language (and ``all``): hateful-vs-look-alike counts, precision, recall, F1, and pass rates.

    ``rows``: :func:`run_suite` case rows (``expect``, ``flagged``, ``passed``, ``lang``, ``functionality``);
    ``kinds``: case id -> ``hateful`` | ``lookalike``.
    """
    out: dict[str, Any] = {}
    for lang in (*LANGS, "all"):
        mine = [r for r in rows if lang == "all" or r["lang"] == lang]
        if not mine:
            continue
        tp = fp = fn = tn = 0
        for r in mine:
            if kinds[r["id"]] == "hateful":
                hit = any(lab in r["flagged"] for lab, want in r["expect"].items() if want == 1)
                tp, fn = tp + hit, fn + (not hit)
            else:
                flagged = bool(r["flagged"])
                fp, tn = fp + flagged, tn + (not flagged)
        passes: dict[str, list[int]] = {}
        for name, funcs in PASS_GROUPS.items():
            sel = [r for r in mine if r["functionality"] in funcs]
            passes[name] = [sum(r["passed"] for r in sel), len(sel)]
        per_func: dict[str, list[int]] = {}
        for r in mine:
            cell = per_func.setdefault(r["functionality"], [0, 0])
            cell[0] += int(r["passed"])
            cell[1] += 1
        out[lang] = {"tp": tp, "fp": fp, "fn": fn, "tn": tn,
                     "precision": tp / (tp + fp) if tp + fp else float("nan"),
                     "recall": tp / (tp + fn) if tp + fn else float("nan"), "f1": _f1(tp, fp, fn),
                     "pass": passes, "per_functionality": per_func}
    return out


def _rate(pair: list[int]) -> str:
    return f"{pair[0] / pair[1]:.2f} ({pair[0]}/{pair[1]})" if pair[1] else "-"


def markdown(model: str, thresholds: dict[str, float], metrics: dict[str, Any]) -> str:
    langs = [lg for lg in (*LANGS, "all") if lg in metrics]
    th = ", ".join(f"{k} {v:.3f}" for k, v in thresholds.items())
    lines = [f"# Contrast test split: {model}", "",
             f"Templates held out from training and calibration (split by template), at the model's thresholds ({th}). "
             "Hateful = caught when a label it expects is flagged; look-alike = wrong when any label is flagged.", "",
             "| language | F1 hateful vs look-alikes | precision | recall | " + " | ".join(PASS_GROUPS) + " passed |",
             "|---|---|---|---|" + "---|" * len(PASS_GROUPS)]
    for lg in langs:
        m = metrics[lg]
        lines.append(f"| {lg} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | "
                     + " | ".join(_rate(m["pass"][g]) for g in PASS_GROUPS) + " |")
    funcs = sorted({f for lg in langs for f in metrics[lg]["per_functionality"]})
    lines += ["", "Pass rate per functionality:", "", "| functionality | " + " | ".join(langs) + " |",
              "|---|" + "---|" * len(langs)]
    for f in funcs:
        lines.append(f"| {f} | " + " | ".join(_rate(metrics[lg]["per_functionality"].get(f, [0, 0])) for lg in langs) + " |")
    return "\n".join(lines) + "\n"


def evaluate(scorer: Any, cases: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Score the contrast test cases with ``scorer`` and compute :func:`contrast_metrics`."""
    from flagstream.classifier.evaluation.functional.suite import run_suite

    cases = load_contrast_cases("test") if cases is None else cases
    res = run_suite(scorer, cases)
    kinds = {c["id"]: c["kind"] for c in cases}
    return {"model": res["model"], "thresholds": res["thresholds"], "cases": res["cases"],
            "metrics": contrast_metrics(res["cases"], kinds)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flagstream.classifier.evaluation.functional.contrast_eval",
                                     description="F1 and pass rates on the contrast test split, per language")
    parser.add_argument("--model", type=Path, required=True, help="model directory")
    parser.add_argument("--output", type=Path, required=True, help="directory for contrast.md and contrast.json")
    args = parser.parse_args(argv)
    from flagstream.classifier.manifest import ModelDirError
    from flagstream.classifier.inference.scoring import load_scorer

    try:
        scorer = load_scorer(args.model)
    except ModelDirError as exc:
        print(f"contrast_eval: error: {exc}", file=sys.stderr)
        return 2
    result = evaluate(scorer)
    args.output.mkdir(parents=True, exist_ok=True)
    md = markdown(result["model"], result["thresholds"], result["metrics"])
    (args.output / "contrast.md").write_text(md, encoding="utf-8")
    (args.output / "contrast.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
