"""MODEL_CARD.md: a template (``classifier/evaluation/templates/model_card.md``) filled with measured values.

The prose of a card lives in the template, where a reviewer reads and edits it as Markdown; this
module only gathers the values: the manifest (training run, calibration, data summary), the
evaluation result (tables and verdict from :mod:`flagstream.classifier.evaluation.report`), the label mapping and hand
labels of :mod:`flagstream.classifier.data.sources` / :mod:`flagstream.classifier.data.corpus`, and the functional suite's table
(:mod:`flagstream.classifier.evaluation.functional`). A missing value is an error, not a blank in the card.

:func:`replace_section` updates one ``## `` section of an existing card in place; that is how a card
whose evaluation report is not at hand (the LOSO behind it takes hours) gets a new measurement, such
as the functional suite's table, without re-typing or re-measuring the rest.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from string import Template
from typing import Any

from flagstream.classifier.evaluation.evaluate import target_of
from flagstream.classifier.evaluation.measures import fmt

TEMPLATES = Path(__file__).with_name("templates")
DEFAULT_TEMPLATE = TEMPLATES / "model_card.md"


def render(template: str, values: dict[str, Any]) -> str:
    """Fill ``${name}`` placeholders; an empty optional section leaves no run of blank lines behind."""
    text = Template(template).substitute({k: str(v) for k, v in values.items()})
    return re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"


def model_card(manifest: Any, result: dict[str, Any], *, template: Path = DEFAULT_TEMPLATE) -> str:
    """MODEL_CARD.md for a model directory, with the evaluation's key tables embedded."""
    return render(Path(template).read_text(encoding="utf-8"), card_values(manifest, result))


def card_values(manifest: Any, result: dict[str, Any]) -> dict[str, Any]:
    """Every placeholder of the template, from the manifest, the evaluation result and the repository."""
    from flagstream.classifier.data.corpus import load_hand_labels, report_markdown
    from flagstream.classifier.labels import DEFINITIONS
    from flagstream.classifier.evaluation.report import markdown_report, verdict
    from flagstream.classifier.data.sources import HARD_NEGATIVE_WEIGHT, ISIS_LEX_NEG_WEIGHT, ISIS_LEX_POS_WEIGHT, mapping_table

    extra = manifest.extra
    tr = extra.get("training", {})
    cfg = extra.get("train_config", {})
    size = sum(p.stat().st_size for p in manifest.root.iterdir() if p.is_file() and p.suffix == ".safetensors")
    hand = list(load_hand_labels().values())
    hand_split = Counter(r.get("split") for r in hand)
    data_summary = extra.get("data_summary") or result.get("data", {"rows": 0, "dropped_duplicates": {}, "sources": {}})
    return {
        "name": manifest.name, "version": manifest.version, "base": manifest.base,
        "ref": f"{manifest.name}@{manifest.version}",
        "storage": extra.get("storage"), "size_mb": f"{size / 1e6:.1f}",
        "data_hash": extra.get("data_hash"), "config_hash": extra.get("config_hash"),
        "normalizer_version": manifest.normalizer_version,
        "steps": tr.get("steps"), "total_steps": tr.get("total_steps"), "train_seconds": tr.get("seconds"),
        "train_precision": tr.get("precision", "bf16 autocast"),
        "train_rows": tr.get("rows"), "resumed": " (resumed from a checkpoint)" if tr.get("resumed") else "",
        "batch_size": cfg.get("batch_size"), "max_length": cfg.get("max_length"), "lr": cfg.get("lr"),
        "head_lr": cfg.get("head_lr"), "seed": cfg.get("seed"),
        "training_note": f" {extra['training_note']}" if extra.get("training_note") else "",
        "definitions": "\n".join(f"- **{k}**: {v}" for k, v in DEFINITIONS.items()),
        "thresholds_table": thresholds_table(extra),
        "operating_points": operating_points(extra.get("validation", {})),
        "mapping_table": mapping_table(),
        "data_table": report_markdown(data_summary),
        "hand_n": len(hand), "hand_test": hand_split["test"], "hand_val": hand_split["val"],
        "hand_train": hand_split["train"],
        "hand_propaganda_pct": f"{100 * sum(int(r['propaganda']) for r in hand) / max(1, len(hand)):.0f}",
        "lex_pos_weight": ISIS_LEX_POS_WEIGHT, "lex_neg_weight": ISIS_LEX_NEG_WEIGHT,
        "hard_negative_weight": f"{HARD_NEGATIVE_WEIGHT:g}",
        "verdict": "\n".join(verdict(result)),
        "report": markdown_report(result).split("\n", 2)[2],
        "candidates": (f"## Candidate bases measured\n\n{result['candidates_md'].strip()}"
                       if result.get("candidates_md") else ""),
        "functional": functional_section(result["functional"]) if result.get("functional") else "",
    }


