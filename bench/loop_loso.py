"""Closing the loop under leave-one-source-out (issue 18): does recalibration from decisions travel to a new feed?

For each LOSO fold model (the current MiniLM recipe trained WITHOUT one source: ``runs/loso/<source>/``, built by
``flagstream train --exclude-source <source>``, see bench/README.md), the held-out source becomes a feed:

* its trusted rows (every split: the fold never saw any of them) are shuffled once (seed 0) and halved: the
  **feed half** is streamed, the **untouched half** is where every realised figure is measured;
* the feed half is scored by the fold model; flagged posts and the stream's own audit sample of the rest
  (:func:`flagstream.streaming.loop.audit.audit_fields`, default policy) go to review in arrival order and are answered from the
  gold labels (:func:`bench.loop_simulation.review_queue`);
* after N = 50, 100, 300, 1,000 decisions :func:`flagstream.classifier.feedback.thresholds.propose` picks the threshold that meets the
  fold's own target precision (or refuses, and the fold's validation-picked threshold stays);
* repeated over ``--runs`` feed orders: mean and 10th/90th percentiles of realised precision and recall.

The target (issue 18): after 300 decisions, realised precision within 0.05 of the target and recall at least the
shipped (validation-picked) threshold's, on that feed.

``--export-decisions N --export-dir D`` also writes, per source, N labelled posts of the feed half as
``flagstream export-decisions`` rows (:func:`labelled_sample`); ``--retrained DIR`` (models trained with
``--exclude-source S --decisions D/S-N.jsonl``, named ``S-N``) measures, on the same untouched half, what
training on those decisions buys against recalibration alone.

Usage: python bench/loop_loso.py [--folds-dir runs/loso] [--runs 30] [--png loop_loso.png]
Scores are cached in /tmp (derived from the data: never in the repository).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loop_simulation import BUDGETS, QUEUE, REFUSALS, realised, review_queue, simulate  # noqa: E402
from flagstream.classifier.feedback.thresholds import Evidence, Row, propose  # noqa: E402
from flagstream.streaming.loop.audit import AuditPolicy  # noqa: E402

MIN_POSITIVES = 20  # per half: fewer and a realised recall is a handful of posts


def source_rows(data_dir: Path, name: str, max_rows: int) -> tuple[list[str], np.ndarray]:
    """The held-out source's trusted rows (every split), at most ``max_rows`` (seeded), and their (n, 2) targets."""
    from flagstream.classifier.data.corpus import load_corpus, targets
    from flagstream.classifier.data.sources import SOURCES

    src = [s for s in SOURCES if s.name == name]
    ds = load_corpus(data_dir, src)
    keep = np.flatnonzero(np.asarray(ds["weak"]) == 0)
    if len(keep) > max_rows:
        keep = np.sort(np.random.default_rng(0).choice(keep, max_rows, replace=False))
    ds = ds.select(keep)
    return list(ds["text"]), targets(ds)


def scores(model_dir: Path, texts: list[str]) -> np.ndarray:
    """(n, 2) probabilities from the model's own scorer, cached in /tmp by manifest (hashes, version) and texts."""
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.inference.scoring import load_scorer

    read_manifest(model_dir)  # a bad model dir fails here, with its reason
    manifest = (model_dir / "manifest.json").read_text(encoding="utf-8")
    key = hashlib.sha256((manifest + "\n".join(texts)).encode()).hexdigest()[:16]
    cache = Path("/tmp") / f"loop-loso-{key}.npy"
    if cache.exists():
        return np.load(cache)
    probs = np.asarray(load_scorer(model_dir).score(texts), dtype=float)
    np.save(cache, probs)
    return probs


def halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(0).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2:])


