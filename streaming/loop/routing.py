"""Route: a scored batch's records to their topics, through one :class:`~flagstream.streaming.loop.checkpoint.Checkpoint`.

Every verdict goes to the scores topic (when enabled) and, if flagged, to the review topic; every
rejection to the dead-letter topic with its error class. No output ever exceeds ``max_message_bytes``:
a review record sheds passthrough fields to fit (:func:`flagstream.contract.review.bounded_review_record`), and a
post whose review record cannot fit at all is dead-lettered as ``output_too_large`` instead of being
produced. Outputs are tagged with their input record, so an output the broker refuses for good comes
back as :class:`~flagstream.streaming.loop.checkpoint.CheckpointRecordsRejected` naming the input to dead-letter.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from flagstream.contract.dead_letters import dead_letter_record
from flagstream.contract.records import OutRecord, Rejection, Source, now_iso
from flagstream.contract.review import Verdict, bounded_review_record
from flagstream.contract.scores import scores_record
from flagstream.streaming.banks.gate import REVIEW, WITHHOLD
from flagstream.streaming.loop.audit import AuditPolicy, audit_fields, audited
from flagstream.streaming.loop.checkpoint import Checkpoint, RejectedOutput
from flagstream.streaming.loop.batch import Batch

log = logging.getLogger(__name__)

TOO_LARGE_REASON = "its review record does not fit max_message_bytes={limit} even without passthrough fields"
UNENCODABLE_REASON = "one of its output records could not be encoded as JSON ({error})"


def source_of(rec: Any) -> Source:
    return Source(rec.topic, rec.partition, rec.offset, rec.timestamp)


class Router:
    """Knows the output topics and the model; :meth:`route` fills one checkpoint from one batch."""

    def __init__(self, settings: Any, thresholds: Mapping[str, float], model: Mapping[str, str],
                 shadow: Any = None) -> None:
        self.s = settings
        self.shadow = shadow  # flagstream.streaming.loop.shadow.Shadow: a candidate's verdicts to the shadow topic, or None
        self.thresholds, self.model = thresholds, model
        # issue 18: a known-probability sample of unflagged posts also goes to review (flagstream.streaming.loop.audit)
        self.bank: Any = None  # flagstream.streaming.banks.gate.BankGate (issue 33), set by the pipeline, or None
        self.audit = AuditPolicy.from_settings(settings) if hasattr(settings, "audit_rate") else AuditPolicy(0.0, 0.0)

    def route(self, batch: Batch, cp: Checkpoint, notes: Mapping[str, Any] | None = None) -> Counter:
        """Produce every output of ``batch`` and store its offsets; returns the flagged counts per label.

        ``notes``: review annotations per post id (campaign, spans), made by the loop's annotate step
        (:meth:`flagstream.streaming.loop.annotate.ReviewAnnotator.annotate_batch`) before routing.
        """
        s = self.s
        notes = notes or {}
        now = now_iso()
        flagged: Counter = Counter()
        outputs: list[tuple[Any, list[tuple[str, OutRecord]]]] = []
        too_large: set[int] = set()
        gate = self.bank
        if gate is not None:
            gate.refresh()
        unencodable: dict[int, Rejection] = {}
        for rec, verdict in batch.verdicts:
            try:
                out = self._outputs(batch, rec, verdict, notes, now, gate)
            except Exception as exc:  # noqa: BLE001 - one record's output never leaves the loop (issue 29)
                unencodable[id(rec)] = Rejection("output_unencodable", UNENCODABLE_REASON.format(
                    error=type(exc).__name__))
                continue
            if out is None:
                too_large.add(id(rec))
                continue
            outputs.append((rec, out))
        for rid, rejection in unencodable.items():
            batch.reject({rid}, rejection)
        if too_large:
            batch.reject(too_large, Rejection("output_too_large",
                                              TOO_LARGE_REASON.format(limit=s.max_message_bytes)))
        for rec, out in outputs:
            for topic, record in out:
                cp.produce(topic, record, tag=rec)
        for _, verdict in batch.verdicts:
            flagged.update(verdict.labels)
        for rec, rej in batch.rejected:
            cp.produce(s.dlq_topic, self.dead_letter(rec, rej, now, bare=id(rec) in batch.bare), tag=rec)
        for rec in batch.records:
            cp.store_offset(rec.topic, rec.partition, rec.offset)
        return flagged

    def _outputs(self, batch: Batch, rec: Any, verdict: Verdict, notes: Mapping[str, Any], now: str,
                 gate: Any = None) -> list[tuple[str, OutRecord]] | None:
        """Every output record of one verdict, encoded; None when its review record cannot fit.

        ``gate`` (:class:`flagstream.streaming.banks.gate.BankGate`, issue 33): a positive-bank match sends the
        post to review even below threshold, with the match in its review record; a negative-bank match
        withholds it from review (and from the audit sample) unless a flagged label clears the stricter bar.

        Raises:
            Exception: whatever encoding one of its records raised (``RecursionError``, ``ValueError``,
                ...); :meth:`route` turns it into an ``output_unencodable`` dead letter for this post alone.
        """
        s = self.s
        src = source_of(rec)
        out: list[tuple[str, OutRecord]] = []
        note = notes.get(verdict.post.id)
        action, match = (gate.check(verdict.post.text, dict(verdict.scores), verdict.labels)
                         if gate is not None else (None, None))
        if match is not None and action != WITHHOLD:  # issue 33: the match and its source decision
            note = {**(note or {}), "bank_match": match.as_dict()}
        if verdict.flagged and action != WITHHOLD:
            review = bounded_review_record(verdict, src, self.thresholds, self.model, s.max_message_bytes, now, note)
            if review is None:
                return None
            out.append((s.review_topic, review))
        elif action == REVIEW:  # a positive-bank match below threshold
            review = bounded_review_record(verdict, src, self.thresholds, self.model, s.max_message_bytes, now, note)
            if review is not None:
                out.append((s.review_topic, review))
        elif action != WITHHOLD and (fields := audit_fields(verdict.post.id, verdict.scores, self.thresholds,
                                                            self.audit)) is not None:
            review = bounded_review_record(verdict, src, self.thresholds, self.model, s.max_message_bytes, now)
            if review is not None:  # an audit record that cannot fit is simply not drawn
                out.append((s.review_topic, audited(review, fields)))
        if s.scores_enabled:
            out.insert(0, (s.scores_topic, scores_record(verdict.post, src, verdict.scores,
                                                         verdict.labels, self.model, now)))
        if self.shadow is not None and (side := batch.shadow.get(id(rec))) is not None:
            try:
                out.append((self.shadow.topic, self.shadow.record(verdict, src, side, self.model, self.thresholds,
                                                                  now)))
            except Exception:  # noqa: BLE001 - a shadow record that cannot be built is dropped, never its post
                batch.shadow.pop(id(rec), None)
                batch.shadow_refused += 1
        return out

    def dead_letter(self, rec: Any, rej: Rejection, now: str | None = None,
                    bare: bool = False) -> OutRecord:
        """``bare``: without the original value (size and SHA-256 stay in headers): always small enough.

        A dead letter whose original key or headers cannot be copied (a header that is not bytes, ...)
        goes without them: the post is still accounted for, with its error class and source.
        """
        limit = 0 if bare else self.s.max_message_bytes
        try:
            return dead_letter_record(rec.key, rec.value, rec.headers, rej, source_of(rec), limit, now)
        except Exception:  # noqa: BLE001 - never lose the dead letter itself (issue 29)
            key = rec.key if isinstance(rec.key, (bytes, bytearray)) else None
            value = rec.value if isinstance(rec.value, (bytes, bytearray)) else None
            return dead_letter_record(key, value, [], rej, source_of(rec), limit, now)

    def refused(self, rejected: list[RejectedOutput], batch: Batch) -> list[Any]:
        """Mark the inputs whose outputs were refused for good; returns them, to dead-letter.

        A refused verdict output makes its post an ``output_too_large`` rejection; a refused dead-letter
        record is sent bare next time; a refused shadow record is dropped (counted), its post untouched.
        """
        recs: list[Any] = []
        for r in rejected:
            rec = r.tag
            if self.shadow is not None and r.topic == self.shadow.topic:  # never costs the post its outputs
                if batch.shadow.pop(id(rec), None) is not None:
                    batch.shadow_refused += 1
                continue
            if rec is None or any(x is rec for x in recs):
                continue
            if any(x is rec for x, _ in batch.rejected):
                batch.bare.add(id(rec))
            else:
                batch.reject({id(rec)}, Rejection(
                    "output_too_large", f"the broker refused its {r.topic} record for good: {r.error}"))
            recs.append(rec)
        return recs

    def dead_letter_now(self, recs: list[Any], batch: Batch, cp: Checkpoint) -> None:
        """Produce the dead-letter records of ``recs`` (already rejected in ``batch``) into ``cp``."""
        reasons = {id(rec): rej for rec, rej in batch.rejected}
        for rec in recs:
            cp.produce(self.s.dlq_topic, self.dead_letter(rec, reasons[id(rec)], bare=id(rec) in batch.bare), tag=rec)


__all__ = ["Router", "source_of"]
