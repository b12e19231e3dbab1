"""Statements of reasons (DSA Art. 17 / 24(5)) and the period transparency summary, from reviewers' decisions.

One statement per content item a decision restricted: a decision that confirms a label covers its posts (one, or a
campaign's members), and each gets a statement in the DSA Transparency Database API's field names and values
(``POST /api/v1/statement``), checked against the kept schema (``statement.schema.json``). A decision that only
rejects or is unsure restricts nothing, so it has no statement; it still counts in the summary.

Where each field comes from (docs/statements.md):

- ground and category: the label's policy (:data:`DEFAULT_POLICIES`, overridden per label by
  ``statement_policies``), the first confirmed label's (in the decision's order) deciding the ground;
- ``decision_visibility``: the decision's ``action`` (default ``removed``);
- ``automated_detection``: the decision's flag, else ``Yes`` (every post a reviewer sees was found by the model, its
  audit sample or a bank); ``automated_decision``: the decision's, else ``AUTOMATED_DECISION_NOT_AUTOMATED``
  (a reviewer decided);
- ``content_date``: the post's ``created_at``, else its Kafka timestamp; ``application_date``: ``decided_at``;
  ``content_language``: the post's ``lang``; ``territorial_scope``: the decision's, else
  ``statement_territorial_scope`` (the EU);
- ``decision_facts``: labels, model, scores against thresholds, bank match: never the post text or the note;
- ``puid``: the decision id and a hash of the post id (unique per statement, only ``[A-Za-z0-9_-]``).
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from flagstream.contract.decisions import Decision
from flagstream.errors import UserError
from flagstream.streaming.ops.schema_check import errors, statement_schema

# Valid DSA values a team replaces with its own clauses (statement_policies in the config).
DEFAULT_POLICIES: dict[str, dict[str, Any]] = {
    "propaganda": {
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "category": "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
        "category_specification": ["KEYWORD_TERRORIST_CONTENT"],
        "incompatible_content_ground": "Terms of service: violent extremism and terrorist propaganda",
        "incompatible_content_explanation": "The post promotes, glorifies or recruits for a violent extremist or "
                                            "terrorist organisation, which the terms of service prohibit.",
    },
    "sectarian": {
        "decision_ground": "DECISION_GROUND_INCOMPATIBLE_CONTENT",
        "category": "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
        "category_specification": ["KEYWORD_HATE_SPEECH"],
        "incompatible_content_ground": "Terms of service: hateful conduct",
        "incompatible_content_explanation": "The post attacks people for their religion, sect or ethnicity, which "
                                            "the terms of service prohibit.",
    },
}
POLICY_KEYS = ("decision_ground", "category", "category_specification", "incompatible_content_ground",
               "incompatible_content_explanation", "incompatible_content_illegal", "illegal_content_legal_ground",
               "illegal_content_explanation", "decision_ground_reference_url", "action")


def policy_for(label: str, overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The label's DSA policy: defaults updated by the config's ``statement_policies[label]``.

    Raises:
        UserError: the config names an unknown key, or the label has neither a default nor a configured policy.
    """
    own = dict(overrides.get(label) or {})
    bad = sorted(set(own) - set(POLICY_KEYS))
    if bad:
        raise UserError(f"statement_policies.{label}: unknown key(s) {', '.join(bad)}; allowed: {', '.join(POLICY_KEYS)}")
    if label not in DEFAULT_POLICIES and not own:
        raise UserError(f"label {label!r} has no statement policy; add statement_policies.{label} with decision_ground "
                        f"and category (docs/statements.md)")
    return {**DEFAULT_POLICIES.get(label, {}), **own}


def _date(value: Any) -> str | None:
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone(timezone.utc).date().isoformat()


def _facts(decision: Decision, review: Mapping[str, Any], labels: list[str]) -> str:
    parts = [f"A reviewer confirmed: {', '.join(labels)}."]
    model = review.get("model") or decision.model
    if isinstance(model, Mapping):
        scores, thr = review.get("scores") or {}, review.get("thresholds") or decision.thresholds or {}
        shown = ", ".join(f"{k} {float(scores[k]):.2f} (threshold {float(thr[k]):.2f})" for k in labels
                          if k in scores and k in thr)
        parts.append(f"Detected by the classifier {model.get('name')}@{model.get('version')}" +
                     (f": {shown}." if shown else "."))
    match = review.get("bank_match")
    if isinstance(match, Mapping):
        parts.append(f"It matched known content confirmed earlier (bank entry {match.get('entry_id')}, similarity "
                     f"{match.get('similarity')}).")
    if decision.campaign:
        parts.append("Decided as part of a coordinated campaign of near-identical posts.")
    return " ".join(parts)


