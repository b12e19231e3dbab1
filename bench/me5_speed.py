"""Scorer speed, flagstream-minilm vs the me5 encoder, on the same posts in the same run (interleaved rounds).

The me5 side is the base encoder + a head (an adapter merged on load costs nothing at inference, so the speed
of a trained flagstream-me5 is the same). Both go through the project's engine (``classifier.runtime.InferenceEngine``) at the same
max_length. Prints one line per round and the median posts/s of each; nothing is asserted.

    nice -n 5 python -m bench.me5_speed --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from flagstream.classifier.normalize import normalize_text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--posts", type=Path, default=Path("examples/sample_posts.jsonl"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-length", type=int, default=128)
    args = p.parse_args(argv)

    from flagstream.classifier.e5.model import _plain_encoder, load_tokenizer
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.runtime import InferenceEngine
    from flagstream.classifier.transformer import MultiLabelEncoder, load_model

    texts = []
    for line in args.posts.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:  # the sample file has deliberately malformed lines (dead-letter demo)
            continue
        if isinstance(r, dict) and isinstance(r.get("text"), str):
            texts.append(normalize_text(r["text"]))
    minilm, mtok = load_model(read_manifest(Path("models/flagstream-minilm")))
    e5 = MultiLabelEncoder(_plain_encoder(), 2).eval()
    engines = {"flagstream-minilm": InferenceEngine(minilm, mtok, max_length=args.max_length),
               "me5": InferenceEngine(e5, load_tokenizer(), max_length=args.max_length)}
    for eng in engines.values():
        eng.logits(texts[:8])  # warm-up
    rates: dict[str, list[float]] = {k: [] for k in engines}
    for r in range(args.rounds):
        for name, eng in engines.items():
            t0 = time.perf_counter()
            eng.logits(texts)
            rate = len(texts) / (time.perf_counter() - t0)
            rates[name].append(rate)
            print(f"round {r} {name}: {rate:.1f} posts/s ({len(texts)} posts)", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print("median posts/s: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items())
          + f"; me5/minilm = {med['me5'] / med['flagstream-minilm']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
