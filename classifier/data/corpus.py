"""One loader for every labelled set: a ``datasets.Dataset`` in one schema.

Columns: ``text`` (normalised by :func:`flagstream.classifier.normalize.normalize_text`, the same function the
scorer applies), ``propaganda`` and ``sectarian`` (1, 0 or None = the source says nothing), ``source``,
``lang``, ``group`` (account / article / thread, for leak-free splits), ``weight`` (per-row loss weight;
weak labels weigh less), ``split`` (train/val/test by group), ``hand`` (1 = label from the ISIS hand
labels), ``weak`` (1 = a rule's label: trained on, never judged on), ``meta``.

Exact and near duplicates (retweets, truncated retweets, case/punctuation variants) are removed across
the whole corpus before splitting, so no post can sit on both sides of a split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from flagstream.classifier.labels import LABELS
from flagstream.classifier.normalize import dedup_key, normalize_text
from flagstream.classifier.data.sources import HARD_NEGATIVE_WEIGHT, SOURCES, Source, is_hard_negative
from flagstream.classifier.data.splits import SPLIT_SEED, split_column

log = logging.getLogger(__name__)

HAND_LABELS_PATH = Path(__file__).with_name("isis_labels.jsonl")
NEAR_DUP_TOKENS = 8  # two posts whose first 8 normalised tokens agree are one post (truncated retweets)
MIN_CHARS = 3

_ARABIC = re.compile(r"[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")
_LETTER = re.compile(r"[^\W\d_]")
_STOP = {
    "en": {"the", "and", "is", "are", "of", "to", "in", "you", "that", "this", "for", "with", "they", "was"},
    "fr": {"le", "la", "les", "et", "est", "des", "une", "que", "pas", "pour", "sont", "dans", "ils", "vous"},
    "de": {"der", "die", "das", "und", "ist", "nicht", "ich", "sie", "mit", "ein", "eine", "auf", "den", "wir"},
}


def text_hash(text: str) -> str:
    """Short fingerprint of a raw text: lets hand labels name a row without copying it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def guess_lang(text: str, default: str = "en") -> str:
    """Script + stop-word guess; good enough to report per-language numbers for ar/en/fr/de."""
    letters = _LETTER.findall(text)
    if letters and sum(1 for ch in letters if _ARABIC.match(ch)) / len(letters) > 0.3:
        return "ar"
    words = re.findall(r"[a-zàâçéèêëîïôûùüÿäöß]+", text.lower())
    if not words:
        return default
    scores = {lang: sum(w in stop for w in words) for lang, stop in _STOP.items()}
    best = max(scores, key=scores.get)  # type: ignore[arg-type]
    if scores[best] == 0 or (default in scores and scores[best] <= scores[default]):
        return default
    return best


def load_hand_labels(path: Path = HAND_LABELS_PATH) -> dict[int, dict[str, Any]]:
    """ISIS per-post labels by row index; each carries a text hash checked at load time."""
    if not path.exists():
        return {}
    out: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            out[int(rec["row"])] = rec
    return out


def _cap(rows: list[dict[str, Any]], cap: int | None, seed: int) -> list[dict[str, Any]]:
    """At most ``cap`` rows per label combination, chosen deterministically (keeps rare positives)."""
    if cap is None:
        return rows
    by: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by[(r["propaganda"], r["sectarian"])].append(r)
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for key in sorted(by, key=str):
        bucket = by[key]
        if len(bucket) > cap:
            bucket = rng.sample(bucket, cap)
        out.extend(bucket)
    return out


