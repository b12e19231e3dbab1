"""The loader on the real ../shared/data: mapping, schema, leak-free splits, hand labels. Skips without data."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from flagstream.config import load_settings

DATA_DIR = load_settings(environ={}).data_dir

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"labelled data not present at {DATA_DIR} (set FLAGSTREAM_DATA_DIR)"),
]


@pytest.fixture(scope="module")
def corpus():
    from flagstream.classifier.data.corpus import load_corpus

    return load_corpus(DATA_DIR)


def test_schema_and_label_values(corpus):
    assert {"text", "propaganda", "sectarian", "source", "lang", "group", "split", "weight", "weak", "hand"} <= set(corpus.column_names)
    for lab in ("propaganda", "sectarian"):
        assert set(corpus[lab]) <= {0, 1, None}
    assert all(p is not None or s is not None for p, s in zip(corpus["propaganda"], corpus["sectarian"]))
    assert set(corpus["split"]) == {"train", "val", "test"}
    assert {"en", "ar", "fr", "de"} <= set(corpus["lang"])


def test_every_trained_source_is_loaded_and_mapped(corpus):
    from flagstream.classifier.data.sources import SOURCES

    present = set(corpus["source"])
    for s in SOURCES:
        if s.train and s.available(DATA_DIR):
            assert s.name in present, s.name
    assert "semeval2021_memes" not in present


def test_mapping_examples(corpus):
    by = defaultdict(list)
    for src, p, s, meta, lang in zip(corpus["source"], corpus["propaganda"], corpus["sectarian"], corpus["meta"], corpus["lang"]):
        by[src].append((p, s, json.loads(meta) if meta else {}, lang))
    cn = [(p, s) for p, s, m, _ in by["conan"] if m.get("side") == "cn"]
    # counter-speech: hard negatives (a label is blanked only where a duplicate elsewhere disagrees)
    assert all(p == 0 for p, _ in cn) and sum(s == 0 for _, s in cn) >= 0.99 * len(cn)
    assert all(s == 1 for p, s, m, _ in by["conan"] if m.get("side") == "hs" and m.get("target") in (None, "MUSLIMS", "JEWS"))
    assert all(p == 0 for p, *_ in by["crisislex_boston"]) and all(p == 0 for p, *_ in by["ptc_news"])
    assert all(lang == "de" for *_, lang in by["germeval_2026"])
    assert {m["vio"] for _, _, m, _ in by["germeval_2026"]} <= {"nothing", "call2violence", "support", "glorification", "prospensity", "other"}
    assert all(lang == "ar" for *_, lang in by["osact2022"]) and all(p in (0, None) for p, *_ in by["osact2022"])
    lh = [(p, s, m) for p, s, m, _ in by["latent_hatred"]]
    assert all(p == 1 for p, s, m in lh if m.get("sub") in ("incitement", "threatening"))
    nh = [(p, s) for p, s, m in lh if m.get("cls") == "not_hate"]
    assert sum(p == 0 and s == 0 for p, s in nh) >= 0.99 * len(nh) and all(p in (0, None) for p, _ in nh)


def test_splits_are_leak_free_by_group_and_by_duplicate(corpus):
    from flagstream.classifier.normalize import dedup_key

    group_split: dict[tuple[str, str], str] = {}
    key_split: dict[str, str] = {}
    for src, g, sp, text in zip(corpus["source"], corpus["group"], corpus["split"], corpus["text"]):
        assert group_split.setdefault((src, g), sp) == sp
        k = dedup_key(text)
        assert k not in key_split, "a duplicate survived de-duplication"
        key_split[k] = sp
    isis_accounts = {g for src, g in group_split if src == "isis_fifthtribe"}
    assert len(isis_accounts) >= 80


def test_isis_hand_labels_apply_and_rule_rows_are_weak(corpus):
    from flagstream.classifier.data.corpus import load_hand_labels

    hand = load_hand_labels()
    assert len(hand) >= 200
    rows = [(h, w, sp, m) for src, h, w, sp, m in zip(corpus["source"], corpus["hand"], corpus["weak"], corpus["split"], corpus["meta"])
            if src == "isis_fifthtribe"]
    assert sum(h for h, *_ in rows) == len(hand)
    assert all(w == (0 if h else 1) for h, w, *_ in rows)
    for h, _, sp, m in rows:
        if h:
            assert hand[json.loads(m)["row"]]["split"] == sp  # the label file's split matches the loader's
