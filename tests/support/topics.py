"""A test's own topics and group, and the pipeline settings (in process) or environment (subprocess) for them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.kafka import create_topics, unique

# Fault-suite defaults on top of the base settings: 4 partitions so members can split them, bigger
# batches, one scoring thread per process (2 cores shared by several processes).
FAULT_SETTINGS: dict[str, Any] = {"topic_partitions": 4, "request_timeout_ms": 8000, "startup_timeout_s": 60,
                                  "batch_size": 64, "scoring_threads": 1}


@dataclass
class TopicSet:
    """Unique topic and group names for one test, plus ways to configure a pipeline for them."""

    bootstrap: str
    posts: str
    review: str
    scores: str
    dlq: str
    group: str
    model_dir: Path
    partitions: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def unique(cls, bootstrap: str, model_dir: Path, tag: str = "t", partitions: int = 3,
               create: bool = True) -> "TopicSet":
        """Fresh names; ``create`` makes the four topics now (else the pipeline creates them)."""
        base = unique(tag)
        ts = cls(bootstrap, f"{base}.posts", f"{base}.review", f"{base}.scores", f"{base}.dlq", f"{base}-group",
                 model_dir, partitions)
        if create:
            create_topics(bootstrap, [ts.posts, ts.review, ts.scores, ts.dlq], partitions)
        return ts

    def settings_dict(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap, "group_id": self.group, "posts_topic": self.posts,
            "review_topic": self.review, "scores_topic": self.scores, "dlq_topic": self.dlq,
            "model": str(self.model_dir), "topic_partitions": self.partitions,
            "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "batch_size": 32, "batch_wait_ms": 100,
            # Tansu makes a (re)joining member wait up to the rebalance timeout (= max_poll_interval_ms):
            # keep it short so a rejoin after a broker restart takes seconds, not the 5-minute default.
            "max_poll_interval_ms": 10_000,
            "request_timeout_ms": 10_000, "reconnect_backoff_max_ms": 1000, "startup_timeout_s": 30,
            "log_level": "INFO", "log_format": "json",
            # no audit sample unless a test asks for one: review-topic counts stay = flagged posts
            "audit_rate": 0.0, "audit_near_rate": 0.0,
        }
        base.update(self.extra)
        base.update(overrides)
        return base

    def settings(self, **overrides: Any):  # -> flagstream.config.Settings
        from flagstream.config import load_settings

        return load_settings(None, self.settings_dict(**overrides), environ={})

    def env(self, **overrides: Any) -> dict[str, str]:
        """Environment for a ``flagstream stream`` subprocess: FLAGSTREAM_* from the settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTREAM_")}
        for key, value in self.settings_dict(**overrides).items():
            if value is None:
                continue
            env[f"FLAGSTREAM_{key.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("HF_HUB_OFFLINE", "1")
        return env
