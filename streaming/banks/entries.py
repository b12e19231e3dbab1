"""A bank entry: the signatures of one decided post, never its text (docs/banks.md).

An entry holds a SHA-256 of the post's normalised text (an exact match survives the cosmetic edits the campaign
tracker's :func:`~flagstream.streaming.loop.campaigns.normalise` removes: retweet prefixes, links, mentions, case,
punctuation) and a 64-permutation MinHash of its character 5-gram shingles (a near-duplicate match survives a few
changed words). Neither lets anyone read the post back, so entries can be shared with another team.

The same JSON object is the bank topic's record value and one line of ``flagstream bank export``'s file. Its id
is derived from the exact hash, so the latest decision on one text replaces the earlier one (a text confirmed,
then rejected on appeal, leaves the positive bank when it enters the negative one).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from datasketch import MinHash

from flagstream.streaming.loop.campaigns import normalise, shingles_of

SIGNAL_TYPE = "flagstream.text.minhash64-sha256.v1"  # HMA: the signal type both signatures belong to
NUM_PERM = 64
BANKS = ("positive", "negative")
SCHEME = "affine32"  # datasketch's permutation scheme, pinned: signatures of another scheme would not compare
_PERM = MinHash(num_perm=NUM_PERM, hashfunc=zlib.crc32, scheme=SCHEME)  # fixed seed: the same permutations everywhere


class BadEntry(ValueError):
    """A bank record or export line that is not a valid entry (the message says which field)."""


def exact_hash(text: str) -> str:
    """SHA-256 (hex) of the normalised text: equal for reposts that differ only cosmetically."""
    return exact_of(normalise(text))


def exact_of(norm: str) -> str:
    """:func:`exact_hash` of an already normalised text."""
    return hashlib.sha256(norm.encode("utf-8")).hexdigest()


def minhash_of(text: str) -> MinHash | None:
    """The post's MinHash over character shingles; None when nothing survives normalisation."""
    return minhash_of_normalised(normalise(text))


def minhash_of_normalised(norm: str) -> MinHash | None:
    """:func:`minhash_of` an already normalised text (normalising is most of a lookup's cost: do it once)."""
    sh = shingles_of(norm)
    if not sh:
        return None
    m = MinHash(num_perm=NUM_PERM, permutations=_PERM.permutations, hashfunc=zlib.crc32, scheme=SCHEME)
    m.update_batch(sh)
    return m


def minhash_from(values: Sequence[int]) -> MinHash:
    """Rebuild a MinHash from an entry's stored hash values."""
    return MinHash(num_perm=NUM_PERM, permutations=_PERM.permutations, hashfunc=zlib.crc32, scheme=SCHEME,
                   hashvalues=np.asarray(values, dtype=np.uint64))


def entry_id_for(exact: str) -> str:
    """One entry per normalised text (see the module docstring)."""
    return "b-" + hashlib.sha256(("bank:" + exact).encode("ascii")).hexdigest()[:24]


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(value: Any, name: str) -> datetime:
    """An ISO-8601 timestamp as an aware UTC datetime.

    Raises:
        BadEntry: ``value`` is not an ISO-8601 string.
    """
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise BadEntry(f"'{name}' is not an ISO-8601 timestamp") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class BankEntry:
    """One bank content item: signatures, labels, where it came from and when it expires."""

    entry_id: str
    bank: str  # "positive" (confirmed) or "negative" (rejected)
    exact: str  # SHA-256 hex of the normalised text
    minhash: tuple[int, ...]  # NUM_PERM values; empty when the text had no shingles
    labels: tuple[str, ...]  # the labels the decision confirmed (positive) or rejected (negative)
    created_at: str
    expires_at: str
    decision: Mapping[str, Any] = field(default_factory=dict)  # decision_id, post_id, campaign, decided_at
    signal_type: str = SIGNAL_TYPE

    @classmethod
    def for_text(cls, text: str, bank: str, labels: Sequence[str], decision: Mapping[str, Any],
                 created: datetime, ttl_days: float) -> BankEntry:
        """A new entry for ``text`` (the text itself is not kept)."""
        norm = normalise(text)
        exact = exact_of(norm)
        m = minhash_of_normalised(norm)
        return cls(entry_id_for(exact), bank, exact, tuple(int(v) for v in m.hashvalues) if m is not None else (),
                   tuple(labels), _iso(created), _iso(created + timedelta(days=ttl_days)),
                   {k: v for k, v in decision.items() if v is not None})

    @cached_property
    def expires(self) -> datetime:
        """``expires_at`` parsed once (every lookup candidate checks it)."""
        return parse_time(self.expires_at, "expires_at")

    def expired(self, now: datetime) -> bool:
        return self.expires <= now

    def as_dict(self) -> dict[str, Any]:
        return {"entry_id": self.entry_id, "signal_type": self.signal_type, "bank": self.bank, "exact": self.exact,
                "minhash": list(self.minhash), "labels": list(self.labels), "decision": dict(self.decision),
                "created_at": self.created_at, "expires_at": self.expires_at}

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def parse_entry(value: bytes | str | Mapping[str, Any]) -> BankEntry:
    """Validate one entry (a topic value, an export line or a parsed object).

    Raises:
        BadEntry: the value is not JSON, or a field is missing or malformed.
    """
    if isinstance(value, Mapping):
        obj: Any = value
    else:
        try:
            obj = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            raise BadEntry("not JSON") from None
    if not isinstance(obj, dict):
        raise BadEntry("an entry must be a JSON object")
    for key in ("entry_id", "bank", "exact", "created_at", "expires_at"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise BadEntry(f"'{key}' must be a non-empty string")
    if obj["bank"] not in BANKS:
        raise BadEntry(f"'bank' must be one of {', '.join(BANKS)}")
    if obj.get("signal_type", SIGNAL_TYPE) != SIGNAL_TYPE:
        raise BadEntry(f"'signal_type' {obj.get('signal_type')!r} is not {SIGNAL_TYPE} (signatures would not compare)")
    exact = obj["exact"]
    if len(exact) != 64 or any(c not in "0123456789abcdef" for c in exact):
        raise BadEntry("'exact' must be a lower-case SHA-256 hex digest")
    mh = obj.get("minhash") or []
    if not isinstance(mh, list) or (mh and len(mh) != NUM_PERM) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32 for v in mh):
        raise BadEntry(f"'minhash' must be [] or {NUM_PERM} integers in [0, 2^32)")
    labels = obj.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise BadEntry("'labels' must be an array of label names")
    decision = obj.get("decision") or {}
    if not isinstance(decision, dict):
        raise BadEntry("'decision' must be an object")
    parse_time(obj["created_at"], "created_at")
    parse_time(obj["expires_at"], "expires_at")
    return BankEntry(obj["entry_id"], obj["bank"], exact, tuple(mh), tuple(labels), obj["created_at"],
                     obj["expires_at"], dict(decision))


__all__ = ["BANKS", "NUM_PERM", "SIGNAL_TYPE", "BadEntry", "BankEntry", "entry_id_for", "exact_hash", "minhash_from",
           "minhash_of", "minhash_of_normalised", "exact_of", "parse_entry", "parse_time"]
