"""The CPU inference engine: texts in, logits out, as fast as this machine allows.

It is the only one: the stream and rescoring (through :class:`~flagstream.classifier.inference.transformer.TransformerScorer`),
calibration and evaluation (through :func:`predict_logits`) all run a model through
:class:`InferenceEngine`, so temperatures and thresholds are fitted on the numbers that are served.

Why it is not just ``model(**tokenizer(texts))``: posts are short and their lengths vary a lot, so a
batch padded to its longest member wastes most of its FLOPs on padding. The engine tokenises once,
sorts by length, cuts length-bucketed batches padded only to their own longest member, runs them under
``torch.inference_mode()`` (in bf16 when the CPU has native bf16 matmul), and puts the logits back
in input order. Tokenisation of the next batch overlaps the matmuls of the current one on a
background thread (the fast tokenizer releases the GIL).

Precision is picked by measurement, not by hope (see ``bench/``): ``"auto"`` is bf16 on CPUs with
AMX or AVX-512-BF16 and fp32 elsewhere; ``"fp32"`` is the reference every fast path is compared with.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "int8")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (musl, macOS): see :meth:`InferenceEngine._release_freed_memory`."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


TRIM_INTERVAL_S = 1.0  # at most one malloc_trim per second: it costs about a millisecond


def native_bf16() -> bool:
    """True when bf16 matmuls run on hardware (AMX tiles or AVX-512 BF16 dot products)."""
    flags = cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str) -> str:
    """Map ``"auto"`` to what this CPU runs fastest without losing flags; validate the rest."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    if precision == "bf16" and not native_bf16():
        log.warning("bf16 requested on a CPU without native bf16 matmul; it will be emulated and slow")
    return precision


@dataclass
class _Batch:
    """One padded batch: positions in the caller's list and the tensors to feed the model."""

    index: np.ndarray
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


