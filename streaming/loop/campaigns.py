"""Campaigns: flagged near-duplicates (reposts with small edits) share one id and a running member count.

Propaganda is reposted in bulk: a retweet prefix, a changed link, a word swapped. Each flagged post is
normalised (NFKC, lower case, retweet prefix / links / @mentions removed, punctuation folded), cut into
character 5-gram shingles, and MinHashed (``datasketch``); an LSH index returns candidate earlier posts, and
the post joins the campaign of the most similar candidate whose estimated Jaccard similarity reaches
``campaign_similarity``. Otherwise it starts a campaign of its own (``members`` 1), so every review record
carries ``campaign`` and a later repost can join it.

Why character shingles: tweets are short; one swapped word changes 3 of ~12 word-trigrams (Jaccard ~0.6) but
only ~8 of ~90 character 5-grams (Jaccard ~0.85), which keeps the threshold far from both edits and
unrelated posts.

Bounded state: at most ``campaign_max_posts`` posts are indexed; older ones leave the index when the window
(``campaign_window_s``, on Kafka record timestamps, so a replay groups like the live run) passes or the bound
is reached, oldest first; a campaign keeps only its newest 32 members in the LSH index (bounding query time
and memory per campaign; measured ~6.4 KB per indexed post, bench/RESULTS.md). A campaign's count stays with
the campaign while any of its posts is in the window.
After a restart :meth:`CampaignTracker.rebuild` replays the review topic's records inside the window.

Scope: the state is per process. Several pipeline processes in one group each see their own partitions'
flagged posts (and, after a restart, everyone's from the review topic), so a campaign split across
processes may get two ids until the next restart; one process per topic sees every campaign whole.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasketch import MinHash, MinHashLSH

SHINGLE = 5
NUM_PERM = 64
MAX_COMPARE_PER_CAMPAIGN = 4
# A campaign of thousands of reposts is recognised by its newest few: bounds query time and memory per campaign.
MAX_INDEXED_PER_CAMPAIGN = 32
_RT = re.compile(r"^\s*(rt|mt)\s+@\w+:?\s*", re.IGNORECASE)
_URL = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"@\w+")
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
_ASCII_CC = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # ASCII's Cc characters except \t (09) and \n (0a)


def normalise(text: str) -> str:
    """The text a campaign is recognised by: what survives a repost's cosmetic edits."""
    t = unicodedata.normalize("NFKC", text)
    if t.isascii():  # no ASCII character is Cf; the Cc ones are the C0 controls and DEL (same result, ~3x faster)
        t = _ASCII_CC.sub("", t)
    else:
        t = "".join(ch for ch in t if unicodedata.category(ch) not in ("Cf", "Cc") or ch in "\n\t")
    t = _RT.sub("", t)
    t = _URL.sub(" ", t)
    t = _MENTION.sub(" ", t)
    t = _NON_WORD.sub(" ", t.lower()).replace("_", " ")
    return " ".join(t.split())


def shingles(text: str, k: int = SHINGLE) -> list[bytes]:
    return shingles_of(normalise(text), k)


def shingles_of(norm: str, k: int = SHINGLE) -> list[bytes]:
    """The character k-gram shingles of an already normalised text (a caller that also needs the
    normalised text, like the known-content banks, normalises once)."""
    if len(norm) <= k:
        return [norm.encode("utf-8")] if norm else []
    return list({norm[i:i + k].encode("utf-8") for i in range(len(norm) - k + 1)})


def campaign_id_for(post_id: str) -> str:
    """A campaign is named after its first post (stable across restarts and replays)."""
    return "c-" + hashlib.sha1(post_id.encode("utf-8")).hexdigest()[:16]


@dataclass
class _Entry:
    campaign: str
    ts_ms: int
    minhash: MinHash | None  # None once the post left the LSH index (its campaign has newer members there)


