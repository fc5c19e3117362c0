"""Topic creation at startup. Never rely on broker auto-creation (Tansu creates 4 partitions)."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from herald.kafka.topics import Names, contracts
from herald.settings import KafkaSettings

log = logging.getLogger(__name__)


async def ensure_topics(settings: KafkaSettings, names: Names, *, replication_factor: int = 1) -> list[str]:
    """Create every contract topic that is missing; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=names.topic(c.name),
                num_partitions=c.partitions,
                replication_factor=replication_factor,
                topic_configs={"retention.ms": str(c.retention_hours * 3_600_000)},
            )
            for c in contracts()
            if names.topic(c.name) not in existing
        ]
        if wanted:
            # Another process may create them between our list and our create: fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
            log.info("created topics", extra={"topics": [t.name for t in wanted]})
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def missing_topics(settings: KafkaSettings, names: Names) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, request_timeout_ms=3_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [names.topic(c.name) for c in contracts() if names.topic(c.name) not in existing]