class InferenceEngine:
    """Length-bucketed, dynamically padded, optionally bf16 inference over an HF-style classifier.

    ``model`` is called as ``model(input_ids=..., attention_mask=...)`` and must return an object
    with ``.logits``. ``batch_size`` bounds the posts per forward pass; batches are further capped at
    ``max_tokens`` padded tokens so a run of long posts cannot blow up activation memory, and cut
    where padding would cost more than an extra forward pass (see :meth:`_plan`).

    ``inplace=True`` lets the engine convert the model's own weights (bf16, frozen): for a scorer that
    owns its model. By default a lower-precision copy is made and the caller's model keeps its fp32,
    trainable weights (a model that is still to be saved, or trained further).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        *,
        max_length: int,
        precision: str = "auto",
        batch_size: int = 64,
        threads: int = 0,
        max_tokens: int | None = None,
        batch_overhead_tokens: int = 96,
        overlap: bool = True,
        inplace: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if threads and threads > 0:
            torch.set_num_threads(int(threads))
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.max_tokens = int(max_tokens) if max_tokens else self.batch_size * 128
        self.batch_overhead_tokens = int(batch_overhead_tokens)
        self.precision = resolve_precision(precision)
        self.overlap = overlap
        self.pad_id = int(getattr(tokenizer, "pad_token_id", 0) or 0)
        self.model = self._prepare(model, self.precision, inplace)
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core
        self._last_trim = 0.0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flagstream-tok") if overlap else None

    # ------------------------------------------------------------------------------------
    @staticmethod
    def _prepare(model: torch.nn.Module, precision: str, inplace: bool) -> torch.nn.Module:
        model = model.eval()
        if inplace:
            for p in model.parameters():
                p.requires_grad_(False)
        if precision == "bf16":
            model = (model if inplace else copy.deepcopy(model)).to(torch.bfloat16)
        elif precision == "int8":
            # ONNX Runtime per-channel int8 (classifier/inference/onnx_int8.py): measured faster than torch's dynamic
            # int8 and closer to fp32 (bench/RESULTS.md). The caller's torch weights are left untouched.
            from flagstream.classifier.inference.onnx_int8 import OnnxInt8Model

            return OnnxInt8Model.from_torch(model if inplace else copy.deepcopy(model))
        else:
            model = model.float()
        return model

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, truncated to ``max_length``, no padding (that is per batch)."""
        enc = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_length, padding=False,
            return_attention_mask=False, return_token_type_ids=False,
        )
        return enc["input_ids"]

    def _plan(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Split positions into batches of similar length, minimising padded tokens + per-batch cost.

        Texts are sorted by length, so a batch is a contiguous run and its padded width is its last
        (longest) member. A small dynamic programme picks the cut points: every batch costs its padded
        tokens plus ``batch_overhead_tokens`` (the fixed cost of one forward pass, in token-equivalents),
        capped at ``batch_size`` texts and ``max_tokens`` padded tokens. On a stream micro-batch of 64
        posts of mixed length this splits off the few long ones instead of padding everything to them.
        """
        order = np.argsort(lengths, kind="stable")
        widths = lengths[order].astype(np.int64)
        n = len(order)
        best = np.zeros(n + 1, dtype=np.float64)
        cut = np.zeros(n + 1, dtype=np.int64)
        for j in range(1, n + 1):
            lo = max(0, j - self.batch_size)
            sizes = j - np.arange(lo, j)
            padded = sizes * int(widths[j - 1])
            cost = best[lo:j] + padded + self.batch_overhead_tokens
            cost[(padded > self.max_tokens) & (sizes > 1)] = np.inf
            k = int(np.argmin(cost))
            best[j], cut[j] = cost[k], lo + k
        batches: list[np.ndarray] = []
        j = n
        while j > 0:
            i = int(cut[j])
            batches.append(order[i:j])
            j = i
        batches.reverse()
        return batches

    def _collate(self, ids: list[list[int]], index: np.ndarray) -> _Batch:
        width = max(len(ids[i]) for i in index)
        input_ids = np.full((len(index), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(index), width), dtype=np.int64)
        for row, i in enumerate(index):
            seq = ids[i]
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return _Batch(index, torch.from_numpy(input_ids), torch.from_numpy(mask))

    def _forward(self, batch: _Batch) -> np.ndarray:
        out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        return out.logits.float().numpy()

    def _batches(self, texts: Sequence[str], chunk: int) -> Iterator[_Batch]:
        """Batches over ``texts``; with overlap, the next chunk is tokenised while this one computes."""
        def prepare(lo: int) -> list[_Batch]:
            part = texts[lo: lo + chunk]
            ids = self.tokenize(part)
            lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
            return [
                _Batch(b.index + lo, b.input_ids, b.attention_mask)
                for b in (self._collate(ids, idx) for idx in self._plan(lengths))
            ]

        starts = list(range(0, len(texts), chunk))
        if self._pool is None or len(starts) == 1:
            for lo in starts:
                yield from prepare(lo)
            return
        pending: Future = self._pool.submit(prepare, starts[0])
        for k in range(len(starts)):
            ready = pending.result()
            if k + 1 < len(starts):
                pending = self._pool.submit(prepare, starts[k + 1])
            yield from ready

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits, float32 ``(len(texts), num_labels)``, in input order."""
        n = len(texts)
        if n == 0:
            head = getattr(self.model, "head", None)  # MultiLabelEncoder; HF classifiers carry config.num_labels
            num_labels = int(getattr(head, "out_features", 0) or getattr(getattr(self.model, "config", None), "num_labels", 0) or 0)
            return np.zeros((0, num_labels), dtype=np.float32)
        # Sorting within a chunk of a few batches keeps padding low while letting the
        # tokeniser thread work one chunk ahead of the model.
        chunk = max(self.batch_size * 8, 512)
        out: np.ndarray | None = None
        with self._lock, torch.inference_mode():
            for batch in self._batches(texts, chunk):
                res = self._forward(batch)
                if out is None:
                    out = np.empty((n, res.shape[1]), dtype=np.float32)
                out[batch.index] = res
            self._release_freed_memory()
        assert out is not None
        return out

    def _release_freed_memory(self) -> None:
        """Hand memory freed by this pass back to the OS.

        Every batch has its own (size, length) shape, so glibc's heap fills with free blocks of odd sizes
        that it keeps: measured on 15,000 varied posts, RSS climbed 533 -> 892 MB (and 2.5 GB over a
        100,000-row archive) with or without ``MALLOC_ARENA_MAX=1``; with a trim after each batch it
        stayed at 476-495 MB at the same speed. A long-running stream needs that to stay flat.
        """
        trim = _malloc_trim()
        now = time.monotonic()
        if trim is not None and now - self._last_trim >= TRIM_INTERVAL_S:
            self._last_trim = now
            trim(0)


def predict_logits(model: torch.nn.Module, tokenizer, texts: Sequence[str], max_length: int, *,
                   precision: str = "auto", progress: bool = False, **engine_options) -> np.ndarray:
    """Raw logits of already-normalised texts through :class:`InferenceEngine` (calibration, evaluation, LOSO).

    The same engine, precision rule and batching as the served scorer, without taking the model over:
    the caller's weights stay as they are (see ``inplace``). ``progress`` shows a bar over chunks.
    """
    eng = InferenceEngine(model, tokenizer, max_length=max_length, precision=precision, **engine_options)
    try:
        chunk = eng.batch_size * 16
        if not progress or len(texts) <= chunk:
            return eng.logits(texts)
        from tqdm.auto import tqdm

        parts = [eng.logits(texts[s:s + chunk]) for s in tqdm(range(0, len(texts), chunk), desc="score", unit="chunk")]
        return np.concatenate(parts, axis=0)
    finally:
        eng.close()


def default_threads() -> int:
    """Threads torch would use: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
