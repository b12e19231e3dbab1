"""Leak-free splits: by group (account / article / hate-speech thread) and by source.

A split is a pure function of ``(source, group, seed)`` so it is stable across runs, machines and
data additions: a new row of an account lands in the same split as the account's old rows, and no
author, article or counter-narrative thread is ever on both sides of a split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
# The split (and which rows a capped source keeps) belongs to the data, not to a training run: a model trained
# with another ``--seed`` must still be judged on the same test rows, or its "held-out" rows were trained on.
SPLIT_SEED = 13


def group_unit(source: str, group: str, seed: int = SPLIT_SEED) -> float:
    """A deterministic number in [0, 1) per group."""
    digest = hashlib.sha256(f"{seed}\x00{source}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(source: str, group: str, seed: int = SPLIT_SEED, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> str:
    u = group_unit(source, group, seed)
    edge = 0.0
    for name, frac in zip(SPLITS, fractions):
        edge += frac
        if u < edge:
            return name
    return SPLITS[-1]


def split_column(sources: Sequence[str], groups: Sequence[str], seed: int = SPLIT_SEED,
                 fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[str]:
    return [assign_split(s, g, seed, fractions) for s, g in zip(sources, groups)]


def leave_one_source_out(sources: Sequence[str], splits: Sequence[str],
                         holdouts: Sequence[str] | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(held_out_source, train_idx, val_idx, test_idx)``.

    The model trains on the train split of every other source, picks thresholds on their val split, and
    is tested on *all* rows of the held-out source: a feed it has never seen.
    """
    src = np.asarray(sources)
    spl = np.asarray(splits)
    for held in holdouts if holdouts is not None else sorted(set(sources)):
        other = src != held
        yield (held, np.flatnonzero(other & (spl == "train")), np.flatnonzero(other & (spl == "val")),
               np.flatnonzero(~other))