def pct(v: np.ndarray, q: float) -> float:
    v = v[~np.isnan(v)]
    return float(np.percentile(v, q)) if len(v) else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds-dir", type=Path, default=ROOT / "runs" / "loso")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--max-rows", type=int, default=4000, help="rows per held-out source (seeded sample)")
    ap.add_argument("--audit-rate", type=float, default=0.01)
    ap.add_argument("--audit-near-rate", type=float, default=0.10)
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--export-decisions", type=int, nargs="*", default=[])
    ap.add_argument("--export-dir", type=Path, default=ROOT / "runs" / "loso-decisions")
    ap.add_argument("--retrained", type=Path, default=None, help="dir of models trained on exported decisions")
    args = ap.parse_args()
    from flagstream.classifier.labels import LABELS
    from flagstream.classifier.manifest import read_manifest

    if not args.data_dir.is_dir():
        print(f"no {args.data_dir}; nothing to simulate")
        return 0
    folds = sorted(d for d in args.folds_dir.iterdir() if (d / "manifest.json").is_file())
    pol = AuditPolicy(rate=args.audit_rate, near_rate=args.audit_near_rate)
    results: dict[str, dict] = {}
    retrained: dict[str, tuple] = {}
    print(f"| held-out feed | label | feed / untouched rows (positives) | shipped thr: P / R | decisions | moved "
          f"(of {args.runs}) | realised precision mean [p10, p90] | realised recall mean [p10, p90] |")
    print("|---|---|---|---|---|---|---|---|")
    for d in folds:
        m = read_manifest(d)
        texts, y = source_rows(args.data_dir, d.name, args.max_rows)
        probs = scores(d, texts)
        feed, judge = halves(len(texts))
        for j, lab in enumerate(LABELS):
            known = ~np.isnan(y[:, j])
            f, u = feed[known[feed]], judge[known[judge]]
            if y[f, j].sum() < MIN_POSITIVES or y[u, j].sum() < MIN_POSITIVES:
                continue
            shipped = float(m.thresholds[lab])
            target = float(m.extra.get("target_precision", {}).get(lab, 0.9))
            sp, sr = realised(probs[u, j], y[u, j], shipped)
            REFUSALS.clear()
            QUEUE.clear()
            res = simulate(probs[f, j], y[f, j], shipped, target, args.runs, pol, lab, judge=(probs[u, j], y[u, j]))
            entry = {"feed_rows": len(f), "untouched_rows": len(u), "feed_pos": int(y[f, j].sum()),
                     "untouched_pos": int(y[u, j].sum()), "target": target, "shipped": shipped,
                     "shipped_precision": sp, "shipped_recall": sr, "queue": [min(QUEUE), max(QUEUE)],
                     "budgets": {}}
            for b in BUDGETS:
                arr = np.array([(t, p, r) for t, p, r, _ in res[b]], dtype=float)
                moved = int(sum(mv for *_, mv in res[b]))
                pp, rr = arr[:, 1], arr[:, 2]
                entry["budgets"][b] = {"moved": moved, "threshold_median": float(np.median(arr[:, 0])),
                                       "precision": float(np.nanmean(pp)) if (~np.isnan(pp)).any() else float("nan"),
                                       "precision_p10": pct(pp, 10), "precision_p90": pct(pp, 90),
                                       "recall": float(np.mean(rr)), "recall_p10": pct(rr, 10),
                                       "recall_p90": pct(rr, 90), "outcomes": dict(REFUSALS[b])}
                e = entry["budgets"][b]
                print(f"| {d.name} | {lab} | {len(f)} ({int(y[f, j].sum())}) / {len(u)} ({int(y[u, j].sum())}) | "
                      f"{shipped:.3f}: {sp:.3f} / {sr:.3f} | {b} | {moved} | {e['precision']:.3f} "
                      f"[{e['precision_p10']:.3f}, {e['precision_p90']:.3f}] | {e['recall']:.3f} "
                      f"[{e['recall_p10']:.3f}, {e['recall_p90']:.3f}] |")
            e300 = entry["budgets"][300]
            entry["precision_met_at_300"] = bool(abs(e300["precision"] - target) <= 0.05)
            entry["recall_kept_at_300"] = bool(e300["recall"] >= sr - 1e-9)
            entry["met_at_300"] = entry["precision_met_at_300"] and entry["recall_kept_at_300"]
            print(f"|  | {lab} | review queue per run: {min(QUEUE)}-{max(QUEUE)} items (flagged + audit) |||||")
            results[f"{d.name}/{lab}"] = entry
            if args.retrained is not None:
                retrained[f"{d.name}/{lab}"] = (d.name, lab, j, texts, f, u, y[:, j], probs, shipped, target)
        for n in args.export_decisions:
            export(args.export_dir, d.name, n, texts, feed, y)
    summarise(results)
    if retrained:
        print("\nretraining on N labelled posts of the feed half vs recalibration alone (untouched half; P / R):")
        print("| held-out feed | label | N | PR-AUC fold -> retrained | recalibrated only | retrained (own thresholds) "
              "| retrained + recalibrated |")
        print("|---|---|---|---|---|---|---|")
        for key, a in retrained.items():
            results[key]["retrained"] = compare_retrained(args.retrained, *a, args.export_decisions or [300, 1000])
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float) + "\n")
    if args.png and results:
        plot(results, args.png, args.runs)
    return 0


