"""The written evaluation report: ``report.md`` (tables) and ``report.json`` (every number), plus the verdict.

Pure formatting of a result dict built by ``flagstream evaluate`` (held-out metrics from
:mod:`flagstream.classifier.evaluation.evaluate`, folds from :mod:`flagstream.classifier.evaluation.loso`); it computes nothing new, so a report
can be rewritten from a stored ``report.json``. :func:`verdict` states each acceptance check with its
numbers, whether it passes or not; the model card embeds both (:mod:`flagstream.classifier.evaluation.card`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from flagstream.classifier.evaluation.evaluate import target_of, targets_text
from flagstream.classifier.labels import LABELS
from flagstream.classifier.evaluation.measures import fmt


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(result: dict[str, Any]) -> str:
    """The written report; also the source of the model card's metric tables."""
    names = list(result["heldout"])
    out = [f"# Evaluation: {result['model']}", "",
           f"Held-out test split (by group; trusted labels only), thresholds chosen on validation for precision "
           f"{targets_text(result['target_precision'])}. Baseline = TF-IDF word+char n-grams + logistic regression on the same data.", ""]
    out.append("## Summary")
    rows = []
    for lab in LABELS:
        for n in names:
            e = result["heldout"][n]["labels"][lab]
            o = e["overall"]
            rows.append([lab, n, fmt(e["threshold"]), fmt(o["precision"]), fmt(o["recall"]), fmt(o["f1"]), fmt(o["pr_auc"]),
                         fmt(e["ece"]), f"{fmt(e['hard_negative_fpr'], 4)} (n={e['hard_negative_n']})",
                         f"{fmt(e['arabic_fpr'], 4)} (n={e['arabic_negatives_n']})"])
    out.append(table(rows, ["label", "model", "threshold", "precision", "recall", "F1", "PR-AUC", "ECE",
                             "FPR hard negatives", "FPR Arabic negatives"]))
    out.append("")
    if "validation" in result:
        out.append("Validation operating points (thresholds fitted here): " + "; ".join(
            f"{n} {lab}: precision {fmt(v['precision'])}, recall {fmt(v['recall'])}"
            for n, vv in result["validation"].items() for lab, v in vv.items()))
        out.append("")
    if "loso" in result and result["loso"]:
        lo = result["loso"]
        out.append(f"## Leave-one-source-out (transformer: {lo['steps']} steps, a shorter schedule than the default run; both "
                   f"models on the same {lo.get('max_train')} sampled training rows per fold; at most {lo.get('max_test')} test rows "
                   "per held-out source; thresholds from the other sources' validation split)")
        rows = []
        for held, fold in lo["folds"].items():
            for lab in LABELS:
                cells = [held, lab]
                for kind in ("transformer", "baseline"):
                    m = fold.get(kind, {}).get("metrics", {}).get(lab)
                    m2 = fold.get(kind, {}).get("metrics_f1", {}).get(lab)
                    cells += [fmt(m["f1"]) if m and m["pos"] else "-", fmt(m2["f1"]) if m2 and m2["pos"] else "-",
                              fmt(m["precision"]) if m and m["pos"] else "-",
                              fmt(m["recall"]) if m and m["pos"] else "-", fmt(m.get("pr_auc")) if m and m["pos"] else "-",
                              fmt(m["fpr"], 4) if m else "-"]
                cells.append(str(fold.get("transformer", fold.get("baseline", {})).get("metrics", {}).get(lab, {}).get("pos", "-")))
                rows.append(cells)
        out.append(table(rows, ["held-out source", "label", "transformer F1", "F1 (best-F1 thr)", "P", "R", "PR-AUC", "FPR",
                                 "baseline F1", "F1 (best-F1 thr)", "P", "R", "PR-AUC", "FPR", "positives"]))
        out.append("")
        rows = [[lab, kind, fmt(lo[kind][lab].get("pooled_f1")), fmt(lo[kind][lab].get("macro_f1")),
                 fmt(lo[kind][lab].get("pooled_precision")), fmt(lo[kind][lab].get("pooled_recall")),
                 fmt(lo[kind][lab].get("pooled_f1_f1thr")), fmt(lo[kind][lab].get("macro_f1_f1thr")),
                 fmt(lo[kind][lab].get("macro_pr_auc")), str(lo[kind][lab].get("folds", "-"))]
                for lab in LABELS for kind in ("transformer", "baseline") if kind in lo and lo[kind].get(lab)]
        out.append("Two operating points, both chosen on the other sources' validation split: precision "
                   f"{targets_text(lo.get('target', 0.9))} and the best-F1 threshold.")
        out.append("")
        out.append(table(rows, ["label", "model", "pooled F1 (P-target thr)", "macro F1", "pooled P", "pooled R",
                                 "pooled F1 (best-F1 thr)", "macro F1 (best-F1 thr)", "macro PR-AUC", "folds with positives"]))
        out.append("")
        diffs = lo.get("f1_difference") or {}
        if diffs:
            out.append("Transformer minus baseline, pooled F1, with a paired bootstrap 95% interval (rows resampled within "
                       "folds; an interval that contains 0 is no evidence either way):")
            out.append("")
            out.append(table([[lab, "precision target" if op == "target" else "best F1", f"{d['difference']:+.3f}",
                                f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]", fmt(d["p_not_better"])]
                               for lab, ops in diffs.items() for op, d in ops.items()],
                              ["label", "operating point", "difference", "95% CI", "share of resamples not better"]))
            out.append("")
    for lab in LABELS:
        out.append(f"## {lab}: per source")
        rows = []
        first = result["heldout"][names[0]]["labels"][lab]
        for s in first["per_source"]:
            cells = [s, str(first["per_source"][s]["n"]), str(first["per_source"][s]["pos"])]
            for n in names:
                m = result["heldout"][n]["labels"][lab]["per_source"][s]
                cells += [fmt(m["precision"]), fmt(m["recall"]), fmt(m["f1"]), fmt(m["pr_auc"]), fmt(m["fpr"], 4)]
            rows.append(cells)
        header = ["source", "n", "pos"] + [f"{n} {k}" for n in names for k in ("P", "R", "F1", "PR-AUC", "FPR")]
        out.append(table(rows, header))
        out.append("")
        out.append(f"## {lab}: per language")
        rows = []
        for lg in first["per_lang"]:
            cells = [lg, str(first["per_lang"][lg]["n"]), str(first["per_lang"][lg]["pos"])]
            for n in names:
                m = result["heldout"][n]["labels"][lab]["per_lang"][lg]
                cells += [fmt(m["precision"]), fmt(m["recall"]), fmt(m["f1"]), fmt(m["pr_auc"]), fmt(m["fpr"], 4)]
            rows.append(cells)
        out.append(table(rows, ["lang", "n", "pos"] + [f"{n} {k}" for n in names for k in ("P", "R", "F1", "PR-AUC", "FPR")]))
        out.append("")
        out.append(f"Hard-negative FPR per source ({lab}): " + "; ".join(
            f"{n}: " + ", ".join(f"{s} {fmt(v, 4)}" for s, v in result["heldout"][n]["labels"][lab]["hard_negative_fpr_per_source"].items())
            for n in names))
        out.append("")
    out.append("Plots: pr_curves.png, calibration.png.")
    return "\n".join(out) + "\n"


