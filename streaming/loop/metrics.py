"""Prometheus metrics of ``flagstream stream`` (prometheus-client), one registry per pipeline.

Served on ``/metrics`` by :mod:`flagstream.streaming.loop.health` when ``metrics_port`` is set. Names:

============================================== ========= ===============================================
metric                                         type      meaning
============================================== ========= ===============================================
flagstream_posts_consumed_total                counter   records read from the posts topic
flagstream_posts_scored_total                  counter   posts scored (verdict on the scores topic)
flagstream_posts_flagged_total{label}          counter   posts flagged, per label (a post may count twice)
flagstream_posts_dead_lettered_total{reason}   counter   records sent to the dead-letter topic, per error class
flagstream_batch_size                          histogram records per micro-batch
flagstream_scoring_latency_seconds             histogram one ``scorer.score`` call (one micro-batch)
flagstream_batch_latency_seconds               histogram whole batch: validate, score, produce, ack, commit
flagstream_end_to_end_latency_seconds          histogram Kafka record timestamp of the post -> verdict acked
flagstream_consumer_lag{topic,partition}       gauge     fetch high-watermark minus position, per assigned partition
flagstream_commits_total                       counter   successful offset commits
flagstream_commit_failures_total{error}        counter   failed checkpoints, per exception class
flagstream_checkpoint_consecutive_failures     gauge     checkpoints rewound in a row (0 after a success)
flagstream_checkpoint_retry_backoff_seconds    gauge     wait before the rewound batch is retried (<= 30 s)
flagstream_scoring_breaker_open                gauge     1 while the model fails on most posts (nothing committed)
flagstream_scoring_breaker_trips_total         counter   times the scoring breaker opened
flagstream_rebalance_dropped_records_total     counter   buffered records of revoked partitions left to their next owner
flagstream_rebalance_rewound_partitions_total  counter   partitions given back and sought to their dropped records
flagstream_buffered_records                    gauge     records polled and not yet processed
flagstream_explanations_total{outcome}         counter   flagged posts: explained / cached / skipped_load (past the budget)
flagstream_ready                               gauge     1 when /readyz would answer 200
flagstream_broker_reachable                    gauge     1 while the broker answers
flagstream_model_info{name,version,kind}       info      the model in use
flagstream_shadow_scored_total                 counter   shadow mode: posts the candidate model scored (shadow records)
flagstream_shadow_failures_total{reason}       counter   shadow mode: scoring_failed (candidate raised), output_refused
flagstream_shadow_flag_changes_total{label,change} counter shadow mode: newly_flagged / newly_unflagged by the candidate
flagstream_shadow_model_info{name,version,kind} info     shadow mode: the candidate model
============================================== ========= ===============================================
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

# The *_created series double the scrape for no operational use here.
if hasattr(prometheus_client, "disable_created_metrics"):
    prometheus_client.disable_created_metrics()

from flagstream.classifier.inference.scoring import ModelInfo
from flagstream.streaming.loop.checkpoint import METRIC_ERROR_NAMES
from flagstream.contract.records import ERROR_CLASSES

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class PipelineMetrics:
    """All metrics of one pipeline, in their own registry (tests run several pipelines per process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.consumed = Counter("flagstream_posts_consumed", "Records read from the posts topic", registry=r)
        self.scored = Counter("flagstream_posts_scored", "Posts scored", registry=r)
        self.flagged = Counter("flagstream_posts_flagged", "Posts flagged, per label", ["label"], registry=r)
        self.dead_lettered = Counter("flagstream_posts_dead_lettered", "Records dead-lettered, per error class",
                                     ["reason"], registry=r)
        self.batch_size = Histogram("flagstream_batch_size", "Records per micro-batch", buckets=BATCH_BUCKETS, registry=r)
        self.scoring_latency = Histogram("flagstream_scoring_latency_seconds", "One scorer.score call (one micro-batch)",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.batch_latency = Histogram("flagstream_batch_latency_seconds",
                                       "Whole micro-batch: validate, score, produce, ack, commit",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.e2e_latency = Histogram("flagstream_end_to_end_latency_seconds",
                                     "Kafka timestamp of the post to its verdict acknowledged", buckets=E2E_BUCKETS,
                                     registry=r)
        self.lag = Gauge("flagstream_consumer_lag", "High-watermark minus position, per assigned partition",
                         ["topic", "partition"], registry=r)
        self.bank_matches = Counter("flagstream_bank_matches", "Posts matching a known-content bank, per bank and outcome",
                                    ["bank", "outcome"], registry=r)
        self.commits = Counter("flagstream_commits", "Successful offset commits", registry=r)
        self.commit_failures = Counter("flagstream_commit_failures", "Failed checkpoints, per exception class",
                                       ["error"], registry=r)
        self.consecutive_failures = Gauge("flagstream_checkpoint_consecutive_failures",
                                          "Checkpoints rewound in a row", registry=r)
        self.retry_backoff = Gauge("flagstream_checkpoint_retry_backoff_seconds",
                                   "Wait before a rewound batch is retried", registry=r)
        self.breaker_open = Gauge("flagstream_scoring_breaker_open", "1 while the scoring breaker is open", registry=r)
        self.breaker_trips = Counter("flagstream_scoring_breaker_trips", "Times the scoring breaker opened", registry=r)
        self.rebalance_dropped = Counter("flagstream_rebalance_dropped_records",
                                         "Buffered records of revoked partitions, left to their next owner", registry=r)
        self.rebalance_rewound = Counter("flagstream_rebalance_rewound_partitions",
                                         "Partitions given back and sought to their dropped records", registry=r)
        self.buffered = Gauge("flagstream_buffered_records", "Records polled and not yet processed", registry=r)
        self.explanations = Counter("flagstream_explanations", "Flagged posts by explanation outcome: explained, "
                                    "cached, skipped_load (past the explanation budget)", ["outcome"], registry=r)
        self.ready = Gauge("flagstream_ready", "1 when the pipeline is ready (see /readyz)", registry=r)
        self.broker_reachable = Gauge("flagstream_broker_reachable", "1 while the broker answers", registry=r)
        self.model_info = Info("flagstream_model", "The model in use", registry=r)
        self.shadow_scored = Counter("flagstream_shadow_scored", "Posts the shadow (candidate) model scored", registry=r)
        self.shadow_failures = Counter("flagstream_shadow_failures", "Shadow verdicts lost, per reason", ["reason"],
                                       registry=r)
        self.shadow_changes = Counter("flagstream_shadow_flag_changes", "Labels the candidate flags differently",
                                      ["label", "change"], registry=r)
        self.shadow_model_info = Info("flagstream_shadow_model", "The shadow (candidate) model", registry=r)
        for reason in ERROR_CLASSES:  # export zeros, so dashboards and alerts see every series from the start
            self.dead_lettered.labels(reason=reason)
        for error in METRIC_ERROR_NAMES:
            self.commit_failures.labels(error=error)

    def set_model(self, info: ModelInfo) -> None:
        self.model_info.info({"name": info.name, "version": info.version, "kind": info.kind})
        for label in info.labels:
            self.flagged.labels(label=label)

    def set_shadow_model(self, info: ModelInfo) -> None:
        self.shadow_model_info.info({"name": info.name, "version": info.version, "kind": info.kind})
        for reason in ("scoring_failed", "output_refused"):
            self.shadow_failures.labels(reason=reason)
        for label in info.labels:
            for change in ("newly_flagged", "newly_unflagged"):
                self.shadow_changes.labels(label=label, change=change)

    def set_lag(self, lags: dict[tuple[str, int], int]) -> None:
        """Replace the lag series with the current assignment's (revoked partitions disappear)."""
        self.lag.clear()
        for (topic, partition), lag in lags.items():
            self.lag.labels(topic=topic, partition=str(partition)).set(lag)

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["PipelineMetrics"]
