"""The compute roofline: what this CPU's matmul units can do, and what the model needs per post.

Peak: the best measured GEMM rate over a few shapes, including the model's own (tokens x 384 x 1536),
in fp32 and bf16, with the benchmark's thread count. Work: the encoder's *useful* FLOPs per post at
its real token count (no padding counted), from the architecture:

    per layer and token: QKV 3*2*H*H + output 2*H*H + FFN 2*2*H*I   (dense)
                         + 2*2*L*H                                   (scores QK^T and weighted sum AV)

so a scorer that wastes FLOPs on padding, or runs ops outside matmuls slowly, scores a lower fraction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch


def matmul_flops(dtype: torch.dtype, threads: int, seconds: float = 1.0,
                 shapes: Sequence[tuple[int, int, int]] = ((2048, 384, 1536), (2048, 1536, 384), (1536, 1536, 1536))) -> float:
    """Best FLOP/s over ``shapes`` (each timed for ~``seconds``/len(shapes)), with ``threads`` threads."""
    torch.set_num_threads(threads)
    best = 0.0
    with torch.inference_mode():
        for m, k, n in shapes:
            a = torch.randn(m, k).to(dtype)
            b = torch.randn(k, n).to(dtype)
            for _ in range(3):
                a @ b
            reps, start = 0, time.perf_counter()
            budget = seconds / len(shapes)
            while True:
                a @ b
                reps += 1
                elapsed = time.perf_counter() - start
                if elapsed >= budget and reps >= 3:
                    break
            best = max(best, 2.0 * m * k * n * reps / elapsed)
    return best


def encoder_flops_per_post(token_lengths: Sequence[int], hidden: int = 384, intermediate: int = 1536,
                           layers: int = 6, labels: int = 2) -> float:
    """Mean useful FLOPs per post for a BERT encoder at these (unpadded) token counts."""
    lengths = np.asarray(token_lengths, dtype=np.float64)
    dense = layers * lengths * (8 * hidden * hidden + 4 * hidden * intermediate)
    attention = layers * 4 * lengths * lengths * hidden
    head = 2 * hidden * labels
    return float(np.mean(dense + attention + head))


def model_shape(model) -> dict[str, int]:
    """Hidden size, FFN size and depth of an HF BERT-style model (or a wrapper with ``.encoder``)."""
    cfg = getattr(model, "config", None) or getattr(getattr(model, "encoder", None), "config", None)
    return {"hidden": int(cfg.hidden_size), "intermediate": int(cfg.intermediate_size),
            "layers": int(cfg.num_hidden_layers)}