def read_source(src: Source, data_dir: Path, seed: int = 13,
                hand: dict[int, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Rows of one source, normalised, labelled, language-tagged; raw text never leaves this function."""
    rows: list[dict[str, Any]] = []
    hand_hits = 0
    for r in src.reader(Path(data_dir) / src.folder):
        raw = r["text"] or ""
        r["hand"] = 0
        kind = None
        if src.name == "isis_fifthtribe" and hand:
            meta = json.loads(r["meta"])
            rec = hand.get(meta["row"])
            if rec is not None:
                if rec.get("hash") != text_hash(raw):
                    raise ValueError(f"classifier/data/isis_labels.jsonl row {meta['row']}: text hash mismatch; the data changed")
                r["propaganda"], r["sectarian"] = int(rec["propaganda"]), int(rec["sectarian"])
                r["weight"], r["hand"] = 1.0, 1
                kind = rec.get("kind")
                hand_hits += 1
        if is_hard_negative(src.name, kind) and r["propaganda"] == 0 and r["sectarian"] in (0, None):
            r["weight"] = r["weight"] * HARD_NEGATIVE_WEIGHT
        text = normalize_text(raw)
        if len(text) < MIN_CHARS or (r["propaganda"] is None and r["sectarian"] is None):
            continue
        r["text"] = text
        r["lang"] = r["lang"] or guess_lang(text, src.default_lang)
        r["source"] = src.name
        rows.append(r)
    if hand and src.name == "isis_fifthtribe":
        log.info("isis hand labels applied", extra={"rows": hand_hits})
    hand_rows = [r for r in rows if r["hand"]]
    rest = _cap([r for r in rows if not r["hand"]], src.cap, seed)
    return hand_rows + rest


def dedupe(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Keep the first of each exact / near-duplicate cluster (hand-labelled rows first).

    A kept row whose duplicates disagree on a label gets that label set to None: the same words
    cannot be both propaganda and not.
    """
    order = sorted(range(len(rows)), key=lambda i: -rows[i]["hand"])
    kept: dict[str, int] = {}
    near: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    dropped = Counter()
    for i in order:
        r = rows[i]
        key = dedup_key(r["text"])
        if not key:
            dropped["empty"] += 1
            continue
        toks = key.split()
        nkey = " ".join(toks[:NEAR_DUP_TOKENS]) if len(toks) >= NEAR_DUP_TOKENS else None
        j = kept.get(key)
        if j is None and nkey is not None:
            j = near.get(nkey)
        if j is not None:
            dropped["exact" if key in kept else "near"] += 1
            first = out[j]
            for lab in LABELS:
                if first[lab] is not None and r[lab] is not None and first[lab] != r[lab] and not first["hand"]:
                    first[lab] = None
            continue
        kept[key] = len(out)
        if nkey is not None:
            near.setdefault(nkey, len(out))
        out.append(r)
    out = [r for r in out if r["propaganda"] is not None or r["sectarian"] is not None]
    return out, dict(dropped)


def load_corpus(data_dir: str | Path, sources: Iterable[Source] = SOURCES, seed: int = SPLIT_SEED,
                include_untrained: bool = False, hand_labels: bool = True):
    """Every available source as one ``datasets.Dataset`` (deduplicated, split by group)."""
    import datasets

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} does not exist; set data_dir / FLAGSTREAM_DATA_DIR")
    hand = load_hand_labels() if hand_labels else {}
    rows: list[dict[str, Any]] = []
    for src in sources:
        if not src.available(data_dir) or (not src.train and not include_untrained):
            continue
        rows.extend(read_source(src, data_dir, seed, hand))
    rows, dropped = dedupe(rows)
    splits = split_column([r["source"] for r in rows], [r["group"] for r in rows], seed)
    fixed = {s.name: s.fixed_split for s in SOURCES if s.fixed_split}
    splits = [fixed.get(r["source"], sp) for r, sp in zip(rows, splits)]  # e.g. contrast templates: train only
    cols = ("text", "propaganda", "sectarian", "source", "lang", "group", "weight", "hand", "meta")
    table = {c: [r[c] for r in rows] for c in cols}
    # Weak = a rule's label, not a person's: trained on (down-weighted), never used to judge or calibrate.
    table["weak"] = [int(r["source"] == "isis_fifthtribe" and not r["hand"]) for r in rows]
    table["split"] = splits
    features = datasets.Features({
        "text": datasets.Value("string"), "propaganda": datasets.Value("int8"), "sectarian": datasets.Value("int8"),
        "source": datasets.Value("string"), "lang": datasets.Value("string"), "group": datasets.Value("string"),
        "weight": datasets.Value("float32"), "hand": datasets.Value("int8"), "meta": datasets.Value("string"),
        "weak": datasets.Value("int8"),
        "split": datasets.Value("string"),
    })
    ds = datasets.Dataset.from_dict(table, features=features)
    ds.info.description = json.dumps({"dropped_duplicates": dropped})
    return ds


DECISIONS_SOURCE = "decisions"


def read_decision_rows(path: str | Path, keep: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """Rows of a ``flagstream export-decisions`` file (label 1/0/null per label); a bad line is an error
    naming its line number, since a half-read export would silently change what is trained on. ``keep``
    sees each parsed line whole (signature included) and drops it when False (``train`` checks signatures).

    Raises:
        ValueError: a line that is not an export-decisions row.
    """
    rows = []
    with Path(path).open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                text = obj["text"]
                labels = {lab: obj.get(lab) for lab in LABELS}
                if not isinstance(text, str) or any(v not in (0, 1, None) for v in labels.values()):
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{n}: not an export-decisions row (needs text and label -> 1/0/null)") from None
            if keep is not None and not keep(obj):
                continue
            rows.append({"id": str(obj.get("id", n)), "text": text, **labels})
    return rows


def with_decisions(ds: Any, rows: Sequence[dict[str, Any]], weight: float = 1.0) -> tuple[Any, dict[str, int]]:
    """``ds`` plus decided rows as a train-only source named ``decisions``.

    Never in a validation or test split: thresholds and the reported metrics stay judged on the original
    sources only. A decided post whose text (after de-duplication normalisation) matches a val/test row
    of ``ds`` is dropped, so training on decisions can never leak an evaluation row.
    """
    import datasets

    held = {dedup_key(t) for t, s in zip(ds["text"], ds["split"]) if s != "train"}
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    counts = Counter()
    for r in rows:
        text = normalize_text(r["text"])
        key = dedup_key(text)
        if len(text) < MIN_CHARS or not key or all(r.get(lab) is None for lab in LABELS):
            counts["unusable"] += 1
            continue
        if key in held:
            counts["in_eval_split"] += 1
            continue
        if key in seen:
            counts["duplicate"] += 1
            continue
        seen.add(key)
        out.append({"text": text, **{lab: r.get(lab) for lab in LABELS}, "source": DECISIONS_SOURCE,
                    "lang": guess_lang(text), "group": f"decision:{r.get('id', '')}", "weight": float(weight),
                    "hand": 0, "meta": json.dumps({"id": r.get("id")}), "weak": 0, "split": "train"})
    counts["added"] = len(out)
    if not out:
        return ds, dict(counts)
    extra = datasets.Dataset.from_dict({c: [r[c] for r in out] for c in ds.column_names}, features=ds.features)
    merged = datasets.concatenate_datasets([ds, extra])
    merged.info.description = ds.info.description
    return merged, dict(counts)


def targets(ds_or_rows: Any) -> np.ndarray:
    """(n, 2) float targets with NaN where a source says nothing."""
    cols = [np.array([np.nan if v is None else float(v) for v in ds_or_rows[lab]], dtype=np.float32) for lab in LABELS]
    return np.stack(cols, axis=1)


def report(ds: Any) -> dict[str, Any]:
    """Counts per source x split x label value, and per language: the data section of every report."""
    per_source: dict[str, dict[str, Any]] = {}
    for src, split, p, s, lang in zip(ds["source"], ds["split"], ds["propaganda"], ds["sectarian"], ds["lang"]):
        d = per_source.setdefault(src, {"rows": 0, "split": Counter(), "propaganda": Counter(), "sectarian": Counter(), "lang": Counter()})
        d["rows"] += 1
        d["split"][split] += 1
        d["propaganda"][str(p) if p is not None else "unknown"] += 1
        d["sectarian"][str(s) if s is not None else "unknown"] += 1
        d["lang"][lang] += 1
    try:
        dropped = json.loads(ds.info.description or "{}").get("dropped_duplicates", {})
    except (json.JSONDecodeError, AttributeError):
        dropped = {}
    return {"rows": len(ds), "dropped_duplicates": dropped,
            "sources": {k: {kk: (dict(vv) if isinstance(vv, Counter) else vv) for kk, vv in v.items()} for k, v in sorted(per_source.items())}}


def report_markdown(rep: dict[str, Any]) -> str:
    lines = [f"{rep['rows']} rows after de-duplication (dropped: {rep['dropped_duplicates']}).", "",
             "| source | rows | train/val/test | propaganda 1/0/? | sectarian 1/0/? | languages |", "|---|---|---|---|---|---|"]
    for name, d in rep["sources"].items():
        sp = d["split"]
        pr, se = d["propaganda"], d["sectarian"]
        langs = ", ".join(f"{k} {v}" for k, v in sorted(d["lang"].items(), key=lambda kv: -kv[1]))
        lines.append(f"| {name} | {d['rows']} | {sp.get('train', 0)}/{sp.get('val', 0)}/{sp.get('test', 0)} | "
                     f"{pr.get('1', 0)}/{pr.get('0', 0)}/{pr.get('unknown', 0)} | {se.get('1', 0)}/{se.get('0', 0)}/{se.get('unknown', 0)} | {langs} |")
    return "\n".join(lines)