def statements_for(decision: Decision, reviews: Mapping[str, Mapping[str, Any]], settings: Any) -> list[dict[str, Any]]:
    """The statements of one decision (none unless it confirms a label and its action restricts)."""
    confirmed = [k for k, v in decision.verdicts.items() if v == "confirm"]
    if not confirmed:
        return []
    overrides = getattr(settings, "statement_policies", {}) or {}
    policies = [policy_for(k, overrides) for k in confirmed]
    main = policies[0]
    action = decision.action or main.get("action") or "removed"
    if action == "none":
        return []
    out = []
    for pid in decision.ids:
        review = reviews.get(pid) or {}
        st: dict[str, Any] = {
            "decision_visibility": [f"DECISION_VISIBILITY_CONTENT_{action.upper()}"],
            "decision_ground": main["decision_ground"],
            "category": main["category"],
            "content_type": ["CONTENT_TYPE_TEXT"],
            "content_date": _date(review.get("created_at")) or _date((review.get("source") or {}).get("timestamp"))
            or _date(review.get("flagged_at")) or _date(decision.decided_at),
            "application_date": _date(decision.decided_at),
            "decision_facts": _facts(decision, review, confirmed),
            "source_type": "SOURCE_VOLUNTARY",
            "automated_detection": "No" if decision.automated_detection is False else "Yes",
            "automated_decision": f"AUTOMATED_DECISION_{(decision.automated_decision or 'not_automated').upper()}",
            "territorial_scope": sorted(decision.territorial_scope or settings.statement_territorial_scope),
            "puid": f"fs-{decision.decision_id}-{hashlib.sha256(pid.encode('utf-8')).hexdigest()[:16]}",
        }
        extra = sorted({c for p in policies[1:] if (c := p["category"]) != main["category"]})
        if extra:
            st["category_addition"] = extra
        keywords = sorted({k for p in policies for k in p.get("category_specification") or []})
        if keywords:
            st["category_specification"] = keywords
        for key in ("incompatible_content_ground", "incompatible_content_explanation", "incompatible_content_illegal",
                    "illegal_content_legal_ground", "illegal_content_explanation", "decision_ground_reference_url"):
            if main.get(key):
                st[key] = main[key]
        lang = review.get("lang")
        if isinstance(lang, str) and len(lang) == 2 and lang.isalpha():
            st["content_language"] = lang.upper()
        out.append(st)
    return out


def check(statement: Mapping[str, Any]) -> list[str]:
    """Schema errors of one statement (empty: valid)."""
    return errors(dict(statement), statement_schema())


def in_period(decision: Decision, since: datetime | None, until: datetime | None) -> bool:
    t = datetime.fromisoformat(decision.decided_at.replace("Z", "+00:00"))
    t = t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    return (since is None or t >= since) and (until is None or t < until)


def _seconds(a: Any, b: Any) -> float | None:
    try:
        ta = datetime.fromisoformat(str(a).replace("Z", "+00:00"))
        tb = datetime.fromisoformat(str(b).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (tb - ta).total_seconds()


def summary(decisions: Iterable[Decision], reviews: Mapping[str, Mapping[str, Any]], settings: Any,
            all_decisions: Iterable[Decision] = ()) -> dict[str, Any]:
    """Period transparency counts: decisions by label and verdict, language, automated vs human, reversed,
    statements, and flagged-to-decided time against ``decision_sla_s``.

    ``all_decisions``: every decision on the topic (also after the period), to tell which were reversed later.
    """
    ds = list(decisions)
    later: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for d in all_decisions or ds:
        for pid in d.ids:
            for label, verdict in d.verdicts.items():
                later[(pid, label)].append((d.decided_at, verdict))
    by_label: dict[str, Counter] = defaultdict(Counter)
    langs: Counter = Counter()
    automation: Counter = Counter()
    reversed_n, statements, waits = 0, 0, []
    for d in ds:
        for label, verdict in d.verdicts.items():
            by_label[label][verdict] += 1
        for pid in d.ids:
            review = reviews.get(pid) or {}
            langs[str(review.get("lang") or "unknown")] += 1
            wait = _seconds(review.get("flagged_at"), d.decided_at)
            if wait is not None:
                waits.append(max(0.0, wait))
        automation[d.automated_decision or "not_automated"] += 1
        flips = any(v2 in ("confirm", "reject") and v2 != v and t2 > d.decided_at
                    for pid in d.ids for label, v in d.verdicts.items() if v in ("confirm", "reject")
                    for t2, v2 in later[(pid, label)])
        reversed_n += int(flips)
        statements += len(statements_for(d, reviews, settings))
    sla = float(settings.decision_sla_s)
    return {
        "decisions": len(ds), "statements": statements, "reversed": reversed_n,
        "by_label": {k: dict(v) for k, v in sorted(by_label.items())}, "by_language": dict(sorted(langs.items())),
        "automated_decision": dict(sorted(automation.items())),
        "time_to_decision": {"posts": len(waits), "sla_s": sla, "over_sla": sum(w > sla for w in waits),
                             "median_s": round(statistics.median(waits), 1) if waits else None,
                             "max_s": round(max(waits), 1) if waits else None},
    }


__all__ = ["DEFAULT_POLICIES", "POLICY_KEYS", "check", "in_period", "policy_for", "statements_for", "summary"]
