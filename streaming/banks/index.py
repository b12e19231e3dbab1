"""The in-memory bank a stream process matches posts against, rebuilt from the bank topic.

Two banks (positive, negative), each an exact-hash table plus a MinHash LSH index (``datasketch``). A lookup is
one SHA-256 and one MinHash of the post (both computed once for both banks), a dictionary probe, and an LSH query
whose candidates are checked by their estimated Jaccard similarity: the cost per post does not grow with the bank
(bench: ``tests/test_banks_stream.py`` measures a 100,000-entry bank against none).

Bounded: at most ``max_entries`` per bank, the oldest (by arrival) leave first; an expired entry never matches and
is dropped when met or when :meth:`Bank.purge` runs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from datasketch import MinHashLSH

from flagstream.streaming.banks.entries import (BANKS, NUM_PERM, BankEntry, exact_of, minhash_from,
                                                minhash_of_normalised)
from flagstream.streaming.loop.campaigns import normalise


@dataclass(frozen=True)
class BankMatch:
    """A post's match: the entry, its estimated similarity (1.0 for an exact hash) and how it matched."""

    entry: BankEntry
    similarity: float
    how: str  # "exact" or "minhash"

    def as_dict(self) -> dict[str, object]:
        """The ``bank_match`` field of a review record."""
        return {"bank": self.entry.bank, "entry_id": self.entry.entry_id, "similarity": round(self.similarity, 4),
                "match": self.how, "labels": list(self.entry.labels), "signal_type": self.entry.signal_type,
                "decision": dict(self.entry.decision)}


class _OneBank:
    def __init__(self, similarity: float) -> None:
        self.entries: OrderedDict[str, BankEntry] = OrderedDict()
        self.exact: dict[str, str] = {}
        self.lsh = MinHashLSH(threshold=similarity, num_perm=NUM_PERM)

    def add(self, e: BankEntry) -> None:
        self.entries[e.entry_id] = e
        self.exact[e.exact] = e.entry_id
        if e.minhash:
            self.lsh.insert(e.entry_id, minhash_from(e.minhash))

    def remove(self, entry_id: str) -> BankEntry | None:
        e = self.entries.pop(entry_id, None)
        if e is not None:
            if self.exact.get(e.exact) == entry_id:
                del self.exact[e.exact]
            if e.minhash:
                self.lsh.remove(entry_id)
        return e


class Bank:
    """Both banks; :meth:`apply` takes topic records in order (last value wins, None = tombstone)."""

    def __init__(self, max_entries: int = 100_000, similarity: float = 0.7) -> None:
        self.max_entries, self.similarity = max_entries, similarity
        self.banks = {name: _OneBank(similarity) for name in BANKS}
        self.evicted = 0

    @classmethod
    def from_settings(cls, settings: object) -> Bank:
        return cls(getattr(settings, "bank_max_entries"), getattr(settings, "bank_similarity"))

    def __len__(self) -> int:
        return sum(len(b.entries) for b in self.banks.values())

    def entries(self) -> Iterable[BankEntry]:
        for b in self.banks.values():
            yield from b.entries.values()

    def get(self, entry_id: str) -> BankEntry | None:
        for b in self.banks.values():
            if entry_id in b.entries:
                return b.entries[entry_id]
        return None

    def remove(self, entry_id: str) -> BankEntry | None:
        for b in self.banks.values():
            if (e := b.remove(entry_id)) is not None:
                return e
        return None

    def add(self, entry: BankEntry, now: datetime | None = None) -> bool:
        """Add (or replace) an entry; False when it has already expired."""
        self.remove(entry.entry_id)  # a re-decided text may move between banks
        if entry.expired(now or datetime.now(timezone.utc)):
            return False
        b = self.banks[entry.bank]
        b.add(entry)
        while len(b.entries) > self.max_entries:
            b.remove(next(iter(b.entries)))
            self.evicted += 1
        return True

    def apply(self, entry_id: str, entry: BankEntry | None, now: datetime | None = None) -> None:
        """One bank-topic record: an entry, or a tombstone (``entry`` None) removing ``entry_id``."""
        if entry is None:
            self.remove(entry_id)
        else:
            self.add(entry, now)

    def purge(self, now: datetime | None = None) -> int:
        """Drop expired entries; returns how many."""
        now = now or datetime.now(timezone.utc)
        gone = [e.entry_id for e in self.entries() if e.expired(now)]
        for entry_id in gone:
            self.remove(entry_id)
        return len(gone)

    def match(self, text: str, now: datetime | None = None) -> dict[str, BankMatch]:
        """Bank name -> the best live match of ``text`` in that bank (absent: no match)."""
        if not len(self):
            return {}
        now = now or datetime.now(timezone.utc)
        norm = normalise(text)
        exact = exact_of(norm)
        m = None
        out: dict[str, BankMatch] = {}
        for name, b in self.banks.items():
            if not b.entries:
                continue
            hit = b.exact.get(exact)
            if hit is not None and not b.entries[hit].expired(now):
                out[name] = BankMatch(b.entries[hit], 1.0, "exact")
                continue
            if m is None:
                m = minhash_of_normalised(norm)
                if m is None:
                    return out
            best: BankMatch | None = None
            for key in b.lsh.query(m):
                e = b.entries.get(key)
                if e is None or e.expired(now):
                    continue
                sim = float(m.jaccard(minhash_from(e.minhash)))
                if sim >= self.similarity and (best is None or sim > best.similarity):
                    best = BankMatch(e, sim, "minhash")
            if best is not None:
                out[name] = best
        return out


__all__ = ["Bank", "BankMatch"]
