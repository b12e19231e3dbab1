"""The speed ideas issue 21 asked to try, measured against the shipped engine in one run (interleaved rounds).

Kept so the losers' numbers in bench/RESULTS.md can be reproduced; only the winner is in the product
(``precision: int8`` = ONNX Runtime, classifier/inference/onnx_int8.py). Every variant runs the same posts (the
realistic mix, bench/texts.py) through :class:`flagstream.classifier.inference.runtime.InferenceEngine`'s batching, so only the
arithmetic differs:

- ``fp32``: the engine as shipped (SDPA attention, length-sorted dynamic padding);
- ``eager-attn``: transformers' eager attention instead of SDPA;
- ``round8`` / ``round16``: padded widths rounded up to a multiple (fewer distinct shapes, more padding);
- ``torch-int8``: ``torch.ao.quantization.quantize_dynamic`` (per-tensor int8 Linear layers);
- ``compile``: ``torch.compile(dynamic=True)`` (its compile time is reported apart);
- ``ort-fp32``: the same graph in ONNX Runtime without quantisation;
- ``int8``: what ``precision: int8`` ships (ONNX Runtime, BERT fusions, per-channel int8).

Flag agreement is against ``fp32`` at the model's thresholds. Prints a table; nothing is asserted.

    nice -n 5 python bench/speed_trials.py --posts 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def _rounded(engine, multiple: int):
    """Pad each batch to a multiple of ``multiple`` tokens (capped at max_length)."""
    import torch

    from flagstream.classifier.inference.runtime import InferenceEngine

    def collate(ids, index):
        b = InferenceEngine._collate(engine, ids, index)
        w = b.input_ids.shape[1]
        wide = min(-(-w // multiple) * multiple, engine.max_length)
        if wide > w:
            pad = torch.full((b.input_ids.shape[0], wide - w), engine.pad_id, dtype=torch.long)
            b.input_ids = torch.cat([b.input_ids, pad], 1)
            b.attention_mask = torch.cat([b.attention_mask, torch.zeros_like(pad)], 1)
        return b

    engine._collate = collate
    return engine


def _ort_fp32(model):
    """The shipped int8 recipe minus the quantisation: export + BERT fusions, run by ONNX Runtime in fp32."""
    import tempfile

    import torch
    from onnxruntime.transformers import optimizer

    from flagstream.classifier.inference.onnx_int8 import OnnxInt8Model, _encoder_shape, _LogitsOnly

    d = Path(tempfile.mkdtemp(prefix="flagstream-trial-"))
    dummy = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_LogitsOnly(model).eval(), dummy, str(d / "fp32.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["logits"], opset_version=17,
                          dynamo=False, dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"},
                                                      "logits": {0: "b"}})
    heads, hidden = _encoder_shape(model)
    optimizer.optimize_model(str(d / "fp32.onnx"), model_type="bert", num_heads=heads,
                             hidden_size=hidden).save_model_to_file(str(d / "fused.onnx"))
    return OnnxInt8Model(d / "fused.onnx", torch.get_num_threads(), getattr(model, "head", None))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--posts", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--model", type=Path, default=ROOT / "models" / "flagstream-minilm")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--skip", default="", help="comma list of variants to leave out")
    args = p.parse_args(argv)

    import torch

    from flagstream.classifier.normalize import normalize_text
    from flagstream.classifier.inference.runtime import InferenceEngine
    from flagstream.classifier.inference.scoring import load_scorer
    from texts import realistic_texts

    texts = [normalize_text(t) for t in realistic_texts(args.data_dir, args.posts)]
    if not texts:
        print("no ../shared/data: nothing to measure on", file=sys.stderr)
        return 2
    scorer = load_scorer(args.model, precision="fp32")
    base, tok, ml = scorer.engine.model, scorer.engine.tokenizer, scorer.engine.max_length
    temps = np.asarray(scorer.temperatures, dtype=np.float64)
    thr = np.array([scorer.info.thresholds[l] for l in scorer.info.labels])
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    def engine(model, **kw):
        return InferenceEngine(model, tok, max_length=ml, precision="fp32", inplace=True, **kw)

    variants: dict = {"fp32": engine(copy.deepcopy(base))}
    if "eager-attn" not in skip:
        m = copy.deepcopy(base)
        for mod in m.modules():
            if hasattr(mod, "config") and hasattr(mod.config, "_attn_implementation"):
                mod.config._attn_implementation = "eager"
        variants["eager-attn"] = engine(m)
    for mult in (8, 16):
        if f"round{mult}" not in skip:
            variants[f"round{mult}"] = _rounded(engine(copy.deepcopy(base)), mult)
    if "torch-int8" not in skip:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(base), {torch.nn.Linear}, dtype=torch.qint8)
        variants["torch-int8"] = engine(q)
    compile_s = None
    if "compile" not in skip:
        t0 = time.perf_counter()
        e = engine(torch.compile(copy.deepcopy(base), dynamic=True))
        e.logits(texts)  # compiles (and recompiles) over the shapes this input brings
        compile_s = time.perf_counter() - t0
        variants["compile"] = e
    if "ort-fp32" not in skip:
        e = engine(torch.nn.Identity())
        e.model = _ort_fp32(copy.deepcopy(base))
        variants["ort-fp32"] = e
    if "int8" not in skip:
        variants["int8"] = InferenceEngine(copy.deepcopy(base), tok, max_length=ml, precision="int8", inplace=True)

    first: dict[str, float] = {}
    outs: dict[str, np.ndarray] = {}
    for name, e in variants.items():
        t0 = time.perf_counter()
        outs[name] = e.logits(texts)
        first[name] = len(texts) / (time.perf_counter() - t0)
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.rounds):
        for name, e in variants.items():
            t0 = time.perf_counter()
            e.logits(texts)
            rates[name].append(len(texts) / (time.perf_counter() - t0))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates.items()), flush=True)
    ref = 1 / (1 + np.exp(-outs["fp32"] / temps))
    lengths = [len(x) for x in variants["fp32"].tokenize(texts)]
    print(f"\n{len(texts)} posts, realistic mix, mean {np.mean(lengths):.1f} tokens; {torch.get_num_threads()} threads")
    print(f"{'variant':12} {'warm posts/s':>13} {'vs fp32':>8} {'1st pass':>9} {'max |dp|':>9} {'flag agreement':>15}")
    base_rate = statistics.median(rates["fp32"])
    for name in variants:
        warm = statistics.median(rates[name])
        prob = 1 / (1 + np.exp(-outs[name] / temps))
        agree = ((prob >= thr) == (ref >= thr)).mean()
        print(f"{name:12} {warm:13.1f} {warm / base_rate:7.2f}x {first[name]:9.1f} "
              f"{np.abs(prob - ref).max():9.4f} {100 * agree:14.2f}%")
    if compile_s is not None:
        print(f"compile: first call over the input (compilation included) took {compile_s:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
