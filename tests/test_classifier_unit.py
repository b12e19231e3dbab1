"""Pure-logic tests for the classifier package: normalisation, mapping registry, splits, calibration, loss."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flagstream.classifier.training.calibration import (
    expected_calibration_error,
    fit_temperature,
    threshold_for_best_f1,
    source_balanced_weights,
    threshold_for_precision,
    threshold_for_recall,
)
from flagstream.classifier.data.corpus import dedupe, guess_lang, text_hash
from flagstream.classifier.normalize import dedup_key, normalize_text
from flagstream.classifier.data.sources import HARD_NEGATIVE_SOURCES, SOURCES, isis_rule, mapping_table
from flagstream.classifier.data.splits import assign_split, leave_one_source_out, split_column


def test_normalize_masks_urls_handles_entities_and_retweet_prefix():
    raw = "RT @SomeAccount: Caf&eacute; &amp; news https://t.co/xyz \u200bhere"
    out = normalize_text(raw)
    assert "SomeAccount" not in out and "t.co" not in out
    assert out.startswith("Café & news")
    assert "http" in out and "\u200b" not in out


def test_retweet_and_original_share_a_dedup_key():
    assert dedup_key("RT @a: Breaking: X happened!! http://t.co/1") == dedup_key("breaking x happened http://t.co/2")


def test_dedupe_drops_near_duplicates_and_blanks_conflicting_labels():
    rows = [
        {"text": "one two three four five six seven eight nine", "propaganda": 1, "sectarian": None, "hand": 0},
        {"text": "one two three four five six seven eight ten…", "propaganda": 1, "sectarian": None, "hand": 0},
        {"text": "totally different words", "propaganda": 0, "sectarian": 0, "hand": 0},
        {"text": "Totally different words!", "propaganda": 1, "sectarian": 0, "hand": 0},
    ]
    out, dropped = dedupe(rows)
    assert dropped == {"near": 1, "exact": 1}
    assert len(out) == 2
    conflicted = [r for r in out if r["text"].startswith("totally")][0]
    assert conflicted["propaganda"] is None and conflicted["sectarian"] == 0


def test_every_source_has_a_reason_and_hard_negatives_are_named():
    names = [s.name for s in SOURCES]
    assert len(names) == len(set(names))
    assert all(len(s.reason) > 40 for s in SOURCES)
    assert {"crisislex_boston", "conan", "ptc_news"} <= HARD_NEGATIVE_SOURCES
    table = mapping_table()
    assert all(n in table for n in names)


def test_isis_rule_is_about_the_movements_voice_not_its_name_or_arabic_script():
    assert isis_rule("#AmaqAgency Islamic state forces recaptured the village from apostates")
    assert isis_rule("the lions of the khilafah, takbir!")
    # a headline naming the group is news, not a weak positive (the labelling guide labels it 0)
    assert not isis_rule("Islamic State fighters seize town near the Syrian border, officials say")
    assert not isis_rule("Lol even Lahore Qalanders have dropped Umar Akmal. #PSL")
    assert not isis_rule("بسم الله الرحمن الرحيم السلام عليكم")  # a greeting is not the group's vocabulary


def test_guess_lang():
    assert guess_lang("هذا نص عربي قصير") == "ar"
    assert guess_lang("Ich bin nicht sicher, ob das die Wahrheit ist und wir") == "de"
    assert guess_lang("les gens sont dans la rue et pas pour vous") == "fr"
    assert guess_lang("the people are in the street") == "en"


def test_text_hash_is_short_and_stable():
    # stable across processes and releases (hand labels name rows by it): the first 12 hex digits of
    # SHA-256, pinned to the FIPS 180-2 test vector, not to this process's own output
    assert text_hash("abc") == "ba7816bf8f01"
    assert text_hash("é") == "4a99557e4033"  # hashed as UTF-8
    assert text_hash("abd") != text_hash("abc")
    assert len(text_hash("x" * 10_000)) == 12


def test_splits_are_deterministic_and_group_pure():
    sources = ["a"] * 500 + ["b"] * 500
    groups = [f"g{i % 37}" for i in range(1000)]
    s1 = split_column(sources, groups)
    assert s1 == split_column(sources, groups)
    seen: dict[tuple[str, str], str] = {}
    for src, g, sp in zip(sources, groups, s1):
        assert seen.setdefault((src, g), sp) == sp  # a group never spans two splits
    counts = {k: s1.count(k) for k in ("train", "val", "test")}
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0
    assert assign_split("a", "g1", seed=1) in ("train", "val", "test")


def test_leave_one_source_out_never_trains_on_the_held_out_source():
    sources = np.array(["a", "b", "c"] * 20)
    splits = np.array(["train", "val", "test", "train"] * 15)
    for held, tr, va, te in leave_one_source_out(sources, splits):
        assert not (sources[tr] == held).any() and not (sources[va] == held).any()
        assert (sources[te] == held).all() and len(te) == 20


def test_threshold_for_precision_hits_the_target_on_a_separable_set():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(200), np.zeros(800)]
    p = np.r_[rng.uniform(0.4, 1.0, 200), rng.uniform(0.0, 0.6, 800)]
    thr, prec, rec = threshold_for_precision(p, y, 0.9)
    pred = p >= thr
    assert prec >= 0.9 and abs(prec - (pred & (y == 1)).sum() / pred.sum()) < 1e-9
    assert 0.5 < rec <= 1.0
    assert math.isnan(threshold_for_precision(p, np.zeros_like(y), 0.9)[1])


def test_source_balanced_threshold_holds_on_the_small_source_the_pooled_one_ignores():
    """A big clean source and a small noisy one: pooled precision is the big source's, so the pooled threshold
    is too low for the small one; source-balanced weights make each source's precision count once."""
    rng = np.random.default_rng(3)
    big_y = np.r_[np.ones(500), np.zeros(4500)]
    big_p = np.r_[rng.uniform(0.5, 1.0, 500), rng.uniform(0.0, 0.55, 4500)]
    small_y = np.r_[np.ones(50), np.zeros(450)]
    small_p = np.r_[rng.uniform(0.3, 1.0, 50), rng.uniform(0.0, 0.9, 450)]
    p, y = np.r_[big_p, small_p], np.r_[big_y, small_y]
    src = np.array(["big"] * 5000 + ["small"] * 500)
    w = source_balanced_weights(src, y)
    assert w[:5000].sum() == pytest.approx(w[5000:].sum()) and w.sum() == pytest.approx(len(y))
    pooled = threshold_for_precision(p, y, 0.9)[0]
    balanced, bprec, _ = threshold_for_precision(p, y, 0.9, w)
    assert balanced > pooled

    def small_precision(t: float) -> float:
        f = small_p >= t
        return small_y[f].mean()

    assert small_precision(balanced) > small_precision(pooled)
    # weighted precision is the mean of the two sources' precisions at that threshold
    fb = big_p >= balanced
    assert bprec == pytest.approx((big_y[fb].mean() + small_precision(balanced)) / 2, abs=0.02)
    # unknown labels (NaN) get no weight; unweighted call is unchanged
    y_nan = y.copy()
    y_nan[:10] = np.nan
    assert source_balanced_weights(src, y_nan)[:10].sum() == 0
    assert threshold_for_precision(p, y, 0.9, np.ones(len(y)))[0] == pooled


