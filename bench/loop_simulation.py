"""Closing-the-loop simulation (issue 18): recalibrate a feed's threshold from N simulated decisions.

Replays a labelled source as a feed: the shipped model scores every post; posts at or above the shipped
threshold go to review (all decided), unflagged posts are audit-sampled by :mod:`flagstream.streaming.loop.audit` with the
default policy; reviewers answer from the gold labels; the first N decisions in arrival order (review queue
= flagged + audit items, feed order shuffled per run) feed :func:`flagstream.classifier.feedback.thresholds.propose`; the
threshold it proposes (or the shipped one when it refuses) is then judged on the WHOLE source: realised
precision and recall. Repeated over ``--runs`` random feed orders; prints mean and 10th/90th percentiles.

Default feed: the Gab Hate Corpus test file (``gab_hate_corpus/ghc_test.tsv``, hate = hd or cv), which
classifier/data/sources.py does not train on, so the shipped model never saw it. Its "hate" is general hate
(race, religion, gender, ...), wider than flagstream's ``sectarian``: the feed's reviewers' notion of the
label differs from the training one, which is exactly the situation recalibration is for.

Usage: nice -n 5 python bench/loop_simulation.py [--model DIR] [--target 0.9] [--runs 30] [--png out.png]
Scores are cached in /tmp (never in the repository: they are derived from the data).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flagstream.classifier.feedback.thresholds import Evidence, Row, propose  # noqa: E402
from flagstream.streaming.loop.audit import AuditPolicy, audit_fields  # noqa: E402

BUDGETS = (50, 100, 300, 1000)


def load_gab(data_dir: Path) -> tuple[list[str], np.ndarray]:
    texts, y = [], []
    csv.field_size_limit(10**7)
    with (data_dir / "gab_hate_corpus" / "ghc_test.tsv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row.get("text"):
                texts.append(row["text"])
                y.append(int(row["hd"] == "1" or row["cv"] == "1"))
    return texts, np.asarray(y, dtype=float)


def scores_for(model_dir: Path, texts: list[str], label: str) -> np.ndarray:
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.inference.scoring import load_scorer

    m = read_manifest(model_dir)
    key = hashlib.sha256((m.name + m.version + "\n".join(texts)).encode()).hexdigest()[:16]
    cache = Path("/tmp") / f"loop-sim-scores-{key}.json"
    if cache.exists():
        return np.asarray(json.loads(cache.read_text())[label])
    scorer = load_scorer(model_dir)
    probs = np.asarray(scorer.score(texts))
    out = {lab: probs[:, j].tolist() for j, lab in enumerate(m.labels)}
    cache.write_text(json.dumps(out))
    return np.asarray(out[label])


def review_queue(s: np.ndarray, y: np.ndarray, shipped: float, policy: AuditPolicy, label: str,
                 run: int) -> list[tuple[int, Row]]:
    """The decisions a feed produces, in arrival order: every flagged post, plus the audit sample of the rest
    (the stream's own :func:`flagstream.streaming.loop.audit.audit_fields`), each answered from the gold label.
    Returns (feed index, decided row) pairs, so a caller can also export what was decided."""
    order = np.random.default_rng(run).permutation(len(s))
    pol = AuditPolicy(policy.rate, policy.near_rate, policy.near_band, seed=f"sim-{run}")
    queue: list[tuple[int, Row]] = []
    for i in order:
        if s[i] >= shipped:
            queue.append((int(i), Row(float(s[i]), float(y[i]), 1.0, label, "feed")))
        else:
            f = audit_fields(f"p{i}", {label: float(s[i])}, {label: shipped}, pol)
            if f is not None:
                queue.append((int(i), Row(float(s[i]), float(y[i]), f["sampling_weight"], label, "feed", True)))
    return queue


def realised(s: np.ndarray, y: np.ndarray, t: float) -> tuple[float, float]:
    """Precision and recall at threshold ``t`` (precision NaN when nothing is flagged)."""
    flagged = s >= t
    return (float(y[flagged].mean()) if flagged.any() else float("nan")), float(y[flagged].sum() / max(1, y.sum()))


def simulate(s: np.ndarray, y: np.ndarray, shipped: float, target: float, runs: int, policy: AuditPolicy,
             label: str, judge: tuple[np.ndarray, np.ndarray] | None = None,
             ) -> dict[int, list[tuple[float, float, float, bool]]]:
    """budget -> [(threshold used, realised precision, realised recall, moved)] over runs.

    ``judge`` (scores, labels) are the rows the realised figures are measured on; default the feed itself."""
    js, jy = judge if judge is not None else (s, y)
    res: dict[int, list[tuple[float, float, float, bool]]] = {b: [] for b in BUDGETS}
    for run in range(runs):
        queue = [r for _, r in review_queue(s, y, shipped, policy, label, run)]
        for b in BUDGETS:
            p = propose(queue[:b], label, "feed", target, shipped, Evidence())
            t = p.threshold if p.moved else shipped
            prec, rec = realised(js, jy, t)
            res[b].append((t, prec, rec, p.moved))
            REFUSALS.setdefault(b, Counter())[(p.refused or "moved").split(":")[0].split(" (")[0]] += 1
        QUEUE.append(len(queue))
    return res


REFUSALS: dict[int, Counter] = {}
QUEUE: list[int] = []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "flagstream-minilm")
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--label", default="sectarian")
    ap.add_argument("--target", type=float, default=None, help="target precision (default: the model's own)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--audit-rate", type=float, default=0.01)
    ap.add_argument("--audit-near-rate", type=float, default=0.10)
    ap.add_argument("--png", type=Path, default=None)
    args = ap.parse_args()
    from flagstream.classifier.manifest import read_manifest

    if not (args.data_dir / "gab_hate_corpus").is_dir():
        print(f"no {args.data_dir}/gab_hate_corpus; nothing to simulate")
        return 0
    m = read_manifest(args.model)
    shipped = float(m.thresholds[args.label])
    target = args.target or float(m.extra.get("target_precision", {}).get(args.label, 0.9))
    texts, y = load_gab(args.data_dir)
    s = scores_for(args.model, texts, args.label)
    flagged = s >= shipped
    base_p, base_r = float(y[flagged].mean()) if flagged.any() else float("nan"), float(y[flagged].sum() / y.sum())
    print(f"feed: gab_hate_corpus test, {len(y)} posts, {int(y.sum())} hate (hd|cv); model {m.name}@{m.version} "
          f"(never trained on this source); label {args.label}, target precision {target:.2f}")
    print(f"shipped threshold {shipped:.3f}: flags {int(flagged.sum())}, precision {base_p:.3f}, recall {base_r:.3f}")
    pol = AuditPolicy(rate=args.audit_rate, near_rate=args.audit_near_rate)
    res = simulate(s, y, shipped, target, args.runs, pol, args.label)
    print(f"| decisions | moved (of {args.runs}) | threshold (median) | realised precision mean [p10, p90] | "
          f"realised recall mean [p10, p90] |")
    print("|---|---|---|---|---|")
    summary = {}
    for b in BUDGETS:
        arr = np.array([(t, p, r) for t, p, r, _ in res[b]], dtype=float)
        moved = sum(mv for *_, mv in res[b])
        pp, rr = arr[:, 1], arr[:, 2]
        summary[b] = (np.nanmean(pp), np.nanmean(rr))
        print(f"| {b} | {moved} | {np.median(arr[:, 0]):.3f} | {np.nanmean(pp):.3f} [{np.nanpercentile(pp, 10):.3f}, "
              f"{np.nanpercentile(pp, 90):.3f}] | {np.mean(rr):.3f} [{np.percentile(rr, 10):.3f}, {np.percentile(rr, 90):.3f}] |")
    print(f"review queue (flagged + audit items) per run: {min(QUEUE)}-{max(QUEUE)} items: a budget above that "
          "uses the whole queue")
    for b in BUDGETS:
        print(f"outcomes at {b}: {dict(REFUSALS[b])}")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for k, name, color in ((1, "realised precision", "tab:blue"), (2, "realised recall", "tab:orange")):
            vals = [np.array([x[k] for x in res[b]], dtype=float) for b in BUDGETS]
            ax.plot(BUDGETS, [np.nanmean(v) for v in vals], "o-", color=color, label=name)
            ax.fill_between(BUDGETS, [np.nanpercentile(v, 10) for v in vals], [np.nanpercentile(v, 90) for v in vals],
                            color=color, alpha=0.2)
        ax.axhline(target, color="tab:blue", ls=":", lw=1, label=f"target precision {target:.2f}")
        ax.axhline(base_r, color="tab:orange", ls="--", lw=1, label=f"recall at shipped threshold {base_r:.2f}")
        ax.set_xscale("log")
        ax.set_xticks(BUDGETS, [str(b) if b <= min(QUEUE) else f"{b}\n(queue: {min(QUEUE)}-{max(QUEUE)})"
                                for b in BUDGETS])
        ax.set_xlabel("decisions (flagged + audit, arrival order)")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{args.label} on gab_hate_corpus (unseen): {args.runs} runs", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
        print(f"curve written to {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
