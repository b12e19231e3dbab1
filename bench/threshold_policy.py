"""Thresholds that travel (issue 16): which validation policy keeps precision on a never-seen source?

For each LOSO fold model (``runs/loso/<source>/``: the current recipe trained without that source, as for
bench/loop_loso.py), thresholds are picked on the OTHER sources' validation split by each policy, per label at
the model's own per-label target precision, and applied to every trusted row of the held-out source:

* ``pooled``: every validation row counts once (what ``flagstream train`` has shipped so far): the large
  sources decide the threshold;
* ``source_balanced``: every validation source carries the same total weight
  (:func:`flagstream.classifier.training.calibration.source_balanced_weights`), so a threshold must hold on the typical source;
* ``pooled_single_0.90``: pooled, one target (0.90) for both labels instead of the per-label targets.

Pooled over folds (every held-out row once, at its fold's thresholds): precision, recall, F1, and the count of
feeds whose realised precision falls more than 0.10 below the target. Prints a table; ``--json`` keeps it.

Usage: python bench/threshold_policy.py [--folds-dir runs/loso] [--val-rows 4000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loop_loso import scores, source_rows  # noqa: E402

POLICIES = ("pooled", "source_balanced", "pooled_single_0.90")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds-dir", type=Path, default=ROOT / "runs" / "loso")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--val-rows", type=int, default=4000)
    ap.add_argument("--max-rows", type=int, default=4000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from flagstream.classifier.training.calibration import source_balanced_weights, threshold_for_precision
    from flagstream.classifier.data.corpus import load_corpus, targets
    from flagstream.classifier.labels import LABELS
    from flagstream.classifier.manifest import read_manifest

    if not args.data_dir.is_dir():
        print(f"no {args.data_dir}; nothing to measure")
        return 0
    folds = sorted(d for d in args.folds_dir.iterdir() if (d / "manifest.json").is_file())
    ds = load_corpus(args.data_dir)
    val_all = np.flatnonzero((np.asarray(ds["split"]) == "val") & (np.asarray(ds["weak"]) == 0))
    src_all = np.asarray(ds["source"])
    counts = {(p, lab): np.zeros(3, dtype=np.int64) for p in POLICIES for lab in LABELS}  # tp, fp, fn
    rows_out = []
    print("| held out | label | target | policy | threshold | precision | recall | flagged |")
    print("|---|---|---|---|---|---|---|---|")
    for d in folds:
        m = read_manifest(d)
        va = val_all[src_all[val_all] != d.name]
        if len(va) > args.val_rows:
            va = np.sort(np.random.default_rng(13).choice(va, args.val_rows, replace=False))
        val = ds.select(va)
        pv, yv = scores(d, list(val["text"])), targets(val)
        texts, yt = source_rows(args.data_dir, d.name, args.max_rows)
        pt = scores(d, texts)
        for j, lab in enumerate(LABELS):
            known = ~np.isnan(yt[:, j])
            if yt[known, j].sum() < 10:
                continue
            own_target = float(m.extra.get("target_precision", {}).get(lab, 0.9))
            for pol in POLICIES:
                target = 0.90 if pol == "pooled_single_0.90" else own_target
                w = source_balanced_weights(np.asarray(val["source"]), yv[:, j]) if pol == "source_balanced" else None
                thr = threshold_for_precision(pv[:, j], yv[:, j], target, w)[0]
                flag = pt[known, j] >= thr
                pos = yt[known, j] == 1
                tp, fp, fn = int((flag & pos).sum()), int((flag & ~pos).sum()), int((~flag & pos).sum())
                counts[(pol, lab)] += (tp, fp, fn)
                prec = tp / (tp + fp) if tp + fp else float("nan")
                rec = tp / (tp + fn)
                rows_out.append({"held_out": d.name, "label": lab, "target": target, "policy": pol, "threshold": thr,
                                 "precision": prec, "recall": rec, "flagged": tp + fp})
                print(f"| {d.name} | {lab} | {target:.2f} | {pol} | {thr:.3f} | {prec:.3f} | {rec:.3f} | {tp + fp} |")
    print("\npooled over the held-out feeds (each row at its fold's threshold):")
    print("| label | policy | precision | recall | F1 | feeds with precision < target - 0.10 |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for lab in LABELS:
        for pol in POLICIES:
            tp, fp, fn = (int(x) for x in counts[(pol, lab)])
            if tp + fn == 0:
                continue
            prec = tp / (tp + fp) if tp + fp else float("nan")
            rec, f1 = tp / (tp + fn), 2 * tp / (2 * tp + fp + fn)
            bad = sum(1 for r in rows_out if r["label"] == lab and r["policy"] == pol
                      and r["precision"] < r["target"] - 0.10)  # NaN (nothing flagged) is not a miss
            feeds = sum(1 for r in rows_out if r["label"] == lab and r["policy"] == pol)
            summary[f"{lab}/{pol}"] = {"precision": prec, "recall": rec, "f1": f1, "low_precision_feeds": bad,
                                       "feeds": feeds}
            print(f"| {lab} | {pol} | {prec:.3f} | {rec:.3f} | {f1:.3f} | {bad} of {feeds} |")
    if args.json:
        args.json.write_text(json.dumps({"folds": rows_out, "pooled": summary}, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