def thresholds_table(extra: dict[str, Any]) -> str:
    """Per label: the shipped threshold, its precision target, and what validation says about it."""
    target = extra.get("target_precision")
    lines = ["| label | threshold | target precision | val precision | val recall | temperature | ECE (calibrated) | ECE (raw) |",
             "|---|---|---|---|---|---|---|---|"]
    for lab, v in extra.get("validation", {}).items():
        lines.append(f"| {lab} | {fmt(v.get('threshold'))} | {fmt(target_of(target, lab) if target is not None else None, 2)} | "
                     f"{fmt(v.get('precision'))} | {fmt(v.get('recall'))} | {fmt(v.get('temperature'), 2)} | "
                     f"{fmt(v.get('ece'), 4)} | {fmt(v.get('ece_uncalibrated'), 4)} |")
    return "\n".join(lines)


def operating_points(val: dict[str, Any]) -> str:
    """Other operating points an operator can set with the ``thresholds`` config (validation numbers)."""
    if not any(v.get("curve") for v in val.values()):
        return ""
    lines = ["Other operating points (validation; set them with the `thresholds` config):", "",
             "| label | target precision | threshold | val precision | val recall |", "|---|---|---|---|---|"]
    for lab, v in val.items():
        for pt in v.get("curve", []):
            lines.append(f"| {lab} | {fmt(pt['target'], 2)} | {fmt(pt['threshold'])} | {fmt(pt['precision'])} | {fmt(pt['recall'])} |")
    return "\n".join(lines)


def functional_section(functional: dict[str, Any]) -> str:
    """The functional suite's section of a card (heading included), from a stored suite result."""
    from flagstream.classifier.evaluation.functional.suite import FUNCTIONAL_HEADING, markdown_summary

    return f"{FUNCTIONAL_HEADING}\n\n{markdown_summary(functional)}"


def replace_section(card: str, heading: str, body: str, before: str = "## Known failure modes") -> str:
    """``card`` with its ``heading`` section (up to the next ``## ``) replaced by ``body``.

    A card without that section gets it inserted before the ``before`` heading (else appended).
    ``body`` starts with the heading itself, as :func:`functional_section` returns it.
    """
    body = body.strip("\n") + "\n\n"
    lines = card.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip("\n") == heading), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        return "".join(lines[:start]) + body + "".join(lines[end:])
    at = next((i for i, ln in enumerate(lines) if ln.rstrip("\n") == before), None)
    if at is None:
        return card.rstrip("\n") + "\n\n" + body.rstrip("\n") + "\n"
    return "".join(lines[:at]) + body + "".join(lines[at:])


def write_functional(model_dir: Path, functional: dict[str, Any], report_json: Path | None = None) -> str:
    """Put a functional-suite result into ``model_dir/MODEL_CARD.md``; returns how the card was written.

    With the evaluation's ``report.json`` at hand the whole card is rendered again from the template
    (and the result stored in that report); without it only the functional section of the existing
    card is replaced, so its other numbers stay as they were measured.
    """
    import json

    from flagstream.classifier.manifest import read_manifest

    card_path = Path(model_dir) / "MODEL_CARD.md"
    if report_json is not None and report_json.exists():
        result = json.loads(report_json.read_text(encoding="utf-8"))
        result["functional"] = {k: v for k, v in functional.items() if k != "cases"}
        report_json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        card_path.write_text(model_card(read_manifest(Path(model_dir)), result), encoding="utf-8")
        return f"rendered {card_path} from {report_json}"
    if not card_path.exists():
        raise FileNotFoundError(f"{card_path} does not exist and there is no report.json to render it from; "
                                "run flagstream evaluate --write-card first")
    from flagstream.classifier.evaluation.functional.suite import FUNCTIONAL_HEADING

    card = card_path.read_text(encoding="utf-8")
    card_path.write_text(replace_section(card, FUNCTIONAL_HEADING, functional_section(functional)), encoding="utf-8")
    return f"replaced the functional section of {card_path}"
