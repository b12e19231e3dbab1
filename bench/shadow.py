"""What shadow mode costs the stream's scoring step: the served model alone vs served + a shadow candidate.

The candidate is the shipped model with other thresholds, written as ``calibrate --from-decisions`` writes
one (same weights, new version): the common case, and the worst one for the ratio (the candidate is exactly
as expensive as the served model). Both sides run the stream's own code on the same micro-batches: the
parse step, ``flagstream.streaming.loop.batch.score_batch`` with the served scorer, and for the shadow side also
``flagstream.streaming.loop.shadow.Shadow.score`` and building every shadow record (``Shadow.record``). Kafka is left out
(the produce cost of a ~400-byte record per post is small next to a transformer pass). Rounds alternate
between the two sides so that a change in machine load hits both; the medians are printed, and the resident
memory with the served model alone and with the candidate loaded too (each after a warm-up pass).

    nice -n 10 python bench/shadow.py --posts 1024 --batch-size 512 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "flagstream-minilm")
    p.add_argument("--posts", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="scoring threads (0 = torch default)")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = p.parse_args(argv)

    from bench.texts import bench_texts
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.feedback.recalibrate import bump_version, write_recalibrated
    from flagstream.classifier.inference.scoring import load_scorer
    from flagstream.contract.records import Source, now_iso
    from flagstream.streaming.loop.shadow import Shadow
    from flagstream.streaming.loop.batch import parse_batch, score_batch

    texts, origin = bench_texts(args.data_dir if args.data_dir.is_dir() else None, args.posts)
    records = [SimpleNamespace(topic="posts", partition=0, offset=i, timestamp=0, key=str(i).encode(), headers=[],
                               value=json.dumps({"id": f"b{i}", "text": t[:10_000]}).encode()) for i, t in enumerate(texts)]
    batches = [records[i:i + args.batch_size] for i in range(0, len(records), args.batch_size)]
    src = read_manifest(args.model)
    threads = args.threads or None
    with tempfile.TemporaryDirectory() as tmp:
        cand_dir = Path(tmp) / "candidate"
        lowered = {k: round(v * 0.8, 6) for k, v in src.thresholds.items()}
        write_recalibrated(src, cand_dir, bump_version(src.version), lowered, {"note": "bench/shadow.py"})
        rss_start = _rss_mb()
        served = load_scorer(args.model, threads=threads)
        warn = lambda *a, **k: None  # noqa: E731
        shadow = None

        def one_pass(with_shadow: "Shadow | bool") -> tuple[float, int]:
            t0 = time.perf_counter()
            n = 0
            for recs in batches:
                batch = parse_batch(recs, max_text_chars=10_000, max_message_bytes=1_000_000)
                score_batch(batch, served, warn)
                if with_shadow:
                    shadow = with_shadow if isinstance(with_shadow, Shadow) else reuse
                    shadow.score(batch, warn)
                    now = now_iso()
                    for rec, v in batch.verdicts:
                        shadow.record(v, Source(rec.topic, rec.partition, rec.offset, 0), batch.shadow[id(rec)],
                                      served.info.as_dict(), served.info.thresholds, now)
                n += len(batch.verdicts)
            return time.perf_counter() - t0, n

        one_pass(False)  # warm-up: first-call costs (thread pools, allocator) hit neither side
        rss_served = _rss_mb()
        cand = load_scorer(cand_dir, threads=threads)
        reuse = Shadow(cand, served.info, "posts.shadow")  # thresholds only: reuses the served scores
        rescore = Shadow(cand, served.info, "posts.shadow")
        rescore.reuses_served_scores = False  # what a candidate with other weights costs: a second forward pass
        one_pass(rescore)
        rss_both = _rss_mb()
        shadow = reuse
        rates: dict[str, list[float]] = {"served only": [], "served + shadow": [], "served + shadow, rescored": []}
        for r in range(args.rounds):
            for name, flag in (("served only", False), ("served + shadow", reuse),
                               ("served + shadow, rescored", rescore)):
                secs, n = one_pass(flag)
                rates[name].append(n / secs)
                print(f"round {r + 1} {name:16s} {n / secs:8.1f} posts/s ({n} posts, {secs:.2f} s)", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["served + shadow"] / med["served only"]
    ratio_rescored = med["served + shadow, rescored"] / med["served only"]
    load = os.getloadavg()
    print(f"model {served.info.ref} vs candidate {shadow.scorer.info.ref} (thresholds only); {len(texts)} posts "
          f"({origin}), batch {args.batch_size}, {args.rounds} rounds, threads {args.threads or 'default'}")
    print(f"served only: {med['served only']:.1f} posts/s; served + shadow: {med['served + shadow']:.1f} posts/s; "
          f"ratio {ratio:.3f} (a thresholds-only candidate reuses the served scores)")
    print(f"a candidate with other weights (second forward pass): {med['served + shadow, rescored']:.1f} posts/s; "
          f"ratio {ratio_rescored:.3f}")
    print(f"resident memory: {rss_start:.0f} MB before loading, {rss_served:.0f} MB with the served model "
          f"(after a pass), {rss_both:.0f} MB with the candidate too: +{rss_both - rss_served:.0f} MB")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("BENCH_SHADOW " + json.dumps({"served_posts_per_s": round(med["served only"], 1),
                                        "shadow_posts_per_s": round(med["served + shadow"], 1),
                                        "ratio": round(ratio, 4), "ratio_rescored": round(ratio_rescored, 4),
                                        "posts": len(texts), "batch_size": args.batch_size,
                                        "rounds": args.rounds, "origin": origin, "loadavg": [round(x, 2) for x in load],
                                        "rss_mb": {"start": round(rss_start), "served": round(rss_served),
                                                   "served_and_shadow": round(rss_both)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
