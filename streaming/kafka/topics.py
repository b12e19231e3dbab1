"""Make sure the pipeline's topics exist before it starts: create them, or say which are missing.

``create_topics`` has three values, and the decision is logged in one INFO line at start:

- ``null`` (default, "auto"): create missing topics only when the cluster has a single broker (the
  embedded broker, a laptop), where one replica is all there is. On a multi-broker cluster nothing
  is created: a single-replica topic there would silently lose data with its broker, so the
  operator creates topics with the cluster's replication policy (or says ``true``).
- ``true``: create missing topics with ``topic_partitions`` partitions and ``replication_factor``
  replicas; several processes starting at once may race, and losing that race
  (``TopicAlreadyExistsError``) is fine.
- ``false``: never create anything.

Whenever topics are missing and not created, the command ends with one line naming them.
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
    if settings.shadow_model is not None:
        names.append(settings.shadow_topic)
    return list(dict.fromkeys(names))


def creation_policy(settings: Settings, admin: KafkaAdminClient) -> tuple[bool, str]:
    """Whether missing topics will be created, and the one-line reason the start-up log gives."""
    if settings.create_topics is True:
        return True, (f"missing topics will be created (create_topics: true; {settings.topic_partitions} partitions, "
                      f"replication_factor {settings.replication_factor})")
    if settings.create_topics is False:
        return False, "missing topics will not be created (create_topics: false)"
    try:
        brokers = len(admin.describe_cluster().get("brokers") or [])
    except KafkaError:
        brokers = 0  # unknown: err on the safe side
    if brokers == 1:
        return True, (f"missing topics will be created: single-broker cluster ({settings.topic_partitions} "
                      f"partitions, replication_factor {settings.replication_factor}; create_topics: auto, "
                      f"set it to false to never create topics)")
    return False, (f"missing topics will not be created: {brokers or 'an unknown number of'} brokers "
                   f"(create_topics: auto creates only on a single-broker cluster; set true to create with "
                   f"replication_factor {settings.replication_factor})")


def ensure_topics(settings: Settings, admin: KafkaAdminClient, names: list[str] | None = None) -> list[str]:
    """Create (or report) missing topics; returns the names created."""
    names = names or pipeline_topics(settings)
    create, why = creation_policy(settings, admin)
    log.info(f"topics: {why}", extra={"create_topics": create})
    existing = set(admin.list_topics())
    missing = [n for n in names if n not in existing]
    if not missing:
        return []
    if not create:
        raise MissingTopics(
            f"topic(s) missing on {settings.bootstrap_servers}: {', '.join(missing)}; create them with your "
            f"cluster's replication policy, or set create_topics: true (FLAGSTREAM_CREATE_TOPICS=true / "
            f"--create-topics) to create them with replication_factor {settings.replication_factor}"
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


__all__ = ["MissingTopics", "creation_policy", "ensure_topics", "pipeline_topics"]
