"""Audit sample: a few unflagged posts go to review, each with a known inclusion probability.

Why: decisions on flagged posts show precision but can never show recall (a missed post is never in
front of a reviewer). A small sample of below-threshold posts, drawn with known probabilities and
weighted by their inverse (Horvitz-Thompson), lets :mod:`flagstream.classifier.feedback.thresholds` estimate how many
positives the current thresholds miss on this feed, and so re-pick them.

Design (pure, no Kafka, no clock, no global random state):

* A post flagged on any label is not audited (every flagged post already goes to review, inclusion 1).
* Otherwise its inclusion probability is ``audit_near_rate`` when it is *just below* a threshold
  (``score >= audit_near_band * threshold`` for some label; where the threshold's errors are) and
  ``audit_rate`` when it is far below every threshold (so the estimate is not blind to gross misses).
* The draw is a keyed hash of the post id (``audit_seed``), not a random number: a redelivered post
  (the stream is at-least-once) gets the same decision, the sample is reproducible, and the draw is
  independent of the score, so the probability stated in the record is exactly the one used.

The review record of an audited post is the ordinary one with ``labels: []`` plus ``audit: true``,
``sampling_probability`` and ``sampling_weight`` (= 1 / probability); see docs/messages.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AUDIT_HEADER = "flagstream.audit"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditPolicy:
    """Inclusion probabilities by distance below the thresholds, and the key of the draw."""

    rate: float = 0.01
    near_rate: float = 0.10
    near_band: float = 0.5
    seed: str = "flagstream-audit"  # tests and pure callers; the stream's comes from from_settings (a secret)

    def __post_init__(self) -> None:
        for name in ("rate", "near_rate", "near_band"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"audit {name} must be within [0, 1], got {v}")

    @property
    def enabled(self) -> bool:
        return self.rate > 0 or self.near_rate > 0

    @classmethod
    def from_settings(cls, settings: Any) -> "AuditPolicy":
        """The policy of ``settings``, keyed by its secret ``audit_seed`` (or ``audit_seed_file``).

        Without one the key is this process's random seed: whoever controls post ids can then not predict
        the sample, but it is not reproducible across replicas or restarts (each draws its own), so a WARNING
        says so once. The inclusion probabilities, and so the weights, are the same either way.

        Raises:
            flagstream.errors.ConfigError: ``audit_seed_file`` cannot be read or is empty.
        """
        seed, configured = settings.resolved_audit_seed()
        policy = cls(rate=settings.audit_rate, near_rate=settings.audit_near_rate,
                     near_band=settings.audit_near_band, seed=seed)
        if policy.enabled and not configured:
            log.warning("no audit_seed configured: the audit sample is drawn with a random per-process key, so it "
                        "differs across replicas and restarts; set FLAGSTREAM_AUDIT_SEED or audit_seed_file "
                        "(the same secret on every replica) to make it reproducible")
        return policy


def inclusion_probability(scores: Mapping[str, float], thresholds: Mapping[str, float], policy: AuditPolicy) -> float:
    """The probability that a post with these scores is audited (1.0 = flagged: reviewed anyway)."""
    near = False
    for label, t in thresholds.items():
        s = float(scores.get(label, 0.0))
        if s >= t:
            return 1.0
        if s >= policy.near_band * t:
            near = True
    return policy.near_rate if near else policy.rate


def uniform(post_id: str, seed: str) -> float:
    """A number in [0, 1) fixed by (seed, post id): the draw, reproducible across redeliveries."""
    digest = hashlib.blake2b(post_id.encode("utf-8", "surrogatepass"), key=seed.encode("utf-8")[:64], digest_size=8)
    return int.from_bytes(digest.digest(), "big") / 2.0 ** 64


def audit_fields(post_id: str, scores: Mapping[str, float], thresholds: Mapping[str, float],
                 policy: AuditPolicy) -> dict[str, Any] | None:
    """The fields to add to this unflagged post's review record, or None when it is not drawn."""
    if not policy.enabled:
        return None
    p = inclusion_probability(scores, thresholds, policy)
    if p >= 1.0 or p <= 0.0 or uniform(post_id, policy.seed) >= p:
        return None
    return {"audit": True, "sampling_probability": p, "sampling_weight": round(1.0 / p, 6)}


def mark_audit(value: bytes, headers: list[tuple[str, bytes]], fields: Mapping[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A review record's value and headers with the audit fields added (only ~1% of posts pay this)."""
    body = json.loads(value)
    body.update(fields)
    out = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return out, list(headers) + [(AUDIT_HEADER, str(fields["sampling_weight"]).encode())]


def audited(record: Any, fields: Mapping[str, Any]) -> Any:
    """An :class:`~flagstream.contract.records.OutRecord` review record marked as an audit record."""
    value, headers = mark_audit(record.value, record.headers, fields)
    return type(record)(record.key, value, headers)


def weight_of(record: Mapping[str, Any]) -> tuple[bool, float]:
    """(audit?, weight) of a review-topic record as its writer stated it: flagged records weigh 1. Checks the
    stream's own output; estimators never use it (the stated weight is not trusted): :func:`policy_weight`."""
    if record.get("audit") is True:
        w = record.get("sampling_weight")
        if isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 1.0:
            return True, float(w)
        raise ValueError("audit record without a valid sampling_weight (>= 1)")
    return False, 1.0


def policy_weight(record: Mapping[str, Any], policy: AuditPolicy) -> tuple[bool, float]:
    """(audit?, weight) of a review-topic record, the weight recomputed from ``policy``, never read from it.

    Why: a review record's ``sampling_weight`` is whatever its writer put there; ``Infinity`` or ``1e6`` on
    one record would steer every recall estimate. The policy (the same audit settings the stream ran with)
    gives the inclusion probability from the record's own scores and thresholds, and the keyed draw must
    actually have picked the post, so an "audit" record the policy would never have drawn counts for nothing.

    Raises:
        ValueError: an audit record without numeric scores/thresholds, one the policy gives no probability
            in (0, 1), or one the policy's draw did not pick.
    """
    if record.get("audit") is not True:
        return False, 1.0
    scores, thresholds, pid = record.get("scores"), record.get("thresholds"), record.get("id")
    numeric = lambda d: isinstance(d, dict) and all(  # noqa: E731
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in d.values())
    if not isinstance(pid, str) or not numeric(scores) or not numeric(thresholds):
        raise ValueError("audit record without an id, numeric scores and thresholds")
    if not policy.enabled:
        raise ValueError("audit record, but the audit policy is off")
    p = inclusion_probability(scores, thresholds, policy)
    if not 0.0 < p < 1.0 or uniform(pid, policy.seed) >= p:
        raise ValueError("audit record the audit policy did not draw")
    return True, 1.0 / p


__all__ = ["AUDIT_HEADER", "AuditPolicy", "inclusion_probability", "uniform", "audit_fields", "mark_audit", "audited",
           "weight_of", "policy_weight"]