def jsonable(obj: Any) -> Any:
    """Report data as plain JSON values (numpy scalars -> Python, NaN -> null, raw probs dropped)."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items() if k not in ("probs", "y")}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and np.isnan(obj):
        return None
    return obj


def write_report(out_dir: Path, result: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(jsonable(result), indent=2) + "\n", encoding="utf-8")
    md = out_dir / "report.md"
    md.write_text(markdown_report(result), encoding="utf-8")
    return md


def _meets(ok: bool, model_fpr: float | None, base_fpr: float | None) -> str:
    """'meets' / 'does NOT meet'; a tie at zero is said as such (0 <= 0/4 is a pass that proves little)."""
    if ok and model_fpr == 0 and base_fpr == 0:
        return "meets the <= 1/4 target, as a tie at zero (neither model flags a single hard negative)"
    return "meets the <= 1/4 target" if ok else "does NOT meet the <= 1/4 target"


def verdict(result: dict[str, Any]) -> list[str]:
    """The acceptance checks, stated with their numbers (whether they pass or not)."""
    names = [n for n in result["heldout"] if n != "baseline"]
    model, base = names[0], "baseline"
    lines = ["### Against the acceptance criteria", ""]
    for lab in LABELS:
        m = result["heldout"][model]["labels"][lab]
        b = result["heldout"][base]["labels"][lab]
        mf, bf = m["hard_negative_fpr"], b["hard_negative_fpr"]
        ok = mf is not None and bf is not None and mf <= bf / 4
        lines.append(f"- {lab}, each model at its own precision-{target_of(result['target_precision'], lab):.2f} threshold: "
                     "hard-negative FPR "
                     f"{fmt(mf, 4)} (transformer) vs {fmt(bf, 4)} (baseline), n={m['hard_negative_n']}: "
                     f"{_meets(ok, mf, bf)}. Held-out F1 {fmt(m['overall']['f1'])} vs "
                     f"{fmt(b['overall']['f1'])}; recall {fmt(m['overall']['recall'])} vs "
                     f"{fmt(b['overall']['recall'])}. Hard-negative FPR by source: "
                     + ", ".join(f"{k} {fmt(v, 4)}/{fmt(b['hard_negative_fpr_per_source'].get(k), 4)}"
                                 for k, v in m["hard_negative_fpr_per_source"].items()) + " (transformer/baseline).")
        mb = (result.get("heldout_recall_matched") or {}).get(base, {}).get("labels", {}).get(lab)
        if mb:
            bf2 = mb["hard_negative_fpr"]
            ok2 = mf is not None and bf2 is not None and mf <= bf2 / 4
            lines.append(f"- {lab}, baseline at the transformer's validation recall (threshold {fmt(mb['threshold'])}): "
                         f"hard-negative FPR {fmt(mf, 4)} (transformer) vs {fmt(bf2, 4)} (baseline): "
                         f"{_meets(ok2, mf, bf2)}; baseline test precision "
                         f"{fmt(mb['overall']['precision'])}, recall {fmt(mb['overall']['recall'])} there vs the transformer's "
                         f"{fmt(m['overall']['precision'])} / {fmt(m['overall']['recall'])}.")
    lo = result.get("loso") or {}
    if "transformer" in lo and "baseline" in lo:
        for lab in LABELS:
            for key, what in (("pooled_f1", f"precision-{targets_text(lo.get('target', 0.9))} thresholds"),
                              ("pooled_f1_f1thr", "best-F1 thresholds")):
                t, b = lo["transformer"][lab].get(key), lo["baseline"][lab].get(key)
                if t is None or b is None:
                    continue
                beats = t > b
                d = (lo.get("f1_difference") or {}).get(lab, {}).get("f1thr" if key.endswith("f1thr") else "target")
                ci = (f" (difference {d['difference']:+.3f}, paired bootstrap 95% CI [{d['ci95'][0]:+.3f}, "
                      f"{d['ci95'][1]:+.3f}])" if d else "")
                said = "beats the baseline" if beats else "does NOT beat the baseline"
                if d and beats and d["ci95"][0] <= 0:
                    said = "is ahead of the baseline, but not significantly (the interval reaches 0)"
                elif d and not beats and d["ci95"][1] >= 0:
                    said = "does NOT beat the baseline (the gap is within noise: the interval contains 0)"
                elif d and not beats:
                    said = "does NOT beat the baseline (significantly behind)"
                lines.append(f"- {lab}: leave-one-source-out pooled F1 at {what} {fmt(t)} (transformer, {lo['steps']} steps) "
                             f"vs {fmt(b)} (baseline){ci}: the transformer {said}.")
            t, b = lo["transformer"][lab].get("macro_pr_auc"), lo["baseline"][lab].get("macro_pr_auc")
            if t is not None and b is not None:
                lines.append(f"- {lab}: leave-one-source-out macro PR-AUC (threshold-free) {fmt(t)} vs {fmt(b)}.")
    lines.append("")
    return lines
