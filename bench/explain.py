"""Explanation spans: which occlusion unit to ship, by a deletion test on flagged test-split posts.

    HF_HUB_OFFLINE=1 nice -n 5 python bench/explain.py [--posts 200] [--model models/flagstream-minilm]

For each flagged (post, label) of the test split (human-labelled rows only, scored by the shipped model):
the method's top-3 spans are deleted and the post rescored; "flip" = the label's probability falls below its
threshold. The baseline deletes the same number of randomly chosen units (words / 3-word windows) of the same
post, 5 draws averaged. Cost = CPU seconds of ``explain`` per flagged post (all variants batched through the
scorer) against the scorer's own CPU time per post. Prints one ``EXPLAIN_JSON`` line; no text is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flagstream.classifier.inference.explain import delete_spans, explain, windows, word_spans  # noqa: E402


def flagged_test_posts(data_dir: Path, scorer, limit: int, seed: int) -> list[tuple[str, list[str], np.ndarray]]:
    from flagstream.classifier.data.corpus import load_corpus

    ds = load_corpus(data_dir)
    rows = [r for r in ds if r["split"] == "test" and not r["weak"] and (r["propaganda"] == 1 or r["sectarian"] == 1)]
    random.Random(seed).shuffle(rows)
    labels = list(scorer.info.labels)
    out = []
    for i in range(0, len(rows), 128):
        chunk = rows[i:i + 128]
        probs = scorer.score([r["text"] for r in chunk])
        for r, p in zip(chunk, probs):
            flagged = [lab for lab, v in zip(labels, p) if v >= scorer.info.thresholds[lab]]
            if flagged:
                out.append((r["text"], flagged, p))
        if len(out) >= limit:
            break
    return out[:limit]


def deletion(scorer, posts, spans_per_post, width: int, rng: random.Random, draws: int = 5) -> dict:
    labels = list(scorer.info.labels)
    col = {lab: j for j, lab in enumerate(labels)}
    top_texts, rand_texts, meta = [], [], []
    chars_top, chars_rand = [], []
    for (text, flagged, _p), spans in zip(posts, spans_per_post):
        units = windows(word_spans(text), width)
        for label in flagged:
            chosen = [(s["start"], s["end"]) for s in spans.get(label, [])]
            if not chosen:
                chosen = []
            top_texts.append(delete_spans(text, chosen) or " ")
            chars_top.append(sum(e - s for s, e in chosen))
            for _ in range(draws):
                pick = rng.sample(units, min(len(chosen), len(units))) if chosen else []
                rand_texts.append(delete_spans(text, pick) or " ")
                chars_rand.append(sum(e - s for s, e in pick))
            meta.append(label)
    top = scorer.score(top_texts)
    rand = scorer.score(rand_texts)
    thr = scorer.info.thresholds
    flips_top = [float(top[i, col[lab]] < thr[lab]) for i, lab in enumerate(meta)]
    flips_rand = [float(rand[i * draws + d, col[lab]] < thr[lab]) for i, lab in enumerate(meta) for d in range(draws)]
    base = []
    for (text, flagged, p) in posts:
        base += [float(p[col[lab]]) for lab in flagged]
    drop_top = [b - float(top[i, col[lab]]) for i, (b, lab) in enumerate(zip(base, meta))]
    drop_rand = [base[i] - float(rand[i * draws + d, col[lab]]) for i, lab in enumerate(meta) for d in range(draws)]
    return {"pairs": len(meta), "flip_top": round(float(np.mean(flips_top)), 4),
            "flip_random": round(float(np.mean(flips_rand)), 4),
            "mean_drop_top": round(float(np.mean(drop_top)), 4), "mean_drop_random": round(float(np.mean(drop_rand)), 4),
            "mean_chars_deleted_top": round(float(np.mean(chars_top)), 1),
            "mean_chars_deleted_random": round(float(np.mean(chars_rand)), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--model", default=str(ROOT / "models" / "flagstream-minilm"))
    ap.add_argument("--posts", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    from flagstream.classifier.inference.scoring import load_scorer

    scorer = load_scorer(args.model)
    posts = flagged_test_posts(Path(args.data_dir), scorer, args.posts, args.seed)
    if not posts:
        print("no flagged test-split posts (is the data present?)", file=sys.stderr)
        return 2
    texts = [t for t, _, _ in posts]
    t0 = time.process_time()
    for i in range(0, len(texts), 64):
        scorer.score(texts[i:i + 64])
    scorer_us = (time.process_time() - t0) / len(texts) * 1e6
    results = {"model": scorer.info.ref, "flagged_posts": len(posts),
               "labels": {lab: sum(lab in f for _, f, _ in posts) for lab in scorer.info.labels},
               "scorer_cpu_ms_per_post": round(scorer_us / 1000, 2), "methods": {},
               "load_average": os.getloadavg()[0]}
    for name, width in (("word occlusion", 1), ("3-word window occlusion", 3)):
        t0 = time.process_time()
        spans = explain(scorer, texts, [f for _, f, _ in posts], width=width,
                        base=[p for _, _, p in posts])
        cost = (time.process_time() - t0) / len(posts)
        row = deletion(scorer, posts, spans, width, random.Random(args.seed))
        row["cpu_ms_per_flagged_post"] = round(cost * 1000, 1)
        row["x_scorer_cost"] = round(cost * 1e6 / scorer_us, 1)
        results["methods"][name] = row
        print(f"{name}: top-3 spans deleted -> {100 * row['flip_top']:.1f}% fall below threshold "
              f"(random same-count units: {100 * row['flip_random']:.1f}%); mean score drop {row['mean_drop_top']:.3f} "
              f"vs {row['mean_drop_random']:.3f}; chars deleted {row['mean_chars_deleted_top']} vs "
              f"{row['mean_chars_deleted_random']}; {row['cpu_ms_per_flagged_post']} ms CPU per flagged post "
              f"({row['x_scorer_cost']}x the scorer's {results['scorer_cpu_ms_per_post']} ms)")
    print(f"{len(posts)} flagged test-split posts, model {scorer.info.ref}, load average {results['load_average']:.1f}")
    print("EXPLAIN_JSON " + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
