"""Explanations: the few character spans of a flagged post that drove each flagged label's score.

Method: occlusion. Each word (or window of words) is deleted in turn, every variant of every flagged post in
the batch goes through the scorer in one call, and a span's weight for a label is how much the label's
probability falls without it. The top spans with a positive weight are kept. It needs only the narrow
:class:`~flagstream.classifier.inference.scoring.Scorer` interface (no gradients, any backend), and its cost is paid for flagged
posts only. The choice (single words vs. 3-word windows) was made by a deletion test (bench/explain.py;
numbers in bench/RESULTS.md and docs/explanations.md).

Offsets are Python string indices (code points), end exclusive, into the post text as received.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flagstream.classifier.inference.scoring import Scorer

_WORD = re.compile(r"\S+")
MAX_WORDS = 64  # occlude at most this many words per post (long posts: the first 64), bounding the cost
TOP_K = 3


def word_spans(text: str, max_words: int = MAX_WORDS) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _WORD.finditer(text)][:max_words]


def windows(spans: Sequence[tuple[int, int]], width: int) -> list[tuple[int, int]]:
    """Consecutive groups of ``width`` words (stride 1) as single spans."""
    if width <= 1 or len(spans) <= width:
        return list(spans) if width <= 1 else ([(spans[0][0], spans[-1][1])] if spans else [])
    return [(spans[i][0], spans[i + width - 1][1]) for i in range(len(spans) - width + 1)]


def delete_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    out, pos = [], 0
    for start, end in sorted(spans):
        if start < pos:
            start = pos
        out.append(text[pos:start])
        pos = max(pos, end)
    out.append(text[pos:])
    return " ".join("".join(out).split())


def explain(scorer: Scorer, texts: Sequence[str], flagged: Sequence[Sequence[str]], *, width: int = 1,
            top_k: int = TOP_K, max_words: int = MAX_WORDS, base: np.ndarray | None = None,
            batch_size: int = 256) -> list[dict[str, list[dict[str, Any]]]]:
    """Per text, label -> up to ``top_k`` spans ``{"start", "end", "weight"}`` (start order).

    ``flagged[i]`` are the labels to explain for ``texts[i]`` (texts with none cost nothing). ``base`` are
    the texts' own scores if the caller has them (the pipeline does), saving one forward pass per text.
    """
    labels = list(scorer.info.labels)
    col = {label: j for j, label in enumerate(labels)}
    todo = [i for i, f in enumerate(flagged) if f]
    cands: dict[int, list[tuple[int, int]]] = {i: windows(word_spans(texts[i], max_words), width) for i in todo}
    variants: list[str] = []
    owner: list[tuple[int, int]] = []
    for i in todo:
        for k, span in enumerate(cands[i]):
            variants.append(delete_spans(texts[i], [span]) or " ")
            owner.append((i, k))
    if base is None:
        base_rows = _score(scorer, [texts[i] for i in todo], batch_size)
        base_of = {i: base_rows[n] for n, i in enumerate(todo)}
    else:
        base_of = {i: np.asarray(base[i]) for i in todo}
    rows = _score(scorer, variants, batch_size) if variants else np.zeros((0, len(labels)))
    drops: dict[int, list[np.ndarray]] = {i: [] for i in todo}
    for (i, _k), row in zip(owner, rows):
        drops[i].append(base_of[i] - row)
    out: list[dict[str, list[dict[str, Any]]]] = [{} for _ in texts]
    for i in todo:
        if not drops[i]:
            continue
        d = np.stack(drops[i])
        for label in flagged[i]:
            w = d[:, col[label]]
            order = [k for k in np.argsort(-w, kind="stable")[:top_k] if w[k] > 0]
            out[i][label] = sorted(({"start": cands[i][k][0], "end": cands[i][k][1], "weight": round(float(w[k]), 4)}
                                    for k in order), key=lambda s: s["start"])
    return out


def _score(scorer: Scorer, texts: Sequence[str], batch_size: int) -> np.ndarray:
    parts = [np.asarray(scorer.score(list(texts[i:i + batch_size]))) for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, len(scorer.info.labels)))


def top_spans(spans: Mapping[str, Sequence[Mapping[str, Any]]], label: str) -> list[tuple[int, int]]:
    return [(int(s["start"]), int(s["end"])) for s in spans.get(label, [])]


__all__ = ["explain", "word_spans", "windows", "delete_spans", "top_spans", "MAX_WORDS", "TOP_K"]
