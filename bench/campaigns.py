"""Campaign grouping benchmark: precision/recall on a repost stream built from real posts, cost, memory.

    HF_HUB_OFFLINE=1 nice -n 5 python bench/campaigns.py [--campaigns 400] [--singletons 6000] [--seed 7]

The stream: distinct real posts from ../shared/data (ISIS-account tweets, implicit-hate posts, Davidson
tweets; at least 8 normalised words, pairwise far apart), some reposted as campaigns of 2-15 members with
the edits reposters make (``RT @user:`` prefixes, links removed/changed/added, one or two words swapped for
a corpus word, a word dropped, a hashtag, case), the rest posted once. Posts arrive shuffled over 12 hours.
Ground truth = which base post a record came from; a pair of records is "grouped" when the tracker gives
them one campaign id. Pairwise precision = grouped pairs that are true / grouped pairs; recall = true pairs
grouped / true pairs. Prints one ``CAMPAIGNS_JSON`` line. No text is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flagstream.streaming.loop.campaigns import CampaignTracker, normalise, shingles  # noqa: E402

csv.field_size_limit(10_000_000)
# Pipeline speed to express the cost against: bench/RESULTS.md, "end to end: flagstream stream 485.0 posts/s".
PIPELINE_POSTS_PER_S = 485.0
FLAGGED_SHARE_E2E = 794 / 6000  # flagged share of the end-to-end bench's mixed stream (same RESULTS.md line)


def real_posts(data_dir: Path) -> list[str]:
    out: list[str] = []
    files = [(data_dir / "isis_fifthtribe" / "tweets.csv", "tweets", ","),
             (data_dir / "latent_hatred_implicit" / "implicit_hate_v1_stg1_posts.tsv", "post", "\t"),
             (data_dir / "davidson_hate_offensive" / "labeled_data.csv", "tweet", ",")]
    for path, col, delim in files:
        if not path.exists():
            continue
        with path.open(encoding="utf-8", errors="replace", newline="") as f:
            for row in csv.DictReader(f, delimiter=delim):
                if row.get(col):
                    out.append(row[col])
    return out


def distinct_bases(texts: list[str], rng: random.Random, limit: int) -> list[str]:
    """Posts at least 8 normalised words long, no two with shingle Jaccard >= 0.3 (so truth is unambiguous)."""
    from datasketch import MinHash, MinHashLSH

    seen, pool = set(), []
    for t in texts:
        n = normalise(t)
        if len(n.split()) >= 8 and n not in seen:
            seen.add(n)
            pool.append(t)
    rng.shuffle(pool)
    lsh = MinHashLSH(threshold=0.3, num_perm=128)
    sets: dict[str, set[bytes]] = {}
    kept: list[str] = []
    for i, t in enumerate(pool):
        sh = set(shingles(t))
        m = MinHash(num_perm=128)
        m.update_batch(list(sh))
        if any(len(sh & sets[c]) / max(1, len(sh | sets[c])) >= 0.3 for c in lsh.query(m)):
            continue
        key = str(i)
        lsh.insert(key, m)
        sets[key] = sh
        kept.append(t)
        if len(kept) >= limit:
            break
    return kept


_URL = re.compile(r"(https?://|www\.)\S+")


def repost(text: str, vocab: list[str], rng: random.Random) -> str:
    words = _URL.sub("", text).split()
    if rng.random() < 0.5 and len(words) > 8:  # swap a word
        words[rng.randrange(len(words))] = rng.choice(vocab)
    if rng.random() < 0.15 and len(words) > 8:  # and another
        words[rng.randrange(len(words))] = rng.choice(vocab)
    if rng.random() < 0.2 and len(words) > 8:  # drop one
        del words[rng.randrange(len(words))]
    out = " ".join(words)
    if rng.random() < 0.2:
        out = out.upper() if rng.random() < 0.3 else out.lower()
    if rng.random() < 0.5:
        out = f"RT @user{rng.randrange(10_000)}: " + out
    if rng.random() < 0.7:
        out += " https://t.co/" + "".join(rng.choice("abcdefghijkLMNOP0123456789") for _ in range(10))
    if rng.random() < 0.2:
        out += " #" + rng.choice(vocab)
    return out


def scorer_cpu_us_per_post(model_dir: Path, texts: list[str]) -> float | None:
    """CPU microseconds per post of the shipped scorer on these texts (batches of 64), same process, same load."""
    if not (model_dir / "manifest.json").exists():
        return None
    from flagstream.classifier.inference.scoring import load_scorer

    scorer = load_scorer(model_dir)
    scorer.score(texts[:64])  # warm-up
    t0 = time.process_time()
    for i in range(0, len(texts), 64):
        scorer.score(texts[i:i + 64])
    return round((time.process_time() - t0) / len(texts) * 1e6, 1)


def pair_scores(pred: list[str], truth: list[int]) -> tuple[float, float, int, int]:
    def pairs(counter: Counter) -> int:
        return sum(n * (n - 1) // 2 for n in counter.values())

    both = pairs(Counter(zip(pred, truth)))
    p_pairs, t_pairs = pairs(Counter(pred)), pairs(Counter(truth))
    return (both / p_pairs if p_pairs else 1.0), (both / t_pairs if t_pairs else 1.0), p_pairs, t_pairs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--campaigns", type=int, default=400)
    ap.add_argument("--singletons", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--similarity", default="0.4,0.5,0.6")
    ap.add_argument("--model", default="",
                    help="model whose scorer CPU time per post the cost is expressed against ('' = use the recorded rate)")
    ap.add_argument("--memory-posts", type=int, default=20_000, help="posts indexed for the memory measurement")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    texts = real_posts(Path(args.data_dir))
    if not texts:
        print(f"no data under {args.data_dir}; nothing to measure", file=sys.stderr)
        return 2
    vocab = sorted({w for t in texts[:20000] for w in normalise(t).split() if len(w) > 3})
    bases = distinct_bases(texts, rng, args.campaigns + args.singletons)
    stream: list[tuple[str, int]] = []
    for b in range(min(args.campaigns, len(bases))):
        size = min(15, 2 + int(rng.expovariate(1 / 3)))
        stream.append((bases[b], b))
        stream += [(repost(bases[b], vocab, rng), b) for _ in range(size - 1)]
    stream += [(bases[b], b) for b in range(args.campaigns, len(bases))]
    rng.shuffle(stream)
    ts = sorted(rng.randrange(12 * 3600 * 1000) for _ in stream)
    truth = [b for _, b in stream]
    results = {"posts": len(stream), "campaigns": args.campaigns, "singletons": len(bases) - args.campaigns,
               "campaign_posts": sum(1 for b in truth if b < args.campaigns), "thresholds": {}}
    for sim in (float(x) for x in args.similarity.split(",")):
        tracker = CampaignTracker(window_s=86_400, max_posts=100_000, similarity=sim)
        t0 = time.process_time()  # CPU time: the machine is shared, wall time would measure the neighbours
        pred = [tracker.assign(f"p{i}", text, t)["id"] for i, ((text, _), t) in enumerate(zip(stream, ts))]
        dt = time.process_time() - t0
        p, r, pp, tp = pair_scores(pred, truth)
        results["thresholds"][str(sim)] = {"precision": round(p, 4), "recall": round(r, 4), "pred_pairs": pp,
                                           "true_pairs": tp, "us_per_post": round(dt / len(stream) * 1e6, 1)}
    # memory: index --memory-posts distinct posts (cycled with an id suffix so shingles differ)
    tracemalloc.start()
    tracker = CampaignTracker(window_s=86_400, max_posts=100_000, similarity=0.4)
    base_mem = tracemalloc.get_traced_memory()[0]
    n = args.memory_posts
    for i in range(n):
        tracker.assign(f"m{i}", f"{texts[i % len(texts)]} {i}", i)
    used = tracemalloc.get_traced_memory()[0] - base_mem
    tracemalloc.stop()
    per_post = used / n
    results["memory"] = {"posts": n, "bytes_per_post": round(per_post), "at_max_posts_mb": round(per_post * 100_000 / 2**20, 1),
                         "at_default_20000_mb": round(per_post * 20_000 / 2**20, 1)}
    us = results["thresholds"].get("0.4", next(iter(results["thresholds"].values())))["us_per_post"]
    scorer_us = scorer_cpu_us_per_post(Path(args.model), texts[:512]) if args.model else None
    # Reference: the recorded end-to-end rate on this 2-core machine (485 posts/s = 2 x 2062 us of CPU per post).
    # The scorer's own CPU time measured here under a shared machine's load is shown, not used: torch's
    # threads spin while waiting and inflate process CPU time many-fold when the cores are oversubscribed.
    per_post_pipeline_us = 2 * 1e6 / PIPELINE_POSTS_PER_S
    results["cost"] = {"scorer_cpu_us_per_post_measured": scorer_us, "pipeline_cpu_us_per_post": round(per_post_pipeline_us),
                       "assign_us_per_flagged_post": us,
                       "share_if_every_post_flagged": round(us / per_post_pipeline_us, 4),
                       "share_at_e2e_flag_rate": round(us * FLAGGED_SHARE_E2E / per_post_pipeline_us, 4)}
    results["load_average"] = os.getloadavg()[0]
    print(f"campaign stream: {results['posts']} posts ({results['campaign_posts']} in {args.campaigns} campaigns, "
          f"{results['singletons']} singletons)")
    for sim, row in results["thresholds"].items():
        print(f"  similarity {sim}: precision {row['precision']:.4f} recall {row['recall']:.4f} "
              f"({row['pred_pairs']} grouped pairs, {row['true_pairs']} true) {row['us_per_post']} us/post")
    print(f"  memory: {results['memory']['bytes_per_post']} B/post -> {results['memory']['at_default_20000_mb']} MB at "
          f"campaign_max_posts=20000 (default), {results['memory']['at_max_posts_mb']} MB at 100000")
    c = results["cost"]
    print(f"  cost (CPU; pipeline {c['pipeline_cpu_us_per_post']} us/post = 2 cores at {PIPELINE_POSTS_PER_S} posts/s; "
          f"load average {results['load_average']:.1f}): {100 * c['share_if_every_post_flagged']:.2f}% if every "
          f"post were flagged, {100 * c['share_at_e2e_flag_rate']:.2f}% at the e2e bench's flag rate")
    print("CAMPAIGNS_JSON " + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
