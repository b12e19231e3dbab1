"""Shadow mode: a candidate model scores every post beside the served one, and only a shadow topic hears it.

``flagstream stream --shadow-model DIR`` (config ``shadow_model``) opens a second model directory through
the same narrow interface as the served one (:func:`flagstream.classifier.inference.scoring.load_scorer`: manifest-checked,
optionally pinned with ``shadow_model_manifest_sha256``). In each micro-batch, after the served model
has scored it and the breaker has let it through, :meth:`Shadow.score` scores the same posts with the
candidate; :class:`flagstream.streaming.loop.routing.Router` then writes one shadow record per served verdict
(:func:`flagstream.contract.shadow.shadow_record`: both models' versions, scores and labels, the flag changes,
no text) to ``shadow_topic`` through the batch's own checkpoint. So shadow records are produced by the
same idempotent producer and committed with the batch: exactly as durable as the review records.

What the candidate cannot do is hurt the served path:

* it never writes to the review, scores or dead-letter topics, and its failures never count towards
  the served model's breaker;
* a candidate failing on a post (or on the whole batch) yields a shadow record with
  ``error: scoring_failed`` for that post, counted in ``flagstream_shadow_failures_total`` ; the
  batch's review outputs and its commit go ahead unchanged;
* a shadow record the broker refuses for good is dropped (``reason="output_refused"``), never
  dead-lettering its post: :meth:`flagstream.streaming.loop.routing.Router.refused` treats it apart.

A retriable delivery failure of any output, shadow ones included, rewinds the whole batch like any
other (README "Guarantees"): at-least-once duplicates within the usual bound, none with ``exactly_once``.
What it costs: ``bench/shadow.py`` (bench/RESULTS.md, "Shadow mode").
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from flagstream.classifier.inference.scoring import Scorer, flagged_labels, load_scorer, score_isolating_failures, scores_dict
from flagstream.errors import UserError
from flagstream.contract.records import OutRecord, Source
from flagstream.contract.review import Verdict
from flagstream.contract.shadow import SHADOW_FAILED, ShadowRecord, ShadowSide, shadow_record
from flagstream.streaming.loop.batch import Batch

log = logging.getLogger(__name__)


class Shadow:
    """The candidate scorer and the shadow topic; :meth:`score` fills ``batch.shadow``."""

    def __init__(self, scorer: Scorer, served: Any, topic: str) -> None:
        cand = scorer.info
        if tuple(cand.labels) != tuple(served.labels):
            raise UserError(f"shadow model {cand.ref} has labels {list(cand.labels)}, the served model "
                            f"{served.ref} has {list(served.labels)}; a shadow comparison needs the same labels")
        if (cand.name, cand.version) == (served.name, served.version):
            raise UserError(f"shadow model is the served model ({served.ref}); give the candidate its own version "
                            "(calibrate writes one)")
        self.scorer, self.served, self.topic = scorer, served, topic
        self.model = cand.as_dict()
        # A thresholds-only candidate (what `calibrate` writes) scores every post exactly as the served model
        # does: reuse the served scores and apply its thresholds, instead of paying for a second forward pass.
        self.reuses_served_scores = bool(cand.scoring_id) and cand.scoring_id == getattr(served, "scoring_id", "")

    @classmethod
    def from_settings(cls, settings: Any, served: Any, scorer: Scorer | None = None) -> "Shadow | None":
        """None unless ``shadow_model`` is set (or a scorer is given); checks the topic is not a reviewer's."""
        if scorer is None and settings.shadow_model is None:
            return None
        topic = settings.shadow_topic
        clash = {settings.posts_topic: "posts", settings.review_topic: "review", settings.dlq_topic: "dead-letter",
                 settings.decisions_topic: "decisions"}
        if settings.scores_enabled:
            clash[settings.scores_topic] = "scores"
        if topic in clash:
            raise UserError(f"shadow_topic {topic!r} is the {clash[topic]} topic; shadow verdicts need a topic of "
                            "their own (they must never reach reviewers)")
        if scorer is None:
            scorer = load_scorer(settings.shadow_model, None, threads=settings.scoring_threads or None, precision=settings.precision,
                                 manifest_sha256=settings.shadow_model_manifest_sha256)
        shadow = cls(scorer, served, topic)
        log.info("shadow model loaded: its verdicts go to the shadow topic only",
                 extra={"shadow_model": scorer.info.ref, "served_model": served.ref, "shadow_topic": topic,
                        "shadow_thresholds": dict(scorer.info.thresholds),
                        "reuses_served_scores": shadow.reuses_served_scores})
        return shadow

    def score(self, batch: Batch, warn: Callable[..., None]) -> None:
        """``batch.shadow[id(rec)]``: the candidate's :class:`~flagstream.contract.shadow.ShadowSide` per served verdict."""
        info = self.scorer.info

        def on_batch_error(exc: Exception) -> None:
            warn("shadow-score", "shadow model failed on a batch; scoring its posts one by one (served path "
                 "unaffected)", error=f"{type(exc).__name__}: {exc}", batch=len(batch.verdicts))

        if self.reuses_served_scores:
            batch.shadow = {}
            for rec, verdict in batch.verdicts:
                row = [verdict.scores[label] for label in info.labels]
                batch.shadow[id(rec)] = ShadowSide(self.model, dict(verdict.scores),
                                                   tuple(flagged_labels(row, info)), info.thresholds)
            return
        try:
            rows = score_isolating_failures(self.scorer, [v.post.text for _, v in batch.verdicts], on_batch_error)
        except Exception as exc:  # noqa: BLE001 - nothing the candidate does may stop the served path
            warn("shadow-score", "shadow model failed", error=f"{type(exc).__name__}: {exc}")
            rows = [None] * len(batch.verdicts)
        batch.shadow = {}
        for (rec, _), row in zip(batch.verdicts, rows):
            if row is None:
                batch.shadow[id(rec)] = ShadowSide(self.model, None, (), info.thresholds, SHADOW_FAILED)
            else:
                batch.shadow[id(rec)] = ShadowSide(self.model, scores_dict(row, info),
                                                   tuple(flagged_labels(row, info)), info.thresholds)

    def record(self, verdict: Verdict, source: Source, side: ShadowSide,
               served_model: Any, served_thresholds: Any, now: str) -> OutRecord:
        served = ShadowSide(served_model, verdict.scores, verdict.labels, served_thresholds)
        return shadow_record(ShadowRecord(verdict.post.id, source, served, side, now))


def shadow_counts(batch: Batch) -> tuple[int, Counter, Counter]:
    """(candidate verdicts, failures per reason, flag changes per (label, change)) of a routed batch."""
    scored, failures, changes = 0, Counter(), Counter()
    for rec, verdict in batch.verdicts:
        side = batch.shadow.get(id(rec))
        if side is None:
            continue
        if side.error is not None:
            failures[side.error] += 1
            continue
        scored += 1
        for label in side.labels:
            if label not in verdict.labels:
                changes[(label, "newly_flagged")] += 1
        for label in verdict.labels:
            if label not in side.labels:
                changes[(label, "newly_unflagged")] += 1
    if batch.shadow_refused:
        failures["output_refused"] += batch.shadow_refused
    return scored, failures, changes


__all__ = ["Shadow", "shadow_counts"]