def labelled_sample(feed: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` posts of the feed half in arrival order (run 0): what reviewers labelled in full.

    A random sample, not the review queue: a ~1,800-post feed half puts only a few hundred items in the queue,
    so 1,000 decisions exist only as a labelling pass; a random sample is self-weighting (every weight 1)."""
    return feed[np.random.default_rng(0).permutation(len(feed))[:n]]


def export(out: Path, source: str, n: int, texts: list[str], feed: np.ndarray, y: np.ndarray) -> Path:
    """``labelled_sample`` as ``flagstream export-decisions`` rows: every label the source knows (gold), else null."""
    from flagstream.classifier.labels import LABELS

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{source}-{n}.jsonl"
    rows = labelled_sample(feed, n)
    with path.open("w", encoding="utf-8") as fh:
        for i in rows:
            rec = {"id": f"{source}-{int(i)}", "text": texts[int(i)],
                   **{lab: (None if np.isnan(y[i, j]) else int(y[i, j])) for j, lab in enumerate(LABELS)}}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} labelled posts to {path}")
    return path


def compare_retrained(root: Path, source: str, label: str, j: int, texts: list[str], feed: np.ndarray,
                      judge: np.ndarray, y: np.ndarray, probs: np.ndarray, shipped: float, target: float,
                      budgets: list[int]) -> dict:
    """On the untouched half: the fold model recalibrated with N labelled posts vs the fold retrained on those
    N posts (``flagstream train --exclude-source S --decisions``), at its own validation thresholds and
    recalibrated with the same N posts."""
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.evaluation.measures import binary_metrics

    out = {}
    base_auc = binary_metrics(probs[judge, j], y[judge], shipped)["pr_auc"]
    for n in budgets:
        d = root / f"{source}-{n}"
        if not (d / "manifest.json").is_file():
            continue
        sample = [i for i in labelled_sample(feed, n) if not np.isnan(y[i])]

        def rows(s: np.ndarray, thr: float) -> list[Row]:
            return [Row(float(s[i]), float(y[i]), 1.0, label, "feed", bool(s[i] < thr)) for i in sample]

        p = propose(rows(probs[:, j], shipped), label, "feed", target, shipped, Evidence())
        recal = realised(probs[judge, j], y[judge], p.threshold if p.moved else shipped)
        m = read_manifest(d)
        new = scores(d, texts)[:, j]
        own = float(m.thresholds[label])
        p2 = propose(rows(new, own), label, "feed", target, own, Evidence())
        res = {"recalibrated": recal, "recal_moved": p.moved, "retrained": realised(new[judge], y[judge], own),
               "retrained_recalibrated": realised(new[judge], y[judge], p2.threshold if p2.moved else own),
               "retrained_recal_moved": p2.moved, "pr_auc_fold": base_auc,
               "pr_auc_retrained": binary_metrics(new[judge], y[judge], own)["pr_auc"]}
        out[n] = res
        print(f"| {source} | {label} | {n} | {base_auc:.3f} -> {res['pr_auc_retrained']:.3f} | "
              f"{recal[0]:.3f} / {recal[1]:.3f}{'' if p.moved else ' (not moved)'} | "
              f"{res['retrained'][0]:.3f} / {res['retrained'][1]:.3f} | {res['retrained_recalibrated'][0]:.3f} / "
              f"{res['retrained_recalibrated'][1]:.3f}{'' if p2.moved else ' (not moved)'} |")
    return out


def summarise(results: dict[str, dict]) -> None:
    if not results:
        print("no fold models with enough positives: train them first (bench/README.md)")
        return
    met = [k for k, e in results.items() if e["met_at_300"]]
    prec = [k for k, e in results.items() if e["precision_met_at_300"]]
    rec = [k for k, e in results.items() if e["recall_kept_at_300"]]
    below = [k for k, e in results.items() if e["shipped_precision"] < e["target"] - 0.05]
    print(f"after 300 decisions: precision within 0.05 of target on {len(prec)} of {len(results)} feeds "
          f"({', '.join(prec) or 'none'}); recall >= the shipped threshold's on {len(rec)} ({', '.join(rec) or 'none'}); "
          f"both (the issue's target) on {len(met)} ({', '.join(met) or 'none'}). Feeds where the shipped threshold's "
          f"precision is more than 0.05 below target, so reaching it must cost recall: {', '.join(below) or 'none'}")
    for b in BUDGETS:
        gaps = [e["budgets"][b]["precision"] - e["target"] for e in results.values()]
        drec = [e["budgets"][b]["recall"] - e["shipped_recall"] for e in results.values()]
        print(f"at {b} decisions: mean |precision - target| {np.nanmean(np.abs(gaps)):.3f}, mean precision - target "
              f"{np.nanmean(gaps):+.3f}, mean recall change vs shipped {np.mean(drec):+.3f}")
    ship_gap = [e["shipped_precision"] - e["target"] for e in results.values()]
    print(f"shipped thresholds: mean |precision - target| {np.nanmean(np.abs(ship_gap)):.3f}, "
          f"mean precision - target {np.nanmean(ship_gap):+.3f}")


def plot(results: dict[str, dict], path: Path, runs: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, k in zip(axes.flat, keys):
        e = results[k]
        for name, color in (("precision", "tab:blue"), ("recall", "tab:orange")):
            ax.plot(BUDGETS, [e["budgets"][b][name] for b in BUDGETS], "o-", color=color, label=f"realised {name}")
            ax.fill_between(BUDGETS, [e["budgets"][b][f"{name}_p10"] for b in BUDGETS],
                            [e["budgets"][b][f"{name}_p90"] for b in BUDGETS], color=color, alpha=0.2)
        ax.axhline(e["target"], color="tab:blue", ls=":", lw=1, label="target precision")
        ax.axhline(e["shipped_recall"], color="tab:orange", ls="--", lw=1, label="recall at shipped threshold")
        ax.set_xscale("log")
        ax.set_xticks(BUDGETS, [str(b) for b in BUDGETS])
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{k} (held out; review queue {e['queue'][0]}-{e['queue'][1]})", fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(f"recalibration from decisions on never-seen feeds: {runs} feed orders, 10-90% bands", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"curves written to {path}")


if __name__ == "__main__":
    raise SystemExit(main())
