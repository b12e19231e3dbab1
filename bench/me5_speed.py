"""Scorer speed for the multilingual encoder (me5) and for flagstream-minilm, each against its own pipeline.

Issue 21 asks for the scorer-vs-``transformers.pipeline`` ratios of the multilingual model too. The me5 side
is the converted multilingual-e5-small base + a two-label head (a LoRA adapter is merged on load, so a
trained flagstream-me5 costs the same). Each model runs through the project's engine
(``flagstream.classifier.inference.runtime.InferenceEngine``) in fp32 and int8 (ONNX Runtime, when installed), and through
``pipeline("text-classification")`` over the same weights at the pipeline's best batch size; rounds are
interleaved so drift in the machine's speed hits every variant alike. Posts: the realistic mix
(``bench/texts.py``) when ../shared/data is present, else the examples file. Nothing is asserted.

    nice -n 5 python -m bench.me5_speed --posts 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def _texts(data_dir: Path, n: int) -> tuple[list[str], str]:
    from texts import realistic_texts

    texts = realistic_texts(data_dir, n) if data_dir.is_dir() else []
    if texts:
        return texts, "../shared/data realistic mix"
    rows = []
    for line in (ROOT / "examples" / "sample_posts.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:  # the sample file has deliberately malformed lines (dead-letter demo)
            continue
        if isinstance(r, dict) and isinstance(r.get("text"), str):
            rows.append(r["text"])
    return rows[:n], "examples/sample_posts.jsonl"


def _pipeline(model, tokenizer, max_length: int):
    """``pipeline`` over the same weights: the encoder re-expressed as a PreTrainedModel (bench/model.py)."""
    import torch
    from transformers import pipeline

    from model import _pretrained_wrapper

    config = model.encoder.config.__class__.from_dict({
        **model.encoder.config.to_dict(), "num_labels": 2, "problem_type": "multi_label_classification",
        "id2label": {0: "propaganda", 1: "sectarian"}, "label2id": {"propaganda": 0, "sectarian": 1}})
    wrapper = _pretrained_wrapper()(config)
    wrapper.bert.load_state_dict(model.encoder.state_dict(), strict=False)
    wrapper.classifier.load_state_dict(model.head.state_dict())
    wrapper.eval()
    torch.set_grad_enabled(False)
    return pipeline("text-classification", model=wrapper, tokenizer=tokenizer, device=-1, top_k=None,
                    function_to_apply="sigmoid", truncation=True, max_length=max_length)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--posts", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = p.parse_args(argv)

    import logging

    import torch
    from transformers.utils import logging as hf_logging

    from flagstream.classifier.bases.e5.model import _plain_encoder, load_tokenizer
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.normalize import normalize_text
    from flagstream.classifier.inference.runtime import InferenceEngine
    from flagstream.classifier.bases.encoder import MultiLabelEncoder
    from flagstream.classifier.inference.transformer import load_model

    hf_logging.set_verbosity_error()
    logging.getLogger("transformers.pipelines.base").setLevel(logging.CRITICAL)
    raw, origin = _texts(args.data_dir, args.posts)
    texts = [normalize_text(t) for t in raw]
    minilm, mtok = load_model(read_manifest(ROOT / "models" / "flagstream-minilm"))
    torch.manual_seed(13)
    e5 = MultiLabelEncoder(_plain_encoder(), 2).eval()
    etok = load_tokenizer()
    models = {"minilm": (minilm, mtok), "me5": (e5, etok)}
    precisions = ["fp32"] + (["int8"] if importlib.util.find_spec("onnxruntime") else [])
    variants = {}
    for name, (model, tok) in models.items():
        for prec in precisions:
            variants[f"{name} {prec}"] = InferenceEngine(model, tok, max_length=args.max_length, precision=prec).logits
        pipe = _pipeline(model, tok, args.max_length)
        tune = {}
        for bs in (1, 8, 16, 32, 64):
            t0 = time.perf_counter()
            pipe(texts[:128], batch_size=bs)
            tune[bs] = 128 / (time.perf_counter() - t0)
        best = max(tune, key=tune.get)
        print(f"{name} pipeline batch-size tuning (posts/s on 128 posts): "
              + ", ".join(f"bs {k}: {v:.1f}" for k, v in tune.items()), flush=True)
        variants[f"{name} pipeline (bs {best})"] = lambda xs, pipe=pipe, best=best: pipe(xs, batch_size=best)
    lengths = {n: np.mean([len(x) for x in tok(texts, truncation=True, max_length=args.max_length)["input_ids"]])
               for n, (_, tok) in models.items()}
    print(f"{len(texts)} posts ({origin}); mean tokens: "
          + ", ".join(f"{k} {v:.1f}" for k, v in lengths.items()) + f"; {torch.get_num_threads()} threads", flush=True)
    ref = {}
    for key, fn in variants.items():  # warm-up + parity reference
        out = fn(texts[:200])
        if key.endswith("fp32"):
            ref[key.split()[0]] = out
        elif key.endswith("int8"):
            z0 = ref[key.split()[0]]
            p0, p1 = 1 / (1 + np.exp(-z0)), 1 / (1 + np.exp(-out))
            print(f"{key}: max |dp| vs fp32 {np.abs(p0 - p1).max():.4f} on 200 posts (untrained head: no thresholds)")
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.rounds):
        for key, fn in variants.items():
            t0 = time.perf_counter()
            fn(texts)
            rates[key].append(len(texts) / (time.perf_counter() - t0))
            print(f"round {r} {key}: {rates[key][-1]:.1f} posts/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    for name in models:
        base = next(v for k, v in med.items() if k.startswith(f"{name} pipeline"))
        print(f"{name}: " + ", ".join(f"{k.split(' ', 1)[1]} {v:.1f} posts/s ({v / base:.2f}x its pipeline)"
                                       for k, v in med.items() if k.startswith(name + " ")))
    print("me5/minilm (fp32 engine): " + f"{med['me5 fp32'] / med['minilm fp32']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
