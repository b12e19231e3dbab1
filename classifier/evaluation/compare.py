"""Side-by-side test-split comparison of shipped models (e.g. flagstream-minilm vs flagstream-me5).

Each model is judged at its OWN shipped thresholds and temperatures, on the same held-out rows (trusted labels
of the current corpus, every source in ``classifier/data/sources.py``), through the production scorer. Reported per
label: overall, per source, per language, hard-negative FPR; and the scorer's posts/s on this run.

    python -m flagstream.classifier.evaluation.compare --model models/flagstream-minilm --model models/flagstream-me5 --out runs/cmp
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

LANGS = ("ar", "de", "fr", "en")


def score_split(model_dir: Path, texts: list[str], cache: Path | None,
                subset: np.ndarray | None = None) -> tuple[np.ndarray, float, Any]:
    """Probabilities for ``texts`` (a cached run over the whole split is sliced to ``subset``)."""
    from flagstream.classifier.inference.scoring import load_scorer

    scorer = load_scorer(model_dir)
    if cache is not None and cache.exists():
        data = json.loads(cache.read_text())
        probs = np.asarray(data["probs"], dtype=np.float32)
        if subset is not None and len(probs) != len(texts):
            probs = probs[subset]
        if len(probs) == len(texts):
            return probs, float(data["posts_per_s"]), scorer
    t0 = time.monotonic()
    probs = scorer.score(texts)
    rate = len(texts) / (time.monotonic() - t0)
    if cache is not None:
        cache.write_text(json.dumps({"probs": probs.tolist(), "posts_per_s": rate}))
    return probs, rate, scorer


def language_subset(langs: list[str], en_rows: int, seed: int = 0) -> np.ndarray:
    """Every non-English row + a seeded sample of ``en_rows`` English rows (sorted indices): a time-boxed test set
    that keeps all of the Arabic, German and French evidence."""
    lang = np.asarray(langs)
    en = np.flatnonzero(lang == "en")
    keep = np.flatnonzero(lang != "en")
    if en_rows and len(en) > en_rows:
        en = np.random.default_rng(seed).choice(en, en_rows, replace=False)
    return np.sort(np.concatenate([keep, en]))


def compare(data_dir: Path, models: list[Path], out: Path, limit: int = 0, en_rows: int = 0) -> dict[str, Any]:
    from flagstream.classifier.data.corpus import load_corpus
    from flagstream.classifier.evaluation.evaluate import evaluate_split, trusted
    from flagstream.classifier.labels import LABELS

    out.mkdir(parents=True, exist_ok=True)
    test = trusted(load_corpus(data_dir), "test")
    if limit:
        test = test.select(range(min(limit, len(test))))
    subset = None
    if en_rows:
        subset = language_subset(list(test["lang"]), en_rows)
        test = test.select(subset)
    texts = list(test["text"])
    result: dict[str, Any] = {"rows": len(test), "en_rows_sampled": en_rows, "models": {}}
    for m in models:
        scorer_cache = out / f"probs-{m.name}.json"
        probs, rate, scorer = score_split(m, texts, scorer_cache, subset)
        thr = {lab: float(scorer.info.thresholds[lab]) for lab in LABELS} if hasattr(scorer.info, "thresholds") else None
        if thr is None:
            from flagstream.classifier.manifest import read_manifest

            thr = read_manifest(m).thresholds
        ev = evaluate_split(test, probs, thr)
        for lab in LABELS:
            ev["labels"][lab].pop("reliability", None)
        result["models"][scorer.info.ref] = {"dir": str(m), "posts_per_s_test_split": round(rate, 1), "eval": ev,
                                             "_probs": probs}
        print(f"{scorer.info.ref}: {rate:.1f} posts/s on {len(texts)} test posts", flush=True)
    if len(models) == 2:
        first, second = list(result["models"])
        result["pr_auc_difference"] = {"of": f"{second} minus {first}", **pr_auc_differences(
            test, *(result["models"][r].pop("_probs") for r in (first, second)))}
    for r in result["models"].values():
        r.pop("_probs", None)
    (out / "compare.json").write_text(json.dumps(result, indent=1, default=float))
    (out / "compare.md").write_text(markdown(result))
    return result


def pr_auc_differences(test: Any, p1: np.ndarray, p2: np.ndarray, resamples: int = 500,
                       seed: int = 0) -> dict[str, Any]:
    """PR-AUC of the second model minus the first, per label, overall and per language, with a paired
    bootstrap 95% interval (rows resampled within the slice, both models on the same rows): a per-language
    gap rests on a few dozen positives, and the interval says whether it is more than noise."""
    from sklearn.metrics import average_precision_score

    from flagstream.classifier.data.corpus import targets
    from flagstream.classifier.labels import LABELS

    y, lang = targets(test), np.asarray(test["lang"])
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for j, lab in enumerate(LABELS):
        for name, rows in [("all", np.ones(len(lang), dtype=bool))] + [(lg, lang == lg) for lg in LANGS]:
            idx = np.flatnonzero(rows & ~np.isnan(y[:, j]))
            yy = y[idx, j]
            if yy.sum() < 5 or yy.sum() == len(yy):
                continue
            diff = average_precision_score(yy, p2[idx, j]) - average_precision_score(yy, p1[idx, j])
            boot = []
            for _ in range(resamples):
                b = rng.integers(0, len(idx), len(idx))
                if 0 < yy[b].sum() < len(b):
                    boot.append(average_precision_score(yy[b], p2[idx[b], j]) - average_precision_score(yy[b], p1[idx[b], j]))
            out.setdefault(lab, {})[name] = {"difference": float(diff), "positives": int(yy.sum()), "n": len(idx),
                                             "ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))]}
    return out


def _f(x: Any, nd: int = 3) -> str:
    try:
        return "-" if x is None or np.isnan(float(x)) else f"{float(x):.{nd}f}"
    except (TypeError, ValueError):
        return "-"


def markdown(result: dict[str, Any]) -> str:
    from flagstream.classifier.labels import LABELS

    refs = list(result["models"])
    sub = f" (every non-English row + {result['en_rows_sampled']} sampled English rows)" if result.get("en_rows_sampled") else ""
    lines = [f"Test split, trusted labels, {result['rows']} rows{sub}; each model at its own shipped thresholds.", ""]
    for lab in LABELS:
        lines += [f"### {lab}", "", "| slice | n | pos | " + " | ".join(f"{r} P / R / F1 / PR-AUC / FPR" for r in refs) + " |",
                  "|---|---|---|" + "---|" * len(refs)]
        evs = [result["models"][r]["eval"]["labels"][lab] for r in refs]
        slices = [("all", evs[0]["overall"], [e["overall"] for e in evs])]
        for lg in LANGS:
            if lg in evs[0]["per_lang"]:
                slices.append((f"lang {lg}", evs[0]["per_lang"][lg], [e["per_lang"].get(lg, {}) for e in evs]))
        for s in sorted(evs[0]["per_source"]):
            slices.append((f"source {s}", evs[0]["per_source"][s], [e["per_source"].get(s, {}) for e in evs]))
        for name, first, ms in slices:
            cells = [" / ".join(_f(m.get(k)) for k in ("precision", "recall", "f1", "pr_auc")) + " / " + _f(m.get("fpr"), 4)
                     for m in ms]
            lines.append(f"| {name} | {first.get('n', '-')} | {first.get('positives', first.get('pos', '-'))} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Hard-negative FPR: " + "; ".join(
            f"{r} {_f(e['hard_negative_fpr'], 4)} (n={e['hard_negative_n']}; " +
            ", ".join(f"{s} {_f(v, 4)}" for s, v in e["hard_negative_fpr_per_source"].items()) + ")"
            for r, e in zip(refs, evs)))
        lines.append("")
    if "pr_auc_difference" in result:
        d = result["pr_auc_difference"]
        lines += [f"### PR-AUC difference ({d['of']}), paired bootstrap 95% interval", "",
                  "| label | slice | n | positives | difference | 95% interval |", "|---|---|---|---|---|---|"]
        for lab in LABELS:
            for name, v in d.get(lab, {}).items():
                lines.append(f"| {lab} | {name} | {v['n']} | {v['positives']} | {v['difference']:+.3f} | "
                             f"[{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}] |")
        lines.append("")
    lines.append("Scorer speed on this test split (same run, shared CPU): " +
                 ", ".join(f"{r} {result['models'][r]['posts_per_s_test_split']} posts/s" for r in refs))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, action="append", required=True)
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path("runs/compare"))
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--en-rows", type=int, default=0, help="keep every non-English test row + this many English ones")
    args = p.parse_args(argv)
    compare(args.data_dir, args.model, args.out, args.limit, args.en_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
