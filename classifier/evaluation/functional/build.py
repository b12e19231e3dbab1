"""Generate ``cases.jsonl`` from ``templates.yaml``: every template x every filler set of its language.

Run ``python -m flagstream.classifier.evaluation.functional.build`` after editing the templates; a test checks that the
committed cases are exactly what this produces, so the JSONL is never edited by hand.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from flagstream.classifier.labels import LABELS

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates.yaml"
CASES = HERE / "cases.jsonl"
LANGS = ("en", "ar", "fr", "de")
_SLOT = re.compile(r"\{(\w+)\}")


def load_templates(path: Path = TEMPLATES) -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    check(doc)
    return doc


def check(doc: dict[str, Any]) -> None:
    """Refuse a template file a reader could misread: unknown functionality, label or slot, missing language."""
    funcs = doc["functionalities"]
    for name, f in funcs.items():
        if set(f["expect"]) != set(LABELS) or not all(v in (0, 1, None) for v in f["expect"].values()):
            raise ValueError(f"{name}: expect must give each of {LABELS} as 0, 1 or null")
        if all(v is None for v in f["expect"].values()):
            raise ValueError(f"{name}: expects nothing, so it tests nothing")
    for lang in LANGS:
        if lang not in doc["templates"] or lang not in doc["fillers"]:
            raise ValueError(f"language {lang}: no templates or no fillers")
        missing = set(funcs) - set(doc["templates"][lang])
        unknown = set(doc["templates"][lang]) - set(funcs)
        if missing or unknown:
            raise ValueError(f"language {lang}: functionalities missing {sorted(missing)}, unknown {sorted(unknown)}")
        for func, templates in doc["templates"][lang].items():
            for t in templates:
                for slot in _SLOT.findall(t):
                    if not all(slot.lower() in fs for fs in doc["fillers"][lang]):
                        raise ValueError(f"{lang}/{func}: slot {{{slot}}} is not in every filler set: {t!r}")


def fill(template: str, fillers: dict[str, str]) -> str:
    """``{slot}`` -> the filler; ``{Slot}`` -> the filler with its first letter upper-cased (sentence starts)."""
    def sub(m: re.Match[str]) -> str:
        slot = m.group(1)
        value = fillers[slot.lower()]
        return value[:1].upper() + value[1:] if slot[:1].isupper() else value
    return _SLOT.sub(sub, template)


def build(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The cases, in a stable order (language, functionality, template, filler set); duplicates dropped."""
    cases: list[dict[str, Any]] = []
    for lang in LANGS:
        for func, templates in doc["templates"][lang].items():
            expect = doc["functionalities"][func]["expect"]
            seen: set[str] = set()
            for ti, template in enumerate(templates):
                for fi, fillers in enumerate(doc["fillers"][lang]):
                    text = fill(template, fillers)
                    if text in seen:
                        continue
                    seen.add(text)
                    cases.append({"id": f"{lang}.{func}.t{ti}.f{fi}", "functionality": func, "lang": lang,
                                  "text": text, **{lab: expect[lab] for lab in LABELS}})
    return cases


def dumps(cases: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases)


def main() -> int:
    cases = build(load_templates())
    CASES.write_text(dumps(cases), encoding="utf-8")
    print(f"wrote {len(cases)} cases to {CASES}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
