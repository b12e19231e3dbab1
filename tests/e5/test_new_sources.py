"""The six sources added for the multilingual model, read from the real ../shared/data (skips without it)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from flagstream.config import load_settings

DATA_DIR = load_settings(environ={}).data_dir

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"labelled data not present at {DATA_DIR} (set FLAGSTREAM_DATA_DIR)"),
]

NEW = ("alfifi_isis_ar", "l_hsab", "t_hsab", "aref2020_shia_hate_ar", "dynahate", "gab_hate_corpus")


def _rows(name):
    from flagstream.classifier.data.sources import BY_NAME

    src = BY_NAME[name]
    if not src.available(DATA_DIR):
        pytest.skip(f"{src.folder} not in {DATA_DIR}")
    return list(src.reader(DATA_DIR / src.folder))


@pytest.mark.parametrize("name", NEW)
def test_each_new_source_has_a_reason_and_sane_labels(name):
    from flagstream.classifier.data.sources import BY_NAME

    assert len(BY_NAME[name].reason) > 80
    rows = _rows(name)
    assert rows
    for r in rows:
        assert r["propaganda"] in (0, 1, None) and r["sectarian"] in (0, 1, None)
        assert r["text"].strip()


def test_alfifi_is_arabic_propaganda_with_religious_hard_negatives():
    from flagstream.classifier.data.sources import BY_NAME, is_hard_negative

    rows = _rows("alfifi_isis_ar")
    combos = Counter((r["propaganda"], r["sectarian"]) for r in rows)
    assert combos[(1, None)] > 400 and combos[(0, 0)] > 400 and len(combos) == 2
    assert all(r["lang"] == "ar" for r in rows)
    assert is_hard_negative("alfifi_isis_ar") and BY_NAME["alfifi_isis_ar"].hard_negative
    assert len({r["group"] for r in rows}) == len(rows)  # sample ids restart per polarity: the group keeps both


def test_aref_zero_is_never_a_negative():
    rows = _rows("aref2020_shia_hate_ar")
    assert {(r["propaganda"], r["sectarian"]) for r in rows} == {(None, 1)}


def test_dynahate_contrast_pairs_share_a_group():
    rows = _rows("dynahate")
    by_group = defaultdict(list)
    for r in rows:
        by_group[r["group"]].append(json.loads(r["meta"])["level"])
    assert any("perturbation" in lv and "original" in lv for lv in by_group.values())
    assert not any(r["propaganda"] == 1 and r["sectarian"] is None and json.loads(r["meta"])["type"] == "derogation"
                   for r in rows)


@pytest.mark.parametrize("name", ("l_hsab", "t_hsab"))
def test_hsab_hate_is_sectarian_only_when_it_names_a_group(name):
    from flagstream.classifier.data.sources import AR_GROUP_WORDS

    rows = _rows(name)
    hate = [r for r in rows if json.loads(r["meta"])["cls"] == "hate"]
    assert hate
    for r in hate:
        assert r["sectarian"] == (1 if AR_GROUP_WORDS.search(r["text"]) else None)
    assert all(r["propaganda"] == 0 and r["sectarian"] == 0 for r in rows if json.loads(r["meta"])["cls"] != "hate")


def test_gab_calls_for_violence_are_propaganda():
    rows = _rows("gab_hate_corpus")
    cv = [r for r in rows if json.loads(r["meta"] or "{}").get("cv") == 1]
    assert len(cv) > 100 and all(r["propaganda"] == 1 for r in cv)
