"""Leave-one-source-out: train without a source, test on all of it; the best predictor of a never-seen feed.

Each fold trains both the transformer (a short schedule, ``steps``) and the TF-IDF baseline on the same
sampled rows of the other sources, picks thresholds on their validation split, and is scored on the
held-out source through the one inference engine (:func:`flagstream.classifier.inference.runtime.predict_logits`) and the
one score formula (:func:`flagstream.classifier.interface.probabilities`). Pooling and a paired bootstrap say
whether a gap between the two models is more than noise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from flagstream.classifier.training.calibration import fit_temperature
from flagstream.classifier.data.corpus import targets
from flagstream.classifier.evaluation.evaluate import choose_f1_thresholds, choose_thresholds, fit_baseline
from flagstream.classifier.interface import probabilities
from flagstream.classifier.labels import LABELS
from flagstream.classifier.evaluation.measures import binary_metrics, fmt

log = logging.getLogger(__name__)

LOSO_DEFAULT = ("isis_fifthtribe", "latent_hatred", "germeval_2026", "conan", "mlma", "osact2022")


def loso(ds: Any, holdouts: Sequence[str], *, steps: int, target: float, seed: int = 13, max_test: int = 2000,
         max_val: int = 2000, max_train: int = 20000, transformer: bool = True, baseline: bool = True,
         progress: bool = True, base: str = "minilm") -> dict[str, Any]:
    """Train without each held-out source (transformer: ``steps`` optimizer steps of ``base``'s recipe), test on it.

    Both models see the same (sub-sampled, ``max_train``) training rows of a fold, so the comparison is fair; and
    the rows depend only on ``seed`` and the corpus, so two runs with different ``base`` can be paired row by row.
    """
    from flagstream.classifier.data.splits import leave_one_source_out

    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"base": base, "steps": steps, "max_train": max_train, "max_test": max_test, "target": target, "folds": {}}
    srcs, spl = np.asarray(ds["source"]), np.asarray(ds["split"])
    weak = np.asarray(ds["weak"], dtype=bool)
    for held, tr, va, te in leave_one_source_out(srcs, spl, holdouts):
        t0 = time.monotonic()
        va = va[~weak[va]]
        te = te[~weak[te]]
        if len(va) > max_val:
            va = np.sort(rng.choice(va, max_val, replace=False))
        if len(te) > max_test:
            te = np.sort(rng.choice(te, max_test, replace=False))
        if len(tr) > max_train:
            tr = np.sort(rng.choice(tr, max_train, replace=False))
        train, val, test = ds.select(tr), ds.select(va), ds.select(te)
        fold: dict[str, Any] = {"train_rows": len(train), "test_rows": len(test)}
        yv, yt = targets(val), targets(test)
        if baseline:
            bm = fit_baseline(train, seed)
            pv, pt = bm.predict_proba(list(val["text"])), bm.predict_proba(list(test["text"]))
            fold["baseline"] = _operating_points(pv, yv, pt, yt, target)
        if transformer:
            from flagstream.classifier.bases import registry as bases
            from flagstream.classifier.inference.runtime import predict_logits
            from flagstream.classifier.training.train import Trainer

            cfg = bases.train_config(base, max_steps=steps, seed=seed, checkpoint_every=10**9, time_budget_s=0.0)
            model, tok = bases.load_base(base, len(LABELS), seed)
            Trainer(model, tok, cfg, None).fit(list(train["text"]), targets(train),
                                               np.asarray(train["weight"], dtype=np.float32), progress=progress)
            zv = predict_logits(model, tok, list(val["text"]), cfg.max_length)
            zt = predict_logits(model, tok, list(test["text"]), cfg.max_length)
            temps = [fit_temperature(zv[:, j], yv[:, j]) for j in range(len(LABELS))]
            pv, pt = probabilities(zv, temps), probabilities(zt, temps)
            fold["transformer"] = _operating_points(pv, yv, pt, yt, target)
            del model
        fold["y"] = yt
        fold["seconds"] = round(time.monotonic() - t0, 1)
        out["folds"][held] = fold
        log.info("loso fold done", extra={"held_out": held, "seconds": fold["seconds"]})
        if progress:
            print(f"LOSO {held}: " + "; ".join(
                f"{kind} " + ", ".join(f"{lab} F1 {fmt(fold[kind]['metrics'][lab]['f1'])}" for lab in LABELS)
                for kind in ("transformer", "baseline") if kind in fold), flush=True)
    pool_loso(out)
    return out


def _f1_pair(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1 of the two compared models from (..., 6) counts: tp, fp, fn of each, in that order."""
    tp_t, fp_t, fn_t, tp_b, fp_b, fn_b = (counts[..., i] for i in range(6))
    return 2 * tp_t / np.maximum(1, 2 * tp_t + fp_t + fn_t), 2 * tp_b / np.maximum(1, 2 * tp_b + fp_b + fn_b)


def loso_f1_difference(out: dict[str, Any], *, kinds: tuple[str, str] = ("transformer", "baseline"),
                       resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Pooled LOSO F1, ``kinds[0]`` minus ``kinds[1]`` (default transformer minus baseline), with a paired 95%
    bootstrap interval, per label and operating point.

    A pooled F1 rests on a few hundred positives at a high-precision threshold, so a gap of 0.02 can be noise:
    the interval says whether it is. Rows are resampled within each fold (the same rows for both models), every
    row keeping its fold's thresholds. Needs the folds' test probabilities, so it runs where LOSO runs.
    """
    rng = np.random.default_rng(seed)
    res: dict[str, Any] = {}
    first, second = kinds
    folds = [f for f in out["folds"].values() if first in f and second in f
             and "probs" in f[first] and "probs" in f[second] and "y" in f]
    if not folds:
        return res
    for j, lab in enumerate(LABELS):
        for key in ("thresholds", "thresholds_f1"):
            counts = []  # per fold: (n, 6) ints -> tp, fp, fn of kinds[0] then kinds[1]
            for f in folds:
                y = np.asarray(f["y"], dtype=float)[:, j]
                known = ~np.isnan(y)
                if not (y[known] == 1).any():
                    continue
                pos = y[known] == 1
                cols = []
                for kind in kinds:
                    flag = np.asarray(f[kind]["probs"], dtype=float)[known, j] >= f[kind][key][lab]
                    cols += [flag & pos, flag & ~pos, ~flag & pos]
                counts.append(np.stack(cols, axis=1).astype(np.int64))
            if not counts:
                continue
            total = sum(c.sum(axis=0) for c in counts)
            ft, fb = _f1_pair(total)
            boot = np.zeros((resamples, 6), dtype=np.int64)
            for c in counts:
                idx = rng.integers(0, len(c), size=(resamples, len(c)))
                boot += c[idx].sum(axis=1)
            bt, bb = _f1_pair(boot)
            diff = bt - bb
            res.setdefault(lab, {})["f1thr" if key == "thresholds_f1" else "target"] = {
                first: float(ft), second: float(fb), "difference": float(ft - fb),
                "ci95": [float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975))],
                "p_not_better": float((diff <= 0).mean()), "resamples": resamples}
    return res


def _operating_points(pv: np.ndarray, yv: np.ndarray, pt: np.ndarray, yt: np.ndarray, target: float) -> dict[str, Any]:
    """A LOSO fold's test metrics at two thresholds picked on the other sources' validation split:
    the product's (precision ``target``) and the best-F1 one (the F1 a threshold tuned for F1 gets)."""
    thr, thr_f1 = choose_thresholds(pv, yv, target), choose_f1_thresholds(pv, yv)
    return {"thresholds": thr, "thresholds_f1": thr_f1, "probs": pt,
            "metrics": {lab: binary_metrics(pt[:, j], yt[:, j], thr[lab]) for j, lab in enumerate(LABELS)},
            "metrics_f1": {lab: binary_metrics(pt[:, j], yt[:, j], thr_f1[lab]) for j, lab in enumerate(LABELS)}}


def pool_loso(out: dict[str, Any]) -> dict[str, Any]:
    """Pooled (every held-out row once, with its fold's thresholds) and macro metrics over LOSO folds."""
    for kind in ("transformer", "baseline"):
        pooled = {}
        for j, lab in enumerate(LABELS):
            entry: dict[str, Any] = {}
            for key, suffix in (("metrics", ""), ("metrics_f1", "_f1thr")):
                tp = fp = fn = 0
                f1s, aucs = [], []
                for fold in out["folds"].values():
                    if kind not in fold or key not in fold[kind]:
                        continue
                    m = fold[kind][key][lab]
                    if m["pos"] > 0:
                        tp, fp, fn = tp + m["tp"], fp + m["fp"], fn + m["fn"]
                        f1s.append(m["f1"])
                        aucs.append(m["pr_auc"])
                if not f1s:
                    continue
                entry.update({f"pooled_f1{suffix}": 2 * tp / (2 * tp + fp + fn) if tp + fn else float("nan"),
                              f"pooled_precision{suffix}": tp / (tp + fp) if tp + fp else float("nan"),
                              f"pooled_recall{suffix}": tp / (tp + fn) if tp + fn else float("nan"),
                              f"macro_f1{suffix}": float(np.mean(f1s)), f"folds{suffix}": len(f1s)})
                if not suffix:
                    entry["macro_pr_auc"] = float(np.nanmean(aucs))
            pooled[lab] = entry
        if any(kind in f for f in out["folds"].values()):
            out[kind] = pooled
    diff = loso_f1_difference(out)
    if diff:  # absent when re-pooled from a loso.json (no probabilities): keep the stored one
        out["f1_difference"] = diff
    return out
