"""The functional test suite: generated cases, the pass rule, the table, the card section, the command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from flagstream.classifier.evaluation.card import replace_section
from flagstream.classifier.evaluation.functional.build import CASES, LANGS, build, dumps, fill, load_templates
from flagstream.classifier.evaluation.functional.suite import FUNCTIONAL_HEADING, load_cases, markdown_summary, run_suite
from flagstream.classifier.labels import LABELS
from flagstream.classifier.inference.scoring import load_scorer

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "flagstream-minilm"


def test_committed_cases_are_exactly_what_the_templates_generate():
    assert CASES.read_text(encoding="utf-8") == dumps(build(load_templates())), \
        "cases.jsonl is stale: run python -m flagstream.classifier.evaluation.functional.build"


def test_every_functionality_is_tested_in_every_language_with_its_expected_labels():
    doc = load_templates()
    cases = load_cases()
    funcs = doc["functionalities"]
    assert len(funcs) >= 11 and len({c["id"] for c in cases}) == len(cases)
    per = Counter((c["functionality"], c["lang"]) for c in cases)
    assert all(per[(f, lg)] >= 3 for f in funcs for lg in LANGS)
    for c in cases:
        assert all(c[lab] == funcs[c["functionality"]]["expect"][lab] for lab in LABELS)
        assert "{" not in c["text"] and "}" not in c["text"]  # every slot filled
    # Both sides of the hard distinction are present: must-not-flag and must-flag functionalities.
    assert {f for f, v in funcs.items() if v["expect"]["propaganda"] == 0} >= {"report_attack", "quote_to_condemn",
                                                                                "counter_speech", "eyewitness"}
    assert {f for f, v in funcs.items() if v["expect"]["propaganda"] == 1} >= {"praise_attack", "recruitment",
                                                                                "call_to_fight", "threat"}
    assert funcs["dehumanise_sect"]["expect"]["sectarian"] == 1


def test_fill_capitalises_sentence_starts_only_where_asked():
    assert fill("{Movement} said; {movement} said", {"movement": "the group"}) == "The group said; the group said"


@pytest.fixture(scope="module")
def linear_scorer(linear_model_dir):
    return load_scorer(linear_model_dir)


def test_pass_rule_follows_the_thresholds_on_a_real_model(linear_scorer):
    cases = load_cases()
    # Threshold 0: everything is flagged, so only must-flag cases pass; above 1: nothing is, so only must-not-flag.
    everything = replace(linear_scorer.info, thresholds={lab: 0.0 for lab in LABELS})
    nothing = replace(linear_scorer.info, thresholds={lab: 1.01 for lab in LABELS})
    for info, passing_value in ((everything, 1), (nothing, 0)):
        linear_scorer.info = info
        res = run_suite(linear_scorer, cases)
        for row in res["cases"]:
            assert row["passed"] == all(v == passing_value for v in row["expect"].values()), row["id"]
            assert "text" not in row  # results carry ids and scores, never texts
        n_pass = sum(r["passed"] for r in res["cases"])
        assert res["per_language"]["all"] == [n_pass, len(cases)]
        assert sum(v["all"][1] for v in res["per_functionality"].values()) == len(cases)
    table = markdown_summary(res)
    assert "| recruitment | propaganda flag | 0.00 (0/" in table and "| report_attack |" in table
    assert table.count("\n| ") == len(res["per_functionality"]) + 2  # header + one row per functionality + total


def test_card_section_is_inserted_then_replaced_and_nothing_else_changes(tmp_path):
    card = (MODEL / "MODEL_CARD.md").read_text(encoding="utf-8")
    card = replace_section(card, FUNCTIONAL_HEADING, "") if FUNCTIONAL_HEADING in card else card
    first = replace_section(card, FUNCTIONAL_HEADING, f"{FUNCTIONAL_HEADING}\n\nold table")
    assert first.index(FUNCTIONAL_HEADING) < first.index("## Known failure modes")
    second = replace_section(first, FUNCTIONAL_HEADING, f"{FUNCTIONAL_HEADING}\n\nnew table")
    assert "old table" not in second and second.count(FUNCTIONAL_HEADING) == 1
    assert second.replace(f"{FUNCTIONAL_HEADING}\n\nnew table\n\n", "") == card


def test_evaluate_functional_command_writes_results_and_the_card_section(tmp_path, linear_model_dir):
    model = tmp_path / "model"
    shutil.copytree(linear_model_dir, model)
    (model / "MODEL_CARD.md").write_text("# m\n\n## Evaluation\n\nx\n\n## Known failure modes\n\n- y\n", encoding="utf-8")
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "flagstream.cli", "evaluate", "--functional", "--write-card",
                           "--model", str(model), "--output", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "| praise_attack |" in proc.stdout
    result = json.loads((out / "functional.json").read_text(encoding="utf-8"))
    assert len(result["cases"]) == len(load_cases())
    card = (model / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert card.index(FUNCTIONAL_HEADING) < card.index("## Known failure modes") and "| **all** |" in card


@pytest.mark.skipif(not (MODEL / "manifest.json").exists(), reason="default model not committed")
def test_shipped_card_carries_the_shipped_models_functional_table():
    """The table in MODEL_CARD.md is what the suite measures on the shipped model today (fp32)."""
    scorer = load_scorer(MODEL, precision="fp32")
    section = f"{FUNCTIONAL_HEADING}\n\n{markdown_summary(run_suite(scorer))}\n"
    assert section in (MODEL / "MODEL_CARD.md").read_text(encoding="utf-8")
