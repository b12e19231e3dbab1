"""Signed decisions, and the checks every reader of the decisions topic applies before a vote counts.

Anyone who can write the decisions topic could otherwise invent reviewers (one vote each), back-date or
"9999-"-date a verdict so it wins "latest decision", or name review records of their own. A decision is
therefore signed by whoever stamped its reviewer identity (the console, or ``flagstream decide`` holding
the key): HMAC-SHA256 over :func:`canonical` bytes with ``decisions_hmac_key``. Readers (``calibrate
--from-decisions``, ``export-decisions``) keep only decisions whose signature verifies, whose timestamp
parses and is not in the future, and count one vote per principal (the signed ``reviewer``).

The key is symmetric: every holder can sign, so it belongs to the console and the few operators who may
decide from the shell, never to the stream or to readers that merely report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from flagstream.contract.decisions import Decision

log = logging.getLogger(__name__)

# A decision stamped later than "now" by more than this is refused: clocks drift, forgeries don't stop at minutes.
MAX_CLOCK_SKEW = timedelta(minutes=5)


def canonical(decision: Decision) -> bytes:
    """The bytes a signature covers: every field but the signature, as sorted, compact, ASCII JSON."""
    body = decision.as_dict()
    body.pop("signature", None)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")


def sign(decision: Decision, key: bytes) -> Decision:
    """``decision`` with its signature set (a new object; decisions are frozen)."""
    mac = hmac.new(key, canonical(decision), hashlib.sha256).hexdigest()
    return dataclasses.replace(decision, signature=mac)


def verify(decision: Decision, key: bytes) -> bool:
    """True when ``decision`` carries a signature made with ``key`` over exactly its current content."""
    if decision.signature is None:
        return False
    expected = hmac.new(key, canonical(decision), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, decision.signature)


def decided_time(decision: Decision) -> datetime | None:
    """``decided_at`` as an aware UTC datetime (a naive one is read as UTC); None when it does not parse."""
    try:
        when = datetime.fromisoformat(decision.decided_at.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def trusted(decisions: Iterable[Decision], key: bytes | None, accept_unsigned: bool = False,
            now: datetime | None = None) -> tuple[list[Decision], Counter]:
    """The decisions a vote may come from, and why the others were skipped (reason -> count).

    Skipped: ``unsigned`` (unless ``accept_unsigned``: legacy data written before signing), ``bad_signature``
    (a signature that does not verify with ``key``, or any signature when there is no key to check it),
    ``bad_timestamp`` (unparsable) and ``future_timestamp`` (later than ``now`` plus :data:`MAX_CLOCK_SKEW`).
    Logs one summary line when anything was skipped.
    """
    now = now or datetime.now(timezone.utc)
    kept: list[Decision] = []
    skipped: Counter = Counter()
    for d in decisions:
        if d.signature is None:
            if not accept_unsigned:
                skipped["unsigned"] += 1
                continue
        elif key is None or not verify(d, key):
            skipped["bad_signature"] += 1
            continue
        when = decided_time(d)
        if when is None:
            skipped["bad_timestamp"] += 1
            continue
        if when > now + MAX_CLOCK_SKEW:
            skipped["future_timestamp"] += 1
            continue
        kept.append(d)
    if skipped:
        log.warning("decisions skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items())),
                    extra={"skipped": dict(skipped), "kept": len(kept)})
    return kept, skipped


def reader_key(settings: Any, accept_unsigned: bool) -> bytes | None:
    """The key a reader verifies decisions with; refusing to read at all without one, unless unsigned
    decisions are explicitly accepted (then there is nothing to verify, and signed ones are skipped).

    Raises:
        UserError: no key configured and ``accept_unsigned`` not given.
        ConfigError: the key file is unreadable or the key too short.
    """
    from flagstream.errors import UserError

    key = settings.resolved_decisions_hmac_key()
    if key is None and not accept_unsigned:
        raise UserError("no decisions key to verify signatures with: set FLAGSTREAM_DECISIONS_HMAC_KEY or "
                        "decisions_hmac_key_file, or pass --accept-unsigned for legacy, unsigned decisions")
    return key


def row_mac(row: dict, key: bytes) -> str:
    """HMAC-SHA256 of one ``export-decisions`` row (every field but ``signature``, canonical JSON).

    Why rows are signed too: ``train --decisions`` reads a file, not the topic; the signature carries the
    verification done at export to the training run, so a row added or edited in the file is refused.
    """
    body = {k: v for k, v in row.items() if k != "signature"}
    data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def row_verdict(row: dict, key: bytes | None, accept_unsigned: bool = False) -> str | None:
    """None when an exported row may be trained on; else why not (``unsigned`` or ``bad_signature``)."""
    sig = row.get("signature")
    if sig is None:
        return None if accept_unsigned else "unsigned"
    if key is None or not isinstance(sig, str) or not hmac.compare_digest(sig, row_mac(row, key)):
        return "bad_signature"
    return None


__all__ = ["MAX_CLOCK_SKEW", "canonical", "sign", "verify", "decided_time", "trusted", "reader_key", "row_mac", "row_verdict"]
