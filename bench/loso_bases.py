"""Leave-one-source-out, multilingual me5 against MiniLM, paired row by row (issue 16).

The test split says how each model does on sources it trained on; a trust-and-safety team's next feed is a
source neither has seen. Each fold trains a base's shipped recipe (``flagstream.classifier.bases.registry``: me5 = LoRA on the top
six layers at 64 tokens, MiniLM = the full fine-tune at 128) for the same number of steps on the same sampled rows
of the other sources, picks thresholds on their validation split (precision 0.90 and best-F1), and is scored on
the held-out source. Because the rows depend only on the seed and the corpus, two runs can be paired:

    python bench/loso_bases.py run --base minilm --folds alfifi_isis_ar,osact2022 --out runs/loso-bases/minilm-a
    python bench/loso_bases.py run --base me5 --folds alfifi_isis_ar,osact2022 --out runs/loso-bases/me5-a
    python bench/loso_bases.py compare runs/loso-bases/*.npz [--md out.md]

``run`` writes ``<out>.npz`` (per fold: labels, test probabilities, thresholds) and ``<out>.json`` (metrics);
``compare`` pools every fold present for both bases and prints, per label, pooled F1 at each operating point
with a paired bootstrap interval on me5 minus MiniLM (``flagstream.classifier.evaluation.loso.loso_f1_difference``), and per-fold
PR-AUC with its own paired interval. One thread per run is the intended use (``OMP_NUM_THREADS=1``), so two
folds train side by side on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flagstream.classifier.labels import LABELS  # noqa: E402

SEED = 13


def run(args: argparse.Namespace) -> int:
    import torch

    from flagstream.classifier.evaluation.assess import load
    from flagstream.classifier.evaluation.loso import loso
    from flagstream.classifier.evaluation.report import jsonable

    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    ds = load(args.data_dir)
    out = loso(ds, args.folds.split(","), steps=args.steps, target=0.90, seed=SEED, max_test=args.max_test,
               max_val=args.max_val, max_train=args.max_train, baseline=args.baseline, base=args.base)
    arrays: dict[str, np.ndarray] = {}
    for held, fold in out["folds"].items():
        arrays[f"{held}/y"] = np.asarray(fold["y"], dtype=np.float32)
        for kind in ("transformer", "baseline"):
            if kind in fold:
                name = args.base if kind == "transformer" else "baseline"
                arrays[f"{held}/{name}/probs"] = np.asarray(fold[kind]["probs"], dtype=np.float32)
                for key in ("thresholds", "thresholds_f1"):
                    arrays[f"{held}/{name}/{key}"] = np.asarray([fold[kind][key][lab] for lab in LABELS])
        arrays[f"{held}/{args.base}/seconds"] = np.asarray(fold["seconds"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out.with_suffix(".npz"), **arrays)
    args.out.with_suffix(".json").write_text(json.dumps(jsonable(out), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out.with_suffix('.npz')} ({len(out['folds'])} folds, {time.monotonic() - t0:.0f}s)")
    return 0


def _load(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """``{fold: {"y": ..., base: {"probs", "thresholds", "thresholds_f1", "seconds"}}}`` from every npz given."""
    folds: dict[str, dict[str, Any]] = {}
    for path in paths:
        with np.load(path) as z:
            for key in z.files:
                held, rest = key.split("/", 1)
                fold = folds.setdefault(held, {})
                if rest == "y":
                    if "y" in fold and not np.array_equal(np.nan_to_num(fold["y"], nan=-1), np.nan_to_num(z[key], nan=-1)):
                        raise SystemExit(f"{path}: fold {held} has other rows than an earlier file: not pairable")
                    fold["y"] = z[key]
                    continue
                name, field = rest.split("/", 1)
                fold.setdefault(name, {})[field] = z[key]
    for fold in folds.values():
        for entry in fold.values():
            if isinstance(entry, dict):
                for key in ("thresholds", "thresholds_f1"):
                    if key in entry:
                        entry[key] = {lab: float(v) for lab, v in zip(LABELS, entry[key])}
    return folds


def _pr_auc_diff(a: np.ndarray, b: np.ndarray, y: np.ndarray, resamples: int, rng: np.random.Generator) -> dict:
    from sklearn.metrics import average_precision_score

    point = average_precision_score(y, a) - average_precision_score(y, b)
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(idx):
            diffs.append(average_precision_score(y[idx], a[idx]) - average_precision_score(y[idx], b[idx]))
    return {"a": float(average_precision_score(y, a)), "b": float(average_precision_score(y, b)),
            "difference": float(point), "ci95": [float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))]}


def compare(args: argparse.Namespace) -> int:
    from flagstream.classifier.evaluation.loso import loso_f1_difference

    a, b = args.bases.split(",")
    folds = {h: f for h, f in _load(args.files).items() if a in f and b in f and "y" in f}
    if not folds:
        raise SystemExit(f"no fold has both {a} and {b}")
    rng = np.random.default_rng(0)
    pooled = loso_f1_difference({"folds": folds}, kinds=(a, b), resamples=args.resamples)
    lines = [f"LOSO, {a} minus {b}, paired on the same rows; folds: {', '.join(sorted(folds))}", "",
             f"| label | operating point | {a} F1 | {b} F1 | difference [95% interval] |", "|---|---|---|---|---|"]
    names = {"target": "precision-0.90 threshold", "f1thr": "best-F1 threshold"}
    for lab in LABELS:
        for key in ("target", "f1thr"):
            d = pooled.get(lab, {}).get(key)
            if d:
                lines.append(f"| {lab} | {names[key]} | {d[a]:.3f} | {d[b]:.3f} | {d['difference']:+.3f} "
                             f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] |")
    lines += ["", f"| held-out source | label | positives / rows | {a} PR-AUC | {b} PR-AUC | difference [95%] | "
              f"{a} P/R at 0.90 | {b} P/R at 0.90 |", "|---|---|---|---|---|---|---|---|"]
    per_fold: dict[str, Any] = {}
    for held in sorted(folds):
        f = folds[held]
        for j, lab in enumerate(LABELS):
            y = f["y"][:, j]
            known = ~np.isnan(y)
            yk = y[known]
            if not (yk == 1).any() or (yk == 1).all():
                continue
            pa, pb = f[a]["probs"][known, j], f[b]["probs"][known, j]
            d = _pr_auc_diff(pa, pb, yk, args.resamples, rng)
            pr = {}
            for name, p in ((a, pa), (b, pb)):
                flag = p >= f[name]["thresholds"][lab]
                tp = int((flag & (yk == 1)).sum())
                pr[name] = (tp / max(1, int(flag.sum())), tp / int((yk == 1).sum()))
            per_fold.setdefault(held, {})[lab] = {**d, "precision_recall": pr, "positives": int((yk == 1).sum()),
                                                  "rows": int(known.sum())}
            lines.append(f"| {held} | {lab} | {int((yk == 1).sum())} / {int(known.sum())} | {d['a']:.3f} | {d['b']:.3f} | "
                         f"{d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] | "
                         f"{pr[a][0]:.3f}/{pr[a][1]:.3f} | {pr[b][0]:.3f}/{pr[b][1]:.3f} |")
    secs = {name: sum(float(f[name]["seconds"]) for f in folds.values() if "seconds" in f[name]) for name in (a, b)}
    lines += ["", "fold seconds (train + score, one thread): " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in secs.items())]
    text = "\n".join(lines)
    print(text)
    if args.md:
        args.md.write_text(text + "\n", encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps({"pooled_f1": pooled, "per_fold": per_fold, "seconds": secs}, indent=2) + "\n")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and score LOSO folds for one base")
    r.add_argument("--base", choices=("minilm", "me5"), required=True)
    r.add_argument("--folds", required=True, help="comma list of held-out sources")
    r.add_argument("--steps", type=int, default=400)
    r.add_argument("--out", type=Path, required=True, help="output path without suffix (.npz and .json written)")
    r.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--max-train", type=int, default=20000)
    r.add_argument("--max-val", type=int, default=2000)
    r.add_argument("--max-test", type=int, default=2000)
    r.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=False, help="also the TF-IDF baseline")
    c = sub.add_parser("compare", help="pair two bases' folds and print the table")
    c.add_argument("files", type=Path, nargs="+")
    c.add_argument("--bases", default="me5,minilm")
    c.add_argument("--resamples", type=int, default=1000)
    c.add_argument("--md", type=Path, default=None)
    c.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    return run(args) if args.cmd == "run" else compare(args)


if __name__ == "__main__":
    raise SystemExit(main())
