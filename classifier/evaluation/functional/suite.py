"""Run the functional suite on a scorer: per case pass/fail, then pass rates per functionality and language.

A case passes when every label its functionality judges comes out as expected at the model's own
thresholds (flagged for a 1, not flagged for a 0; a null label is not judged). The result keeps
case ids, scores and verdicts, never texts, so it can go into reports and logs as it is.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from flagstream.classifier.evaluation.functional.build import CASES, LANGS
from flagstream.classifier.interface import Scorer, flagged_labels

FUNCTIONAL_HEADING = "## Functional tests"


def load_cases(path: Path = CASES) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def run_suite(scorer: Scorer, cases: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Score every case once and judge it; returns the per-case verdicts and the summaries."""
    cases = load_cases() if cases is None else cases
    info = scorer.info
    probs = scorer.score([c["text"] for c in cases])
    rows = []
    for case, p in zip(cases, probs):
        flags = set(flagged_labels(p, info))
        judged = {lab: case[lab] for lab in info.labels if case.get(lab) is not None}
        wrong = sorted(lab for lab, want in judged.items() if (lab in flags) != bool(want))
        rows.append({"id": case["id"], "functionality": case["functionality"], "lang": case["lang"],
                     "expect": judged, "scores": {lab: round(float(v), 4) for lab, v in zip(info.labels, p)},
                     "flagged": sorted(flags), "passed": not wrong, "wrong": wrong})
    return {"model": info.ref, "thresholds": dict(info.thresholds), "cases": rows, **summarise(rows)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``{functionality: {lang: [passed, n]}}``, totals per functionality and per language, and per language
    how many cases got any flag at all (a model that flags nothing in a language passes every must-not-flag
    case there without telling anything apart)."""
    table: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    per_lang: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    any_flag: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    expect: dict[str, dict[str, int]] = {}
    for r in rows:
        for key in (r["lang"], "all"):
            cell = table[r["functionality"]][key]
            cell[0] += int(r["passed"])
            cell[1] += 1
        per_lang[r["lang"]][0] += int(r["passed"])
        per_lang[r["lang"]][1] += 1
        per_lang["all"][0] += int(r["passed"])
        per_lang["all"][1] += 1
        any_flag[r["lang"]][0] += int(bool(r["flagged"]))
        any_flag[r["lang"]][1] += 1
        expect[r["functionality"]] = r["expect"]
    return {"per_functionality": {f: dict(v) for f, v in table.items()}, "per_language": dict(per_lang),
            "any_flag_per_language": dict(any_flag), "expect": expect}


def _cell(pair: list[int] | None) -> str:
    if not pair or not pair[1]:
        return "-"
    return f"{pair[0] / pair[1]:.2f} ({pair[0]}/{pair[1]})"


def _expect_text(expect: dict[str, int]) -> str:
    return ", ".join(f"{lab} {'flag' if v else 'no flag'}" for lab, v in expect.items())


def markdown_summary(result: dict[str, Any]) -> str:
    """The pass-rate table (rows: functionalities; columns: languages), with how the cases were judged."""
    langs = [lg for lg in LANGS if lg in result["per_language"]]
    lines = [f"{sum(p[1] for lg, p in result['per_language'].items() if lg != 'all')} templated cases written for "
             "this project (`classifier/evaluation/functional/cases.jsonl`, generated from `templates.yaml`), scored by "
             f"`{result['model']}` at its own thresholds; a case passes when every label its functionality "
             "judges is flagged (or not) as expected. Pass rate (passed/cases):", "",
             "| functionality | expected | " + " | ".join(langs) + " | all |",
             "|---|---|" + "---|" * (len(langs) + 1)]
    for func, cells in result["per_functionality"].items():
        lines.append(f"| {func} | {_expect_text(result['expect'][func])} | "
                     + " | ".join(_cell(cells.get(lg)) for lg in langs) + f" | {_cell(cells.get('all'))} |")
    lines.append("| **all** | | " + " | ".join(_cell(result["per_language"].get(lg)) for lg in langs)
                 + f" | {_cell(result['per_language'].get('all'))} |")
    flagged = result.get("any_flag_per_language", {})
    lines += ["", "Cases with any flag at all, per language: " + ", ".join(
        f"{lg} {flagged[lg][0]}/{flagged[lg][1]}" for lg in langs if lg in flagged)
        + " (where a model flags almost nothing, its must-not-flag passes are no evidence that it tells reporting "
          "from propaganda)."]
    return "\n".join(lines)


def write_results(out_dir: Path, result: dict[str, Any]) -> Path:
    """``functional.json`` (every case's scores and verdict, no texts) and ``functional.md`` (the table)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "functional.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    md = out_dir / "functional.md"
    md.write_text(f"{FUNCTIONAL_HEADING}\n\n{markdown_summary(result)}\n", encoding="utf-8")
    return md