class CampaignTracker:
    """Assigns campaign ids to flagged posts in arrival order (not thread-safe: one per pipeline loop)."""

    def __init__(self, window_s: float = 86_400.0, max_posts: int = 20_000, similarity: float = 0.4,
                 num_perm: int = NUM_PERM) -> None:
        self.window_ms = int(window_s * 1000)
        self.max_posts = max_posts
        self.similarity = similarity
        self.num_perm = num_perm
        self.lsh = MinHashLSH(threshold=similarity, num_perm=num_perm)
        self.entries: OrderedDict[str, _Entry] = OrderedDict()  # post id -> entry, oldest first
        self.counts: dict[str, int] = {}  # campaign -> members assigned so far (running count)
        self.live: dict[str, int] = {}  # campaign -> members still in the window (count is dropped at 0)
        self.indexed: dict[str, deque[str]] = {}  # campaign -> its members in the LSH index, oldest first
        self._perm = MinHash(num_perm=num_perm, hashfunc=zlib.crc32)  # permutations computed once, then shared

    def _minhash(self, text: str) -> MinHash | None:
        sh = shingles(text)
        if not sh:
            return None
        # crc32: deterministic across processes (a rebuilt index must hash like the live one) and C-fast
        m = MinHash(num_perm=self.num_perm, permutations=self._perm.permutations, scheme=self._perm.scheme,
                    hashfunc=zlib.crc32)
        m.update_batch(sh)
        return m

    def _evict(self, now_ms: int) -> None:
        while self.entries:
            pid, entry = next(iter(self.entries.items()))
            if len(self.entries) < self.max_posts and now_ms - entry.ts_ms <= self.window_ms:
                break
            self.entries.popitem(last=False)
            if entry.minhash is not None:
                self.lsh.remove(pid)
                indexed = self.indexed.get(entry.campaign)
                if indexed is not None and pid in indexed:
                    indexed.remove(pid)
            self.live[entry.campaign] -= 1
            if self.live[entry.campaign] <= 0:
                del self.live[entry.campaign]
                self.counts.pop(entry.campaign, None)
                self.indexed.pop(entry.campaign, None)

    def assign(self, post_id: str, text: str, ts_ms: int) -> dict[str, Any]:
        """The ``campaign`` value for this flagged post's review record: ``{"id", "members"}``."""
        if post_id in self.entries:  # a redelivered post (at-least-once): same answer, no double count
            camp = self.entries[post_id].campaign
            return {"id": camp, "members": self.counts.get(camp, 1)}
        self._evict(ts_ms)
        m = self._minhash(text)
        camp = None
        if m is not None:
            best = -1.0
            tried: dict[str, int] = {}
            for cand in self.lsh.query(m):
                entry = self.entries[cand]
                assert entry.minhash is not None
                # a big campaign answers the same for every member: a few comparisons per campaign bound the cost
                if tried.get(entry.campaign, 0) >= MAX_COMPARE_PER_CAMPAIGN:
                    continue
                tried[entry.campaign] = tried.get(entry.campaign, 0) + 1
                sim = float(np.count_nonzero(m.hashvalues == entry.minhash.hashvalues)) / self.num_perm
                if sim >= self.similarity and (sim > best or (sim == best and entry.campaign < str(camp))):
                    best, camp = sim, entry.campaign
        camp = camp or campaign_id_for(post_id)
        return self._add(post_id, camp, ts_ms, m, None)

    def _add(self, post_id: str, camp: str, ts_ms: int, m: MinHash | None, members: int | None) -> dict[str, Any]:
        if m is None and camp not in self.counts:
            # Nothing survives normalisation (only links, mentions, punctuation): no later post can join it, so
            # it is a campaign of its own and keeps no state at all. Counting it would grow ``counts`` by one
            # entry per such post, with no index entry to ever evict it by.
            return {"id": camp, "members": max(1, members or 1)}
        self.counts[camp] = max(self.counts.get(camp, 0) + 1, members or 0)
        if m is not None:
            indexed = self.indexed.setdefault(camp, deque())
            if len(indexed) >= MAX_INDEXED_PER_CAMPAIGN:  # keep the newest members as the campaign's signature
                old = indexed.popleft()
                self.lsh.remove(old)
                self.entries[old].minhash = None
            self.entries[post_id] = _Entry(camp, ts_ms, m)
            self.lsh.insert(post_id, m)
            indexed.append(post_id)
            self.live[camp] = self.live.get(camp, 0) + 1
        return {"id": camp, "members": self.counts[camp]}

    def rebuild(self, records: Iterable[Mapping[str, Any]], now_ms: int) -> int:
        """Re-index review records (oldest first) after a restart; returns how many were taken."""
        keep = []
        for rec in records:  # partitions interleave: keep what is in the window, then index oldest first
            camp = rec.get("campaign")
            pid, text = rec.get("id"), rec.get("text")
            ts = _record_ts_ms(rec)
            if not (isinstance(camp, dict) and isinstance(camp.get("id"), str) and isinstance(pid, str)
                    and isinstance(text, str)) or ts is None or now_ms - ts > self.window_ms:
                continue
            keep.append((ts, pid, text, camp))
        keep.sort(key=lambda r: r[0])
        taken = 0
        for ts, pid, text, camp in keep[-self.max_posts:]:
            if pid in self.entries:
                continue
            self._evict(ts)
            self._add(pid, camp["id"], ts, self._minhash(text), int(camp.get("members") or 1))
            taken += 1
        self._evict(now_ms)
        return taken

    def memory_estimate_bytes(self) -> int:
        """Rough resident size of the index (measured per post in bench/campaigns.py)."""
        return len(self.entries) * (self.num_perm * 8 * 2 + 400)


def _record_ts_ms(rec: Mapping[str, Any]) -> int | None:
    from datetime import datetime

    iso = (rec.get("source") or {}).get("timestamp") or rec.get("flagged_at")
    if not isinstance(iso, str):
        return None
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def tracker_from_settings(settings: Any) -> CampaignTracker:
    return CampaignTracker(settings.campaign_window_s, settings.campaign_max_posts, settings.campaign_similarity)


def rebuild_from_topic(tracker: CampaignTracker, consumer: Any, topic: str, now_ms: int) -> int:
    """Replay the review topic into ``tracker`` (joins no group; reads up to the high-watermark)."""
    from flagstream.streaming.ops.review import decode, iter_topic

    recs = (decode(r.value) for r in iter_topic(consumer, topic))
    return tracker.rebuild((r for r in recs if r is not None), now_ms)


__all__ = ["CampaignTracker", "normalise", "shingles", "campaign_id_for", "tracker_from_settings",
           "rebuild_from_topic"]