def test_temperature_scaling_reduces_calibration_error_of_overconfident_logits():
    rng = np.random.default_rng(1)
    true_logit = rng.normal(0, 1.5, 5000)
    y = (rng.uniform(size=5000) < 1 / (1 + np.exp(-true_logit))).astype(float)
    over = true_logit * 4  # overconfident
    t = fit_temperature(over, y)
    assert 3.0 < t < 5.5
    before = expected_calibration_error(1 / (1 + np.exp(-over)), y)
    after = expected_calibration_error(1 / (1 + np.exp(-over / t)), y)
    assert after < before / 2


def test_masked_bce_ignores_missing_labels():
    torch = pytest.importorskip("torch")
    from flagstream.classifier.training.train import masked_bce

    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    y = torch.tensor([[1.0, float("nan")], [0.0, float("nan")]])
    w = torch.ones(2)
    pw = torch.ones(2)
    full = masked_bce(logits, y, w, pw)
    changed = masked_bce(torch.tensor([[2.0, 9.0], [0.5, -9.0]]), y, w, pw)
    assert torch.isfinite(full) and torch.allclose(full, changed)


def test_recall_matched_and_best_f1_thresholds():
    p = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    y = np.array([1, 1, 0, 1, 0, 1, 0, 0, 0, 0], dtype=float)
    assert threshold_for_recall(p, y, 0.5) == 0.9  # two of four positives at or above it
    assert threshold_for_recall(p, y, 1.0) == 0.5
    assert threshold_for_recall(p, y, 0.01) == 0.95
    # F1 at 0.9: 2*2/(2+4)=0.667; at 0.7: 2*3/(4+4)=0.75; at 0.5: 2*4/(6+4)=0.8 (best)
    assert threshold_for_best_f1(p, y, min_tp=1) == 0.5
    y_nan = y.copy()
    y_nan[[0, 1]] = np.nan  # unknown labels are ignored
    assert threshold_for_recall(p, y_nan, 1.0) == 0.5


def test_target_precision_is_one_number_or_one_per_label():
    from flagstream.classifier.training.fit import parse_targets
    from flagstream.errors import UserError

    assert parse_targets("0.9") == {"propaganda": 0.9, "sectarian": 0.9}
    assert parse_targets("propaganda=0.8,sectarian=0.9") == {"propaganda": 0.8, "sectarian": 0.9}
    assert parse_targets({"propaganda": 0.8, "sectarian": 0.85}) == {"propaganda": 0.8, "sectarian": 0.85}
    for bad in ("propaganda=0.8", "x=0.5,propaganda=0.8,sectarian=0.9", "1.5", "high", "propaganda=a,sectarian=0.9"):
        with pytest.raises(UserError):
            parse_targets(bad)
