"""``flagstream stream``: run one consumer-group member of the scoring pipeline until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse

from flagstream.options import KAFKA_SECURITY_FIELDS, add_config_flags, settings_from_args

# Every Settings field a pipeline operator may want on the command line (same names as YAML and
# FLAGSTREAM_* variables). Secrets are deliberately absent: environment or *_file only.
STREAM_FIELDS = (
    "bootstrap_servers", "client_id", "group_id",
    "posts_topic", "review_topic", "scores_topic", "scores_enabled", "dlq_topic",
    "create_topics", "topic_partitions", "replication_factor", "auto_offset_reset", "exactly_once", "instance_id",
    "session_timeout_ms", "heartbeat_interval_ms", "max_poll_interval_ms", "request_timeout_ms",
    "reconnect_backoff_max_ms", "startup_timeout_s",
    "batch_size", "batch_wait_ms", "max_text_chars", "max_message_bytes", "model", "model_manifest_sha256", "thresholds", "scoring_threads", "precision",
    "shadow_model", "shadow_model_manifest_sha256", "shadow_topic",
    "metrics_host", "metrics_port", "log_level", "log_format", "progress_interval_s",
    *KAFKA_SECURITY_FIELDS,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stream", help="score the posts topic continuously (one consumer-group member)",
                       description="Consume posts, score micro-batches, write review/scores/dead-letter records, "
                                   "commit offsets after every output is acknowledged. SIGTERM/SIGINT: finish "
                                   "the batch, commit, leave the group, exit 0.")
    add_config_flags(p, *STREAM_FIELDS)
    p.add_argument("--stop-after-idle", dest="stop_after_idle", type=float, default=None, metavar="SECONDS",
                   help="exit cleanly once no post has arrived for SECONDS (batch jobs, benchmarks)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from flagstream.streaming.logs import setup_logging
    from flagstream.streaming.loop.pipeline import Pipeline, install_signal_handlers

    settings = settings_from_args(args)
    setup_logging(settings.log_level, settings.log_format)
    if args.stop_after_idle is not None and args.stop_after_idle <= 0:
        from flagstream.errors import UserError

        raise UserError("--stop-after-idle must be a positive number of seconds")
    pipeline = Pipeline(settings, stop_after_idle_s=args.stop_after_idle)
    install_signal_handlers(pipeline)
    return pipeline.run()
