"""The evaluation report on a small synthetic corpus: metrics, hard-negative FPR, LOSO (baseline), files."""

from __future__ import annotations

import json

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")

from flagstream.classifier.evaluation.evaluate import evaluate_split  # noqa: E402
from flagstream.classifier.evaluation.loso import loso, loso_f1_difference  # noqa: E402
from flagstream.classifier.evaluation.plots import plot_curves  # noqa: E402
from flagstream.classifier.evaluation.report import markdown_report, verdict, write_report  # noqa: E402


def _corpus(n_per: int = 40) -> "datasets.Dataset":
    rng = np.random.default_rng(0)
    rows = []
    words = {"p": "join the fight glory to the fighters", "s": "those people are vermin and filth",
             "n": "police report on the attack downtown today", "o": "nice weather lunch with friends"}
    plan = [("latent_hatred", "p", 1, None), ("latent_hatred", "o", 0, 0), ("conan", "s", None, 1), ("conan", "n", 0, 0),
            ("crisislex_boston", "n", 0, None), ("osact2022", "o", 0, 0), ("osact2022", "s", 0, 1),
            ("germeval_2026", "p", 1, None), ("germeval_2026", "o", 0, None)]
    for src, kind, p, s in plan:
        for i in range(n_per):
            rows.append({"text": f"{words[kind]} {rng.integers(1e6)}", "propaganda": p, "sectarian": s, "source": src,
                         "lang": {"osact2022": "ar", "germeval_2026": "de"}.get(src, "en"), "group": f"{src}:{kind}:{i}", "weight": 1.0,
                         "hand": 0, "meta": "", "weak": 0, "split": ("train", "train", "val", "test")[i % 4]})
    return datasets.Dataset.from_list(rows)


def test_evaluate_split_reports_per_source_language_and_hard_negatives():
    ds = _corpus()
    test = ds.filter(lambda s: s == "test", input_columns="split")
    probs = np.zeros((len(test), 2), dtype=np.float32)
    y = np.array([[np.nan if v is None else v for v in test[c]] for c in ("propaganda", "sectarian")]).T
    probs[y[:, 0] == 1, 0] = 0.9
    probs[np.asarray(test["source"]) == "crisislex_boston", 0] = 0.8  # every news row flagged: FPR 1.0 there
    res = evaluate_split(test, probs, {"propaganda": 0.5, "sectarian": 0.5})
    prop = res["labels"]["propaganda"]
    assert prop["per_source"]["latent_hatred"]["recall"] == 1.0
    assert prop["hard_negative_fpr_per_source"]["crisislex_boston"] == 1.0
    assert prop["hard_negative_fpr_per_source"]["conan"] == 0.0
    assert 0 < prop["hard_negative_fpr"] < 1 and prop["arabic_fpr"] == 0.0
    assert set(prop["per_lang"]) == {"ar", "de", "en"}


def test_loso_baseline_and_report_files(tmp_path):
    ds = _corpus()
    lo = loso(ds, ["latent_hatred", "osact2022"], steps=0, target=0.9, transformer=False, progress=False)
    assert set(lo["folds"]) == {"latent_hatred", "osact2022"}
    assert lo["folds"]["latent_hatred"]["test_rows"] == 80
    fold = lo["folds"]["latent_hatred"]["baseline"]
    assert set(fold["thresholds_f1"]) == {"propaganda", "sectarian"} and fold["metrics_f1"]["propaganda"]["pos"] == 40
    assert {"pooled_f1", "pooled_f1_f1thr", "macro_pr_auc"} <= set(lo["baseline"]["propaganda"])
    test = ds.filter(lambda s: s == "test", input_columns="split")
    probs = np.full((len(test), 2), 0.2, dtype=np.float32)
    thr = {"propaganda": 0.5, "sectarian": 0.5}
    result = {"model": "m@1", "target_precision": 0.9, "heldout": {"m@1": evaluate_split(test, probs, thr),
              "baseline": evaluate_split(test, probs, thr)}, "loso": lo}
    result["plots"] = plot_curves(tmp_path, test, {"m@1": probs, "baseline": probs}, {"m@1": thr, "baseline": thr})
    md = write_report(tmp_path, result)
    text = md.read_text()
    assert "Leave-one-source-out" in text and "| osact2022 |" in text and "best-F1 thr" in text
    both = {**result, "loso": {**lo, "transformer": lo["baseline"]}}  # the verdict compares the two
    assert any("best-F1 thresholds" in line for line in verdict(both))
    data = json.loads((tmp_path / "report.json").read_text())
    assert "probs" not in json.dumps(data)
    assert (tmp_path / "pr_curves.png").stat().st_size > 1000 and (tmp_path / "calibration.png").exists()
    assert markdown_report(result) == text


