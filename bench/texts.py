"""Benchmark texts: real posts from ``../shared/data`` when present, a synthetic generator otherwise.

Speed on short posts says little about speed on real feeds: the cost of a transformer grows with
length, and padding waste grows with length *variance*. So the benchmark reads a few thousand posts
straight from a handful of the shared CSVs (their real length distribution, several languages), and
the synthetic generator (used for the million-row archive and when ``../shared`` is absent) mimics
that distribution: mostly tweet-sized posts, a long tail of long ones, hashtags, handles, URLs, emoji
and some non-Latin script. Nothing here is written to the repository.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from pathlib import Path

csv.field_size_limit(1 << 26)

# (relative path, column, delimiter): a mix of propaganda-adjacent, hateful, news and everyday posts.
REAL_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("isis_fifthtribe/tweets.csv", "tweets", ","),
    ("isis_fifthtribe/paired_random_control/balanced_dataset.csv", "tweets", ","),
    ("davidson_hate_offensive/labeled_data.csv", "tweet", ","),
    ("crisislex_boston/2013_Boston_Bombings-ontopic_offtopic.csv", " tweet", ","),
    ("latent_hatred_implicit/implicit_hate_v1_stg1_posts.tsv", "post", "\t"),
    ("conan/Multitarget-CONAN.csv", "HATE_SPEECH", ","),
    ("mlma_hate_en_fr/en_dataset.csv", "tweet", ","),
)

# The realistic mix (issue 21): real feeds are longer than the short-tweet mix above. Forum posts (Gab),
# propaganda-account and crisis tweets, German posts with a long tail, Arabic tweets (many word pieces each in
# an English vocabulary), counter-speech replies, and news paragraphs (PTC articles, cut at paragraph breaks).
REALISTIC_SOURCES: tuple[tuple[str, str, str], ...] = (
    ("gab_hate_corpus/ghc_train.tsv", "text", "\t"),
    ("isis_fifthtribe/tweets.csv", "tweets", ","),
    ("crisislex_boston/2013_Boston_Bombings-ontopic_offtopic.csv", " tweet", ","),
    ("davidson_hate_offensive/labeled_data.csv", "tweet", ","),
    ("germeval_harmful_de/2025/vio_train.csv", "description", ";"),
    ("alfifi_isis_ar/alfifi_isis_ar_half.csv", "text", ","),
    ("conan/Multitarget-CONAN.csv", "COUNTER_NARRATIVE", ","),
)
NEWS_ARTICLES = "ptc_semeval2020_t11/datasets/train-articles"

_WORDS = (
    "the of and to in a is that for it on was with he as at by this have from or one had not but what all were "
    "when we there can an your which their said if do will each about how up out them then she many some so "
    "these would other into has more her two like him see time could no make than first been its who now people "
    "my made over did down only way find use may water long little very after words called just where most know "
    "state army war city news police attack government president brothers sisters allah martyr fight enemy "
    "freedom church mosque jews muslims christians shia sunni refugees border nation soldiers victory video "
    "breaking report today tomorrow love hate god pray family friends game music weather school work lol omg"
).split()
_ARABIC = "الدولة الإسلامية في العراق والشام الله أكبر الخلافة جنود المجاهدين اليوم خبر عاجل".split()
_EMOJI = ("🔥", "🙏", "😂", "💪", "🇺🇸", "⚔️", "❤️", "👇", "😡", "✅")


def _real_rows(path: Path, column: str, delimiter: str, limit: int) -> list[str]:
    out: list[str] = []
    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as fh:
            for row in csv.DictReader(fh, delimiter=delimiter):
                text = (row.get(column) or "").strip()
                if text:
                    out.append(text)
                    if len(out) >= limit:
                        break
    except (OSError, csv.Error):
        return []
    return out


def _equal_shares(pools: list[list[str]], n: int, seed: int) -> list[str]:
    """Up to ``n`` texts, an equal share from each non-empty pool, shuffled with ``seed``."""
    pools = [p for p in pools if p]
    if not pools:
        return []
    rng = random.Random(seed)
    out: list[str] = []
    for pool in pools:
        rng.shuffle(pool)
        out.extend(pool[: -(-n // len(pools))])
    rng.shuffle(out)
    return out[:n]


def real_texts(data_dir: Path, n: int, seed: int = 7) -> list[str]:
    """Up to ``n`` posts, an equal share from each readable source, shuffled; [] without the data."""
    if not Path(data_dir).is_dir():
        return []
    per = max(1, -(-n // len(REAL_SOURCES)))
    pools = [_real_rows(Path(data_dir) / rel, col, sep, per * 4) for rel, col, sep in REAL_SOURCES]
    return _equal_shares(pools, n, seed)


def _news_paragraphs(folder: Path, limit: int) -> list[str]:
    """Paragraphs of news articles (a link post's preview or a long post), at most ``limit``."""
    out: list[str] = []
    try:
        files = sorted(folder.glob("*.txt"))
    except OSError:
        return []
    for f in files:
        for para in f.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            para = " ".join(para.split())
            if len(para) >= 40:
                out.append(para)
                if len(out) >= limit:
                    return out
    return out


def realistic_texts(data_dir: Path, n: int, seed: int = 7) -> list[str]:
    """Up to ``n`` posts with real feeds' length spread: an equal share of each ``REALISTIC_SOURCES`` + news."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return []
    k = len(REALISTIC_SOURCES) + 1
    per = max(1, -(-n // k))
    pools = [_real_rows(data_dir / rel, col, sep, per * 4) for rel, col, sep in REALISTIC_SOURCES]
    pools.append(_news_paragraphs(data_dir / NEWS_ARTICLES, per * 4))
    return _equal_shares(pools, n, seed)


def synthetic_text(rng: random.Random) -> str:
    """One post: lognormal word count (median ~13 words, tail to ~60; tokens roughly match the real mix), tweet furniture mixed in."""
    words = int(min(max(rng.lognormvariate(2.6, 0.55), 1), 250))
    parts: list[str] = []
    for _ in range(words):
        r = rng.random()
        if r < 0.03:
            parts.append("@" + rng.choice(_WORDS) + str(rng.randint(1, 999)))
        elif r < 0.06:
            parts.append("#" + rng.choice(_WORDS).capitalize() + rng.choice(_WORDS).capitalize())
        elif r < 0.075:
            parts.append(rng.choice(_EMOJI))
        elif r < 0.09:
            parts.append(rng.choice(_ARABIC))
        else:
            parts.append(rng.choice(_WORDS))
    if rng.random() < 0.3:
        parts.append(f"https://t.co/{rng.getrandbits(40):010x}")
    if rng.random() < 0.15:
        parts.insert(0, f"RT @{rng.choice(_WORDS)}{rng.randint(1, 99)}:")
    text = " ".join(parts)
    return text[:1].upper() + text[1:]


def synthetic_texts(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [synthetic_text(rng) for _ in range(n)]


def bench_texts(data_dir: Path | None, n: int, seed: int = 7, mix: str = "realistic") -> tuple[list[str], str]:
    """``n`` real posts and where they came from; synthetic ones (short-mix lengths) without ../shared."""
    pick = realistic_texts if mix == "realistic" else real_texts
    real = pick(data_dir, n, seed) if data_dir else []
    if len(real) >= n // 2:
        if len(real) < n:
            real += synthetic_texts(n - len(real), seed)
        k = len(REALISTIC_SOURCES) + 1 if mix == "realistic" else len(REAL_SOURCES)
        return real, f"../shared/data {mix} mix ({k} sources)"
    return synthetic_texts(n, seed), "synthetic"


def archive_rows(n: int, seed: int = 5, bad_every: int = 997) -> Iterator[dict]:
    """Rows of a synthetic archive: id, text, created_at, lang; a few unusable rows, as in real dumps."""
    rng = random.Random(seed)
    for i in range(n):
        text: str | None = synthetic_text(rng)
        if bad_every and i % bad_every == bad_every - 1:
            text = "" if i % 2 else None
        yield {"id": f"a{i:07d}", "text": text, "created_at": 1_600_000_000 + i, "lang": "en"}


def write_archive(path: Path, n: int, seed: int = 5) -> Path:
    """A synthetic ``n``-row archive as JSONL or Parquet (by suffix), written in bounded memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("created_at", pa.int64()),
                            ("lang", pa.string())])
        with pq.ParquetWriter(path, schema) as writer:
            chunk: list[dict] = []
            for row in archive_rows(n, seed):
                chunk.append(row)
                if len(chunk) == 50_000:
                    writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                    chunk = []
            if chunk:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
        return path
    with path.open("w", encoding="utf-8") as fh:
        for row in archive_rows(n, seed):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
