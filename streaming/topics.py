"""Make sure the pipeline's topics exist before it starts: create them, or say which are missing.

``create_topics: true`` (default) creates missing topics with ``topic_partitions`` partitions and
``replication_factor`` replicas; several processes starting at once may race, and losing that race
(``TopicAlreadyExistsError``) is fine. ``create_topics: false`` never creates anything: missing
topics end the command with one line naming them.
"""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from flagstream.config import Settings
from flagstream.errors import UserError

log = logging.getLogger(__name__)


class MissingTopics(UserError):
    """Topics the pipeline needs are absent and ``create_topics`` is false."""


def pipeline_topics(settings: Settings) -> list[str]:
    """The posts topic and every output topic the settings enable, in a stable order."""
    names = [settings.posts_topic, settings.review_topic, settings.dlq_topic]
    if settings.scores_enabled:
        names.insert(2, settings.scores_topic)
    return list(dict.fromkeys(names))


def ensure_topics(settings: Settings, admin: KafkaAdminClient, names: list[str] | None = None) -> list[str]:
    """Create (or report) missing topics; returns the names created."""
    names = names or pipeline_topics(settings)
    existing = set(admin.list_topics())
    missing = [n for n in names if n not in existing]
    if not missing:
        return []
    if not settings.create_topics:
        raise MissingTopics(
            f"topic(s) missing on {settings.bootstrap_servers}: {', '.join(missing)}; create them "
            f"or set create_topics: true (FLAGSTREAM_CREATE_TOPICS=true / --create-topics)"
        )
    created = []
    for name in missing:
        try:
            admin.create_topics({name: {"num_partitions": settings.topic_partitions,
                                        "replication_factor": settings.replication_factor}},
                                wait_for_metadata=True)
            created.append(name)
        except TopicAlreadyExistsError:
            pass
        except KafkaError as exc:
            if "already exists" in str(exc).lower() or type(exc).__name__ == "TopicAlreadyExistsError":
                continue
            raise UserError(f"cannot create topic {name} on {settings.bootstrap_servers}: {exc}") from None
    if created:
        log.info("created topics", extra={"topics": created, "partitions": settings.topic_partitions})
    return created


__all__ = ["MissingTopics", "ensure_topics", "pipeline_topics"]
