"""Contrast cases ("hate" vs "talk about hate") from ``contrast.yaml``, with a train/test split by TEMPLATE.

Why a template-level split: a model trained on some fillings of a template and tested on others is tested on
wording it has seen; splitting whole templates makes the test half measure generalisation to unseen phrasings.
Each template's id is ``<lang>.<functionality>.<sha256(template)[:8]>`` (stable while its text is unchanged);
inside every (language, functionality) stratum the templates are ordered by a hash of their id and the first
``round(test_fraction * n)`` (at least one when the stratum has two or more) are ``test``, the rest ``train``.
The split is written into every generated case (``split``), so the training source
(:func:`flagstream.classifier.data.sources.read_contrast`) and the evaluation (:mod:`flagstream.classifier.evaluation.functional.contrast_eval`)
read one recorded decision, never recompute it.

The 388-case suite of ``templates.yaml`` is separate and unchanged: it stays the shipped card's functional table
and is never trained on.

Run ``python -m flagstream.classifier.evaluation.functional.contrast`` after editing ``contrast.yaml``; a test checks that the
committed ``contrast_cases.jsonl`` is exactly what this produces.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import sys
from pathlib import Path
from typing import Any

from flagstream.classifier.labels import LABELS

HERE = Path(__file__).parent
CONTRAST_TEMPLATES = HERE / "contrast.yaml"
CONTRAST_CASES = HERE / "contrast_cases.jsonl"
LANGS = ("en", "ar", "fr", "de")
KINDS = ("hateful", "lookalike")
_SLOT = re.compile(r"\{(\w+)\}")


def _h(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def template_id(lang: str, func: str, template: str) -> str:
    """The stable id of one template: its language, functionality and a hash of its text."""
    return f"{lang}.{func}.{_h(template)[:8]}"


def load_contrast(path: Path = CONTRAST_TEMPLATES) -> dict[str, Any]:
    """The parsed, checked template file.

    Raises:
        ValueError: a functionality, slot, kind or language a reader could misread (see :func:`check`).
    """
    import yaml

    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    check(doc)
    return doc


def check(doc: dict[str, Any]) -> None:
    """Refuse a template file that would generate misleading cases.

    Raises:
        ValueError: unknown kind or label, a hateful functionality expecting no flag (or a look-alike expecting
            one), a language without every functionality, a slot with no word list, a duplicate template.
    """
    funcs = doc["functionalities"]
    for name, f in funcs.items():
        if f.get("kind") not in KINDS:
            raise ValueError(f"{name}: kind must be one of {KINDS}")
        exp = f["expect"]
        if set(exp) != set(LABELS) or not all(v in (0, 1, None) for v in exp.values()):
            raise ValueError(f"{name}: expect must give each of {LABELS} as 0, 1 or null")
        if f["kind"] == "hateful" and 1 not in exp.values():
            raise ValueError(f"{name}: a hateful functionality must expect at least one flag")
        if f["kind"] == "lookalike" and any(v != 0 for v in exp.values()):
            raise ValueError(f"{name}: a look-alike must expect no flag for every label")
    if not 0 < float(doc.get("test_fraction", 0.3)) < 1:
        raise ValueError("test_fraction must lie between 0 and 1")
    for lang in LANGS:
        if lang not in doc["templates"] or lang not in doc["words"]:
            raise ValueError(f"language {lang}: no templates or no word lists")
        missing = set(funcs) - set(doc["templates"][lang])
        unknown = set(doc["templates"][lang]) - set(funcs)
        if missing or unknown:
            raise ValueError(f"language {lang}: functionalities missing {sorted(missing)}, unknown {sorted(unknown)}")
        for func, templates in doc["templates"][lang].items():
            if len(set(templates)) != len(templates):
                raise ValueError(f"{lang}/{func}: a template is listed twice")
            for t in templates:
                for slot in _SLOT.findall(t):
                    if slot.lower() not in doc["words"][lang]:
                        raise ValueError(f"{lang}/{func}: slot {{{slot}}} has no word list: {t!r}")


def fill(template: str, words: dict[str, str]) -> str:
    """``{slot}`` -> the word; ``{Slot}`` -> the word with its first letter upper-cased (sentence starts)."""
    def sub(m: re.Match[str]) -> str:
        value = words[m.group(1).lower()]
        return value[:1].upper() + value[1:] if m.group(1)[:1].isupper() else value
    return _SLOT.sub(sub, template)


def fillings(template: str, lists: dict[str, list[str]], cap: int, tid: str) -> list[dict[str, str]]:
    """At most ``cap`` combinations of the template's slots, chosen by a hash of ``tid`` (deterministic)."""
    slots = sorted({s.lower() for s in _SLOT.findall(template)})
    combos = [dict(zip(slots, vals)) for vals in itertools.product(*(lists[s] for s in slots))]
    combos.sort(key=lambda c: _h(tid + "\x00" + json.dumps(c, sort_keys=True, ensure_ascii=False)))
    return combos[:cap]


def split_templates(tids: list[str], test_fraction: float) -> dict[str, str]:
    """``{template id: "train" | "test"}`` for the templates of one (language, functionality) stratum."""
    order = sorted(tids, key=lambda t: _h("split\x00" + t))
    k = round(test_fraction * len(order))
    if len(order) >= 2:
        k = min(max(k, 1), len(order) - 1)
    return {t: ("test" if i < k else "train") for i, t in enumerate(order)}


def build(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every case, in a stable order (language, functionality, template, filling); duplicate texts kept once."""
    cap = int(doc.get("per_template", 12))
    frac = float(doc.get("test_fraction", 0.3))
    cases: list[dict[str, Any]] = []
    seen: set[str] = set()
    for lang in LANGS:
        for func, templates in doc["templates"][lang].items():
            meta = doc["functionalities"][func]
            tids = [template_id(lang, func, t) for t in templates]
            split = split_templates(tids, frac)
            for template, tid in zip(templates, tids):
                for fi, words in enumerate(fillings(template, doc["words"][lang], cap, tid)):
                    text = fill(template, words)
                    if text in seen:
                        continue
                    seen.add(text)
                    cases.append({"id": f"{tid}.f{fi}", "template": tid, "functionality": func, "kind": meta["kind"],
                                  "lang": lang, "split": split[tid], "text": text,
                                  **{lab: meta["expect"][lab] for lab in LABELS}})
    return cases


def dumps(cases: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases)


def load_contrast_cases(split: str | None = None, path: Path = CONTRAST_CASES) -> list[dict[str, Any]]:
    """The committed cases, optionally of one split (``train`` or ``test``).

    Raises:
        ValueError: ``split`` is neither None, ``train`` nor ``test``.
    """
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if split is None or r["split"] == split]


def main() -> int:
    cases = build(load_contrast())
    CONTRAST_CASES.write_text(dumps(cases), encoding="utf-8")
    n_test = sum(c["split"] == "test" for c in cases)
    print(f"wrote {len(cases)} contrast cases ({n_test} test) to {CONTRAST_CASES.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