def _fold(rng, n: int, t_hits: int, b_hits: int) -> dict:
    """A synthetic LOSO fold: n rows, the first 100 positive; the transformer flags the first ``t_hits`` of them,
    the baseline the last ``b_hits`` (different posts, so a paired resample can favour either)."""
    y = np.zeros((n, 2))
    y[:100, :] = 1
    fold = {"y": y}
    for kind, hits in (("transformer", t_hits), ("baseline", b_hits)):
        probs = rng.uniform(0, 0.4, size=(n, 2))
        probs[slice(0, hits) if kind == "transformer" else slice(100 - hits, 100), :] = 0.9
        thr = {"propaganda": 0.5, "sectarian": 0.5}
        fold[kind] = {"probs": probs, "thresholds": thr, "thresholds_f1": thr}
    return fold


def test_loso_f1_difference_is_paired_and_says_when_a_gap_is_noise():
    rng = np.random.default_rng(1)
    clear = loso_f1_difference({"folds": {"a": _fold(rng, 1000, 60, 20), "b": _fold(rng, 1000, 50, 10)}}, resamples=500)
    d = clear["sectarian"]["target"]
    # pooled over both folds: 110 vs 30 true positives of 200, no false positives
    assert d["transformer"] == 2 * 110 / (2 * 110 + 90) and d["baseline"] == 2 * 30 / (2 * 30 + 170)
    assert 0 < d["ci95"][0] < d["difference"] < d["ci95"][1] and d["p_not_better"] == 0.0
    close = loso_f1_difference({"folds": {"a": _fold(rng, 1000, 21, 20)}}, resamples=500)["propaganda"]["f1thr"]
    assert close["ci95"][0] < 0 < close["ci95"][1]  # one post apart: the interval straddles zero
    assert loso_f1_difference({"folds": {"a": {"y": np.zeros((3, 2))}}}) == {}  # no probabilities: nothing claimed


def test_model_card_from_the_template_has_the_shipped_cards_structure():
    """The template reproduces the committed 1.4.0 card's sections, in order, filled with the manifest's numbers."""
    from pathlib import Path

    from flagstream.classifier.evaluation.card import model_card
    from flagstream.classifier.manifest import read_manifest

    model = Path(__file__).resolve().parent.parent / "models" / "flagstream-minilm"
    if not (model / "manifest.json").exists():
        pytest.skip("default model not committed")
    manifest = read_manifest(model, verify=False)
    ds = _corpus()
    test = ds.filter(lambda s: s == "test", input_columns="split")
    probs = np.random.default_rng(0).uniform(size=(len(test), 2)).astype(np.float32)
    thr = {"propaganda": 0.5, "sectarian": 0.6}
    lo = loso(ds, ["latent_hatred", "osact2022"], steps=0, target=0.9, transformer=False, progress=False)
    ref = manifest.name + "@" + manifest.version
    result = {"model": ref, "target_precision": manifest.extra["target_precision"],
              "heldout": {ref: evaluate_split(test, probs, thr), "baseline": evaluate_split(test, probs * 0.9, thr)},
              "loso": {**lo, "transformer": lo["baseline"], "steps": 1000},
              "validation": {ref: manifest.extra["validation"]}, "candidates_md": "| a |\n|---|\n| 1 |"}
    card = model_card(manifest, result)
    shipped = (model / "MODEL_CARD.md").read_text(encoding="utf-8")

    def headings(text):
        return [ln for ln in text.splitlines() if ln.startswith("#") and not ln.startswith("## Functional")]

    assert headings(card) == headings(shipped)
    assert "${" not in card and "\n\n\n" not in card
    # Measured values come from the manifest and the repository, as in the shipped card.
    for line in ("- Data hash `ebe5f4ec02c9`, config hash `cd87cd228e2a`, normaliser v1.",
                 "| sectarian | 0.908 | 0.90 | 0.906 | 0.406 | 1.47 | 0.0533 | 0.0499 |",
                 "| propaganda | 0.70 | 0.814 | 0.705 | 0.307 |"):
        assert line in card and line in shipped
    assert "Only 22% of them are propaganda by the guide" in card and "weigh 3x in training" in card
    assert "## Functional tests" not in card
    functional = {"model": ref, "per_functionality": {"threat": {"en": [1, 2], "all": [1, 2]}},
                  "per_language": {"en": [1, 2], "all": [1, 2]}, "any_flag_per_language": {"en": [1, 2]},
                  "expect": {"threat": {"propaganda": 1}}}
    with_functional = model_card(manifest, {**result, "functional": functional})
    assert with_functional.index("## Functional tests") < with_functional.index("## Known failure modes")
    assert "| threat | propaganda flag | 0.50 (1/2) | 0.50 (1/2) |" in with_functional


def test_loso_f1_difference_pairs_any_two_models_of_a_fold():
    """Two transformers (me5 against MiniLM, bench/loso_bases.py) are compared the same way as one against the baseline."""
    rng = np.random.default_rng(2)
    fold = _fold(rng, 1000, 60, 20)
    fold["me5"], fold["minilm"] = fold.pop("transformer"), fold.pop("baseline")
    d = loso_f1_difference({"folds": {"a": fold}}, kinds=("me5", "minilm"), resamples=300)["sectarian"]["target"]
    assert d["me5"] == 2 * 60 / (2 * 60 + 40) and d["minilm"] == 2 * 20 / (2 * 20 + 80)
    assert d["ci95"][0] > 0 and "transformer" not in d
