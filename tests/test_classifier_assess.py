"""``flagstream.classifier.evaluation.assess``, the workflow behind ``flagstream evaluate``, on a small synthetic corpus and a real
(linear) model directory: report files, the model beside the baseline, LOSO written alone and merged later."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")

import flagstream.classifier.inference.linear as linear  # noqa: E402
from flagstream.classifier.evaluation import assess  # noqa: E402
from flagstream.classifier.data.corpus import targets  # noqa: E402
from test_classifier_evaluate import _corpus  # noqa: E402


@pytest.fixture()
def linear_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(linear.WORD_PARAMS, "min_df", 1)
    monkeypatch.setitem(linear.CHAR_PARAMS, "min_df", 1)
    ds = _corpus()
    train = ds.filter(lambda s: s == "train", input_columns="split")
    model = linear.LinearModel.fit(list(train["text"]), targets(train))
    model.save(tmp_path / "m", "tiny", "0.0.1", {"propaganda": 0.5, "sectarian": 0.5})
    return tmp_path / "m", ds


def test_assess_writes_the_report_with_model_and_baseline(linear_model, tmp_path: Path) -> None:
    model_dir, ds = linear_model
    said: list[str] = []
    done = assess.assess(model_dir, ds, tmp_path / "out", target_precision="0.9", say=said.append)
    assert done.report_md.exists() and (tmp_path / "out" / "report.json").exists()
    assert set(done.result["heldout"]) == {"tiny@0.0.1", "baseline"}
    assert done.result["target_precision"] == {"propaganda": 0.9, "sectarian": 0.9}
    assert "loso" not in done.result and any("test rows" in line for line in said)
    assert all((tmp_path / "out" / p).exists() for p in done.result["plots"])


def test_loso_alone_then_merged_into_the_report(linear_model, tmp_path: Path) -> None:
    model_dir, ds = linear_model
    out = tmp_path / "out"
    assess.assess(model_dir, ds, out, say=lambda _: None)
    plan = assess.LosoPlan(sources=["latent_hatred", "osact2022"], steps=0, transformer=False)
    path = assess.loso_only(ds, tmp_path / "loso", plan)
    assert set(json.loads(path.read_text())["folds"]) == {"latent_hatred", "osact2022"}
    md = assess.merge_loso(model_dir, out, path)
    assert "Leave-one-source-out" in md.read_text() and "loso" in json.loads((out / "report.json").read_text())


def test_merge_without_a_report_is_one_line(linear_model, tmp_path: Path) -> None:
    from flagstream.errors import UserError

    model_dir, _ = linear_model
    with pytest.raises(UserError, match="run flagstream evaluate --output"):
        assess.merge_loso(model_dir, tmp_path / "nothing", tmp_path / "loso.json")
    assert assess.loso_target("propaganda=0.8,sectarian=0.9") == 0.90 and assess.loso_target("0.8") == 0.8


SHIPPED = Path(__file__).resolve().parent.parent / "models" / "flagstream-minilm"


@pytest.mark.timeout(600)
def test_recalibrate_writes_a_new_verified_version_with_the_same_weights(tmp_path: Path) -> None:
    from flagstream.classifier.training.fit import recalibrate
    from flagstream.classifier.manifest import read_manifest
    from flagstream.classifier.inference.scoring import load_scorer

    out = tmp_path / "recal"
    metrics = recalibrate(SHIPPED, out, "9.9.9", "0.8", corpus=_corpus)
    assert set(metrics) == {"propaganda", "sectarian"}
    new, old = read_manifest(out), read_manifest(SHIPPED)
    assert new.version == "9.9.9" and new.extra["calibrated_from"] == f"{old.name}@{old.version}"
    assert new.files == {k: v for k, v in old.files.items() if k != "MODEL_CARD.md"}
    assert new.extra["base_files"] == old.extra["base_files"]
    assert load_scorer(out).info.ref == f"{old.name}@9.9.9"
    assert new.extra["threshold_policy"] == "pooled" and new.extra["calibration_rows"] > 0
    # the other policy: recorded in the manifest and in each label's validation metrics
    metrics = recalibrate(SHIPPED, tmp_path / "balanced", "9.9.10", "0.8", corpus=_corpus,
                          threshold_policy="source_balanced")
    bal = read_manifest(tmp_path / "balanced")
    assert bal.extra["threshold_policy"] == "source_balanced"
    assert all(m["threshold_policy"] == "source_balanced" for m in metrics.values())


def test_recalibrate_refuses_before_loading_data(linear_model, tmp_path: Path) -> None:
    from flagstream.classifier.training.fit import recalibrate
    from flagstream.errors import UserError

    model_dir, _ = linear_model

    def never():
        raise AssertionError("the corpus must not load for a refused request")

    with pytest.raises(UserError, match="linear model"):
        recalibrate(model_dir, tmp_path / "x", "1", "0.9", corpus=never)
    with pytest.raises(UserError, match="new directory"):
        recalibrate(SHIPPED, SHIPPED, "1", "0.9", corpus=never)
